//! Snapshots of what `flwr ls` prints: the runs table at several widths, the
//! detail view and the JSON document, from fixed runs.

use floret::cli::list::{run_detail, run_json, runs_table};
use floret::domain::ids::{Micros, RunId};
use floret::proto::RunInfo;

use crate::support::snapshot_settings;

const T0: i64 = 1_795_831_687_000_000; // 2026-11-28 02:08:07Z

fn run(run_id: u64, status: &str, sub_status: &str, details: &str, offsets: [Option<i64>; 4]) -> RunInfo {
    let at = |offset: Option<i64>| offset.map(|o| Micros(T0 + o * 1_000_000));
    RunInfo {
        run_id: RunId(run_id),
        fab_id: "anchors/fedlogreg".into(),
        fab_version: "1.0.0".into(),
        fab_hash: "98b366ef0c1a9d2e7b4f5a6c3d8e9f0a1b2c3d4e5f60718293a4b5c6d51b26366".into(),
        federation: "@none/default".into(),
        status: status.into(),
        sub_status: sub_status.into(),
        details: details.into(),
        pending_at: at(offsets[0]),
        starting_at: at(offsets[1]),
        running_at: at(offsets[2]),
        finished_at: at(offsets[3]),
        bytes_sent: 0,
        bytes_recv: 0,
        clientapp_runtime: 0.0,
    }
}

fn runs() -> Vec<RunInfo> {
    vec![
        run(
            11552096691401131052,
            "running",
            "",
            "",
            [Some(100), Some(100), Some(101), None],
        ),
        run(
            4328516879096858863,
            "finished",
            "completed",
            "",
            [Some(0), Some(0), Some(1), Some(6)],
        ),
        run(
            77,
            "finished",
            "failed",
            "Round 1 (train): only 0 of 5 sampled nodes returned results",
            [Some(-50), Some(-50), Some(-49), Some(-48)],
        ),
        run(5256749651667447222, "pending", "", "", [Some(-100), None, None, None]),
    ]
}

fn now() -> Option<Micros> {
    Some(Micros(T0 + 200 * 1_000_000))
}

#[test]
fn runs_table_at_several_widths() {
    let _settings = snapshot_settings();
    for width in [120, 80, 200] {
        insta::assert_snapshot!(format!("ls_table_{width}"), runs_table(&runs(), now(), width, false));
    }
    insta::assert_snapshot!("ls_table_empty", runs_table(&[], now(), 120, false));
}

#[test]
fn run_detail_view() {
    let _settings = snapshot_settings();
    let runs = runs();
    insta::assert_snapshot!("ls_detail_completed", run_detail(&runs[1], now(), 120, false));
    insta::assert_snapshot!("ls_detail_failed", run_detail(&runs[2], now(), 120, false));
}

#[test]
fn runs_json() {
    let _settings = snapshot_settings();
    let document = serde_json::json!({
        "success": true,
        "runs": runs().iter().map(|r| run_json(r, now())).collect::<Vec<_>>(),
    });
    insta::assert_snapshot!("ls_json", serde_json::to_string_pretty(&document).unwrap());
}
