//! Architecture invariants, enforced under `cargo test` (rust-analyzer's
//! tidy tests): module docs everywhere, SQL only in `store`, a pure core,
//! prost types only at the boundary, one direction of dependencies, typed
//! errors (no `Result<_, String>`) in library code, and generated fixtures
//! that keep their generator scripts.

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
    let pure_files = ["prng.rs", "codec.rs", "params.rs", "clientapp.rs"].map(|f| src().join(f));
    let core = ["sim", "strategy", "workload"]
        .iter()
        .flat_map(|dir| sources(&src().join(dir)))
        .chain(pure_files);
    for path in core {
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
    assert!(offenders.is_empty(), "impure code in the core: {offenders:?}");
}

#[test]
fn prost_types_stay_at_the_boundary() {
    let allowed = |path: &str| {
        path == "proto.rs"
            || path == "objects.rs"
            || path == "traffic.rs"
            || path == "simulation.rs"
            || path == "serverapp.rs"
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
        "codec.rs",
        "mods.rs",
        "prng.rs",
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

/// The functions of a Rust source (name, body), found by brace matching
/// from each `fn NAME(`; good enough for test code.
fn functions(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("fn ") {
        let after = &rest[at + 3..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let Some(open) = after.find('{') else { break };
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        found.push((name, after[..end].to_string()));
        rest = &after[end..];
    }
    found
}

/// Seeded tests that do not say how to rerun their seed.
fn seeded_without_rerun_line(source: &str) -> Vec<String> {
    functions(source)
        .into_iter()
        .filter(|(name, body)| name != "test_seed" && body.contains("test_seed(") && !body.contains("FLORET_TEST_SEED"))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn every_seeded_test_prints_the_seed_that_reproduces_it() {
    // The check itself can fail.
    assert_eq!(
        seeded_without_rerun_line("fn a() { let seed = test_seed(1); assert!(true); }\nfn b() { let s = test_seed(2); assert!(x, \"FLORET_TEST_SEED={s}\"); }"),
        ["a"]
    );
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut offenders = Vec::new();
    let mut seeded = 0;
    for path in sources(&tests) {
        let source = std::fs::read_to_string(&path).unwrap();
        seeded += functions(&source)
            .iter()
            .filter(|(n, b)| n != "test_seed" && b.contains("test_seed("))
            .count();
        for name in seeded_without_rerun_line(&source) {
            offenders.push(format!("{}: {name}", path.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        seeded >= 8,
        "only {seeded} seeded tests found: is the scan still right?"
    );
    assert!(
        offenders.is_empty(),
        "seeded tests whose failures do not name FLORET_TEST_SEED=<seed>: {offenders:?}"
    );
}

/// The top-level modules each top-level module may import (`crate::X` in
/// its non-test code): the direction of dependencies of
/// docs/ARCHITECTURE.md. A new edge is a decision: add it here, and say
/// in docs/ARCHITECTURE.md why when it crosses a layer.
const ALLOWED_IMPORTS: &[(&str, &[&str])] = &[
    ("app", &["pyfmt", "records"]),
    (
        "bridge",
        &[
            "builtin",
            "clientapp",
            "domain",
            "fab",
            "flwr_log",
            "prng",
            "proto",
            "records",
            "sim",
        ],
    ),
    (
        "builtin",
        &[
            "app",
            "clientapp",
            "fab",
            "federation",
            "flwr_log",
            "mods",
            "params",
            "prng",
            "pyfmt",
            "records",
            "sim",
            "strategy",
            "workload",
        ],
    ),
    (
        "cli",
        &[
            "app",
            "bridge",
            "builtin",
            "codec",
            "domain",
            "fab",
            "federation",
            "flwr_log",
            "host",
            "owner_only",
            "proto",
            "records",
            "replay",
            "timeline",
            "wire",
        ],
    ),
    ("clientapp", &["flwr_log", "prng", "records"]),
    ("codec", &["domain"]),
    ("domain", &["records"]),
    ("fab", &["app", "pyfmt"]),
    ("federation", &["app", "pyfmt", "records"]),
    ("flwr_log", &[]),
    ("host", &["domain"]),
    ("kernels", &["prng", "records"]),
    ("logfile", &["owner_only"]),
    ("math", &[]),
    ("mutation", &[]),
    (
        "mods",
        &["clientapp", "flwr_log", "kernels", "math", "params", "pyfmt", "records"],
    ),
    ("objects", &["proto", "records"]),
    ("owner_only", &[]),
    ("params", &["app", "pyfmt", "records"]),
    ("prng", &["math"]),
    ("proto", &["app", "domain", "records"]),
    ("provenance", &["domain"]),
    ("pyfmt", &[]),
    ("records", &[]),
    (
        "replay",
        &[
            "bridge",
            "builtin",
            "codec",
            "domain",
            "fab",
            "flwr_log",
            "host",
            "provenance",
            "records",
            "sim",
        ],
    ),
    (
        "sim",
        &[
            "clientapp",
            "domain",
            "flwr_log",
            "prng",
            "records",
            "strategy",
            "traffic",
        ],
    ),
    (
        "serverapp",
        &[
            "bridge", "builtin", "codec", "domain", "fab", "flwr_log", "host", "objects", "prng", "proto", "records",
            "sim", "strategy", "wire",
        ],
    ),
    (
        "simulation",
        &[
            "bridge",
            "builtin",
            "codec",
            "domain",
            "fab",
            "flwr_log",
            "host",
            "proto",
            "provenance",
            "records",
            "sim",
            "wire",
        ],
    ),
    ("store", &["codec", "domain", "records"]),
    (
        "strategy",
        &[
            "app", "domain", "flwr_log", "kernels", "math", "params", "prng", "pyfmt", "records",
        ],
    ),
    (
        "superlink",
        &[
            "app",
            "bridge",
            "builtin",
            "codec",
            "domain",
            "fab",
            "federation",
            "host",
            "objects",
            "owner_only",
            "proto",
            "records",
            "store",
            "wire",
        ],
    ),
    ("timeline", &["domain", "flwr_log", "pyfmt", "records", "strategy"]),
    ("traffic", &["records"]),
    ("wire", &[]),
    ("workload", &["math", "prng", "pyfmt", "records"]),
];

/// `crate::X` imports of each top-level module of `src/` (non-test code).
fn module_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let top = |path: &Path| {
        let relative = relative(path);
        let first = relative.split('/').next().unwrap().to_string();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: std::collections::BTreeSet<String> = sources(&src())
        .iter()
        .map(|p| top(p))
        .filter(|m| m != "bin" && m != "lib")
        .collect();
    let mut imports: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        modules.iter().map(|m| (m.clone(), Default::default())).collect();
    for path in sources(&src()) {
        let module = top(&path);
        if !modules.contains(&module) {
            continue;
        }
        let code = code_of(&path);
        for piece in code.split("crate::").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name != module && modules.contains(&name) {
                imports.get_mut(&module).unwrap().insert(name);
            }
        }
    }
    imports
}

#[test]
fn dependencies_between_modules_go_one_way() {
    let imports = module_imports();
    let allowed: std::collections::BTreeMap<&str, &[&str]> = ALLOWED_IMPORTS.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, uses) in &imports {
        let Some(permitted) = allowed.get(module.as_str()) else {
            problems.push(format!("`{module}` is not in ALLOWED_IMPORTS"));
            continue;
        };
        for used in uses {
            if !permitted.contains(&used.as_str()) {
                problems.push(format!(
                    "`{module}` imports `{used}`, which ALLOWED_IMPORTS does not allow"
                ));
            }
        }
    }
    for (module, _) in ALLOWED_IMPORTS {
        if !imports.contains_key(*module) {
            problems.push(format!("ALLOWED_IMPORTS names `{module}`, which is not a module"));
        }
    }
    // And the allowed graph has no cycle but the known one.
    let reaches = |from: &str, to: &str| {
        let mut stack = vec![from.to_string()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(at) = stack.pop() {
            for next in allowed.get(at.as_str()).copied().unwrap_or_default() {
                if *next == to {
                    return true;
                }
                if seen.insert(next.to_string()) {
                    stack.push(next.to_string());
                }
            }
        }
        false
    };
    for (module, uses) in ALLOWED_IMPORTS {
        for used in *uses {
            if reaches(used, module) {
                problems.push(format!("`{module}` -> `{used}` closes a cycle"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every text file under `dirs` (recursively), skipping build output and files that are not UTF-8.
fn text_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if std::fs::read_to_string(&path).is_ok() {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        walk(dir, &mut files);
    }
    files.sort();
    files
}

/// The generator scripts `text` names: words ending in `.py`, `.sh` or `.rs` that are under
/// `tools/`, or are called `gen_*` or `generate.*` (a path, or a bare file name).
fn generator_references(text: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let mut found = Vec::new();
    for word in text.split(|c: char| !is_name_char(c)) {
        let word = word.trim_end_matches('.');
        let Some((stem, ext)) = word.rsplit_once('.') else {
            continue;
        };
        let base = stem.rsplit('/').next().unwrap_or(stem);
        if base.is_empty() || !matches!(ext, "py" | "sh" | "rs") {
            continue;
        }
        let named_generator = ext != "rs" && (base.starts_with("gen_") || base == "generate");
        if word.contains("tools/") || named_generator {
            found.push(word.to_string());
        }
    }
    found
}

/// A reference resolves when it is a path from the repository root or from the referring file's
/// folder (`../` allowed), or, for a bare file name, when some file in the repository has it.
fn reference_resolves(root: &Path, from: &Path, reference: &str, all_names: &[String]) -> bool {
    if !reference.contains('/') {
        return all_names.iter().any(|n| n == reference);
    }
    let from_root = reference.trim_start_matches("./");
    let from_tools = reference.find("tools/").map(|i| &reference[i..]);
    root.join(from_root).is_file()
        || from.parent().is_some_and(|dir| dir.join(reference).is_file())
        || from_tools.is_some_and(|t| root.join(t).is_file())
}

fn dangling_generator_references(root: &Path, files: &[PathBuf], all_names: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).unwrap();
        for reference in generator_references(&text) {
            if !reference_resolves(root, path, &reference, all_names) {
                let shown = path.strip_prefix(root).unwrap_or(path).display();
                problems.push(format!("{shown} names `{reference}`, which is not in the repository"));
            }
        }
    }
    problems
}

/// Generated fixtures keep their generators: every script a comment or a fixture header in `src/`,
/// `tests/`, `tools/`, `benches/`, `examples/` or `docs/` names (a `tools/…` file, a `gen_…` or a
/// `generate.…` script) exists, so an expected value can always be made again.
#[test]
fn every_named_generator_script_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs: Vec<PathBuf> = ["src", "tests", "tools", "benches", "examples", "docs"]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
    let files = text_files(&dirs);
    let mut all_names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    all_names.sort();
    all_names.dedup();
    let problems = dangling_generator_references(root, &files, &all_names);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check itself can fail: a comment naming scripts that are not there is reported.
    let scratch = tempfile::tempdir().unwrap();
    let bogus = scratch.path().join("bogus.rs");
    let missing = ["tools/gen_nothing_here", "py"].join(".");
    let bare = ["gen_nowhere", "py"].join(".");
    std::fs::write(
        &bogus,
        format!("/// Generated by `python3 {missing}`; see also {bare}.\n"),
    )
    .unwrap();
    let problems = dangling_generator_references(root, &[bogus], &all_names);
    assert_eq!(problems.len(), 2, "{problems:?}");
}

/// `source` without its `#[cfg(test)]` items (up to their `;` or the end
/// of their braces) and comment lines, each line of them kept empty so that
/// line numbers stay true.
fn non_test_code(source: &str) -> String {
    let mut code = String::new();
    let mut rest = source;
    while let Some(at) = rest.find("#[cfg(test)]") {
        code.push_str(&rest[..at]);
        let item = &rest[at..];
        let end = match (item.find(';'), item.find('{')) {
            (Some(semi), Some(open)) if semi < open => semi + 1,
            (Some(semi), None) => semi + 1,
            (_, Some(open)) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (i, c) in item[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => item.len(),
        };
        code.push_str(&"\n".repeat(item[..end].matches('\n').count()));
        rest = &item[end..];
    }
    code.push_str(rest);
    code.lines()
        .map(|l| if l.trim_start().starts_with("//") { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `Result<T, String>` of `source`'s non-test code, as
/// `line: Result<...>`. `Result<` is matched after any path
/// (`std::result::Result<`); its arguments are split at top-level commas.
fn string_errors(source: &str) -> Vec<String> {
    let code = non_test_code(source);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("Result<") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue; // `MyResult<`, not `Result<`
        }
        let args_start = at + "Result<".len();
        let (mut depth, mut last_comma, mut end) = (0usize, None, None);
        for (i, c) in code[args_start..].char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' if depth == 0 => {
                    end = Some(args_start + i);
                    break;
                }
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => last_comma = Some(args_start + i),
                _ => {}
            }
        }
        let (Some(comma), Some(end)) = (last_comma, end) else {
            continue;
        };
        let error = code[comma + 1..end].trim();
        if matches!(error, "String" | "std::string::String" | "string::String") {
            let line = code[..at].matches('\n').count() + 1;
            found.push(format!("{line}: {}", &code[at..=end]));
        }
    }
    found
}

/// docs/ARCHITECTURE.md, "Errors": library code returns typed errors (one
/// thiserror enum per module), never `Result<_, String>`; text is made
/// where an error is shown.
#[test]
fn library_code_returns_no_string_errors() {
    // The check itself can fail.
    assert_eq!(
        string_errors(
            "fn a() -> Result<Vec<(u8, u8)>, String> {}\nfn b() -> Result<(), Error> {}\n// fn c() -> Result<(), String>\n\
             let f = |x: &str| -> std::result::Result<Option<String>, String> { x };\ntype P = io::Result<String>;\n\
             fn g() -> MyResult<u8, String> {}\n#[cfg(test)]\nmod t {\n fn t() -> Result<(), String> {}\n}\n\
             #[cfg(test)]\nmod u;\nfn h() -> Result<u8, String>;"
        ),
        [
            "1: Result<Vec<(u8, u8)>, String>",
            "4: Result<Option<String>, String>",
            "13: Result<u8, String>"
        ]
    );
    let bin = src().join("bin");
    let mut offenders = Vec::new();
    for path in sources(&src()).into_iter().filter(|p| !p.starts_with(&bin)) {
        for found in string_errors(&std::fs::read_to_string(&path).unwrap()) {
            offenders.push(format!("src/{}:{found}", relative(&path)));
        }
    }
    assert!(
        offenders.is_empty(),
        "library code with `Result<_, String>` (give the module's error enum a variant instead):\n{}",
        offenders.join("\n")
    );
}
