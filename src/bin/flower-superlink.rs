//! `flower-superlink`: the SuperLink server (Flower 1.27's flags). Parses
//! arguments, sets up logging and calls `floret::superlink::run`.
//!
//! It holds no server logic of its own.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use floret::store::EXIT_SCHEMA_MISMATCH;

#[derive(Debug, Parser)]
#[command(
    name = "flower-superlink",
    version = floret::VERSION_LINE,
    about = "Start a Flower SuperLink (floret): Flower 1.27's Control and SimulationIo APIs over an \
             event-sourced state database; without --simulation, also the Fleet API for real SuperNodes."
)]
struct Args {
    /// Run without HTTPS (the only mode supported so far).
    #[arg(long)]
    insecure: bool,
    /// Start in simulation mode: runs are simulated by flwr-simulation
    /// processes. Without it (deployment mode) the SuperLink serves the Fleet
    /// API to real SuperNodes and does not execute runs yet.
    #[arg(long)]
    simulation: bool,
    /// The Fleet API's transport (deployment mode); floret serves grpc-rere.
    #[arg(long, default_value = "grpc-rere", value_parser = ["grpc-rere", "grpc-adapter", "rest"])]
    fleet_api_type: String,
    /// Fleet API address (used by SuperNodes; deployment mode).
    #[arg(long, default_value = "0.0.0.0:9092")]
    fleet_api_address: String,
    /// Accepted for Flower compatibility: the Fleet API serves every call
    /// concurrently.
    #[arg(long)]
    fleet_api_num_workers: Option<u32>,
    /// ServerAppIo API address (used by flwr-serverapp processes), in
    /// deployment mode.
    #[arg(long, default_value = "0.0.0.0:9091")]
    serverappio_api_address: String,
    /// `subprocess`: launch one app process per run (flwr-simulation, or
    /// flwr-serverapp in deployment mode); `process`: leave launching to an
    /// external process.
    #[arg(long, default_value = "subprocess", value_parser = ["subprocess", "process"])]
    isolation: String,
    /// Control API address (used by the flwr CLI).
    #[arg(long, default_value = "0.0.0.0:9093")]
    control_api_address: String,
    /// SimulationIo API address (used by flwr-simulation processes).
    #[arg(long, default_value = "0.0.0.0:9096")]
    simulationio_api_address: String,
    /// The state database; `:flwr-in-memory:` or `:memory:` keep it in memory.
    #[arg(long, default_value = ":flwr-in-memory:")]
    database: String,
    /// Where FABs are stored; default: ~/.flwr/superlink/ffs.
    #[arg(long)]
    storage_dir: Option<PathBuf>,
    /// Write logs to this file (rotated) instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Rotate the log file after this many hours.
    #[arg(long, default_value_t = 24)]
    log_rotation_interval_hours: u64,
    /// Keep this many rotated log files.
    #[arg(long, default_value_t = 7)]
    log_rotation_backup_count: usize,
    /// The FLWR_HOME this SuperLink serves, reported to clients so that `flwr`
    /// can tell its managed local SuperLink from others (set by `flwr`).
    #[arg(long)]
    flwr_home: Option<PathBuf>,
    /// The flwr-simulation executable; default: the one next to this program.
    #[arg(long)]
    simulation_executable: Option<PathBuf>,
    /// The flwr-serverapp executable (deployment mode); default: the one
    /// next to this program.
    #[arg(long)]
    serverapp_executable: Option<PathBuf>,
}

/// Flower's `flwr_exit` message: the Flower exit code, the message, the
/// code's help text.
fn flower_exit(code: i32, message: &str, help: &str) -> ! {
    eprintln!(
        "Exit Code: {code}\n{message}\n{help}\n\nFor more information, visit: \
         <https://flower.ai/docs/framework/1.27/en/ref-exit-codes/{code}.html>"
    );
    tracing::error!("exit code {code}: {message}");
    // The status is the Flower code when it fits in a process status.
    std::process::exit(if code < 256 { code } else { 1 })
}

fn parse_address(text: &str, what: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|_| {
        flower_exit(
            600,
            &format!("Invalid {what} address '{text}'."),
            "Please provide a domain name, IPv4 or IPv6 address with a port, without a URL prefix (e.g. api.flower.ai:443).",
        )
    })
}

fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLWR_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match &args.log_file {
        Some(path) => {
            let interval = Duration::from_secs(args.log_rotation_interval_hours * 3600);
            match floret::logfile::RotatingFile::open(path, interval, args.log_rotation_backup_count) {
                Ok(file) => {
                    let file: &'static floret::logfile::RotatingFile = Box::leak(Box::new(file));
                    tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(false)
                        .with_writer(move || file)
                        .init();
                }
                Err(error) => {
                    eprintln!("cannot open the log file {}: {error}", path.display());
                    std::process::exit(1);
                }
            }
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// Holds an exclusive lock on `<database>.lock` so that two SuperLinks never
/// write one state database.
fn lock_database(database: &std::path::Path) -> std::fs::File {
    let path = PathBuf::from(format!("{}.lock", database.display()));
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let file = floret::owner_only::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| {
            eprintln!("cannot create {}: {e}", path.display());
            std::process::exit(1)
        });
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let message = format!(
            "Another flower-superlink is using the state database {}.",
            database.display()
        );
        eprintln!("{message}");
        tracing::error!("{message}");
        std::process::exit(1);
    }
    file
}

fn main() {
    // Everything the SuperLink (and SQLite) creates is its owner's alone;
    // app processes get the inherited umask back.
    floret::owner_only::restrict_umask();
    let args = Args::parse();
    init_logging(&args);
    if !args.insecure {
        flower_exit(
            602,
            "flower-superlink was started without --insecure and without certificates.",
            "Please use the '--insecure' flag.",
        );
    }
    let deployment = !args.simulation;
    if deployment && args.fleet_api_type != "grpc-rere" {
        eprintln!(
            "flower-superlink: --fleet-api-type {} is not supported by floret's SuperLink; use grpc-rere (the \
             default), which flower-supernode uses unless told otherwise.",
            args.fleet_api_type
        );
        std::process::exit(1);
    }
    let fleet_address = deployment.then(|| parse_address(&args.fleet_api_address, "Fleet API"));
    let serverappio_address = deployment.then(|| parse_address(&args.serverappio_api_address, "ServerAppIo API"));
    let control_address = parse_address(&args.control_api_address, "Control API");
    let simulationio_address = parse_address(&args.simulationio_api_address, "SimulationIo API");
    let in_memory = matches!(args.database.as_str(), ":flwr-in-memory:" | ":memory:");
    let database = if in_memory {
        PathBuf::from(&args.database)
    } else {
        std::path::absolute(&args.database).unwrap_or_else(|_| PathBuf::from(&args.database))
    };
    let _lock = (!in_memory).then(|| lock_database(&database));
    let storage_dir = args
        .storage_dir
        .clone()
        .unwrap_or_else(|| floret::host::flwr_home().join("superlink").join("ffs"));
    let app_executable = (args.isolation == "subprocess").then(|| {
        if deployment {
            args.serverapp_executable
                .clone()
                .unwrap_or_else(|| floret::host::sibling_executable("flwr-serverapp"))
        } else {
            args.simulation_executable
                .clone()
                .unwrap_or_else(|| floret::host::sibling_executable("flwr-simulation"))
        }
    });
    let config = floret::superlink::Config {
        database,
        storage_dir,
        flwr_home: args.flwr_home.clone().map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
        log_file: args.log_file.clone(),
        app_executable,
        // Test-only (documented in docs/ARCHITECTURE.md, Testing): cap the
        // database's size without filling a disk.
        page_cap_file: std::env::var_os("FLORET_TEST_MAX_PAGE_COUNT_FILE").map(PathBuf::from),
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async move {
        let bind = |address: SocketAddr, what: &str| {
            let what = what.to_string();
            async move {
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|e| format!("cannot listen on {address} ({what}): {e}"))
            }
        };
        let control = bind(control_address, "Control API").await?;
        let simulationio = bind(simulationio_address, "SimulationIo API").await?;
        let fleet = match fleet_address {
            Some(address) => Some(bind(address, "Fleet API").await?),
            None => None,
        };
        let serverappio = match serverappio_address {
            Some(address) => Some(bind(address, "ServerAppIo API").await?),
            None => None,
        };
        let mode = if fleet.is_some() { "deployment" } else { "simulation" };
        tracing::info!(version = floret::BUILD, mode, "starting flower-superlink");
        let shutdown = async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        let listeners = floret::superlink::Listeners {
            control,
            simulationio,
            fleet,
            serverappio,
        };
        floret::superlink::run(listeners, config, shutdown)
            .await
            .map_err(|error| match error {
                floret::superlink::Error::Store(floret::store::Error::SchemaMismatch { detail, .. }) => flower_exit(
                    EXIT_SCHEMA_MISMATCH,
                    &detail,
                    "The database schema does not match the expected schema for this version of SuperLink. Please \
                     refer to the documentation for guidance on how to resolve this issue.",
                ),
                other => other.to_string(),
            })
    });
    if let Err(message) = result {
        tracing::error!("{message}");
        eprintln!("flower-superlink: {message}");
        std::process::exit(1);
    }
}
