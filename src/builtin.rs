//! The built-in, Rust-native apps, named in `pyproject.toml` by components of
//! the form `floret:<name>`:
//!
//! - `serverapp = "floret:serverapp"`: Flower's strategy loop
//!   (`Strategy.start()`) with the strategy chosen by `strategy.name`;
//! - `clientapp = "floret:logreg"` or `"floret:mlp"`: a ClientApp that trains
//!   a multinomial logistic regression or a one-hidden-layer perceptron with
//!   minibatch SGD on its partition of the dataset chosen by `dataset`
//!   (`"digits"`, the UCI handwritten digits, or `"synthetic"`).
//!
//! The `floret:` form is a valid Python object reference (module `floret`,
//! attribute `<name>`), so an app that ships a small `floret.py` marker file
//! can also be submitted with the Python `flwr` CLI. Any other component
//! names Python code, which runs through the Python bridge (`crate::bridge`);
//! the built-in ServerApp also drives a Python ClientApp
//! ([`build_for_client`]).
//!
//! Everything about a built-in run is read from the run configuration with
//! Flower's keys (`num-server-rounds`, `fraction-train`, `local-epochs`,
//! `lr`, ...) plus `seed`; see [`WorkloadConfig`] and docs/APPS.md.
//!
//! It never does I/O: data is embedded or generated from the seed.

use std::sync::Arc;

use crate::app::AppConfig;
use crate::clientapp::{ClientApp, ClientEnv};
use crate::flwr_log::Logger;
use crate::prng::{purpose, Prng};
use crate::records::{
    error_code, ArrayRecord, ConfigRecord, ConfigValue, Context, Error, Message, MetricRecord, MetricValue, Record,
    RecordDict, Scalar, UserConfig,
};
use crate::sim::{Apps, Inputs, ServerApp};
use crate::strategy::start::{self, Driver, Incomplete, StartConfig};
use crate::strategy::{Strategy, StrategyError};
use crate::workload::{self, Dataset, Model, ModelKind, Partitioning, SyntheticSpec, TrainOptions};

/// Errors of this module: components, run configurations and federations
/// the built-in apps cannot run, and the errors of what they are built from.
/// (Named so because [`Error`] here is a message's error record.)
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BuiltinError {
    #[error(
        "Unknown built-in {role} `floret:{name}` in [tool.flwr.app.components]. Built-in {role}s: {}.",
        .known.iter().map(|n| format!("floret:{n}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownComponent {
        role: &'static str,
        name: String,
        known: &'static [&'static str],
    },
    #[error(
        "The ServerApp `{server_app}` is Python code and the ClientApp `{client_app}` is built in: a Python \
         ServerApp needs a Python ClientApp (a built-in ClientApp runs with `serverapp = \"floret:serverapp\"`)."
    )]
    PythonServerBuiltinClient { server_app: String, client_app: String },
    #[error("run config `{key}` must be at least {min}, found {value}")]
    TooSmall { key: String, min: i64, value: i64 },
    /// A value of the wrong type; `expected` is "an integer", "a number", ...
    #[error("run config `{key}` must be {expected}, found {} {}", .found.type_name(), show(.found))]
    WrongType {
        key: String,
        expected: &'static str,
        found: Scalar,
    },
    #[error("run config `seed` must be an integer from 0 to {}, found {}", u64::MAX, show(.0))]
    Seed(Scalar),
    #[error("run config `lr` must be positive, found {}", crate::pyfmt::float_repr(*.0))]
    Lr(f64),
    #[error("run config `dirichlet-alpha` must be positive")]
    DirichletAlpha,
    #[error("run config `partitioning` must be \"iid\" or \"dirichlet\", found {:?}", crate::app::clip(.0))]
    Partitioning(String),
    #[error("synthetic dataset: {0}")]
    Synthetic(#[source] workload::data::Error),
    #[error("run config `dataset` must be \"digits\" or \"synthetic\", found {:?}", crate::app::clip(.0))]
    Dataset(String),
    #[error("run config `fault.fail-partitions`: {0:?} is not a partition id")]
    FailPartition(String),
    #[error("run config `fault.client-failure-rate` must be between 0 and 1")]
    ClientFailureRate,
    #[error(
        "floret:serverapp with the Python ClientApp `{client_app}` needs the model it starts from: set `{} = \
         \"<module>:<function>\"` in [tool.flwr.app.config], naming a function of your app that returns the \
         initial ArrayRecord (or a list of NumPy arrays)",
        INITIAL_ARRAYS_KEY
    )]
    NoInitialArrays { client_app: String },
    #[error(
        "num-supernodes = {num_supernodes} is too many for the digits dataset ({rows} training rows); use at most \
         {} SuperNodes, or `dataset = \"synthetic\"` for large federations",
        .rows / 2
    )]
    TooManyForDigits { num_supernodes: u64, rows: u64 },
    #[error("partition {0} does not exist")]
    NoPartition(usize),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error(transparent)]
    Fab(#[from] crate::fab::FabError),
    #[error(transparent)]
    Federation(#[from] crate::federation::Error),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Mods(#[from] crate::mods::ModsError),
    #[error(transparent)]
    Data(#[from] workload::data::Error),
}

/// The module name of built-in components.
pub const MODULE: &str = "floret";
/// Built-in ServerApps.
pub const SERVER_APPS: &[&str] = &["serverapp"];
/// Built-in ClientApps.
pub const CLIENT_APPS: &[&str] = &["logreg", "mlp"];

/// Run-config keys the built-in apps read (besides `strategy.*`, `dp.*`,
/// `mods.*` and the FedAvg keys read by the strategy).
const KNOWN_KEYS: &[&str] = &[
    "seed",
    "num-server-rounds",
    "local-epochs",
    "lr",
    "batch-size",
    "dataset",
    "partitioning",
    "dirichlet-alpha",
    "central-evaluation",
    "mlp.hidden",
    "synthetic.samples-per-node",
    "synthetic.features",
    "synthetic.classes",
    "synthetic.skew",
    "synthetic.noise",
    "synthetic.test-size",
    "fault.fail-partitions",
    "fault.client-failure-rate",
    "fraction-train",
    "fraction-evaluate",
    "min-train-nodes",
    "min-evaluate-nodes",
    "min-available-nodes",
    "weighted-by-key",
    "arrayrecord-key",
    "configrecord-key",
];

/// `floret:<name>` → `Some(name)`.
pub fn builtin_name(component: &str) -> Option<&str> {
    component.strip_prefix(MODULE)?.strip_prefix(':')
}

/// Checks the components: built-in names this build has, or Python code (a
/// Python ServerApp needs a Python ClientApp).
pub fn check_components(server_app: &str, client_app: &str) -> Result<(), BuiltinError> {
    let check = |role: &'static str, component: &str, known: &'static [&'static str]| match builtin_name(component) {
        Some(name) if known.contains(&name) => Ok(()),
        Some(name) => Err(BuiltinError::UnknownComponent {
            role,
            name: name.to_string(),
            known,
        }),
        None => Ok(()),
    };
    check("serverapp", server_app, SERVER_APPS)?;
    check("clientapp", client_app, CLIENT_APPS)?;
    if builtin_name(server_app).is_none() && builtin_name(client_app).is_some() {
        return Err(BuiltinError::PythonServerBuiltinClient {
            server_app: server_app.to_string(),
            client_app: client_app.to_string(),
        });
    }
    Ok(())
}

/// The seed a run configuration asks for, if any: `seed`, an integer from 0
/// to 2^64 − 1, given as a TOML integer or, beyond TOML's integers (≥ 2^63),
/// as a string of digits (`-c seed=N` passes such an N as a string).
pub fn seed_from_config(config: &UserConfig) -> Option<u64> {
    match config.get("seed") {
        Some(Scalar::Int(seed)) if *seed >= 0 => Some(*seed as u64),
        Some(Scalar::Str(seed)) if seed.bytes().all(|b| b.is_ascii_digit()) => seed.parse().ok(),
        _ => None,
    }
}

/// Fuses an app's config with `--run-config` overrides (Flower's rule: every
/// override names an existing key), except that `seed` is accepted even when
/// the app does not declare it: it is a run-level key of floret's runtime.
pub fn fuse_run_config(defaults: &UserConfig, overrides: &UserConfig) -> Result<UserConfig, crate::app::AppError> {
    let mut defaults = defaults.clone();
    if let Some(seed) = overrides.get("seed") {
        defaults.entry("seed".to_string()).or_insert_with(|| seed.clone());
    }
    crate::app::fuse_run_config(&defaults, overrides)
}

/// Everything the built-in apps read from the run configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    pub num_server_rounds: u64,
    pub local_epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub dataset: DatasetChoice,
    pub central_evaluation: bool,
    pub mlp_hidden: usize,
    pub fail_partitions: Vec<i64>,
    pub client_failure_rate: f64,
}

/// The dataset a run trains on.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetChoice {
    Digits(Partitioning),
    Synthetic { spec: SyntheticSpec, test_size: usize },
}

fn wrong_type(key: &str, expected: &'static str, found: &Scalar) -> BuiltinError {
    BuiltinError::WrongType {
        key: key.to_string(),
        expected,
        found: found.clone(),
    }
}

fn get_int(config: &UserConfig, key: &str, default: i64, min: i64) -> Result<i64, BuiltinError> {
    match config.get(key) {
        None => Ok(default),
        Some(Scalar::Int(value)) if *value >= min => Ok(*value),
        Some(Scalar::Int(value)) => Err(BuiltinError::TooSmall {
            key: key.to_string(),
            min,
            value: *value,
        }),
        Some(other) => Err(wrong_type(key, "an integer", other)),
    }
}

fn get_float(config: &UserConfig, key: &str, default: f64) -> Result<f64, BuiltinError> {
    match config.get(key) {
        None => Ok(default),
        Some(Scalar::Float(value)) if value.is_finite() => Ok(*value),
        Some(Scalar::Int(value)) => Ok(*value as f64),
        Some(other) => Err(wrong_type(key, "a number", other)),
    }
}

fn get_str<'a>(config: &'a UserConfig, key: &str, default: &'a str) -> Result<&'a str, BuiltinError> {
    match config.get(key) {
        None => Ok(default),
        Some(Scalar::Str(value)) => Ok(value),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn get_bool(config: &UserConfig, key: &str, default: bool) -> Result<bool, BuiltinError> {
    match config.get(key) {
        None => Ok(default),
        Some(Scalar::Bool(value)) => Ok(*value),
        Some(other) => Err(wrong_type(key, "true or false", other)),
    }
}

fn show(value: &Scalar) -> String {
    match value {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => crate::pyfmt::float_repr(*f),
        Scalar::Str(s) => format!("{:?}", crate::app::clip(s)),
    }
}

impl WorkloadConfig {
    pub fn from_config(config: &UserConfig) -> Result<WorkloadConfig, BuiltinError> {
        if let Some(value) = config.get("seed") {
            if seed_from_config(config).is_none() {
                return Err(BuiltinError::Seed(value.clone()));
            }
        }
        let lr = get_float(config, "lr", 0.1)?;
        if lr <= 0.0 {
            return Err(BuiltinError::Lr(lr));
        }
        let dataset = match get_str(config, "dataset", "digits")? {
            "digits" => DatasetChoice::Digits(match get_str(config, "partitioning", "iid")? {
                "iid" => Partitioning::Iid,
                "dirichlet" => {
                    let alpha = get_float(config, "dirichlet-alpha", 0.5)?;
                    if alpha <= 0.0 {
                        return Err(BuiltinError::DirichletAlpha);
                    }
                    Partitioning::Dirichlet { alpha }
                }
                other => return Err(BuiltinError::Partitioning(other.to_string())),
            }),
            "synthetic" => {
                let spec = SyntheticSpec {
                    samples_per_node: get_int(config, "synthetic.samples-per-node", 40, 1)? as usize,
                    num_features: get_int(config, "synthetic.features", 20, 1)? as usize,
                    num_classes: get_int(config, "synthetic.classes", 10, 2)? as usize,
                    skew: get_float(config, "synthetic.skew", 0.0)?,
                    noise: get_float(config, "synthetic.noise", 1.5)? as f32,
                };
                spec.validate().map_err(BuiltinError::Synthetic)?;
                DatasetChoice::Synthetic {
                    spec,
                    test_size: get_int(config, "synthetic.test-size", 1000, 1)? as usize,
                }
            }
            other => return Err(BuiltinError::Dataset(other.to_string())),
        };
        let fail_partitions = get_str(config, "fault.fail-partitions", "")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().map_err(|_| BuiltinError::FailPartition(s.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let client_failure_rate = get_float(config, "fault.client-failure-rate", 0.0)?;
        if !(0.0..=1.0).contains(&client_failure_rate) {
            return Err(BuiltinError::ClientFailureRate);
        }
        Ok(WorkloadConfig {
            num_server_rounds: get_int(config, "num-server-rounds", 3, 0)? as u64,
            local_epochs: get_int(config, "local-epochs", 1, 1)? as usize,
            lr,
            batch_size: get_int(config, "batch-size", 32, 1)? as usize,
            dataset,
            central_evaluation: get_bool(config, "central-evaluation", true)?,
            mlp_hidden: get_int(config, "mlp.hidden", 32, 1)? as usize,
            fail_partitions,
            client_failure_rate,
        })
    }
}

/// Keys of a run configuration no built-in app reads (likely typos).
pub fn unused_keys(config: &UserConfig) -> Vec<String> {
    config
        .keys()
        .filter(|key| {
            !KNOWN_KEYS.contains(&key.as_str())
                && !key.starts_with("strategy.")
                && !key.starts_with("dp.")
                && !key.starts_with("mods.")
                && !key.starts_with("localdp.")
        })
        .cloned()
        .collect()
}

/// Resolves a run's inputs from what the SuperLink recorded and its FAB.
pub fn resolve_inputs(
    run_id: u64,
    seed: u64,
    fab: &[u8],
    fab_hash: &str,
    overrides: &crate::records::UserConfig,
    federation_options: &ConfigRecord,
) -> Result<Inputs, BuiltinError> {
    let verified = crate::fab::verify_fab(fab, fab_hash)?;
    let run_config = fuse_run_config(&verified.app.config, overrides)?;
    Ok(Inputs {
        run_id,
        seed,
        run_config,
        num_supernodes: num_supernodes(federation_options)?,
        server_app: verified.app.serverapp.clone(),
        client_app: verified.app.clientapp.clone(),
    })
}

/// The run config key that names the app's initial model, for the built-in
/// ServerApp with a Python ClientApp (`"<module>:<attribute>"`).
pub const INITIAL_ARRAYS_KEY: &str = "initial-arrays";

/// Checks, before a run is created, everything that would make it fail at
/// once: components, run configuration, strategy parameters, federation size.
/// (A Python component's interpreter is checked by
/// `bridge::run::check_interpreter`.)
pub fn validate(
    app: &AppConfig,
    run_config: &UserConfig,
    federation_options: &ConfigRecord,
) -> Result<(), BuiltinError> {
    check_components(&app.serverapp, &app.clientapp)?;
    let num_supernodes = num_supernodes(federation_options)?;
    let python_client = builtin_name(&app.clientapp).is_none();
    if python_client {
        if builtin_name(&app.serverapp).is_some() {
            crate::strategy::config::build_strategy(run_config, &mut Logger::new())?;
            crate::mods::build_mods(run_config)?;
            if !matches!(run_config.get(INITIAL_ARRAYS_KEY), Some(Scalar::Str(s)) if !s.is_empty()) {
                return Err(BuiltinError::NoInitialArrays {
                    client_app: app.clientapp.clone(),
                });
            }
        }
        return Ok(());
    }
    let workload = WorkloadConfig::from_config(run_config)?;
    crate::strategy::config::build_strategy(run_config, &mut Logger::new())?;
    crate::mods::build_mods(run_config)?;
    if let DatasetChoice::Digits(_) = workload.dataset {
        let rows = workload::digits().len() as u64 * 4 / 5;
        if num_supernodes > rows / 2 {
            return Err(BuiltinError::TooManyForDigits { num_supernodes, rows });
        }
    }
    Ok(())
}

/// `num-supernodes` of the federation options (Flower 1.27's
/// `options.num-supernodes`), default 10; see [`crate::federation`].
pub fn num_supernodes(options: &ConfigRecord) -> Result<u64, crate::federation::Error> {
    crate::federation::num_supernodes(options)
}

/// Worker threads for ClientApps: the CPUs the backend may use divided by the
/// CPUs one ClientApp asks for (`backend.client-resources.num-cpus`), as
/// Ray's actor pool is sized. The CPUs default to the machine's
/// (`backend.init-args.num-cpus` overrides).
pub fn worker_threads(options: &ConfigRecord) -> usize {
    let number = |key: &str| match options.get(key) {
        Some(ConfigValue::Int(n)) => Some(*n as f64),
        Some(ConfigValue::Float(f)) => Some(*f),
        _ => None,
    };
    let machine = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let total = number("backend.init-args.num-cpus")
        .filter(|n| *n >= 1.0)
        .unwrap_or(machine);
    let per_client = number("backend.client-resources.num-cpus")
        .filter(|n| *n > 0.0)
        .unwrap_or(1.0);
    ((total / per_client).floor() as usize).max(1)
}

/// The model and data of a run, shared by its ServerApp and ClientApps.
pub struct Workload {
    pub config: WorkloadConfig,
    pub model: Model,
    data: Data,
    seed: u64,
}

enum Data {
    Digits(workload::FederatedData),
    Synthetic { spec: SyntheticSpec, test: Dataset },
}

impl Workload {
    pub fn new(inputs: &Inputs) -> Result<Workload, BuiltinError> {
        let config = WorkloadConfig::from_config(&inputs.run_config)?;
        let data = match &config.dataset {
            DatasetChoice::Digits(partitioning) => Data::Digits(workload::federated_digits(
                inputs.num_supernodes as usize,
                *partitioning,
                inputs.seed,
            )?),
            DatasetChoice::Synthetic { spec, test_size } => Data::Synthetic {
                spec: spec.clone(),
                test: workload::synthetic_test_set(spec, inputs.seed, *test_size),
            },
        };
        let (features, classes) = match &data {
            Data::Digits(federated) => (federated.test.num_features, federated.test.num_classes),
            Data::Synthetic { spec, .. } => (spec.num_features, spec.num_classes),
        };
        let kind = match builtin_name(&inputs.client_app) {
            Some("mlp") => ModelKind::Mlp {
                hidden: config.mlp_hidden,
            },
            _ => ModelKind::LogReg,
        };
        Ok(Workload {
            model: Model::new(kind, features, classes),
            data,
            config,
            seed: inputs.seed,
        })
    }

    /// The central (server-side) test set.
    pub fn test_set(&self) -> &Dataset {
        match &self.data {
            Data::Digits(federated) => &federated.test,
            Data::Synthetic { test, .. } => test,
        }
    }

    /// A partition's train or test data.
    fn partition(&self, partition_id: usize, train: bool) -> Result<std::borrow::Cow<'_, Dataset>, BuiltinError> {
        match &self.data {
            Data::Digits(federated) => {
                let partition = federated
                    .partitions
                    .get(partition_id)
                    .ok_or(BuiltinError::NoPartition(partition_id))?;
                Ok(std::borrow::Cow::Borrowed(if train {
                    &partition.train
                } else {
                    &partition.test
                }))
            }
            Data::Synthetic { spec, .. } => {
                let data = workload::synthetic_partition(spec, self.seed, partition_id as u64);
                // The last fifth of a node's samples is its local test set.
                let n = data.len();
                let (train_rows, test_rows) = workload::train_test_split(&(0..n).collect::<Vec<_>>(), 0.2);
                Ok(std::borrow::Cow::Owned(data.subset(if train {
                    &train_rows
                } else {
                    &test_rows
                })))
            }
        }
    }
}

/// Builds the apps of a run from its components.
pub fn build(inputs: &Inputs, log: &mut Logger) -> Result<Apps, BuiltinError> {
    check_components(&inputs.server_app, &inputs.client_app)?;
    let workload = Arc::new(Workload::new(inputs)?);
    for key in unused_keys(&inputs.run_config) {
        log.warning(format!("Run config key `{key}` is not used by the built-in apps."));
    }
    let inner = crate::strategy::config::build_strategy(&inputs.run_config, log)?;
    let strategy = Box::new(RequireResults::new(inner, &inputs.run_config));
    let mods = crate::mods::build_mods(&inputs.run_config)?;
    let client = with_mods(
        Arc::new(BuiltinClient {
            workload: Arc::clone(&workload),
        }),
        mods,
    );
    let initial = workload
        .model
        .init(&mut Prng::stream(workload.seed, &[purpose::MODEL_INIT]));
    let mut train_config = ConfigRecord::new();
    train_config.insert("lr", ConfigValue::Float(workload.config.lr));
    Ok(Apps {
        server: Box::new(BuiltinServer {
            strategy,
            num_rounds: workload.config.num_server_rounds,
            train_config,
            evaluate_config: ConfigRecord::new(),
            initial,
            central: workload.config.central_evaluation.then_some(workload),
        }),
        client,
    })
}

/// The built-in ServerApp driving another ClientApp (a Python one), starting
/// from `initial`: Flower's strategy loop with the run config's strategy and
/// `num-server-rounds` (default 3). The ConfigRecords it sends are the run
/// config's `train.*` and `evaluate.*` keys, prefix removed (`train.lr =
/// 0.1` sends `{"lr": 0.1}` with every train message); without `train.*`
/// keys, the train ConfigRecord carries `lr` when the run config has one, as
/// for the built-in ClientApps. There is no central evaluation (the model is
/// the ClientApp's).
pub fn build_for_client(
    inputs: &Inputs,
    initial: ArrayRecord,
    client: Arc<dyn ClientApp>,
    log: &mut Logger,
) -> Result<Apps, BuiltinError> {
    let mods = crate::mods::build_mods(&inputs.run_config)?;
    Ok(Apps {
        server: server_for_client(inputs, initial, log)?,
        client: with_mods(client, mods),
    })
}

/// The built-in ServerApp of [`build_for_client`] alone, for a ClientApp
/// that runs elsewhere (on SuperNodes, which apply their own mods).
pub fn server_for_client(
    inputs: &Inputs,
    initial: ArrayRecord,
    log: &mut Logger,
) -> Result<Box<dyn crate::sim::ServerApp>, BuiltinError> {
    let config = &inputs.run_config;
    let inner = crate::strategy::config::build_strategy(config, log)?;
    let strategy = Box::new(RequireResults::new(inner, config));
    let mut train_config = prefixed_config(config, "train.");
    if train_config.is_empty() {
        match config.get("lr") {
            Some(Scalar::Float(lr)) => train_config.insert("lr", ConfigValue::Float(*lr)),
            Some(Scalar::Int(lr)) => train_config.insert("lr", ConfigValue::Float(*lr as f64)),
            _ => {}
        }
    }
    Ok(Box::new(BuiltinServer {
        strategy,
        num_rounds: get_int(config, "num-server-rounds", 3, 0)? as u64,
        train_config,
        evaluate_config: prefixed_config(config, "evaluate."),
        initial,
        central: None,
    }))
}

/// The run config's `<prefix><key>` values as a ConfigRecord of `<key>`s.
fn prefixed_config(config: &UserConfig, prefix: &str) -> ConfigRecord {
    let mut record = ConfigRecord::new();
    for (key, value) in config {
        if let Some(name) = key.strip_prefix(prefix) {
            let value = match value {
                Scalar::Bool(b) => ConfigValue::Bool(*b),
                Scalar::Int(i) => ConfigValue::Int(*i),
                Scalar::Float(f) => ConfigValue::Float(*f),
                Scalar::Str(s) => ConfigValue::Str(s.clone()),
            };
            record.insert(name, value);
        }
    }
    record
}

fn with_mods(client: Arc<dyn ClientApp>, mods: Vec<Box<dyn crate::clientapp::Mod>>) -> Arc<dyn ClientApp> {
    if mods.is_empty() {
        client
    } else {
        Arc::new(crate::clientapp::WithMods { app: client, mods })
    }
}

/// The built-in ServerApp's rule on failures: a phase that gets fewer
/// successful replies than its minimum number of nodes (`min-train-nodes`,
/// `min-evaluate-nodes`) ends the run as failed, saying which nodes failed
/// and why. (Flower's strategies carry on with whatever came back, even
/// nothing.)
pub struct RequireResults {
    inner: Box<dyn Strategy>,
    min_train: usize,
    min_evaluate: usize,
}

impl RequireResults {
    pub fn new(inner: Box<dyn Strategy>, config: &UserConfig) -> RequireResults {
        let minimum = |fraction: &str, min: &str| {
            let fraction = get_float(config, fraction, 1.0).unwrap_or(1.0);
            if fraction == 0.0 {
                0
            } else {
                get_int(config, min, 2, 0).unwrap_or(2) as usize
            }
        };
        RequireResults {
            inner,
            min_train: minimum("fraction-train", "min-train-nodes"),
            min_evaluate: minimum("fraction-evaluate", "min-evaluate-nodes"),
        }
    }

    fn check(round: u64, phase: &str, replies: &[Message], minimum: usize) -> Result<(), StrategyError> {
        let results = replies.iter().filter(|r| r.content().is_some()).count();
        if replies.is_empty() || results >= minimum {
            return Ok(());
        }
        let failures: Vec<String> = replies
            .iter()
            .filter_map(|r| {
                r.error()
                    .map(|e| format!("node {}: {}", r.metadata.src_node_id, e.reason))
            })
            .take(3)
            .collect();
        let more = replies.len() - results - failures.len();
        let more = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        Err(StrategyError::Aggregation(format!(
            "Round {round} ({phase}): only {results} of {} sampled nodes returned results, fewer than \
             min-{phase}-nodes = {minimum}. Failures: {}{more}",
            replies.len(),
            failures.join("; ")
        )))
    }
}

impl Strategy for RequireResults {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn summary(&self, log: &mut Logger) {
        self.inner.summary(log)
    }

    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn crate::strategy::Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        self.inner.configure_train(round, arrays, config, grid, log)
    }

    fn aggregate_train(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        let aggregated = self.inner.aggregate_train(round, replies, log)?;
        RequireResults::check(round, "train", replies, self.min_train)?;
        Ok(aggregated)
    }

    fn configure_evaluate(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn crate::strategy::Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        self.inner.configure_evaluate(round, arrays, config, grid, log)
    }

    fn aggregate_evaluate(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<Option<MetricRecord>, StrategyError> {
        let aggregated = self.inner.aggregate_evaluate(round, replies, log)?;
        RequireResults::check(round, "evaluate", replies, self.min_evaluate)?;
        Ok(aggregated)
    }
}

/// Flower's `ServerApp` with `strategy.start()`.
struct BuiltinServer {
    strategy: Box<dyn Strategy>,
    num_rounds: u64,
    train_config: ConfigRecord,
    evaluate_config: ConfigRecord,
    initial: ArrayRecord,
    /// Central evaluation on the built-in workload's test set.
    central: Option<Arc<Workload>>,
}

impl ServerApp for BuiltinServer {
    fn strategy_name(&self) -> String {
        self.strategy.name()
    }

    fn num_rounds(&self) -> u64 {
        self.num_rounds
    }

    fn run(&mut self, driver: &mut dyn Driver, log: &mut Logger) -> Result<start::RunResult, Box<Incomplete>> {
        let config = StartConfig {
            num_rounds: self.num_rounds,
            train_config: self.train_config.clone(),
            evaluate_config: self.evaluate_config.clone(),
        };
        let central = self.central.clone();
        let mut evaluate = |_round: u64, arrays: &ArrayRecord| -> Option<MetricRecord> {
            let workload = central.as_ref()?;
            let evaluation = workload.model.evaluate(&as_float32(arrays), workload.test_set()).ok()?;
            let mut metrics = MetricRecord::new();
            metrics.insert("central_loss", MetricValue::Float(evaluation.loss));
            metrics.insert("central_acc", MetricValue::Float(evaluation.accuracy));
            Some(metrics)
        };
        let evaluate_fn: Option<&mut start::EvaluateFn<'_>> = if self.central.is_some() {
            Some(&mut evaluate)
        } else {
            None
        };
        start::start(
            self.strategy.as_mut(),
            driver,
            self.initial.clone(),
            config,
            evaluate_fn,
            log,
        )
    }
}

/// The built-in ClientApp: trains and evaluates the run's model on the
/// node's partition.
struct BuiltinClient {
    workload: Arc<Workload>,
}

/// The arrays as float32, the models' dtype. Strategies that compute in
/// float64 (FedAdam, QFedAvg, as numpy promotes) send float64 arrays; the
/// built-in apps cast them, as a PyTorch app's `torch.tensor(...).float()`.
fn as_float32(arrays: &ArrayRecord) -> std::borrow::Cow<'_, ArrayRecord> {
    use crate::records::{Array, Values};
    if arrays.values().all(|a| matches!(a.values, Values::F32(_))) {
        return std::borrow::Cow::Borrowed(arrays);
    }
    std::borrow::Cow::Owned(
        arrays
            .iter()
            .map(|(k, a)| {
                let values = match &a.values {
                    Values::F32(v) => v.clone(),
                    other => other.to_f64_vec().into_iter().map(|x| x as f32).collect(),
                };
                (k.to_string(), Array::from_f32(a.shape.clone(), values))
            })
            .collect(),
    )
}

fn app_error(reason: impl Into<String>) -> Error {
    Error {
        code: error_code::CLIENT_APP_RAISED_EXCEPTION,
        reason: reason.into(),
    }
}

impl BuiltinClient {
    fn train(&self, content: &RecordDict, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        let workload = &self.workload;
        let arrays = content
            .array_records()
            .next()
            .map(|(_, a)| a)
            .ok_or_else(|| app_error("no ArrayRecord in the train message"))?;
        let config = content.config_records().next().map(|(_, c)| c);
        let number = |key: &str| match config.and_then(|c| c.get(key)) {
            Some(ConfigValue::Float(f)) => Some(*f),
            Some(ConfigValue::Int(i)) => Some(*i as f64),
            _ => None,
        };
        let partition_id = partition_id(context)?;
        let data = workload
            .partition(partition_id, true)
            .map_err(|e| app_error(e.to_string()))?;
        let options = TrainOptions {
            epochs: workload.config.local_epochs,
            learning_rate: number("lr").unwrap_or(workload.config.lr) as f32,
            batch_size: workload.config.batch_size,
            proximal_mu: number("proximal-mu").unwrap_or(0.0) as f32,
        };
        let (new_arrays, loss) = workload
            .model
            .train(&as_float32(arrays), &data, &options, &mut env.prng)
            .map_err(|e| app_error(e.to_string()))?;
        count_in_state(&mut context.state, "rounds-trained");
        let mut metrics = MetricRecord::new();
        metrics.insert("train_loss", MetricValue::Float(loss));
        metrics.insert("num-examples", MetricValue::Int(data.len() as i64));
        let mut reply = RecordDict::new();
        reply.insert("arrays", Record::Arrays(new_arrays));
        reply.insert("metrics", Record::Metrics(metrics));
        Ok(reply)
    }

    fn evaluate(&self, content: &RecordDict, context: &mut Context) -> Result<RecordDict, Error> {
        let arrays = content
            .array_records()
            .next()
            .map(|(_, a)| a)
            .ok_or_else(|| app_error("no ArrayRecord in the evaluate message"))?;
        let data = self
            .workload
            .partition(partition_id(context)?, false)
            .map_err(|e| app_error(e.to_string()))?;
        let evaluation = self
            .workload
            .model
            .evaluate(&as_float32(arrays), &data)
            .map_err(|e| app_error(e.to_string()))?;
        let mut metrics = MetricRecord::new();
        metrics.insert("eval_loss", MetricValue::Float(evaluation.loss));
        metrics.insert("eval_acc", MetricValue::Float(evaluation.accuracy));
        metrics.insert("num-examples", MetricValue::Int(evaluation.num_examples as i64));
        let mut reply = RecordDict::new();
        reply.insert("metrics", Record::Metrics(metrics));
        Ok(reply)
    }
}

fn partition_id(context: &Context) -> Result<usize, Error> {
    match context.node_config.get("partition-id") {
        Some(Scalar::Int(id)) if *id >= 0 => Ok(*id as usize),
        _ => Err(app_error("the node has no partition-id in its node_config")),
    }
}

/// Counts calls in the node's persistent state (`Context.state`).
fn count_in_state(state: &mut RecordDict, key: &str) -> i64 {
    let mut record = match state.get("floret.client") {
        Some(Record::Metrics(record)) => record.clone(),
        _ => MetricRecord::new(),
    };
    let count = match record.get(key) {
        Some(MetricValue::Int(n)) => n + 1,
        _ => 1,
    };
    record.insert(key, MetricValue::Int(count));
    state.insert("floret.client", Record::Metrics(record));
    count
}

impl ClientApp for BuiltinClient {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        let content = message
            .content()
            .ok_or_else(|| app_error("the message carries an error, not content"))?;
        let category = message.metadata.message_type.split('.').next().unwrap_or("");
        let config = &self.workload.config;
        if category == "train" {
            let partition = partition_id(context)? as i64;
            if config.fail_partitions.contains(&partition) {
                return Err(app_error(format!(
                    "ClientApp of partition {partition} failed on purpose (fault.fail-partitions)"
                )));
            }
            if config.client_failure_rate > 0.0 && env.prng.unit_f64() < config.client_failure_rate {
                return Err(app_error("ClientApp failed on purpose (fault.client-failure-rate)"));
            }
        }
        match category {
            "train" => self.train(content, context, env),
            "evaluate" => self.evaluate(content, context),
            other => Err(app_error(format!("No {other} function registered with name 'default'"))),
        }
    }
}

/// `docs/STRATEGIES.md`: the strategies, the DP wrappers and the client mods
/// with every key, type and default, rendered from the tables the code reads.
/// The "From Rust" section of docs/STRATEGIES.md. Its code blocks are
/// doctests (`strategy::StrategiesGuide`), so the example compiles and runs
/// with every `cargo test`, with or without default features.
const STRATEGIES_FROM_RUST: &str = r#"
## From Rust

The strategies are a library too. With `default-features = false` the crate
is records, strategies, mods and the deterministic engine, without the
SuperLink's tokio, tonic, SQLite and clap:

```toml
[dependencies]
floret = { git = "…", default-features = false }
```

A `SeededGrid` samples nodes as a simulation of the same seed does; the
parameters are builders; a `Logger` collects Flower's log lines. Aggregating
three replies with FedAdam:

```rust
use floret::flwr_log::Logger;
use floret::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, MetricValue, Record, RecordDict};
use floret::strategy::fedopt::{FedAdam, FedOptParams};
use floret::strategy::{FedAvgParams, SeededGrid, Strategy};

let mut log = Logger::new();
let params = FedAvgParams::default().min_train_nodes(3).min_available_nodes(3);
let mut strategy = FedAdam::new(params, FedOptParams::fedadam().eta(0.05).tau(1e-9), &mut log);
let grid = SeededGrid::new(42, [11, 12, 13]);

// Round 1: one instruction per sampled node, carrying the global model.
let mut global = ArrayRecord::new();
global.insert("w", Array::from_f32(vec![2], vec![0.0, 0.0]));
let instructions = strategy.configure_train(1, &global, &mut ConfigRecord::new(), &grid, &mut log)?;
assert_eq!(instructions.len(), 3);

// Each node answers with its arrays and its number of examples.
let replies: Vec<Message> = instructions
    .iter()
    .enumerate()
    .map(|(i, instruction)| {
        let mut arrays = ArrayRecord::new();
        arrays.insert("w", Array::from_f32(vec![2], vec![1.0 + i as f32, -1.0]));
        let mut metrics = MetricRecord::new();
        metrics.insert("num-examples", MetricValue::Int(10 * (i as i64 + 1)));
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays));
        content.insert("metrics", Record::Metrics(metrics));
        Message::reply(instruction, Ok(content))
    })
    .collect();

let (arrays, _metrics) = strategy.aggregate_train(1, &replies, &mut log)?;
// Adam's first step moves each coordinate by at most eta, towards the
// weighted average of the replies (2.33 and -1).
let w = arrays.expect("three replies aggregate").get("w").unwrap().values.to_f64_vec();
assert!(w[0] > 0.0 && w[0] <= 0.05 && w[1] == -w[0], "{w:?}");
for (_level, line) in log.lines() {
    println!("{line}"); // "aggregate_train: Received 3 results and 0 failures", ...
}
# Ok::<(), floret::strategy::StrategyError>(())
```

Flower's callable hooks have Rust equivalents: `train_metrics_aggr` and
`evaluate_metrics_aggr` on `FedAvgParams` (Flower's `train_metrics_aggr_fn`,
`evaluate_metrics_aggr_fn`), and Bulyan's `selection_rule`:

```rust
use floret::flwr_log::Logger;
use floret::records::{MetricRecord, MetricValue, RecordDict};
use floret::strategy::bulyan::{Bulyan, SelectionRule};
use floret::strategy::FedAvgParams;

let count = |contents: &[&RecordDict], _weighted_by: &str| {
    let mut metrics = MetricRecord::new();
    metrics.insert("replies", MetricValue::Int(contents.len() as i64));
    metrics
};
let params = FedAvgParams::default().train_metrics_aggr(count);
// Keep the first `k` replies (Flower's rule gets the same three arguments).
let first = SelectionRule::new("select_first", |contents, _f, k| Ok((0..k.min(contents.len())).collect()));
let bulyan = Bulyan::new(params, 1, &mut Logger::new()).selection_rule(first);
assert_eq!(bulyan.selection_rule.name, "select_first");
```

A scripted run is `sim::simulate` with `sim::Inputs` and the apps in `sim::Apps`
(see `builtin::resolve_inputs` for how `floret:serverapp` builds them).
"#;

pub fn strategies_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Strategies, DP wrappers and client mods\n\n");
    out.push_str("Generated from `strategy::config::describe()` and `mods::describe()`; do not edit by hand.\n\n");
    out.push_str("## Choosing a strategy\n\n");
    out.push_str("`strategy.name` (default `FedAvg`) is one of: ");
    out.push_str(
        &crate::strategy::config::strategy_names()
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(".\n\nExample (`pyproject.toml`):\n\n```toml\n[tool.flwr.app.config]\n");
    out.push_str("fraction-train = 0.5\nstrategy.name = \"FedAdam\"\nstrategy.eta = 0.05\n");
    out.push_str("dp.mode = \"client-fixed\"\ndp.noise-multiplier = 1.0\ndp.clipping-norm = 1.0\n");
    out.push_str("dp.num-sampled-clients = 5\nmods.train = \"fixedclipping\"\n```\n");
    out.push_str(STRATEGIES_FROM_RUST);
    out.push_str("\n## Base parameters (every strategy)\n\n");
    let params = crate::strategy::config::describe();
    let base: Vec<&crate::params::ParamDoc> = params.iter().filter(|d| d.applies_to == ["*"]).collect();
    crate::params::markdown_table(&mut out, &base, false);
    for name in crate::strategy::config::strategy_names() {
        let own: Vec<&crate::params::ParamDoc> = params.iter().filter(|d| d.applies_to.contains(name)).collect();
        out.push_str(&format!("\n## {name}\n\n"));
        if own.is_empty() {
            out.push_str("No parameters besides the base ones.\n");
        } else {
            crate::params::markdown_table(&mut out, &own, false);
        }
    }
    out.push_str("\n## Differential privacy (`dp.*`)\n\n");
    for (mode, class) in crate::strategy::config::dp_mode_classes() {
        out.push_str(&format!("- `dp.mode = \"{mode}\"`: Flower's `{class}`\n"));
    }
    out.push('\n');
    let dp: Vec<&crate::params::ParamDoc> = params.iter().filter(|d| d.key.starts_with("dp.")).collect();
    crate::params::markdown_table(&mut out, &dp, true);
    out.push_str("\n## Client mods (`mods.*`)\n\n");
    out.push_str("Each list applies to its message type only, outermost first. ");
    out.push_str("`dp.mode = \"client-fixed\"` needs `fixedclipping` in `mods.train`, ");
    out.push_str("`dp.mode = \"client-adaptive\"` needs `adaptiveclipping`.\n\n");
    for (name, flower) in crate::mods::FLOWER_MODS {
        out.push_str(&format!("- `{name}`: Flower's `{flower}`\n"));
    }
    out.push('\n');
    let mods = crate::mods::describe();
    crate::params::markdown_table(&mut out, &mods.iter().collect::<Vec<_>>(), false);
    out
}
