//! The Flower configuration file, `$FLWR_HOME/config.toml`, as Flower 1.27
//! reads it: SuperLink connection profiles under `[superlink]`.
//!
//! This module owns locating and creating the file ([`crate::host::flwr_home`],
//! [`load_or_create`]), choosing a profile ([`FlowerConfig::select_profile`])
//! with Flower 1.27's exact messages, and turning a profile's `options.*`
//! into the `federation_options` ConfigRecord that 1.27 sends with
//! `StartRun` ([`SimulationOptions::to_federation_options`]).
//!
//! It never prints (callers print [`created_message`]), never rewrites an
//! existing file, never starts or contacts a SuperLink and never reads
//! certificates (only checks that `root-certificates` is absolute).

use std::path::{Path, PathBuf};

use crate::records::{ConfigRecord, ConfigValue};

/// The file name inside `$FLWR_HOME`.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// The file Flower 1.27 creates when none exists.
pub(crate) const DEFAULT_CONFIG_TOML: &str = "[superlink]
default = \"local\"

[superlink.supergrid]
address = \"supergrid.flower.ai\"

[superlink.local]
options.num-supernodes = 10
options.backend.client-resources.num-cpus = 1
options.backend.client-resources.num-gpus = 0
";

/// Flower's default simulation backend.
pub(crate) const DEFAULT_BACKEND: &str = "ray";

/// Errors of this module. Messages are Flower 1.27's, which (a Flower quirk)
/// prefix "not found" errors with "An unexpected error occurred ...".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Error {
    /// The file or `$FLWR_HOME` could not be read or created.
    #[error("failed to access the Flower configuration file ({path}): {reason}")]
    Io { path: String, reason: String },
    /// The file is not valid TOML (Flower's text, then where and why).
    #[error("Failed to read the Flower configuration file ({path}). Please ensure it is valid TOML. (line {line}, column {column}: {message})")]
    InvalidToml {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// No profile was named and `[superlink].default` is not set.
    #[error("An unexpected error occurred while reading the Flower configuration file ({path}). No SuperLink connection set. A SuperLink connection needs to be provided or one must be set as default in the Flower configuration file ({path}). Specify a default SuperLink connection by adding: \n\n[superlink]\ndefault = 'connection_name'\n\nto the Flower configuration file ({path}).")]
    NoDefault { path: String },
    /// The named (or default) profile does not exist.
    #[error("An unexpected error occurred while reading the Flower configuration file ({path}). SuperLink connection '{name}' not found in the Flower configuration file ({path}).{}", default_hint(.name, *.was_default))]
    NotFound {
        path: String,
        name: String,
        was_default: bool,
    },
    /// The profile is invalid (Flower's "Failed to parse" + the reason):
    /// `options` is not a table.
    #[error("Failed to parse the Flower configuration file ({path}). Invalid value for key 'options': expected dict, but got {got}.")]
    OptionsNotATable { path: String, got: &'static str },
    /// A connection's value of the wrong type.
    #[error("Failed to parse the Flower configuration file ({path}). Invalid value for key '{key}' in connection '{name}': expected {expected}, but got {got}.")]
    WrongType {
        path: String,
        key: &'static str,
        name: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("Failed to parse the Flower configuration file ({path}). Invalid value for key 'root-certificates' in connection '{name}': expected absolute path, but got relative path '{value}'.")]
    RelativeRootCertificates { path: String, name: String, value: String },
    #[error("Failed to parse the Flower configuration file ({path}). Invalid federation format: {federation}. Expected format: '@<account-name>/<federation-name>'.")]
    FederationFormat { path: String, federation: String },
    #[error("Failed to parse the Flower configuration file ({path}). Invalid SuperLink connection format: 'address' and/or 'options' key need to be specified.")]
    NoAddressOrOptions { path: String },
    /// A backend option of the wrong type (`option` is e.g. `init-args.num-cpus`).
    #[error("Failed to parse the Flower configuration file ({path}). {option} must be {expected}.")]
    BackendOptionType {
        path: String,
        option: String,
        expected: &'static str,
    },
    /// A simulation option of the wrong type.
    #[error("Failed to parse the Flower configuration file ({path}). Invalid simulation options: {option} must be {expected}.")]
    SimulationOptionType {
        path: String,
        option: &'static str,
        expected: &'static str,
    },
    /// The file's structure is not what Flower expects (where Flower would
    /// fail with a Python error, this says what is wrong instead).
    #[error("An unexpected error occurred while reading the Flower configuration file ({path}). {detail}")]
    Malformed { path: String, detail: String },
}

fn default_hint(name: &str, was_default: bool) -> String {
    if was_default {
        format!("\nPlease check that the default connection '{name}' is defined in the [superlink] section.")
    } else {
        String::new()
    }
}

/// `<flwr_home>/config.toml`.
pub(crate) fn config_path(flwr_home: &Path) -> PathBuf {
    flwr_home.join(CONFIG_FILE)
}

/// The line Flower prints (plain, stdout) after creating the default file.
pub(crate) fn created_message(path: &Path) -> String {
    format!(
        "\nFlower configuration not found. Created default configuration at {}\n",
        path.display()
    )
}

/// The parsed Flower configuration file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlowerConfig {
    /// Where it was read from (shown in messages).
    pub path: PathBuf,
    /// The parsed document.
    pub document: toml::Table,
}

/// Reads `<flwr_home>/config.toml`, first creating it with
/// [`DEFAULT_CONFIG_TOML`] (and `flwr_home`) when it does not exist.
/// The flag tells whether it was created.
pub(crate) fn load_or_create(flwr_home: &Path) -> Result<(FlowerConfig, bool), Error> {
    let path = config_path(flwr_home);
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut created = false;
    if !path.exists() {
        // Atomic and never over another's: commands started at one moment
        // on a fresh home all read the whole file.
        std::fs::create_dir_all(flwr_home).map_err(io)?;
        created = crate::owner_only::create_atomically(&path, DEFAULT_CONFIG_TOML.as_bytes()).map_err(io)?;
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::InvalidToml {
        path: path.display().to_string(),
        line: 1,
        column: 1,
        message: "the file is not valid UTF-8".into(),
    })?;
    Ok((FlowerConfig::parse(&path, &text)?, created))
}

/// A number that keeps whether it was written as an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    fn to_config_value(self) -> ConfigValue {
        match self {
            Number::Int(i) => ConfigValue::Int(i),
            Number::Float(f) => ConfigValue::Float(f),
        }
    }
}

/// `options.backend.client-resources.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientResources {
    pub num_cpus: Option<Number>,
    pub num_gpus: Option<Number>,
}

/// `options.backend.init-args.*` (1.27 spells the last key `log-to-drive`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InitArgs {
    pub num_cpus: Option<i64>,
    pub num_gpus: Option<i64>,
    pub logging_level: Option<String>,
    pub log_to_drive: Option<bool>,
}

/// `options.backend.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOptions {
    /// `name`, default `"ray"`.
    pub name: String,
    pub client_resources: Option<ClientResources>,
    pub init_args: Option<InitArgs>,
}

/// A profile's `options.*`: a local simulation's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationOptions {
    pub num_supernodes: i64,
    pub verbose: Option<bool>,
    /// Present when `options.backend` is a table.
    pub backend: Option<BackendOptions>,
}

impl SimulationOptions {
    /// The flattened ConfigRecord Flower 1.27 sends as
    /// `StartRunRequest.federation_options`, in its key order:
    /// `num-supernodes`, `verbose`, `backend.name`,
    /// `backend.client-resources.num-cpus`/`num-gpus`,
    /// `backend.init-args.num-cpus`/`num-gpus`/`logging-level`/`log-to-drive`;
    /// unset values are left out, as is an empty backend name.
    pub(crate) fn to_federation_options(&self) -> ConfigRecord {
        let mut record = ConfigRecord::new();
        record.insert("num-supernodes", ConfigValue::Int(self.num_supernodes));
        if let Some(v) = self.verbose {
            record.insert("verbose", ConfigValue::Bool(v));
        }
        if let Some(b) = &self.backend {
            if !b.name.is_empty() {
                record.insert("backend.name", ConfigValue::Str(b.name.clone()));
            }
            if let Some(cr) = &b.client_resources {
                if let Some(n) = cr.num_cpus {
                    record.insert("backend.client-resources.num-cpus", n.to_config_value());
                }
                if let Some(n) = cr.num_gpus {
                    record.insert("backend.client-resources.num-gpus", n.to_config_value());
                }
            }
            if let Some(ia) = &b.init_args {
                if let Some(n) = ia.num_cpus {
                    record.insert("backend.init-args.num-cpus", ConfigValue::Int(n));
                }
                if let Some(n) = ia.num_gpus {
                    record.insert("backend.init-args.num-gpus", ConfigValue::Int(n));
                }
                if let Some(l) = &ia.logging_level {
                    record.insert("backend.init-args.logging-level", ConfigValue::Str(l.clone()));
                }
                if let Some(v) = ia.log_to_drive {
                    record.insert("backend.init-args.log-to-drive", ConfigValue::Bool(v));
                }
            }
        }
        record
    }
}

/// One `[superlink.<name>]` profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// Control API address (`host:port`).
    pub address: Option<String>,
    /// `insecure`, default false.
    pub insecure: bool,
    /// `root-certificates`, an absolute path.
    pub root_certificates: Option<PathBuf>,
    /// Default federation (`@account/name`).
    pub federation: Option<String>,
    /// `options.*`.
    pub options: Option<SimulationOptions>,
}

impl Profile {
    /// Flower 1.27's rule: the CLI manages a local SuperLink for a profile
    /// with `options` and no `address`.
    pub(crate) fn is_managed_local(&self) -> bool {
        self.options.is_some() && self.address.is_none()
    }
}

/// Python's `type(value).__name__` for a parsed TOML value.
fn py_type(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "str",
        toml::Value::Integer(_) => "int",
        toml::Value::Float(_) => "float",
        toml::Value::Boolean(_) => "bool",
        toml::Value::Array(_) => "list",
        toml::Value::Table(_) => "dict",
        toml::Value::Datetime(d) => match (d.date.is_some(), d.time.is_some()) {
            (true, true) => "datetime",
            (true, false) => "date",
            _ => "time",
        },
    }
}

/// Flower's `check_federation_format` (`re.match`, so a final `\n` passes).
pub(crate) fn is_valid_federation(federation: &str) -> bool {
    let f = federation.strip_suffix('\n').unwrap_or(federation);
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match f.strip_prefix('@').and_then(|r| r.split_once('/')) {
        Some((account, name)) => ok(account) && ok(name),
        None => false,
    }
}

impl FlowerConfig {
    /// Parses the text of a Flower configuration file located at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<FlowerConfig, Error> {
        let document = crate::app::parse_toml(text).map_err(|(line, column, message)| Error::InvalidToml {
            path: path.display().to_string(),
            line,
            column,
            message,
        })?;
        Ok(FlowerConfig {
            path: path.to_path_buf(),
            document,
        })
    }

    fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    fn superlink(&self) -> Result<Option<&toml::Table>, Error> {
        match self.document.get("superlink") {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(Error::Malformed {
                path: self.path_str(),
                detail: format!("'superlink' must be a table, but it is {}.", py_type(other)),
            }),
        }
    }

    /// `[superlink].default`, when it is set (any value is shown as Flower
    /// would: strings as-is, other values in TOML form).
    pub(crate) fn default_profile_name(&self) -> Option<String> {
        let value = self.superlink().ok().flatten()?.get("default")?;
        Some(match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The names of the profiles (`[superlink.<name>]` tables), in file order.
    #[cfg(test)]
    pub(crate) fn profile_names(&self) -> Vec<String> {
        match self.superlink() {
            Ok(Some(t)) => t
                .iter()
                .filter(|(k, v)| *k != "default" && v.is_table())
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Chooses a profile: `name` if given, else `[superlink].default`, and
    /// validates it as Flower 1.27 does (same checks, order and messages).
    pub(crate) fn select_profile(&self, name: Option<&str>) -> Result<Profile, Error> {
        let path = self.path_str();
        let empty = toml::Table::new();
        let superlink = self.superlink()?.unwrap_or(&empty);
        let default = self.default_profile_name();
        let name = match name.map(str::to_string).or_else(|| default.clone()) {
            Some(n) => n,
            None => return Err(Error::NoDefault { path }),
        };
        let Some(value) = superlink.get(&name) else {
            return Err(Error::NotFound {
                was_default: default.as_deref() == Some(name.as_str()),
                path,
                name,
            });
        };
        let toml::Value::Table(conn) = value else {
            return Err(Error::Malformed {
                path,
                detail: format!(
                    "SuperLink connection '{name}' must be a table, but it is {}.",
                    py_type(value)
                ),
            });
        };
        parse_profile(&path, &name, conn)
    }
}

/// Flower's `parse_superlink_connection` + `SuperLinkConnection.__post_init__`.
fn parse_profile(path: &str, name: &str, conn: &toml::Table) -> Result<Profile, Error> {
    let options = match conn.get("options") {
        None => None,
        Some(toml::Value::Table(t)) => Some(parse_options(path, t)?),
        Some(other) => {
            return Err(Error::OptionsNotATable {
                path: path.to_string(),
                got: py_type(other),
            })
        }
    };
    let wrong = |key: &'static str, expected: &'static str, v: &toml::Value| Error::WrongType {
        path: path.to_string(),
        key,
        name: name.to_string(),
        expected,
        got: py_type(v),
    };
    let string = |key: &'static str| -> Result<Option<String>, Error> {
        match conn.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong(key, "str", other)),
        }
    };
    let address = string("address")?;
    let root_certificates = string("root-certificates")?;
    if let Some(rc) = &root_certificates {
        if !Path::new(rc).is_absolute() {
            return Err(Error::RelativeRootCertificates {
                path: path.to_string(),
                name: name.to_string(),
                value: rc.clone(),
            });
        }
    }
    let insecure = match conn.get("insecure") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => return Err(wrong("insecure", "bool", other)),
    };
    let federation = string("federation")?;
    if let Some(f) = &federation {
        if !is_valid_federation(f) {
            return Err(Error::FederationFormat {
                path: path.to_string(),
                federation: f.clone(),
            });
        }
    }
    if address.is_none() && options.is_none() {
        return Err(Error::NoAddressOrOptions { path: path.to_string() });
    }
    Ok(Profile {
        name: name.to_string(),
        address,
        insecure,
        root_certificates: root_certificates.map(PathBuf::from),
        federation,
        options,
    })
}

/// Flower's `_parse_simulation_options` and the dataclass checks, in
/// Flower's order: client resources, init args, backend name,
/// num-supernodes, verbose. Python's `bool` is an `int`; here a boolean is
/// not accepted where a number is expected.
fn parse_options(path: &str, options: &toml::Table) -> Result<SimulationOptions, Error> {
    let backend_type = |option: String, expected: &'static str| Error::BackendOptionType {
        path: path.to_string(),
        option,
        expected,
    };
    let simulation_type = |option: &'static str, expected: &'static str| Error::SimulationOptionType {
        path: path.to_string(),
        option,
        expected,
    };
    let backend = match options.get("backend") {
        Some(toml::Value::Table(b)) => {
            let client_resources = match b.get("client-resources") {
                Some(toml::Value::Table(cr)) => {
                    let number = |key: &str| match cr.get(key) {
                        None => Ok(None),
                        Some(toml::Value::Integer(i)) => Ok(Some(Number::Int(*i))),
                        Some(toml::Value::Float(f)) => Ok(Some(Number::Float(*f))),
                        Some(_) => Err(backend_type(format!("client-resources.{key}"), "a number (int/float)")),
                    };
                    Some(ClientResources {
                        num_cpus: number("num-cpus")?,
                        num_gpus: number("num-gpus")?,
                    })
                }
                _ => None,
            };
            let init_args = match b.get("init-args") {
                Some(toml::Value::Table(ia)) => {
                    let int = |key: &str| match ia.get(key) {
                        None => Ok(None),
                        Some(toml::Value::Integer(i)) => Ok(Some(*i)),
                        Some(_) => Err(backend_type(format!("init-args.{key}"), "an integer")),
                    };
                    let num_cpus = int("num-cpus")?;
                    let num_gpus = int("num-gpus")?;
                    let logging_level = match ia.get("logging-level") {
                        None => None,
                        Some(toml::Value::String(s)) => Some(s.clone()),
                        Some(_) => return Err(backend_type("init-args.logging-level".into(), "a string")),
                    };
                    let log_to_drive = match ia.get("log-to-drive") {
                        None => None,
                        Some(toml::Value::Boolean(v)) => Some(*v),
                        Some(_) => return Err(backend_type("init-args.log-to-drive".into(), "a boolean")),
                    };
                    Some(InitArgs {
                        num_cpus,
                        num_gpus,
                        logging_level,
                        log_to_drive,
                    })
                }
                _ => None,
            };
            let name = match b.get("name") {
                None => DEFAULT_BACKEND.to_string(),
                Some(toml::Value::String(s)) => s.clone(),
                Some(_) => return Err(backend_type("backend.name".into(), "a string")),
            };
            Some(BackendOptions {
                name,
                client_resources,
                init_args,
            })
        }
        _ => None,
    };
    let num_supernodes = match options.get("num-supernodes") {
        Some(toml::Value::Integer(n)) => *n,
        _ => return Err(simulation_type("num-supernodes", "an integer")),
    };
    let verbose = match options.get("verbose") {
        None => None,
        Some(toml::Value::Boolean(b)) => Some(*b),
        Some(_) => return Err(simulation_type("verbose", "a boolean")),
    };
    Ok(SimulationOptions {
        num_supernodes,
        verbose,
        backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> FlowerConfig {
        FlowerConfig::parse(Path::new("/h/config.toml"), text).unwrap()
    }

    fn err(text: &str, name: Option<&str>) -> String {
        cfg(text).select_profile(name).unwrap_err().to_string()
    }

    /// Commands started at one moment on a fresh `FLWR_HOME` all read a
    /// whole file, and exactly one says it created it (the file was written
    /// by truncate-then-write, and a second reader saw it empty: "No
    /// SuperLink connection set").
    #[test]
    fn concurrent_first_reads_all_see_the_whole_default_file() {
        for attempt in 0..30 {
            let home = tempfile::tempdir().unwrap();
            let flwr_home = home.path().join(".flwr");
            let start = std::sync::Barrier::new(6);
            let created = std::thread::scope(|scope| {
                let loads: Vec<_> = (0..6)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            load_or_create(&flwr_home)
                        })
                    })
                    .collect();
                let mut created = 0;
                for load in loads {
                    let (config, was_created) = load
                        .join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
                    config
                        .select_profile(None)
                        .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
                    created += usize::from(was_created);
                }
                created
            });
            assert_eq!(created, 1, "attempt {attempt}");
            let names: Vec<_> = std::fs::read_dir(&flwr_home)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                vec![std::ffi::OsString::from("config.toml")],
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn creates_the_default_file_once() {
        let home = tempfile::tempdir().unwrap();
        let flwr_home = home.path().join("nested").join(".flwr");
        let (config, created) = load_or_create(&flwr_home).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::read_to_string(flwr_home.join("config.toml")).unwrap(),
            DEFAULT_CONFIG_TOML
        );
        let (again, created) = load_or_create(&flwr_home).unwrap();
        assert!(!created);
        assert_eq!(again, config);
        assert_eq!(
            created_message(&config.path),
            format!(
                "\nFlower configuration not found. Created default configuration at {}\n",
                flwr_home.join("config.toml").display()
            )
        );

        let local = config.select_profile(None).unwrap();
        assert_eq!(local.name, "local");
        assert!(local.is_managed_local());
        assert!(!local.insecure);
        let options = local.options.as_ref().unwrap();
        assert_eq!(options.num_supernodes, 10);
        let record = options.to_federation_options();
        let items: Vec<(&str, &ConfigValue)> = record.iter().collect();
        assert_eq!(
            items,
            [
                ("num-supernodes", &ConfigValue::Int(10)),
                ("backend.name", &ConfigValue::Str("ray".into())),
                ("backend.client-resources.num-cpus", &ConfigValue::Int(1)),
                ("backend.client-resources.num-gpus", &ConfigValue::Int(0)),
            ]
        );

        let supergrid = config.select_profile(Some("supergrid")).unwrap();
        assert_eq!(supergrid.address.as_deref(), Some("supergrid.flower.ai"));
        assert!(!supergrid.is_managed_local());
        assert_eq!(config.profile_names(), ["supergrid", "local"]);
    }

    #[test]
    fn flwr_home_from_env_or_home() {
        // Only read the environment; tests must not change it.
        let home = crate::host::flwr_home();
        match std::env::var_os("FLWR_HOME") {
            Some(h) if !h.is_empty() => assert_eq!(home, PathBuf::from(h)),
            _ => assert!(home.ends_with(".flwr")),
        }
    }

    #[test]
    fn full_options_flatten_in_flowers_order() {
        let c = cfg(r#"
[superlink]
default = "sim"
[superlink.sim]
federation = "@acme/fed-1"
options.verbose = true
options.num-supernodes = 4
options.backend.init-args.log-to-drive = false
options.backend.init-args.logging-level = "INFO"
options.backend.init-args.num-gpus = 0
options.backend.init-args.num-cpus = 2
options.backend.client-resources.num-gpus = 0.5
options.backend.client-resources.num-cpus = 2
options.backend.name = "ray"
options.ignored = 1
"#);
        let p = c.select_profile(None).unwrap();
        assert_eq!(p.federation.as_deref(), Some("@acme/fed-1"));
        let record = p.options.unwrap().to_federation_options();
        let keys: Vec<&str> = record.keys().collect();
        assert_eq!(
            keys,
            [
                "num-supernodes",
                "verbose",
                "backend.name",
                "backend.client-resources.num-cpus",
                "backend.client-resources.num-gpus",
                "backend.init-args.num-cpus",
                "backend.init-args.num-gpus",
                "backend.init-args.logging-level",
                "backend.init-args.log-to-drive",
            ]
        );
        assert_eq!(
            record.get("backend.client-resources.num-gpus"),
            Some(&ConfigValue::Float(0.5))
        );
        assert_eq!(record.get("verbose"), Some(&ConfigValue::Bool(true)));
        assert_eq!(
            record.get("backend.init-args.log-to-drive"),
            Some(&ConfigValue::Bool(false))
        );

        // No backend table: only num-supernodes; an empty backend name is dropped.
        let p = cfg("[superlink.x]\noptions.num-supernodes = 2\n")
            .select_profile(Some("x"))
            .unwrap();
        assert_eq!(p.options.unwrap().to_federation_options().len(), 1);
        let p = cfg("[superlink.x]\noptions.num-supernodes = 2\noptions.backend.name = ''\n")
            .select_profile(Some("x"))
            .unwrap();
        assert_eq!(p.options.unwrap().to_federation_options().len(), 1);
        // Non-table backend parts are ignored, as in Flower.
        let p = cfg("[superlink.x]\noptions.num-supernodes = 2\noptions.backend.client-resources = 3\n")
            .select_profile(Some("x"))
            .unwrap();
        let keys: Vec<String> = p
            .options
            .unwrap()
            .to_federation_options()
            .keys()
            .map(String::from)
            .collect();
        assert_eq!(keys, ["num-supernodes", "backend.name"]);
    }

    #[test]
    fn remote_profile() {
        let p = cfg("[superlink.r]\naddress = \"h:9093\"\ninsecure = true\n")
            .select_profile(Some("r"))
            .unwrap();
        assert_eq!(p.address.as_deref(), Some("h:9093"));
        assert!(p.insecure);
        assert!(!p.is_managed_local());
        let p = cfg("[superlink.r]\naddress = \"h:9093\"\nroot-certificates = \"/ca.pem\"\n")
            .select_profile(Some("r"))
            .unwrap();
        assert_eq!(p.root_certificates, Some(PathBuf::from("/ca.pem")));
        // address and options: not managed
        let p = cfg("[superlink.r]\naddress = \"h:1\"\noptions.num-supernodes = 1\n")
            .select_profile(Some("r"))
            .unwrap();
        assert!(!p.is_managed_local());
    }

    #[test]
    fn selection_errors_match_flower() {
        let prefix = "An unexpected error occurred while reading the Flower configuration file (/h/config.toml). ";
        assert_eq!(
            err("[superlink]\n[superlink.x]\naddress = \"a:1\"\n", None),
            format!("{prefix}No SuperLink connection set. A SuperLink connection needs to be provided or one must be set as default in the Flower configuration file (/h/config.toml). Specify a default SuperLink connection by adding: \n\n[superlink]\ndefault = 'connection_name'\n\nto the Flower configuration file (/h/config.toml).")
        );
        assert_eq!(
            err("", Some("nosuch")),
            format!(
                "{prefix}SuperLink connection 'nosuch' not found in the Flower configuration file (/h/config.toml)."
            )
        );
        assert_eq!(
            err("[superlink]\ndefault = \"y\"\n", None),
            format!("{prefix}SuperLink connection 'y' not found in the Flower configuration file (/h/config.toml).\nPlease check that the default connection 'y' is defined in the [superlink] section.")
        );
        assert_eq!(
            err("[superlink]\ndefault = 3\n", None),
            format!("{prefix}SuperLink connection '3' not found in the Flower configuration file (/h/config.toml).\nPlease check that the default connection '3' is defined in the [superlink] section.")
        );
        assert!(err("superlink = 1\n", None).starts_with(prefix));
        assert!(err("[superlink]\ndefault = \"x\"\nx = 1\n", None).starts_with(prefix));
    }

    #[test]
    fn invalid_toml_message() {
        let e = FlowerConfig::parse(Path::new("/h/config.toml"), "[superlink\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("Failed to read the Flower configuration file (/h/config.toml). Please ensure it is valid TOML. (line 1, column"), "{msg}");
    }

    #[test]
    fn schema_errors_match_flower() {
        let cases = [
            ("insecure = true", "Invalid SuperLink connection format: 'address' and/or 'options' key need to be specified."),
            ("options = 1", "Invalid value for key 'options': expected dict, but got int."),
            ("options.verbose = true", "Invalid simulation options: num-supernodes must be an integer."),
            ("options.num-supernodes = 1.5", "Invalid simulation options: num-supernodes must be an integer."),
            ("options.num-supernodes = 2\noptions.verbose = 1", "Invalid simulation options: verbose must be a boolean."),
            ("options.num-supernodes = 2\noptions.backend.name = 1", "backend.name must be a string."),
            ("options.num-supernodes = 2\noptions.backend.client-resources.num-cpus = \"a\"", "client-resources.num-cpus must be a number (int/float)."),
            ("options.num-supernodes = 2\noptions.backend.init-args.num-gpus = 1.5", "init-args.num-gpus must be an integer."),
            ("options.num-supernodes = 2\noptions.backend.init-args.logging-level = 1", "init-args.logging-level must be a string."),
            ("options.num-supernodes = 2\noptions.backend.init-args.log-to-drive = 1", "init-args.log-to-drive must be a boolean."),
            ("address = 1", "Invalid value for key 'address' in connection 'x': expected str, but got int."),
            ("address = \"a:1\"\nroot-certificates = \"rel.pem\"", "Invalid value for key 'root-certificates' in connection 'x': expected absolute path, but got relative path 'rel.pem'."),
            ("address = \"a:1\"\ninsecure = \"yes\"", "Invalid value for key 'insecure' in connection 'x': expected bool, but got str."),
            ("address = \"a:1\"\nfederation = \"bad\"", "Invalid federation format: bad. Expected format: '@<account-name>/<federation-name>'."),
            ("address = \"a:1\"\nfederation = 3", "Invalid value for key 'federation' in connection 'x': expected str, but got int."),
            ("address = [1]", "Invalid value for key 'address' in connection 'x': expected str, but got list."),
            ("options = 1979-05-27", "Invalid value for key 'options': expected dict, but got date."),
        ];
        for (body, want) in cases {
            let text = format!("[superlink]\ndefault = \"x\"\n[superlink.x]\n{body}\n");
            assert_eq!(
                err(&text, None),
                format!("Failed to parse the Flower configuration file (/h/config.toml). {want}"),
                "{body}"
            );
        }
    }

    #[test]
    fn federation_format() {
        assert!(is_valid_federation("@acme/fed_1-x"));
        assert!(is_valid_federation("@a/b\n"));
        for bad in ["acme/fed", "@/x", "@a/", "@a/b/c", "@a b/c", ""] {
            assert!(!is_valid_federation(bad), "{bad}");
        }
    }
}
