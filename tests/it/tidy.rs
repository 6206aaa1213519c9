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
            || path.starts_with("bridge/")
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

/// The files whose computations reach an event or an aggregated model.
fn recorded_path() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["sim", "strategy", "workload", "domain", "store", "bridge"] {
        files.extend(sources(&src().join(dir)));
    }
    for file in [
        "builtin.rs",
        "clientapp.rs",
        "mods.rs",
        "records.rs",
        "replay.rs",
        "simulation.rs",
    ] {
        files.push(src().join(file));
    }
    files
}

/// Every recorded number is computed by the same code on every CPU and C
/// library (docs/REPLAY.md): transcendental functions come from `src/math.rs`
/// (pure Rust), never from the standard library's methods (which call the
/// platform's libm, whose glibc variants depend on the CPU); no fused
/// multiply-add, no CPU-specific intrinsics.
#[test]
fn the_recorded_path_computes_without_the_platform_libm() {
    let functions = [
        "exp", "exp2", "exp_m1", "ln", "ln_1p", "log2", "log10", "powf", "powi", "sin", "cos", "tan", "sin_cos",
        "sinh", "cosh", "tanh", "asin", "acos", "atan", "atan2", "asinh", "acosh", "atanh", "cbrt", "hypot", "gamma",
        "ln_gamma", "mul_add",
    ];
    let mut forbidden: Vec<String> = functions.iter().map(|f| format!(".{f}(")).collect();
    for float in ["f32", "f64"] {
        forbidden.extend(functions.iter().map(|f| format!("{float}::{f}(")));
        forbidden.push(format!("{float}::log("));
    }
    forbidden.extend(
        [
            "std::arch",
            "core::arch",
            "is_x86_feature_detected",
            "is_aarch64_feature_detected",
            "libm::",
        ]
        .map(String::from),
    );
    let mut offenders = Vec::new();
    for path in recorded_path() {
        let code = code_of(&path);
        for word in &forbidden {
            if code.contains(word.as_str()) {
                offenders.push(format!("{}: {word}", relative(&path)));
            }
        }
        // `x.log(base)`; `sink.log(level, line)` and `.log(Level::Error, ..)`
        // are log lines.
        let is_log_line = |rest: &str| {
            let rest = rest.trim_start();
            rest.starts_with("level") || rest.starts_with("Level::")
        };
        if code.match_indices(".log(").any(|(at, _)| !is_log_line(&code[at + 5..])) {
            offenders.push(format!("{}: .log(", relative(&path)));
        }
    }
    assert!(
        offenders.is_empty(),
        "platform math on the recorded path (use crate::math): {offenders:?}"
    );
}

/// The build must not enable CPU features that would let the compiler or a
/// crate choose other float code: FMA contraction is never done by rustc, but
/// `target-cpu=native` or `+fma` in the repository's cargo configuration
/// would make builds differ by machine (docs/REPLAY.md).
#[test]
fn the_build_configuration_sets_no_cpu_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in [".cargo/config.toml", ".cargo/config"] {
        let Ok(text) = std::fs::read_to_string(root.join(name)) else {
            continue;
        };
        for word in ["target-cpu", "target-feature", "fast-math"] {
            assert!(!text.contains(word), "{name} sets {word}");
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let libm = manifest
        .lines()
        .find(|l| l.starts_with("libm "))
        .expect("libm is a dependency");
    assert!(
        libm.contains("default-features = false"),
        "libm must be used without its `arch` feature (no code chosen by CPU at run time)"
    );
}
