//! Architecture invariants, enforced under `cargo test` (rust-analyzer's
//! tidy tests): module docs everywhere, SQL only in `store`, a pure core, and
//! prost types only at the boundary.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src()).unwrap().display().to_string()
}

/// The code of a file without its `#[cfg(test)]` module and comments.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(index) => &text[..index],
        None => &text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_starts_with_a_module_doc() {
    let missing: Vec<String> = sources(&src())
        .iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().trim_start().starts_with("//!"))
        .map(|p| relative(p))
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` doc: {missing:?}");
}

#[test]
fn only_the_store_contains_sql() {
    let offenders: Vec<String> = sources(&src())
        .iter()
        .filter(|p| !relative(p).starts_with("store/"))
        .filter(|p| {
            let code = code_of(p);
            code.contains("rusqlite") || code.contains("SELECT ") || code.contains("INSERT INTO")
        })
        .map(|p| relative(p))
        .collect();
    assert!(offenders.is_empty(), "SQL outside src/store: {offenders:?}");
}

#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    let forbidden = [
        "std::fs",
        "std::net",
        "tokio",
        "tonic",
        "rusqlite",
        "SystemTime",
        "Instant",
        "getrandom",
        "thread_rng",
        "HashMap",
        "HashSet",
        "std::env",
    ];
    let mut offenders = Vec::new();
    for path in sources(&src().join("domain")) {
        let code = code_of(&path);
        for word in forbidden {
            if code.contains(word) {
                offenders.push(format!("{}: {word}", relative(&path)));
            }
        }
    }
    // The simulation engine, strategies and workloads are pure too, except
    // for the one log line that reports elapsed time (sim/mod.rs, Instant).
    for dir in ["sim", "strategy", "workload"] {
        for path in sources(&src().join(dir)) {
            let code = code_of(&path);
            for word in forbidden {
                if word == "Instant" && relative(&path) == "sim/mod.rs" {
                    continue;
                }
                if code.contains(word) {
                    offenders.push(format!("{}: {word}", relative(&path)));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "impure code in the core: {offenders:?}");
}

#[test]
fn prost_types_stay_at_the_boundary() {
    let allowed = |path: &str| {
        path == "proto.rs"
            || path == "traffic.rs"
            || path == "simulation.rs"
            || path.starts_with("superlink/")
            || path.starts_with("cli/")
    };
    let offenders: Vec<String> = sources(&src())
        .iter()
        .filter(|p| !allowed(&relative(p)))
        .filter(|p| {
            let code = code_of(p);
            code.contains("proto::flwr") || code.contains("proto::floret") || code.contains("prost")
        })
        .map(|p| relative(p))
        .collect();
    assert!(
        offenders.is_empty(),
        "protobuf types outside the boundary: {offenders:?}"
    );
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let mut offenders = Vec::new();
    for dir in [src(), Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")] {
        for path in sources(&dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains(concat!("#[", "ignore")) || text.contains(concat!("#[", "should_panic")) {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}
