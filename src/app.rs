//! The Flower App configuration: an app's `pyproject.toml` and its run config.
//!
//! This module owns the validation of `pyproject.toml` with Flower 1.27's
//! rules and exact messages ([`parse_pyproject`]), the flattening of
//! `[tool.flwr.app.config]` into a [`UserConfig`], the parsing of
//! `flwr run --run-config` arguments ([`parse_run_config_args`]) and the fusion
//! of overrides with an app's defaults ([`fuse_run_config`]).
//!
//! It never builds or reads archives (that is `crate::fab`), never touches the
//! Flower configuration file (`crate::cli::flower_config`) and knows nothing
//! about protobuf. Apart from [`parse_pyproject_file`], [`check_components`]
//! and the `.toml` form of `--run-config`, it does no I/O.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::records::{Scalar, UserConfig};

/// The name of the app configuration file inside an app directory and a FAB.
pub const PYPROJECT: &str = "pyproject.toml";

/// Flower's help text appended to object-reference errors (`OBJECT_REF_HELP_STR`).
const OBJECT_REF_HELP: &str = "\n\n\nThe object reference string should have the form <module>:<attribute>. \
Valid\nexamples include `client:app` and `project.package.module:wrapper.app`. It must\nrefer to a \
module on the PYTHONPATH and the module needs to have the specified\nattribute.\n";

/// Flower's message for an unparsable `--run-config` string.
const INVALID_RUN_CONFIG: &str = "The provided configuration string is in an invalid format. \
The correct format should be, e.g., 'key1=123 key2=false key3=\"string\"', where values must be of \
type bool, int, string, or float. Ensure proper formatting with space-separated key-value pairs.";

/// Errors of this module. Messages keep Flower 1.27's text where Flower has
/// one; additions made for clarity follow Flower's text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppError {
    /// The app directory does not exist or is not a directory.
    #[error("Failed to load Flower App configuration in '{path}'. File may be missing or invalid. The app directory '{dir}' does not exist.")]
    AppDirNotFound { path: String, dir: String },
    /// `pyproject.toml` is missing, unreadable or not UTF-8.
    #[error("Failed to load Flower App configuration in '{path}'. File may be missing or invalid. {reason}")]
    Unreadable { path: String, reason: String },
    /// `pyproject.toml` is not valid TOML.
    #[error("Failed to load Flower App configuration in '{path}'. File may be missing or invalid. TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Validation failed; `errors` are Flower's messages, in Flower's order.
    #[error("Invalid Flower App configuration in '{path}':\n{}", bullet_list(.errors))]
    Invalid { path: String, errors: Vec<String> },
    /// A run-config value is neither a scalar nor a table (Flower's text, sic).
    #[error("The value for key {key} needs to be of type `int`, `float`, `bool, `str`, or  a `dict` of those.")]
    ConfigValueType { key: String },
    /// A `.toml` file was given to `--run-config` together with pairs.
    #[error("TOML files cannot be passed alongside key-value pairs.")]
    TomlAlongsidePairs,
    /// A `--run-config` argument did not form valid TOML.
    #[error("{INVALID_RUN_CONFIG} {hint}")]
    InvalidRunConfig { hint: String },
    /// The `.toml` file given to `--run-config` could not be read or parsed.
    #[error("failed to read run config file '{path}': {reason}")]
    RunConfigFile { path: String, reason: String },
    /// An override names a key the app does not define.
    #[error("Key '{}' is not present in the main dictionary{}", clip(.key), known_keys_hint(.known))]
    UnknownOverrideKey { key: String, known: Vec<String> },
    /// A `--run-config` word without `=` (Flower skips it silently).
    #[error("--run-config `{}` is not a key=value pair: write e.g. -c '{}=5' (strings in quotes: -c '{}=\"text\"')", clip(.0), clip(.0), clip(.0))]
    OverrideWithoutValue(String),
    /// A `--run-config` word that starts with `=` (Flower skips it silently).
    #[error("--run-config `{}` has no key before `=`: write key=value pairs, e.g. -c 'lr=0.1'", clip(.0))]
    OverrideEmptyKey(String),
    /// A `--run-config` word that ends with `=` (Flower skips it silently).
    #[error("--run-config `{}=` has no value after `=`: write e.g. -c '{}=5' (an empty string is {}=\"\")", clip(.0), clip(.0), clip(.0))]
    OverrideEmptyValue(String),
}

/// How much of a value an error message shows.
const CLIP_CHARS: usize = 80;

/// `text` as an error message shows it: at most 80 characters, else its
/// first 80 and "…" (a message echoes what the user typed, and a message
/// of many kilobytes breaks gRPC's status header).
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(CLIP_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

impl AppError {
    /// Replaces the path shown in the message (the location of `pyproject.toml`).
    pub fn with_path(self, new_path: impl fmt::Display) -> AppError {
        let p = new_path.to_string();
        match self {
            AppError::AppDirNotFound { dir, .. } => AppError::AppDirNotFound { path: p, dir },
            AppError::Unreadable { reason, .. } => AppError::Unreadable { path: p, reason },
            AppError::Syntax {
                line, column, message, ..
            } => AppError::Syntax {
                path: p,
                line,
                column,
                message,
            },
            AppError::Invalid { errors, .. } => AppError::Invalid { path: p, errors },
            other => other,
        }
    }
}

fn bullet_list(lines: &[String]) -> String {
    lines.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n")
}

fn known_keys_hint(known: &[String]) -> String {
    if known.is_empty() {
        " (the app's [tool.flwr.app.config] defines no keys)".to_string()
    } else if known.len() <= 12 {
        let known: Vec<String> = known.iter().map(|k| clip(k)).collect();
        format!(" (known keys: {})", known.join(", "))
    } else {
        String::new()
    }
}

/// `[project].license`: an SPDX expression or a `{ file = ... }` / `{ text = ... }` table.
#[derive(Debug, Clone, PartialEq)]
pub enum License {
    /// `license = "Apache-2.0"`.
    Expression(String),
    /// `license = { file = "LICENSE" }`.
    File(String),
    /// `license = { text = "..." }`.
    Text(String),
    /// Any other value, kept as written.
    Other(toml::Value),
}

/// A validated Flower App configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// `[project].name`.
    pub name: String,
    /// `[project].version`.
    pub version: String,
    /// `[tool.flwr.app].publisher`.
    pub publisher: String,
    /// `[project].description`, when it is a string.
    pub description: Option<String>,
    /// `[project].license`.
    pub license: Option<License>,
    /// `[tool.flwr.app.components].serverapp` (`<module>:<attribute>`).
    pub serverapp: String,
    /// `[tool.flwr.app.components].clientapp` (`<module>:<attribute>`).
    pub clientapp: String,
    /// `[tool.flwr.app.config]` flattened; nested tables joined with `.`.
    pub config: UserConfig,
    /// The whole parsed file, in document order.
    pub document: toml::Table,
}

impl AppConfig {
    /// Flower's FAB id: `<publisher>/<name>`.
    pub fn fab_id(&self) -> String {
        format!("{}/{}", self.publisher, self.name)
    }
}

/// Parses and validates `pyproject.toml` text as Flower 1.27 does.
///
/// Returns the configuration and Flower's warnings (recommended properties
/// that are missing). Errors show the path `pyproject.toml`; use
/// [`AppError::with_path`] or [`parse_pyproject_file`] for a real path.
pub fn parse_pyproject(text: &str) -> Result<(AppConfig, Vec<String>), AppError> {
    let document = parse_toml(text).map_err(|(line, column, message)| AppError::Syntax {
        path: PYPROJECT.to_string(),
        line,
        column,
        message,
    })?;
    validate_document(document)
}

/// Reads `path` (a `pyproject.toml`, or an app directory containing one) and
/// parses it with [`parse_pyproject`]; errors name the file.
pub fn parse_pyproject_file(path: &Path) -> Result<(AppConfig, Vec<String>), AppError> {
    let file = if path.is_dir() {
        path.join(PYPROJECT)
    } else {
        path.to_path_buf()
    };
    let shown = absolute(&file).display().to_string();
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    if !dir.as_os_str().is_empty() && !dir.is_dir() {
        return Err(AppError::AppDirNotFound {
            path: shown,
            dir: absolute(&dir).display().to_string(),
        });
    }
    let bytes = match read_config_file(&file) {
        Ok(b) => b,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AppError::Unreadable {
                path: shown,
                reason: "The file does not exist.".into(),
            })
        }
        Err(ReadError::Io(e)) => {
            return Err(AppError::Unreadable {
                path: shown,
                reason: format!("It could not be read: {e}."),
            })
        }
        Err(refused) => {
            return Err(AppError::Unreadable {
                path: shown,
                reason: format!("{refused}."),
            })
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| AppError::Unreadable {
        path: shown.clone(),
        reason: "It is not valid UTF-8.".into(),
    })?;
    parse_pyproject(&text).map_err(|e| e.with_path(&shown))
}

/// The largest configuration file read (`pyproject.toml`, a `--run-config`
/// file): a FAB holds at most this much, so this equals `fab::FAB_MAX_SIZE`
/// (a test in `fab` holds them equal; `fab` imports this module, never the
/// other way round).
pub const CONFIG_FILE_MAX: u64 = 10 * 1024 * 1024;

/// Why a configuration file was not read (the reason of
/// [`AppError::Unreadable`] and [`AppError::RunConfigFile`]).
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(std::io::Error),
    /// A FIFO, a device, a socket: reading it could block forever or never end.
    #[error("It is not a regular file (a FIFO, a device or a socket)")]
    NotAFile,
    #[error("It is larger than {} MiB", CONFIG_FILE_MAX >> 20)]
    TooLarge,
}

/// Reads a configuration file the user named: a regular file (symlinks
/// followed) of at most [`CONFIG_FILE_MAX`] bytes. A FIFO would block the
/// command forever and `/dev/zero` would fill the memory.
fn read_config_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that opening a FIFO returns at once; the check is on
    // what was opened (regular files ignore the flag).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > CONFIG_FILE_MAX {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Parses TOML as `tomli` does (which first turns every CRLF into LF, also
/// inside multi-line strings); on error returns (line, column, message),
/// 1-based.
pub(crate) fn parse_toml(text: &str) -> Result<toml::Table, (usize, usize, String)> {
    let normalized;
    let text = if text.contains("\r\n") {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    text.parse::<toml::Table>().map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
        let (line, column) = line_column(text, offset);
        (line, column, e.message().trim_end().to_string())
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset;
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Flower's `validate_fields_in_config` followed by the object-reference
/// format checks of `validate_config(check_module=False)`.
fn validate_document(document: toml::Table) -> Result<(AppConfig, Vec<String>), AppError> {
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    check_project(&document, &mut errors, &mut warnings);
    let app = check_app(&document, &mut errors)?;
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    // Everything required is present; now the types (Flower assumes strings).
    let project = match document.get("project") {
        Some(toml::Value::Table(p)) => p,
        _ => unreachable!("checked above"),
    };
    let (app, components) = app.expect("checked above");
    let components = components.expect("checked above");
    let names = required_strings(project, app, components)?;
    // Object references: Flower reports only the first failing one.
    for reference in [&names.serverapp, &names.clientapp] {
        if let Some(reason) = object_ref_format_error(reference) {
            return Err(invalid(vec![reason]));
        }
    }
    let (description, license) = optional_project_fields(project);
    let config = match app.get("config") {
        Some(toml::Value::Table(t)) => flatten_table(t)?,
        _ => UserConfig::new(),
    };
    let RequiredStrings {
        name,
        version,
        publisher,
        serverapp,
        clientapp,
    } = names;
    Ok((
        AppConfig {
            name,
            version,
            publisher,
            description,
            license,
            serverapp,
            clientapp,
            config,
            document: document.clone(),
        },
        warnings,
    ))
}

/// The error of an invalid `pyproject.toml`.
fn invalid(errors: Vec<String>) -> AppError {
    AppError::Invalid {
        path: PYPROJECT.to_string(),
        errors,
    }
}

/// `[project]`: present, a table, with its required and recommended keys.
fn check_project(document: &toml::Table, errors: &mut Vec<String>, warnings: &mut Vec<String>) {
    match document.get("project") {
        None => errors.push("Missing [project] section".into()),
        Some(toml::Value::Table(p)) => {
            for (key, required) in [
                ("name", true),
                ("version", true),
                ("description", false),
                ("license", false),
            ] {
                match p.get(key) {
                    None if required => errors.push(format!("Property \"{key}\" missing in [project]")),
                    None => warnings.push(format!("Recommended property \"{key}\" missing in [project]")),
                    Some(_) => {}
                }
            }
        }
        Some(other) => errors.push(format!("[project] must be a table, but it is {}", type_name(other))),
    }
}

/// `[tool.flwr.app]` and its components, when they are tables; what is
/// missing or not a table goes to `errors`. A run configuration of values
/// Flower refuses is an error at once.
fn check_app<'a>(
    document: &'a toml::Table,
    errors: &mut Vec<String>,
) -> Result<Option<(&'a toml::Table, Option<&'a toml::Table>)>, AppError> {
    let app = match lookup(document, &["tool", "flwr", "app"]) {
        Lookup::Missing => {
            errors.push("Missing [tool.flwr.app] section".into());
            return Ok(None);
        }
        Lookup::NotTable(at, v) => {
            errors.push(format!("[{at}] must be a table, but it is {}", type_name(v)));
            return Ok(None);
        }
        Lookup::Found(t) => t,
    };
    if !app.contains_key("publisher") {
        errors.push("Property \"publisher\" missing in [tool.flwr.app]".into());
    }
    if let Some(config) = app.get("config") {
        match config {
            toml::Value::Table(t) => check_run_config_values(t)?,
            other => errors.push(format!(
                "[tool.flwr.app.config] must be a table, but it is {}",
                type_name(other)
            )),
        }
    }
    let components = match app.get("components") {
        None => {
            errors.push("Missing [tool.flwr.app.components] section".into());
            None
        }
        Some(toml::Value::Table(c)) => {
            for key in ["serverapp", "clientapp"] {
                if !c.contains_key(key) {
                    errors.push(format!("Property \"{key}\" missing in [tool.flwr.app.components]"));
                }
            }
            Some(c)
        }
        Some(other) => {
            errors.push(format!(
                "[tool.flwr.app.components] must be a table, but it is {}",
                type_name(other)
            ));
            None
        }
    };
    Ok(Some((app, components)))
}

/// The properties that must be strings.
struct RequiredStrings {
    name: String,
    version: String,
    publisher: String,
    serverapp: String,
    clientapp: String,
}

/// Reads the required properties, all of them present; every one that is
/// not a string is reported.
fn required_strings(
    project: &toml::Table,
    app: &toml::Table,
    components: &toml::Table,
) -> Result<RequiredStrings, AppError> {
    let mut errors = Vec::new();
    let mut string_of = |table: &toml::Table, key: &str, section: &str| -> String {
        match table.get(key) {
            Some(toml::Value::String(s)) => s.clone(),
            Some(other) => {
                errors.push(format!(
                    "Property \"{key}\" in [{section}] must be a string, but it is {}",
                    type_name(other)
                ));
                String::new()
            }
            None => String::new(),
        }
    };
    let strings = RequiredStrings {
        name: string_of(project, "name", "project"),
        version: string_of(project, "version", "project"),
        publisher: string_of(app, "publisher", "tool.flwr.app"),
        serverapp: string_of(components, "serverapp", "tool.flwr.app.components"),
        clientapp: string_of(components, "clientapp", "tool.flwr.app.components"),
    };
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(strings)
}

/// `[project]`'s description and license, as given.
fn optional_project_fields(project: &toml::Table) -> (Option<String>, Option<License>) {
    let description = match project.get("description") {
        Some(toml::Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let license = project.get("license").map(|v| match v {
        toml::Value::String(s) => License::Expression(s.clone()),
        toml::Value::Table(t) if t.len() == 1 => match (t.get("file"), t.get("text")) {
            (Some(toml::Value::String(f)), _) => License::File(f.clone()),
            (_, Some(toml::Value::String(s))) => License::Text(s.clone()),
            _ => License::Other(v.clone()),
        },
        other => License::Other(other.clone()),
    });
    (description, license)
}

enum Lookup<'a> {
    Missing,
    NotTable(String, &'a toml::Value),
    Found(&'a toml::Table),
}

fn lookup<'a>(root: &'a toml::Table, path: &[&str]) -> Lookup<'a> {
    let mut table = root;
    for (i, key) in path.iter().enumerate() {
        match table.get(*key) {
            None => return Lookup::Missing,
            Some(toml::Value::Table(t)) => table = t,
            Some(other) => return Lookup::NotTable(path[..=i].join("."), other),
        }
    }
    Lookup::Found(table)
}

/// Flower's `object_ref.validate(..., check_module=False)`.
fn object_ref_format_error(reference: &str) -> Option<String> {
    let (module, attribute) = match reference.split_once(':') {
        Some((m, a)) => (m, a),
        None => (reference, ""),
    };
    if module.is_empty() {
        Some(format!("Missing module in {reference}{OBJECT_REF_HELP}"))
    } else if attribute.is_empty() {
        Some(format!("Missing attribute in {reference}{OBJECT_REF_HELP}"))
    } else {
        None
    }
}

/// Flower's `_validate_run_config`: the first value (depth first, document
/// order) that is neither a scalar nor a table fails, naming its own key.
fn check_run_config_values(table: &toml::Table) -> Result<(), AppError> {
    for (key, value) in table {
        match value {
            toml::Value::Table(t) => check_run_config_values(t)?,
            toml::Value::Array(_) | toml::Value::Datetime(_) => {
                return Err(AppError::ConfigValueType { key: key.clone() })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Flower's `flatten_dict`: nested tables become `.`-joined keys; arrays and
/// datetimes are rejected with Flower's message (naming the inner key).
pub fn flatten_table(table: &toml::Table) -> Result<UserConfig, AppError> {
    let mut out = UserConfig::new();
    flatten_into(table, "", &mut out)?;
    Ok(out)
}

fn flatten_into(table: &toml::Table, prefix: &str, out: &mut UserConfig) -> Result<(), AppError> {
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let scalar = match value {
            toml::Value::Table(t) => {
                flatten_into(t, &full, out)?;
                continue;
            }
            toml::Value::Boolean(b) => Scalar::Bool(*b),
            toml::Value::Integer(i) => Scalar::Int(*i),
            toml::Value::Float(f) => Scalar::Float(*f),
            toml::Value::String(s) => Scalar::Str(s.clone()),
            toml::Value::Array(_) | toml::Value::Datetime(_) => {
                return Err(AppError::ConfigValueType { key: key.clone() })
            }
        };
        out.insert(full, scalar);
    }
    Ok(())
}

/// All non-overlapping matches of Flower's `(\S+?)=('[^']*'|"[^"]*"|\S+)` in
/// `arg`, left to right, as `(key, value)` (the value keeps its quotes).
pub fn scan_config_pairs(arg: &str) -> Vec<(String, String)> {
    let c: Vec<char> = arg.chars().collect();
    scan_config_spans(&c)
        .into_iter()
        .map(|(start, key_end, end)| (c[start..key_end].iter().collect(), c[key_end + 1..end].iter().collect()))
        .collect()
}

/// The matches of Flower's pattern in `c` as character positions `(start,
/// position of '=', end)`.
fn scan_config_spans(c: &[char]) -> Vec<(usize, usize, usize)> {
    let n = c.len();
    let value_end = |v: usize| -> Option<usize> {
        for quote in ['\'', '"'] {
            if v < n && c[v] == quote {
                if let Some(j) = (v + 1..n).find(|&j| c[j] == quote) {
                    return Some(j + 1);
                }
            }
        }
        let mut j = v;
        while j < n && !crate::pyfmt::is_py_space(c[j]) {
            j += 1;
        }
        (j > v).then_some(j)
    };
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < n {
        let mut matched = None;
        if !crate::pyfmt::is_py_space(c[pos]) {
            // Lazy key: the shortest run of non-space characters followed by
            // '=' and a value that matches.
            let mut key_end = pos + 1;
            loop {
                if key_end < n && c[key_end] == '=' {
                    if let Some(end) = value_end(key_end + 1) {
                        matched = Some((key_end, end));
                        break;
                    }
                }
                if key_end < n && !crate::pyfmt::is_py_space(c[key_end]) {
                    key_end += 1;
                } else {
                    break;
                }
            }
        }
        match matched {
            Some((key_end, end)) => {
                spans.push((pos, key_end, end));
                pos = end;
            }
            None => pos += 1,
        }
    }
    spans
}

/// The first word of `arg` that Flower's pattern skips (Flower ignores such
/// words; a typo like `-c num-server-rounds` or `-c k=` would then start a
/// run without the override), as an error.
fn check_skipped_words(arg: &str) -> Result<(), AppError> {
    let c: Vec<char> = arg.chars().collect();
    let mut skipped = vec![true; c.len()];
    for (start, _, end) in scan_config_spans(&c) {
        skipped[start..end].iter_mut().for_each(|s| *s = false);
    }
    let text: String = c
        .iter()
        .zip(&skipped)
        .map(|(&ch, &skip)| if skip { ch } else { ' ' })
        .collect();
    let Some(word) = text.split(crate::pyfmt::is_py_space).find(|w| !w.is_empty()) else {
        return Ok(());
    };
    Err(if word.starts_with('=') {
        AppError::OverrideEmptyKey(word.to_string())
    } else if let Some(key) = word.strip_suffix('=') {
        AppError::OverrideEmptyValue(key.to_string())
    } else {
        AppError::OverrideWithoutValue(word.to_string())
    })
}

/// Flower's `parse_config_args` (`flwr run --run-config/-c`), flattened.
///
/// One argument ending in `.toml` is a file whose tables are flattened.
/// Otherwise each argument is scanned for `key=value` pairs
/// ([`scan_config_pairs`]), the pairs of one argument are parsed as TOML lines
/// `key = value`, and the resulting top-level keys replace earlier ones (so
/// `-c a.b=1 -c a.c=2` keeps only `a.c`, as in Flower).
pub fn parse_run_config_args(args: &[String]) -> Result<UserConfig, AppError> {
    if args.len() == 1 && args[0].ends_with(".toml") {
        let path = expand_user(&args[0]);
        let shown = path.display().to_string();
        let text = read_config_file(&path)
            .map_err(|e| AppError::RunConfigFile {
                path: shown.clone(),
                reason: e.to_string(),
            })
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| AppError::RunConfigFile {
                    path: shown.clone(),
                    reason: "not valid UTF-8".into(),
                })
            })?;
        let table = parse_toml(&text).map_err(|(line, column, message)| AppError::RunConfigFile {
            path: shown.clone(),
            reason: format!("TOML syntax error at line {line}, column {column}: {message}"),
        })?;
        return flatten_table(&table);
    }

    let mut overrides = toml::Table::new();
    let mut flat = UserConfig::new();
    for arg in args {
        if arg.is_empty() {
            continue;
        }
        if arg.ends_with(".toml") {
            return Err(AppError::TomlAlongsidePairs);
        }
        check_skipped_words(arg)?;
        let pairs = scan_config_pairs(arg);
        let lines: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k} = {}", seed_beyond_toml(k, v).unwrap_or_else(|| v.clone())))
            .collect();
        let parsed = parse_toml(&lines.join("\n")).map_err(|(_, _, message)| AppError::InvalidRunConfig {
            hint: run_config_hint(arg, &pairs, &message),
        })?;
        for (k, v) in parsed {
            overrides.insert(k, v);
        }
        flat = flatten_table(&overrides)?;
    }
    Ok(flat)
}

/// `seed` takes any u64 that floret prints, but TOML integers stop at
/// 2^63 − 1: a bare integer beyond that is passed on as a string (which is
/// also what `seed="..."` gives).
fn seed_beyond_toml(key: &str, value: &str) -> Option<String> {
    let beyond = key.trim() == "seed"
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.parse::<u64>().is_ok()
        && value.parse::<i64>().is_err();
    beyond.then(|| format!("\"{value}\""))
}

/// Names the offending pair of an argument that did not parse.
fn run_config_hint(arg: &str, pairs: &[(String, String)], message: &str) -> String {
    for (k, v) in pairs {
        if parse_toml(&format!("{k} = {v}")).is_err() {
            let key_ok = parse_toml(&format!("{k} = 0")).is_ok();
            let value_ok = parse_toml(&format!("k = {v}")).is_ok();
            let (pair, key, value) = (clip(&format!("{k}={v}")), clip(k), clip(v));
            return if !key_ok {
                format!("The key of `{pair}` is not a valid TOML key (use letters, digits, `-`, `_` and `.`).")
            } else if !value_ok && !v.starts_with(['"', '\'']) {
                format!("The value of `{pair}` is not a TOML value; quote strings, e.g. {key}=\"{value}\".")
            } else {
                format!("The pair `{pair}` is not valid TOML.")
            };
        }
    }
    format!("`{}` is not valid TOML: {}.", clip(arg), clip(message))
}

fn expand_user(p: &str) -> PathBuf {
    if p == "~" || p.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(p[1..].trim_start_matches('/'));
        }
    }
    PathBuf::from(p)
}

/// Flower's `fuse_dicts(defaults, overrides)`: every override key must exist
/// in the defaults; override values replace defaults without type checks.
pub fn fuse_run_config(defaults: &UserConfig, overrides: &UserConfig) -> Result<UserConfig, AppError> {
    let mut fused = defaults.clone();
    for (key, value) in overrides {
        match fused.get_mut(key) {
            Some(slot) => *slot = value.clone(),
            None => {
                return Err(AppError::UnknownOverrideKey {
                    key: key.clone(),
                    known: defaults.keys().cloned().collect(),
                })
            }
        }
    }
    Ok(fused)
}

/// The CLI-side check Flower 1.27 runs before `flwr run`/`flwr build`
/// (`validate_config(check_module=True)`), approximated without Python: each
/// component's module must exist under `app_dir` (`a/b.py` or
/// `a/b/__init__.py`) and assign the attribute at some line (`attr = ...`) or
/// list it in `__all__`. Returns Flower's message for the first failure.
pub fn check_components(app_dir: &Path, app: &AppConfig) -> Result<(), AppError> {
    for reference in [&app.serverapp, &app.clientapp] {
        let (module, attribute) = reference.split_once(':').unwrap_or((reference, ""));
        let base = module.split('.').fold(app_dir.to_path_buf(), |p, part| p.join(part));
        let candidates = [base.with_extension("py"), base.join("__init__.py")];
        let source = candidates.iter().find_map(|p| std::fs::read(p).ok());
        let reason = match source {
            None => format!("Unable to load module {module}{OBJECT_REF_HELP}"),
            Some(bytes) => {
                if source_assigns(&String::from_utf8_lossy(&bytes), attribute) {
                    continue;
                }
                format!("Unable to find attribute {attribute} in module {module}{OBJECT_REF_HELP}")
            }
        };
        return Err(AppError::Invalid {
            path: absolute(&app_dir.join(PYPROJECT)).display().to_string(),
            errors: vec![reason],
        });
    }
    Ok(())
}

/// Whether Python `source` has an assignment `name = ...` (also chained or
/// nested in a block) or mentions `"name"` in an `__all__ = [...]` line.
fn source_assigns(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim_start();
        if line.starts_with("__all__") && line.contains('=') {
            return line.contains(&format!("\"{name}\"")) || line.contains(&format!("'{name}'"));
        }
        // Split at '=' that are not part of '==', '<=', '>=', '!=' and check
        // every target before the last '='.
        let bytes = line.as_bytes();
        let mut targets = Vec::new();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'=' {
                let prev = if i > 0 { bytes[i - 1] } else { b' ' };
                let next = bytes.get(i + 1).copied().unwrap_or(b' ');
                if next != b'=' && !matches!(prev, b'=' | b'<' | b'>' | b'!' | b':') {
                    targets.push(&line[start..i]);
                    start = i + 1;
                }
            }
        }
        // Annotated assignments (`app: ServerApp = ...`) are not `ast.Assign`
        // and do not count, as in Flower.
        targets.iter().any(|t| t.trim() == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[project]
name = "myapp"
version = "1.0.0"
description = "d"
license = "Apache-2.0"

[tool.flwr.app]
publisher = "acme"

[tool.flwr.app.components]
serverapp = "myapp.server_app:app"
clientapp = "myapp.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 3
lr = 0.1
flag = true
name = "x"

[tool.flwr.app.config.nested]
x = 1
deeper.y = "z"
"#;

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_a_valid_pyproject() {
        let (app, warnings) = parse_pyproject(VALID).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(app.fab_id(), "acme/myapp");
        assert_eq!(app.version, "1.0.0");
        assert_eq!(app.description.as_deref(), Some("d"));
        assert_eq!(app.license, Some(License::Expression(s("Apache-2.0"))));
        assert_eq!(app.serverapp, "myapp.server_app:app");
        let keys: Vec<&str> = app.config.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["flag", "lr", "name", "nested.deeper.y", "nested.x", "num-server-rounds"]
        );
        assert_eq!(app.config["lr"], Scalar::Float(0.1));
        assert_eq!(app.config["nested.deeper.y"], Scalar::Str(s("z")));
        // document order is preserved
        let top: Vec<&str> = app.document.keys().map(String::as_str).collect();
        assert_eq!(top, ["project", "tool"]);
    }

    #[test]
    fn warns_about_recommended_properties() {
        let text = VALID
            .replace("description = \"d\"\n", "")
            .replace("license = \"Apache-2.0\"\n", "");
        let (_, warnings) = parse_pyproject(&text).unwrap();
        assert_eq!(
            warnings,
            [
                "Recommended property \"description\" missing in [project]",
                "Recommended property \"license\" missing in [project]"
            ]
        );
    }

    #[test]
    fn collects_all_errors_in_flower_order() {
        let err = parse_pyproject("[project]\ndescription = 'x'\n[tool.flwr.app]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid Flower App configuration in 'pyproject.toml':\n\
             - Property \"name\" missing in [project]\n\
             - Property \"version\" missing in [project]\n\
             - Property \"publisher\" missing in [tool.flwr.app]\n\
             - Missing [tool.flwr.app.components] section"
        );
        let err = parse_pyproject("").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid Flower App configuration in 'pyproject.toml':\n\
             - Missing [project] section\n- Missing [tool.flwr.app] section"
        );
        let err = parse_pyproject(
            "[project]\nname='a'\nversion='1'\n[tool.flwr.app]\npublisher='p'\n[tool.flwr.app.components]\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid Flower App configuration in 'pyproject.toml':\n\
             - Property \"serverapp\" missing in [tool.flwr.app.components]\n\
             - Property \"clientapp\" missing in [tool.flwr.app.components]"
        );
    }

    #[test]
    fn rejects_non_string_properties() {
        let err = parse_pyproject(&VALID.replace("version = \"1.0.0\"", "version = 1")).unwrap_err();
        assert!(err
            .to_string()
            .contains("- Property \"version\" in [project] must be a string, but it is an integer"));
        let err = parse_pyproject(&VALID.replace("[project]\n", "project = 3\n[x]\n")).unwrap_err();
        assert!(err.to_string().contains("[project] must be a table"), "{err}");
    }

    #[test]
    fn object_reference_format_is_checked() {
        let err = parse_pyproject(&VALID.replace("myapp.server_app:app", "myapp.server_app")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(
            "Invalid Flower App configuration in 'pyproject.toml':\n- Missing attribute in myapp.server_app\n\n\nThe object reference"
        ), "{msg}");
        let err = parse_pyproject(&VALID.replace("myapp.client_app:app", ":app")).unwrap_err();
        assert!(err.to_string().contains("- Missing module in :app"));
    }

    #[test]
    fn non_scalar_config_value_uses_flowers_message() {
        let err = parse_pyproject(&VALID.replace("x = 1", "x = [1, 2]")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The value for key x needs to be of type `int`, `float`, `bool, `str`, or  a `dict` of those."
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse_pyproject("[project]\nname = \"a\"\nversion = \n").unwrap_err();
        match &err {
            AppError::Syntax { line, column, .. } => assert_eq!((*line, *column), (3, 11)),
            other => panic!("{other:?}"),
        }
        let msg = err.with_path("/x/pyproject.toml").to_string();
        assert!(msg.starts_with("Failed to load Flower App configuration in '/x/pyproject.toml'. File may be missing or invalid. TOML syntax error at line 3, column 11: "), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = parse_pyproject_file(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pyproject.toml'"), "{msg}");
        assert!(msg.ends_with("The file does not exist."), "{msg}");
        let missing = dir.path().join("nope");
        let msg = parse_pyproject_file(&missing.join(PYPROJECT)).unwrap_err().to_string();
        assert!(msg.contains("does not exist") && msg.contains("nope"), "{msg}");
        std::fs::write(dir.path().join(PYPROJECT), VALID).unwrap();
        let (app, _) = parse_pyproject_file(dir.path()).unwrap();
        assert_eq!(app.name, "myapp");
        std::fs::write(dir.path().join(PYPROJECT), "[project]\n").unwrap();
        let msg = parse_pyproject_file(dir.path()).unwrap_err().to_string();
        assert!(msg.starts_with(&format!(
            "Invalid Flower App configuration in '{}':",
            dir.path().join(PYPROJECT).display()
        )));
    }

    #[test]
    fn license_forms() {
        let (app, _) = parse_pyproject(&VALID.replace("\"Apache-2.0\"", "{ file = \"LICENSE\" }")).unwrap();
        assert_eq!(app.license, Some(License::File(s("LICENSE"))));
        let (app, _) = parse_pyproject(&VALID.replace("\"Apache-2.0\"", "{ text = \"MIT\" }")).unwrap();
        assert_eq!(app.license, Some(License::Text(s("MIT"))));
    }

    #[test]
    fn scanning_follows_flowers_regex() {
        let p = scan_config_pairs("a=1 b=2.5 c=true d='x y' e=\"q\"");
        assert_eq!(
            p,
            vec![
                (s("a"), s("1")),
                (s("b"), s("2.5")),
                (s("c"), s("true")),
                (s("d"), s("'x y'")),
                (s("e"), s("\"q\""))
            ]
        );
        assert_eq!(scan_config_pairs("a==1"), vec![(s("a"), s("=1"))]);
        assert_eq!(scan_config_pairs("k=v=w"), vec![(s("k"), s("v=w"))]);
        assert_eq!(scan_config_pairs("a= 1"), vec![]);
        assert_eq!(scan_config_pairs("x"), vec![]);
        assert_eq!(scan_config_pairs("a='it''s'"), vec![(s("a"), s("'it'"))]);
        assert_eq!(scan_config_pairs("a='open"), vec![(s("a"), s("'open"))]);
        assert_eq!(scan_config_pairs("'a b'=1"), vec![(s("b'"), s("1"))]);
        assert_eq!(scan_config_pairs("a=\"x\" b"), vec![(s("a"), s("\"x\""))]);
        assert_eq!(
            scan_config_pairs("a=\"x y\"z=1"),
            vec![(s("a"), s("\"x y\"")), (s("z"), s("1"))]
        );
    }

    #[test]
    fn run_config_typing_and_merging() {
        let c = parse_run_config_args(&args(&["a=1 b=2.5 c=true d='x y' e=\"q\""])).unwrap();
        assert_eq!(c["a"], Scalar::Int(1));
        assert_eq!(c["b"], Scalar::Float(2.5));
        assert_eq!(c["c"], Scalar::Bool(true));
        assert_eq!(c["d"], Scalar::Str(s("x y")));
        assert_eq!(c["e"], Scalar::Str(s("q")));
        // later arguments replace whole top-level keys, as Python's dict.update
        let c = parse_run_config_args(&args(&["a.b=1", "a.c=2"])).unwrap();
        assert_eq!(c.keys().collect::<Vec<_>>(), ["a.c"]);
        let c = parse_run_config_args(&args(&["a.b=1 a.c=2"])).unwrap();
        assert_eq!(c.len(), 2);
        let c = parse_run_config_args(&args(&["a=1", "a=2"])).unwrap();
        assert_eq!(c["a"], Scalar::Int(2));
        let c = parse_run_config_args(&args(&["a={b=1}", "h=0x10", "f=1e3"])).unwrap();
        assert_eq!(c["a.b"], Scalar::Int(1));
        assert_eq!(c["h"], Scalar::Int(16));
        assert_eq!(c["f"], Scalar::Float(1000.0));
        assert!(parse_run_config_args(&args(&["", "  "])).unwrap().is_empty());
        assert!(parse_run_config_args(&[]).unwrap().is_empty());
    }

    #[test]
    fn run_config_errors() {
        let err = parse_run_config_args(&args(&["name=abc"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(INVALID_RUN_CONFIG), "{msg}");
        assert!(msg.contains("name=\"abc\""), "{msg}");
        for bad in ["a=1x=2", "k=v=w", "é=1", "a=\"x", "a=1 a=2"] {
            let err = parse_run_config_args(&args(&[bad])).unwrap_err();
            assert!(matches!(err, AppError::InvalidRunConfig { .. }), "{bad}: {err}");
        }
        let err = parse_run_config_args(&args(&["a=1", "x.toml"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TOML files cannot be passed alongside key-value pairs."
        );
        let err = parse_run_config_args(&args(&["a=[1,2]"])).unwrap_err();
        assert!(matches!(err, AppError::ConfigValueType { ref key } if key == "a"));
        let err = parse_run_config_args(&args(&["a=1979-05-27"])).unwrap_err();
        assert!(matches!(err, AppError::ConfigValueType { .. }));
    }

    #[test]
    fn words_flower_would_skip_are_errors() {
        let message = |arg: &str| parse_run_config_args(&args(&[arg])).unwrap_err().to_string();
        assert_eq!(
            message("num-server-rounds"),
            "--run-config `num-server-rounds` is not a key=value pair: write e.g. -c 'num-server-rounds=5' \
             (strings in quotes: -c 'num-server-rounds=\"text\"')"
        );
        assert_eq!(
            message("=5"),
            "--run-config `=5` has no key before `=`: write key=value pairs, e.g. -c 'lr=0.1'"
        );
        assert_eq!(
            message("k="),
            "--run-config `k=` has no value after `=`: write e.g. -c 'k=5' (an empty string is k=\"\")"
        );
        assert!(message("lr=0.1 k=").starts_with("--run-config `k=` has no value"));
        assert!(message("a= 1").starts_with("--run-config `a=` has no value"));
        assert!(message("lr=0.1 x").starts_with("--run-config `x` is not a key=value pair"));
        // An explicitly empty string is a value.
        let c = parse_run_config_args(&args(&["k=\"\" j=''"])).unwrap();
        assert_eq!(c["k"], Scalar::Str(String::new()));
        assert_eq!(c["j"], Scalar::Str(String::new()));
    }

    #[test]
    fn messages_clip_what_they_echo() {
        let long = "x".repeat(16_000);
        for arg in [
            format!("lr={long}"),
            format!("{long}="),
            long.clone(),
            format!("lr=\"{long}"),
        ] {
            let message = parse_run_config_args(&[arg]).unwrap_err().to_string();
            assert!(message.len() < 600, "{} bytes: {}", message.len(), &message[..200]);
            assert!(message.contains(&format!("{}…", "x".repeat(40))), "{message}");
        }
        let over = parse_run_config_args(&[format!("k{long}=1")]).unwrap();
        let message = fuse_run_config(&parse_pyproject(VALID).unwrap().0.config, &over)
            .unwrap_err()
            .to_string();
        assert!(message.len() < 600, "{message}");
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"é".repeat(81)), format!("{}…", "é".repeat(80)));
    }

    #[test]
    fn run_config_from_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("over.toml");
        std::fs::write(&path, "lr = 0.5\n[nested]\nx = 2\n").unwrap();
        let c = parse_run_config_args(&[path.display().to_string()]).unwrap();
        assert_eq!(c["lr"], Scalar::Float(0.5));
        assert_eq!(c["nested.x"], Scalar::Int(2));
        let err = parse_run_config_args(&[dir.path().join("missing.toml").display().to_string()]).unwrap_err();
        assert!(err.to_string().starts_with("failed to read run config file"));
    }

    #[test]
    fn fusing_checks_keys_but_not_types() {
        let (app, _) = parse_pyproject(VALID).unwrap();
        let over = parse_run_config_args(&args(&["lr=\"fast\" nested.x=5"])).unwrap();
        let fused = fuse_run_config(&app.config, &over).unwrap();
        assert_eq!(fused["lr"], Scalar::Str(s("fast")));
        assert_eq!(fused["nested.x"], Scalar::Int(5));
        assert_eq!(fused["num-server-rounds"], Scalar::Int(3));
        let over = parse_run_config_args(&args(&["nope=1"])).unwrap();
        let err = fuse_run_config(&app.config, &over).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Key 'nope' is not present in the main dictionary (known keys: flag, lr, name, nested.deeper.y, nested.x, num-server-rounds)"
        );
        let err = fuse_run_config(&UserConfig::new(), &over).unwrap_err();
        assert!(err.to_string().ends_with("defines no keys)"));
    }

    #[test]
    fn component_check_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = parse_pyproject(VALID).unwrap();
        let pkg = dir.path().join("myapp");
        std::fs::create_dir_all(&pkg).unwrap();
        let err = check_components(dir.path(), &app).unwrap_err();
        assert!(err.to_string().contains("- Unable to load module myapp.server_app"));
        std::fs::write(
            pkg.join("server_app.py"),
            "from x import ServerApp\napp = ServerApp()\n",
        )
        .unwrap();
        std::fs::write(pkg.join("client_app.py"), "def f():\n    if app == 1: pass\n").unwrap();
        let err = check_components(dir.path(), &app).unwrap_err();
        assert!(err
            .to_string()
            .contains("- Unable to find attribute app in module myapp.client_app"));
        std::fs::write(pkg.join("client_app.py"), "app: int = 3\n").unwrap();
        assert!(check_components(dir.path(), &app).is_err());
        std::fs::write(pkg.join("client_app.py"), "x = app = 3\n").unwrap();
        check_components(dir.path(), &app).unwrap();
        std::fs::write(pkg.join("client_app.py"), "__all__ = ['app']\n").unwrap();
        check_components(dir.path(), &app).unwrap();
    }
}
