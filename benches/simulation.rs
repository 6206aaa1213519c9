//! End-to-end benchmark of `flwr run --stream` through the real binaries
//! (release build), plus the replay of each run and the latency of a stop.
//!
//! Scenarios (issue "Deterministic simulation runtime"):
//! - the quickstart: 10 nodes x 3 rounds on digits (cold SuperLink, then warm);
//! - 1,000 nodes x 10 rounds at fraction 0.1 on the synthetic set;
//! - 10,000 nodes x 100 rounds at fraction 0.1 on the synthetic set.
//!
//! Run with `cargo bench --bench simulation`; prints a Markdown table for
//! docs/PERFORMANCE.md. Peak memory is the app process's VmHWM (logged by
//! flwr-simulation) and the SuperLink's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Home {
    dir: tempfile::TempDir,
    control_port: u16,
    simulationio_port: u16,
}

impl Home {
    fn new() -> Home {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Home {
            dir: tempfile::tempdir().unwrap(),
            control_port: a.local_addr().unwrap().port(),
            simulationio_port: b.local_addr().unwrap().port(),
        }
    }

    fn flwr(&self, args: &[&str]) -> (Duration, String) {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_flwr"))
            .args(args)
            .env("FLWR_HOME", self.dir.path())
            .env("FLWR_LOCAL_CONTROL_API_PORT", self.control_port.to_string())
            .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", self.simulationio_port.to_string())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "flwr {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (elapsed, String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("local-superlink/superlink.log")).unwrap_or_default()
    }

    fn superlink_peak_kb(&self) -> u64 {
        let (_, status) = self.flwr(&["superlink", "status", "--format", "json"]);
        let pid = serde_json::from_str::<serde_json::Value>(&status).unwrap()["superlink"]["pid"]
            .as_u64()
            .unwrap();
        vm_hwm(pid)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_flwr"))
            .args(["superlink", "stop"])
            .env("FLWR_HOME", self.dir.path())
            .env("FLWR_LOCAL_CONTROL_API_PORT", self.control_port.to_string())
            .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", self.simulationio_port.to_string())
            .output();
    }
}

fn vm_hwm(pid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn write_app(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        format!(
            "[project]\nname = \"bench\"\nversion = \"1.0.0\"\ndescription = \"benchmark\"\nlicense = \"Apache-2.0\"\n\n\
             [tool.flwr.app]\npublisher = \"floret\"\n\n[tool.flwr.app.components]\nserverapp = \"floret:serverapp\"\n\
             clientapp = \"floret:logreg\"\n\n[tool.flwr.app.config]\n{config}\n"
        ),
    )
    .unwrap();
}

fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.contains("Successfully started run"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// The peak RSS the app process of the newest run logged.
fn simulation_peak_kb(log: &str) -> u64 {
    log.lines()
        .rev()
        .find(|l| l.contains("flwr-simulation finished"))
        .and_then(|l| l.split("peak_rss_kb=").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Row {
    scenario: String,
    wall: Duration,
    simulation_mb: f64,
    superlink_mb: f64,
    events: u64,
    run_seconds: f64,
    replay_seconds: f64,
}

fn scenario(name: &str, config: &str, num_supernodes: u64, runs: usize, cold: bool) -> Vec<Row> {
    let home = Home::new();
    let app = home.dir.path().join("app");
    write_app(&app, config);
    let app = app.to_str().unwrap().to_string();
    let supernodes = format!("num-supernodes={num_supernodes}");
    if !cold {
        home.flwr(&["ls"]);
    }
    let mut rows = Vec::new();
    for index in 0..runs {
        let (wall, stdout) = home.flwr(&["run", &app, "--stream", "--federation-config", &supernodes]);
        let run_id = run_id_of(&stdout);
        let (_, replay) = home.flwr(&["replay", &run_id, "--format", "json"]);
        let verdict: serde_json::Value = serde_json::from_str(&replay).unwrap();
        assert_eq!(verdict["identical"], true, "{verdict}");
        rows.push(Row {
            scenario: if cold && index == 0 {
                format!("{name} (cold SuperLink)")
            } else {
                name.to_string()
            },
            wall,
            simulation_mb: simulation_peak_kb(&home.log()) as f64 / 1024.0,
            superlink_mb: home.superlink_peak_kb() as f64 / 1024.0,
            events: verdict["events-recorded"].as_u64().unwrap(),
            run_seconds: verdict["original-seconds"].as_f64().unwrap(),
            replay_seconds: verdict["replay-seconds"].as_f64().unwrap(),
        });
    }
    rows
}

fn stop_latency() -> Vec<Duration> {
    let home = Home::new();
    let app = home.dir.path().join("app");
    write_app(&app, "num-server-rounds = 1000000\nlr = 0.5\nbatch-size = 8");
    let app = app.to_str().unwrap().to_string();
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let (_, stdout) = home.flwr(&["run", &app, "--format", "json"]);
        let run: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let run_id = run["run-id"].as_str().unwrap().to_string();
        // Let it run a moment, then measure `flwr stop` until the run is
        // finished:stopped (the command returns only then).
        std::thread::sleep(Duration::from_millis(300));
        let (latency, _) = home.flwr(&["stop", &run_id]);
        let (_, shown) = home.flwr(&["ls", "--run-id", &run_id, "--format", "json"]);
        assert!(shown.contains("finished:stopped"));
        latencies.push(latency);
    }
    latencies
}

fn main() {
    let quickstart = "num-server-rounds = 3\nfraction-train = 0.5\nlr = 0.5\nbatch-size = 8";
    let synthetic = |rounds: u64| {
        format!(
            "num-server-rounds = {rounds}\nfraction-train = 0.1\nfraction-evaluate = 0.1\ndataset = \"synthetic\"\n\
             lr = 0.3\nbatch-size = 8\ncentral-evaluation = true"
        )
    };
    let mut rows = scenario("10 nodes x 3 rounds (quickstart, digits)", quickstart, 10, 5, true);
    rows.extend(scenario(
        "1,000 nodes x 10 rounds, fraction 0.1 (synthetic)",
        &synthetic(10),
        1_000,
        1,
        false,
    ));
    rows.extend(scenario(
        "10,000 nodes x 100 rounds, fraction 0.1 (synthetic)",
        &synthetic(100),
        10_000,
        1,
        false,
    ));

    println!("| scenario | `flwr run --stream` wall | app process peak RSS | SuperLink peak RSS | simulation events | events/s written | run (running→finished) | replay | replay / run |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.3} s | {:.1} MB | {:.1} MB | {} | {:.0} | {:.3} s | {:.3} s | {:.2} |",
            row.scenario,
            row.wall.as_secs_f64(),
            row.simulation_mb,
            row.superlink_mb,
            row.events,
            row.events as f64 / row.run_seconds,
            row.run_seconds,
            row.replay_seconds,
            row.replay_seconds / row.run_seconds,
        );
    }
    let latencies = stop_latency();
    let mut sorted: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    println!();
    println!(
        "`flwr stop` of a running run, until it is finished:stopped (5 runs): median {:.1} ms, max {:.1} ms",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
}
