//! Deployment runs: floret's `flwr-serverapp` runs the built-in ServerApp on
//! Flower 1.27's own SuperLink (`flower-superlink --isolation process`), with
//! real Flower 1.27 SuperNodes (`flower-supernode`) running the app's Python
//! ClientApp, all from PyPI in the test's virtual environment. The messages
//! and their contents travel as Flower's content-addressed objects through
//! the ServerAppIo and Fleet APIs; the results equal a simulation of the
//! same app and seed.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::python::builtin_server_app;
use crate::support::{free_port, python_env, temp_dir, wait_until_within, Home, Ran};

/// A process and everything it starts (its own process group), killed when
/// dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on the group this test created.
        unsafe { libc::killpg(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command, log: &Path) -> Group {
    let log = std::fs::File::create(log).unwrap();
    Group(
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A SuperLink and `nodes` SuperNodes on free loopback ports.
struct Deployment {
    control_port: u16,
    serverappio_port: u16,
    fleet_port: u16,
    simulationio_port: u16,
    link: Link,
    venv: std::path::PathBuf,
    dir: tempfile::TempDir,
    superlink: Option<Group>,
    supernodes: Vec<Group>,
}

impl Deployment {
    /// Starts the SuperLink (its log: `<name>.log`) and waits until it
    /// listens.
    fn start_superlink(&self, name: &str) -> Group {
        let mut superlink = match self.link {
            Link::Flower => {
                let mut command = Command::new(self.venv.join("bin/flower-superlink"));
                command.args(["--insecure", "--isolation", "process"]);
                command
            }
            Link::Floret => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_flower-superlink"));
                command
                    .arg("--insecure")
                    .args([
                        "--simulationio-api-address",
                        &format!("127.0.0.1:{}", self.simulationio_port),
                    ])
                    // The ServerApp's `initial-arrays` runs in the app's Python.
                    .env("FLWR_PYTHON", self.venv.join("bin/python"))
                    .env("NO_COLOR", "1");
                command
            }
        };
        let group = spawn_group(
            superlink
                .args(["--fleet-api-address", &format!("127.0.0.1:{}", self.fleet_port)])
                .args([
                    "--serverappio-api-address",
                    &format!("127.0.0.1:{}", self.serverappio_port),
                ])
                .args(["--control-api-address", &format!("127.0.0.1:{}", self.control_port)])
                .arg("--database")
                .arg(self.dir.path().join("state.db"))
                .arg("--storage-dir")
                .arg(self.dir.path().join("ffs"))
                .env("FLWR_HOME", self.dir.path().join("superlink-home"))
                .env("PATH", venv_path(&self.venv)),
            &self.dir.path().join(format!("{name}.log")),
        );
        wait_until_within("the SuperLink listens", 60, || {
            [self.fleet_port, self.serverappio_port, self.control_port]
                .iter()
                .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok())
        });
        group
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = body.lines().rev().take(30).collect();
                text += &format!("--- {}\n", entry.path().display());
                text += &tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                text += "\n";
            }
        }
        text
    }
}

/// Whose SuperLink a deployment has.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// Flower 1.27's, which launches no ServerApp (`--isolation process`):
    /// the test starts floret's `flwr-serverapp` against it.
    Flower,
    /// floret's, which launches `flwr-serverapp` for every run it accepts.
    Floret,
}

fn flower_deployment(venv: &Path, nodes: usize) -> Deployment {
    deployment(venv, nodes, Link::Flower)
}

/// `PATH` with the environment's `bin` first (Flower's SuperNodes start
/// `flower-superexec` from it).
fn venv_path(venv: &Path) -> String {
    format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn deployment(venv: &Path, nodes: usize, link: Link) -> Deployment {
    let mut deployment = Deployment {
        control_port: free_port(),
        serverappio_port: free_port(),
        fleet_port: free_port(),
        simulationio_port: free_port(),
        link,
        venv: venv.to_path_buf(),
        dir: temp_dir(),
        superlink: None,
        supernodes: Vec::new(),
    };
    deployment.superlink = Some(deployment.start_superlink("superlink"));
    let dir = deployment.dir.path();
    deployment.supernodes = (0..nodes)
        .map(|partition| {
            spawn_group(
                Command::new(venv.join("bin/flower-supernode"))
                    .args([
                        "--insecure",
                        "--superlink",
                        &format!("127.0.0.1:{}", deployment.fleet_port),
                    ])
                    .args(["--clientappio-api-address", &format!("127.0.0.1:{}", free_port())])
                    .args([
                        "--node-config",
                        &format!("partition-id={partition} num-partitions={nodes}"),
                    ])
                    .env("FLWR_HOME", dir.join(format!("supernode-{partition}")))
                    .env("PATH", venv_path(venv)),
                &dir.join(format!("supernode-{partition}.log")),
            )
        })
        .collect();
    deployment
}

/// The `Aggregated MetricRecord` lines of a run's log, in order.
fn aggregates(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("Aggregated MetricRecord"))
        .map(|line| line.trim().to_string())
        .collect()
}

/// Waits for `child` with a deadline; its exit code and output.
fn finish(mut child: Child, seconds: u64, what: &str, context: impl Fn() -> String) -> Ran {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what} did not end within {seconds} s:\n{}\n{}",
                String::from_utf8_lossy(&output.stderr),
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn the_builtin_serverapp_drives_real_supernodes_and_matches_a_simulation() {
    let venv = python_env("1.27.0");
    let deployment = flower_deployment(&venv, 2);
    let app = builtin_server_app("FedAvg");

    let home = Home::new();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[superlink]\ndefault = \"deployment\"\n\n[superlink.deployment]\naddress = \"127.0.0.1:{}\"\n\
             insecure = true\n",
            deployment.control_port
        ),
    )
    .unwrap();
    let submitted = home.flwr(&["run", app.path().to_str().unwrap(), "--format", "json"]);
    submitted.ok();
    let run_id = submitted.json()["run-id"].as_str().unwrap().to_string();

    let serverapp = Command::new(env!("CARGO_BIN_EXE_flwr-serverapp"))
        .args(["--insecure", "--run-once", "--serverappio-api-address"])
        .arg(format!("127.0.0.1:{}", deployment.serverappio_port))
        .env("FLWR_HOME", home.path())
        .env("FLWR_PYTHON", venv.join("bin/python"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = finish(serverapp, 300, "flwr-serverapp", || deployment.logs());
    let log = home.flwr(&["log", &run_id, "--show"]);
    assert_eq!(ended.code, 0, "{}\n{}\n{}", log.stdout, ended.stderr, deployment.logs());

    let listed = home.flwr(&["ls", "--run-id", &run_id, "--format", "json"]);
    listed.ok();
    assert_eq!(
        listed.json()["runs"][0]["status"],
        "finished:completed",
        "{}",
        listed.stdout
    );
    log.ok();
    assert!(log.stdout.contains("[ROUND 3/3]"), "{}", log.stdout);
    assert_eq!(
        log.stdout.matches("Received 2 results and 0 failures").count(),
        6,
        "{}",
        log.stdout
    );

    // The same app and seed simulated with two virtual SuperNodes (full
    // participation, the same partitions): the same aggregates, to the bit.
    assert_eq!(aggregates(&log.stdout), simulated_aggregates(&venv, app.path(), 2));
}

/// The `Aggregated MetricRecord` lines of a simulation of the app with
/// `nodes` virtual SuperNodes.
fn simulated_aggregates(venv: &Path, app: &Path, nodes: usize) -> Vec<String> {
    simulated_aggregates_of(venv, app, nodes, 3, &[])
}

/// As [`simulated_aggregates`], for `rounds` rounds and with `-c` overrides.
fn simulated_aggregates_of(venv: &Path, app: &Path, nodes: usize, rounds: usize, config: &[&str]) -> Vec<String> {
    let simulated = Home::new();
    let federation = format!("num-supernodes={nodes}");
    let mut args = vec![
        "run",
        app.to_str().unwrap(),
        "--stream",
        "--federation-config",
        &federation,
    ];
    for item in config {
        args.extend(["-c", item]);
    }
    let ran = simulated
        .command("flwr", &args)
        .env("FLWR_PYTHON", venv.join("bin/python"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{stdout}{}", String::from_utf8_lossy(&ran.stderr));
    let expected = aggregates(&stdout);
    assert_eq!(expected.len(), 2 * rounds, "{stdout}");
    expected
}

/// Adds `lines` to the app's run configuration.
fn configure(app: &Path, lines: &str) {
    let pyproject = app.join("pyproject.toml");
    let text = std::fs::read_to_string(&pyproject).unwrap();
    assert!(text.contains("seed = 42"));
    std::fs::write(
        &pyproject,
        text.replacen("seed = 42", &format!("seed = 42\n{lines}"), 1),
    )
    .unwrap();
}

/// Submits the app with floret's CLI, from the app's environment; the run id.
fn submit(home: &Home, venv: &Path, app: &Path, config: &[&str]) -> String {
    let mut args = vec!["run", app.to_str().unwrap(), "--format", "json"];
    for item in config {
        args.extend(["-c", item]);
    }
    let output = home
        .command("flwr", &args)
        .env("FLWR_PYTHON", venv.join("bin/python"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    json["run-id"].as_str().unwrap().to_string()
}

/// A `FLWR_HOME` whose default profile is the deployment's SuperLink.
fn deployment_home(deployment: &Deployment) -> Home {
    let home = Home::new();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[superlink]\ndefault = \"deployment\"\n\n[superlink.deployment]\naddress = \"127.0.0.1:{}\"\n\
             insecure = true\n",
            deployment.control_port
        ),
    )
    .unwrap();
    home
}

/// The run's status, as `flwr ls` gives it.
fn status_of(home: &Home, run_id: &str) -> String {
    let listed = home.flwr(&["ls", "--run-id", run_id, "--format", "json"]);
    listed.json()["runs"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the run has finished; its status.
fn wait_for_end(home: &Home, run_id: &str, seconds: u64, deployment: &Deployment) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let status = status_of(home, run_id);
        if status.starts_with("finished") {
            return status;
        }
        if Instant::now() >= deadline {
            let log = home.flwr(&["log", run_id, "--show"]);
            panic!(
                "run {run_id} did not finish within {seconds} s ({status}):\n{}\n{}",
                log.stdout,
                deployment.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn floret_superlink_carries_the_messages_of_real_supernodes_and_matches_a_simulation() {
    let venv = python_env("1.27.0");
    let deployment = deployment(&venv, 2, Link::Floret);
    let app = builtin_server_app("FedAvg");
    let home = deployment_home(&deployment);
    // Submitted with the real Flower 1.27 CLI: floret's SuperLink launches
    // its flwr-serverapp, whose messages reach Flower's SuperNodes through
    // the Fleet API.
    let submitted = Command::new(venv.join("bin/flwr"))
        .args(["run", app.path().to_str().unwrap(), "deployment", "--format", "json"])
        .env("FLWR_HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&submitted.stdout);
    assert!(
        submitted.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let run_id = json["run-id"].to_string().trim_matches('"').to_string();
    let status = wait_for_end(&home, &run_id, 300, &deployment);
    let log = home.flwr(&["log", &run_id, "--show"]);
    assert_eq!(status, "finished:completed", "{}\n{}", log.stdout, deployment.logs());
    assert!(log.stdout.contains("[ROUND 3/3]"), "{}", log.stdout);
    assert_eq!(
        log.stdout.matches("Received 2 results and 0 failures").count(),
        6,
        "{}",
        log.stdout
    );
    assert_eq!(aggregates(&log.stdout), simulated_aggregates(&venv, app.path(), 2));

    // Every message is an event of the run, at each hop, with its size; the
    // strategy's own events are there too.
    // `--events` prints the timeline, then refuses to re-execute the run
    // (exit code 6, saying why).
    let events = home.flwr(&["replay", &run_id, "--events"]);
    assert_eq!(events.code, 6, "{}", events.stderr);
    assert!(events.stderr.contains("is a deployment run"), "{}", events.stderr);
    let hops = |hop: &str| {
        events
            .stdout
            .lines()
            .filter(|line| line.contains("MessageRouted") && line.contains(&format!(" {hop} ")))
            .count()
    };
    // 3 rounds of train and evaluate, to 2 nodes.
    for hop in ["pushed", "delivered", "replied", "answered"] {
        assert_eq!(hops(hop), 12, "{hop}:\n{}", events.stdout);
    }
    assert_eq!(events.stdout.matches("Aggregated").count(), 6, "{}", events.stdout);
}

#[test]
fn a_python_serverapp_is_left_to_flowers_own_serverapp_process() {
    let venv = python_env("1.27.0");
    let deployment = flower_deployment(&venv, 0);
    let home = Home::new();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[superlink]\ndefault = \"deployment\"\n\n[superlink.deployment]\naddress = \"127.0.0.1:{}\"\n\
             insecure = true\n",
            deployment.control_port
        ),
    )
    .unwrap();
    let example = format!("{}/examples/numpy-message-api", env!("CARGO_MANIFEST_DIR"));
    let submitted = home.flwr(&["run", &example, "--format", "json"]);
    submitted.ok();
    let run_id = submitted.json()["run-id"].as_str().unwrap().to_string();
    let serverapp = Command::new(env!("CARGO_BIN_EXE_flwr-serverapp"))
        .args(["--insecure", "--run-once", "--serverappio-api-address"])
        .arg(format!("127.0.0.1:{}", deployment.serverappio_port))
        .env("FLWR_HOME", home.path())
        .env("FLWR_PYTHON", venv.join("bin/python"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = finish(serverapp, 60, "flwr-serverapp", || deployment.logs());
    assert_eq!(ended.code, 1, "{}", ended.stderr);
    let listed = home.flwr(&["ls", "--run-id", &run_id, "--format", "json"]);
    listed.ok();
    let run = &listed.json()["runs"][0];
    assert_eq!(run["status"], "finished:failed", "{run}");
    assert!(
        run["status-details"]
            .as_str()
            .unwrap()
            .contains("is Python code, which Flower's own flwr-serverapp runs"),
        "{run}"
    );
}

#[test]
fn a_supernode_killed_mid_run_is_a_failure_and_the_run_goes_on_as_the_minimums_say() {
    a_supernode_killed_mid_run(Link::Flower);
}

#[test]
fn on_floret_superlink_a_supernode_killed_mid_run_is_a_failure_and_the_run_goes_on() {
    a_supernode_killed_mid_run(Link::Floret);
}

/// Three SuperNodes, one killed (SIGKILL, with its ClientApps) once the
/// first round is over: its messages of the next rounds get no reply within
/// `round-timeout`, each a failure, and the strategy's minimums (2) let the
/// run complete.
fn a_supernode_killed_mid_run(link: Link) {
    let venv = python_env("1.27.0");
    let mut deployment = deployment(&venv, 3, link);
    let app = builtin_server_app("FedAvg");
    configure(
        app.path(),
        "min-available-nodes = 3\nmin-train-nodes = 2\nmin-evaluate-nodes = 2\nround-timeout = 15",
    );
    let home = deployment_home(&deployment);
    let run_id = submit(&home, &venv, app.path(), &[]);
    let serverapp = (link == Link::Flower).then(|| {
        Command::new(env!("CARGO_BIN_EXE_flwr-serverapp"))
            .args(["--insecure", "--run-once", "--serverappio-api-address"])
            .arg(format!("127.0.0.1:{}", deployment.serverappio_port))
            .env("FLWR_HOME", home.path())
            .env("FLWR_PYTHON", venv.join("bin/python"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    });
    wait_until_within("round 2 starts", 240, || {
        home.flwr(&["log", &run_id, "--show"]).stdout.contains("[ROUND 2/3]")
    });
    drop(deployment.supernodes.remove(0));
    if let Some(serverapp) = serverapp {
        let ended = finish(serverapp, 300, "flwr-serverapp", || deployment.logs());
        let log = home.flwr(&["log", &run_id, "--show"]);
        assert_eq!(ended.code, 0, "{}\n{}\n{}", log.stdout, ended.stderr, deployment.logs());
    }
    let status = wait_for_end(&home, &run_id, 300, &deployment);
    let log = home.flwr(&["log", &run_id, "--show"]);
    assert_eq!(status, "finished:completed", "{}\n{}", log.stdout, deployment.logs());
    assert!(log.stdout.contains("[ROUND 3/3]"), "{}", log.stdout);
    assert!(
        log.stdout.contains("Received 2 results and 1 failures"),
        "{}",
        log.stdout
    );
}

#[test]
fn on_floret_superlink_ten_supernodes_run_a_round_as_a_simulation_of_ten_does() {
    let venv = python_env("1.27.0");
    let deployment = deployment(&venv, 10, Link::Floret);
    let app = builtin_server_app("FedAvg");
    configure(app.path(), "min-available-nodes = 10");
    let home = deployment_home(&deployment);
    let run_id = submit(&home, &venv, app.path(), &["num-server-rounds=1"]);
    let status = wait_for_end(&home, &run_id, 400, &deployment);
    let log = home.flwr(&["log", &run_id, "--show"]);
    assert_eq!(status, "finished:completed", "{}\n{}", log.stdout, deployment.logs());
    assert_eq!(
        log.stdout.matches("Received 10 results and 0 failures").count(),
        2,
        "{}",
        log.stdout
    );
    // The same values as a simulation with ten virtual SuperNodes, summed in
    // another order: the real SuperNodes' ids (random) order the replies,
    // and they hold other partitions than the simulated nodes of the same
    // rank, so the sums may differ in their last bits (with two nodes they
    // cannot: a + b is b + a).
    let simulated = simulated_aggregates_of(&venv, app.path(), 10, 1, &["num-server-rounds=1"]);
    assert_close(&aggregates(&log.stdout), &simulated);
}

/// The lines are the same but for numbers, which agree to 1e-12 (relative).
fn assert_close(actual: &[String], expected: &[String]) {
    let tokens = |line: &str| -> Vec<String> {
        line.split(|c: char| "{}:,' ".contains(c))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(actual.len(), expected.len(), "{actual:?}\n{expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        let (ta, te) = (tokens(a), tokens(e));
        assert_eq!(ta.len(), te.len(), "{a}\n{e}");
        for (x, y) in ta.iter().zip(&te) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a}\n{e}"),
                _ => assert_eq!(x, y, "{a}\n{e}"),
            }
        }
    }
}

#[test]
fn on_floret_superlink_flwr_stop_ends_a_deployment_run_and_its_serverapp() {
    let venv = python_env("1.27.0");
    let deployment = deployment(&venv, 2, Link::Floret);
    let app = builtin_server_app("FedAvg");
    let home = deployment_home(&deployment);
    let run_id = submit(&home, &venv, app.path(), &[]);
    wait_until_within("round 1 starts", 240, || {
        home.flwr(&["log", &run_id, "--show"]).stdout.contains("[ROUND 1/3]")
    });
    let stopped = home.flwr(&["stop", &run_id]);
    stopped.ok();
    // `flwr stop` returns once the run has finished.
    assert_eq!(status_of(&home, &run_id), "finished:stopped");
    let log = home.flwr(&["log", &run_id, "--show"]);
    assert!(!log.stdout.contains("[ROUND 3/3]"), "{}", log.stdout);
    // The ServerApp process ends by itself.
    let superlink_log = deployment.dir.path().join("superlink.log");
    wait_until_within("flwr-serverapp exits", 30, || {
        std::fs::read_to_string(&superlink_log).is_ok_and(|text| text.contains("flwr-serverapp exited with code"))
    });
}

#[test]
fn on_floret_superlink_a_superlink_killed_mid_run_fails_the_run_and_the_supernodes_come_back() {
    let venv = python_env("1.27.0");
    let mut deployment = deployment(&venv, 2, Link::Floret);
    let app = builtin_server_app("FedAvg");
    let home = deployment_home(&deployment);
    let run_id = submit(&home, &venv, app.path(), &[]);
    wait_until_within("round 1 starts", 240, || {
        home.flwr(&["log", &run_id, "--show"]).stdout.contains("[ROUND 1/3]")
    });
    // SIGKILL to the SuperLink and its flwr-serverapp, then a restart on
    // the same state.db and ports.
    drop(deployment.superlink.take());
    deployment.superlink = Some(deployment.start_superlink("superlink-restarted"));
    let listed = home.flwr(&["ls", "--run-id", &run_id, "--format", "json"]);
    let run = &listed.json()["runs"][0];
    assert_eq!(run["status"], "finished:failed", "{run}");
    assert!(
        run["status-details"]
            .as_str()
            .unwrap()
            .contains("The SuperLink stopped while the run was active"),
        "{run}"
    );
    // What was recorded before the kill is still there.
    let events = home.flwr(&["replay", &run_id, "--events"]);
    assert!(
        events.stdout.contains("MessageRouted      pushed train"),
        "{}",
        events.stdout
    );
    // The SuperNodes reconnect by themselves, under their node ids, and
    // the next run completes on them.
    let next = submit(&home, &venv, app.path(), &[]);
    let status = wait_for_end(&home, &next, 300, &deployment);
    let log = home.flwr(&["log", &next, "--show"]);
    assert_eq!(status, "finished:completed", "{}\n{}", log.stdout, deployment.logs());
    assert_eq!(
        log.stdout.matches("Received 2 results and 0 failures").count(),
        6,
        "{}",
        log.stdout
    );
}
