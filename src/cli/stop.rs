//! `flwr stop RUN_ID [SUPERLINK]`.
//!
//! It never kills processes: the SuperLink stops the run.

use clap::Args;

use crate::cli::connection::{self, status_error};
use crate::cli::table::Style;
use crate::cli::{exit, CliError, Format, Output};
use crate::proto::flwr::proto as pb;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The run to stop.
    #[arg(value_name = "RUN_ID")]
    pub run_id: u64,
    /// Name of the SuperLink connection in $FLWR_HOME/config.toml.
    #[arg(value_name = "SUPERLINK")]
    pub superlink: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Default, ignore_case = true)]
    pub format: Format,
}

pub async fn stop(args: StopArgs, out: &mut Output) -> Result<i32, CliError> {
    let (profile, flwr_home) = connection::load_profile(args.superlink.as_deref(), out)?;
    let mut connection = connection::connect(profile, &flwr_home, out).await?;
    let run_id = args.run_id;
    out.say(&format!("✋ Stopping run ID {run_id}..."), Style::Green);
    let response = connection
        .control
        .stop_run(pb::StopRunRequest { run_id })
        .await
        .map_err(status_error)?;
    if !response.into_inner().success {
        return Err(CliError::new(format!("Run {run_id} couldn't be stopped.")));
    }
    if out.json() {
        out.print_json(&serde_json::json!({ "success": true, "run-id": run_id.to_string() }));
    } else {
        out.say(&format!("✅ Run {run_id} successfully stopped."), Style::Green);
    }
    Ok(exit::SUCCESS)
}
