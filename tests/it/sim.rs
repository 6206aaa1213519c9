//! The simulation engine is deterministic: the same seed gives the same event
//! bytes whatever the number of worker threads, different seeds sample
//! differently, and the built-in apps really learn.

use floret::domain::event::{Event, Outcome, Phase, Reply};
use floret::records::MetricValue;
use floret::sim::Recorder;

use crate::support::{payload_bytes, test_seed, TestRun};

const DIGITS: &str = "num-server-rounds = 3\nfraction-train = 0.5\nlr = 0.5\nbatch-size = 8";

fn sampled(events: &[Event]) -> Vec<(u64, Phase, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NodeSampled(s) => Some((s.round, s.phase, s.node_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn same_seed_gives_identical_event_bytes_on_1_and_4_workers() {
    let base = test_seed(1);
    for seed in base..base + 3 {
        let run = TestRun::new("logreg", DIGITS, 10, seed);
        let mut one = Recorder::default();
        run.simulate(1, &mut one);
        let mut four = Recorder::default();
        run.simulate(4, &mut four);
        let mut again = Recorder::default();
        run.simulate(4, &mut again);
        assert_eq!(
            payload_bytes(&one.events),
            payload_bytes(&four.events),
            "1 vs 4 workers differ; rerun with FLORET_TEST_SEED={seed}"
        );
        assert_eq!(
            payload_bytes(&four.events),
            payload_bytes(&again.events),
            "FLORET_TEST_SEED={seed}"
        );
        assert!(one.events.len() > 50, "FLORET_TEST_SEED={seed}");
    }
}

#[test]
fn mlp_and_synthetic_runs_are_deterministic_too() {
    let seed = test_seed(5);
    for (clientapp, config) in [
        ("mlp", DIGITS.to_string()),
        (
            "logreg",
            "num-server-rounds = 2\nfraction-train = 0.3\ndataset = \"synthetic\"\nsynthetic.skew = 0.5".into(),
        ),
    ] {
        let run = TestRun::new(clientapp, &config, 20, seed);
        let mut a = Recorder::default();
        run.simulate(1, &mut a);
        let mut b = Recorder::default();
        run.simulate(3, &mut b);
        assert_eq!(
            payload_bytes(&a.events),
            payload_bytes(&b.events),
            "{clientapp}: FLORET_TEST_SEED={seed}"
        );
    }
}

#[test]
fn different_seeds_sample_different_nodes() {
    let mut a = Recorder::default();
    TestRun::new("logreg", DIGITS, 10, 1).simulate(2, &mut a);
    let mut b = Recorder::default();
    TestRun::new("logreg", DIGITS, 10, 2).simulate(2, &mut b);
    assert_ne!(sampled(&a.events), sampled(&b.events));
    // Node ids derive from the seed as well.
    assert_ne!(a.events[1], b.events[1]);
}

fn central_accuracy(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CentralEvaluated(c) => match c.metrics.as_ref()?.get("central_acc") {
                Some(MetricValue::Float(acc)) => Some(*acc),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn accuracy_on_digits_goes_up_over_rounds() {
    let seed = test_seed(3);
    for clientapp in ["logreg", "mlp"] {
        let run = TestRun::new(clientapp, "num-server-rounds = 5\nlr = 0.5\nbatch-size = 8", 10, seed);
        let mut recorder = Recorder::default();
        let finished = run.simulate(2, &mut recorder);
        assert_eq!(finished.outcome, Outcome::Completed);
        let accuracy = central_accuracy(&recorder.events);
        assert_eq!(accuracy.len(), 6, "round 0 and 5 rounds");
        assert!(
            accuracy[5] > accuracy[0] + 0.5,
            "{clientapp}: {accuracy:?}, FLORET_TEST_SEED={seed}"
        );
        assert!(accuracy[5] > 0.85, "{clientapp}: {accuracy:?}, FLORET_TEST_SEED={seed}");
    }
}

#[test]
fn failing_clients_are_counted_and_too_few_results_fail_the_run() {
    let config = format!("{DIGITS}\nfraction-train = 1.0\nfault.fail-partitions = \"0,1\"");
    let config = config.replacen("fraction-train = 0.5\n", "", 1);
    let mut recorder = Recorder::default();
    let finished = TestRun::new("logreg", &config, 10, 9).simulate(2, &mut recorder);
    assert_eq!(finished.outcome, Outcome::Completed);
    let lines: Vec<&str> = recorder.logs.iter().map(|(_, l)| l.as_str()).collect();
    assert!(
        lines.contains(&"aggregate_train: Received 8 results and 2 failures"),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("\t> Received error in reply from node ")
            && l.ends_with("ClientApp of partition 0 failed on purpose (fault.fail-partitions)")));

    let all = (0..10).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let config = format!("num-server-rounds = 3\nfault.fail-partitions = \"{all}\"");
    let mut recorder = Recorder::default();
    let finished = TestRun::new("logreg", &config, 10, 9).simulate(2, &mut recorder);
    let Outcome::Failed { reason } = finished.outcome else {
        panic!("the run must fail")
    };
    assert!(
        reason.starts_with("Round 1 (train): only 0 of 10 sampled nodes returned results"),
        "{reason}"
    );
    assert!(matches!(recorder.events.last(), Some(Event::SimulationFinished(_))));
}

#[test]
fn seeded_client_failures_become_failure_replies() {
    let mut recorder = Recorder::default();
    TestRun::new(
        "logreg",
        "num-server-rounds = 1\nfault.client-failure-rate = 0.5",
        10,
        4,
    )
    .simulate(2, &mut recorder);
    let errors = recorder
        .events
        .iter()
        .filter(|e| matches!(e, Event::ReplyReceived(r) if matches!(r.reply, Reply::Error { .. })))
        .count();
    assert!(errors > 0 && errors < 10, "{errors} failures of 10");
}

#[test]
fn a_stop_ends_the_run_at_the_step_and_records_where() {
    let mut recorder = Recorder {
        stop_at: Some((2, "train replies".into())),
        ..Recorder::default()
    };
    let finished = TestRun::new("logreg", DIGITS, 10, 1).simulate(2, &mut recorder);
    assert_eq!(finished.outcome, Outcome::Stopped);
    assert_eq!(finished.rounds_completed, 1);
    let tail: Vec<&str> = recorder.events.iter().rev().take(2).map(Event::kind).collect();
    assert_eq!(tail, ["SimulationFinished", "SimulationStopped"]);
}
