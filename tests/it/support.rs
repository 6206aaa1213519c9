//! Helpers shared by the integration tests: temporary directories and insta
//! settings (snapshots live in the top-level `snapshots/` directory).

use std::path::PathBuf;

/// Binds insta to the repository's `snapshots/` directory for the current
/// scope. insta settings are thread-local: call this in every test that
/// snapshots.
pub fn snapshot_settings() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind_to_scope()
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("floret-test-")
        .tempdir()
        .expect("create a temporary directory")
}

use floret::domain::event::{Event, RunFinished, RunSubmitted, SubStatus};
use floret::domain::ids::{Micros, RunId};
use floret::records::{ConfigRecord, ConfigValue, UserConfig};
use floret::replay::{Record, RecordedEvent};
use floret::sim::{Inputs, Recorder};

/// The seed of a seeded test: `FLORET_TEST_SEED`, else `default`.
pub fn test_seed(default: u64) -> u64 {
    std::env::var("FLORET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A FAB of an app with built-in components and the given
/// `[tool.flwr.app.config]` lines.
pub fn app_fab(clientapp: &str, config: &str) -> floret::fab::BuiltFab {
    let pyproject = format!(
        "[project]\nname = \"testapp\"\nversion = \"1.0.0\"\ndescription = \"t\"\nlicense = \"Apache-2.0\"\n\n\
         [tool.flwr.app]\npublisher = \"tests\"\n\n[tool.flwr.app.components]\nserverapp = \"floret:serverapp\"\n\
         clientapp = \"floret:{clientapp}\"\n\n[tool.flwr.app.config]\n{config}\n"
    );
    let files = [("pyproject.toml".to_string(), pyproject.into_bytes())]
        .into_iter()
        .collect();
    floret::fab::build_fab_from_files(&files).expect("a valid test app")
}

/// A run as the SuperLink would record it: its submission and options.
pub struct TestRun {
    pub submitted: RunSubmitted,
    pub fab: floret::fab::BuiltFab,
}

impl TestRun {
    pub fn new(clientapp: &str, config: &str, num_supernodes: i64, seed: u64) -> TestRun {
        let fab = app_fab(clientapp, config);
        let mut options = ConfigRecord::new();
        options.insert("num-supernodes", ConfigValue::Int(num_supernodes));
        let submitted = RunSubmitted {
            run_id: RunId(77),
            fab_id: fab.app.fab_id(),
            fab_version: fab.app.version.clone(),
            fab_hash: fab.hash.clone(),
            override_config: UserConfig::new(),
            federation: "@none/default".into(),
            federation_options: options,
            seed,
            build: floret::BUILD.into(),
        };
        TestRun { submitted, fab }
    }

    pub fn inputs(&self) -> Inputs {
        let s = &self.submitted;
        floret::builtin::resolve_inputs(
            s.run_id.0,
            s.seed,
            &self.fab.bytes,
            &s.fab_hash,
            &s.override_config,
            &s.federation_options,
        )
        .expect("inputs")
    }

    /// Runs the simulation live with the built-in apps into `recorder`.
    pub fn simulate(&self, workers: usize, recorder: &mut Recorder) -> floret::sim::Finished {
        let inputs = self.inputs();
        let apps = floret::builtin::build(&inputs, &mut floret::flwr_log::Logger::new()).expect("apps");
        floret::sim::simulate(&inputs, apps, workers, recorder)
    }

    /// The record a SuperLink would hold for a live run that produced
    /// `events` and ended `finished` (`None`: the process died).
    pub fn record(&self, events: &[Event], finished: Option<RunFinished>) -> Record {
        let mut all = vec![
            Event::RunSubmitted(self.submitted.clone()),
            Event::RunStarting,
            Event::RunRunning,
        ];
        all.extend(events.iter().cloned());
        all.extend(finished.map(Event::RunFinished));
        let events = all
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let (kind, version, payload) = floret::codec::encode(event);
                RecordedEvent {
                    seq: floret::domain::ids::Seq(index as u64 + 1),
                    kind: kind.into(),
                    version,
                    payload,
                    at: Micros(index as i64),
                }
            })
            .collect();
        Record {
            events,
            fab: self.fab.bytes.clone(),
        }
    }
}

pub fn completed() -> Option<RunFinished> {
    Some(RunFinished {
        sub_status: SubStatus::Completed,
        details: String::new(),
    })
}

/// Encoded payloads of events, for byte comparison.
pub fn payload_bytes(events: &[Event]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| {
            let (kind, _, payload) = floret::codec::encode(e);
            (kind.to_string(), payload)
        })
        .collect()
}

/// A private Flower home with its own free ports, for tests that drive the
/// real binaries. Dropping it stops its local SuperLink.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub control_port: u16,
    pub simulationio_port: u16,
}

/// Two ports for a test's SuperLink (see [`free_port`]).
pub fn free_ports() -> (u16, u16) {
    (free_port(), free_port())
}

/// The ports tests hand to SuperLinks: below Linux's ephemeral range
/// (32768–60999). A port from that range (what binding port 0 gives) can be
/// taken, between a SuperLink's death and its restart on the same port, as
/// the local end of any outgoing connection on the machine; the restart
/// then fails with "Port N is used by another program" (seen in
/// `e2e::after_kill_9_the_superlink_restarts_with_nothing_lost` while other
/// tests ran). Each call in this process gets a port no earlier call got,
/// from an offset that depends on the process (separate test processes, as
/// under nextest, start apart); a port something already uses is skipped.
/// 39093 and 39094 (users' ports) are outside the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + k) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    #[track_caller]
    pub fn ok(&self) -> &Ran {
        assert_eq!(self.code, 0, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

pub fn quickstart() -> String {
    format!("{}/examples/quickstart", env!("CARGO_MANIFEST_DIR"))
}

impl Home {
    pub fn new() -> Home {
        let (control_port, simulationio_port) = free_ports();
        Home {
            dir: temp_dir(),
            control_port,
            simulationio_port,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A command of one of our binaries with this home's environment.
    pub fn command(&self, binary: &str, args: &[&str]) -> std::process::Command {
        let path = match binary {
            "flwr" => env!("CARGO_BIN_EXE_flwr"),
            "flower-superlink" => env!("CARGO_BIN_EXE_flower-superlink"),
            other => panic!("unknown binary {other}"),
        };
        let mut command = std::process::Command::new(path);
        command.args(args);
        self.environment(&mut command);
        command
    }

    /// Sets this home's environment on `command`.
    fn environment(&self, command: &mut std::process::Command) {
        command
            .env("FLWR_HOME", self.path())
            .env("FLWR_LOCAL_CONTROL_API_PORT", self.control_port.to_string())
            .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", self.simulationio_port.to_string())
            .env("NO_COLOR", "1")
            .env("COLUMNS", "120")
            .env_remove("FLORET_FAULTS")
            .stdin(std::process::Stdio::null());
    }

    /// `script` run by `sh` in `dir` with this home's environment, this
    /// build's `flwr` first on the PATH: a command line as a user types it.
    pub fn shell(&self, script: &str, dir: &std::path::Path) -> Ran {
        let bin = temp_dir();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flwr"), bin.path().join("flwr")).unwrap();
        let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
        let mut command = std::process::Command::new("sh");
        command.args(["-c", script]).current_dir(dir).env("PATH", path);
        self.environment(&mut command);
        let output = command.output().expect("run sh");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn flwr(&self, args: &[&str]) -> Ran {
        let output = self.command("flwr", args).output().expect("run flwr");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Submits the quickstart with run-config overrides; returns the run id.
    pub fn submit(&self, config: &str) -> u64 {
        let ran = self.flwr(&["run", &quickstart(), "--format", "json", "-c", config]);
        ran.ok();
        ran.json()["run-id"].as_str().unwrap().parse().unwrap()
    }

    /// The run as `flwr ls --run-id --format json` shows it.
    pub fn run_json(&self, run_id: u64) -> serde_json::Value {
        let ran = self.flwr(&["ls", "--run-id", &run_id.to_string(), "--format", "json"]);
        ran.ok();
        ran.json()["runs"][0].clone()
    }

    /// Waits (up to 30 s) until the run's status satisfies `condition`.
    #[track_caller]
    pub fn wait_for_status(&self, run_id: u64, condition: impl Fn(&str) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let run = self.run_json(run_id);
            if condition(run["status"].as_str().unwrap()) {
                return run;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {run_id} stayed {}",
                run["status"]
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The local SuperLink's `flwr superlink status --format json`.
    pub fn superlink(&self) -> serde_json::Value {
        let ran = self.flwr(&["superlink", "status", "--format", "json"]);
        ran.ok();
        ran.json()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.command("flwr", &["superlink", "stop"]).output();
    }
}

/// Waits (up to 20 s) until `condition` holds.
#[track_caller]
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    wait_until_within(what, 20, condition)
}

/// Waits (up to `seconds`) until `condition` holds.
#[track_caller]
pub fn wait_until_within(what: &str, seconds: u64, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Pids of processes whose command line contains all of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()) == Some('Z');
        if !zombie && needles.iter().all(|n| cmdline.contains(n)) {
            pids.push(pid);
        }
    }
    pids
}

/// A copy of the quickstart app with `extra` appended to its
/// `[tool.flwr.app.config]` (the last table of its pyproject.toml). A key
/// `extra` sets replaces the quickstart's own line for it: TOML refuses a key
/// given twice.
pub fn quickstart_with(extra: &str) -> tempfile::TempDir {
    fn key(line: &str) -> Option<&str> {
        line.split_once('=').map(|(key, _)| key.trim())
    }
    let overridden: Vec<&str> = extra.lines().filter_map(key).collect();
    let dir = temp_dir();
    for file in ["pyproject.toml", "floret.py"] {
        let mut text = std::fs::read_to_string(format!("{}/{file}", quickstart())).unwrap();
        if file == "pyproject.toml" {
            let (head, config) = text.split_once("[tool.flwr.app.config]\n").unwrap();
            let kept: String = config
                .lines()
                .filter(|line| key(line).is_none_or(|k| !overridden.contains(&k)))
                .map(|line| format!("{line}\n"))
                .collect();
            text = format!("{head}[tool.flwr.app.config]\n{kept}{extra}\n");
        }
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

/// The target directory of this build (`target/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash>
    exe.parent()
        .and_then(std::path::Path::parent)
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_path_buf()
}

/// A virtual environment with the real `flwr==<version>` and scikit-learn
/// from PyPI (what the interop tests and the example apps need), created
/// once per target directory: `target/interop/flwr-<version>/`. Tests run in
/// parallel: one creates it under a lock, the others wait. Without Python 3
/// (with venv) or PyPI the tests that need it fail and say why.
pub fn python_env(version: &str) -> PathBuf {
    use std::os::fd::AsRawFd;
    use std::process::Command;
    let packages = [format!("flwr=={version}"), "scikit-learn".to_string()];
    let base = target_dir().join("interop");
    std::fs::create_dir_all(&base).unwrap();
    let venv = base.join(format!("flwr-{version}"));
    let lock = std::fs::File::create(base.join(format!("flwr-{version}.lock"))).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let ready = venv.join("ready");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(packages.join(" ").as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python).args(["-m", "venv"]).arg(&venv).status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "these tests need Python 3 with venv ({python} -m venv failed: {status:?})"
        );
        let output = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&packages)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pip install {} failed (these tests need PyPI):\n{}",
            packages.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&ready, packages.join(" ")).unwrap();
    }
    venv
}

/// What an error box on stderr says, on one line.
pub fn box_text(stderr: &str) -> String {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix('│'))
        .map(|line| line.trim_end().trim_end_matches('│').trim())
        .collect::<Vec<_>>()
        .join(" ")
}
