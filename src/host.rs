//! What floret reads from the machine it runs on, shared by every binary:
//! `$FLWR_HOME`, the executables installed next to the running one, and
//! the wall clock.
//!
//! It never decides anything and never writes: callers do (the CLI, the
//! SuperLink, the app process and replay all find their files through it).

use std::path::PathBuf;

use crate::domain::ids::Micros;

/// `$FLWR_HOME` if set and non-empty, else `$HOME/.flwr`.
pub fn flwr_home() -> PathBuf {
    match std::env::var_os("FLWR_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => {
            #[allow(deprecated)] // fine on Unix; Flower uses Path.home()
            let home = std::env::home_dir().unwrap_or_else(|| PathBuf::from("/"));
            home.join(".flwr")
        }
    }
}

/// An executable installed next to the current one, else its bare name
/// (found on `PATH`).
pub fn sibling_executable(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn wall_clock() -> Micros {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Micros(since_epoch.as_micros() as i64)
}
