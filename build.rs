//! Compiles `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set in pure Rust, tonic-prost-build generates the code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/flwr/proto/control.proto",
        "proto/flwr/proto/simulationio.proto",
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
    // The commit goes into every run's RunSubmitted event, so that a replay
    // can tell when a run was recorded by another build.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown commit".to_string());
    println!("cargo:rustc-env=FLORET_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    Ok(())
}
