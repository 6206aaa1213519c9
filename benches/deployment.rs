//! A deployment with real Flower 1.27 SuperNodes, on floret's SuperLink and
//! on Flower 1.27's own, side by side in one run.
//!
//! The workload: `examples/numpy-message-api` with floret's built-in
//! ServerApp (FedAvg, every node sampled in both phases), `FLORET_BENCH_ROUNDS`
//! rounds (default 2), on `FLORET_BENCH_SUPERNODES` SuperNodes (default 100),
//! `flower-supernode` from `flwr==1.27.0` and numpy in a virtual environment
//! the bench creates under `target/bench-deployment/venv` (once; a `ready`
//! marker records what it holds). Each SuperNode runs its ClientApp as Flower
//! does, in a process of its own per message.
//!
//! For each SuperLink, in private directories with free loopback ports: the
//! SuperLink starts, the SuperNodes start, and once `flwr supernode list`
//! (Flower 1.27's CLI) shows all of them online the run is submitted. On
//! floret's SuperLink, the SuperLink launches `flwr-serverapp`; on Flower's
//! (`--isolation process`), the bench starts the same `flwr-serverapp`, so
//! that only the SuperLinks differ.
//!
//! What is measured:
//! - the run's time from `running` to `finished:completed` (polled every
//!   100 ms with `flwr ls`), per round: the ServerApp's strategy loop, the
//!   messages through the SuperLink, the SuperNodes' polls (Flower's
//!   SuperNode asks for work every 3 s when it has none) and ClientApp runs;
//! - messages per second over that time: each round moves 4 messages per
//!   node (a train and an evaluate instruction, and their replies);
//! - Flower's SuperLink keeps its state in memory (its default): with a
//!   database file, SuperNodes that register at once race on the creation
//!   of its tables, and some are refused. floret's writes `state.db`.
//! - the SuperLink's peak memory (`VmHWM` of its process, read just before
//!   it is stopped), with every SuperNode connected and the run over.
//!
//! Run with `cargo bench --bench deployment`; prints Markdown.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FLOWER: &str = "flwr==1.27.0";
const NUMPY: &str = "numpy";

/// A process and its process group, killed when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on a group this bench created.
        unsafe { libc::killpg(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command, log: &Path) -> Group {
    let log = std::fs::File::create(log).expect("a log file");
    Group(
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("spawn"),
    )
}

/// A port below Linux's ephemeral range (32768–60999), never handed out
/// twice: a port from that range can be taken by any outgoing connection
/// (of the hundreds the SuperNodes open) before its server binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(21_000);
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < 32_000, "no free port left");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn venv() -> PathBuf {
    let venv = target_dir().join("bench-deployment/venv");
    let ready = venv.join("ready");
    let wanted = format!("{FLOWER} {NUMPY}");
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python).args(["-m", "venv"]).arg(&venv).status();
        assert!(status.is_ok_and(|s| s.success()), "{python} -m venv failed");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", FLOWER, NUMPY])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "pip install {wanted} failed");
        std::fs::write(&ready, wanted).expect("the ready marker");
    }
    venv
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a directory");
    for entry in std::fs::read_dir(from).expect("a directory").flatten() {
        if entry.file_name() == "__pycache__" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("a copy");
        }
    }
}

/// The example with floret's built-in ServerApp, waiting for `nodes`.
fn app(dir: &Path, nodes: usize) -> PathBuf {
    let app = dir.join("app");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/numpy-message-api"),
        &app,
    );
    std::fs::write(
        app.join("numpy_message_api/initial.py"),
        "from flwr.app import Array, ArrayRecord\n\nfrom numpy_message_api import task\n\n\n\
         def initial_arrays(context):\n    weights, bias = task.init_model(context.run_config[\"num-features\"])\n    \
         return ArrayRecord({\"weights\": Array(weights), \"bias\": Array(bias)})\n",
    )
    .expect("initial.py");
    let pyproject = app.join("pyproject.toml");
    let text = std::fs::read_to_string(&pyproject).expect("pyproject.toml");
    let text = text
        .replacen("numpy_message_api.server_app:app", "floret:serverapp", 1)
        .replacen(
            "seed = 42",
            &format!(
                "seed = 42\ninitial-arrays = \"numpy_message_api.initial:initial_arrays\"\nstrategy.name = \"FedAvg\"\n\
                 train.lr = 0.5\ntrain.local-steps = 5\nmin-available-nodes = {nodes}\nround-timeout = 900"
            ),
            1,
        );
    std::fs::write(&pyproject, text).expect("pyproject.toml");
    std::fs::write(app.join("floret.py"), "serverapp = None\n").expect("floret.py");
    app
}

#[derive(Clone, Copy, PartialEq)]
enum Link {
    Floret,
    Flower,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Floret => "floret",
            Link::Flower => "Flower 1.27",
        }
    }
}

struct Measured {
    seconds_per_round: f64,
    messages_per_second: f64,
    superlink_peak_mib: f64,
    connect_seconds: f64,
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn flwr_json(home: &Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_flwr"))
        .args(args)
        .env("FLWR_HOME", home)
        .output()
        .expect("flwr");
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

fn measure(link: Link, venv: &Path, nodes: usize, rounds: usize) -> Measured {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let app = app(dir.path(), nodes);
    let (fleet, serverappio, control) = (free_port(), free_port(), free_port());
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut superlink = match link {
        Link::Flower => {
            // Flower's default database, in memory: with `--database FILE`,
            // SuperNodes registering at once race on its tables' creation
            // and some are refused ("table node already exists").
            let mut command = Command::new(venv.join("bin/flower-superlink"));
            command.args(["--insecure", "--isolation", "process"]);
            command
        }
        Link::Floret => {
            let mut command = Command::new(env!("CARGO_BIN_EXE_flower-superlink"));
            command
                .arg("--database")
                .arg(dir.path().join("state.db"))
                .arg("--insecure")
                .args(["--simulationio-api-address", &format!("127.0.0.1:{}", free_port())])
                .env("FLWR_PYTHON", venv.join("bin/python"))
                .env("NO_COLOR", "1");
            command
        }
    };
    superlink
        .args(["--fleet-api-address", &format!("127.0.0.1:{fleet}")])
        .args(["--serverappio-api-address", &format!("127.0.0.1:{serverappio}")])
        .args(["--control-api-address", &format!("127.0.0.1:{control}")])
        .arg("--storage-dir")
        .arg(dir.path().join("ffs"))
        .env("FLWR_HOME", dir.path().join("superlink-home"))
        .env("PATH", &path);
    let superlink = spawn_group(&mut superlink, &dir.path().join("superlink.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while ![fleet, serverappio, control]
        .iter()
        .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok())
    {
        assert!(Instant::now() < deadline, "the SuperLink did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("a home");
    std::fs::write(
        home.join("config.toml"),
        format!("[superlink]\ndefault = \"deployment\"\n\n[superlink.deployment]\naddress = \"127.0.0.1:{control}\"\ninsecure = true\n"),
    )
    .expect("config.toml");

    let started = Instant::now();
    let mut supernodes: Vec<Group> = (0..nodes)
        .map(|partition| {
            spawn_group(
                Command::new(venv.join("bin/flower-supernode"))
                    .args(["--insecure", "--superlink", &format!("127.0.0.1:{fleet}")])
                    .args(["--clientappio-api-address", &format!("127.0.0.1:{}", free_port())])
                    .args([
                        "--node-config",
                        &format!("partition-id={partition} num-partitions={nodes}"),
                    ])
                    .env("FLWR_HOME", dir.path().join(format!("supernode-{partition}")))
                    .env("PATH", &path),
                &dir.path().join(format!("supernode-{partition}.log")),
            )
        })
        .collect();
    // Every SuperNode online (Flower's own CLI, on either SuperLink).
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let output = Command::new(venv.join("bin/flwr"))
            .args(["supernode", "list", "deployment", "--format", "json"])
            .env("FLWR_HOME", &home)
            .output()
            .expect("flwr supernode list");
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let online = listed["nodes"]
            .as_array()
            .map_or(0, |nodes| nodes.iter().filter(|n| n["status"] == "online").count());
        if online >= nodes {
            break;
        }
        for (partition, supernode) in supernodes.iter_mut().enumerate() {
            if let Ok(Some(status)) = supernode.0.try_wait() {
                let log = dir.path().join(format!("supernode-{partition}.log"));
                panic!(
                    "SuperNode {partition} exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {online} of {nodes} SuperNodes came online"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let connect_seconds = started.elapsed().as_secs_f64();

    let submitted = Command::new(env!("CARGO_BIN_EXE_flwr"))
        .args(["run", app.to_str().expect("a path"), "--format", "json"])
        .args(["-c", &format!("num-server-rounds={rounds}")])
        .env("FLWR_HOME", &home)
        .env("FLWR_PYTHON", venv.join("bin/python"))
        .output()
        .expect("flwr run");
    let json: serde_json::Value = serde_json::from_slice(&submitted.stdout).unwrap_or_default();
    let run_id = json["run-id"]
        .as_str()
        .unwrap_or_else(|| panic!("flwr run failed: {}", String::from_utf8_lossy(&submitted.stdout)))
        .to_string();
    let _serverapp = (link == Link::Flower).then(|| {
        spawn_group(
            Command::new(env!("CARGO_BIN_EXE_flwr-serverapp"))
                .args(["--insecure", "--run-once", "--serverappio-api-address"])
                .arg(format!("127.0.0.1:{serverappio}"))
                .env("FLWR_PYTHON", venv.join("bin/python"))
                .env("NO_COLOR", "1"),
            &dir.path().join("serverapp.log"),
        )
    });
    let mut running_at = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    let finished_at = loop {
        let listed = flwr_json(&home, &["ls", "--run-id", &run_id, "--format", "json"]);
        let status = listed["runs"][0]["status"].as_str().unwrap_or_default().to_string();
        if status == "running" && running_at.is_none() {
            running_at = Some(Instant::now());
        }
        if status.starts_with("finished") {
            assert_eq!(
                status,
                "finished:completed",
                "{}: {}",
                link.name(),
                listed["runs"][0]["status-details"]
            );
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "{}: the run did not finish", link.name());
        std::thread::sleep(Duration::from_millis(100));
    };
    let running_at = running_at.expect("the run was seen running");
    let seconds = (finished_at - running_at).as_secs_f64();
    let superlink_peak_mib = vm_hwm_mib(superlink.0.id());
    Measured {
        seconds_per_round: seconds / rounds as f64,
        messages_per_second: (4 * nodes * rounds) as f64 / seconds,
        superlink_peak_mib,
        connect_seconds,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let number = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let nodes = number("FLORET_BENCH_SUPERNODES", 100);
    let rounds = number("FLORET_BENCH_ROUNDS", 2);
    let venv = venv();
    println!("## A deployment with {nodes} real Flower 1.27 SuperNodes, {rounds} rounds (`cargo bench --bench deployment`)\n");
    println!("| SuperLink | s per round | messages/s | SuperLink peak memory | all SuperNodes online after |");
    println!("|---|---:|---:|---:|---:|");
    let mut measured = Vec::new();
    for link in [Link::Floret, Link::Flower] {
        let m = measure(link, &venv, nodes, rounds);
        println!(
            "| {} | {:.2} | {:.1} | {:.1} MiB | {:.1} s |",
            link.name(),
            m.seconds_per_round,
            m.messages_per_second,
            m.superlink_peak_mib,
            m.connect_seconds
        );
        measured.push(m);
    }
    let (floret, flower) = (&measured[0], &measured[1]);
    println!(
        "\nPer round, floret's SuperLink takes {:.2}× the time of Flower's ({:+.2} s) and {:.2}× its memory.",
        floret.seconds_per_round / flower.seconds_per_round,
        floret.seconds_per_round - flower.seconds_per_round,
        floret.superlink_peak_mib / flower.superlink_peak_mib
    );
}
