//! The chaos program: many concurrent `flwr` clients against a managed
//! SuperLink that is killed with SIGKILL at random moments, with the
//! invariants checked after every restart (docs/RELIABILITY.md).
//!
//! ```text
//! cargo build --release && cargo run --release --example chaos -- --kills 1000 --clients 50
//! just chaos --kills 1000 --clients 50
//! ```
//!
//! It owns a private temporary `FLWR_HOME` (and `HOME`), two free loopback
//! ports, the `flwr` commands its clients run, and the kills: SIGKILL of the
//! SuperLink serving that home and of its app processes (`flwr-simulation`),
//! found by the ports on their command lines. The schedule (what each client
//! does, when the killer strikes and at what) comes from one seeded PRNG
//! (`floret::prng`): the seed is printed and `--seed` repeats the
//! schedule (not the interleaving with the processes' own timing).
//!
//! Steps: start the SuperLink → clients and killer run concurrently, an
//! audit after every restart → quiet phase: every run must finish, every
//! completed run must replay identical → bad inputs → stop the SuperLink,
//! `Store::verify` the file, look for leftovers → the Markdown summary.
//!
//! It never touches the user's `~/.flwr` or Flower's ports 39093/39094, never
//! signals a process it did not find under its own ports, and never writes
//! to `state.db`: it reads it through `floret::store::Reader` (read-only)
//! while the SuperLink lives, and opens the writer only after it stopped.
//! Every wait is a condition with a deadline; the only sleeps are the random
//! gaps between kills (they are the schedule) and short polling intervals.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use floret::domain::ids::Seq;
use floret::domain::run::Status;
use floret::prng::Prng;
use floret::store::{Reader, Store};

/// Kills the local SuperLink and its app processes with SIGKILL at random
/// moments while many clients submit, stream, list, stop and replay runs;
/// checks after every restart that nothing acknowledged was lost, that the
/// event sequence is gapless, that projections equal the fold of the events,
/// that no run is stuck and that every completed run replays identical.
/// Prints a Markdown summary; exits 1 on any violation (with the seed).
#[derive(Clone, Debug, Parser)]
#[command(name = "chaos")]
pub struct Options {
    /// Kills to perform (SuperLink and app processes together).
    #[arg(long, default_value_t = 1000)]
    pub kills: u64,
    /// Concurrent clients, each running `flwr` commands one after another.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Seed of the schedule (default: drawn and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shortest gap between two kills, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub min_gap_ms: u64,
    /// Longest gap between two kills, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub max_gap_ms: u64,
    /// Percentage of kills aimed at the SuperLink; the others hit a running
    /// app process (or the SuperLink when none runs).
    #[arg(long, default_value_t = 50)]
    pub superlink_percent: u64,
    /// How long a run may stay unfinished, and a command may take, before it
    /// counts as stuck (a violation), in seconds.
    #[arg(long, default_value_t = 120)]
    pub deadline_secs: u64,
    /// Directory of the `flwr`, `flower-superlink` and `flwr-simulation`
    /// binaries (default: the release directory this program was built in).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Directory holding the example apps `quickstart` and `large-federation`.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))]
    pub examples: PathBuf,
    /// Skip the bad-input table.
    #[arg(long)]
    pub no_bad_inputs: bool,
    /// Keep the temporary FLWR_HOME (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Also write the Markdown summary to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print progress only at the end.
    #[arg(long)]
    pub quiet: bool,
}

impl Options {
    /// A small configuration (for tests): `kills` kills among `clients`
    /// clients, binaries from `bin_dir`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn small(kills: u64, clients: usize, seed: u64, bin_dir: PathBuf) -> Options {
        let mut options = Options::parse_from(["chaos"]);
        options.kills = kills;
        options.clients = clients;
        options.seed = Some(seed);
        options.min_gap_ms = 100;
        options.max_gap_ms = 500;
        options.deadline_secs = 60;
        options.bin_dir = Some(bin_dir);
        options.quiet = true;
        options
    }
}

/// What a chaos run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub clients: usize,
    pub superlink_kills: u64,
    pub app_kills: u64,
    pub restarts: u64,
    pub runs: u64,
    pub acknowledged: u64,
    pub completed: u64,
    pub stopped: u64,
    pub failed: u64,
    pub stops_acknowledged: u64,
    pub replayed_identical: u64,
    pub events: u64,
    pub audits: u64,
    pub checks: u64,
    pub commands: BTreeMap<String, Tally>,
    pub bad_inputs: Vec<BadAnswer>,
    pub violations: Vec<String>,
    pub wall: Duration,
}

/// Outcomes of one kind of command.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub ok: u64,
    /// Exit 3/4: a streamed run ended failed or stopped.
    pub ended_otherwise: u64,
    /// Exit 1: an error (mostly the SuperLink being killed under it).
    pub errors: u64,
}

/// A bad input and the answer it got.
#[derive(Clone, Debug)]
pub struct BadAnswer {
    pub input: String,
    pub code: Option<i32>,
    pub first_line: String,
    pub seconds: f64,
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    let options = Options::parse();
    let report = match run(&options) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("chaos: {error}");
            std::process::exit(2);
        }
    };
    let summary = report.markdown();
    println!("{summary}");
    if let Some(path) = &options.report {
        if let Err(e) = std::fs::write(path, &summary) {
            eprintln!("chaos: cannot write {}: {e}", path.display());
        }
    }
    if !report.violations.is_empty() {
        eprintln!(
            "chaos: {} violation(s); reproduce the schedule with --seed {}",
            report.violations.len(),
            report.seed
        );
        std::process::exit(1);
    }
}

/// Runs the whole program: every step, then the report.
pub fn run(options: &Options) -> Result<Report, String> {
    let seed = options.seed.unwrap_or_else(draw_seed);
    let chaos = Arc::new(Chaos::new(options.clone(), seed)?);
    chaos.say(&format!(
        "chaos: seed {seed}, {} kills, {} clients, FLWR_HOME {}, ports {}/{}",
        options.kills,
        options.clients,
        chaos.home.display(),
        chaos.control_port,
        chaos.simulationio_port
    ));
    // Step 1: the SuperLink, started the way users start it (`flwr` auto-start).
    chaos.restart_superlink()?;
    chaos.audit("first start");
    // Step 2: clients and the killer, concurrently.
    let clients: Vec<_> = (0..options.clients)
        .map(|index| {
            let chaos = Arc::clone(&chaos);
            std::thread::spawn(move || chaos.client(index))
        })
        .collect();
    let killer = {
        let chaos = Arc::clone(&chaos);
        std::thread::spawn(move || chaos.killer())
    };
    let killed = killer.join().map_err(|_| "the killer thread panicked".to_string());
    chaos.stop_clients.store(true, Ordering::SeqCst);
    for client in clients {
        if client.join().is_err() {
            chaos.violation("a client thread panicked".into());
        }
    }
    killed??;
    // Step 3: quiet phase: the SuperLink is up, nothing is killed any more.
    chaos.restart_superlink()?;
    chaos.wait_until_every_run_finished();
    chaos.replay_every_completed_run();
    chaos.audit_everything();
    // Step 4: bad inputs, which must leave the stored state as it was.
    let bad_inputs = if options.no_bad_inputs {
        Vec::new()
    } else {
        chaos.bad_inputs()
    };
    // Step 5: stop, verify the file with the writer's own check, leftovers.
    chaos.stop_and_verify();
    let report = chaos.report(bad_inputs);
    if options.keep {
        let kept = chaos.home_dir.lock().unwrap().take().map(tempfile::TempDir::keep);
        chaos.say(&format!("chaos: kept {kept:?}"));
    }
    Ok(report)
}

fn draw_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    floret::prng::derive_seed(nanos, &[u64::from(std::process::id())])
}

/// What a `flwr` command did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
    seconds: f64,
}

impl Ran {
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// The message of an error: the text of its box, else the first line.
    fn first_line(&self) -> String {
        let boxed: Vec<&str> = self
            .stderr
            .lines()
            .filter_map(|line| line.strip_prefix('│'))
            .map(|line| line.trim_end().trim_end_matches('│').trim())
            .collect();
        let text = if boxed.is_empty() {
            self.stderr
                .lines()
                .chain(self.stdout.lines())
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("")
                .to_string()
        } else {
            boxed.join(" ")
        };
        let text = text.replace('|', "\\|");
        match text.char_indices().nth(240) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        }
    }
}

/// What the clients were told, and what the audits found so far.
#[derive(Default)]
struct Ledger {
    /// Runs whose id a client received (StartRun answered).
    acknowledged: BTreeSet<u64>,
    /// Finished statuses clients or audits saw: a finished run never changes.
    finished: BTreeMap<u64, String>,
    /// Runs whose `flwr stop` succeeded: they must be finished.
    stops: BTreeSet<u64>,
    replayed: BTreeSet<u64>,
    commands: BTreeMap<String, Tally>,
    violations: Vec<String>,
    superlink_kills: u64,
    app_kills: u64,
    restarts: u64,
    audits: u64,
    checks: u64,
    /// The last audit's event count and newest sequence number.
    events: u64,
    last_seq: u64,
    /// When each run was first seen unfinished, and the runs already reported stuck.
    unfinished_since: BTreeMap<u64, Instant>,
    reported_stuck: BTreeSet<u64>,
    statuses: BTreeMap<u64, Status>,
}

struct Chaos {
    options: Options,
    seed: u64,
    home: PathBuf,
    home_dir: Mutex<Option<tempfile::TempDir>>,
    bin: PathBuf,
    control_port: u16,
    simulationio_port: u16,
    started: Instant,
    deadline: Duration,
    stop_clients: AtomicBool,
    ledger: Mutex<Ledger>,
    /// Serialises audits (the killer's and the final ones).
    audit_lock: Mutex<()>,
}

impl Chaos {
    fn new(options: Options, seed: u64) -> Result<Chaos, String> {
        let bin = match &options.bin_dir {
            Some(dir) => dir.clone(),
            // target/release/examples/chaos → target/release
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
                .ok_or("cannot tell where the binaries are; pass --bin-dir")?,
        };
        for name in ["flwr", "flower-superlink", "flwr-simulation"] {
            if !bin.join(name).is_file() {
                return Err(format!(
                    "{} is missing: build the binaries first (cargo build --release) or pass --bin-dir",
                    bin.join(name).display()
                ));
            }
        }
        for app in ["quickstart", "large-federation"] {
            if !options.examples.join(app).join("pyproject.toml").is_file() {
                return Err(format!("{} has no {app} app", options.examples.display()));
            }
        }
        if options.min_gap_ms > options.max_gap_ms {
            return Err("--min-gap-ms is larger than --max-gap-ms".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("floret-chaos-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary FLWR_HOME: {e}"))?;
        let (control_port, simulationio_port) = free_ports()?;
        Ok(Chaos {
            deadline: Duration::from_secs(options.deadline_secs.max(1)),
            options,
            seed,
            home: dir.path().to_path_buf(),
            home_dir: Mutex::new(Some(dir)),
            bin,
            control_port,
            simulationio_port,
            started: Instant::now(),
            stop_clients: AtomicBool::new(false),
            ledger: Mutex::new(Ledger::default()),
            audit_lock: Mutex::new(()),
        })
    }

    fn say(&self, line: &str) {
        if !self.options.quiet {
            eprintln!("[{:7.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    fn violation(&self, detail: String) {
        eprintln!("chaos: VIOLATION (seed {}): {detail}", self.seed);
        self.ledger.lock().unwrap().violations.push(detail);
    }

    fn database(&self) -> PathBuf {
        self.home.join("local-superlink").join("state.db")
    }

    fn app(&self, name: &str) -> String {
        self.options.examples.join(name).display().to_string()
    }

    // ---- Commands ------------------------------------------------------

    /// Runs `flwr ARGS` with this home's environment; a command that takes
    /// longer than the deadline is killed and reported as a hang.
    fn flwr(&self, args: &[String]) -> Ran {
        self.flwr_within(args, self.deadline)
    }

    fn flwr_within(&self, args: &[String], limit: Duration) -> Ran {
        let started = Instant::now();
        let mut command = Command::new(self.bin.join("flwr"));
        command
            .args(args)
            .env("HOME", &self.home)
            .env("FLWR_HOME", &self.home)
            .env("FLWR_LOCAL_CONTROL_API_PORT", self.control_port.to_string())
            .env("FLWR_LOCAL_SIMULATIONIO_API_PORT", self.simulationio_port.to_string())
            .env("NO_COLOR", "1")
            .env("COLUMNS", "120")
            .env_remove("FLORET_FAULTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Ran {
                    code: None,
                    stdout: String::new(),
                    stderr: format!("cannot start flwr: {e}"),
                    timed_out: false,
                    seconds: 0.0,
                }
            }
        };
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() > limit => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        let ran = Ran {
            code: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
            timed_out,
            seconds: started.elapsed().as_secs_f64(),
        };
        if ran.timed_out {
            self.violation(format!(
                "hang: `flwr {}` did not end within {}s",
                args.join(" "),
                limit.as_secs()
            ));
        }
        if ran.stderr.contains("panicked at") {
            self.violation(format!("panic in `flwr {}`:\n{}", args.join(" "), ran.stderr));
        }
        ran
    }

    fn tally(&self, kind: &str, ran: &Ran) {
        let mut ledger = self.ledger.lock().unwrap();
        let tally = ledger.commands.entry(kind.to_string()).or_default();
        match ran.code {
            Some(0) => tally.ok += 1,
            Some(3) | Some(4) => tally.ended_otherwise += 1,
            _ => tally.errors += 1,
        }
    }

    /// A status a client saw: a finished run must never change.
    fn observe(&self, run_id: u64, status: &str) {
        if !status.starts_with("finished:") {
            return;
        }
        let mut ledger = self.ledger.lock().unwrap();
        match ledger.finished.get(&run_id) {
            Some(seen) if seen != status => {
                let detail = format!("run {run_id} was {seen} and is now {status}");
                drop(ledger);
                self.violation(detail);
            }
            Some(_) => {}
            None => {
                ledger.finished.insert(run_id, status.to_string());
            }
        }
    }

    // ---- The SuperLink -------------------------------------------------

    fn find_processes(&self, executable: &str, needle: &str) -> Vec<(u32, String)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(cmdline) = cmdline_of(pid) {
                let ours = cmdline
                    .split('\0')
                    .next()
                    .is_some_and(|argv0| argv0.ends_with(executable))
                    && cmdline.split('\0').any(|arg| arg == needle);
                if ours && floret::cli::local::process_alive(pid) {
                    found.push((pid, cmdline));
                }
            }
        }
        found
    }

    fn superlinks(&self) -> Vec<u32> {
        let address = format!("127.0.0.1:{}", self.control_port);
        self.find_processes("flower-superlink", &address)
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// App processes of this SuperLink: (pid, run id).
    fn app_processes(&self) -> Vec<(u32, u64)> {
        let address = format!("127.0.0.1:{}", self.simulationio_port);
        self.find_processes("flwr-simulation", &address)
            .into_iter()
            .map(|(pid, cmdline)| {
                let args: Vec<&str> = cmdline.split('\0').collect();
                let run_id = args
                    .iter()
                    .position(|a| *a == "--run-id")
                    .and_then(|at| args.get(at + 1)?.parse().ok())
                    .unwrap_or(0);
                (pid, run_id)
            })
            .collect()
    }

    /// Makes sure the SuperLink runs and answers, the way users get it:
    /// a `flwr` command starts it when nothing answers.
    fn restart_superlink(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.deadline;
        loop {
            let ran = self.flwr(&strings(&["ls", "--format", "json", "--limit", "1"]));
            if ran.code == Some(0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let detail = format!(
                    "the SuperLink did not come back within {}s: {}",
                    self.deadline.as_secs(),
                    ran.first_line()
                );
                self.violation(detail.clone());
                return Err(detail);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // ---- The killer ----------------------------------------------------

    fn killer(&self) -> Result<(), String> {
        let mut rng = Prng::stream(self.seed, &[2]);
        let mut last_progress = Instant::now();
        for kill in 1..=self.options.kills {
            let span = self.options.max_gap_ms - self.options.min_gap_ms + 1;
            let gap = self.options.min_gap_ms + rng.below(span);
            std::thread::sleep(Duration::from_millis(gap));
            let at_superlink = rng.below(100) < self.options.superlink_percent;
            let pick = rng.next_u64();
            if at_superlink || !self.kill_app_process(pick) {
                self.kill_superlink(kill)?;
            }
            if !self.options.quiet && last_progress.elapsed() > Duration::from_secs(5) {
                last_progress = Instant::now();
                self.progress(kill);
            }
        }
        self.progress(self.options.kills);
        Ok(())
    }

    fn progress(&self, kill: u64) {
        let ledger = self.ledger.lock().unwrap();
        let finished = ledger.statuses.values().filter(|s| s.is_finished()).count();
        self.say(&format!(
            "kills {kill}/{} (SuperLink {}, app {}), runs {} ({} acknowledged, {} finished), replays {}, audits {}, \
             checks {}, violations {}",
            self.options.kills,
            ledger.superlink_kills,
            ledger.app_kills,
            ledger.statuses.len(),
            ledger.acknowledged.len(),
            finished,
            ledger.replayed.len(),
            ledger.audits,
            ledger.checks,
            ledger.violations.len()
        ));
    }

    /// Kills one running app process (chosen by `pick`); false when none runs.
    fn kill_app_process(&self, pick: u64) -> bool {
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let apps = self.app_processes();
            if !apps.is_empty() {
                let (pid, _run) = apps[(pick % apps.len() as u64) as usize];
                let address = format!("127.0.0.1:{}", self.simulationio_port);
                if kill_if(pid, |cmdline| cmdline.split('\0').any(|a| a == address)) {
                    self.ledger.lock().unwrap().app_kills += 1;
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the SuperLink, waits until it is gone, lets `flwr` start it
    /// again and audits the file.
    fn kill_superlink(&self, kill: u64) -> Result<(), String> {
        let address = format!("127.0.0.1:{}", self.control_port);
        let deadline = Instant::now() + self.deadline;
        let pid = loop {
            if let Some(pid) = self.superlinks().first() {
                break *pid;
            }
            // Killed a moment ago and not started again yet: start it.
            self.restart_superlink()?;
            if Instant::now() > deadline {
                return Err("no SuperLink to kill".into());
            }
        };
        if !kill_if(pid, |cmdline| cmdline.split('\0').any(|a| a == address)) {
            // It exited by itself between the scan and the kill: try again.
            return self.kill_superlink(kill);
        }
        let gone = Instant::now() + Duration::from_secs(10);
        while floret::cli::local::process_alive(pid) {
            if Instant::now() > gone {
                let detail = format!("the SuperLink (pid {pid}) survived SIGKILL for 10 s");
                self.violation(detail.clone());
                return Err(detail);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.ledger.lock().unwrap().superlink_kills += 1;
        self.restart_superlink()?;
        self.ledger.lock().unwrap().restarts += 1;
        self.audit(&format!("restart after kill {kill}"));
        Ok(())
    }

    // ---- Audits ----------------------------------------------------------

    /// Checks the database after a restart; returns the runs not finished.
    fn audit(&self, label: &str) -> Vec<u64> {
        let _one_at_a_time = self.audit_lock.lock().unwrap();
        // What clients were told, taken before the snapshot: all of it must
        // be in the snapshot.
        let (acknowledged, finished, stops, after) = {
            let ledger = self.ledger.lock().unwrap();
            (
                ledger.acknowledged.clone(),
                ledger.finished.clone(),
                ledger.stops.clone(),
                ledger.last_seq,
            )
        };
        let audit = match Reader::open(&self.database()).and_then(|reader| reader.audit(Seq(after))) {
            Ok(audit) => audit,
            Err(e) => {
                self.violation(format!("{label}: cannot read the state database: {e}"));
                return Vec::new();
            }
        };
        let mut problems: Vec<String> = audit.violations.iter().map(|v| format!("{label}: {v}")).collect();
        let mut checks = 1 + audit.runs_checked as u64 * 3 + 2;
        let now = Instant::now();
        let mut ledger = self.ledger.lock().unwrap();
        if audit.events < ledger.events || audit.last_seq < ledger.last_seq {
            problems.push(format!(
                "{label}: the event log went backwards: {} events up to seq {}, before {} up to seq {}",
                audit.events, audit.last_seq, ledger.events, ledger.last_seq
            ));
        }
        for run_id in &acknowledged {
            if !audit.runs.contains_key(&floret::domain::ids::RunId(*run_id)) {
                problems.push(format!("{label}: acknowledged run {run_id} is missing"));
            }
        }
        for (run_id, seen) in &finished {
            match audit.runs.get(&floret::domain::ids::RunId(*run_id)) {
                Some(status) if status.to_string() == *seen => {}
                other => problems.push(format!(
                    "{label}: run {run_id} was seen {seen}, the database has {other:?}"
                )),
            }
        }
        for run_id in &stops {
            match audit.runs.get(&floret::domain::ids::RunId(*run_id)) {
                Some(status) if status.is_finished() => {}
                other => problems.push(format!(
                    "{label}: `flwr stop {run_id}` succeeded but the run is {other:?}"
                )),
            }
        }
        checks += (acknowledged.len() + finished.len() + stops.len()) as u64;
        let mut unfinished = Vec::new();
        for (run_id, status) in &audit.runs {
            let run_id = run_id.0;
            if status.is_finished() {
                ledger.unfinished_since.remove(&run_id);
                continue;
            }
            unfinished.push(run_id);
            let since = *ledger.unfinished_since.entry(run_id).or_insert(now);
            if now.duration_since(since) > self.deadline && ledger.reported_stuck.insert(run_id) {
                problems.push(format!(
                    "{label}: run {run_id} is stuck: {status} for more than {}s",
                    self.deadline.as_secs()
                ));
            }
        }
        checks += audit.runs.len() as u64;
        ledger.statuses = audit.runs.iter().map(|(id, status)| (id.0, *status)).collect();
        ledger.events = audit.events;
        ledger.last_seq = audit.last_seq;
        ledger.audits += 1;
        ledger.checks += checks;
        drop(ledger);
        for problem in problems {
            self.violation(problem);
        }
        unfinished
    }

    fn wait_until_every_run_finished(&self) {
        let deadline = Instant::now() + self.deadline;
        loop {
            let unfinished = self.audit("quiet phase");
            if unfinished.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                self.violation(format!(
                    "{} run(s) not finished {}s after the last kill: {:?}",
                    unfinished.len(),
                    self.deadline.as_secs(),
                    &unfinished[..unfinished.len().min(10)]
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole file again, every run folded (not only the touched ones).
    fn audit_everything(&self) {
        let _one_at_a_time = self.audit_lock.lock().unwrap();
        match Reader::open(&self.database()).and_then(|reader| reader.audit(Seq(0))) {
            Ok(audit) => {
                let mut ledger = self.ledger.lock().unwrap();
                ledger.audits += 1;
                ledger.checks += 1 + audit.runs_checked as u64 * 3;
                drop(ledger);
                for problem in audit.violations {
                    self.violation(format!("full audit: {problem}"));
                }
            }
            Err(e) => self.violation(format!("full audit: cannot read the state database: {e}")),
        }
    }

    // ---- Clients ---------------------------------------------------------

    fn client(&self, index: usize) {
        let mut rng = Prng::stream(self.seed, &[1, index as u64]);
        let mut mine: Vec<u64> = Vec::new();
        while !self.stop_clients.load(Ordering::SeqCst) {
            let roll = rng.below(100);
            match roll {
                0..=29 => self.submit(&mut rng, &mut mine, false, false),
                30..=37 => self.submit(&mut rng, &mut mine, true, false),
                38..=42 => self.submit(&mut rng, &mut mine, false, true),
                43..=57 => self.follow_log(&mut rng, &mine),
                58..=69 => self.list(&mut rng, &mine),
                70..=79 => self.stop(&mut rng, &mine),
                _ => self.replay_one(&mut rng, &mine),
            }
        }
    }

    fn submit(&self, rng: &mut Prng, mine: &mut Vec<u64>, stream: bool, large: bool) {
        let mut args = strings(&["run"]);
        let config = if large {
            args.push(self.app("large-federation"));
            args.extend(strings(&["--federation-config"]));
            args.push(format!("num-supernodes={}", 200 + rng.below(800)));
            format!("seed={} num-server-rounds={}", rng.below(1_000_000), 5 + rng.below(20))
        } else {
            args.push(self.app("quickstart"));
            format!("seed={} num-server-rounds={}", rng.below(1_000_000), 1 + rng.below(5))
        };
        args.extend(["-c".to_string(), config]);
        if stream {
            args.push("--stream".into());
        } else {
            args.extend(strings(&["--format", "json"]));
        }
        let ran = self.flwr(&args);
        let kind = match (large, stream) {
            (true, _) => "run large-federation",
            (false, true) => "run quickstart --stream",
            (false, false) => "run quickstart",
        };
        self.tally(kind, &ran);
        let run_id = if stream {
            ran.stdout
                .lines()
                .find_map(|line| line.split("Successfully started run ").nth(1))
                .and_then(|rest| rest.trim().parse::<u64>().ok())
        } else {
            ran.json()
                .filter(|_| ran.code == Some(0))
                .and_then(|doc| doc["run-id"].as_str()?.parse().ok())
        };
        if let Some(run_id) = run_id {
            self.ledger.lock().unwrap().acknowledged.insert(run_id);
            mine.push(run_id);
            if stream {
                match ran.code {
                    Some(0) => self.observe(run_id, "finished:completed"),
                    Some(3) => self.observe(run_id, "finished:failed"),
                    Some(4) => self.observe(run_id, "finished:stopped"),
                    _ => {}
                }
            }
        }
    }

    /// One of the client's recent runs.
    fn recent(&self, rng: &mut Prng, mine: &[u64]) -> Option<u64> {
        let recent = &mine[mine.len().saturating_sub(20)..];
        (!recent.is_empty()).then(|| recent[rng.below(recent.len() as u64) as usize])
    }

    fn follow_log(&self, rng: &mut Prng, mine: &[u64]) {
        let Some(run_id) = self.recent(rng, mine) else {
            return self.list(rng, mine);
        };
        let ran = self.flwr(&["log".into(), run_id.to_string(), "--stream".into()]);
        self.tally("log --stream", &ran);
        match ran.code {
            Some(0) => self.observe(run_id, "finished:completed"),
            Some(3) => self.observe(run_id, "finished:failed"),
            Some(4) => self.observe(run_id, "finished:stopped"),
            _ => {}
        }
    }

    fn list(&self, rng: &mut Prng, mine: &[u64]) {
        let one = self.recent(rng, mine).filter(|_| rng.chance(1, 2));
        let (kind, args) = match one {
            Some(run_id) => (
                "ls --run-id",
                vec![
                    "ls".into(),
                    "--run-id".into(),
                    run_id.to_string(),
                    "--format".into(),
                    "json".into(),
                ],
            ),
            None => ("ls --limit 50", strings(&["ls", "--format", "json", "--limit", "50"])),
        };
        let ran = self.flwr(&args);
        self.tally(kind, &ran);
        if ran.code != Some(0) {
            return;
        }
        let Some(doc) = ran.json() else {
            self.violation(format!(
                "`flwr {}` exited 0 without JSON: {}",
                args.join(" "),
                ran.stdout
            ));
            return;
        };
        for run in doc["runs"].as_array().into_iter().flatten() {
            let id = run["run-id"].as_str().and_then(|s| s.parse::<u64>().ok());
            if let (Some(id), Some(status)) = (id, run["status"].as_str()) {
                self.observe(id, status);
            }
        }
    }

    fn stop(&self, rng: &mut Prng, mine: &[u64]) {
        let unfinished: Vec<u64> = {
            let ledger = self.ledger.lock().unwrap();
            mine.iter()
                .rev()
                .take(20)
                .filter(|id| !ledger.finished.contains_key(id))
                .copied()
                .collect()
        };
        if unfinished.is_empty() {
            return self.list(rng, mine);
        }
        let run_id = unfinished[rng.below(unfinished.len() as u64) as usize];
        let ran = self.flwr(&["stop".into(), run_id.to_string(), "--format".into(), "json".into()]);
        self.tally("stop", &ran);
        if ran.code == Some(0) {
            self.ledger.lock().unwrap().stops.insert(run_id);
        }
    }

    fn replay_one(&self, rng: &mut Prng, mine: &[u64]) {
        let candidates: Vec<u64> = {
            let ledger = self.ledger.lock().unwrap();
            mine.iter()
                .filter(|id| ledger.finished.get(id).is_some_and(|s| s == "finished:completed"))
                .filter(|id| !ledger.replayed.contains(id))
                .copied()
                .collect()
        };
        if candidates.is_empty() {
            return self.list(rng, mine);
        }
        let run_id = candidates[rng.below(candidates.len() as u64) as usize];
        self.replay(run_id, false);
    }

    /// Replays a completed run; true when it is identical. `final_try`:
    /// no kills any more, so an error is a violation.
    fn replay(&self, run_id: u64, final_try: bool) -> bool {
        let ran = self.flwr(&["replay".into(), run_id.to_string(), "--format".into(), "json".into()]);
        self.tally("replay", &ran);
        let verdict = ran.json().and_then(|doc| doc["verdict"].as_str().map(str::to_string));
        match (ran.code, verdict.as_deref()) {
            (Some(0), Some("identical")) => {
                self.ledger.lock().unwrap().replayed.insert(run_id);
                true
            }
            // An error while the SuperLink is being killed: try again later.
            (Some(1), _) if !final_try => false,
            (code, verdict) => {
                self.violation(format!(
                    "completed run {run_id} did not replay identical: exit {code:?}, verdict {verdict:?}: {}",
                    ran.first_line()
                ));
                false
            }
        }
    }

    /// Every completed run not replayed yet, two at a time.
    fn replay_every_completed_run(&self) {
        let todo: Vec<u64> = {
            let ledger = self.ledger.lock().unwrap();
            ledger
                .statuses
                .iter()
                .filter(|(_, status)| status.to_string() == "finished:completed")
                .map(|(id, _)| *id)
                .filter(|id| !ledger.replayed.contains(id))
                .collect()
        };
        self.say(&format!("replaying the {} completed runs not replayed yet", todo.len()));
        let next = Mutex::new(todo.into_iter());
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| loop {
                    let Some(run_id) = next.lock().unwrap().next() else {
                        return;
                    };
                    // The SuperLink stays up now: one retry covers a
                    // connection that was still settling.
                    if !self.replay(run_id, false) {
                        self.replay(run_id, true);
                    }
                });
            }
        });
    }

    // ---- Bad inputs ------------------------------------------------------

    fn bad_inputs(&self) -> Vec<BadAnswer> {
        let scratch = self.home.join("bad-inputs");
        let fifo_app = scratch.join("fifo-app");
        let zero_app = scratch.join("dev-zero-app");
        let broken_app = scratch.join("broken-app");
        for dir in [&fifo_app, &zero_app, &broken_app] {
            std::fs::create_dir_all(dir).expect("create a scratch app directory");
        }
        mkfifo(&fifo_app.join("pyproject.toml"));
        mkfifo(&scratch.join("fifo.toml"));
        let _ = std::os::unix::fs::symlink("/dev/zero", zero_app.join("pyproject.toml"));
        std::fs::write(broken_app.join("pyproject.toml"), "[project\nname = ").expect("write an app");
        let quickstart = self.app("quickstart");
        let huge = format!("lr={}", "[".repeat(16 * 1024));
        let unknown = "4242424242424242";
        let run = |extra: &[&str]| {
            let mut args = vec!["run".to_string(), quickstart.clone()];
            args.extend(strings(extra));
            args
        };
        let cases: Vec<(String, Vec<String>)> = vec![
            ("run -c num-server-rounds".into(), run(&["-c", "num-server-rounds"])),
            ("run -c =5".into(), run(&["-c", "=5"])),
            ("run -c k=".into(), run(&["-c", "k="])),
            ("run -c 'lr=[[[…' (16 KiB)".into(), run(&["-c", &huge])),
            ("run -c no-such-key=1".into(), run(&["-c", "no-such-key=1"])),
            (
                "run -c missing.toml".into(),
                run(&["-c", &scratch.join("missing.toml").display().to_string()]),
            ),
            (
                "run -c fifo.toml (a FIFO)".into(),
                run(&["-c", &scratch.join("fifo.toml").display().to_string()]),
            ),
            (
                "run --federation-config num-supernodes=5000000".into(),
                run(&["--federation-config", "num-supernodes=5000000"]),
            ),
            (
                "run --federation-config num-supernodes=0".into(),
                run(&["--federation-config", "num-supernodes=0"]),
            ),
            (
                "run --federation-config backend.init-args.num-cpus=0".into(),
                run(&["--federation-config", "backend.init-args.num-cpus=0"]),
            ),
            (
                "run APP whose pyproject.toml is a FIFO".into(),
                vec!["run".into(), fifo_app.display().to_string()],
            ),
            (
                "run APP whose pyproject.toml → /dev/zero".into(),
                vec!["run".into(), zero_app.display().to_string()],
            ),
            (
                "run APP with invalid TOML".into(),
                vec!["run".into(), broken_app.display().to_string()],
            ),
            (
                "run APP that does not exist".into(),
                vec!["run".into(), scratch.join("nowhere").display().to_string()],
            ),
            (
                format!("log {unknown} --stream"),
                strings(&["log", unknown, "--stream"]),
            ),
            (format!("log {unknown} --show"), strings(&["log", unknown, "--show"])),
            (format!("stop {unknown}"), strings(&["stop", unknown])),
            (format!("replay {unknown}"), strings(&["replay", unknown])),
            (format!("ls --run-id {unknown}"), strings(&["ls", "--run-id", unknown])),
            ("stop not-a-number".into(), strings(&["stop", "not-a-number"])),
        ];
        let before = self.event_count();
        let limit = Duration::from_secs(30);
        let mut answers = Vec::new();
        for (input, args) in cases {
            let ran = self.flwr_within(&args, limit);
            let answer = BadAnswer {
                input: input.clone(),
                code: ran.code,
                first_line: ran.first_line(),
                seconds: ran.seconds,
            };
            let clear = matches!(ran.code, Some(1) | Some(2)) && !answer.first_line.is_empty() && !ran.timed_out;
            if !clear {
                self.violation(format!(
                    "bad input `{input}` got no clear error: exit {:?}, {:?}",
                    ran.code, answer.first_line
                ));
            }
            answers.push(answer);
        }
        let after = self.event_count();
        if before != after {
            self.violation(format!(
                "bad inputs changed the stored state: {before:?} events before, {after:?} after"
            ));
        }
        self.ledger.lock().unwrap().checks += answers.len() as u64 + 1;
        answers
    }

    fn event_count(&self) -> Option<u64> {
        Reader::open(&self.database())
            .and_then(|reader| reader.view().count_events())
            .ok()
    }

    // ---- The end ---------------------------------------------------------

    fn stop_and_verify(&self) {
        let ran = self.flwr(&strings(&["superlink", "stop"]));
        if ran.code != Some(0) {
            self.violation(format!("`flwr superlink stop` failed: {}", ran.first_line()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = (self.superlinks(), self.app_processes());
            if left.0.is_empty() && left.1.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                self.violation(format!("processes left after `flwr superlink stop`: {left:?}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The writer's own check: the projections and its loaded state equal
        // the fold of every event.
        match Store::open(&self.database()).and_then(|store| store.verify()) {
            Ok(()) => self.ledger.lock().unwrap().checks += 1,
            Err(e) => self.violation(format!("Store::verify after the SuperLink stopped: {e}")),
        }
        let dir = self.home.join("local-superlink");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("superlink.log") {
                let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap_or_default()).into_owned();
                if let Some(line) = text.lines().find(|l| l.contains("panicked at")) {
                    self.violation(format!("a panic in {name}: {line}"));
                }
            }
        }
    }

    fn report(&self, bad_inputs: Vec<BadAnswer>) -> Report {
        let ledger = self.ledger.lock().unwrap();
        let count = |wanted: &str| {
            ledger
                .statuses
                .values()
                .filter(|status| status.to_string() == wanted)
                .count() as u64
        };
        Report {
            seed: self.seed,
            clients: self.options.clients,
            superlink_kills: ledger.superlink_kills,
            app_kills: ledger.app_kills,
            restarts: ledger.restarts,
            runs: ledger.statuses.len() as u64,
            acknowledged: ledger.acknowledged.len() as u64,
            completed: count("finished:completed"),
            stopped: count("finished:stopped"),
            failed: count("finished:failed"),
            stops_acknowledged: ledger.stops.len() as u64,
            replayed_identical: ledger.replayed.len() as u64,
            events: ledger.events,
            audits: ledger.audits,
            checks: ledger.checks,
            commands: ledger.commands.clone(),
            bad_inputs,
            violations: ledger.violations.clone(),
            wall: self.started.elapsed(),
        }
    }
}

impl Report {
    pub fn kills(&self) -> u64 {
        self.superlink_kills + self.app_kills
    }

    /// The summary, in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("## Chaos run (seed {})\n", self.seed));
        line("| measure | value |".into());
        line("|---|---|".into());
        line(format!(
            "| kills survived | {} ({} SuperLink, {} app process) |",
            self.kills(),
            self.superlink_kills,
            self.app_kills
        ));
        line(format!(
            "| SuperLink restarts, each followed by an audit | {} |",
            self.restarts
        ));
        line(format!("| concurrent clients | {} |", self.clients));
        line(format!(
            "| runs submitted | {} ({} acknowledged to a client) |",
            self.runs, self.acknowledged
        ));
        line(format!(
            "| runs finished | {} completed, {} stopped, {} failed |",
            self.completed, self.stopped, self.failed
        ));
        line(format!("| stops acknowledged | {} |", self.stops_acknowledged));
        line(format!(
            "| completed runs replayed identical | {} of {} |",
            self.replayed_identical, self.completed
        ));
        line(format!("| events in state.db | {} |", self.events));
        line(format!(
            "| invariant checks | {} in {} audits |",
            self.checks, self.audits
        ));
        line(format!("| wall time | {:.1} s |", self.wall.as_secs_f64()));
        line(format!("| violations | {} |", self.violations.len()));
        line(String::new());
        line("| command | exit 0 | exit 3/4 (run ended failed/stopped) | exit 1 (SuperLink killed under it; stop of a finished run) |".into());
        line("|---|---|---|---|".into());
        for (kind, tally) in &self.commands {
            line(format!(
                "| `flwr {kind}` | {} | {} | {} |",
                tally.ok, tally.ended_otherwise, tally.errors
            ));
        }
        if !self.bad_inputs.is_empty() {
            line(String::new());
            line("| bad input | exit | answer (first line) | time |".into());
            line("|---|---|---|---|".into());
            for answer in &self.bad_inputs {
                let code = answer.code.map(|c| c.to_string()).unwrap_or_else(|| "killed".into());
                line(format!(
                    "| `flwr {}` | {code} | {} | {:.2} s |",
                    answer.input, answer.first_line, answer.seconds
                ));
            }
        }
        if !self.violations.is_empty() {
            line(String::new());
            line(format!("### Violations (seed {})", self.seed));
            for violation in &self.violations {
                line(format!("- {violation}"));
            }
        }
        out
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn free_ports() -> Result<(u16, u16), String> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a port: {e}"));
    let (a, b) = (bind()?, bind()?);
    let port = |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok((port(&a)?, port(&b)?))
}

fn cmdline_of(pid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// SIGKILL to `pid` if its command line still satisfies `ours`, through a
/// pidfd so that a recycled pid is never hit (kill(2) when pidfds are not
/// available).
fn kill_if(pid: u32, ours: impl Fn(&str) -> bool) -> bool {
    // SAFETY: pidfd_open and pidfd_send_signal take plain integers; the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as libc::c_int;
    let still_ours = cmdline_of(pid).is_some_and(|c| ours(&c));
    let sent = if !still_ours {
        false
    } else if fd >= 0 {
        // SAFETY: as above; a null siginfo is allowed.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            ) == 0
        }
    } else {
        // SAFETY: kill(2) on a process this program found under its ports.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
    };
    if fd >= 0 {
        // SAFETY: closing the pidfd opened above.
        unsafe { libc::close(fd) };
    }
    sent
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    unsafe { libc::mkfifo(name.as_ptr(), 0o600) };
}
