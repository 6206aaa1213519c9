//! Every strategy end to end on digits: the global model learns (central
//! accuracy goes up) and the run replays bit-for-bit; replies that do not fit
//! the global model are failures, never panics.

use floret::clientapp::{ClientApp, ClientEnv};
use floret::domain::event::{Event, Outcome};
use floret::records::{Array, Context, Error, Message, MetricValue, Record, RecordDict, Scalar, Values};
use floret::replay::{replay, replay_with, VerdictOutcome};
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

/// A ClientApp whose train replies from partitions 0 to 3 carry arrays that
/// do not fit the global model: another shape, another dtype, a shape that
/// does not match the values, an extra key.
struct Misshapen {
    inner: std::sync::Arc<dyn ClientApp>,
    /// The partitions whose replies are misshapen.
    partitions: &'static [i64],
}

impl ClientApp for Misshapen {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        let mut reply = self.inner.handle(message, context, env)?;
        let partition = match context.node_config.get("partition-id") {
            Some(Scalar::Int(p)) => *p,
            _ => return Ok(reply),
        };
        if message.metadata.message_type != "train" || !self.partitions.contains(&partition) {
            return Ok(reply);
        }
        let Some(Record::Arrays(arrays)) = reply.get_mut("arrays") else {
            return Ok(reply);
        };
        let key = arrays.keys().next().unwrap().to_string();
        let array = arrays.get(&key).unwrap().clone();
        let values = array.values.to_f64_vec();
        let replaced = match partition {
            0 => Array::from_f64(vec![values.len() - 1], values[1..].to_vec()),
            1 => Array::new(
                array.shape.clone(),
                Values::I64(values.iter().map(|&v| v as i64).collect()),
            ),
            2 => Array {
                shape: vec![values.len() + 7],
                values: array.values.clone(),
            },
            3 => {
                arrays.insert("extra", array.clone());
                array
            }
            _ => array,
        };
        arrays.insert(key, replaced);
        Ok(reply)
    }
}

fn misshapen_apps(
    inputs: &floret::sim::Inputs,
    partitions: &'static [i64],
) -> Result<floret::sim::Apps, floret::builtin::BuiltinError> {
    let apps = floret::builtin::build(inputs, &mut floret::flwr_log::Logger::new())?;
    Ok(floret::sim::Apps {
        server: apps.server,
        client: std::sync::Arc::new(Misshapen {
            inner: apps.client,
            partitions,
        }),
    })
}

/// The reasons logged for the misshapen replies of partitions 0 to 3.
const REASONS: [&str; 4] = [
    "has shape [639] (639 values) but the global model's has shape [10, 64]",
    "has dtype int64 but the global model's has dtype float32",
    "has shape [647] (640 values) but the global model's has shape [10, 64]",
    "unexpected [\"extra\"]",
];

/// Replies that do not match the global model's keys, shapes and dtypes are
/// failures with a reason in the log, for every strategy: never a panic, never
/// a silently truncated sum, never a failed round. (Before the fix, a reply
/// with an extra key or another shape failed the whole run, and the
/// FedAvg-family strategies panicked on another dtype.)
#[test]
fn replies_that_do_not_fit_the_global_model_are_failures() {
    let seed = test_seed(23);
    let mut failures = Vec::new();
    for partitions in [&[0i64, 1, 2, 3][..], &[0, 1, 2]] {
        for (name, strategy) in STRATEGIES {
            if let Err(failure) = run_with_misshapen_replies(strategy, partitions, seed) {
                failures.push(format!("{name}, partitions {partitions:?}: {failure}"));
            }
        }
    }
    assert!(failures.is_empty(), "FLORET_TEST_SEED={seed}:\n{}", failures.join("\n"));
}

fn run_with_misshapen_replies(strategy: &str, partitions: &'static [i64], seed: u64) -> Result<(), String> {
    let config = format!("num-server-rounds = 2\nlr = 0.5\nbatch-size = 8\n{strategy}");
    let run = TestRun::new("logreg", &config, 14, seed);
    let inputs = run.inputs();
    let mut live = Recorder::default();
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        floret::sim::simulate(&inputs, misshapen_apps(&inputs, partitions).unwrap(), 2, &mut live)
    }))
    .map_err(|_| "panicked".to_string())?;
    if finished.outcome != Outcome::Completed {
        return Err(format!("{:?}", finished.outcome));
    }
    let train_failures: Vec<u64> = live
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Aggregated(a) if a.phase == floret::domain::event::Phase::Train => Some(a.failures),
            _ => None,
        })
        .collect();
    let expected = partitions.len() as u64;
    if train_failures != [expected, expected] {
        return Err(format!(
            "train failures {train_failures:?}, expected {expected} per round"
        ));
    }
    let log = live.logs.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
    if let Some(reason) = partitions
        .iter()
        .map(|&p| REASONS[p as usize])
        .find(|r| !log.contains(r))
    {
        return Err(format!("no `{reason}` in the log"));
    }
    let verdict = replay_with(&run.record(&live.events, completed()), 2, None, |inputs| {
        misshapen_apps(inputs, partitions)
    })
    .unwrap();
    if verdict.outcome != VerdictOutcome::Identical {
        return Err(format!("did not replay: {:?}", verdict.outcome));
    }
    Ok(())
}
