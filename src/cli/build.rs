//! `flwr build`: write the app's FAB to the current directory.
//!
//! It never talks to a SuperLink.

use std::path::PathBuf;

use clap::Args;

use crate::cli::table::Style;
use crate::cli::{exit, CliError, Output};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Path of the Flower App directory.
    #[arg(long, value_name = "APP", default_value = ".")]
    pub app: PathBuf,
}

pub fn build(args: BuildArgs, out: &mut Output) -> Result<i32, CliError> {
    let app_dir = std::fs::canonicalize(&args.app)
        .map_err(|_| CliError::new(format!("The app directory '{}' does not exist.", args.app.display())))?;
    let fab = crate::fab::build_fab(&app_dir).map_err(|e| CliError::new(e.to_string()))?;
    std::fs::write(&fab.filename, &fab.bytes)
        .map_err(|e| CliError::new(format!("Cannot write {}: {e}", fab.filename)))?;
    say_built(&fab, out);
    Ok(exit::SUCCESS)
}

/// Flower's line for a built FAB (`flwr build`, and `flwr run` before it
/// submits, as Flower's "Run Flower locally" page shows it).
pub(crate) fn say_built(fab: &crate::fab::BuiltFab, out: &mut Output) {
    out.say(&format!("🎊 Successfully built {}", fab.filename), Style::Green);
}
