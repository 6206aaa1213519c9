//! `flwr-simulation`: the app process of one run, launched by the SuperLink.
//! See `floret::simulation`.
//!
//! It holds no simulation logic of its own.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "flwr-simulation",
    version = floret::VERSION_LINE,
    about = "Run the simulation of one Flower run (launched by flower-superlink)."
)]
struct Args {
    /// Connect without TLS (the only mode supported so far).
    #[arg(long)]
    insecure: bool,
    /// The SuperLink's SimulationIo API.
    #[arg(long, default_value = "127.0.0.1:9096")]
    simulationio_api_address: String,
    /// The run to execute; default: the first run waiting to be launched.
    #[arg(long)]
    run_id: Option<u64>,
    /// A token already obtained with RequestToken (with --run-id). The
    /// SuperLink hands it over in FLORET_APP_TOKEN, which other users cannot
    /// read (a command line they can).
    #[arg(long, env = "FLORET_APP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Exit when this process (the SuperLink) is gone.
    #[arg(long)]
    parent_pid: Option<u32>,
    /// Faults to inject, `round:phase:node_id` separated by commas: the node's
    /// reply in that phase becomes an error (chaos testing). Recorded as
    /// injected, and re-injected by `flwr replay`.
    #[arg(long, env = "FLORET_FAULTS", default_value = "")]
    faults: String,
}

fn main() {
    let args = Args::parse();
    // The token is this process's alone: children (apps) do not inherit it.
    std::env::remove_var("FLORET_APP_TOKEN");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLWR_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A Python interpreter the SuperLink keeps warm may be handed over too.
    floret::bridge::accept_handed_zygote();
    let faults = floret::simulation::parse_faults(&args.faults).unwrap_or_else(|error| {
        eprintln!("flwr-simulation: --faults: {error}");
        std::process::exit(2)
    });
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let args = floret::simulation::Args {
        simulationio_address: args.simulationio_api_address,
        run_id: args.run_id,
        token: args.token,
        parent_pid: args.parent_pid,
        faults,
    };
    let code = match runtime.block_on(floret::simulation::run(args)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("flwr-simulation: {error}");
            1
        }
    };
    std::process::exit(code);
}
