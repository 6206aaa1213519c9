//! Launches one app process per pending run and watches it: `flwr-simulation`
//! on SimulationIo for a simulation, `flwr-serverapp` on ServerAppIo for a
//! deployment run (whose ClientApps run on the SuperNodes).
//!
//! Flower 1.27 has a separate `flower-superexec` poll for pending runs every
//! second, claim a run (`RequestToken`) and launch `flwr-simulation --token`;
//! the SuperLink here claims the run itself the moment it is submitted (and,
//! after a restart, every run still pending) and hands the token to the
//! process it launches, so no other local process can win the run: with a
//! launcher, SimulationIo offers no run to others. The token travels in the
//! child's environment (`FLORET_APP_TOKEN`), which other users cannot read,
//! not on its command line, which they can.
//!
//! When a process exits before its run finished, the run fails at once with
//! the exit status (no need to wait for a heartbeat to expire). Children die
//! with the SuperLink: on Linux they get `PR_SET_PDEATHSIG`, and they also
//! watch `--parent-pid`.
//!
//! A run with a Python component may get a zygote forked from a warm
//! interpreter the SuperLink keeps ([`super::warm`]): its socket is
//! inherited by the child, named by `FLORET_WARM_ZYGOTE`.
//!
//! It never changes a run's state itself: it tells the engine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command as Process;

use crate::domain::ids::RunId;
use crate::domain::run::Command;
use crate::superlink::engine::Handle;
use crate::superlink::warm::{self, WarmPython};

/// How long a run waits for a warm interpreter being started before it
/// starts its own (importing flwr takes ~1 s, several on a loaded machine).
const WARM_START_WAIT: Duration = Duration::from_secs(30);

/// The environment variable that hands the run's token to `flwr-simulation`.
pub(crate) const TOKEN_VARIABLE: &str = "FLORET_APP_TOKEN";

/// The API an app process is pointed at.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AppApi {
    SimulationIo(SocketAddr),
    ServerAppIo(SocketAddr),
}

impl AppApi {
    /// The flag that names it, and the process's name in messages.
    fn flag_and_name(self) -> (&'static str, &'static str, SocketAddr) {
        match self {
            AppApi::SimulationIo(address) => ("--simulationio-api-address", "flwr-simulation", address),
            AppApi::ServerAppIo(address) => ("--serverappio-api-address", "flwr-serverapp", address),
        }
    }
}

pub(crate) struct Launcher {
    /// The `flwr-simulation` or `flwr-serverapp` executable.
    executable: PathBuf,
    api: AppApi,
    /// Where the children's stderr goes (the SuperLink's log file), if set.
    log_file: Option<PathBuf>,
    engine: Handle,
    /// Process ids of running children. A std mutex: held for a map lookup
    /// only, never across an await.
    children: Mutex<HashMap<RunId, u32>>,
    /// Warm Python interpreters, unless turned off.
    warm: Option<Arc<WarmPython>>,
}

impl Launcher {
    pub fn new(
        executable: PathBuf,
        api: AppApi,
        log_file: Option<PathBuf>,
        engine: Handle,
        warm: Option<Arc<WarmPython>>,
    ) -> Arc<Launcher> {
        Arc::new(Launcher {
            executable,
            api,
            log_file,
            engine,
            children: Mutex::new(HashMap::new()),
            warm,
        })
    }

    /// The warm interpreters (tests and benchmarks wait on them).
    pub fn warm(&self) -> Option<&Arc<WarmPython>> {
        self.warm.as_ref()
    }

    /// Claims `run_id` and starts its app process with the token; a failure
    /// to start fails the run. A run that cannot be claimed (it was stopped
    /// meanwhile) gets no process. `python` names the interpreter of a run
    /// with a Python component, which may then start from a warm one.
    pub fn launch(self: &Arc<Self>, run_id: RunId, python: Option<warm::Key>) {
        let launcher = Arc::clone(self);
        tokio::spawn(async move {
            match launcher.engine.claim(run_id).await {
                Ok(Some(token)) => {
                    let handed = match (&launcher.warm, python) {
                        (Some(pool), Some(key)) => {
                            let pool = Arc::clone(pool);
                            // Forking answers in milliseconds, over a socket;
                            // the first run of an interpreter waits for its
                            // start (about as long as its own would take).
                            tokio::task::spawn_blocking(move || {
                                pool.fork_for_waiting(&key, WARM_START_WAIT).map(|handed| (key, handed))
                            })
                            .await
                            .ok()
                            .flatten()
                        }
                        _ => None,
                    };
                    launcher.spawn(run_id, &token, handed)
                }
                Ok(None) => tracing::warn!(%run_id, "the run already has an app process"),
                Err(error) => tracing::info!(%run_id, %error, "the run was not launched"),
            }
        });
    }

    fn spawn(self: &Arc<Self>, run_id: RunId, token: &str, handed: Option<(warm::Key, warm::Handed)>) {
        let (flag, name, address) = self.api.flag_and_name();
        let mut command = Process::new(&self.executable);
        command
            .arg("--insecure")
            .arg(flag)
            .arg(address.to_string())
            .arg("--run-id")
            .arg(run_id.0.to_string())
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .env(TOKEN_VARIABLE, token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(false);
        match self
            .log_file
            .as_ref()
            .and_then(|p| crate::owner_only::open_append(p).ok())
        {
            Some(file) => command.stderr(file),
            None => command.stderr(Stdio::inherit()),
        };
        // The socket of a zygote forked for this run: our copy is closed on
        // exec (std's default), the child's is kept (cleared after fork).
        let handed_fd = handed.as_ref().map(|(key, handed)| {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&handed.stream);
            command.env(crate::bridge::HANDED_VARIABLE, key.handed_value(fd, handed.pid));
            fd
        });
        let umask = crate::owner_only::inherited_umask();
        // SAFETY: prctl, umask and fcntl are async-signal-safe and only
        // change this child's own death signal, file creation mask (apps
        // write their users' files with the umask the SuperLink inherited)
        // and the inheritance of the handed socket, a descriptor it owns.
        unsafe {
            command.pre_exec(move || {
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(umask) = umask {
                    libc::umask(umask);
                }
                if let Some(fd) = handed_fd {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let spawned = command.spawn();
        // The child has its copy; ours closes now (the zygote ends when the
        // child's closes).
        drop(handed);
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let reason = format!("Unable to launch `{}`: {error}", self.executable.display());
                tracing::error!(%run_id, "{reason}");
                self.engine.oblige(run_id, Command::Abandon { reason });
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(%run_id, pid, "launched {name}");
        self.children.lock().expect("children lock").insert(run_id, pid);
        let launcher = Arc::clone(self);
        tokio::spawn(async move { launcher.watch(run_id, child).await });
    }

    async fn watch(self: Arc<Self>, run_id: RunId, mut child: tokio::process::Child) {
        let status = child.wait().await;
        self.children.lock().expect("children lock").remove(&run_id);
        let described = match &status {
            Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(status)) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => "ended".into(),
            },
            Err(error) => format!("could not be waited for ({error})"),
        };
        let name = self.api.flag_and_name().1;
        tracing::info!(%run_id, "{name} {described}");
        // A run whose process is gone can never finish: fail it unless it
        // already finished (the normal case, a no-op). The engine keeps
        // trying while the disk is full.
        let reason = match self.api {
            AppApi::SimulationIo(_) => {
                format!("The simulation process (flwr-simulation) {described} before the run finished.")
            }
            AppApi::ServerAppIo(_) => {
                format!("The ServerApp process (flwr-serverapp) {described} before the run finished.")
            }
        };
        self.engine.oblige(run_id, Command::Abandon { reason });
    }

    /// Sends `signal` to the run's process, if it has one.
    pub fn signal(&self, run_id: RunId, signal: i32) -> bool {
        let pid = self.children.lock().expect("children lock").get(&run_id).copied();
        match pid {
            // SAFETY: kill(2) has no memory effects; the pid is our child's.
            Some(pid) if pid > 0 => unsafe { libc::kill(pid as i32, signal) == 0 },
            _ => false,
        }
    }

    pub fn running(&self) -> Vec<RunId> {
        self.children.lock().expect("children lock").keys().copied().collect()
    }

    /// Terminates every child: SIGTERM, then SIGKILL after `grace`.
    pub async fn terminate_all(&self, grace: Duration) {
        for run_id in self.running() {
            self.signal(run_id, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for run_id in self.running() {
            self.signal(run_id, libc::SIGKILL);
        }
    }
}
