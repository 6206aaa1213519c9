//! `flwr replay`'s engine: a live run followed by a replay is identical,
//! also for stopped, failed, faulty and truncated runs; a nondeterministic
//! ClientApp is caught at the first affected event, naming the node.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use floret::clientapp::{ClientApp, ClientEnv};
use floret::domain::event::{Event, Phase, RunFinished, SubStatus};
use floret::records::{Context, Error, Message, MetricValue, Record, RecordDict};
use floret::replay::{replay, replay_with, VerdictOutcome};
use floret::sim::{Apps, Inputs, Recorder};
use proptest::prelude::*;

use crate::support::{completed, snapshot_settings, TestRun};

const CONFIG: &str = "num-server-rounds = 3\nfraction-train = 0.5\nlr = 0.5\nbatch-size = 8";

fn verdict_text(verdict: &floret::replay::Verdict) -> String {
    floret::cli::replay::render_verdict(verdict, false, false)
}

fn build_filters() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"floret \d+\.\d+\.\d+ \([^)]*\)", "floret [build]");
    settings.bind_to_scope()
}

#[test]
fn a_completed_run_replays_identically() {
    let _settings = build_filters();
    for seed in [1, 42] {
        let run = TestRun::new("logreg", CONFIG, 10, seed);
        let mut live = Recorder::default();
        run.simulate(2, &mut live);
        let record = run.record(&live.events, completed());
        let verdict = replay(&record, 4, None).unwrap();
        assert_eq!(verdict.outcome, VerdictOutcome::Identical, "FLORET_TEST_SEED={seed}");
        assert_eq!(verdict.events_compared, live.events.len());
        insta::assert_snapshot!(format!("replay_verdict_seed_{seed}"), verdict_text(&verdict));
    }
}

#[test]
fn timeline_of_a_small_run() {
    let _settings = snapshot_settings();
    let run = TestRun::new(
        "logreg",
        "num-server-rounds = 2\nfraction-train = 0.5\nfraction-evaluate = 0.5",
        4,
        7,
    );
    let mut live = Recorder::default();
    run.simulate(1, &mut live);
    let record = run.record(&live.events, completed());
    let stored: Vec<_> = record
        .events
        .iter()
        .map(|e| floret::domain::views::StoredEvent {
            seq: e.seq,
            run_id: floret::domain::ids::RunId(77),
            at: e.at,
            event: floret::codec::decode(&e.kind, e.version, &e.payload).unwrap(),
        })
        .collect();
    let mut text = floret::timeline::render(&stored, false);
    // The build line changes with every commit.
    text = text.replace(floret::BUILD, "floret [build]");
    insta::assert_snapshot!("timeline_seed_7", text);
}

#[test]
fn a_stopped_run_replays_with_the_stop_reinjected() {
    let run = TestRun::new("logreg", CONFIG, 10, 3);
    let mut live = Recorder {
        stop_at: Some((2, "evaluate replies".into())),
        ..Recorder::default()
    };
    run.simulate(2, &mut live);
    let stopped = RunFinished {
        sub_status: SubStatus::Stopped,
        details: "Task stopped by user.".into(),
    };
    let verdict = replay(&run.record(&live.events, Some(stopped)), 2, None).unwrap();
    assert_eq!(verdict.outcome, VerdictOutcome::Identical);
    assert_eq!(
        verdict.reinjected,
        ["the stop request, in round 2 before evaluate replies"]
    );
}

#[test]
fn injected_faults_are_reinjected() {
    let run = TestRun::new(
        "logreg",
        &CONFIG.replace("fraction-train = 0.5", "fraction-train = 1.0"),
        10,
        4,
    );
    let node = floret::sim::node_ids(4, 10)[3];
    let mut live = Recorder {
        faults: vec![(2, Phase::Train, node)],
        ..Recorder::default()
    };
    run.simulate(2, &mut live);
    let verdict = replay(&run.record(&live.events, completed()), 2, None).unwrap();
    assert_eq!(verdict.outcome, VerdictOutcome::Identical);
    assert_eq!(
        verdict.reinjected,
        [format!("a fault of node {node} in round 2 (train)")]
    );
}

#[test]
fn a_failed_run_replays_identically() {
    let all = (0..10).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let run = TestRun::new(
        "logreg",
        &format!("num-server-rounds = 2\nfault.fail-partitions = \"{all}\""),
        10,
        5,
    );
    let mut live = Recorder::default();
    run.simulate(2, &mut live);
    let failed = RunFinished {
        sub_status: SubStatus::Failed,
        details: "Round 1 (train): ...".into(),
    };
    let verdict = replay(&run.record(&live.events, Some(failed)), 2, None).unwrap();
    assert_eq!(verdict.outcome, VerdictOutcome::Identical);
}

#[test]
fn a_record_cut_short_by_a_crash_is_truncated() {
    let run = TestRun::new("logreg", CONFIG, 10, 6);
    let mut live = Recorder::default();
    run.simulate(2, &mut live);
    let cut = live.events.len() / 2;
    let crashed = RunFinished {
        sub_status: SubStatus::Failed,
        details: "flwr-simulation was killed".into(),
    };
    let verdict = replay(&run.record(&live.events[..cut], Some(crashed)), 2, None).unwrap();
    assert_eq!(verdict.outcome, VerdictOutcome::Truncated);
    assert_eq!(verdict.events_compared, cut);
}

#[test]
fn until_round_compares_a_prefix() {
    let run = TestRun::new("logreg", CONFIG, 10, 8);
    let mut live = Recorder::default();
    run.simulate(2, &mut live);
    let verdict = replay(&run.record(&live.events, completed()), 2, Some(1)).unwrap();
    assert_eq!(verdict.outcome, VerdictOutcome::Identical);
    assert!(verdict.events_compared < verdict.events_recorded);
    assert_eq!(verdict.rounds, 1);
}

/// A ClientApp whose training replies, from round 2 on, carry a number that
/// depends on how often it was called before: state outside the seed.
struct Nondeterministic {
    inner: Arc<dyn ClientApp>,
    calls: Arc<AtomicI64>,
}

impl ClientApp for Nondeterministic {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        let mut reply = self.inner.handle(message, context, env)?;
        let round = message
            .content()
            .and_then(|c| c.config("config"))
            .and_then(|c| c.get("server-round"))
            .cloned();
        if message.metadata.message_type == "train" && round != Some(floret::records::ConfigValue::Int(1)) {
            let calls = self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(Record::Metrics(metrics)) = reply.get_mut("metrics") {
                metrics.insert("calls", MetricValue::Int(calls));
            }
        }
        Ok(reply)
    }
}

fn nondeterministic_apps(inputs: &Inputs, calls: Arc<AtomicI64>) -> Result<Apps, floret::builtin::BuiltinError> {
    let apps = floret::builtin::build(inputs, &mut floret::flwr_log::Logger::new())?;
    Ok(Apps {
        server: apps.server,
        client: Arc::new(Nondeterministic {
            inner: apps.client,
            calls,
        }),
    })
}

#[test]
fn a_nondeterministic_client_is_caught_at_the_first_affected_event() {
    let _settings = build_filters();
    let run = TestRun::new("logreg", CONFIG, 10, 11);
    let calls = Arc::new(AtomicI64::new(0));
    let inputs = run.inputs();
    let mut live = Recorder::default();
    floret::sim::simulate(
        &inputs,
        nondeterministic_apps(&inputs, Arc::clone(&calls)).unwrap(),
        1,
        &mut live,
    );
    let record = run.record(&live.events, completed());
    let verdict = replay_with(&record, 1, None, |inputs| {
        nondeterministic_apps(inputs, Arc::clone(&calls))
    })
    .unwrap();
    let VerdictOutcome::Diverged(divergence) = &verdict.outcome else {
        panic!("must diverge: {verdict:?}")
    };
    let first_round_2_reply = live
        .events
        .iter()
        .position(|e| matches!(e, Event::ReplyReceived(r) if r.round == 2))
        .unwrap();
    assert_eq!(divergence.index, first_round_2_reply);
    let Some(Event::ReplyReceived(reply)) = &divergence.recorded else {
        panic!("a reply")
    };
    assert_eq!(divergence.node_id, Some(reply.node_id));
    assert_eq!(divergence.round, Some(2));
    assert!(divergence.hint.contains(&format!("node {}", reply.node_id)));
    insta::assert_snapshot!("replay_verdict_divergence", verdict_text(&verdict));
}

fn arb_config() -> impl Strategy<Value = (String, i64, u64, bool)> {
    (
        1u64..4,
        prop_oneof![Just(0.3), Just(0.5), Just(1.0)],
        prop_oneof![Just(0.0), Just(0.5), Just(1.0)],
        prop_oneof![Just("iid"), Just("dirichlet")],
        prop_oneof![Just(0.0), Just(0.2)],
        prop_oneof![
            Just("strategy.name = \"FedAvg\""),
            Just("strategy.name = \"FedAvgM\"\nstrategy.server-momentum = 0.9"),
            Just("strategy.name = \"FedProx\"\nstrategy.proximal-mu = 0.1"),
            Just("strategy.name = \"FedAdagrad\""),
            Just("strategy.name = \"FedAdam\""),
            Just("strategy.name = \"FedYogi\""),
            Just("strategy.name = \"FedMedian\""),
            Just("strategy.name = \"FedTrimmedAvg\""),
            Just("strategy.name = \"Krum\""),
            Just("strategy.name = \"MultiKrum\"\nstrategy.num-nodes-to-select = 2"),
            Just("strategy.name = \"QFedAvg\"\nstrategy.client-learning-rate = 0.3"),
            Just("dp.mode = \"server-fixed\"\ndp.noise-multiplier = 0.5\ndp.clipping-norm = 5.0\ndp.num-sampled-clients = 3"),
            Just("dp.mode = \"server-adaptive\"\ndp.noise-multiplier = 0.1\ndp.num-sampled-clients = 3"),
        ],
        2i64..14,
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(rounds, train, evaluate, partitioning, failure_rate, strategy, nodes, seed, mlp)| {
            let config = format!(
                "num-server-rounds = {rounds}\nfraction-train = {train:?}\nfraction-evaluate = {evaluate:?}\n\
                 partitioning = \"{partitioning}\"\nfault.client-failure-rate = {failure_rate:?}\n\
                 min-train-nodes = 1\nmin-evaluate-nodes = 1\nmin-available-nodes = 1\nlr = 0.3\n{strategy}"
            );
            (config, nodes, seed, mlp)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For random apps and federations, a live run followed by a replay is
    /// identical (with a random stop and a random injected fault).
    #[test]
    fn live_then_replay_is_identical((config, nodes, seed, mlp) in arb_config(), stop_round in 0u64..4, fault in any::<bool>()) {
        let run = TestRun::new(if mlp { "mlp" } else { "logreg" }, &config, nodes, seed);
        let mut live = Recorder::default();
        if stop_round > 0 {
            live.stop_at = Some((stop_round, "aggregate_train".into()));
        }
        if fault {
            live.faults = vec![(1, Phase::Train, floret::sim::node_ids(seed, nodes as u64)[0])];
        }
        run.simulate(3, &mut live);
        let verdict = replay(&run.record(&live.events, completed()), 2, None).unwrap();
        prop_assert_eq!(&verdict.outcome, &VerdictOutcome::Identical, "config {} seed {}", config, seed);
        prop_assert_eq!(verdict.events_compared, live.events.len());
    }
}

/// The record of a run still in progress (no `RunFinished`, no
/// `SimulationFinished`) is not "identical": it is incomplete, with its own
/// outcome, text and exit status (before the fix: "✅ ... identical", exit 0).
#[test]
fn a_run_still_in_progress_is_incomplete_not_identical() {
    let run = TestRun::new("logreg", CONFIG, 10, 12);
    let mut live = Recorder::default();
    run.simulate(2, &mut live);
    let cut = live.events.len() / 2;
    let verdict = replay(&run.record(&live.events[..cut], None), 2, None).unwrap();
    assert_eq!(verdict.outcome, VerdictOutcome::InProgress);
    assert_eq!(verdict.events_compared, cut);
    let text = verdict_text(&verdict);
    assert!(text.contains("is incomplete"), "{text}");
    assert!(text.contains("still in progress"), "{text}");
    assert!(!text.contains("✅"), "{text}");
    assert_eq!(floret::cli::replay::exit_status(&verdict.outcome), 8);
    let crashed = RunFinished {
        sub_status: SubStatus::Failed,
        details: "flwr-simulation was killed".into(),
    };
    let verdict = replay(&run.record(&live.events[..cut], Some(crashed)), 2, None).unwrap();
    assert_eq!(floret::cli::replay::exit_status(&verdict.outcome), 7);
    assert!(verdict_text(&verdict).contains("ended finished:failed (flwr-simulation was killed) without finishing"));
}

/// A recorded payload whose bytes differ although it decodes to the same
/// values (here a round number written as a 2-byte integer) is a divergence
/// that shows the differing bytes, not an empty list of fields.
#[test]
fn a_divergence_with_equal_values_shows_the_bytes() {
    let run = TestRun::new("logreg", CONFIG, 10, 13);
    let mut live = Recorder::default();
    run.simulate(2, &mut live);
    let mut record = run.record(&live.events, completed());
    let target = record.events.iter_mut().find(|e| e.kind == "RoundStarted").unwrap();
    // {"round": 1} with 1 as msgpack uint16 (0xcd 0x00 0x01) instead of fixint.
    assert_eq!(target.payload, [0x81, 0xa5, b'r', b'o', b'u', b'n', b'd', 0x01]);
    target.payload = vec![0x81, 0xa5, b'r', b'o', b'u', b'n', b'd', 0xcd, 0x00, 0x01];
    let verdict = replay(&record, 2, None).unwrap();
    let VerdictOutcome::Diverged(divergence) = &verdict.outcome else {
        panic!("must diverge: {verdict:?}")
    };
    assert!(divergence.fields.is_empty(), "{:?}", divergence.fields);
    assert_eq!(divergence.bytes, Some((7, vec![0xcd, 0x00, 0x01], vec![0x01])));
    let text = verdict_text(&verdict);
    assert!(
        text.contains("the decoded values look equal, but the payload bytes differ"),
        "{text}"
    );
    assert!(text.contains("bytes from offset 7  cd0001 -> 01"), "{text}");
}

/// When the run was recorded by another build or on another platform, the
/// verdict names that instead of blaming the ClientApp.
#[test]
fn a_divergence_names_another_build_or_platform() {
    let _settings = build_filters();
    let run = TestRun::new("logreg", CONFIG, 10, 14);
    let calls = Arc::new(AtomicI64::new(0));
    let inputs = run.inputs();
    let mut live = Recorder::default();
    floret::sim::simulate(
        &inputs,
        nondeterministic_apps(&inputs, Arc::clone(&calls)).unwrap(),
        1,
        &mut live,
    );
    let mut recorded_by = floret::provenance::app_process();
    recorded_by.build.sources = "5".repeat(64);
    recorded_by.build.build = "floret 0.0.9 (0123456789ab, sources 555555555555)".into();
    recorded_by.platform.cpu_features = vec!["sse4.2".into()];
    let mut events = vec![Event::AppProcessStarted(recorded_by)];
    events.extend(live.events.iter().cloned());
    let record = run.record(&events, completed());
    let verdict = replay_with(&record, 1, None, |inputs| {
        nondeterministic_apps(inputs, Arc::clone(&calls))
    })
    .unwrap();
    let VerdictOutcome::Diverged(divergence) = &verdict.outcome else {
        panic!("must diverge: {verdict:?}")
    };
    assert!(!verdict.same_build);
    assert!(
        divergence
            .hint
            .starts_with("The run was recorded by another build (floret 0.0.9"),
        "{}",
        divergence.hint
    );
    assert!(
        divergence.hint.contains("recorded on another CPU (features sse4.2;"),
        "{}",
        divergence.hint
    );
    assert_eq!(
        verdict.recorded_build,
        "floret 0.0.9 (0123456789ab, sources 555555555555)"
    );
}
