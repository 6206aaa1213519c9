//! End to end through the real binaries (`flwr`, `flower-superlink`,
//! `flwr-simulation`), each test with its own `FLWR_HOME` and free ports:
//! run / list / log / stop, the managed SuperLink's life (auto-start, reuse,
//! concurrent first commands, `kill -9` and restart, stop without orphans),
//! and the errors a user meets.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use crate::support::{processes_with, quickstart, quickstart_with, snapshot_settings, wait_until, Home};

/// The streamed log with what changes between runs replaced.
fn stable_log(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.contains("Strategy execution finished in") {
                "INFO :      Strategy execution finished in [time]s".to_string()
            } else if let Some(rest) = line.strip_prefix("🎊 Successfully started run ") {
                let _ = rest;
                "🎊 Successfully started run [run id]".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn quickstart_runs_lists_and_shows_its_log() {
    let _settings = snapshot_settings();
    let home = Home::new();
    let ran = home.flwr(&["run", &quickstart(), "--stream", "-c", "seed=7"]);
    ran.ok();
    assert!(
        ran.stdout.contains("Starting local SuperLink on 127.0.0.1:"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("Starting logstream for run_id `"), "{}", ran.stderr);
    let log_start = ran.stdout.find("🎊 Successfully started run").unwrap();
    insta::assert_snapshot!("quickstart_stream_seed_7", stable_log(&ran.stdout[log_start..]));

    let run_id: u64 = ran.stdout[log_start..]
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let run = home.run_json(run_id);
    assert_eq!(run["status"], "finished:completed");
    assert_eq!(run["fab-id"], "floret/quickstart");
    assert_eq!(run["federation"], "@none/default");

    let table = home.flwr(&["ls"]);
    table.ok();
    assert!(
        table.stdout.starts_with("📄 Listing all runs...\n┏━"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains(&format!("│ {run_id}")), "{}", table.stdout);
    assert!(table.stdout.contains("finished:completed"));
    let detail = home.flwr(&["ls", "--run-id", &run_id.to_string()]);
    detail.ok();
    assert!(
        detail
            .stdout
            .contains("│ Status                     │ finished:completed"),
        "{}",
        detail.stdout
    );

    // `log --show` prints what `run --stream` streamed.
    let shown = home.flwr(&["log", &run_id.to_string(), "--show"]);
    shown.ok();
    let streamed = &ran.stdout[ran.stdout.find("INFO :      Starting Flower Simulation").unwrap()..];
    assert_eq!(shown.stdout.trim_end(), streamed.trim_end());
    assert!(shown
        .stderr
        .contains(&format!("Printing logstream for run_id `{run_id}`")));
    // And `log` (streaming) of a finished run prints it all and ends.
    let streamed_again = home.flwr(&["log", &run_id.to_string()]);
    streamed_again.ok();
    assert_eq!(streamed_again.stdout.trim_end(), streamed.trim_end());
}

#[test]
fn a_streamed_run_that_fails_exits_3_and_says_why() {
    let home = Home::new();
    let app = quickstart_with("fault.fail-partitions = \"0,1,2,3,4,5,6,7,8,9\"");
    let ran = home.flwr(&["run", app.path().to_str().unwrap(), "--stream"]);
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(
        ran.stdout
            .contains("aggregate_train: Received 0 results and 5 failures"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("ERROR :     Run failed: Round 1 (train): only 0 of 5 sampled nodes"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("ended finished:failed: Round 1 (train)"),
        "{}",
        ran.stderr
    );
    let runs = home.flwr(&["ls", "--format", "json"]).json();
    assert_eq!(runs["runs"][0]["status"], "finished:failed");
    assert!(runs["runs"][0]["status-details"]
        .as_str()
        .unwrap()
        .contains("fault.fail-partitions"));
}

#[test]
fn stop_ends_a_running_run_and_replay_reinjects_it() {
    let home = Home::new();
    let run_id = home.submit("num-server-rounds=100000 seed=3");
    home.wait_for_status(run_id, |s| s == "running");
    // Let it get through a few rounds so that the stop lands mid-run.
    wait_until("round 3 starts", || {
        home.flwr(&["log", &run_id.to_string(), "--show"])
            .stdout
            .contains("[ROUND 3/100000]")
    });
    let started = Instant::now();
    let stopped = home.flwr(&["stop", &run_id.to_string()]);
    let latency = started.elapsed();
    stopped.ok();
    assert_eq!(
        stopped.stdout,
        format!("✋ Stopping run ID {run_id}...\n✅ Run {run_id} successfully stopped.\n")
    );
    eprintln!("stop latency through the CLI: {latency:?}");
    let run = home.run_json(run_id);
    assert_eq!(run["status"], "finished:stopped");
    assert_eq!(run["status-details"], "Task stopped by user.");
    let log = home.flwr(&["log", &run_id.to_string(), "--show"]).stdout;
    assert!(log.contains("INFO :      Task stopped by user."), "{log}");

    let again = home.flwr(&["stop", &run_id.to_string()]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains(&format!("Run ID {run_id} is already finished")),
        "{}",
        again.stderr
    );
    let json = home.flwr(&["stop", &run_id.to_string(), "--format", "json"]);
    assert_eq!(json.code, 1);
    assert_eq!(
        json.json()["error-message"],
        format!(" Stopping run ID {run_id}...\n\nRun ID {run_id} is already finished")
    );

    let replay = home.flwr(&["replay", &run_id.to_string(), "--format", "json"]);
    replay.ok();
    let verdict = replay.json();
    assert_eq!(verdict["identical"], true, "{verdict}");
    assert!(
        verdict["reinjected"][0]
            .as_str()
            .unwrap()
            .starts_with("the stop request"),
        "{verdict}"
    );
}

#[test]
fn a_streamed_run_that_is_stopped_exits_4() {
    let home = Home::new();
    let mut child = home
        .command(
            "flwr",
            &["run", &quickstart(), "--stream", "-c", "num-server-rounds=100000"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("🎊 Successfully started run"))
        .unwrap();
    let run_id = started.rsplit(' ').next().unwrap().to_string();
    for line in lines.by_ref() {
        if line.unwrap().contains("[ROUND 2/") {
            break;
        }
    }
    home.flwr(&["stop", &run_id]).ok();
    for _ in lines {}
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(4));
}

#[test]
fn the_same_seed_twice_records_the_same_simulation_events() {
    let home = Home::new();
    let first = home.submit("seed=11");
    let second = home.submit("seed=11");
    let other = home.submit("seed=12");
    for run_id in [first, second, other] {
        home.wait_for_status(run_id, |s| s.starts_with("finished"));
    }
    let events = |run_id: u64| {
        let ran = home.flwr(&["replay", &run_id.to_string(), "--events"]);
        ran.ok();
        // Simulation events, without their sequence numbers and times.
        ran.stdout
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .filter(|l| !l.starts_with("Run") && !l.starts_with("LogAppended") && !l.starts_with("UsageRecorded"))
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (events(first), events(second), events(other));
    assert!(a.len() > 50);
    assert_eq!(a, b, "seed 11 twice");
    assert_ne!(a, c, "seeds 11 and 12");
}

#[test]
fn the_superlink_starts_once_and_is_reused() {
    let home = Home::new();
    let first = home.flwr(&["ls"]);
    first.ok();
    assert!(first.stdout.contains(&format!(
        "Starting local SuperLink on 127.0.0.1:{}...",
        home.control_port
    )));
    assert!(first
        .stdout
        .contains("Flower configuration not found. Created default configuration at"));
    let pid = home.superlink()["superlink"]["pid"].as_u64().unwrap();
    let second = home.flwr(&["ls"]);
    second.ok();
    assert!(!second.stdout.contains("Starting local SuperLink"));
    assert!(!second.stdout.contains("Flower configuration not found"));
    assert_eq!(home.superlink()["superlink"]["pid"].as_u64().unwrap(), pid);
    let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    assert!(
        config.contains("[superlink.local]\noptions.num-supernodes = 10"),
        "{config}"
    );
    assert!(home.path().join("local-superlink/state.db").exists());
    assert!(home.path().join("local-superlink/superlink.log").exists());
}

#[test]
fn concurrent_first_commands_start_one_superlink() {
    // On a fresh home: the configuration file and the SuperLink are both
    // created by whichever command comes first.
    let home = Home::new();
    let children: Vec<_> = (0..6)
        .map(|_| home.command("flwr", &["ls"]).stdout(Stdio::piped()).spawn().unwrap())
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{output:?}");
    }
    let starts = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("Starting local SuperLink"))
        .count();
    assert_eq!(starts, 1);
    let superlinks = processes_with(&["flower-superlink", &format!("127.0.0.1:{}", home.control_port)]);
    assert_eq!(superlinks.len(), 1, "{superlinks:?}");
}

/// `for i in $(seq 10); do flwr run examples/quickstart & done`: every
/// submission succeeds (concurrent StartRuns of one FAB shared a temporary
/// file name in the FAB store, and most failed with "cannot store the FAB").
#[test]
fn concurrent_runs_of_one_app_are_all_submitted() {
    let home = Home::new();
    home.flwr(&["ls"]).ok();
    let app = quickstart();
    let children: Vec<_> = (0..10)
        .map(|_| {
            home.command("flwr", &["run", &app, "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut run_ids = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        run_ids.push(json["run-id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    for run_id in run_ids {
        home.wait_for_status(run_id, |s| s == "finished:completed");
    }
}

#[test]
fn after_kill_9_the_superlink_restarts_with_nothing_lost() {
    let home = Home::new();
    let done = home.submit("seed=1");
    home.wait_for_status(done, |s| s == "finished:completed");
    let log_before = home.flwr(&["log", &done.to_string(), "--show"]).stdout;
    let long = home.submit("num-server-rounds=100000");
    home.wait_for_status(long, |s| s == "running");
    // Let it record some rounds before the crash.
    wait_until("round 2 starts", || {
        home.flwr(&["log", &long.to_string(), "--show"])
            .stdout
            .contains("[ROUND 2/100000]")
    });
    let pid = home.superlink()["superlink"]["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) on the SuperLink this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the app process dies with the SuperLink", || {
        processes_with(&["flwr-simulation", &format!("127.0.0.1:{}", home.simulationio_port)]).is_empty()
    });
    let listed = home.flwr(&["ls", "--format", "json"]);
    listed.ok();
    let runs = listed.json()["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2);
    let status_of = |id: u64| {
        runs.iter()
            .find(|r| r["run-id"].as_str() == Some(id.to_string().as_str()))
            .unwrap()
            .clone()
    };
    assert_eq!(status_of(done)["status"], "finished:completed");
    assert_eq!(status_of(long)["status"], "finished:failed");
    assert!(status_of(long)["status-details"]
        .as_str()
        .unwrap()
        .starts_with("The SuperLink stopped while the run"));
    assert_eq!(home.flwr(&["log", &done.to_string(), "--show"]).stdout, log_before);
    // The crashed run replays up to where its record ends, and says so with
    // its own verdict and exit status.
    let replay = home.flwr(&["replay", &long.to_string(), "--format", "json"]);
    assert_eq!(replay.code, 7, "{replay:?}");
    assert_eq!(replay.json()["verdict"], "truncated");
    assert_eq!(replay.json()["record-ends-early"], true);
}

#[test]
fn superlink_stop_stops_runs_and_leaves_no_processes() {
    let home = Home::new();
    let run_id = home.submit("num-server-rounds=100000");
    home.wait_for_status(run_id, |s| s == "running");
    let simulation = processes_with(&["flwr-simulation", &format!("127.0.0.1:{}", home.simulationio_port)]);
    assert_eq!(simulation.len(), 1);
    let superlink = home.superlink()["superlink"]["pid"].as_u64().unwrap() as u32;
    let stopped = home.flwr(&["superlink", "stop"]);
    stopped.ok();
    assert_eq!(
        stopped.stdout,
        format!("Stopped the local SuperLink (pid {superlink}); 1 active run was stopped.\n")
    );
    assert!(processes_with(&["flwr-simulation", &format!("127.0.0.1:{}", home.simulationio_port)]).is_empty());
    assert!(!floret::cli::local::process_alive(superlink));
    let status = home.flwr(&["superlink", "status"]);
    assert!(
        status.stdout.starts_with("No local SuperLink is running"),
        "{}",
        status.stdout
    );
    let run = home.run_json(run_id);
    assert_eq!(run["status"], "finished:stopped");
    assert_eq!(
        run["status-details"],
        "The SuperLink was shut down while the run was active."
    );
}

#[test]
fn a_port_held_by_another_program_is_named() {
    let home = Home::new();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", home.control_port)).unwrap();
    let ran = home.flwr(&["ls"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr
            .contains(&format!("Port {} is used by another program", home.control_port)),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("superlink.log"), "{}", ran.stderr);
}

#[test]
fn a_superlink_of_another_flwr_home_is_not_used() {
    let home = Home::new();
    home.flwr(&["ls"]).ok();
    let other = Home {
        dir: crate::support::temp_dir(),
        control_port: home.control_port,
        simulationio_port: home.simulationio_port,
    };
    let ran = other.flwr(&["ls"]);
    assert_eq!(ran.code, 1);
    let message = ran.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        message.contains("is used by the local SuperLink of another Flower home"),
        "{message}"
    );
    assert!(
        message.contains(&home.path().canonicalize().unwrap().display().to_string()),
        "{message}"
    );
    // `other` would stop `home`'s SuperLink when dropped: it must not.
    std::mem::forget(other);
}

#[test]
fn unknown_run_ids_are_errors_everywhere() {
    let home = Home::new();
    for args in [
        &["log", "12345", "--show"][..],
        &["log", "12345"],
        &["stop", "12345"],
        &["ls", "--run-id", "12345"],
    ] {
        let ran = home.flwr(args);
        assert_eq!(ran.code, 1, "{args:?}: {ran:?}");
        assert!(ran.stderr.contains("Run ID not found."), "{args:?}: {}", ran.stderr);
    }
    let json = home.flwr(&["ls", "--run-id", "12345", "--format", "json"]);
    assert_eq!(json.code, 1);
    assert_eq!(
        json.json(),
        serde_json::json!({"success": false, "error-message": " Displaying information for run ID 12345...\n\nRun ID not found."})
    );
    let replay = home.flwr(&["replay", "12345"]);
    assert_eq!(replay.code, 1);
}

#[test]
fn bad_input_gets_one_clear_line() {
    let home = Home::new();
    let app = crate::support::temp_dir();
    let write = |text: &str| std::fs::write(app.path().join("pyproject.toml"), text).unwrap();
    let path = app.path().to_str().unwrap().to_string();

    let missing = home.flwr(&["run", "/nonexistent/app"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("The app directory '/nonexistent/app' does not exist."),
        "{}",
        missing.stderr
    );

    write("[project]\nname = \"x\"\n");
    let invalid = home.flwr(&["run", &path]);
    assert_eq!(invalid.code, 1);
    assert!(
        invalid.stderr.contains("Property \"version\" missing in [project]"),
        "{}",
        invalid.stderr
    );

    write(&std::fs::read_to_string(format!("{}/pyproject.toml", quickstart())).unwrap());
    let bad_config = home.flwr(&["run", &path, "-c", "lr=abc"]);
    assert_eq!(bad_config.code, 1);
    assert!(
        bad_config
            .stderr
            .contains("The provided configuration string is in an invalid format"),
        "{}",
        bad_config.stderr
    );
    let unknown_key = home.flwr(&["run", &path, "-c", "lrr=0.1"]);
    assert_eq!(unknown_key.code, 1);
    assert!(
        unknown_key
            .stderr
            .contains("Key 'lrr' is not present in the main dictionary"),
        "{}",
        unknown_key.stderr
    );
    // Refused for its value (the quickstart declares `strategy.name`).
    let bad_value = home.flwr(&["run", &path, "-c", "strategy.name=\"FedAvgg\""]);
    assert_eq!(bad_value.code, 1);
    let message = crate::support::box_text(&bad_value.stderr);
    assert!(
        message.contains("unknown strategy `FedAvgg` in `strategy.name`; valid names: FedAvg,"),
        "{message}"
    );

    write(
        &std::fs::read_to_string(format!("{}/pyproject.toml", quickstart()))
            .unwrap()
            .replace("clientapp = \"floret:logreg\"", "clientapp = \"myapp.client_app:app\""),
    );
    let python = home.flwr(&["run", &path]);
    assert_eq!(python.code, 1);
    let message = python.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(message.contains("needs the model it starts from"), "{message}");
    // Nothing was recorded for the refused runs.
    assert_eq!(
        home.flwr(&["ls", "--format", "json"]).json()["runs"],
        serde_json::json!([])
    );
}

#[test]
fn a_state_database_of_another_schema_exits_105() {
    let home = Home::new();
    let database = home.path().join("state.db");
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("CREATE TABLE alembic_version (version_num VARCHAR(32)); CREATE TABLE run (run_id INTEGER);")
        .unwrap();
    let output = home
        .command(
            "flower-superlink",
            &[
                "--insecure",
                "--simulation",
                "--control-api-address",
                &format!("127.0.0.1:{}", home.control_port),
                "--simulationio-api-address",
                &format!("127.0.0.1:{}", home.simulationio_port),
                "--database",
                database.to_str().unwrap(),
                "--storage-dir",
                home.path().join("ffs").to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(105));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Exit Code: 105"), "{stderr}");
    assert!(stderr.contains("Python Flower state database"), "{stderr}");
}

/// The CLI says why the SuperLink it started is not there: its exit code
/// and the end of its log, not "another program" on the port.
#[test]
fn the_cli_names_the_exit_of_a_superlink_that_fails_to_start() {
    let home = Home::new();
    let directory = home.path().join("local-superlink");
    std::fs::create_dir_all(&directory).unwrap();
    rusqlite::Connection::open(directory.join("state.db"))
        .unwrap()
        .execute_batch("CREATE TABLE alembic_version (version_num VARCHAR(32)); CREATE TABLE run (run_id INTEGER);")
        .unwrap();
    let listed = home.flwr(&["ls", "--format", "json"]);
    assert_eq!(listed.code, 1, "{listed:?}");
    let said = listed.json()["error-message"].as_str().unwrap().to_string();
    assert!(
        said.contains("Failed to start local SuperLink: `flower-superlink` exited with code 105. See logs at"),
        "{said}"
    );
    assert!(
        said.contains("is not a floret state database"),
        "the log's tail is shown: {said}"
    );
    assert!(!said.contains("another program"), "{said}");
}

#[test]
fn a_crashed_app_process_fails_its_run() {
    let home = Home::new();
    let run_id = home.submit("num-server-rounds=100000");
    home.wait_for_status(run_id, |s| s == "running");
    let simulation = processes_with(&["flwr-simulation", &format!("127.0.0.1:{}", home.simulationio_port)]);
    assert_eq!(simulation.len(), 1);
    // SAFETY: kill(2) on the app process this test's SuperLink launched.
    unsafe { libc::kill(simulation[0] as i32, libc::SIGKILL) };
    let run = home.wait_for_status(run_id, |s| s.starts_with("finished"));
    assert_eq!(run["status"], "finished:failed");
    assert_eq!(
        run["status-details"],
        "The simulation process (flwr-simulation) was killed by signal 9 before the run finished."
    );
    // The SuperLink goes on serving.
    let next = home.submit("num-server-rounds=1");
    assert_eq!(
        home.wait_for_status(next, |s| s.starts_with("finished"))["status"],
        "finished:completed"
    );
}

#[test]
fn a_run_of_thousands_of_events_replays_through_the_cli() {
    let home = Home::new();
    let app = crate::support::temp_dir();
    let pyproject = std::fs::read_to_string(format!("{}/pyproject.toml", quickstart()))
        .unwrap()
        .replace("dataset = \"digits\"", "dataset = \"synthetic\"")
        .replace("num-server-rounds = 3", "num-server-rounds = 2")
        .replace("fraction-train = 0.5", "fraction-train = 1.0");
    std::fs::write(app.path().join("pyproject.toml"), pyproject).unwrap();
    let ran = home.flwr(&[
        "run",
        app.path().to_str().unwrap(),
        "--stream",
        "--federation-config",
        "num-supernodes=600",
        "--format",
        "json",
    ]);
    ran.ok();
    assert_eq!(ran.json()["status"], "finished:completed");
    let run_id = ran.json()["run-id"].as_str().unwrap().to_string();
    let replay = home.flwr(&["replay", &run_id, "--format", "json"]);
    replay.ok();
    let verdict = replay.json();
    assert_eq!(verdict["identical"], true, "{verdict}");
    // More than one page of the Local API's record stream.
    assert!(verdict["events-recorded"].as_u64().unwrap() > 4000, "{verdict}");
}
