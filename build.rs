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
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
