//! A run with Python components from start to end: find the interpreter,
//! install the FAB, start the bridge, record the Python environment, and
//! run either the Python ServerApp ([`super::server`]) or the built-in
//! ServerApp with the Python ClientApp ([`super::client::PyClientApp`]).
//!
//! The app process (`flwr-simulation`) and `flwr replay` both come here, so a
//! replay re-executes the Python app on the very path of the live run.
//!
//! It writes files only to install the app (Flower's `$FLWR_HOME/apps/`
//! layout); events and logs go to the `Sink`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;

use super::{client, python, server, Bridge, Error, Spec};
use crate::domain::event::{Event, Outcome};
use crate::flwr_log::Level;
use crate::records::{ConfigRecord, ConfigValue, Scalar, UserConfig};
use crate::sim::{self, Finished, Inputs, Sink};

pub use crate::builtin::INITIAL_ARRAYS_KEY;

/// What a Python run needs besides its [`Inputs`].
#[derive(Clone, Debug)]
pub struct PythonRun {
    pub fab: Vec<u8>,
    pub fab_id: String,
    pub fab_version: String,
    pub fab_hash: String,
    /// The overrides as the run recorded them.
    pub overrides: UserConfig,
    /// The app's own `[tool.flwr.app.config]`.
    pub app_config: UserConfig,
    pub federation_options: ConfigRecord,
    pub interpreter: PathBuf,
    pub flwr_home: PathBuf,
    /// Virtual time of the run's start (seconds since the epoch).
    pub anchor: f64,
    /// Worker processes: the machine's rule for a live run, the recorded
    /// number for a replay.
    pub workers: usize,
}

/// How the run ended, with the ServerApp's final Context when it has one.
pub struct Ended {
    pub finished: Option<Finished>,
    pub outcome: Outcome,
    pub context: Option<Bytes>,
}

/// The interpreter a run uses: its `python` federation option, else the
/// rule applied to this process's environment.
pub(crate) fn interpreter_for(options: &ConfigRecord) -> Result<PathBuf, python::Error> {
    match options.get(python::PYTHON_OPTION) {
        Some(ConfigValue::Str(path)) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => python::resolve_here(),
    }
}

/// Probes the run's interpreter (which runs it: call this off the async
/// runtime): a missing one, or one without a usable `flwr`, is an error
/// that names it and the fix.
pub(crate) fn check_interpreter(options: &ConfigRecord) -> Result<(), python::Error> {
    let interpreter = interpreter_for(options)?;
    python::probe(&interpreter).map(|_| ())
}

/// CPUs per ClientApp (`backend.client-resources.num-cpus`, default 1).
pub(crate) fn threads_per_client(options: &ConfigRecord) -> usize {
    match options.get("backend.client-resources.num-cpus") {
        Some(ConfigValue::Int(n)) if *n >= 1 => *n as usize,
        Some(ConfigValue::Float(f)) if *f >= 1.0 => *f as usize,
        _ => 1,
    }
}

/// Runs a run with Python components to its end. `stop` is the live run's
/// stop flag (a replay has none).
pub fn run(inputs: &Inputs, python: &PythonRun, stop: Option<Arc<AtomicBool>>, sink: &mut dyn Sink) -> Ended {
    let failed = |reason: String| Ended {
        finished: None,
        outcome: Outcome::Failed { reason },
        context: None,
    };
    let builtin_server = !super::is_python(&inputs.server_app);
    if !builtin_server && !super::is_python(&inputs.client_app) {
        return failed(format!(
            "The ServerApp `{}` is Python code and the ClientApp `{}` is built in: a Python ServerApp needs a \
             Python ClientApp (use `floret:serverapp` with a built-in ClientApp)",
            inputs.server_app, inputs.client_app
        ));
    }
    // A zygote handed by the SuperLink's warm interpreter has imported flwr
    // from this interpreter already: no need to probe it again.
    if !super::has_handed_zygote(&python.interpreter, threads_per_client(&python.federation_options)) {
        if let Err(error) = python::probe(&python.interpreter) {
            return failed(error.to_string());
        }
    }
    let app_dir = match install(&python.fab, &python.flwr_home, python) {
        Ok(dir) => dir,
        Err(error) => return failed(format!("cannot install the app for Python: {error}")),
    };
    let spec = Spec {
        interpreter: python.interpreter.clone(),
        app_dir,
        server_app: inputs.server_app.clone(),
        client_app: inputs.client_app.clone(),
        run_id: inputs.run_id,
        overrides: declared_overrides(&python.overrides, &python.app_config),
        workers: python.workers,
        threads_per_client: threads_per_client(&python.federation_options),
        initial_arrays: builtin_server.then(|| initial_arrays_ref(&inputs.run_config)).flatten(),
    };
    if builtin_server && spec.initial_arrays.is_none() {
        return failed(format!(
            "floret:serverapp with the Python ClientApp `{}` needs the model it starts from: set `{INITIAL_ARRAYS_KEY} \
             = \"<module>:<function>\"` in [tool.flwr.app.config], naming a function of your app that returns the \
             initial ArrayRecord (or a list of NumPy arrays)",
            inputs.client_app
        ));
    }
    let bridge = match Bridge::start(&spec) {
        Ok(bridge) => bridge,
        Err(error) => return load_failed(error, sink),
    };
    sink.event(Event::PythonStarted(bridge.started_event(builtin_server)));
    if let Some(warning) = python::newer_than_tested(&bridge.started_event(builtin_server).flwr, &spec.interpreter) {
        sink.log(Level::Warning, &warning);
    }
    if builtin_server {
        run_builtin_server(inputs, &bridge, stop, sink)
    } else {
        let info = server::RunInfo {
            fab_id: python.fab_id.clone(),
            fab_version: python.fab_version.clone(),
            fab_hash: python.fab_hash.clone(),
            override_config: python.overrides.clone(),
            anchor: python.anchor,
        };
        let ended = server::simulate(inputs, &bridge, &info, stop, sink);
        Ended {
            outcome: ended.finished.outcome.clone(),
            finished: Some(ended.finished),
            context: ended.context,
        }
    }
}

/// The model the built-in ServerApp starts from when it drives a Python
/// ClientApp elsewhere (on SuperNodes): the app is installed and loaded in
/// the run's interpreter only to call its `initial-arrays` function.
pub fn initial_arrays(inputs: &Inputs, python: &PythonRun) -> Result<crate::records::ArrayRecord, Error> {
    let no_arrays = || Error::NoInitialArrays {
        client_app: inputs.client_app.clone(),
    };
    let initial = initial_arrays_ref(&inputs.run_config).ok_or_else(no_arrays)?;
    python::probe(&python.interpreter)?;
    let app_dir = install(&python.fab, &python.flwr_home, python)?;
    let spec = Spec {
        interpreter: python.interpreter.clone(),
        app_dir,
        server_app: inputs.server_app.clone(),
        client_app: inputs.client_app.clone(),
        run_id: inputs.run_id,
        overrides: declared_overrides(&python.overrides, &python.app_config),
        workers: 1,
        threads_per_client: 1,
        initial_arrays: Some(initial),
    };
    Bridge::start(&spec)?.initial_arrays.ok_or_else(no_arrays)
}

fn run_builtin_server(inputs: &Inputs, bridge: &Bridge, stop: Option<Arc<AtomicBool>>, sink: &mut dyn Sink) -> Ended {
    let workers = Arc::new(client::Workers::new(
        Arc::clone(&bridge.zygote),
        bridge.workers,
        inputs.num_supernodes as usize,
        stop,
    ));
    let client = Arc::new(client::PyClientApp::new(workers));
    let mut log = crate::flwr_log::Logger::new();
    let initial = bridge.initial_arrays.clone().unwrap_or_default();
    let apps = crate::builtin::build_for_client(inputs, initial, client, &mut log);
    for entry in log.drain() {
        sink.entry(entry);
    }
    match apps {
        Err(error) => Ended {
            finished: None,
            outcome: Outcome::Failed {
                reason: error.to_string(),
            },
            context: None,
        },
        Ok(apps) => {
            let finished = sim::simulate(inputs, apps, bridge.workers, sink);
            Ended {
                outcome: finished.outcome.clone(),
                finished: Some(finished),
                context: None,
            }
        }
    }
}

/// Logs a load failure as Flower does and fails the run.
fn load_failed(error: Error, sink: &mut dyn Sink) -> Ended {
    let reason = match &error {
        Error::Load {
            kind,
            error_type,
            message,
            traceback,
        } => match kind.as_str() {
            "clientapp" => {
                sink.log(
                    Level::Error,
                    "LoadClientAppError exception encountered. Terminating simulation.",
                );
                sink.log(Level::Error, message);
                sink.output(traceback);
                format!("{error_type}: {}", first_line(message))
            }
            "serverapp" => {
                sink.log(
                    Level::Error,
                    &format!("ServerApp thread raised an exception: {message}"),
                );
                sink.output(traceback);
                format!("Exception in ServerApp thread: {error_type}: {}", first_line(message))
            }
            _ => {
                sink.log(Level::Error, message);
                if !traceback.is_empty() {
                    sink.output(traceback);
                }
                first_line(message).to_string()
            }
        },
        other => other.to_string(),
    };
    Ended {
        finished: None,
        outcome: Outcome::Failed { reason },
        context: None,
    }
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("")
}

/// `initial-arrays` of the run config.
fn initial_arrays_ref(config: &UserConfig) -> Option<String> {
    match config.get(INITIAL_ARRAYS_KEY) {
        Some(Scalar::Str(reference)) if !reference.is_empty() => Some(reference.clone()),
        _ => None,
    }
}

/// The overrides the app declares: floret's run-level `seed` is not passed
/// to Python unless the app has a `seed` key of its own (Flower would refuse
/// an unknown key).
fn declared_overrides(overrides: &UserConfig, app_config: &UserConfig) -> UserConfig {
    overrides
        .iter()
        .filter(|(key, _)| key.as_str() != "seed" || app_config.contains_key("seed"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Extracts the FAB into Flower's app directory, once per FAB: into a fresh
/// temporary directory, then renamed into place (a concurrent install of
/// the same FAB leaves one complete copy).
pub fn install(fab: &[u8], flwr_home: &Path, run: &PythonRun) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let target = super::app_dir(flwr_home, &run.fab_id, &run.fab_version, &run.fab_hash);
    let marker = target.join(".floret-installed");
    if marker.exists() {
        return Ok(target);
    }
    let apps = target.parent().expect("app dirs live under apps/").to_path_buf();
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&apps)?;
    let staging = tempfile::Builder::new().prefix(".install-").tempdir_in(&apps)?;
    let files = crate::fab::read_fab_files(fab).map_err(|e| std::io::Error::other(e.to_string()))?;
    for (name, data) in files {
        let path = staging.path().join(&name);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&data)?;
    }
    std::fs::write(staging.path().join(".floret-installed"), &run.fab_hash)?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &target) {
        Ok(()) => Ok(target),
        Err(_) if marker.exists() => {
            // Another process installed the same FAB first.
            let _ = std::fs::remove_dir_all(&staged);
            Ok(target)
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staged);
            if target.exists() {
                // A directory from an interrupted install (no marker): replace it.
                std::fs::remove_dir_all(&target)?;
                return install(fab, flwr_home, run);
            }
            Err(error)
        }
    }
}
