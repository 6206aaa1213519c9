//! Every strategy end to end on digits: the global model learns (central
//! accuracy goes up) and the run replays bit-for-bit.

use floret::domain::event::{Event, Outcome};
use floret::records::MetricValue;
use floret::replay::{replay, VerdictOutcome};
use floret::sim::Recorder;

use crate::support::{completed, test_seed, TestRun};

/// Strategy configurations, each with what it needs to learn logistic
/// regression on digits in a few rounds.
const STRATEGIES: &[(&str, &str)] = &[
    ("FedAvg", "strategy.name = \"FedAvg\""),
    ("FedAvgM", "strategy.name = \"FedAvgM\"\nstrategy.server-momentum = 0.5"),
    ("FedProx", "strategy.name = \"FedProx\"\nstrategy.proximal-mu = 0.1"),
    ("FedAdagrad", "strategy.name = \"FedAdagrad\"\nstrategy.eta = 0.1"),
    ("FedAdam", "strategy.name = \"FedAdam\"\nstrategy.eta = 0.05"),
    ("FedYogi", "strategy.name = \"FedYogi\"\nstrategy.eta = 0.05"),
    ("FedMedian", "strategy.name = \"FedMedian\""),
    ("FedTrimmedAvg", "strategy.name = \"FedTrimmedAvg\"\nstrategy.beta = 0.2"),
    ("Krum", "strategy.name = \"Krum\"\nstrategy.num-malicious-nodes = 1"),
    ("MultiKrum", "strategy.name = \"MultiKrum\"\nstrategy.num-malicious-nodes = 1\nstrategy.num-nodes-to-select = 5"),
    ("Bulyan", "strategy.name = \"Bulyan\"\nstrategy.num-malicious-nodes = 1"),
    ("QFedAvg", "strategy.name = \"QFedAvg\"\nstrategy.client-learning-rate = 0.5"),
    (
        "DP server-side fixed clipping",
        "dp.mode = \"server-fixed\"\ndp.noise-multiplier = 0.01\ndp.clipping-norm = 10.0\ndp.num-sampled-clients = 10",
    ),
    ("DP server-side adaptive clipping", "dp.mode = \"server-adaptive\"\ndp.noise-multiplier = 0.01\ndp.num-sampled-clients = 10\ndp.initial-clipping-norm = 5.0"),
    (
        "DP client-side fixed clipping",
        "dp.mode = \"client-fixed\"\ndp.noise-multiplier = 0.01\ndp.clipping-norm = 10.0\ndp.num-sampled-clients = 10\nmods.train = \"fixedclipping\"",
    ),
    (
        "DP client-side adaptive clipping",
        "dp.mode = \"client-adaptive\"\ndp.noise-multiplier = 0.01\ndp.num-sampled-clients = 10\ndp.initial-clipping-norm = 5.0\nmods.train = \"adaptiveclipping\"",
    ),
];

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
fn every_strategy_learns_on_digits_and_replays() {
    let seed = test_seed(21);
    let mut failures = Vec::new();
    for (name, strategy) in STRATEGIES {
        let config = format!("num-server-rounds = 5\nlr = 0.5\nbatch-size = 8\n{strategy}");
        let run = TestRun::new("logreg", &config, 10, seed);
        let mut live = Recorder::default();
        let finished = run.simulate(2, &mut live);
        let accuracy = central_accuracy(&live.events);
        if finished.outcome != Outcome::Completed {
            failures.push(format!("{name}: {:?}", finished.outcome));
            continue;
        }
        if accuracy.last().copied().unwrap_or(0.0) < accuracy[0] + 0.3 {
            failures.push(format!("{name} did not learn: {accuracy:?}"));
        }
        let verdict = replay(&run.record(&live.events, completed()), 3, None).unwrap();
        if verdict.outcome != VerdictOutcome::Identical {
            failures.push(format!("{name} did not replay: {:?}", verdict.outcome));
        }
        eprintln!("{name}: central accuracy {accuracy:.3?}");
    }
    assert!(failures.is_empty(), "FLORET_TEST_SEED={seed}:\n{}", failures.join("\n"));
}
