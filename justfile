# Thin aliases over cargo; CI calls cargo directly (.ci/run).

# Build the three binaries (release).
build:
    cargo build --release

# The quickstart: a real federated run, no Python needed.
quickstart: build
    target/release/flwr run examples/quickstart --stream

# The test suite (what CI runs).
test:
    cargo test

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Review pending snapshots.
snap:
    cargo insta review

# Benchmarks (numbers go to docs/PERFORMANCE.md).
bench:
    cargo bench --bench store
    cargo bench --bench simulation
    cargo bench --bench aggregation
    cargo bench --bench flower_side_by_side
