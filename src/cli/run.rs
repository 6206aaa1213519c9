//! `flwr run [APP] [SUPERLINK]`: build the app's FAB, submit it, and
//! optionally stream the run's logs until it ends.
//!
//! It never writes the FAB to disk (as Flower's `flwr run`).

use std::path::PathBuf;

use clap::Args;

use crate::app::AppConfig;
use crate::cli::connection::{self, status_error};
use crate::cli::flower_config::Profile;
use crate::cli::log::{follow, Follow};
use crate::cli::table::Style;
use crate::cli::{exit, CliError, Format, Output};
use crate::federation;
use crate::flwr_log::Level;
use crate::proto::flwr::proto as pb;
use crate::proto::{self};
use crate::records::{ConfigRecord, ConfigValue, UserConfig};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Path of the Flower App directory.
    #[arg(value_name = "APP", default_value = ".")]
    pub app: PathBuf,
    /// Name of the SuperLink connection in $FLWR_HOME/config.toml; default:
    /// [superlink].default.
    #[allow(rustdoc::broken_intra_doc_links)] // the text is `--help`'s, not a link
    #[arg(value_name = "SUPERLINK")]
    pub superlink: Option<String>,
    /// Override run configuration values: `key=value` pairs typed as TOML
    /// (`lr=0.05 num-server-rounds=5 name="x"`), or one `.toml` file.
    #[arg(short = 'c', long = "run-config", value_name = "CONFIG")]
    pub run_config: Vec<String>,
    /// Override the simulation options of the connection for this run, as
    /// `key=value` pairs: `num-supernodes=100`, `backend.client-resources.num-cpus=1`,
    /// `backend.init-args.num-cpus=4`.
    #[arg(long = "federation-config", value_name = "CONFIG")]
    pub federation_config: Vec<String>,
    /// Federation to run in; the local SuperLink has `@none/default`.
    #[arg(long)]
    pub federation: Option<String>,
    /// Stream the run's logs until it ends; the exit status tells how it
    /// ended (0 completed, 3 failed, 4 stopped).
    #[arg(long)]
    pub stream: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Default, ignore_case = true)]
    pub format: Format,
}

/// The run's federation options: the profile's `options.*`, then the app's
/// `[tool.floret.options]`, then `--federation-config`; checked as the
/// SuperLink will check them (the machine's memory only for the managed
/// local SuperLink, which runs here).
fn federation_options(
    profile: &Profile,
    app: &AppConfig,
    overrides: &UserConfig,
    args: &[String],
) -> Result<ConfigRecord, CliError> {
    let mut options = profile
        .options
        .as_ref()
        .map(|o| o.to_federation_options())
        .unwrap_or_default();
    let cli_error = |e: federation::Error| CliError::new(e.to_string());
    let from_app = federation::app_options(&app.document).map_err(|e| CliError::new(e.to_string()))?;
    federation::apply(&mut options, &from_app, "[tool.floret.options]").map_err(cli_error)?;
    if !args.is_empty() {
        let pairs = crate::app::parse_run_config_args(args).map_err(|e| CliError::new(e.to_string()))?;
        federation::apply(&mut options, &pairs, "--federation-config").map_err(cli_error)?;
    }
    federation::check_values(&options).map_err(cli_error)?;
    // An unknown override key is the SuperLink's to report.
    let run_config = crate::builtin::fuse_run_config(&app.config, overrides);
    if let (true, Ok(run_config), Some(memory)) = (profile.is_managed_local(), run_config, federation::machine_memory())
    {
        federation::check_capacity(&options, &run_config, memory).map_err(cli_error)?;
    }
    Ok(options)
}

/// A run with Python components runs in the Python of the environment the
/// user runs `flwr` from (docs/APPS.md): the CLI resolves it here and sends
/// it with the run, unless `--federation-config python=...` or the profile
/// chose one.
fn choose_python(app: &crate::app::AppConfig, options: &mut ConfigRecord) -> Result<(), CliError> {
    use crate::bridge::{is_python, python};
    if !(is_python(&app.serverapp) || is_python(&app.clientapp)) || options.get(python::PYTHON_OPTION).is_some() {
        return Ok(());
    }
    let interpreter = python::resolve_here().map_err(|e| CliError::new(e.to_string()))?;
    options.insert(
        python::PYTHON_OPTION,
        ConfigValue::Str(interpreter.display().to_string()),
    );
    Ok(())
}

pub async fn run(args: RunArgs, out: &mut Output) -> Result<i32, CliError> {
    let app_dir = std::fs::canonicalize(&args.app)
        .map_err(|_| CliError::new(format!("The app directory '{}' does not exist.", args.app.display())))?;
    if !app_dir.is_dir() {
        return Err(CliError::new(format!(
            "The app path '{}' is not a directory.",
            args.app.display()
        )));
    }
    let pyproject = app_dir.join("pyproject.toml");
    let (app, warnings) = crate::app::parse_pyproject_file(&pyproject).map_err(|e| CliError::new(e.to_string()))?;
    if !warnings.is_empty() {
        let lines: Vec<String> = warnings.iter().map(|w| format!("- {w}")).collect();
        out.warn(&format!(
            "Flower App configuration warnings in '{}':\n{}",
            pyproject.display(),
            lines.join("\n")
        ));
    }
    let overrides = crate::app::parse_run_config_args(&args.run_config).map_err(|e| CliError::new(e.to_string()))?;
    let (profile, flwr_home) = connection::load_profile(args.superlink.as_deref(), out)?;
    let mut options = federation_options(&profile, &app, &overrides, &args.federation_config)?;
    choose_python(&app, &mut options)?;
    let federation = args
        .federation
        .clone()
        .or_else(|| profile.federation.clone())
        .unwrap_or_default();
    if !federation.is_empty() && !super::flower_config::is_valid_federation(&federation) {
        return Err(CliError::new(format!(
            "Invalid federation format: {federation}. Expected format: '@<account-name>/<federation-name>'."
        )));
    }
    let fab = crate::fab::build_fab(&app_dir).map_err(|e| CliError::new(e.to_string()))?;
    crate::cli::build::say_built(&fab, out);
    let mut connection = connection::connect(profile, &flwr_home, out).await?;
    let request = pb::StartRunRequest {
        fab: Some(pb::Fab {
            hash_str: fab.hash.clone(),
            content: fab.bytes.clone(),
            verifications: Default::default(),
        }),
        override_config: proto::user_config_to_proto(&overrides),
        federation_options: Some(proto::config_record_to_proto(&options)),
        app_spec: String::new(),
        federation,
    };
    let response = connection
        .control
        .start_run(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let Some(run_id) = response.run_id else {
        return Err(CliError::new("Failed to start run"));
    };
    let mut code = exit::SUCCESS;
    let mut final_status = None;
    if out.json() {
        if args.stream {
            let ended = follow(&mut connection, run_id, Follow::Quiet, out).await?;
            code = ended.exit_code();
            final_status = Some(ended.status_text());
        }
    } else {
        out.say(&format!("🎊 Successfully started run {run_id}"), Style::Green);
        if args.stream {
            out.log(Level::Info, &format!("Starting logstream for run_id `{run_id}`"));
            let ended = follow(&mut connection, run_id, Follow::Stream, out).await?;
            code = ended.exit_code();
            if code != exit::SUCCESS {
                out.warn(&ended.summary(run_id));
            }
        }
    }
    if out.json() {
        let app = &fab.app;
        let mut document = serde_json::json!({
            "success": true,
            "run-id": run_id.to_string(),
            "fab-id": app.fab_id(),
            "fab-name": app.name,
            "fab-version": app.version,
            "fab-hash": &fab.hash[..8],
            "fab-filename": fab.filename,
        });
        if let Some(status) = final_status {
            document["status"] = serde_json::Value::String(status);
        }
        out.print_json(&document);
    }
    Ok(code)
}

#[cfg(test)]
mod tests {

    #[test]
    fn federation_ids_follow_flower_format() {
        assert!(super::super::flower_config::is_valid_federation("@none/default"));
        assert!(super::super::flower_config::is_valid_federation("@acct-1/my_fed"));
        assert!(!super::super::flower_config::is_valid_federation("none/default"));
        assert!(!super::super::flower_config::is_valid_federation("@none"));
        assert!(!super::super::flower_config::is_valid_federation("@no ne/x"));
    }
}
