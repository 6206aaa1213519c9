//! Users' Python Flower Apps through the Python bridge, with the real `flwr`
//! from PyPI in virtual environments the tests create (1.27.0, the wire
//! generation, and 1.42.0, the newest when this was written), and the apps
//! in `examples/`. No test here skips: without Python or PyPI they fail and
//! say why.
//!
//! - the Message-API and legacy examples run to completion through our CLI and
//!   give the aggregated metrics the real Flower 1.27 gives
//!   (`tests/fixtures/python-apps/`, full participation), on 1.27 and 1.42;
//! - the real `flwr` 1.27 CLI runs a Python app on our SuperLink;
//! - the same seed gives the same event bytes with one and with three
//!   workers, and replay proves a run identical;
//! - a ClientApp that reads the clock is pinned by replay;
//! - a ClientApp that raises, exits, segfaults or hangs gives an error reply
//!   (or no reply after the timeout) and the run goes on; a stop ends a run
//!   at once and leaves no Python process behind;
//! - a ServerApp that raises, an app that cannot be loaded, a missing
//!   interpreter or `flwr` fail with Flower's messages or a clear error;
//! - the built-in ServerApp drives a Python ClientApp.

use std::path::Path;

use serde_json::Value;

use crate::support::{python_env, temp_dir, wait_until_within, Home, Ran};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn example(name: &str) -> String {
    format!("{ROOT}/examples/{name}")
}

/// Runs our `flwr` with `venv` active (as a user who activated it).
fn flwr(home: &Home, venv: &Path, args: &[&str]) -> Ran {
    let output = home
        .command("flwr", args)
        .env("VIRTUAL_ENV", venv)
        .env_remove("FLWR_PYTHON")
        .output()
        .expect("run flwr");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn run_id_of(ran: &Ran) -> u64 {
    let text = format!("{}{}", ran.stdout, ran.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Successfully started run"))
        .unwrap_or_else(|| panic!("no run id in:\n{text}"));
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

/// A copy of an example (or any app directory) to change in a test.
fn copy_app(from: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_name() == "__pycache__" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = temp_dir();
    copy(Path::new(from), dir.path());
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Every `'key': number` of a Python dict repr.
fn metrics(text: &str) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('\'') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('\'') else { break };
        let key = &after[..end];
        let tail = after[end + 1..].trim_start();
        if let Some(value) = tail.strip_prefix(':') {
            let number: String = value
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
                .collect();
            if let Ok(number) = number.parse::<f64>() {
                found.push((key.to_string(), number));
            }
        }
        rest = &after[end + 1..];
    }
    found
}

/// Metrics of one kind ("train", "evaluate" or "central") in one round.
type RoundMetrics = (String, u64, Vec<(String, f64)>);

/// The per-round aggregated metrics Flower's `Strategy.start` logs.
fn message_api_metrics(log: &str) -> Vec<RoundMetrics> {
    let mut found = Vec::new();
    let mut round = 0;
    let mut phase = "";
    for line in log.lines() {
        if let Some(rest) = line.split("[ROUND ").nth(1) {
            round = rest.split('/').next().unwrap().parse().unwrap();
        } else if line.contains("aggregate_train:") {
            phase = "train";
        } else if line.contains("aggregate_evaluate:") {
            phase = "evaluate";
        } else if line.contains("Global evaluation") {
            phase = "central";
        } else if let Some(rest) = line.split("Initial global evaluation results: ").nth(1) {
            found.push(("central".to_string(), 0, metrics(rest)));
        } else if let Some(rest) = line.split("Aggregated MetricRecord: ").nth(1) {
            found.push((phase.to_string(), round, metrics(rest)));
        } else if let Some(rest) = line.split("└──> MetricRecord: ").nth(1) {
            found.push((phase.to_string(), round, metrics(rest)));
        }
    }
    found
}

/// Compares our per-round metrics with the real Flower's fixture (relative
/// 1e-12: Flower's own runs differ in the last bits, see the fixtures'
/// README).
#[track_caller]
fn assert_matches_fixture(log: &str, fixture: &str) {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/tests/fixtures/python-apps/{fixture}")).unwrap())
            .unwrap();
    let ours = message_api_metrics(log);
    let mut compared = 0;
    for (kind, key) in [
        ("train", "train_metrics_clientapp"),
        ("evaluate", "evaluate_metrics_clientapp"),
        ("central", "evaluate_metrics_serverapp"),
    ] {
        for (round, expected) in fixture[key].as_object().unwrap() {
            let round: u64 = round.parse().unwrap();
            let (_, _, got) = ours
                .iter()
                .find(|(k, r, _)| k == kind && *r == round)
                .unwrap_or_else(|| panic!("no {kind} metrics for round {round} in:\n{log}"));
            for (name, value) in expected.as_object().unwrap() {
                let value = value.as_f64().unwrap();
                let (_, mine) = got
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("no {name} in {kind} round {round}: {got:?}"));
                let scale = value.abs().max(1e-300);
                assert!(
                    (mine - value).abs() / scale <= 1e-12,
                    "{kind} round {round} {name}: ours {mine:?}, Flower's {value:?}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 20, "only {compared} metrics compared");
}

#[test]
fn the_message_api_example_gives_flowers_results_and_replays_identically() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let ran = flwr(&home, &venv, &["run", &example("numpy-message-api"), "--stream"]);
    ran.ok();
    assert_matches_fixture(&ran.stdout, "numpy-message-api.flower-1.27.0.json");
    // `print` from the ServerApp reaches the run's log.
    assert!(
        ran.stdout.contains("Final global model: central accuracy 0.9400"),
        "{}",
        ran.stdout
    );
    let run_id = run_id_of(&ran).to_string();
    let shown = flwr(&home, &venv, &["log", &run_id, "--show"]);
    assert!(shown.stdout.contains("Final global model"), "{}", shown.stdout);
    let replay = flwr(&home, &venv, &["replay", &run_id]);
    assert_eq!(replay.code, 0, "{}{}", replay.stdout, replay.stderr);
    assert!(replay.stdout.contains("is identical"), "{}", replay.stdout);
    let events = flwr(&home, &venv, &["replay", &run_id, "--events"]);
    events.ok();
    for kind in ["PythonStarted", "MessageSent", "ReplyDelivered", "RoundStarted"] {
        assert!(events.stdout.contains(kind), "no {kind} in:\n{}", events.stdout);
    }
    let run = home.run_json(run_id.parse().unwrap());
    assert_eq!(run["status"], "finished:completed", "{run}");
}

#[test]
fn the_examples_run_on_the_newest_flwr_too() {
    let venv = python_env("1.42.0");
    let home = Home::new();
    let ran = flwr(&home, &venv, &["run", &example("numpy-message-api"), "--stream"]);
    ran.ok();
    assert_matches_fixture(&ran.stdout, "numpy-message-api.flower-1.42.0.json");
    let replay = flwr(&home, &venv, &["replay", &run_id_of(&ran).to_string()]);
    assert_eq!(replay.code, 0, "{}{}", replay.stdout, replay.stderr);
    let legacy = flwr(&home, &venv, &["run", &example("sklearn-legacy"), "--stream"]);
    legacy.ok();
    assert!(
        legacy.stdout.contains("History (metrics, centralized)"),
        "{}",
        legacy.stdout
    );
}

#[test]
fn the_legacy_example_gives_flowers_results_and_replay_says_why_it_may_differ() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let ran = flwr(&home, &venv, &["run", &example("sklearn-legacy"), "--stream"]);
    ran.ok();
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{ROOT}/tests/fixtures/python-apps/sklearn-legacy.flower-1.27.0.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // `History (loss, centralized)`: the central evaluation of each round's
    // aggregate, line by line (`round N: loss`).
    let centralized = fixture["history"]["History (loss, centralized)"].as_object().unwrap();
    let block = ran
        .stdout
        .split("History (loss, centralized):")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{}", ran.stdout));
    for (round, expected) in centralized {
        let line = block
            .lines()
            .find(|l| l.contains(&format!("round {round}:")))
            .unwrap_or_else(|| panic!("no round {round} in:\n{block}"));
        let ours: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let expected = expected.as_f64().unwrap();
        assert!(
            (ours - expected).abs() / expected.abs() <= 1e-12,
            "round {round}: ours {ours}, Flower's {expected}"
        );
    }
    let replay = flwr(&home, &venv, &["replay", &run_id_of(&ran).to_string()]);
    match replay.code {
        0 => {}
        5 => assert!(replay.stdout.contains("legacy API"), "{}", replay.stdout),
        _ => panic!("{}{}", replay.stdout, replay.stderr),
    }
}

#[test]
fn the_real_flwr_cli_runs_a_python_app_on_our_superlink() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    // Our CLI starts our SuperLink in the environment (the Python CLI would
    // start Python's).
    flwr(&home, &venv, &["ls"]).ok();
    let output = std::process::Command::new(venv.join("bin/flwr"))
        .args(["run", &example("numpy-message-api")])
        .env("FLWR_HOME", home.path())
        .env("FLWR_LOCAL_CONTROL_API_PORT", home.control_port.to_string())
        .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", home.simulationio_port.to_string())
        .env("FLWR_TELEMETRY_ENABLED", "0")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let submitted = Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    submitted.ok();
    let run_id = run_id_of(&submitted);
    let run = home.wait_for_status(run_id, |status| status.starts_with("finished"));
    assert_eq!(run["status"], "finished:completed", "{run}");
    let log = flwr(&home, &venv, &["log", &run_id.to_string(), "--show"]);
    assert_matches_fixture(&log.stdout, "numpy-message-api.flower-1.27.0.json");
}

/// The simulation events of a run, as stored.
fn simulation_payloads(home: &Home, run_id: u64) -> Vec<(String, Vec<u8>)> {
    let reader = floret::store::Reader::open(&home.path().join("local-superlink/state.db")).unwrap();
    reader
        .view()
        .run_events(floret::domain::ids::RunId(run_id))
        .unwrap()
        .into_iter()
        .filter(|stored| stored.event.is_simulation())
        .filter(|stored| !matches!(stored.event, floret::domain::event::Event::PythonStarted(_)))
        .map(|stored| {
            let (kind, _, payload) = floret::codec::encode(&stored.event);
            (kind.to_string(), payload)
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_event_bytes_with_one_and_with_three_workers() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = copy_app(&example("numpy-message-api"));
    // Half of the nodes each round: sampling comes into play too.
    edit(
        &app.path().join("pyproject.toml"),
        "fraction-train = 1.0",
        "fraction-train = 0.5",
    );
    let app = app.path().to_str().unwrap();
    let seed = crate::support::test_seed(7);
    let mut runs = Vec::new();
    for cpus in ["1", "3"] {
        let ran = flwr(
            &home,
            &venv,
            &[
                "run",
                app,
                "--stream",
                "-c",
                &format!("seed={seed}"),
                "--federation-config",
                &format!("backend.init-args.num-cpus={cpus}"),
            ],
        );
        ran.ok();
        runs.push(run_id_of(&ran));
    }
    let one = simulation_payloads(&home, runs[0]);
    let three = simulation_payloads(&home, runs[1]);
    assert!(one.len() > 50, "{} events", one.len());
    assert!(
        one == three,
        "seed {seed}: the runs differ (rerun with FLORET_TEST_SEED={seed})"
    );
}

/// A small Message-API app whose ClientApp misbehaves on purpose, chosen by
/// the run config (`fault`, on partition `fault-partition`).
fn faulty_app() -> tempfile::TempDir {
    let app = copy_app(&example("numpy-message-api"));
    let client = app.path().join("numpy_message_api/client_app.py");
    edit(
        &client,
        "@app.train()\ndef train(msg: Message, context: Context) -> Message:\n",
        "def _misbehave(context):\n    import ctypes, logging, os, signal, time\n    \
         logging.warning(\"ClientApp of partition %s here\", context.node_config[\"partition-id\"])\n    \
         if context.node_config[\"partition-id\"] != context.run_config[\"fault-partition\"]:\n        return\n    \
         fault = context.run_config[\"fault\"]\n    if fault == \"raise\":\n        raise ValueError(\"boom\")\n    \
         if fault == \"exit\":\n        os._exit(3)\n    if fault == \"segfault\":\n        ctypes.string_at(0)\n    \
         if fault == \"hang\":\n        time.sleep(600)\n    if fault == \"clock\":\n        \
         context.state[\"clock\"] = MetricRecord({\"ns\": time.time_ns()})\n\n\n\
         @app.train()\ndef train(msg: Message, context: Context) -> Message:\n    _misbehave(context)\n",
    );
    let server = app.path().join("numpy_message_api/server_app.py");
    edit(
        &server,
        "        evaluate_fn=central_evaluate,\n",
        "        evaluate_fn=central_evaluate,\n        timeout=config[\"timeout\"],\n",
    );
    edit(
        &app.path().join("pyproject.toml"),
        "seed = 42",
        "seed = 42\nfault = \"none\"\nfault-partition = 3\ntimeout = 3600.0",
    );
    app
}

#[test]
fn a_clientapp_that_raises_exits_or_segfaults_gives_an_error_reply_and_the_run_goes_on() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = faulty_app();
    let app = app.path().to_str().unwrap();
    for (fault, expect) in [
        ("raise", "ClientAppException"),
        ("exit", "exit code 3"),
        ("segfault", "killed by signal 11"),
    ] {
        let ran = flwr(
            &home,
            &venv,
            &["run", app, "--stream", "-c", &format!("fault=\"{fault}\"")],
        );
        ran.ok();
        assert!(
            ran.stdout.contains("Received 9 results and 1 failures"),
            "{fault}:\n{}",
            ran.stdout
        );
        assert!(ran.stdout.contains(expect), "{fault}:\n{}", ran.stdout);
        // `logging` from the ClientApp reaches the log.
        assert!(ran.stdout.contains("ClientApp of partition 3 here"), "{}", ran.stdout);
        let replay = flwr(&home, &venv, &["replay", &run_id_of(&ran).to_string()]);
        assert_eq!(replay.code, 0, "{fault}: {}{}", replay.stdout, replay.stderr);
        if fault != "raise" {
            // A lost worker is an outside input: re-injected, not re-run.
            assert!(replay.stdout.contains("Re-injected"), "{}", replay.stdout);
        }
    }
}

#[test]
fn a_hanging_clientapp_misses_the_strategys_timeout_and_the_run_goes_on() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = faulty_app();
    let ran = flwr(
        &home,
        &venv,
        &[
            "run",
            app.path().to_str().unwrap(),
            "--stream",
            "-c",
            "fault=\"hang\" timeout=2.0",
        ],
    );
    ran.ok();
    // The hanging node's reply is missing (Flower's timeout semantics), the
    // others arrive.
    assert!(
        ran.stdout.contains("Received 9 results and 0 failures"),
        "{}",
        ran.stdout
    );
    let replay = flwr(&home, &venv, &["replay", &run_id_of(&ran).to_string()]);
    assert_eq!(replay.code, 0, "{}{}", replay.stdout, replay.stderr);
    assert!(replay.stdout.contains("a timeout of node"), "{}", replay.stdout);
}

#[test]
fn replay_pins_a_clientapp_that_reads_the_clock() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = faulty_app();
    // The clock reaches partition 0's first reply (as an error it raises).
    edit(
        &app.path().join("numpy_message_api/client_app.py"),
        "context.state[\"clock\"] = MetricRecord({\"ns\": time.time_ns()})",
        "raise ValueError(f\"the time is {time.time_ns()}\")",
    );
    let ran = flwr(
        &home,
        &venv,
        &[
            "run",
            app.path().to_str().unwrap(),
            "--stream",
            "-c",
            "fault=\"clock\" fault-partition=0",
        ],
    );
    ran.ok();
    let replay = flwr(
        &home,
        &venv,
        &["replay", &run_id_of(&ran).to_string(), "--format", "json"],
    );
    assert_eq!(replay.code, 5, "{}{}", replay.stdout, replay.stderr);
    let verdict = replay.json();
    assert_eq!(verdict["divergence"]["kind"], "ReplyDelivered", "{verdict}");
    assert_eq!(verdict["divergence"]["round"], 1, "{verdict}");
    assert!(verdict["divergence"]["node-id"].is_string(), "{verdict}");
    let fields = verdict["divergence"]["fields"].to_string();
    assert!(fields.contains("reason"), "{verdict}");
}

/// Python processes of this home's runs (their environment names it), not
/// counting the interpreters the SuperLink keeps warm between runs.
fn python_processes_of(home: &Home) -> Vec<u32> {
    bridge_processes_of(home)
        .into_iter()
        .filter(|(_, warm)| !warm)
        .map(|(pid, _)| pid)
        .collect()
}

/// The interpreters the SuperLink keeps warm (its own children).
fn warm_processes_of(home: &Home) -> Vec<u32> {
    bridge_processes_of(home)
        .into_iter()
        .filter(|(_, warm)| *warm)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every live bridge process serving this home, and whether it is a warm
/// interpreter (its parent is the SuperLink).
fn bridge_processes_of(home: &Home) -> Vec<(u32, bool)> {
    let needle = format!("FLWR_HOME={}", home.path().display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()) == Some('Z');
        let environ = String::from_utf8_lossy(&environ);
        if !zombie
            && environ.split('\0').any(|var| var == needle)
            && String::from_utf8_lossy(&cmdline).contains("floret_bridge")
        {
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .unwrap_or("0");
            let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
            pids.push((pid, parent_name.trim().starts_with("flower-superlin")));
        }
    }
    pids
}

/// Submits the faulty app with a hanging ClientApp and waits until its
/// calls are under way; returns the run id.
fn a_hanging_python_run(home: &Home, venv: &Path, app: &Path) -> u64 {
    let submitted = flwr(
        home,
        venv,
        &["run", app.to_str().unwrap(), "--format", "json", "-c", "fault=\"hang\""],
    );
    submitted.ok();
    let run_id: u64 = submitted.json()["run-id"].as_str().unwrap().parse().unwrap();
    wait_until_within("the ClientApps are called", 120, || {
        flwr(home, venv, &["log", &run_id.to_string(), "--show"])
            .stdout
            .contains("configure_train: Sampled")
    });
    assert!(!python_processes_of(home).is_empty());
    run_id
}

#[test]
fn a_stop_ends_a_python_run_at_once_and_leaves_no_python_behind() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = faulty_app();
    // One of the calls hangs; a ClientApp's output reaches the log with its
    // reply, so the log says nothing of them yet.
    let run_id = a_hanging_python_run(&home, &venv, app.path());
    flwr(&home, &venv, &["stop", &run_id.to_string()]).ok();
    assert_eq!(home.run_json(run_id)["status"], "finished:stopped");
    wait_until_within("the run's Python processes are gone", 20, || {
        python_processes_of(&home).is_empty()
    });
    let replay = flwr(&home, &venv, &["replay", &run_id.to_string()]);
    assert_eq!(replay.code, 0, "{}{}", replay.stdout, replay.stderr);
    assert!(replay.stdout.contains("the stop request"), "{}", replay.stdout);
}

#[test]
fn a_killed_app_process_or_superlink_leaves_no_python_behind() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = faulty_app();

    // The app process (flwr-simulation) is killed while Python computes.
    let run_id = a_hanging_python_run(&home, &venv, app.path());
    let simulationio = format!("127.0.0.1:{}", home.simulationio_port);
    let app_processes = crate::support::processes_with(&["flwr-simulation", &simulationio]);
    assert_eq!(app_processes.len(), 1, "{app_processes:?}");
    // SAFETY: kill(2) on the app process this test's SuperLink started.
    unsafe { libc::kill(app_processes[0] as i32, libc::SIGKILL) };
    home.wait_for_status(run_id, |s| s == "finished:failed");
    wait_until_within("the killed run's Python processes are gone", 20, || {
        python_processes_of(&home).is_empty()
    });

    // The SuperLink is killed: its run's processes and its warm interpreter
    // go with it.
    a_hanging_python_run(&home, &venv, app.path());
    assert!(!warm_processes_of(&home).is_empty());
    let pid = home.superlink()["superlink"]["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) on the SuperLink this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until_within("every Python process of the home is gone", 20, || {
        bridge_processes_of(&home).is_empty()
    });
    assert!(crate::support::processes_with(&["flwr-simulation", &simulationio]).is_empty());
}

#[test]
fn a_serverapp_that_raises_or_an_app_that_cannot_load_fails_the_run_with_flowers_messages() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let raising = copy_app(&example("numpy-message-api"));
    edit(
        &raising.path().join("numpy_message_api/server_app.py"),
        "    config = context.run_config\n",
        "    config = context.run_config\n    raise RuntimeError(\"the ServerApp gives up\")\n",
    );
    let ran = flwr(&home, &venv, &["run", raising.path().to_str().unwrap(), "--stream"]);
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("ServerApp thread raised an exception: the ServerApp gives up"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("Traceback (most recent call last)"),
        "{}",
        ran.stdout
    );
    let run = home.run_json(run_id_of(&ran));
    assert!(
        run["status-details"]
            .as_str()
            .unwrap()
            .contains("Exception in ServerApp thread"),
        "{run}"
    );

    let unloadable = copy_app(&example("numpy-message-api"));
    edit(
        &unloadable.path().join("pyproject.toml"),
        "numpy_message_api.client_app:app",
        "numpy_message_api.client_app:missing",
    );
    let ran = flwr(&home, &venv, &["run", unloadable.path().to_str().unwrap(), "--stream"]);
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("LoadClientAppError"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("Unable to find attribute missing"),
        "{}",
        ran.stdout
    );
}

#[test]
fn a_missing_interpreter_or_flwr_is_refused_before_the_run_starts() {
    let home = Home::new();
    let nowhere = temp_dir();
    let missing = nowhere.path().join("bin/python");
    let ran = home
        .command("flwr", &["run", &example("numpy-message-api")])
        .env("FLWR_PYTHON", &missing)
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ran.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(stderr.contains("FLWR_PYTHON="), "{stderr}");

    // An environment without flwr.
    let bare = temp_dir();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(&python)
        .args(["-m", "venv", "--without-pip"])
        .arg(bare.path())
        .status()
        .unwrap();
    assert!(status.success(), "{python} -m venv failed");
    let ran = home
        .command("flwr", &["run", &example("numpy-message-api")])
        .env("VIRTUAL_ENV", bare.path())
        .env_remove("FLWR_PYTHON")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ran.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(stderr.contains("has no `flwr` package"), "{stderr}");
    assert!(stderr.contains("FLWR_PYTHON"), "{stderr}");
    assert_eq!(
        home.flwr(&["ls", "--format", "json"]).json()["runs"],
        serde_json::json!([])
    );
}

/// `examples/numpy-message-api` with floret's built-in ServerApp (`strategy`)
/// instead of its own, starting from the example's initial model.
pub(crate) fn builtin_server_app(strategy: &str) -> tempfile::TempDir {
    let app = copy_app(&example("numpy-message-api"));
    std::fs::write(
        app.path().join("numpy_message_api/initial.py"),
        "from flwr.app import Array, ArrayRecord\n\nfrom numpy_message_api import task\n\n\n\
         def initial_arrays(context):\n    weights, bias = task.init_model(context.run_config[\"num-features\"])\n    \
         return ArrayRecord({\"weights\": Array(weights), \"bias\": Array(bias)})\n",
    )
    .unwrap();
    let pyproject = app.path().join("pyproject.toml");
    edit(&pyproject, "numpy_message_api.server_app:app", "floret:serverapp");
    edit(
        &pyproject,
        "seed = 42",
        &format!(
            "seed = 42\ninitial-arrays = \"numpy_message_api.initial:initial_arrays\"\nstrategy.name = \"{strategy}\"\n\
             train.lr = 0.5\ntrain.local-steps = 5"
        ),
    );
    std::fs::write(app.path().join("floret.py"), "serverapp = None\n").unwrap();
    app
}

#[test]
fn the_builtin_serverapp_drives_a_python_clientapp() {
    let venv = python_env("1.27.0");
    let home = Home::new();
    let app = builtin_server_app("FedAdam");
    let ran = flwr(
        &home,
        &venv,
        &[
            "run",
            app.path().to_str().unwrap(),
            "--stream",
            "-c",
            "train.local-steps=3",
        ],
    );
    ran.ok();
    assert!(ran.stdout.contains("Starting FedAdam strategy"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("Received 10 results and 0 failures"),
        "{}",
        ran.stdout
    );
    let replay = flwr(&home, &venv, &["replay", &run_id_of(&ran).to_string()]);
    assert_eq!(replay.code, 0, "{}{}", replay.stdout, replay.stderr);
}

/// The SuperLink's log of this home.
fn superlink_log(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("local-superlink/superlink.log")).unwrap_or_default()
}

#[test]
fn a_warm_interpreter_serves_the_next_python_run_with_the_same_event_bytes() {
    let venv = python_env("1.27.0");
    let app = copy_app(&example("numpy-message-api"));
    // Output written to the descriptor itself, as C extensions and
    // subprocesses write, must reach the log from a warm interpreter too.
    edit(
        &app.path().join("numpy_message_api/server_app.py"),
        "    print(f\"Final global model",
        "    import os\n    os.write(1, b\"written to descriptor 1\\n\")\n    print(f\"Final global model",
    );
    let app = app.path().to_str().unwrap();
    let seed = crate::support::test_seed(11);
    let seed_config = format!("seed={seed}");
    let home = Home::new();
    let run = |home: &Home, warm: bool| {
        let mut command = home.command("flwr", &["run", app, "--stream", "-c", &seed_config]);
        command.env("VIRTUAL_ENV", &venv).env_remove("FLWR_PYTHON");
        if !warm {
            command.env("FLORET_WARM_PYTHON", "0");
        }
        let output = command.output().expect("run flwr");
        let ran = Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        ran.ok();
        for line in ["Final global model: central accuracy", "written to descriptor 1"] {
            assert!(ran.stdout.contains(line), "no {line:?} in:\n{}", ran.stdout);
        }
        run_id_of(&ran)
    };

    let started_warm = |home: &Home, run_id: u64| {
        superlink_log(home).lines().any(|line| {
            line.contains("starts from a warm Python interpreter") && line.contains(&format!("run_id={run_id} "))
        })
    };
    let ready = |home: &Home| {
        superlink_log(home)
            .matches("a warm Python interpreter is ready")
            .count()
    };

    // A cold start: warm interpreters off, the run starts its own.
    let off = Home::new();
    let cold = run(&off, false);
    assert!(warm_processes_of(&off).is_empty(), "{:?}", bridge_processes_of(&off));
    assert!(!superlink_log(&off).contains("warm Python interpreter"));

    // The first Python run of a SuperLink starts the warm interpreter and
    // forks from it; the next reuses it. Same bytes as the cold run.
    let first = run(&home, true);
    assert!(started_warm(&home, first), "{}", superlink_log(&home));
    let second = run(&home, true);
    assert!(started_warm(&home, second), "{}", superlink_log(&home));
    assert_eq!(ready(&home), 1, "{}", superlink_log(&home));
    for (name, warm) in [("first", first), ("second", second)] {
        assert!(
            simulation_payloads(&off, cold) == simulation_payloads(&home, warm),
            "seed {seed}: the {name} warm run's events differ from the cold run's (rerun with FLORET_TEST_SEED={seed})"
        );
    }
    let replay = flwr(&home, &venv, &["replay", &second.to_string()]);
    assert_eq!(replay.code, 0, "{}{}", replay.stdout, replay.stderr);
    // An install into the environment makes the warm interpreter stale: the
    // next run gets a fresh one.
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("site-packages"))
        .find(|path| path.is_dir())
        .expect("the venv's site-packages");
    std::fs::File::open(&site)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
        .unwrap();
    let after_install = run(&home, true);
    let log = superlink_log(&home);
    assert!(log.contains("is stale; replacing it"), "{log}");
    assert_eq!(ready(&home), 2, "{log}");
    assert!(started_warm(&home, after_install), "{log}");
    // Nothing of the runs is left; one interpreter stays warm.
    wait_until_within("the runs' Python processes are gone", 20, || {
        python_processes_of(&home).is_empty()
    });
    assert_eq!(warm_processes_of(&home).len(), 1, "{:?}", bridge_processes_of(&home));

    // The warm interpreter ends with its SuperLink.
    let kept = warm_processes_of(&home);
    drop(home);
    wait_until_within("the warm interpreter ends with its SuperLink", 20, || {
        kept.iter().all(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty()
                || stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    });
}

#[test]
fn client_mods_lifespans_queries_and_custom_actions_run_as_under_flower() {
    for version in ["1.27.0", "1.42.0"] {
        let venv = python_env(version);
        let home = Home::new();
        let app = copy_app(&format!("{ROOT}/tests/fixtures/features-app"));
        let ran = flwr(
            &home,
            &venv,
            &[
                "run",
                app.path().to_str().unwrap(),
                "--stream",
                "--federation-config",
                "num-supernodes=3",
                "-c",
                "greeting=\"hi\"",
            ],
        );
        ran.ok();
        let log = &ran.stdout;
        for partition in 0..3 {
            for expected in [
                // The mod sees every call and keeps its count in the node's state.
                format!("query: partition {partition} answered query with hi, call 1"),
                format!("train.finetune: partition {partition} answered finetune with hi, call 2"),
                // A failed call keeps no state: the count goes on from 2.
                format!("query: partition {partition} answered query with hi, call 3"),
                format!("client lifespan: enter partition {partition}"),
                format!("client lifespan: exit partition {partition}"),
            ] {
                assert!(log.contains(&expected), "flwr {version}: no {expected:?} in:\n{log}");
            }
        }
        assert_eq!(
            log.matches("train.missing: error from a node:").count(),
            3,
            "flwr {version}:\n{log}"
        );
        assert!(
            log.contains("No train function registered with name 'missing'"),
            "flwr {version}:\n{log}"
        );
        for expected in ["server lifespan: enter", "server lifespan: exit"] {
            assert!(log.contains(expected), "flwr {version}: no {expected:?} in:\n{log}");
        }
        let replay = flwr(&home, &venv, &["replay", &run_id_of(&ran).to_string()]);
        assert_eq!(replay.code, 0, "flwr {version}: {}{}", replay.stdout, replay.stderr);
    }
}

/// The lines of the `sh` code blocks of a README: the commands of its
/// Python sections.
fn sh_block_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    let mut inside = None;
    for line in text.lines() {
        if let Some(language) = line.strip_prefix("```") {
            inside = match inside {
                None => Some(language == "sh"),
                Some(_) => None,
            };
            continue;
        }
        if inside == Some(true) {
            lines.push(line.to_string());
        }
    }
    lines
}

#[test]
fn the_python_commands_of_the_readmes_work_as_shown() {
    // The READMEs install the newest flwr and the examples' packages.
    let venv = python_env("1.42.0");
    let readmes = [
        format!("{ROOT}/README.md"),
        format!("{ROOT}/examples/numpy-message-api/README.md"),
        format!("{ROOT}/examples/sklearn-legacy/README.md"),
    ];
    for readme in &readmes {
        let lines = sh_block_lines(Path::new(readme));
        assert!(!lines.is_empty(), "{readme} shows no Python commands");
        let home = Home::new();
        let mut run_id: Option<u64> = None;
        let mut ran = 0;
        for line in &lines {
            let command = line.rsplit(" && ").next().unwrap().split('#').next().unwrap().trim();
            if let Some(packages) = command.split_once("pip install ").map(|(_, p)| p) {
                // What the README installs is what this test's venv holds.
                let shown = std::process::Command::new(venv.join("bin/pip"))
                    .arg("show")
                    .args(packages.split_whitespace())
                    .output()
                    .unwrap();
                assert!(
                    shown.status.success(),
                    "{readme}: `{command}`: the test's venv lacks one of them"
                );
                continue;
            }
            let command = command.strip_prefix("target/release/").unwrap_or(command);
            if !command.starts_with("flwr ") {
                continue;
            }
            let command = match run_id {
                Some(id) => command.replace("RUN_ID", &id.to_string()),
                None => command.to_string(),
            };
            assert!(!command.contains("RUN_ID"), "{readme}: `{command}` before any run");
            // As after `. VENV/bin/activate`.
            let script = format!("export VIRTUAL_ENV='{}'; {command}", venv.display());
            let out = home.shell(&script, Path::new(ROOT));
            // A legacy ServerApp's replay may diverge, and says why (5).
            let legacy_divergence =
                command.starts_with("flwr replay") && out.code == 5 && out.stdout.contains("Flower's legacy API");
            assert!(
                out.code == 0 || legacy_divergence,
                "{readme}: `{command}` exited {}\n{}\n{}",
                out.code,
                out.stdout,
                out.stderr
            );
            if command.starts_with("flwr run") {
                run_id = Some(run_id_of(&out));
            }
            ran += 1;
        }
        assert!(ran > 0, "{readme}: no flwr command ran");
    }
}
