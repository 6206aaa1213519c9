//! A full disk: commands say which file is full and by how much, runs in
//! flight wait (their app processes retry), facts the SuperLink must record
//! (a dead process) are kept until space comes back, and once it does the
//! SuperLink recovers by itself: no restart, no run left pending or running.
//!
//! The disk is "filled" by capping `state.db`'s page count (SQLite's
//! `max_page_count`, which fails writes with `SQLITE_FULL` as a full disk
//! does) through the test-only `FLORET_TEST_MAX_PAGE_COUNT_FILE`: the number
//! in that file caps the database from the next write on; 0 lifts the cap.

use std::path::Path;

use floret::domain::event::{Event, RoundStarted, RunSubmitted, SubStatus};
use floret::domain::ids::RunId;
use floret::domain::run::{Command, Status};
use floret::records::{ConfigRecord, ConfigValue};
use floret::store::Store;
use floret::superlink::engine::{self, ExecError};

use crate::support::{processes_with, quickstart, quickstart_with, temp_dir, wait_until, Home};

/// Caps the database at its current size (`max_page_count` cannot go lower).
fn fill(cap_file: &Path) {
    std::fs::write(cap_file, "1").unwrap();
}

fn free(cap_file: &Path) {
    std::fs::write(cap_file, "0").unwrap();
}

fn statuses(home: &Home) -> Vec<(u64, String)> {
    let listed = home.flwr(&["ls", "--format", "json"]);
    listed.ok();
    listed.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["run-id"].as_str().unwrap().parse().unwrap(),
                run["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_full_disk_is_reported_and_the_superlink_recovers_when_space_returns() {
    let home = Home::new();
    let cap = home.path().join("page-cap");
    free(&cap);
    let start = home
        .command("flwr", &["ls"])
        .env("FLORET_TEST_MAX_PAGE_COUNT_FILE", &cap)
        .output()
        .unwrap();
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let killed = home.submit("num-server-rounds=100000");
    let stopped = home.submit("num-server-rounds=100000 seed=2");
    home.wait_for_status(killed, |s| s == "running");
    home.wait_for_status(stopped, |s| s == "running");
    // An app whose configuration has a free-form key, to submit a run whose
    // record needs room (20 KB of configuration).
    let app = quickstart_with("note = \"\"");
    let app = app.path().to_str().unwrap();
    let big = format!("note=\"{}\"", "x".repeat(20_000));

    fill(&cap);
    let refused = home.flwr(&["run", app, "-c", &big]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let database = home.path().join("local-superlink").join("state.db");
    let message = refused.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in [
        format!("cannot write the state database {}", database.display()),
        "size limit".to_string(),
        "this change needs about".to_string(),
        "free some disk space and try again".to_string(),
    ] {
        assert!(message.contains(&part), "{part:?} not in: {}", refused.stderr);
    }
    // Reads still work; a small submission is either recorded (and will run)
    // or refused with the same message.
    let small = home.flwr(&["run", &quickstart(), "--format", "json"]);
    if small.code != 0 {
        assert!(small.stdout.contains("cannot write the state database"), "{small:?}");
    }
    // The app process of a run dies while nothing can be recorded.
    let pids = processes_with(&["flwr-simulation", "--run-id", &killed.to_string()]);
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: kill(2) on the app process this test's SuperLink launched.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    wait_until("the killed app process is gone", || {
        processes_with(&["flwr-simulation", "--run-id", &killed.to_string()]).is_empty()
    });

    free(&cap);
    let run = home.wait_for_status(killed, |s| s == "finished:failed");
    assert!(
        run["status-details"].as_str().unwrap().contains("killed by signal 9"),
        "{run}"
    );
    // The run whose process waited through the full disk is alive: it stops
    // when asked, as it records its stop itself.
    home.flwr(&["stop", &stopped.to_string()]).ok();
    assert_eq!(home.run_json(stopped)["status"], "finished:stopped");
    // What was refused now goes through.
    home.flwr(&["run", app, "-c", &big, "--stream"]).ok();
    wait_until("no run is pending, starting or running", || {
        statuses(&home).iter().all(|(_, status)| status.starts_with("finished"))
    });
    let superlink_log = std::fs::read_to_string(home.path().join("local-superlink").join("superlink.log")).unwrap();
    assert!(superlink_log.contains("size limit"), "{superlink_log}");

    home.flwr(&["superlink", "stop"]).ok();
    Store::open(&database).unwrap().verify().unwrap();
}

fn submitted(run_id: RunId) -> RunSubmitted {
    let mut options = ConfigRecord::new();
    options.insert("num-supernodes", ConfigValue::Int(10));
    RunSubmitted {
        run_id,
        fab_id: "floret/quickstart".into(),
        fab_version: "1.0.0".into(),
        fab_hash: "00".repeat(32),
        override_config: Default::default(),
        federation: "@none/default".into(),
        federation_options: options,
        seed: 1,
        build: "floret test".into(),
    }
}

/// The engine keeps what it must record (here: a run's process died) while
/// the database is full, and records it once there is room, without a
/// restart. The database is filled exactly: until not even one more small
/// event fits.
#[tokio::test(flavor = "multi_thread")]
async fn the_end_of_a_run_is_recorded_once_the_database_has_room() {
    let directory = temp_dir();
    let path = directory.path().join("state.db");
    let cap = directory.path().join("page-cap");
    let mut store = Store::open(&path).unwrap();
    store.set_page_cap_file(cap.clone());
    let engine = engine::start(store);
    let run_id = RunId(7);
    for command in [Command::Submit(submitted(run_id)), Command::Claim, Command::Activate] {
        engine.execute(run_id, command).await.unwrap();
    }
    fill(&cap);
    let mut round = 1;
    loop {
        let event = Event::RoundStarted(RoundStarted { round });
        match engine.execute(run_id, Command::AppendSimulation(vec![event])).await {
            Ok(_) => round += 1,
            Err(ExecError::Store(error)) if error.is_full() => break,
            Err(error) => panic!("{error}"),
        }
        assert!(round < 1_000_000, "the capped database never filled");
    }

    let reason = "The simulation process (flwr-simulation) was killed by signal 9 before the run finished.";
    engine.oblige(
        run_id,
        Command::Abandon {
            reason: reason.to_string(),
        },
    );
    engine.expire().await;
    assert_eq!(engine.run(run_id).await.unwrap().status, Status::Running);

    free(&cap);
    // The next tick (every second in a SuperLink) retries.
    engine.expire().await;
    let run = engine.run(run_id).await.unwrap();
    assert_eq!(run.status, Status::Finished(SubStatus::Failed));
    assert_eq!(run.details, reason);
    engine.query(|store| store.verify().unwrap()).await.unwrap();
}
