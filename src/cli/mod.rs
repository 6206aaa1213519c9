//! The `flwr` command-line interface.
//!
//! Parsing happens in two stages (ripgrep's shape): clap structs here, close
//! to the flags; then each command validates them into what it needs before
//! any I/O. Data goes to stdout, everything else to stderr. Commands return
//! [`CliError`] values; `main` turns them into Flower's red error box (or the
//! JSON error document) and a documented exit status (see [`exit`]).
//!
//! Output follows the real Flower 1.27 CLI (`shared/reference/observed-flwr-1.27.md`),
//! with the fixes listed in docs/CLI.md: every failure exits non-zero, `flwr
//! list` shows every run, the managed SuperLink can be inspected and stopped.
//!
//! Commands never read `state.db`: everything goes through the SuperLink's APIs.

pub mod build;
pub mod connection;
pub mod flower_config;
pub mod list;
pub mod local;
pub mod log;
pub mod output;
pub mod replay;
pub mod run;
pub mod stop;
pub mod superlink;
pub mod table;
pub mod transport;

use clap::{Parser, Subcommand, ValueEnum};

pub use output::{CliError, Output};

/// Exit statuses of `flwr` (docs/CLI.md).
pub mod exit {
    /// Success.
    pub(crate) const SUCCESS: i32 = 0;
    /// A command failed (Flower's `ClickException`).
    pub const ERROR: i32 = 1;
    /// Bad usage: unknown option, bad value (Flower's, and clap's).
    pub(crate) const USAGE: i32 = 2;
    /// The run that was streamed ended `finished:failed`.
    pub(crate) const RUN_FAILED: i32 = 3;
    /// The run that was streamed ended `finished:stopped`.
    pub(crate) const RUN_STOPPED: i32 = 4;
    /// `flwr replay`: the re-execution diverged from the recorded run.
    pub(crate) const REPLAY_DIVERGED: i32 = 5;
    /// `flwr replay`: the run cannot be re-executed (see the message).
    pub(crate) const REPLAY_IMPOSSIBLE: i32 = 6;
    /// `flwr replay`: identical as far as the record goes, but the record
    /// ends before the simulation did (the run's process died).
    pub(crate) const REPLAY_TRUNCATED: i32 = 7;
    /// `flwr replay`: identical as far as the record goes, but the run is
    /// still in progress (replay it again when it has finished).
    pub(crate) const REPLAY_IN_PROGRESS: i32 = 8;
}

#[derive(Debug, Parser)]
#[command(
    name = "flwr",
    version = crate::VERSION_LINE,
    about = "Flower's command-line interface, with floret's event-sourced local SuperLink.",
    long_about = "Flower's command-line interface, with floret's event-sourced local SuperLink.\n\n\
        `flwr run .` builds the app in the current directory, starts the local SuperLink if needed and \
        submits a run; `flwr list`, `flwr log` and `flwr stop` follow and control runs; `flwr replay` \
        re-executes a past run and proves it bit-for-bit identical.",
    after_help = "Exit statuses: 0 success, 1 error, 2 usage error, 3 streamed run failed, \
        4 streamed run stopped, 5 replay diverged, 6 replay impossible (docs/CLI.md)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Flower App.
    Run(run::RunArgs),
    /// List runs, or show one run in detail.
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// Print or stream the logs of a run.
    Log(log::LogArgs),
    /// Stop a run.
    Stop(stop::StopArgs),
    /// Re-execute a past run and compare it, event by event, with its record.
    Replay(replay::ReplayArgs),
    /// Build a Flower App Bundle (FAB) from an app directory.
    Build(build::BuildArgs),
    /// Inspect or stop the managed local SuperLink.
    #[command(subcommand)]
    Superlink(superlink::SuperlinkCommand),
}

/// `--format`, as Flower spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Default,
    Json,
}

pub use crate::host::flwr_home;

/// Runs a parsed command line; returns the exit status.
pub fn main(cli: Cli) -> i32 {
    let format = match &cli.command {
        Command::Run(args) => args.format,
        Command::List(args) => args.format,
        Command::Stop(args) => args.format,
        Command::Replay(args) => args.format,
        Command::Superlink(command) => command.format(),
        Command::Log(_) | Command::Build(_) => Format::Default,
    };
    let mut out = Output::new(format == Format::Json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, &mut out).await,
            Command::List(args) => list::list(args, &mut out).await,
            Command::Log(args) => log::log(args, &mut out).await,
            Command::Stop(args) => stop::stop(args, &mut out).await,
            Command::Replay(args) => replay::replay(args, &mut out).await,
            Command::Build(args) => build::build(args, &mut out),
            Command::Superlink(command) => superlink::superlink(command, &mut out).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => out.fail(&error),
    }
}
