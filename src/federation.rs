//! Federation options: the simulated federation a run gets (Flower 1.27's
//! `federation_options`, from a profile's `options.*`, an app's
//! `[tool.floret.options]` and `flwr run --federation-config`), their types
//! and ranges, and the largest federation floret can simulate on this
//! machine.
//!
//! The CLI (before it submits) and the SuperLink's StartRun (before it records
//! anything) both call `validate`, whatever the apps are (built-in or
//! Python), so that a run that cannot run is refused with the reason and the
//! limit, never started to exhaust the machine.
//!
//! It never interprets the run configuration (only its size counts: every
//! node's Context holds a copy) and does no I/O besides reading the machine's
//! memory size.

use crate::records::{ConfigRecord, ConfigValue, Scalar, UserConfig};

/// The default federation size of Flower 1.27's local profile.
const DEFAULT_NUM_SUPERNODES: u64 = 10;

/// What one virtual SuperNode costs in the app process, whatever it does:
/// its Context (node config, empty state), its id in the sampling
/// structures and in the `NodesRegistered` event. Measured with the
/// built-in apps (docs/APPS.md, "How large a federation").
const NODE_BYTES: u64 = 1024;
/// Per run-config entry, plus its key and string value: the copy of the run
/// configuration in every node's Context.
const RUN_CONFIG_ENTRY_BYTES: u64 = 100;
/// A node's state and its reply while a round holds it (the built-in apps
/// with every node sampled).
const SAMPLED_NODE_BYTES: u64 = 4608;
/// The share of the machine's memory one run may take.
const MEMORY_SHARE: u64 = 2;
/// Every node id is recorded in one `NodesRegistered` event (9 bytes each),
/// which must fit in one 64 MiB message to the SuperLink.
const MAX_SUPERNODES: u64 = 7_000_000;
/// `backend.init-args.num-cpus`: one worker thread per CPU.
const MAX_CPUS: i64 = 1024;

/// The type a federation option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    /// An int or a float.
    Number,
    Bool,
    Str,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Str => "str",
        }
    }
}

/// The options `--federation-config` and `[tool.floret.options]` may set.
const KEYS: &[(&str, Kind)] = &[
    ("num-supernodes", Kind::Int),
    ("verbose", Kind::Bool),
    ("backend.name", Kind::Str),
    ("backend.client-resources.num-cpus", Kind::Number),
    ("backend.client-resources.num-gpus", Kind::Number),
    ("backend.init-args.num-cpus", Kind::Int),
    ("backend.init-args.num-gpus", Kind::Int),
    ("backend.init-args.logging-level", Kind::Str),
    ("backend.init-args.log-to-driver", Kind::Bool),
    // floret: the Python interpreter of a run with Python components.
    ("python", Kind::Str),
];

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A key that is not a simulation option (Flower 1.42's text).
    #[error("Unknown simulation config field(s): {key}. Known fields: {known}.")]
    UnknownKey { key: String, known: String },
    /// A value of the wrong type.
    #[error("{source_name} {key} must be of type {kind}, found {found}")]
    WrongType {
        source_name: String,
        key: String,
        kind: &'static str,
        found: String,
    },
    /// A value no simulation can run with.
    #[error("{key} = {value} cannot run: {reason}")]
    OutOfRange {
        key: &'static str,
        value: String,
        reason: String,
    },
    /// More nodes than this machine's memory holds.
    #[error(
        "num-supernodes = {requested} is more than floret can simulate on this machine (at most {max}: \
         each node costs ~{node_cost} in the app process with this run configuration, and a run may use \
         half of the machine's {memory}); use fewer SuperNodes"
    )]
    TooManyForMemory {
        requested: u64,
        max: u64,
        node_cost: String,
        memory: String,
    },
    /// More nodes than one run can record.
    #[error(
        "num-supernodes = {requested} is more than floret can simulate (at most {MAX_SUPERNODES}: every node id \
         is recorded in one event, which must fit in one 64 MiB message); use fewer SuperNodes"
    )]
    TooManyForOneEvent { requested: u64 },
}

/// `num-supernodes` (default 10): a positive integer.
pub fn num_supernodes(options: &ConfigRecord) -> Result<u64, Error> {
    match options.get("num-supernodes") {
        None => Ok(DEFAULT_NUM_SUPERNODES),
        Some(ConfigValue::Int(n)) if *n >= 1 => Ok(*n as u64),
        Some(ConfigValue::Int(n)) => Err(Error::OutOfRange {
            key: "num-supernodes",
            value: n.to_string(),
            reason: "a federation needs at least 1 SuperNode".into(),
        }),
        Some(other) => Err(wrong_type("federation options", "num-supernodes", Kind::Int, other)),
    }
}

fn wrong_type(source_name: &str, key: &str, kind: Kind, found: &ConfigValue) -> Error {
    let found = match found {
        ConfigValue::Int(i) => format!("int {i}"),
        ConfigValue::Float(f) => format!("float {}", crate::pyfmt::float_repr(*f)),
        ConfigValue::Bool(b) => format!("bool {b}"),
        ConfigValue::Str(s) => format!("str {:?}", crate::app::clip(s)),
        ConfigValue::Bytes(_) => "bytes".to_string(),
        _ => "a list".to_string(),
    };
    Error::WrongType {
        source_name: source_name.to_string(),
        key: crate::app::clip(key),
        kind: kind.name(),
        found,
    }
}

/// Checks the options' values, whatever the machine: `num-supernodes` at
/// least 1 and at most `MAX_SUPERNODES`, CPU counts positive. Options
/// floret does not know are left alone (a profile may carry Ray's).
pub(crate) fn check_values(options: &ConfigRecord) -> Result<(), Error> {
    let requested = num_supernodes(options)?;
    if requested > MAX_SUPERNODES {
        return Err(Error::TooManyForOneEvent { requested });
    }
    match options.get("backend.init-args.num-cpus") {
        None => {}
        Some(ConfigValue::Int(n)) if (1..=MAX_CPUS).contains(n) => {}
        Some(ConfigValue::Int(n)) => {
            return Err(Error::OutOfRange {
                key: "backend.init-args.num-cpus",
                value: n.to_string(),
                reason: format!(
                    "the simulation needs at least 1 CPU, and runs one worker thread per CPU (at most {MAX_CPUS}); \
                     leave it out to use the machine's CPUs"
                ),
            })
        }
        Some(other) => {
            return Err(wrong_type(
                "federation options",
                "backend.init-args.num-cpus",
                Kind::Int,
                other,
            ))
        }
    }
    let (per_client, shown) = match options.get("backend.client-resources.num-cpus") {
        None => return Ok(()),
        Some(ConfigValue::Int(n)) => (*n as f64, n.to_string()),
        Some(ConfigValue::Float(f)) => (*f, crate::pyfmt::float_repr(*f)),
        Some(other) => {
            return Err(wrong_type(
                "federation options",
                "backend.client-resources.num-cpus",
                Kind::Number,
                other,
            ))
        }
    };
    if !(per_client > 0.0 && per_client.is_finite()) {
        return Err(Error::OutOfRange {
            key: "backend.client-resources.num-cpus",
            value: shown,
            reason: "a ClientApp call needs a positive number of CPUs (e.g. 1 or 0.5)".into(),
        });
    }
    Ok(())
}

/// What one node is estimated to cost in the app process with `run_config`,
/// in bytes (see the constants above).
fn node_cost(run_config: &UserConfig) -> u64 {
    let copy: u64 = run_config
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Scalar::Str(s) => s.len() as u64,
                _ => 0,
            };
            RUN_CONFIG_ENTRY_BYTES + key.len() as u64 + text
        })
        .sum();
    NODE_BYTES + SAMPLED_NODE_BYTES + copy
}

/// The largest federation a machine with `memory` bytes can simulate with
/// `run_config`: half the memory divided by what one node costs, and at most
/// `MAX_SUPERNODES`.
pub fn max_supernodes(run_config: &UserConfig, memory: u64) -> u64 {
    (memory / MEMORY_SHARE / node_cost(run_config)).min(MAX_SUPERNODES)
}

/// Checks that a machine with `memory` bytes can hold the federation.
pub(crate) fn check_capacity(options: &ConfigRecord, run_config: &UserConfig, memory: u64) -> Result<(), Error> {
    let requested = num_supernodes(options)?;
    let max = max_supernodes(run_config, memory);
    if requested > max {
        return Err(Error::TooManyForMemory {
            requested,
            max,
            node_cost: human_bytes(node_cost(run_config)),
            memory: human_bytes(memory),
        });
    }
    Ok(())
}

/// Everything: [`check_values`], then [`check_capacity`] with this
/// machine's memory (when it can be read).
pub(crate) fn validate(options: &ConfigRecord, run_config: &UserConfig) -> Result<(), Error> {
    check_values(options)?;
    match machine_memory() {
        Some(memory) => check_capacity(options, run_config, memory),
        None => Ok(()),
    }
}

/// The memory of this machine, or of the cgroup this process runs in when
/// that is smaller.
pub fn machine_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let physical = (pages > 0 && page_size > 0).then(|| pages as u64 * page_size as u64);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|text| text.trim().parse::<u64>().ok())
    .min();
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// `6.3 KiB`, `11.8 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Sets typed options from `key=value` pairs (`--federation-config`, or an
/// app's `[tool.floret.options]`); `source_name` names them in errors.
pub fn apply(options: &mut ConfigRecord, pairs: &UserConfig, source_name: &str) -> Result<(), Error> {
    for (key, value) in pairs {
        let Some((_, kind)) = KEYS.iter().find(|(k, _)| k == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(Error::UnknownKey {
                key: crate::app::clip(key),
                known: known.join(", "),
            });
        };
        let converted = match (kind, value) {
            (Kind::Int | Kind::Number, Scalar::Int(i)) => ConfigValue::Int(*i),
            (Kind::Number, Scalar::Float(f)) => ConfigValue::Float(*f),
            (Kind::Bool, Scalar::Bool(b)) => ConfigValue::Bool(*b),
            (Kind::Str, Scalar::Str(s)) => ConfigValue::Str(s.clone()),
            _ => return Err(wrong_type(source_name, key, *kind, &scalar_value(value))),
        };
        options.insert(key.clone(), converted);
    }
    Ok(())
}

fn scalar_value(value: &Scalar) -> ConfigValue {
    match value {
        Scalar::Bool(b) => ConfigValue::Bool(*b),
        Scalar::Int(i) => ConfigValue::Int(*i),
        Scalar::Float(f) => ConfigValue::Float(*f),
        Scalar::Str(s) => ConfigValue::Str(s.clone()),
    }
}

/// The app's own federation options: `[tool.floret.options]` of its
/// `pyproject.toml` (floret's; Flower ignores the table), flattened.
pub(crate) fn app_options(document: &toml::Table) -> Result<UserConfig, crate::app::AppError> {
    match document
        .get("tool")
        .and_then(|t| t.get("floret"))
        .and_then(|t| t.get("options"))
    {
        Some(toml::Value::Table(table)) => crate::app::flatten_table(table),
        Some(_) => Err(crate::app::AppError::Invalid {
            path: crate::app::PYPROJECT.to_string(),
            errors: vec!["[tool.floret.options] must be a table".into()],
        }),
        None => Ok(UserConfig::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, ConfigValue)]) -> ConfigRecord {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn quickstart_config() -> UserConfig {
        let text = include_str!("../examples/quickstart/pyproject.toml");
        crate::app::parse_pyproject(text).unwrap().0.config
    }

    #[test]
    fn cpu_counts_must_be_positive() {
        for n in [0, -1, MAX_CPUS + 1] {
            let error = check_values(&options(&[("backend.init-args.num-cpus", ConfigValue::Int(n))])).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("backend.init-args.num-cpus = {n} cannot run: ")),
                "{message}"
            );
        }
        check_values(&options(&[("backend.init-args.num-cpus", ConfigValue::Int(4))])).unwrap();
        for bad in [0.0, -0.5, f64::NAN] {
            let error = check_values(&options(&[(
                "backend.client-resources.num-cpus",
                ConfigValue::Float(bad),
            )]))
            .unwrap_err();
            assert!(matches!(error, Error::OutOfRange { .. }), "{error}");
        }
        check_values(&options(&[(
            "backend.client-resources.num-cpus",
            ConfigValue::Float(0.5),
        )]))
        .unwrap();
        let error = check_values(&options(&[("backend.init-args.num-cpus", ConfigValue::Float(1.5))])).unwrap_err();
        assert!(error.to_string().contains("must be of type int"), "{error}");
    }

    #[test]
    fn num_supernodes_is_positive_and_bounded() {
        assert_eq!(num_supernodes(&ConfigRecord::new()), Ok(10));
        for n in [0, -3] {
            let error = check_values(&options(&[("num-supernodes", ConfigValue::Int(n))])).unwrap_err();
            assert!(error
                .to_string()
                .starts_with(&format!("num-supernodes = {n} cannot run")));
        }
        let error = check_values(&options(&[("num-supernodes", ConfigValue::Int(1_000_000_000))])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "num-supernodes = 1000000000 is more than floret can simulate (at most 7000000: every node id is \
             recorded in one event, which must fit in one 64 MiB message); use fewer SuperNodes"
        );
    }

    #[test]
    fn the_limit_follows_memory_and_the_run_config() {
        let config = quickstart_config();
        let cost = node_cost(&config);
        // The measured ~1.6 KiB standing cost plus a sampled node's state and reply.
        assert!((6_000..7_000).contains(&cost), "{cost}");
        let gib = 1u64 << 30;
        let on_8_gib = max_supernodes(&config, 8 * gib);
        assert_eq!(on_8_gib, 4 * gib / cost);
        let mut bigger = config.clone();
        for i in 0..100 {
            bigger.insert(format!("pad.key-{i}"), Scalar::Int(i));
        }
        assert!(max_supernodes(&bigger, 8 * gib) < on_8_gib / 2);
        let five_million = options(&[("num-supernodes", ConfigValue::Int(5_000_000))]);
        let message = check_capacity(&five_million, &config, 8 * gib).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "num-supernodes = 5000000 is more than floret can simulate on this machine (at most {on_8_gib}: \
                 each node costs ~{} in the app process with this run configuration, and a run may use half of \
                 the machine's 8.0 GiB); use fewer SuperNodes",
                human_bytes(cost)
            )
        );
        let fits = options(&[("num-supernodes", ConfigValue::Int(on_8_gib as i64))]);
        check_capacity(&fits, &config, 8 * gib).unwrap();
    }

    #[test]
    fn this_machine_has_memory() {
        let memory = machine_memory().expect("the machine's memory");
        assert!(memory > 64 << 20, "{memory}");
    }

    #[test]
    fn pairs_are_typed() {
        let mut record = ConfigRecord::new();
        let pairs =
            crate::app::parse_run_config_args(&["num-supernodes=100 backend.init-args.num-cpus=4".into()]).unwrap();
        apply(&mut record, &pairs, "--federation-config").unwrap();
        assert_eq!(record.get("num-supernodes"), Some(&ConfigValue::Int(100)));
        let pairs = crate::app::parse_run_config_args(&["num-supernode=3".into()]).unwrap();
        let error = apply(&mut record, &pairs, "--federation-config").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("Unknown simulation config field(s): num-supernode."));
        let pairs = crate::app::parse_run_config_args(&["num-supernodes=0.5".into()]).unwrap();
        let error = apply(&mut record, &pairs, "--federation-config").unwrap_err();
        assert_eq!(
            error.to_string(),
            "--federation-config num-supernodes must be of type int, found float 0.5"
        );
    }

    #[test]
    fn an_app_may_declare_its_federation() {
        let document: toml::Table = "[tool.floret.options]\nnum-supernodes = 5000\nbackend.init-args.num-cpus = 2\n"
            .parse()
            .unwrap();
        let pairs = app_options(&document).unwrap();
        assert_eq!(pairs["num-supernodes"], Scalar::Int(5000));
        assert_eq!(pairs["backend.init-args.num-cpus"], Scalar::Int(2));
        assert!(app_options(&toml::Table::new()).unwrap().is_empty());
        let bad: toml::Table = "[tool.floret]\noptions = 3\n".parse().unwrap();
        assert!(app_options(&bad).is_err());
    }
}
