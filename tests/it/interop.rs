//! Interop with the real thing: Flower 1.27.0 from PyPI, in a virtual
//! environment the test creates under the target directory (first use takes
//! a minute; later runs reuse it). No test here skips: without Python or PyPI
//! they fail and say why.
//!
//! - the Python `flwr` CLI submits, lists, shows, streams and stops runs on
//!   our `flower-superlink`;
//! - our `flwr` CLI submits, lists, streams and stops runs on the Python
//!   `flower-superlink`, and our `flwr-simulation` executes its run through
//!   the Python SuperLink's SimulationIo API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{free_ports, quickstart, temp_dir, wait_until, Home, Ran};

/// A virtual environment with Flower 1.27.0 (shared with the Python app
/// tests).
pub(crate) fn flower_venv() -> PathBuf {
    crate::support::python_env("1.27.0")
}

/// Runs the Python `flwr` with `home`'s environment.
fn python_flwr(venv: &Path, home: &Home, args: &[&str]) -> Ran {
    let output = Command::new(venv.join("bin/flwr"))
        .args(args)
        .env("FLWR_HOME", home.path())
        .env("FLWR_LOCAL_CONTROL_API_PORT", home.control_port.to_string())
        .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", home.simulationio_port.to_string())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .env("FLWR_TELEMETRY_ENABLED", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn run_id_of(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains("Successfully started run"))
        .unwrap_or_else(|| panic!("{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_python_flwr_cli_drives_our_superlink() {
    let venv = flower_venv();
    let home = Home::new();
    // Start our SuperLink (the Python CLI would start Python's otherwise).
    home.flwr(&["ls"]).ok();

    let submitted = python_flwr(&venv, &home, &["run", &quickstart()]);
    submitted.ok();
    let run_id = run_id_of(&submitted.stdout);

    let streamed = python_flwr(&venv, &home, &["log", &run_id.to_string()]);
    streamed.ok();
    assert!(streamed.stdout.contains("[ROUND 3/3]"), "{}", streamed.stdout);
    assert!(
        streamed.stdout.contains("Strategy execution finished in"),
        "{}",
        streamed.stdout
    );

    let listed = python_flwr(&venv, &home, &["ls"]);
    listed.ok();
    assert!(listed.stdout.contains(&run_id.to_string()), "{}", listed.stdout);
    assert!(listed.stdout.contains("finished:completed"), "{}", listed.stdout);

    let shown = python_flwr(
        &venv,
        &home,
        &["ls", "--run-id", &run_id.to_string(), "--format", "json"],
    );
    shown.ok();
    let json = shown.json();
    assert_eq!(json["runs"][0]["status"], "finished:completed");
    assert_eq!(json["runs"][0]["fab-id"], "floret/quickstart");
    // The traffic and ClientApp time the run measured reach Flower's CLI.
    assert!(
        json["runs"][0]["network-traffic"]["total-bytes"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert!(
        json["runs"][0]["compute-time"]["clientapp-seconds"].as_f64().unwrap() > 0.0,
        "{json}"
    );
    // The FAB the Python CLI built is the one ours builds: same hash.
    let ours = floret::fab::build_fab(Path::new(&quickstart())).unwrap();
    assert_eq!(json["runs"][0]["fab-hash"], ours.hash[..8]);

    let log = python_flwr(&venv, &home, &["log", &run_id.to_string(), "--show"]);
    log.ok();
    assert!(log.stdout.contains("Starting Flower Simulation"), "{}", log.stdout);

    let long = run_id_of(
        &python_flwr(
            &venv,
            &home,
            &["run", &quickstart(), "--run-config", "num-server-rounds=100000"],
        )
        .stdout,
    );
    home.wait_for_status(long, |s| s == "running");
    let stopped = python_flwr(&venv, &home, &["stop", &long.to_string()]);
    stopped.ok();
    assert!(
        stopped.stdout.contains(&format!("Run {long} successfully stopped.")),
        "{}",
        stopped.stdout
    );
    assert_eq!(home.run_json(long)["status"], "finished:stopped");
}

/// A Python `flower-superlink` on free ports; killed when dropped.
struct PythonSuperLink {
    child: Child,
    control_port: u16,
    simulationio_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PythonSuperLink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_superlink(venv: &Path) -> PythonSuperLink {
    let dir = temp_dir();
    let (control_port, simulationio_port) = free_ports();
    let child = Command::new(venv.join("bin/flower-superlink"))
        .args(["--insecure", "--simulation", "--isolation", "process"])
        .args(["--control-api-address", &format!("127.0.0.1:{control_port}")])
        .args(["--simulationio-api-address", &format!("127.0.0.1:{simulationio_port}")])
        .arg("--database")
        .arg(dir.path().join("state.db"))
        .arg("--storage-dir")
        .arg(dir.path().join("ffs"))
        .env("FLWR_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the Python SuperLink listens", || {
        std::net::TcpStream::connect(("127.0.0.1", control_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", simulationio_port)).is_ok()
    });
    PythonSuperLink {
        child,
        control_port,
        simulationio_port,
        _dir: dir,
    }
}

#[test]
fn our_flwr_cli_drives_the_python_superlink() {
    let venv = flower_venv();
    let python = python_superlink(&venv);
    let home = Home::new();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[superlink]\ndefault = \"python\"\n\n[superlink.python]\naddress = \"127.0.0.1:{}\"\ninsecure = true\n\
             options.num-supernodes = 4\n",
            python.control_port
        ),
    )
    .unwrap();

    let submitted = home.flwr(&["run", &quickstart(), "-c", "num-server-rounds=2"]);
    submitted.ok();
    let run_id = run_id_of(&submitted.stdout);
    let listed = home.flwr(&["ls", "--format", "json"]);
    listed.ok();
    assert_eq!(listed.json()["runs"][0]["status"], "pending");

    // Python's SuperLink runs with `--isolation process`: our app process
    // claims the run through its SimulationIo API and executes it.
    let output = Command::new(env!("CARGO_BIN_EXE_flwr-simulation"))
        .args([
            "--insecure",
            "--simulationio-api-address",
            &format!("127.0.0.1:{}", python.simulationio_port),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let streamed = home.flwr(&["log", &run_id.to_string()]);
    streamed.ok();
    assert!(streamed.stdout.contains("[ROUND 2/2]"), "{}", streamed.stdout);
    assert!(
        streamed.stdout.contains("does not record simulation events"),
        "{}",
        streamed.stdout
    );
    let table = home.flwr(&["ls"]);
    table.ok();
    assert!(
        table.stdout.contains(&run_id.to_string()) && table.stdout.contains("finished:completed"),
        "{}",
        table.stdout
    );

    // A run nobody executes can be stopped.
    let pending = run_id_of(&home.flwr(&["run", &quickstart()]).stdout);
    home.flwr(&["stop", &pending.to_string()]).ok();
    assert_eq!(home.run_json(pending)["status"], "finished:stopped");

    // Replay needs floret's event log: a clear refusal, not a crash.
    let replay = home.flwr(&["replay", &run_id.to_string()]);
    assert_eq!(replay.code, 6, "{replay:?}");
    assert!(replay.stderr.contains("not a floret SuperLink"), "{}", replay.stderr);
}
