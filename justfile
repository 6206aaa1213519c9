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

# The chaos program: kills the SuperLink and its app processes under 50
# clients and checks the invariants after every restart (docs/RELIABILITY.md).
# `just chaos --kills 20 --clients 5`, `just chaos --seed N` to repeat a schedule.
chaos *ARGS="--kills 1000 --clients 50": build
    cargo run --release --example chaos -- {{ARGS}}

# Review pending snapshots.
snap:
    cargo insta review

# Benchmarks (numbers go to docs/PERFORMANCE.md).
bench:
    cargo bench --bench store
    cargo bench --bench simulation
    cargo bench --bench aggregation
    cargo bench --bench flower_side_by_side
