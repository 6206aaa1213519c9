//! The reference results of the Python Flower Apps in `examples/`
//! (`tests/fixtures/python-apps/<example>.flower-<version>.json`, made by the
//! real Flower with `generate.py` there) still describe those examples, and
//! show them learning.
//!
//! It reads the fixtures only: it never runs Python or Flower.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixtures() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(ROOT).join("tests/fixtures/python-apps");
    let mut found: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            let measurements = name.starts_with("measurements.");
            name.contains(".flower-") && name.ends_with(".json") && !measurements
        })
        .map(|path| {
            let value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (path, value)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The `.py` and `.toml` files under `dir`, relative, outside `__pycache__`.
fn sources(dir: &Path, base: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(base).unwrap().to_path_buf();
        if relative
            .components()
            .any(|c| c == Component::Normal("__pycache__".as_ref()))
        {
            continue;
        }
        if path.is_dir() {
            sources(&path, base, found);
        } else if path.extension().is_some_and(|e| e == "py" || e == "toml") {
            found.push(relative);
        }
    }
}

/// The digest `generate.py::example_digest` writes: sha256 over
/// `relative path, NUL, content, NUL` of each source, in path order.
fn example_digest(example: &Path) -> String {
    let mut files = Vec::new();
    sources(example, example, &mut files);
    files.sort();
    let mut digest = Sha256::new();
    for relative in files {
        let name: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        digest.update(name.join("/").as_bytes());
        digest.update([0]);
        digest.update(std::fs::read(example.join(&relative)).unwrap());
        digest.update([0]);
    }
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn python_app_fixtures_match_their_examples() {
    let all = fixtures();
    assert!(!all.is_empty(), "no fixtures in tests/fixtures/python-apps");
    for (path, fixture) in all {
        let example = fixture["example"].as_str().unwrap();
        let recorded = fixture["example_sha256"].as_str().unwrap();
        assert_eq!(
            example_digest(&Path::new(ROOT).join(example)),
            recorded,
            "{example} changed since {} was made: rerun \
             `python3 tests/fixtures/python-apps/generate.py` and commit its output",
            path.display()
        );
    }
}

/// The values of `{"<round>": x}`, in round order, each through `value`.
fn by_round(rounds: &Value, value: impl Fn(&Value) -> f64) -> Vec<f64> {
    let mut pairs: Vec<(u64, f64)> = rounds
        .as_object()
        .unwrap()
        .iter()
        .map(|(round, x)| (round.parse().unwrap(), value(x)))
        .collect();
    pairs.sort_by_key(|pair| pair.0);
    pairs.into_iter().map(|pair| pair.1).collect()
}

/// The central loss a fixture records for rounds 0 (initial model) to N.
fn central_losses(fixture: &Value) -> Vec<f64> {
    match fixture["api"].as_str().unwrap() {
        "message" => by_round(&fixture["evaluate_metrics_serverapp"], |metrics| {
            metrics["central_loss"].as_f64().unwrap()
        }),
        "legacy" => by_round(&fixture["history"]["History (loss, centralized)"], |loss| {
            loss.as_f64().unwrap()
        }),
        other => panic!("unknown api {other:?}"),
    }
}

#[test]
fn python_app_fixtures_show_the_examples_learning() {
    for (path, fixture) in fixtures() {
        let losses = central_losses(&fixture);
        assert_eq!(losses.len(), 4, "{}: rounds 0..=3 expected", path.display());
        assert!(
            losses.windows(2).all(|pair| pair[1] < pair[0]),
            "{}: the central loss does not fall every round: {losses:?}",
            path.display()
        );
    }
}
