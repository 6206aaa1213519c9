//! The Python bridge: runs a user's Flower App, unmodified, in the user's own
//! Python, driven by floret's deterministic engine.
//!
//! One zygote interpreter imports `flwr` and the app's components once
//! ([`process`]); it forks the ServerApp process and a fixed number of
//! ClientApp workers. Rust keeps everything that decides a run: node ids
//! from the seed, message ids and virtual times, the order of calls and of
//! replies (the order the messages were sent, whichever idle worker ran
//! them), each node's Context between calls ([`client`]),
//! stops, timeouts and crashes (outside inputs, recorded and re-injected by
//! replay). Python's, numpy's and torch's global generators are seeded before
//! every call, so a deterministic app replays bit for bit.
//!
//! Two shapes of run use it:
//! - a Python ServerApp with a Python ClientApp ([`server`]): the ServerApp's
//!   Grid is a shim whose pushes and pulls become frames to Rust, recorded as
//!   `MessageSent` / `ReplyDelivered` events;
//! - the built-in ServerApp (`floret:serverapp`) with a Python ClientApp
//!   ([`client::PyClientApp`]): the Rust strategy loop, Flower's message
//!   conventions (`arrays`, `config`, `metrics`, `num-examples`), and the
//!   built-in apps' events.
//!
//! The wire between Rust and Python ([`frame`]) carries Flower's own
//! protobuf bytes; contents pass through without being decoded, except for
//! the metrics and the round a timeline shows. facts and measurements:
//! `shared/reference/python-bridge.md`; user documentation: docs/APPS.md.
//!
//! This module never touches `state.db` or the network: events and logs go
//! to the engine's `Sink`.

pub(crate) mod client;
pub mod frame;
#[doc(hidden)]
pub mod probe;
pub mod process;
pub mod python;
pub mod run;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::domain::event::PythonStarted;
use crate::records::{ArrayRecord, Scalar, UserConfig};

pub(crate) use process::Zygote;

/// Everything starting the bridge for a run needs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub interpreter: PathBuf,
    /// The app's files (the FAB, extracted).
    pub app_dir: PathBuf,
    pub server_app: String,
    pub client_app: String,
    pub run_id: u64,
    /// `--run-config` overrides the app declares (runtime keys removed).
    pub overrides: UserConfig,
    /// ClientApp worker processes.
    pub workers: usize,
    /// CPUs one ClientApp may use (BLAS/OpenMP threads).
    pub threads_per_client: usize,
    /// The run config key naming the app's initial-arrays function, for a
    /// built-in ServerApp.
    pub initial_arrays: Option<String>,
}

/// Why the bridge could not start the app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Python(#[from] python::Error),
    #[error(transparent)]
    Process(#[from] process::Error),
    /// The app's components could not be loaded: `kind` is "clientapp",
    /// "serverapp", "config" or "initial-arrays"; the traceback goes to the
    /// run's log.
    #[error("{message}")]
    Load {
        kind: String,
        error_type: String,
        message: String,
        traceback: String,
    },
    #[error("cannot start the ClientApp workers: {0}")]
    StartWorkers(#[source] process::Error),
    #[error("cannot start the ServerApp process: {0}")]
    StartServer(#[source] process::Error),
    #[error("cannot start the ServerApp: {0}")]
    StartFrame(#[source] frame::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The built-in ServerApp with a Python ClientApp has no
    /// `initial-arrays` to start from.
    #[error(
        "floret:serverapp with the Python ClientApp `{client_app}` needs the model it starts from: set \
         `initial-arrays = \"<module>:<function>\"` in [tool.flwr.app.config], naming a function of your app that \
         returns the initial ArrayRecord (or a list of NumPy arrays)"
    )]
    NoInitialArrays { client_app: String },
    /// A call timed by `probe` did not reply: how it ended, and its output.
    #[error("call {index}: {outcome}\n{output}")]
    CallFailed {
        index: usize,
        outcome: String,
        output: String,
    },
    /// A call timed by `probe` replied with an error.
    #[error("call {index}: {}", .error.reason)]
    CallError { index: usize, error: crate::records::Error },
}

/// A started bridge: the zygote with the app loaded.
pub struct Bridge {
    pub(crate) zygote: Arc<Zygote>,
    /// `"message"` (`@app.main`) or `"legacy"` (`server_fn`).
    pub server_api: String,
    pub workers: usize,
    /// The app's initial arrays, when the spec asked for them.
    pub initial_arrays: Option<ArrayRecord>,
    /// What the zygote reported about its interpreter.
    pub versions: Value,
    spec: Spec,
}

impl Bridge {
    /// Starts the interpreter, imports flwr and loads the app's components.
    pub fn start(spec: &Spec) -> Result<Bridge, Error> {
        let settings = process::Settings {
            threads_per_client: spec.threads_per_client,
            env: Vec::new(),
            cwd: None,
        };
        let zygote = match take_handed(spec) {
            Some(handed) => match Zygote::adopt(&spec.interpreter, handed.stream, handed.pid) {
                Ok(zygote) => {
                    tracing::info!(
                        run_id = spec.run_id,
                        pid = handed.pid,
                        "the run starts from a warm Python interpreter"
                    );
                    zygote
                }
                Err(error) => {
                    tracing::warn!(%error, "the warm interpreter could not be used; starting one");
                    Zygote::spawn(&spec.interpreter, &settings)?
                }
            },
            None => Zygote::spawn(&spec.interpreter, &settings)?,
        };
        let overrides: Vec<Value> = spec
            .overrides
            .iter()
            .map(|(key, value)| json!([key, scalar_json(value)]))
            .collect();
        let loaded = zygote.load(json!({
            "app_dir": spec.app_dir,
            "serverapp": is_python(&spec.server_app).then_some(&spec.server_app),
            "clientapp": spec.client_app,
            "run_id": spec.run_id,
            "overrides": overrides,
            "initial_arrays": spec.initial_arrays,
        }))?;
        if loaded.header.get("ok") != Some(&Value::Bool(true)) {
            let failure = loaded.header.get("failure").cloned().unwrap_or(Value::Null);
            let text = |key: &str| failure.get(key).and_then(Value::as_str).unwrap_or("").to_string();
            return Err(Error::Load {
                kind: text("kind"),
                error_type: text("type"),
                message: text("message"),
                traceback: text("traceback"),
            });
        }
        let initial_arrays = match loaded.fields.first() {
            Some(bytes) if spec.initial_arrays.is_some() => {
                use prost::Message as _;
                let record =
                    crate::proto::flwr::proto::ArrayRecord::decode(bytes.as_ref()).map_err(|e| Error::Load {
                        kind: "initial-arrays".into(),
                        error_type: "DecodeError".into(),
                        message: e.to_string(),
                        traceback: String::new(),
                    })?;
                Some(
                    crate::proto::array_record_from_proto(&record).map_err(|error| Error::Load {
                        kind: "initial-arrays".into(),
                        error_type: "TypeError".into(),
                        message: format!("the initial arrays cannot be used by floret's built-in ServerApp: {error}"),
                        traceback: String::new(),
                    })?,
                )
            }
            _ => None,
        };
        Ok(Bridge {
            zygote: Arc::new(zygote),
            server_api: loaded.str("server_api").to_string(),
            workers: spec.workers.max(1),
            initial_arrays,
            versions: loaded.header.get("versions").cloned().unwrap_or(Value::Null),
            spec: spec.clone(),
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The `PythonStarted` event of the run (`server_api` "builtin" for the
    /// built-in ServerApp).
    pub(crate) fn started_event(&self, builtin_server: bool) -> PythonStarted {
        let version = |name: &str| self.versions.get(name).and_then(Value::as_str).map(str::to_string);
        let libraries = ["numpy", "torch", "tensorflow", "scikit-learn"]
            .iter()
            .filter_map(|name| version(name).map(|v| format!("{name}={v}")))
            .collect();
        PythonStarted {
            interpreter: self.spec.interpreter.display().to_string(),
            python: version("python").unwrap_or_default(),
            flwr: version("flwr").unwrap_or_default(),
            libraries,
            workers: self.workers as u64,
            server_api: if builtin_server {
                "builtin".to_string()
            } else {
                self.server_api.clone()
            },
        }
    }
}

/// The environment variable through which the SuperLink hands the app
/// process a zygote forked from its warm interpreter:
/// `<fd>:<pid>:<threads per client>:<interpreter>`.
pub(crate) const HANDED_VARIABLE: &str = "FLORET_WARM_ZYGOTE";

/// A zygote the SuperLink forked for this process's run from its warm
/// interpreter (flwr already imported).
struct Handed {
    stream: std::os::unix::net::UnixStream,
    pid: i32,
    threads: usize,
    interpreter: PathBuf,
}

static HANDED: std::sync::Mutex<Option<Handed>> = std::sync::Mutex::new(None);

/// Takes the zygote named by [`HANDED_VARIABLE`], if any, for the run's
/// bridge; the variable is removed so that no app sees it. Call once, at the
/// start of the app process, before any other thread runs.
pub fn accept_handed_zygote() {
    use std::os::fd::FromRawFd;
    let Some(value) = std::env::var_os(HANDED_VARIABLE) else {
        return;
    };
    std::env::remove_var(HANDED_VARIABLE);
    let value = value.to_string_lossy().into_owned();
    let mut parts = value.splitn(4, ':');
    let (Some(fd), Some(pid), Some(threads), Some(interpreter)) = (
        parts.next().and_then(|s| s.parse::<i32>().ok()),
        parts.next().and_then(|s| s.parse::<i32>().ok()),
        parts.next().and_then(|s| s.parse::<usize>().ok()),
        parts.next(),
    ) else {
        tracing::warn!("ignoring a malformed {HANDED_VARIABLE}");
        return;
    };
    // The descriptor must be an open socket this process inherited.
    if fd < 3 || !is_socket(fd) {
        tracing::warn!("ignoring {HANDED_VARIABLE}: descriptor {fd} is not a socket");
        return;
    }
    // SAFETY: the SuperLink passed this descriptor for this purpose and
    // nothing else in this process owns it (checked open above).
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    *HANDED.lock().expect("handed lock") = Some(Handed {
        stream,
        pid,
        threads,
        interpreter: PathBuf::from(interpreter),
    });
}

fn is_socket(fd: i32) -> bool {
    // SAFETY: fstat writes into the zeroed struct it is given.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
    }
}

/// Whether a zygote was handed to this process for runs of `interpreter`
/// with `threads` per client (a run that finds one need not probe its
/// interpreter: the zygote has imported flwr from it).
pub(crate) fn has_handed_zygote(interpreter: &Path, threads: usize) -> bool {
    HANDED
        .lock()
        .expect("handed lock")
        .as_ref()
        .is_some_and(|h| h.interpreter == interpreter && h.threads == threads.max(1))
}

/// The handed zygote, when it suits this run (same interpreter and threads).
fn take_handed(spec: &Spec) -> Option<Handed> {
    let handed = HANDED.lock().expect("handed lock").take()?;
    (handed.interpreter == spec.interpreter && handed.threads == spec.threads_per_client.max(1)).then_some(handed)
}

/// A configuration value as JSON for the Python side (ints stay ints).
fn scalar_json(value: &Scalar) -> Value {
    match value {
        Scalar::Bool(b) => json!(b),
        Scalar::Int(i) => json!(i),
        Scalar::Float(f) => json!(f),
        Scalar::Str(s) => json!(s),
    }
}

/// Whether a component names Python code (anything but `floret:<name>`).
pub(crate) fn is_python(component: &str) -> bool {
    crate::builtin::builtin_name(component).is_none()
}

/// Where a FAB's files are extracted for the bridge: Flower's layout,
/// `$FLWR_HOME/apps/<publisher>.<name>.<version>.<hash8>/`.
pub fn app_dir(flwr_home: &Path, fab_id: &str, fab_version: &str, fab_hash: &str) -> PathBuf {
    let name = fab_id.replace('/', ".");
    let hash8: String = fab_hash.chars().take(8).collect();
    flwr_home.join("apps").join(format!("{name}.{fab_version}.{hash8}"))
}
