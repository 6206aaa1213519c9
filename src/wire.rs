//! floret's conventions on top of Flower's gRPC messages, shared by the
//! SuperLink and its clients (the CLI, the app process): the metadata that
//! carries a run's token and the Local API secret, the secret file, and the
//! metadata of a few answers. Access decisions are made in
//! `superlink::access`; this module only names and attaches things.
//!
//! It never decides who may do what and never opens a connection.

use std::path::{Path, PathBuf};

use tonic::Request;

/// The gRPC metadata that carries a run's token on app-process writes.
pub(crate) const APP_TOKEN_HEADER: &str = "floret-app-token";
/// The gRPC metadata that carries the Local API secret.
pub(crate) const LOCAL_SECRET_HEADER: &str = "floret-local-secret";
/// Bytes of randomness in a Local API secret (hex-encoded in its file).
pub(crate) const SECRET_BYTES: usize = 32;

/// StreamLogs response metadata: the time (µs since the epoch) of the run's
/// last log row when the stream began; 0 when it had none.
pub const LOG_END_HEADER: &str = "floret-log-end-us";

/// Metadata key of a `RESOURCE_EXHAUSTED` status that says the SuperLink's
/// disk is full: nothing was recorded, and the same call can succeed once
/// space is freed (app processes retry such calls).
pub const STORE_FULL_METADATA: &str = "floret-store-full";

/// `message` with the run's token attached, for PushLogs and UpdateRunStatus.
pub(crate) fn with_app_token<T>(message: T, token: &str) -> Request<T> {
    with_header(message, APP_TOKEN_HEADER, Some(token))
}

/// `message` with the Local API secret attached, if there is one.
pub(crate) fn with_local_secret<T>(message: T, secret: Option<&str>) -> Request<T> {
    with_header(message, LOCAL_SECRET_HEADER, secret)
}

fn with_header<T>(message: T, key: &'static str, value: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = value.and_then(|v| v.parse().ok()) {
        request.metadata_mut().insert(key, value);
    }
    request
}

/// Where the SuperLink serving `database` keeps its Local API secret;
/// `None` for a database in memory.
pub(crate) fn secret_path(database: &Path) -> Option<PathBuf> {
    match database.to_str() {
        Some(":memory:" | ":flwr-in-memory:" | "") | None => None,
        Some(path) => Some(PathBuf::from(format!("{path}.secret"))),
    }
}

/// The secret in `path`, if this user can read it and it is private to its
/// owner, who is this user (a file others could have written is not
/// trusted, and no other file is ever sent to a server).
pub(crate) fn read_secret(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::symlink_metadata(path).ok()?;
    // SAFETY: geteuid(2) has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !metadata.is_file() || metadata.uid() != me || metadata.mode() & 0o077 != 0 || metadata.len() > 256 {
        return None;
    }
    let secret = std::fs::read_to_string(path).ok()?.trim().to_string();
    (secret.len() == 2 * SECRET_BYTES && secret.bytes().all(|b| b.is_ascii_hexdigit())).then_some(secret)
}
