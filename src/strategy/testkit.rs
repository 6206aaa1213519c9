//! Test support shared by the strategy files: a seeded grid, reply builders
//! and the golden outputs of Flower 1.42 (`tests/fixtures/golden/`).
use std::sync::Arc;

use serde_json::Value;

use crate::flwr_log::{Level, Logger};
use crate::records::{
    Array, ArrayRecord, ConfigRecord, Message, MetricRecord, MetricValue, Record, RecordDict, Values,
};
use crate::strategy::{SeededGrid, Strategy, StrategyError};

pub const GOLDEN: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/flower-1.42-strategies.json"
));

pub fn golden() -> Value {
    serde_json::from_str(GOLDEN).expect("golden JSON parses")
}

/// A grid over nodes 101.. with a fixed seed, run id 7.
pub struct TestGrid;

impl TestGrid {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(seed: u64, n: usize) -> SeededGrid {
        SeededGrid::new(seed, (0..n as u64).map(|i| 101 + i)).run_id(7)
    }
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// `{w, b}` as float64 arrays.
pub fn wb(w: Vec<f64>, b: Vec<f64>) -> ArrayRecord {
    let mut record = ArrayRecord::new();
    record.insert("w", Array::from_f64(vec![w.len()], w));
    record.insert("b", Array::from_f64(vec![b.len()], b));
    record
}

pub fn global_arrays() -> ArrayRecord {
    let g = golden();
    let inputs = &g["_inputs"]["global_arrays (ArrayRecord key order w, b)"];
    wb(floats(&inputs["w"]), floats(&inputs["b"]))
}

/// The golden replies' contents: `{arrays: {w, b}, metrics: {num-examples,
/// train_loss, acc}}`.
pub fn golden_contents(n: usize) -> Vec<RecordDict> {
    let g = golden();
    let (_, rows) = g["_inputs"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("replies"))
        .expect("replies in the golden inputs");
    rows.as_array()
        .unwrap()
        .iter()
        .take(n)
        .map(|row| {
            let loss = row["train_loss"].as_f64().unwrap();
            let mut metrics = MetricRecord::new();
            metrics.insert("num-examples", MetricValue::Int(row["num-examples"].as_i64().unwrap()));
            metrics.insert("train_loss", MetricValue::Float(loss));
            metrics.insert("acc", MetricValue::FloatList(vec![loss, 2.0 * loss]));
            content(wb(floats(&row["w"]), floats(&row["b"])), metrics)
        })
        .collect()
}

pub fn content(arrays: ArrayRecord, metrics: MetricRecord) -> RecordDict {
    let mut content = RecordDict::new();
    content.insert("arrays", Record::Arrays(arrays));
    content.insert("metrics", Record::Metrics(metrics));
    content
}

/// Replies to `instructions`, the i-th content answering the i-th message.
pub fn replies(instructions: &[Message], contents: Vec<RecordDict>) -> Vec<Message> {
    assert!(contents.len() <= instructions.len(), "more replies than instructions");
    instructions
        .iter()
        .zip(contents)
        .map(|(m, c)| Message::reply(m, Ok(c)))
        .collect()
}

/// A bare instruction to node `node` (for driving aggregation directly).
pub fn instruction(node: u64) -> Message {
    Message::instruction(Arc::new(RecordDict::new()), node, "train")
}

/// Runs `rounds` train rounds on the golden inputs: each round sends the
/// previous aggregate and receives the same `n` replies.
pub fn run_golden(
    strategy: &mut dyn Strategy,
    rounds: u64,
    n: usize,
    log: &mut Logger,
) -> Result<Vec<(ArrayRecord, MetricRecord)>, StrategyError> {
    let grid = TestGrid::new(42, n);
    let mut arrays = global_arrays();
    let mut out = Vec::new();
    for round in 1..=rounds {
        let mut config = ConfigRecord::new();
        let instructions = strategy.configure_train(round, &arrays, &mut config, &grid, log)?;
        let replies = replies(&instructions, golden_contents(n));
        let (agg, metrics) = strategy.aggregate_train(round, &replies, log)?;
        arrays = agg.expect("aggregated arrays");
        out.push((arrays.clone(), metrics.expect("aggregated metrics")));
    }
    Ok(out)
}

pub fn f64s(array: &Array) -> Vec<f64> {
    array.values.to_f64_vec()
}

fn rel_err(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs().max(f64::MIN_POSITIVE)
    }
}

fn compare(label: &str, got: &[f64], want: &[f64], tolerance: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        let e = rel_err(*g, *w);
        if e > 0.0 {
            eprintln!(
                "  {label}: got {g:?} want {w:?} ({} ulp)",
                (g.to_bits() as i64 - w.to_bits() as i64)
            );
        }
        assert!(e <= tolerance, "{label}: got {g:?}, want {w:?} (relative error {e:e})");
        worst = worst.max(e);
    }
    worst
}

/// Compares per-round results with a golden case; returns the largest
/// relative error seen (printed, for the record).
pub fn assert_golden(case: &str, results: &[(ArrayRecord, MetricRecord)], tolerance: f64) -> f64 {
    let g = golden();
    let rounds = g["cases"][case]
        .as_array()
        .unwrap_or_else(|| panic!("golden case {case}"));
    assert_eq!(rounds.len(), results.len(), "{case}: rounds");
    let mut worst = 0.0f64;
    for (want, (arrays, metrics)) in rounds.iter().zip(results) {
        let keys: Vec<&str> = arrays.keys().collect();
        assert_eq!(keys, ["w", "b"], "{case}: key order");
        for key in ["w", "b"] {
            let got = f64s(arrays.get(key).unwrap());
            worst = worst.max(compare(
                &format!("{case} {key}"),
                &got,
                &floats(&want["arrays"][key]),
                tolerance,
            ));
        }
        let metric_keys: Vec<&str> = metrics.keys().collect();
        assert_eq!(metric_keys, ["train_loss", "acc"], "{case}: metric keys");
        let Some(MetricValue::Float(loss)) = metrics.get("train_loss") else {
            panic!("train_loss")
        };
        worst = worst.max(compare(
            case,
            &[*loss],
            &[want["metrics"]["train_loss"].as_f64().unwrap()],
            tolerance,
        ));
        let Some(MetricValue::FloatList(acc)) = metrics.get("acc") else {
            panic!("acc")
        };
        worst = worst.max(compare(case, acc, &floats(&want["metrics"]["acc"]), tolerance));
    }
    eprintln!("golden {case}: max relative error {worst:e}");
    worst
}

/// The messages of the collected log lines at `level`.
pub fn lines_at(log: &Logger, level: Level) -> Vec<String> {
    log.lines()
        .iter()
        .filter(|(l, _)| *l == level)
        .map(|(_, m)| m.clone())
        .collect()
}

/// All collected log messages.
pub fn messages(log: &Logger) -> Vec<String> {
    log.lines().iter().map(|(_, m)| m.clone()).collect()
}

/// The common FedAvg summary block with default parameters.
pub fn default_common_summary() -> Vec<String> {
    [
        "\t├──> Sampling:",
        "\t│\t├──Fraction: train (1.00) | evaluate ( 1.00)",
        "\t│\t├──Minimum nodes: train (2) | evaluate (2)",
        "\t│\t└──Minimum available nodes: 2",
        "\t└──> Keys in records:",
        "\t\t├── Weighted by: 'num-examples'",
        "\t\t├── ArrayRecord key: 'arrays'",
        "\t\t└── ConfigRecord key: 'config'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `strategy.summary()` lines.
pub fn summary_lines(strategy: &dyn Strategy) -> Vec<String> {
    let mut log = Logger::new();
    strategy.summary(&mut log);
    assert!(log.lines().iter().all(|(l, _)| *l == Level::Info));
    messages(&log)
}

/// Replies with float32 arrays `{x}` and `num-examples` weights.
pub fn f32_contents(rows: &[Vec<f32>], weights: &[i64]) -> Vec<RecordDict> {
    rows.iter()
        .zip(weights)
        .map(|(row, &w)| {
            let mut arrays = ArrayRecord::new();
            arrays.insert("x", Array::new(vec![row.len()], Values::F32(row.clone())));
            let mut metrics = MetricRecord::new();
            metrics.insert("num-examples", MetricValue::Int(w));
            content(arrays, metrics)
        })
        .collect()
}
