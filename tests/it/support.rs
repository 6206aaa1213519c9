//! Helpers shared by the integration tests: temporary directories and insta
//! settings (snapshots live in the top-level `snapshots/` directory).

use std::path::PathBuf;

/// Binds insta to the repository's `snapshots/` directory for the current
/// scope. insta settings are thread-local: call this in every test that
/// snapshots.
#[must_use]
pub fn snapshot_settings() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind_to_scope()
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("floret-test-")
        .tempdir()
        .expect("create a temporary directory")
}
