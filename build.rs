//! Compiles `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set in pure Rust, tonic-prost-build generates the code. Also
//! computes the build's identity (git commit, dirty flag, a hash of the
//! sources, compiler and target), which every run records so that a replay
//! can tell another build from a nondeterministic app.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/flwr/proto/control.proto",
        "proto/flwr/proto/simulationio.proto",
        "proto/flwr/proto/fleet.proto",
        "proto/flwr/proto/serverappio.proto",
        "proto/floret/v1/floret.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Map fields decode into BTreeMap so that every rendering and every
        // comparison of a decoded message is ordered.
        .btree_map(".")
        // The bridge passes contents through without copying them.
        .bytes(".floret.v1.RawMessage")
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    build_identity();
    Ok(())
}

/// Runs git in the manifest directory; `None` without git or a checkout.
fn git(args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The files the build compiles or embeds, relative to the manifest directory.
fn source_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "snapshots") {
                source_files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// SHA-256 over the sources' paths and contents, in path order.
fn sources_hash() -> String {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    for dir in ["src", "proto", "data"] {
        source_files(std::path::Path::new(dir), &mut files);
    }
    files.extend(["build.rs", "Cargo.toml", "Cargo.lock"].map(std::path::PathBuf::from));
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        let content = std::fs::read(file).unwrap_or_default();
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets `FLORET_*` environment variables for `src/provenance.rs`.
fn build_identity() {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
    let dirty = commit
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]));
    let sources = sources_hash();
    let short = commit.as_deref().map(|c| &c[..c.len().min(12)]);
    let id = match (short, &dirty) {
        (Some(commit), Some(changes)) if !changes.is_empty() => format!("{commit}-dirty, sources {}", &sources[..12]),
        (Some(commit), _) => format!("{commit}, sources {}", &sources[..12]),
        (None, _) => format!("no git, sources {}", &sources[..12]),
    };
    let rustc = std::process::Command::new(env("RUSTC"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=FLORET_COMMIT={}", commit.as_deref().unwrap_or(""));
    println!(
        "cargo:rustc-env=FLORET_DIRTY={}",
        dirty.map(|d| (!d.is_empty()).to_string()).unwrap_or_default()
    );
    println!("cargo:rustc-env=FLORET_SOURCES={sources}");
    println!("cargo:rustc-env=FLORET_BUILD_ID={id}");
    println!("cargo:rustc-env=FLORET_RUSTC={rustc}");
    println!("cargo:rustc-env=FLORET_TARGET={}", env("TARGET"));
    println!("cargo:rustc-env=FLORET_PROFILE={}", env("PROFILE"));
    println!(
        "cargo:rustc-env=FLORET_TARGET_FEATURES={}",
        env("CARGO_CFG_TARGET_FEATURE")
    );
    for path in ["src", "data", "build.rs", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    // A commit or a checkout changes HEAD and the index (also in worktrees,
    // where `.git` is a file).
    for name in ["HEAD", "index"] {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
