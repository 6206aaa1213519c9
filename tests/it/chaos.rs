//! The chaos program (`tools/chaos.rs`, docs/RELIABILITY.md) in a small,
//! fast configuration, so that every `cargo test` exercises it: a handful of
//! SIGKILLs of the SuperLink and its app processes under a few concurrent
//! clients, every invariant checked after every restart, zero violations.
//! Free ports and a private `FLWR_HOME`, as the program always uses.

#[path = "../../tools/chaos.rs"]
mod program;

#[test]
fn a_few_kills_under_a_few_clients_break_no_invariant() {
    let seed = crate::support::test_seed(10);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_flwr"))
        .parent()
        .unwrap()
        .to_path_buf();
    // The app process of this build's tests is next to `flwr`.
    assert!(bin.join("flwr-simulation").is_file(), "{}", bin.display());
    let options = program::Options::small(6, 4, seed, bin);
    let report = program::run(&options).expect("the chaos program runs");
    assert!(
        report.violations.is_empty(),
        "seed {seed} (FLORET_TEST_SEED={seed} repeats the schedule):\n{}",
        report.markdown()
    );
    assert_eq!(report.kills(), 6, "{}", report.markdown());
    assert_eq!(report.completed, report.replayed_identical, "{}", report.markdown());
    assert!(!report.bad_inputs.is_empty());
}
