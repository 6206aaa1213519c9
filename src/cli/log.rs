//! `flwr log RUN_ID [SUPERLINK] [--stream | --show]`.
//!
//! `--stream` (the default) prints the run's log as it grows until the run
//! ends; the exit status tells how it ended. `--show` prints the log so far
//! (every page of it) and returns. An unknown run id is an error (exit 1),
//! also with `--show` (Flower 1.27 exits 0 there).
//!
//! It never reads `state.db`: logs come through the Control API.

use std::time::Duration;

use clap::Args;

use crate::cli::connection::{self, status_error, Connection};
use crate::cli::{exit, CliError, Output};
use crate::domain::ids::Micros;
use crate::flwr_log::Level;
use crate::proto::flwr::proto as pb;
use crate::wire::LOG_END_HEADER;

/// How long `--show` waits for the first log output of a run.
const SHOW_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The run whose logs to print.
    #[arg(value_name = "RUN_ID")]
    pub run_id: u64,
    /// Name of the SuperLink connection in $FLWR_HOME/config.toml.
    #[arg(value_name = "SUPERLINK")]
    pub superlink: Option<String>,
    /// Stream the logs until the run ends (default).
    #[arg(long, conflicts_with = "show")]
    pub stream: bool,
    /// Print the logs so far and return.
    #[arg(long)]
    pub show: bool,
}

/// How to follow a run's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Print everything until the run ends.
    Stream,
    /// Print what was logged so far.
    Show,
    /// Print nothing; wait for the end.
    Quiet,
}

/// How a followed run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub status: String,
    pub sub_status: String,
    pub details: String,
}

impl Ended {
    pub(crate) fn status_text(&self) -> String {
        if self.sub_status.is_empty() {
            self.status.clone()
        } else {
            format!("{}:{}", self.status, self.sub_status)
        }
    }

    /// 0 when completed, 3 when failed, 4 when stopped (docs/CLI.md).
    pub(crate) fn exit_code(&self) -> i32 {
        match self.sub_status.as_str() {
            "failed" => exit::RUN_FAILED,
            "stopped" => exit::RUN_STOPPED,
            _ => exit::SUCCESS,
        }
    }

    /// One line for stderr when the run did not complete.
    pub fn summary(&self, run_id: u64) -> String {
        match self.details.as_str() {
            "" => format!("Run {run_id} ended {}.", self.status_text()),
            details => format!("Run {run_id} ended {}: {details}", self.status_text()),
        }
    }
}

async fn status_of(connection: &mut Connection, run_id: u64) -> Result<Ended, CliError> {
    let response = connection
        .control
        .list_runs(pb::ListRunsRequest {
            run_id: Some(run_id),
            limit: None,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let run = response
        .run_dict
        .get(&run_id)
        .ok_or_else(|| CliError::new("Run ID not found."))?;
    let status = run.status.clone().unwrap_or_default();
    Ok(Ended {
        status: status.status,
        sub_status: status.sub_status,
        details: status.details,
    })
}

/// Where the log stood when the stream began (floret's SuperLink says so in
/// the response metadata; `None` from one that does not, whose first message
/// is the whole log, as Flower's CLI assumes).
fn log_end(metadata: &tonic::metadata::MetadataMap) -> Option<Micros> {
    let text = metadata.get(LOG_END_HEADER)?.to_str().ok()?;
    text.parse().ok().map(Micros)
}

/// Follows the log of `run_id` in `mode`; returns how the run ended (or, for
/// `Show`, its status when the log was printed).
pub async fn follow(
    connection: &mut Connection,
    run_id: u64,
    mode: Follow,
    out: &mut Output,
) -> Result<Ended, CliError> {
    let mut after = 0.0;
    loop {
        let request = pb::StreamLogsRequest {
            run_id,
            after_timestamp: after,
        };
        let response = connection.control.stream_logs(request).await.map_err(status_error)?;
        let end = log_end(response.metadata());
        let mut stream = response.into_inner();
        loop {
            // `--show` of a run that has logged nothing yet does not wait for
            // it to start (Flower 1.27 waits 5 s too).
            let next = match mode {
                Follow::Show => match tokio::time::timeout(SHOW_WAIT, stream.message()).await {
                    Ok(next) => next,
                    Err(_) => return status_of(connection, run_id).await,
                },
                _ => stream.message().await,
            };
            match next {
                Ok(Some(frame)) => {
                    after = frame.latest_timestamp.max(after);
                    match mode {
                        Follow::Stream => out.raw(&frame.log_output),
                        Follow::Show => {
                            out.raw(&frame.log_output);
                            let latest = Micros::from_secs_f64(frame.latest_timestamp);
                            if end.is_none_or(|end| latest >= end) {
                                out.raw("\n");
                                return status_of(connection, run_id).await;
                            }
                        }
                        Follow::Quiet => {}
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    return Err(CliError::new(format!(
                        "Lost the log stream of run {run_id}: {}",
                        connection::status_message(&status)
                    )))
                }
            }
        }
        // The server ends the stream when the run has finished; a stream that
        // ended early (a server-side timeout) is resumed where it stopped.
        let ended = status_of(connection, run_id).await?;
        if ended.status == "finished" || mode == Follow::Show {
            return Ok(ended);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn log(args: LogArgs, out: &mut Output) -> Result<i32, CliError> {
    let (profile, flwr_home) = connection::load_profile(args.superlink.as_deref(), out)?;
    let mut connection = connection::connect(profile, &flwr_home, out).await?;
    // An unknown run id is the only thing said about it (Flower first logs
    // that it starts the stream).
    status_of(&mut connection, args.run_id).await?;
    if args.show {
        out.log(Level::Info, &format!("Printing logstream for run_id `{}`", args.run_id));
        follow(&mut connection, args.run_id, Follow::Show, out).await?;
        return Ok(exit::SUCCESS);
    }
    out.log(Level::Info, &format!("Starting logstream for run_id `{}`", args.run_id));
    let ended = follow(&mut connection, args.run_id, Follow::Stream, out).await?;
    let code = ended.exit_code();
    if code != exit::SUCCESS {
        out.warn(&ended.summary(args.run_id));
    }
    Ok(code)
}
