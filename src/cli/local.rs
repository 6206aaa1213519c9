//! The managed local SuperLink: find it, check it is ours, start it, stop it.
//!
//! Flower 1.27 starts `flower-superlink` on 127.0.0.1:39093 (Control) and
//! 127.0.0.1:39094 (SimulationIo) when nothing answers on the Control port,
//! with its files in `$FLWR_HOME/local-superlink/`, and leaves it running.
//! This does the same, and fixes three things Flower users trip on:
//!
//! - whatever answers on the port is *asked who it is* (`floret.v1.Local/
//!   Identify`): a SuperLink serving another `FLWR_HOME`, a Python Flower
//!   SuperLink, or an unrelated program each get a clear error naming the
//!   port and the log file, instead of being used by mistake;
//! - concurrent first commands start one SuperLink, not two: starting happens
//!   under an exclusive lock on `local-superlink/start.lock`;
//! - the SuperLink can be inspected and stopped (`flwr superlink status|stop`).
//!
//! It never touches the SuperLink's files: it only asks the SuperLink (Local API) and starts it.
//! (It creates the private directory the SuperLink's files go to, and the start lock.)

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tonic::Code;

use crate::cli::table::Style;
use crate::cli::{CliError, Output};
use crate::proto::floret::v1 as ext;

/// Flower's default ports of the managed local SuperLink.
const DEFAULT_CONTROL_PORT: u16 = 39093;
const DEFAULT_SIMULATIONIO_PORT: u16 = 39094;
/// Flower's `LOCAL_SUPERLINK_STARTUP_TIMEOUT`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The two ports, from `FLWR_LOCAL_CONTROL_API_PORT` and
/// `FLWR_LOCAL_SIMULATIONIO_API_PORT` or Flower's defaults.
pub fn ports() -> Result<(u16, u16), CliError> {
    let port = |name: &str, default: u16| match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) if text.trim().is_empty() => Ok(default),
        Ok(text) => text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| CliError::new(format!("{name}={text:?} is not a valid port number."))),
    };
    Ok((
        port("FLWR_LOCAL_CONTROL_API_PORT", DEFAULT_CONTROL_PORT)?,
        port("FLWR_LOCAL_SIMULATIONIO_API_PORT", DEFAULT_SIMULATIONIO_PORT)?,
    ))
}

/// The managed SuperLink's state database, in [`directory`].
pub(crate) const DATABASE: &str = "state.db";

/// `$FLWR_HOME/local-superlink`.
pub fn directory(flwr_home: &Path) -> PathBuf {
    flwr_home.join("local-superlink")
}

pub fn log_file(flwr_home: &Path) -> PathBuf {
    directory(flwr_home).join("superlink.log")
}

/// What answers on the Control port.
#[derive(Debug)]
pub enum Probe {
    /// Nothing listens.
    Nothing,
    /// A floret SuperLink.
    Floret(ext::IdentifyResponse),
    /// A gRPC server without floret's Local API (e.g. Python Flower's).
    OtherSuperLink,
    /// Something that is not a gRPC server.
    OtherProgram(String),
}

pub async fn probe(port: u16) -> Probe {
    let address = format!("127.0.0.1:{port}");
    match tokio::time::timeout(Duration::from_millis(400), tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => return Probe::Nothing,
    }
    let Ok(channel) = crate::cli::transport::channel(&address).await else {
        return Probe::OtherProgram("it accepts connections but does not speak HTTP/2".into());
    };
    let mut client = ext::local_client::LocalClient::new(channel);
    let mut request = tonic::Request::new(ext::IdentifyRequest {});
    request.set_timeout(Duration::from_secs(3));
    match client.identify(request).await {
        Ok(response) => Probe::Floret(response.into_inner()),
        Err(status) if status.code() == Code::Unimplemented => Probe::OtherSuperLink,
        Err(status) => Probe::OtherProgram(format!("it answered: {}", status.message())),
    }
}

fn same_home(served: &str, wanted: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    !served.is_empty() && canonical(Path::new(served)) == canonical(wanted)
}

/// The error for a port held by something that is not our SuperLink.
fn not_ours(port: u16, flwr_home: &Path, probe: &Probe) -> Option<CliError> {
    let fix = "Stop it, or set FLWR_LOCAL_CONTROL_API_PORT and FLWR_LOCAL_SIMULATIONIO_API_PORT to free ports.";
    let log = log_file(flwr_home);
    let message = match probe {
        Probe::Nothing => return None,
        Probe::Floret(identity) if same_home(&identity.flwr_home, flwr_home) => return None,
        Probe::Floret(identity) if identity.flwr_home.is_empty() => format!(
            "Port {port} is used by a floret SuperLink (pid {}) that was started by hand, not for FLWR_HOME={}. {fix}",
            identity.pid,
            flwr_home.display()
        ),
        Probe::Floret(identity) => format!(
            "Port {port} is used by the local SuperLink of another Flower home: it serves FLWR_HOME={} \
             (pid {}), not FLWR_HOME={}. Stop it with `FLWR_HOME={} flwr superlink stop`, or set \
             FLWR_LOCAL_CONTROL_API_PORT and FLWR_LOCAL_SIMULATIONIO_API_PORT to free ports.",
            identity.flwr_home,
            identity.pid,
            flwr_home.display(),
            identity.flwr_home
        ),
        Probe::OtherSuperLink => format!(
            "Port {port} is used by a SuperLink that is not floret's (it does not answer floret's Local API; \
             perhaps Python Flower's flower-superlink). {fix} Local SuperLink logs: {}",
            log.display()
        ),
        Probe::OtherProgram(what) => format!(
            "Port {port} is used by another program, not a Flower SuperLink ({what}). {fix} Local SuperLink \
             logs: {}",
            log.display()
        ),
    };
    Some(CliError::new(message))
}

/// The running managed SuperLink.
pub struct Running {
    pub control_address: String,
    pub identity: ext::IdentifyResponse,
}

/// The `flower-superlink` executable: next to this `flwr`, else on `PATH`.
fn superlink_executable() -> PathBuf {
    crate::host::sibling_executable("flower-superlink")
}

/// An exclusive lock on a file, held until dropped.
/// The file stays open (and locked) as long as the value lives.
struct FileLock(#[allow(dead_code)] std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<FileLock> {
        let file = crate::owner_only::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(file))
    }
}

/// The last lines of the SuperLink's log, to explain a failed start.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("\n")
}

/// Makes sure the managed SuperLink of `flwr_home` runs; starts it if not.
pub async fn ensure_running(flwr_home: &Path, out: &mut Output) -> Result<Running, CliError> {
    let (control_port, simulationio_port) = ports()?;
    if let Some(running) = already_running(control_port, flwr_home).await? {
        return Ok(running);
    }
    let directory = directory(flwr_home);
    // Private to the owner: the SuperLink's state, FABs and logs.
    crate::owner_only::create_dir_all(&directory)
        .and_then(|()| crate::owner_only::create_dir_all(&directory.join("ffs")))
        .map_err(|e| CliError::new(format!("Cannot create {}: {e}", directory.display())))?;
    let lock_path = directory.join("start.lock");
    let lock = tokio::task::spawn_blocking(move || FileLock::acquire(&lock_path))
        .await
        .expect("lock task")
        .map_err(|e| CliError::new(format!("Cannot lock {}: {e}", directory.join("start.lock").display())))?;
    // Another command may have started it while this one waited.
    if let Some(running) = already_running(control_port, flwr_home).await? {
        drop(lock);
        return Ok(running);
    }
    let address = format!("127.0.0.1:{control_port}");
    out.say(&format!("Starting local SuperLink on {address}..."), Style::Blue);
    let log = log_file(flwr_home);
    let child = spawn_superlink(flwr_home, &directory, &address, simulationio_port, &log)?;
    let running = wait_until_up(child, control_port, flwr_home, &log).await;
    drop(lock);
    running
}

/// Our SuperLink of `flwr_home` when it answers on `control_port`; an error
/// when something else does.
async fn already_running(control_port: u16, flwr_home: &Path) -> Result<Option<Running>, CliError> {
    let found = probe(control_port).await;
    if let Some(error) = not_ours(control_port, flwr_home, &found) {
        return Err(error);
    }
    Ok(match found {
        Probe::Floret(identity) => Some(Running {
            control_address: format!("127.0.0.1:{control_port}"),
            identity,
        }),
        _ => None,
    })
}

/// Starts `flower-superlink` for `flwr_home`, detached from this command's
/// session so that it outlives it.
fn spawn_superlink(
    flwr_home: &Path,
    directory: &Path,
    address: &str,
    simulationio_port: u16,
    log: &Path,
) -> Result<std::process::Child, CliError> {
    let executable = superlink_executable();
    let mut command = std::process::Command::new(&executable);
    command
        .arg("--insecure")
        .arg("--simulation")
        .args(["--isolation", "subprocess"])
        .args(["--control-api-address", address])
        .args(["--simulationio-api-address", &format!("127.0.0.1:{simulationio_port}")])
        .arg("--database")
        .arg(directory.join(DATABASE))
        .arg("--storage-dir")
        .arg(directory.join("ffs"))
        .arg("--log-file")
        .arg(log)
        .args([
            "--log-rotation-interval-hours",
            "24",
            "--log-rotation-backup-count",
            "7",
        ])
        .arg("--flwr-home")
        .arg(flwr_home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid only detaches the child from our session, so that it
    // outlives this command and the terminal it runs in.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        CliError::new(format!(
            "Unable to launch `{}` for local simulation: {e}",
            executable.display()
        ))
    })
}

/// Waits until the started SuperLink answers as ours, or says why it never
/// will: it exited (with its code or signal and the end of its log),
/// another program took the port, or it did not come up in time.
async fn wait_until_up(
    mut child: std::process::Child,
    control_port: u16,
    flwr_home: &Path,
    log: &Path,
) -> Result<Running, CliError> {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_tail(log);
            let reason = if tail.is_empty() {
                String::new()
            } else {
                format!("\n{tail}")
            };
            return Err(CliError::new(format!(
                "Failed to start local SuperLink: `flower-superlink` {}. See logs at {}.{reason}",
                exit_description(status),
                log.display()
            )));
        }
        match probe(control_port).await {
            Probe::Floret(identity) if same_home(&identity.flwr_home, flwr_home) => {
                return Ok(Running {
                    control_address: format!("127.0.0.1:{control_port}"),
                    identity,
                });
            }
            Probe::Nothing => {}
            other => {
                if let Some(error) = not_ours(control_port, flwr_home, &other) {
                    return Err(error);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            return Err(CliError::new(format!(
                "Failed to start local SuperLink within {}s. See logs at {}.",
                STARTUP_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// "exited with code 105", "was killed by signal 9 (SIGKILL)".
fn exit_description(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| format!(" ({})", s.as_str()))
                .unwrap_or_default();
            format!("was killed by signal {signal}{name}")
        }
        (None, None) => "ended".to_string(),
    }
}

/// Whether a process exists and has not exited (a zombie waiting to be
/// reaped counts as gone).
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if pid == 0 || unsafe { libc::kill(pid as i32, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => true,
    }
}

/// The managed SuperLink of `flwr_home`, if one runs; an error if the port
/// is held by something else.
pub async fn find(flwr_home: &Path) -> Result<Option<ext::IdentifyResponse>, CliError> {
    let (control_port, _) = ports()?;
    let found = probe(control_port).await;
    if let Some(error) = not_ours(control_port, flwr_home, &found) {
        return Err(error);
    }
    Ok(match found {
        Probe::Floret(identity) => Some(identity),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn an_exit_is_described_by_its_code_or_its_signal() {
        let exited = std::process::ExitStatus::from_raw(105 << 8);
        assert_eq!(exit_description(exited), "exited with code 105");
        let killed = std::process::ExitStatus::from_raw(9);
        assert_eq!(exit_description(killed), "was killed by signal 9 (SIGKILL)");
    }
}
