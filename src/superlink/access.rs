//! Who may do what on the SuperLink's loopback APIs, beyond Flower's open
//! Control API:
//!
//! - **app-process writes** carry the run's token. Flower 1.27's
//!   `PushLogsRequest` and `UpdateRunStatusRequest` have no token field, so
//!   our app process sends it as gRPC metadata ([`APP_TOKEN_HEADER`]); the
//!   other SimulationIo writes carry it in the message, as Flower's do.
//! - **the Local API** (shutdown, run records) needs a secret that only the
//!   owner of the state directory can read: a random value the SuperLink
//!   writes at every start to `<database>.secret` (mode 0600), which the CLI
//!   reads and sends as gRPC metadata ([`LOCAL_SECRET_HEADER`]).
//!
//! What both sides of these calls share (header names, attaching them,
//! reading the secret file) is in `crate::wire`.
//!
//! It never changes runs or decides anything about them.

use std::path::{Path, PathBuf};

use tonic::{Request, Status};

use crate::wire::{APP_TOKEN_HEADER, LOCAL_SECRET_HEADER, SECRET_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the Local API secret {path}: {source}")]
    WriteSecret { path: PathBuf, source: std::io::Error },
}

/// The run's token a request carries in its metadata, if any.
pub(crate) fn app_token<T>(request: &Request<T>) -> Option<&str> {
    request.metadata().get(APP_TOKEN_HEADER)?.to_str().ok()
}

/// Draws a new secret and writes it to `path` (atomically, mode 0600).
pub(crate) fn create_secret(path: &Path) -> Result<String, Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let secret = hex::encode(bytes);
    crate::owner_only::write_atomically(path, format!("{secret}\n").as_bytes()).map_err(|source| {
        Error::WriteSecret {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(secret)
}

/// Refuses a Local API call that does not carry `expected`.
pub(crate) fn check_local_secret<T>(expected: Option<&str>, request: &Request<T>) -> Result<(), Status> {
    let Some(expected) = expected else {
        return Err(Status::permission_denied(
            "This SuperLink keeps its state in memory and has no Local API secret: it cannot be stopped or its \
             runs read through the Local API. Stop it with Ctrl-C or SIGTERM.",
        ));
    };
    let sent = request
        .metadata()
        .get(LOCAL_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if equal_in_constant_time(sent.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "This call needs the SuperLink's Local API secret, which only the user who started it can read \
             (the file <state database>.secret). Run the command as that user.",
        ))
    }
}

/// Whether `a == b`, in a time that does not depend on where they differ.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{read_secret, secret_path, with_app_token, with_local_secret};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_private_and_read_back_only_when_private() {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("state.db");
        let path = secret_path(&database).unwrap();
        assert_eq!(path, directory.path().join("state.db.secret"));
        assert_eq!(secret_path(Path::new(":flwr-in-memory:")), None);

        let secret = create_secret(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&path).as_deref(), Some(secret.as_str()));
        // A new start, a new secret.
        assert_ne!(create_secret(&path).unwrap(), secret);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_secret(&path), None, "a readable secret is not trusted");
        let other = directory.path().join("other");
        std::fs::write(&other, "not a secret").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&other), None, "only a secret is ever read");
    }

    #[test]
    fn the_local_secret_is_checked() {
        let request = with_local_secret((), Some("abc"));
        assert!(check_local_secret(Some("abc"), &request).is_ok());
        assert!(check_local_secret(Some("abd"), &request).is_err());
        assert!(check_local_secret(Some("abc"), &Request::new(())).is_err());
        assert!(check_local_secret(None, &request).is_err());
        assert_eq!(app_token(&with_app_token((), "t")), Some("t"));
    }
}
