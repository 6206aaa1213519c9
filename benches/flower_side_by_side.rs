//! floret next to the real Python Flower 1.27.0, in one run, on the same
//! workload: the quickstart (10 SuperNodes, 3 rounds of FedAvg at
//! fraction-train 0.5, multinomial logistic regression on the UCI digits,
//! lr 0.5, batch size 8, 20% held out for a central evaluation).
//!
//! - floret: the release binaries on `examples/quickstart` with `-c seed=1`
//!   (the built-in Rust apps).
//! - Flower: `flwr[simulation]==1.27.0` (Ray 2.55.1: the Ray 2.51.1 Flower
//!   pins cannot start its GCS on these machines) and numpy in a virtual
//!   environment this bench creates under `target/bench-flower/venv` (once;
//!   a `ready` marker records what it holds), running the Python Flower App
//!   in `benches/flower_app/`, the same workload written with Flower's
//!   Message API and numpy.
//!
//! For each system, in a private `FLWR_HOME` with free loopback ports, the
//! first `flwr run APP --stream` starts the managed local SuperLink (cold),
//! then three more runs reuse it (warm). Every run must stream Flower's final
//! results and be `finished:completed` in `flwr ls --format json`.
//!
//! What is measured:
//! - wall time: from spawning `flwr run APP --stream` until it exits;
//! - peak memory: every 50 ms the bench scans /proc for the processes of the
//!   run, those whose environment carries this system's private tag variable
//!   (every process the CLI, the SuperLink, the app process and Ray start
//!   inherits it) or whose command line names the private `FLWR_HOME`,
//!   except the `flwr` CLI process itself. "Peak memory" is the sum over
//!   these processes of each one's peak RSS (`VmHWM`, last value read);
//!   floret's app process (`flwr-simulation`) lives about 20 ms, less than a
//!   sampling period, so its own `VmHWM`, which it logs at exit, is used.
//!   Σ VmHWM bounds the simultaneous peak from above. Also printed: the
//!   largest Σ RSS of one sample; Σ PSS (shared pages split among the
//!   processes sharing them, from `smaps_rollup`), measured in one extra,
//!   untimed run per system, as reading it costs CPU; the CLI's own peak
//!   RSS (`ru_maxrss` from `wait4`), not included in the peak memory.
//!
//! - floret on the same Python app: `benches/flower_app/` run by floret's
//!   Python bridge with the bench's venv (`FLWR_PYTHON`); its warm runs must
//!   start from the interpreter the SuperLink keeps warm.
//!
//! A Flower run that does not end within three minutes is stuck (seen here:
//! `ray.init` waiting for Ray processes that never started); its app process
//! and Ray are killed and the run is made again, at most three times, and
//! the output says how many runs hung.
//!
//! Then two more sections:
//! - 1,000 SuperNodes × 10 rounds of `examples/numpy-message-api` (10% of
//!   the nodes sampled per phase), floret (first run of its SuperLink, then
//!   warm) and Flower, one run each;
//! - the cost of one ClientApp call through the bridge with a model of 10
//!   and of 1,000,000 float32 values (`benches/echo_app`, via
//!   `floret::bridge::probe`), against a memory copy of the same 4 MB.
//!
//! Run with `cargo bench --bench flower_side_by_side`; prints Markdown.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const FLOWER: &str = "flwr[simulation]==1.27.0";
const RAY: &str = "ray==2.55.1";
const NUMPY: &str = "numpy";
const WARM_RUNS: usize = 3;
const SAMPLE_PERIOD: Duration = Duration::from_millis(50);
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// A Flower run of the quickstart takes 5–20 s here; one that has not ended
/// after this long is stuck (seen: `ray.init` waiting for a GCS that never
/// started) and is killed and retried, at most `HANG_RETRIES` times.
const FLOWER_HANG_AFTER: Duration = Duration::from_secs(180);
const HANG_RETRIES: usize = 3;
/// Processes of the SuperLink that outlive a run.
const PERSISTENT: &[&str] = &["flower-superlink", "flower-superexec", WARM];
/// The label of the Python interpreter floret's SuperLink keeps warm between
/// runs (a bridge process whose parent is the SuperLink).
const WARM: &str = "warm interpreter";
/// The label of floret's other Python processes (zygote, ServerApp, workers).
const BRIDGE: &str = "floret bridge";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory of this build (the bench runs from
/// `target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("the bench executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// `target/bench-flower/venv` with Flower 1.27.0, Ray 2.55.1 and numpy,
/// created on first use. Panics, saying why, when it cannot be created.
fn flower_venv() -> PathBuf {
    let base = target_dir().join("bench-flower");
    std::fs::create_dir_all(&base).unwrap();
    let venv = base.join("venv");
    let lock = std::fs::File::create(base.join("venv.lock")).unwrap();
    // SAFETY: flock on a descriptor we own, released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let spec = format!("{FLOWER}\n{RAY}\n{NUMPY}\n");
    let marker = venv.join("ready");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(spec.as_str()) {
        eprintln!("Creating {} ({FLOWER}, then {RAY}, {NUMPY})...", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python).args(["-m", "venv"]).arg(&venv).status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "this bench needs Python 3 with venv: `{python} -m venv {}` failed: {status:?}",
            venv.display()
        );
        let pip = |packages: &[&str]| {
            let output = Command::new(venv.join("bin/pip"))
                .args(["install", "--disable-pip-version-check", "--no-input"])
                .args(packages)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "pip install {packages:?} failed (this bench needs PyPI):\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        pip(&[FLOWER, NUMPY]);
        // After flwr, which pins another Ray: pip warns about the conflict.
        pip(&[RAY]);
        std::fs::write(&marker, &spec).unwrap();
    }
    venv
}

/// The installed versions of flwr, ray and numpy; also loads them once, so
/// that the cold run does not read them from a cold page cache.
fn python_versions(venv: &Path) -> String {
    let output = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m, flwr, ray, numpy\n\
             print(' '.join(p + '==' + m.version(p) for p in ('flwr', 'ray', 'numpy')))",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the venv {} is broken (delete it to re-create it):\n{}",
        venv.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let versions = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        versions.contains("flwr==1.27.0") && versions.contains("ray==2.55.1"),
        "unexpected versions in {}: {versions}",
        venv.display()
    );
    versions
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copies the files of `from` into `to`, skipping `__pycache__`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Processes of a run, from /proc.

#[derive(Clone, Debug)]
struct Proc {
    pid: u32,
    label: String,
    rss_kb: u64,
    hwm_kb: u64,
    pss_kb: u64,
}

fn status_kb(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A short name for a process: `ray::...` titles as they are, otherwise the
/// program, or for an interpreter the script it runs.
fn label_of(cmdline: &[u8]) -> String {
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let Some(first) = args.first() else {
        return "?".into();
    };
    if first.starts_with("ray::") {
        return first.split_whitespace().next().unwrap_or(first).to_string();
    }
    if args.iter().any(|a| a.contains("floret_bridge")) {
        return BRIDGE.into();
    }
    let base = |a: &str| a.rsplit('/').next().unwrap_or(a).to_string();
    let program = base(first.split_whitespace().next().unwrap_or(first));
    if program.starts_with("python") {
        let mut rest = args[1..].iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                // A script on the command line (floret's interpreter probe).
                "-c" => return format!("{program} -c"),
                "-m" => return rest.next().map_or(program, |module| module.clone()),
                _ if !arg.starts_with('-') => return base(arg),
                _ => {}
            }
        }
    }
    program
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which processes belong to a system: its tag in their environment, or its
/// private directory in their command line.
#[derive(Clone)]
struct Matcher {
    tag: Vec<u8>,
    path: Vec<u8>,
    exclude: Vec<u32>,
}

impl Matcher {
    fn scan(&self, pss: bool) -> Vec<Proc> {
        let me = std::process::id();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me || self.exclude.contains(&pid) {
                continue;
            }
            let dir = entry.path();
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let ours = contains(&cmdline, &self.path)
                || std::fs::read(dir.join("environ")).is_ok_and(|env| contains(&env, &self.tag));
            if !ours {
                continue;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let pss_kb = if pss {
                std::fs::read_to_string(dir.join("smaps_rollup"))
                    .map(|s| status_kb(&s, "Pss:"))
                    .unwrap_or(0)
            } else {
                0
            };
            let mut label = label_of(&cmdline);
            if label == BRIDGE && parent_name(&status).starts_with("flower-superlin") {
                label = WARM.into();
            }
            found.push(Proc {
                pid,
                label,
                rss_kb: status_kb(&status, "VmRSS:"),
                hwm_kb: status_kb(&status, "VmHWM:"),
                pss_kb,
            });
        }
        found
    }
}

/// The name (`comm`) of the parent of the process whose `status` this is.
fn parent_name(status: &str) -> String {
    let parent = status_kb(status, "PPid:");
    std::fs::read_to_string(format!("/proc/{parent}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One process of a run, as the sampler saw it.
#[derive(Clone, Debug)]
struct Seen {
    label: String,
    /// The last `VmHWM` read.
    hwm_kb: u64,
    /// First and last sample that found it, since `flwr run` started.
    first: Duration,
    last: Duration,
}

/// What the sampler saw during one run.
#[derive(Clone, Debug, Default)]
struct Memory {
    /// Per pid (0: floret's app process, from its log).
    peaks: BTreeMap<u32, Seen>,
    max_sum_rss_kb: u64,
    max_sum_pss_kb: u64,
    samples: usize,
    /// Time spent scanning /proc (the sampler's own cost).
    scanning: Duration,
}

impl Memory {
    fn sum_hwm_kb(&self) -> u64 {
        self.peaks.values().map(|p| p.hwm_kb).sum()
    }

    /// Per kind of process, largest peak first: (label, count, Σ VmHWM,
    /// first seen, last seen).
    fn by_label(&self) -> Vec<(String, usize, u64, Duration, Duration)> {
        let mut groups: BTreeMap<&str, (usize, u64, Duration, Duration)> = BTreeMap::new();
        for p in self.peaks.values() {
            let group = groups.entry(&p.label).or_insert((0, 0, p.first, p.last));
            group.0 += 1;
            group.1 += p.hwm_kb;
            group.2 = group.2.min(p.first);
            group.3 = group.3.max(p.last);
        }
        let mut rows: Vec<_> = groups
            .into_iter()
            .map(|(l, (n, kb, first, last))| (l.to_string(), n, kb, first, last))
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.2));
        rows
    }
}

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Memory>,
}

impl Sampler {
    fn start(matcher: Matcher, pss: bool, started: Instant) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut memory = Memory::default();
            loop {
                let tick = Instant::now();
                let last = flag.load(Ordering::Acquire);
                let procs = matcher.scan(pss);
                let now = started.elapsed();
                memory.scanning += tick.elapsed();
                memory.samples += 1;
                memory.max_sum_rss_kb = memory.max_sum_rss_kb.max(procs.iter().map(|p| p.rss_kb).sum());
                memory.max_sum_pss_kb = memory.max_sum_pss_kb.max(procs.iter().map(|p| p.pss_kb).sum());
                for p in procs {
                    let seen = memory.peaks.entry(p.pid).or_insert(Seen {
                        label: String::new(),
                        hwm_kb: 0,
                        first: now,
                        last: now,
                    });
                    seen.label = p.label;
                    seen.hwm_kb = seen.hwm_kb.max(p.hwm_kb);
                    seen.last = now;
                }
                if last {
                    return memory;
                }
                std::thread::sleep(SAMPLE_PERIOD.saturating_sub(tick.elapsed()));
            }
        });
        Sampler { stop, handle }
    }

    /// Takes one last sample and returns what was seen.
    fn finish(self) -> Memory {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap()
    }
}

// ---------------------------------------------------------------------------
// One system: a CLI, an app, a private FLWR_HOME.

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Floret,
    Flower,
}

struct System {
    kind: Kind,
    name: String,
    flwr: PathBuf,
    /// Prepended to PATH (Flower's CLI starts `flower-superlink` from PATH).
    bin_dir: Option<PathBuf>,
    run_args: Vec<String>,
    /// More environment for every command (the Python floret uses).
    env: Vec<(String, PathBuf)>,
    home: tempfile::TempDir,
    control_port: u16,
    simulationio_port: u16,
    tag: String,
    stopped: bool,
    /// floret running a Python app: the warm runs must start from the
    /// interpreter the SuperLink keeps warm.
    python: bool,
    /// Rounds of the app (the streamed log must reach the last).
    rounds: u32,
    /// How long a run may take before it counts as hung.
    hang_after: Duration,
    /// Runs that hung and were retried (Flower only: Ray sometimes never
    /// starts its processes on these machines).
    hangs: std::cell::Cell<usize>,
}

/// One timed `flwr run --stream`.
struct Run {
    wall: Duration,
    /// Lines of stdout, ANSI colours removed, with their arrival time.
    lines: Vec<(Duration, String)>,
    cli_peak_kb: u64,
    memory: Memory,
    run_id: String,
    accuracy: Option<f64>,
    /// running → finished, as the SuperLink recorded it (`elapsed`).
    elapsed: f64,
}

impl Run {
    fn at(&self, marker: &str) -> Option<Duration> {
        self.lines.iter().find(|(_, l)| l.contains(marker)).map(|(t, _)| *t)
    }
}

fn home_tag() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

impl System {
    fn new(kind: Kind, name: &str, flwr: PathBuf, bin_dir: Option<PathBuf>) -> System {
        let home = tempfile::Builder::new().prefix("fb").tempdir().unwrap();
        std::fs::create_dir(home.path().join("t")).unwrap();
        System {
            kind,
            name: name.to_string(),
            flwr,
            bin_dir,
            run_args: Vec::new(),
            env: Vec::new(),
            home,
            control_port: free_port(),
            simulationio_port: free_port(),
            tag: format!("FLORET_BENCH_TAG={}", home_tag()),
            stopped: false,
            python: false,
            rounds: 3,
            hang_after: match kind {
                Kind::Flower => FLOWER_HANG_AFTER,
                Kind::Floret => RUN_TIMEOUT,
            },
            hangs: std::cell::Cell::new(0),
        }
    }

    fn matcher(&self, exclude: Vec<u32>) -> Matcher {
        Matcher {
            tag: format!("{}\0", self.tag).into_bytes(),
            path: self.home.path().as_os_str().as_encoded_bytes().to_vec(),
            exclude,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.flwr);
        let (key, value) = self.tag.split_once('=').unwrap();
        command
            .args(args)
            .env("FLWR_HOME", self.home.path())
            .env("FLWR_LOCAL_CONTROL_API_PORT", self.control_port.to_string())
            .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", self.simulationio_port.to_string())
            .env(key, value)
            // Ray's session files (and sockets) in the private directory.
            .env("TMPDIR", self.home.path().join("t"))
            .env("NO_COLOR", "1")
            // Lines arrive when they are printed, for the timeline.
            .env("PYTHONUNBUFFERED", "1")
            // No telemetry or usage reports (no network but loopback), and
            // Ray on 127.0.0.1 rather than the machine's outward address.
            .env("FLWR_TELEMETRY_ENABLED", "0")
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .env("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            .env_remove("FLORET_FAULTS")
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(bin) = &self.bin_dir {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![bin.clone()];
            paths.extend(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(paths).unwrap());
        }
        command
    }

    /// Sets the number of SuperNodes in the local profile of this home's
    /// `config.toml` (Flower 1.27 takes it from there only).
    fn set_supernodes(&self, count: usize) {
        self.output(&["ls"]);
        let path = self.home.path().join("config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("options.num-supernodes = 10"),
            "{}: {text}",
            path.display()
        );
        std::fs::write(
            &path,
            text.replace(
                "options.num-supernodes = 10",
                &format!("options.num-supernodes = {count}"),
            ),
        )
        .unwrap();
    }

    fn superlink_log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("local-superlink/superlink.log")).unwrap_or_default()
    }

    /// Waits until floret's SuperLink keeps a warm interpreter (it starts
    /// one after the first Python run).
    fn wait_warm(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.superlink_log().contains("a warm Python interpreter is ready") {
            assert!(
                Instant::now() < deadline,
                "{}: no warm interpreter after 120 s:\n{}",
                self.name,
                self.superlink_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the run started from the warm interpreter.
    fn started_warm(&self, run_id: &str) -> bool {
        self.superlink_log()
            .lines()
            .any(|l| l.contains("starts from a warm Python interpreter") && l.contains(&format!("run_id={run_id} ")))
    }

    fn output(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}: flwr {args:?} failed:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// One `flwr run APP --stream`, timed and sampled; checks it completed.
    /// A Flower run that hangs is killed and run again (counted in `hangs`).
    fn run(&self, pss: bool) -> Run {
        for _ in 0..=HANG_RETRIES {
            if let Some(run) = self.try_run(pss) {
                return run;
            }
            self.hangs.set(self.hangs.get() + 1);
            eprintln!(
                "{}: `flwr run` hung for {:?}; killed its app process and Ray, running it again",
                self.name, self.hang_after
            );
            for p in self.matcher(Vec::new()).scan(false) {
                if !PERSISTENT.contains(&p.label.as_str()) {
                    // SAFETY: kills a process this system started, by pid.
                    unsafe { libc::kill(p.pid as libc::pid_t, libc::SIGKILL) };
                }
            }
            self.settle();
        }
        panic!("{}: `flwr run` hung {} times in a row", self.name, HANG_RETRIES + 1);
    }

    /// One attempt; `None` when it did not end within `hang_after` (then
    /// the CLI is killed; only a Flower run may hang).
    fn try_run(&self, pss: bool) -> Option<Run> {
        let mut args = vec!["run".to_string()];
        args.extend(self.run_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = self.command(&args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().unwrap();
        let pid = child.id();
        let sampler = Sampler::start(self.matcher(vec![pid]), pss, started);
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        // The CLI is reaped with wait4, for its rusage; `child` is not waited.
        drop(child);
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .map(|line| (started.elapsed(), strip_ansi(&line)))
                .collect::<Vec<_>>()
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            strip_ansi(&text)
        });
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut status = 0;
            // SAFETY: a zeroed rusage is valid; wait4 fills it.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waits for our own child, which nothing else reaps.
            let waited = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
            let _ = sender.send((started.elapsed(), waited, status, usage.ru_maxrss as u64));
        });
        let (wall, waited, status, cli_peak_kb) = match receiver.recv_timeout(self.hang_after) {
            Ok(result) => result,
            Err(_) => {
                // SAFETY: kills our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                assert!(
                    self.kind == Kind::Flower,
                    "{}: `flwr run` did not finish within {:?}",
                    self.name,
                    self.hang_after
                );
                drop(sampler.finish());
                return None;
            }
        };
        let memory = sampler.finish();
        let lines = reader.join().unwrap();
        let errors = errors.join().unwrap();
        let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        assert!(
            waited == pid as libc::pid_t && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{}: `flwr run --stream` failed (wait status {status:#x}):\n{text}\n{errors}",
            self.name
        );
        let last_round = format!("[ROUND {0}/{0}]", self.rounds);
        for expected in [
            last_round.as_str(),
            "Strategy execution finished",
            "Final results:",
            "ServerApp-side Evaluate Metrics",
            "central_acc",
        ] {
            assert!(
                text.contains(expected),
                "{}: the streamed log lacks {expected:?}:\n{text}\n{errors}",
                self.name
            );
        }
        let position = |marker: &str| text.rfind(marker).unwrap();
        assert!(
            position(&last_round) < position("Final results:")
                && position("Final results:") < position("ServerApp-side Evaluate Metrics"),
            "{}: the streamed log does not end with the final results:\n{text}",
            self.name
        );
        let run_id = text
            .lines()
            .find(|l| l.contains("Successfully started run"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("{}: no run id in:\n{text}", self.name))
            .to_string();
        let listed: serde_json::Value = serde_json::from_str(&self.output(&["ls", "--format", "json"])).unwrap();
        let entry = listed["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["run-id"] == run_id.as_str()))
            .unwrap_or_else(|| panic!("{}: run {run_id} not in `flwr ls`: {listed}", self.name));
        assert_eq!(entry["status"], "finished:completed", "{}: {entry}", self.name);
        let mut memory = memory;
        if self.kind == Kind::Floret {
            // The app process lives less than a sampling period: use the
            // VmHWM it logged at exit.
            let log =
                std::fs::read_to_string(self.home.path().join("local-superlink/superlink.log")).unwrap_or_default();
            let logged = log
                .lines()
                .rev()
                .find(|l| l.contains("flwr-simulation finished") && l.contains(&run_id))
                .and_then(|l| {
                    l.split("peak_rss_kb=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or_else(|| panic!("{}: flwr-simulation logged no peak_rss_kb for {run_id}", self.name));
            let before = memory.peaks.len();
            memory.peaks.retain(|_, p| p.label != "flwr-simulation");
            if memory.peaks.len() == before {
                // Not in any sample: its VmHWM stands for its RSS and PSS
                // there (upper bounds).
                memory.max_sum_rss_kb += logged;
                memory.max_sum_pss_kb += logged;
            }
            memory.peaks.insert(
                0,
                Seen {
                    label: "flwr-simulation".into(),
                    hwm_kb: logged,
                    first: Duration::ZERO,
                    last: Duration::ZERO,
                },
            );
        }
        self.settle();
        Some(Run {
            wall,
            accuracy: central_accuracy(&text),
            lines,
            cli_peak_kb,
            memory,
            run_id,
            elapsed: entry["elapsed"].as_f64().unwrap_or(f64::NAN),
        })
    }

    /// Waits until only the SuperLink's own processes are left (Ray shut
    /// down), so that a run does not count the previous one's processes.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let extra: Vec<Proc> = self
                .matcher(Vec::new())
                .scan(false)
                .into_iter()
                .filter(|p| !PERSISTENT.contains(&p.label.as_str()))
                .collect();
            if extra.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: processes still running 30 s after the run: {extra:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the SuperLink and makes sure none of this system's processes is
    /// left; an error names what had to be killed.
    fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let matcher = self.matcher(Vec::new());
        match self.kind {
            Kind::Floret => {
                let _ = self.command(&["superlink", "stop"]).output();
            }
            Kind::Flower => {
                // The CLI starts flower-superlink in a new session: signal
                // its process group (superexec, app process, Ray).
                for p in matcher.scan(false).iter().filter(|p| p.label == "flower-superlink") {
                    // SAFETY: getpgid/kill on a process of ours.
                    unsafe {
                        let group = libc::getpgid(p.pid as libc::pid_t);
                        if group > 1 {
                            libc::kill(-group, libc::SIGTERM);
                        }
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matcher.scan(false).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = matcher.scan(false);
        if left.is_empty() {
            return Ok(());
        }
        for p in &left {
            // SAFETY: kills a process this system started, by pid.
            unsafe { libc::kill(p.pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(500));
        Err(format!(
            "{}: processes left after stopping the SuperLink (killed): {left:?}",
            self.name
        ))
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}

/// The central accuracy of the last global evaluation in a streamed log.
fn central_accuracy(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("MetricRecord: {") && l.contains("'central_acc': "))?;
    let value = line.split("'central_acc': ").nth(1)?;
    let end = value.find([',', '}']).unwrap_or(value.len());
    value[..end].trim().trim_matches('\'').parse().ok()
}

/// The reported strategy time ("Strategy execution finished in 4.55s").
fn strategy_seconds(run: &Run) -> Option<f64> {
    let (_, line) = run
        .lines
        .iter()
        .find(|(_, l)| l.contains("Strategy execution finished in"))?;
    line.split("finished in ")
        .nth(1)?
        .trim()
        .trim_end_matches('s')
        .parse()
        .ok()
}

struct Results {
    name: String,
    /// Runs that hung and were run again.
    hangs: usize,
    cold: Run,
    warm: Vec<Run>,
    pss: Run,
}

impl Results {
    fn warm_median(&self) -> &Run {
        let mut order: Vec<&Run> = self.warm.iter().collect();
        order.sort_by_key(|r| r.wall);
        order[order.len() / 2]
    }

    fn timed(&self) -> impl Iterator<Item = &Run> {
        std::iter::once(&self.cold).chain(&self.warm)
    }

    fn peak_kb(&self) -> u64 {
        self.timed().map(|r| r.memory.sum_hwm_kb()).max().unwrap()
    }

    fn peak_run(&self) -> &Run {
        self.timed().max_by_key(|r| r.memory.sum_hwm_kb()).unwrap()
    }
}

fn measure(mut system: System) -> Results {
    eprintln!("{}: cold run...", system.name);
    let cold = system.run(false);
    if system.python {
        // The first Python run of a SuperLink starts the interpreter it
        // keeps warm and forks from it.
        system.wait_warm();
    }
    let warm = (0..WARM_RUNS)
        .map(|i| {
            eprintln!("{}: warm run {}/{WARM_RUNS}...", system.name, i + 1);
            let run = system.run(false);
            assert!(
                !system.python || system.started_warm(&run.run_id),
                "{}: warm run {} did not start from the warm interpreter:\n{}",
                system.name,
                run.run_id,
                system.superlink_log()
            );
            run
        })
        .collect();
    eprintln!("{}: untimed run sampling PSS...", system.name);
    let pss = system.run(true);
    if let Err(e) = system.stop() {
        panic!("{e}");
    }
    Results {
        name: system.name.clone(),
        hangs: system.hangs.get(),
        cold,
        warm,
        pss,
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn timeline(run: &Run) -> String {
    let markers = [
        ("Starting local SuperLink", "SuperLink starting"),
        ("Successfully started run", "run submitted"),
        ("Starting Flower Simulation", "app process running"),
        ("configure_train: Sampled", "round 1 train sent"),
        ("aggregate_train: Received", "round 1 train received"),
        ("Strategy execution finished", "strategy finished"),
    ];
    let mut parts: Vec<String> = markers
        .iter()
        .filter_map(|(marker, name)| Some(format!("{name} {:.3} s", secs(run.at(marker)?))))
        .collect();
    parts.push(format!("CLI exited {:.3} s", secs(run.wall)));
    parts.join(" → ")
}

fn main() {
    // Fail fast, before building anything, when Python cannot be had.
    let venv = flower_venv();
    let versions = python_versions(&venv);
    let data = manifest_dir().join("data/digits/digits.csv.gz");
    assert!(data.exists(), "{} is missing", data.display());

    let mut floret = System::new(Kind::Floret, "floret", PathBuf::from(env!("CARGO_BIN_EXE_flwr")), None);
    let quickstart = manifest_dir().join("examples/quickstart");
    floret.run_args = vec![
        quickstart.to_str().unwrap().into(),
        "--stream".into(),
        "-c".into(),
        "seed=1".into(),
    ];

    let mut flower = System::new(
        Kind::Flower,
        "Flower 1.27.0",
        venv.join("bin/flwr"),
        Some(venv.join("bin")),
    );
    // A copy, so that Flower's checks leave no __pycache__ in the repository.
    let app = flower.home.path().join("app/flowerbench");
    copy_tree(&manifest_dir().join("benches/flower_app"), &app);
    flower.run_args = vec![
        app.to_str().unwrap().into(),
        "--stream".into(),
        "-c".into(),
        format!("data-path={}", serde_json::Value::from(data.to_str().unwrap())),
    ];

    // floret on Flower's app: the same Python files, in the same venv.
    let mut floret_py = System::new(
        Kind::Floret,
        "floret, same Python app",
        PathBuf::from(env!("CARGO_BIN_EXE_flwr")),
        None,
    );
    floret_py.python = true;
    floret_py.env = vec![("FLWR_PYTHON".into(), venv.join("bin/python"))];
    let app_py = floret_py.home.path().join("app/flowerbench");
    copy_tree(&manifest_dir().join("benches/flower_app"), &app_py);
    floret_py.run_args = vec![app_py.to_str().unwrap().into(), flower.run_args[1].clone()];
    floret_py.run_args.extend(flower.run_args[2..].iter().cloned());

    let floret = measure(floret);
    let floret_py = measure(floret_py);
    let flower = measure(flower);

    // Nothing of either system may be left running.
    let venv_path = venv.as_os_str().as_encoded_bytes().to_vec();
    let left: Vec<Proc> = Matcher {
        tag: b"FLORET_BENCH_TAG=".to_vec(),
        path: venv_path,
        exclude: Vec::new(),
    }
    .scan(false);
    assert!(left.is_empty(), "processes left after the bench: {left:?}");

    let machine = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!();
    println!(
        "## floret vs Flower 1.27.0: quickstart (10 SuperNodes × 3 rounds, FedAvg, logistic regression on digits)"
    );
    println!();
    println!("{machine} CPUs; Python side: {versions}. Cold: the first `flwr run APP --stream`, which starts the local SuperLink; warm: {WARM_RUNS} more runs on it.");
    println!();
    println!("| system | cold wall | warm wall (median of {WARM_RUNS}) | peak memory (Σ peak RSS of the SuperLink and all it spawns) | `flwr` CLI peak RSS | final central accuracy |");
    println!("|---|---|---|---|---|---|");
    let all = [&floret, &floret_py, &flower];
    for r in all {
        println!(
            "| {} | {:.3} s | {:.3} s | {:.1} MB | {:.1} MB | {} |",
            r.name,
            secs(r.cold.wall),
            secs(r.warm_median().wall),
            mb(r.peak_kb()),
            mb(r.timed().map(|x| x.cli_peak_kb).max().unwrap()),
            r.warm_median().accuracy.map_or("?".to_string(), |a| format!("{a:.4}")),
        );
    }
    for ours in [&floret, &floret_py] {
        println!(
            "| **Flower / {}** | **{:.1}×** | **{:.1}×** | **{:.1}×** | {:.1}× | |",
            ours.name,
            secs(flower.cold.wall) / secs(ours.cold.wall),
            secs(flower.warm_median().wall) / secs(ours.warm_median().wall),
            flower.peak_kb() as f64 / ours.peak_kb() as f64,
            flower.timed().map(|x| x.cli_peak_kb).max().unwrap() as f64
                / ours.timed().map(|x| x.cli_peak_kb).max().unwrap() as f64,
        );
    }
    println!(
        "| **Flower / floret (Σ PSS)** | | | **{:.1}×** (Rust apps), **{:.1}×** (same Python app) | | |",
        flower.pss.memory.max_sum_pss_kb as f64 / floret.pss.memory.max_sum_pss_kb as f64,
        flower.pss.memory.max_sum_pss_kb as f64 / floret_py.pss.memory.max_sum_pss_kb as f64,
    );
    println!();
    println!("### Details");
    println!();
    println!("| system | warm walls | run running→finished (SuperLink, median warm) | strategy time (log, median warm) | central accuracy (cold, warm…) | max Σ RSS of one sample | Σ PSS (extra run) | processes | sampler (cold run) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in all {
        let walls: Vec<String> = r.warm.iter().map(|w| format!("{:.3}", secs(w.wall))).collect();
        let median = r.warm_median();
        let accuracies: Vec<String> = r
            .timed()
            .map(|x| x.accuracy.map_or("?".into(), |a| format!("{a:.4}")))
            .collect();
        let sampler = &r.cold.memory;
        println!(
            "| {} | {} s | {:.3} s | {} | {} | {:.1} MB | {:.1} MB | {} | {} scans, {:.1} ms each |",
            r.name,
            walls.join(", "),
            median.elapsed,
            strategy_seconds(median).map_or("?".into(), |s| format!("{s:.2} s")),
            accuracies.join(", "),
            mb(r.timed().map(|x| x.memory.max_sum_rss_kb).max().unwrap()),
            mb(r.pss.memory.max_sum_pss_kb),
            r.peak_run().memory.peaks.len(),
            sampler.samples,
            sampler.scanning.as_secs_f64() * 1e3 / sampler.samples.max(1) as f64,
        );
    }
    println!();
    for r in all.iter().filter(|r| r.hangs > 0) {
        println!(
            "{}: {} run(s) hung (no end after {} s; Ray's processes never started) and were killed and run again; the figures are of the runs that ended.",
            r.name,
            r.hangs,
            FLOWER_HANG_AFTER.as_secs()
        );
        println!();
    }
    for r in all {
        println!("#### {}", r.name);
        println!();
        println!("Streamed log lines, in seconds since `flwr run` started, as they reached the CLI:");
        println!();
        println!("- cold: {}", timeline(&r.cold));
        println!("- warm (median): {}", timeline(r.warm_median()));
        println!();
        let median = r.warm_median();
        let mut seen = median.memory.by_label();
        seen.sort_by_key(|row| row.3);
        let lifetimes: Vec<String> = seen
            .iter()
            .map(|(label, n, _, first, last)| {
                let count = if *n > 1 { format!(" ×{n}") } else { String::new() };
                if median.memory.peaks.get(&0).is_some_and(|p| &p.label == label) {
                    format!("{label}{count} (shorter than a sample)")
                } else {
                    format!("{label}{count} {:.2}–{:.2} s", secs(*first), secs(*last))
                }
            })
            .collect();
        println!(
            "Processes of the median warm run, first and last sample that saw them: {}",
            lifetimes.join(", ")
        );
        println!();
        let peak = r.peak_run();
        let parts: Vec<String> = peak
            .memory
            .by_label()
            .iter()
            .map(|(label, n, kb, _, _)| {
                if *n > 1 {
                    format!("{label} ×{n} {:.1} MB", mb(*kb))
                } else {
                    format!("{label} {:.1} MB", mb(*kb))
                }
            })
            .collect();
        println!(
            "Peak RSS by process in the run with the largest peak memory (run {}): {}",
            peak.run_id,
            parts.join(", ")
        );
        println!();
    }
    large_federation(&venv);
    call_cost(&venv);
}

/// The cost of one ClientApp call through floret's Python bridge with a
/// model of 1,000,000 float32 values (`benches/echo_app`: the ClientApp reads
/// the arrays as numpy arrays and replies with them), against a copy of the
/// same 4 MB in memory, and against a call with a 10-value model.
fn call_cost(venv: &Path) {
    use floret::records::{Array, Record, RecordDict};
    const CALLS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("echoapp");
    copy_tree(&manifest_dir().join("benches/echo_app"), &app);
    let interpreter = venv.join("bin/python");
    let model = |values: usize| {
        let mut arrays = floret::records::ArrayRecord::new();
        arrays.insert(
            "0",
            Array::from_f32(vec![values], (0..values).map(|i| i as f32 * 0.5).collect()),
        );
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays));
        content
    };
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mut rows = Vec::new();
    for values in [10usize, 1_000_000] {
        eprintln!("call cost: {CALLS} calls with {values} float32 values...");
        let timed = floret::bridge::probe::time_calls(
            &interpreter,
            &app,
            "echoapp.client_app:app",
            "train",
            &model(values),
            CALLS,
        )
        .unwrap_or_else(|e| panic!("the echo app failed: {e}"));
        rows.push((
            values,
            timed.content_bytes,
            timed.reply_bytes,
            median(timed.calls.clone()),
            timed.calls,
        ));
    }
    // A copy of the same bytes, in memory.
    let bytes = 4 * 1_000_000;
    let source = vec![7u8; bytes];
    let mut target = vec![0u8; bytes];
    let copies: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            target.copy_from_slice(std::hint::black_box(&source));
            std::hint::black_box(&target);
            started.elapsed()
        })
        .collect();
    let copy = median(copies);
    println!("## One ClientApp call through the Python bridge");
    println!();
    println!("Median of {CALLS} calls after one warm-up (`benches/echo_app`); a copy of 4,000,000 bytes in memory (`copy_from_slice`, median of 200): {:.3} ms.", secs(copy) * 1e3);
    println!();
    println!("| model | content sent | reply | call (median) | fastest | slowest | call / memory copy of 4 MB |");
    println!("|---|---|---|---|---|---|---|");
    for (values, sent, reply, median, calls) in &rows {
        println!(
            "| {values} float32 | {:.2} MB | {:.2} MB | {:.3} ms | {:.3} ms | {:.3} ms | {:.1}× |",
            *sent as f64 / 1e6,
            *reply as f64 / 1e6,
            secs(*median) * 1e3,
            secs(*calls.iter().min().unwrap()) * 1e3,
            secs(*calls.iter().max().unwrap()) * 1e3,
            secs(*median) / secs(copy),
        );
    }
    let (small, large) = (rows[0].3, rows[1].3);
    println!();
    println!(
        "The 4 MB model adds {:.3} ms to a call ({:.1}× a memory copy of its bytes; the model crosses the process boundary twice, and Flower's code converts it to numpy and back).",
        secs(large.saturating_sub(small)) * 1e3,
        secs(large.saturating_sub(small)) / secs(copy),
    );
    println!();
}

/// 1,000 SuperNodes × 10 rounds of the NumPy Message-API example
/// (`examples/numpy-message-api`, 10% of the nodes sampled per phase), one
/// run on a fresh SuperLink per system, floret then a second run on its warm
/// SuperLink.
fn large_federation(venv: &Path) {
    const NODES: usize = 1000;
    const ROUNDS: u32 = 10;
    let config = format!("num-server-rounds={ROUNDS} fraction-train=0.1 fraction-evaluate=0.1");
    let setup = |system: &mut System| {
        let app = system.home.path().join("app/numpy-message-api");
        copy_tree(&manifest_dir().join("examples/numpy-message-api"), &app);
        system.run_args = vec![
            app.to_str().unwrap().into(),
            "--stream".into(),
            "-c".into(),
            config.clone(),
        ];
        system.rounds = ROUNDS;
        system.set_supernodes(NODES);
    };
    let mut ours = System::new(
        Kind::Floret,
        "floret, Python app",
        PathBuf::from(env!("CARGO_BIN_EXE_flwr")),
        None,
    );
    ours.python = true;
    ours.env = vec![("FLWR_PYTHON".into(), venv.join("bin/python"))];
    setup(&mut ours);
    let mut flower = System::new(
        Kind::Flower,
        "Flower 1.27.0",
        venv.join("bin/flwr"),
        Some(venv.join("bin")),
    );
    setup(&mut flower);
    // 1,000 nodes take Flower minutes; hung is much later than for 10.
    flower.hang_after = Duration::from_secs(1800);

    eprintln!("{NODES} nodes x {ROUNDS} rounds: floret, cold...");
    let cold = ours.run(false);
    ours.wait_warm();
    eprintln!("{NODES} nodes x {ROUNDS} rounds: floret, warm...");
    let warm = ours.run(false);
    assert!(ours.started_warm(&warm.run_id));
    if let Err(e) = ours.stop() {
        panic!("{e}");
    }
    eprintln!("{NODES} nodes x {ROUNDS} rounds: Flower...");
    let theirs = flower.run(false);
    if let Err(e) = flower.stop() {
        panic!("{e}");
    }
    println!(
        "## {NODES} SuperNodes × {ROUNDS} rounds of a Python app (examples/numpy-message-api, 10% sampled per phase)"
    );
    println!();
    println!(
        "| system | wall | run running→finished (SuperLink) | peak memory (Σ peak RSS) | final central accuracy |"
    );
    println!("|---|---|---|---|---|");
    for (name, run) in [
        ("floret, first Python run of its SuperLink", &cold),
        ("floret, from the warm interpreter", &warm),
        ("Flower 1.27.0", &theirs),
    ] {
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.1} MB | {} |",
            secs(run.wall),
            run.elapsed,
            mb(run.memory.sum_hwm_kb()),
            run.accuracy.map_or("?".to_string(), |a| format!("{a:.4}")),
        );
    }
    println!(
        "| **Flower / floret (first, warm)** | **{:.1}×, {:.1}×** | | **{:.1}×** | |",
        secs(theirs.wall) / secs(cold.wall),
        secs(theirs.wall) / secs(warm.wall),
        theirs.memory.sum_hwm_kb() as f64 / cold.memory.sum_hwm_kb().max(warm.memory.sum_hwm_kb()) as f64,
    );
    println!();
    if flower.hangs.get() > 0 {
        println!(
            "Flower: {} run(s) hung (Ray's processes never started) and were run again.",
            flower.hangs.get()
        );
        println!();
    }
}
