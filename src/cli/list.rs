//! `flwr list` / `flwr ls`: all runs as Flower's table, one run in detail, or
//! JSON.
//!
//! Unlike Flower 1.42, which silently shows only the newest 20 runs, every
//! run is listed unless `--limit` asks for a page, and then a footer says how
//! many runs the page hides and how to see them.

use clap::Args;

use crate::cli::connection::{self, status_error};
use crate::cli::table::{render_key_values, render_table, Cell, Column, Style};
use crate::cli::{exit, CliError, Format, Output};
use crate::domain::ids::Micros;
use crate::proto::flwr::proto as pb;
use crate::proto::{run_from_proto, RunInfo};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Name of the SuperLink connection in $FLWR_HOME/config.toml.
    #[arg(value_name = "SUPERLINK")]
    pub superlink: Option<String>,
    /// Show one run in detail.
    #[arg(long, value_name = "RUN_ID")]
    pub run_id: Option<u64>,
    /// Show at most this many runs (newest first); a footer says what is hidden.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Skip this many of the newest runs (with --limit: the next page).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Default, ignore_case = true)]
    pub format: Format,
}

/// `YYYY-MM-DD HH:MM:SSZ`, or `N/A`.
fn format_time(time: Option<Micros>) -> String {
    match time {
        None => "N/A".into(),
        Some(time) => chrono::DateTime::from_timestamp(time.0.div_euclid(1_000_000), 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|| "N/A".into()),
    }
}

/// Flower's humanised duration: `5s`, `1m 30s`, `2h 5m`, `3d 4h`.
pub(crate) fn format_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0) as u64;
    if seconds < 90 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m {}s", seconds / 60, seconds % 60)
    } else if seconds < 86400 {
        format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60)
    } else {
        format!("{}d {}h", seconds / 86400, (seconds % 86400) / 3600)
    }
}

/// Flower's byte sizes: `0 B`, `1.5 KB`, `12 MB`.
fn format_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    for unit in ["KB", "MB", "GB", "TB"] {
        value /= 1024.0;
        if value < 1024.0 || unit == "TB" {
            return if value < 10.0 {
                format!("{value:.1} {unit}")
            } else {
                format!("{} {unit}", value as u64)
            };
        }
    }
    unreachable!("the loop returns at TB")
}

/// Seconds from running to finished (or to the server's `now`).
pub fn elapsed(run: &RunInfo, now: Option<Micros>) -> f64 {
    match (run.running_at, run.finished_at.or(now)) {
        (Some(start), Some(end)) => (end.0 - start.0) as f64 / 1e6,
        _ => 0.0,
    }
}

fn status_style(status: &str) -> Style {
    match status {
        "finished:completed" => Style::Green,
        "finished:failed" => Style::Red,
        "finished:stopped" => Style::Yellow,
        "starting" | "running" => Style::Blue,
        _ => Style::BrightBlack,
    }
}

/// One run in `flwr ls --format json` (Flower 1.27's keys, plus `status-details`).
pub fn run_json(run: &RunInfo, now: Option<Micros>) -> serde_json::Value {
    let elapsed = elapsed(run, now);
    let name = run.fab_id.split_once('/').map(|(_, n)| n).unwrap_or(&run.fab_id);
    serde_json::json!({
        "run-id": run.run_id.0.to_string(),
        "federation": run.federation,
        "fab-id": run.fab_id,
        "fab-name": name,
        "fab-version": run.fab_version,
        "fab-hash": run.fab_hash.chars().take(8).collect::<String>(),
        "status": run.status_text(),
        "status-details": if run.details.is_empty() { "N/A".to_string() } else { run.details.clone() },
        "elapsed": elapsed,
        "pending-at": format_time(run.pending_at),
        "starting-at": format_time(run.starting_at),
        "running-at": format_time(run.running_at),
        "finished-at": format_time(run.finished_at),
        "network-traffic": {
            "inbound-bytes": run.bytes_recv,
            "outbound-bytes": run.bytes_sent,
            "total-bytes": run.bytes_recv + run.bytes_sent,
        },
        "compute-time": {
            "serverapp-seconds": elapsed,
            "clientapp-seconds": run.clientapp_runtime,
            "total-seconds": elapsed + run.clientapp_runtime,
        },
    })
}

/// The all-runs table.
pub fn runs_table(runs: &[RunInfo], now: Option<Micros>, width: usize, color: bool) -> String {
    let columns = [
        Column {
            header: "Run ID".into(),
            no_wrap: true,
            style: Style::Bold,
        },
        Column {
            header: "Federation".into(),
            no_wrap: false,
            style: Style::Plain,
        },
        Column {
            header: "App".into(),
            no_wrap: false,
            style: Style::Plain,
        },
        Column {
            header: "Status".into(),
            no_wrap: false,
            style: Style::Plain,
        },
        Column {
            header: "Elapsed".into(),
            no_wrap: false,
            style: Style::Blue,
        },
        Column {
            header: "Status Changed @".into(),
            no_wrap: false,
            style: Style::Plain,
        },
    ];
    let rows: Vec<Vec<Cell>> = runs
        .iter()
        .map(|run| {
            let status = run.status_text();
            let changed = run
                .finished_at
                .or(run.running_at)
                .or(run.starting_at)
                .or(run.pending_at);
            vec![
                Cell::plain(run.run_id.0.to_string()),
                Cell::plain(run.federation.clone()),
                Cell::plain(format!("@{}=={}", run.fab_id, run.fab_version)),
                Cell {
                    style: status_style(&status),
                    text: status,
                },
                Cell::plain(format_duration(elapsed(run, now))),
                Cell::plain(format_time(changed)),
            ]
        })
        .collect();
    render_table(&columns, &rows, width, color)
}

/// The detail view of one run.
pub fn run_detail(run: &RunInfo, now: Option<Micros>, width: usize, color: bool) -> String {
    let elapsed = elapsed(run, now);
    let hash = if run.fab_hash.len() >= 16 {
        format!("{}...{}", &run.fab_hash[..8], &run.fab_hash[run.fab_hash.len() - 8..])
    } else {
        run.fab_hash.clone()
    };
    let status = run.status_text();
    let rows = vec![
        ("Run ID", Cell::plain(run.run_id.0.to_string())),
        ("Federation", Cell::plain(run.federation.clone())),
        ("App", Cell::plain(format!("@{}=={}", run.fab_id, run.fab_version))),
        ("FAB Hash", Cell::plain(hash)),
        (
            "Status",
            Cell {
                style: status_style(&status),
                text: status,
            },
        ),
        (
            "Status Details",
            Cell::plain(if run.details.is_empty() {
                "N/A".into()
            } else {
                run.details.clone()
            }),
        ),
        ("Elapsed", Cell::plain(format_duration(elapsed))),
        ("Pending At", Cell::plain(format_time(run.pending_at))),
        ("Starting At", Cell::plain(format_time(run.starting_at))),
        ("Running At", Cell::plain(format_time(run.running_at))),
        ("Finished At", Cell::plain(format_time(run.finished_at))),
        ("Network traffic (inbound)", Cell::plain(format_bytes(run.bytes_recv))),
        ("Network traffic (outbound)", Cell::plain(format_bytes(run.bytes_sent))),
        (
            "Network Traffic (total)",
            Cell::plain(format_bytes(run.bytes_recv + run.bytes_sent)),
        ),
        ("Compute Time (ServerApp)", Cell::plain(format_duration(elapsed))),
        (
            "Compute Time (ClientApp)",
            Cell::plain(format_duration(run.clientapp_runtime)),
        ),
        (
            "Compute Time (total)",
            Cell::plain(format_duration(elapsed + run.clientapp_runtime)),
        ),
    ];
    let rows: Vec<(String, Cell)> = rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    render_key_values(&rows, width, color)
}

pub async fn list(args: ListArgs, out: &mut Output) -> Result<i32, CliError> {
    if args.run_id.is_some() && args.limit.is_some() {
        return Err(CliError::with_code(
            "The options '--run-id' and '--limit' cannot be used together.",
            exit::USAGE,
        ));
    }
    if args.limit == Some(0) {
        return Err(CliError::with_code(
            "The option '--limit' must be an integer greater than 0.",
            exit::USAGE,
        ));
    }
    let (profile, flwr_home) = connection::load_profile(args.superlink.as_deref(), out)?;
    let mut connection = connection::connect(profile, &flwr_home, out).await?;
    match args.run_id {
        Some(run_id) => out.say(
            &format!("🔍 Displaying information for run ID {run_id}..."),
            Style::Plain,
        ),
        None => out.say("📄 Listing all runs...", Style::Plain),
    }
    let response = connection
        .control
        .list_runs(pb::ListRunsRequest {
            run_id: args.run_id,
            limit: None,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let now = Micros::parse_iso(&response.now);
    let mut runs: Vec<RunInfo> = response.run_dict.values().map(run_from_proto).collect();
    if let Some(run_id) = args.run_id {
        runs.retain(|run| run.run_id.0 == run_id);
        if runs.is_empty() {
            return Err(CliError::new("Run ID not found."));
        }
    }
    runs.sort_by(|a, b| b.pending_at.cmp(&a.pending_at).then(a.run_id.cmp(&b.run_id)));
    let total = runs.len();
    let offset = (args.offset as usize).min(total);
    let shown: Vec<RunInfo> = match args.limit {
        Some(limit) => runs.into_iter().skip(offset).take(limit as usize).collect(),
        None => runs.into_iter().skip(offset).collect(),
    };
    if out.json() {
        let mut document = serde_json::json!({
            "success": true,
            "runs": shown.iter().map(|run| run_json(run, now)).collect::<Vec<_>>(),
        });
        if args.limit.is_some() || args.offset > 0 {
            document["total-runs"] = serde_json::Value::from(total);
        }
        out.print_json(&document);
        return Ok(exit::SUCCESS);
    }
    let text = match args.run_id {
        Some(_) => run_detail(&shown[0], now, out.width(), out.color_stdout()),
        None => runs_table(&shown, now, out.width(), out.color_stdout()),
    };
    out.raw(&text);
    if args.run_id.is_none() && shown.len() < total {
        let first = offset + 1;
        let last = offset + shown.len();
        let mut footer = format!(
            "Showing runs {first}–{last} of {total}, newest first; {} not shown.",
            total - shown.len()
        );
        if let Some(limit) = args.limit {
            if last < total {
                footer.push_str(&format!(" Next page: flwr list --limit {limit} --offset {last}"));
            }
        }
        out.say(&footer, Style::Yellow);
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_like_flower() {
        assert_eq!(format_duration(5.75), "5s");
        assert_eq!(format_duration(89.9), "89s");
        assert_eq!(format_duration(90.0), "1m 30s");
        assert_eq!(format_duration(3725.0), "1h 2m");
        assert_eq!(format_duration(90000.0), "1d 1h");
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1536), "1.5 KB");
        assert_eq!(format_bytes(12 * 1024 * 1024), "12 MB");
        assert_eq!(format_time(Some(Micros(1_795_831_687_123_456))), "2026-11-28 02:08:07Z");
        assert_eq!(format_time(None), "N/A");
    }
}
