//! `flwr-serverapp`: the ServerApp process of one deployment run (Flower
//! 1.27's flags). See `floret::serverapp`.
//!
//! It holds no ServerApp logic of its own.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "flwr-serverapp",
    version = floret::VERSION_LINE,
    about = "Run the built-in ServerApp of a deployment run against a SuperLink's ServerAppIo API; the ClientApps \
             run on the SuperNodes."
)]
struct Args {
    /// Connect without TLS (the only mode supported so far).
    #[arg(long)]
    insecure: bool,
    /// The SuperLink's ServerAppIo API.
    #[arg(long, default_value = "127.0.0.1:9091")]
    serverappio_api_address: String,
    /// A token already obtained with RequestToken (with --run-id).
    #[arg(long, env = "FLORET_APP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The run to execute; default: the first run waiting to be launched.
    #[arg(long)]
    run_id: Option<u64>,
    /// Exit when this process (the SuperLink) is gone.
    #[arg(long)]
    parent_pid: Option<u32>,
    /// Exit after one run instead of waiting for the next.
    #[arg(long)]
    run_once: bool,
}

fn main() {
    let args = Args::parse();
    std::env::remove_var("FLORET_APP_TOKEN");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLWR_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let args = floret::serverapp::Args {
        serverappio_address: args.serverappio_api_address,
        token: args.token,
        run_id: args.run_id,
        parent_pid: args.parent_pid,
        run_once: args.run_once,
    };
    let code = match runtime.block_on(floret::serverapp::run(args)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("flwr-serverapp: {error}");
            1
        }
    };
    std::process::exit(code);
}
