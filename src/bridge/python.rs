//! Which Python interpreter runs a user's app, and what it has installed.
//!
//! The rule (docs/APPS.md): `FLWR_PYTHON` if set; else the active virtual
//! environment's interpreter (`$VIRTUAL_ENV/bin/python`); else `python3` on
//! `PATH`, else `python`. `flwr run` applies it in the user's shell and sends
//! the result with the run (federation option `python`), so the interpreter
//! of the environment the user ran `flwr` from is the one that runs the app,
//! whichever environment started the SuperLink. `--federation-config
//! python=PATH` overrides it for one run.
//!
//! A probe asks the interpreter for its versions without importing flwr
//! (~50 ms): a missing interpreter or a missing `flwr` is a clear error before
//! the run starts.
//!
//! This module runs the interpreter only to probe it; it never loads apps.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The federation option that names the interpreter of a run.
pub(crate) const PYTHON_OPTION: &str = "python";

/// The oldest `flwr` the bridge supports (the generation floret is wired for).
const FLWR_OLDEST: (u32, u32) = (1, 27);
/// The newest `flwr` the bridge was tested with; newer ones run with a warning.
const FLWR_NEWEST_TESTED: (u32, u32) = (1, 42);

/// Why no usable interpreter was found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "no Python interpreter found to run the app's Python components: {tried}. Install Python 3 with `flwr`, \
         or set FLWR_PYTHON to the interpreter of the virtual environment where `flwr` is installed"
    )]
    NotFound { tried: String },
    #[error("the Python interpreter {path} does not start: {reason}")]
    Broken { path: String, reason: String },
    #[error(
        "the Python interpreter {path} has no `flwr` package, which running the app's Python components needs. \
         Install it there (`{path} -m pip install flwr`), or set FLWR_PYTHON to the interpreter of the virtual \
         environment where it is installed"
    )]
    NoFlower { path: String },
    #[error(
        "the Python interpreter {path} has flwr {version}; running Python apps needs flwr {}.{} or newer \
         (`{path} -m pip install -U flwr`)",
        FLWR_OLDEST.0,
        FLWR_OLDEST.1
    )]
    TooOld { path: String, version: String },
}

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub path: String,
    pub python: String,
    pub flwr: String,
    pub numpy: Option<String>,
    pub torch: Option<String>,
    pub tensorflow: Option<String>,
    pub sklearn: Option<String>,
}

/// A warning for the run's log when `flwr` (the version the interpreter
/// reported) is newer than the bridge was tested with.
pub(crate) fn newer_than_tested(flwr: &str, interpreter: &Path) -> Option<String> {
    let version = parse_version(flwr)?;
    (version > FLWR_NEWEST_TESTED).then(|| {
        format!(
            "flwr {flwr} in {} is newer than floret's Python bridge was tested with ({}.{}); if the app misbehaves, \
             try flwr {}.{}",
            interpreter.display(),
            FLWR_NEWEST_TESTED.0,
            FLWR_NEWEST_TESTED.1,
            FLWR_NEWEST_TESTED.0,
            FLWR_NEWEST_TESTED.1
        )
    })
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// Applies the rule to an environment (`var` reads a variable, `path`
/// lists `PATH`). The result is absolute but not canonicalized: a virtual
/// environment's `bin/python` is a symlink whose target is another
/// environment.
pub fn resolve(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, Error> {
    let mut tried = Vec::new();
    if let Some(path) = var("FLWR_PYTHON").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if let Some(found) = find_executable(&path, &var) {
            return Ok(found);
        }
        // An explicit choice is not second-guessed.
        return Err(Error::NotFound {
            tried: format!("FLWR_PYTHON={} does not exist or is not executable", path.display()),
        });
    }
    if let Some(venv) = var("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        let candidate = PathBuf::from(venv).join("bin").join("python");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        tried.push(format!("{} (from VIRTUAL_ENV)", candidate.display()));
    }
    for name in ["python3", "python"] {
        if let Some(found) = find_executable(Path::new(name), &var) {
            return Ok(found);
        }
        tried.push(format!("{name} on PATH"));
    }
    Err(Error::NotFound {
        tried: tried.join(", "),
    })
}

/// The interpreter the process's own environment names.
pub(crate) fn resolve_here() -> Result<PathBuf, Error> {
    resolve(|name| std::env::var_os(name))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A path with a directory part is taken as is (made absolute); a bare name
/// is looked up on `PATH`.
fn find_executable(name: &Path, var: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if name.components().count() > 1 || name.is_absolute() {
        let absolute = if name.is_absolute() {
            name.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(name)
        };
        return is_executable(&absolute).then_some(absolute);
    }
    let path = var("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// What the probe runs: versions from package metadata, no imports.
const PROBE: &str = r#"
import json, sys, importlib.metadata as m
def v(name):
    try:
        return m.version(name)
    except Exception:
        return None
print(json.dumps({"python": sys.version.split()[0], "flwr": v("flwr"), "numpy": v("numpy"),
                  "torch": v("torch"), "tensorflow": v("tensorflow"), "sklearn": v("scikit-learn")}))
"#;

/// Runs the probe (bounded: 30 s).
pub fn probe(path: &Path) -> Result<Probe, Error> {
    let shown = path.display().to_string();
    let broken = |reason: String| Error::Broken {
        path: shown.clone(),
        reason,
    };
    let mut child = Command::new(path)
        .args(["-c", PROBE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| broken(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(broken("it did not answer within 30 s".into()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(broken(e.to_string())),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if !status.success() {
        let last = stderr.lines().last().unwrap_or("").trim().to_string();
        return Err(broken(format!("{status}: {last}")));
    }
    #[derive(Deserialize)]
    struct Answer {
        python: String,
        flwr: Option<String>,
        numpy: Option<String>,
        torch: Option<String>,
        tensorflow: Option<String>,
        sklearn: Option<String>,
    }
    let answer: Answer = serde_json::from_str(stdout.trim()).map_err(|e| broken(format!("unreadable probe: {e}")))?;
    let Some(flwr) = answer.flwr else {
        return Err(Error::NoFlower { path: shown });
    };
    if parse_version(&flwr).is_some_and(|v| v < FLWR_OLDEST) {
        return Err(Error::TooOld {
            path: shown,
            version: flwr,
        });
    }
    Ok(Probe {
        path: shown,
        python: answer.python,
        flwr,
        numpy: answer.numpy,
        torch: answer.torch,
        tensorflow: answer.tensorflow,
        sklearn: answer.sklearn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).map(OsString::from)
    }

    fn executable(dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_rule_prefers_flwr_python_then_the_venv_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = executable(dir.path(), "explicit/python");
        let venv = executable(dir.path(), "venv/bin/python");
        let on_path = executable(dir.path(), "bin/python3");
        let path = dir.path().join("bin");
        let path = path.to_str().unwrap();
        let venv_dir = dir.path().join("venv");
        let venv_dir = venv_dir.to_str().unwrap();
        let explicit_str = explicit.to_str().unwrap();
        let all = [("FLWR_PYTHON", explicit_str), ("VIRTUAL_ENV", venv_dir), ("PATH", path)];
        assert_eq!(resolve(env(&all)).unwrap(), explicit);
        assert_eq!(resolve(env(&all[1..])).unwrap(), venv);
        assert_eq!(resolve(env(&all[2..])).unwrap(), on_path);
        let missing = resolve(env(&[("FLWR_PYTHON", "/nonexistent/python"), ("PATH", path)])).unwrap_err();
        assert!(
            missing.to_string().contains("FLWR_PYTHON=/nonexistent/python"),
            "{missing}"
        );
        let none = resolve(env(&[("PATH", "/nonexistent")])).unwrap_err();
        assert!(none.to_string().contains("python3 on PATH"), "{none}");
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(parse_version("1.27.0"), Some((1, 27)));
        assert_eq!(parse_version("1.42.0rc1"), Some((1, 42)));
        assert_eq!(parse_version("2.0"), Some((2, 0)));
        assert!(parse_version("1.26.1").unwrap() < FLWR_OLDEST);
    }

    #[test]
    fn only_a_flwr_newer_than_tested_gets_a_warning() {
        let python = Path::new("/v/bin/python");
        assert_eq!(newer_than_tested("1.27.0", python), None);
        assert_eq!(newer_than_tested("1.42.3", python), None);
        let warning = newer_than_tested("1.43.0", python).unwrap();
        assert!(warning.contains("flwr 1.43.0 in /v/bin/python is newer"), "{warning}");
        assert!(warning.contains("try flwr 1.42"), "{warning}");
        assert_eq!(newer_than_tested("", python), None);
    }
}
