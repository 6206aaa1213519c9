//! `flwr superlink status` and `flwr superlink stop`: the managed local
//! SuperLink of `$FLWR_HOME`, which Flower starts but offers no command to
//! inspect or stop (its docs say `pkill -f flower-superlink`).
//!
//! It never signals processes: the SuperLink shuts down through its Local API.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::table::{render_key_values, Cell, Style};
use crate::cli::{exit, flwr_home, local, CliError, Format, Output};
use crate::domain::ids::Micros;
use crate::proto::floret::v1 as ext;

#[derive(Debug, Subcommand)]
pub enum SuperlinkCommand {
    /// Show whether the local SuperLink of $FLWR_HOME runs, and what it serves.
    Status(FormatArg),
    /// Stop the local SuperLink of $FLWR_HOME: active runs are stopped, their
    /// processes end, then the SuperLink exits.
    Stop(FormatArg),
}

#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Default, ignore_case = true)]
    pub format: Format,
}

impl SuperlinkCommand {
    pub fn format(&self) -> Format {
        match self {
            SuperlinkCommand::Status(args) | SuperlinkCommand::Stop(args) => args.format,
        }
    }
}

fn identity_json(identity: &ext::IdentifyResponse) -> serde_json::Value {
    serde_json::json!({
        "pid": identity.pid,
        "version": identity.version,
        "flwr-home": identity.flwr_home,
        "control-api-address": identity.control_address,
        "simulationio-api-address": identity.simulationio_address,
        "state-db": identity.state_db,
        "log-file": identity.log_file,
        "started-at": identity.started_at,
        "runs-total": identity.runs_total,
        "runs-active": identity.runs_active,
    })
}

pub async fn superlink(command: SuperlinkCommand, out: &mut Output) -> Result<i32, CliError> {
    let home = flwr_home();
    let (control_port, _) = local::ports()?;
    match command {
        SuperlinkCommand::Status(_) => {
            let found = local::find(&home).await?;
            match (found, out.json()) {
                (None, true) => out.print_json(&serde_json::json!({ "success": true, "running": false })),
                (None, false) => out.say(
                    &format!(
                        "No local SuperLink is running on 127.0.0.1:{control_port} for FLWR_HOME={}.",
                        home.display()
                    ),
                    Style::Plain,
                ),
                (Some(identity), true) => {
                    let mut document = serde_json::json!({ "success": true, "running": true });
                    document["superlink"] = identity_json(&identity);
                    out.print_json(&document);
                }
                (Some(identity), false) => {
                    let uptime = Micros::parse_iso(&identity.started_at).map(|started| {
                        let now = crate::host::wall_clock();
                        crate::cli::list::format_duration((now.0 - started.0) as f64 / 1e6)
                    });
                    let rows: Vec<(String, Cell)> = [
                        ("Status", "running".to_string()),
                        ("PID", identity.pid.to_string()),
                        ("Version", format!("{} {}", identity.product, identity.version)),
                        ("FLWR_HOME", identity.flwr_home.clone()),
                        ("Control API", identity.control_address.clone()),
                        ("SimulationIo API", identity.simulationio_address.clone()),
                        ("Up for", uptime.unwrap_or_else(|| "N/A".into())),
                        (
                            "Runs",
                            format!("{} ({} active)", identity.runs_total, identity.runs_active),
                        ),
                        ("State database", identity.state_db.clone()),
                        ("Log file", identity.log_file.clone()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Cell::plain(v)))
                    .collect();
                    out.raw(&render_key_values(&rows, out.width(), out.color_stdout()));
                }
            }
            Ok(exit::SUCCESS)
        }
        SuperlinkCommand::Stop(_) => {
            let Some(identity) = local::find(&home).await? else {
                if out.json() {
                    out.print_json(&serde_json::json!({ "success": true, "stopped": false }));
                } else {
                    out.say(
                        &format!(
                            "No local SuperLink is running on 127.0.0.1:{control_port} for FLWR_HOME={}.",
                            home.display()
                        ),
                        Style::Plain,
                    );
                }
                return Ok(exit::SUCCESS);
            };
            let channel = crate::cli::transport::channel(&format!("127.0.0.1:{control_port}")).await?;
            let mut client = ext::local_client::LocalClient::new(channel);
            let secret = crate::wire::read_secret(&crate::cli::connection::managed_secret_file(&home));
            let request = crate::wire::with_local_secret(ext::ShutdownRequest {}, secret.as_deref());
            let response = client
                .shutdown(request)
                .await
                .map_err(crate::cli::connection::status_error)?
                .into_inner();
            // Wait for the process to be gone (its children end first).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            while local::process_alive(response.pid) {
                if tokio::time::Instant::now() >= deadline {
                    return Err(CliError::new(format!(
                        "The local SuperLink (pid {}) did not exit within 15s. See logs at {}.",
                        response.pid, identity.log_file
                    )));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if out.json() {
                out.print_json(&serde_json::json!({
                    "success": true,
                    "stopped": true,
                    "pid": response.pid,
                    "runs-stopped": response.runs_stopped,
                }));
            } else {
                let runs = match response.runs_stopped {
                    0 => String::new(),
                    1 => "; 1 active run was stopped".into(),
                    n => format!("; {n} active runs were stopped"),
                };
                out.say(
                    &format!("Stopped the local SuperLink (pid {}){runs}.", response.pid),
                    Style::Green,
                );
            }
            Ok(exit::SUCCESS)
        }
    }
}
