//! Flower's server-side strategies as a library: configure a round, then
//! aggregate the replies into arrays and metrics.
//!
//! The [`Strategy`] trait mirrors Flower's `Strategy` (`configure_train`,
//! `aggregate_train`, `configure_evaluate`, `aggregate_evaluate`, `summary`);
//! [`start`](crate::strategy::start::start) is Flower's `Strategy.start()`
//! loop. A Rust program can call the aggregation functions directly, without
//! any runtime: they take replies (messages) and return records.
//!
//! Differences from Flower, on purpose:
//! - The population handed to sampling is sorted by node id and sampling draws
//!   from the run's seeded stream, so the same seed samples the same nodes.
//! - Replies arrive in canonical order (the order instructions were sent), so
//!   floating-point sums do not depend on which client finished first.
//! - A population smaller than the minimum fails the run with a clear reason
//!   instead of waiting forever: every virtual node is registered before the
//!   first round, so waiting could never succeed.
//! - A train reply whose arrays do not fit the global model (keys, shapes,
//!   dtypes) is a failure with a logged reason ([`screen_train_replies`]),
//!   so no kernel ever sees mismatched arrays.
//!
//! Strategies never do I/O, never read clocks, and draw randomness only from
//! streams the [`Grid`] derives from the run's seed.

macro_rules! delegate_evaluate {
    ($($field:ident).+) => {
        fn configure_evaluate(
            &mut self,
            round: u64,
            arrays: &ArrayRecord,
            config: &mut ConfigRecord,
            grid: &dyn Grid,
            log: &mut Logger,
        ) -> Result<Vec<Message>, StrategyError> {
            self.$($field).+.configure_evaluate(round, arrays, config, grid, log)
        }

        fn aggregate_evaluate(
            &mut self,
            round: u64,
            replies: &[Message],
            log: &mut Logger,
        ) -> Result<Option<MetricRecord>, StrategyError> {
            self.$($field).+.aggregate_evaluate(round, replies, log)
        }
    };
}

/// Implements `configure_train` by handing it to a field (a wrapped
/// strategy or the FedAvg base).
macro_rules! delegate_configure_train {
    ($($field:ident).+) => {
        fn configure_train(
            &mut self,
            round: u64,
            arrays: &ArrayRecord,
            config: &mut ConfigRecord,
            grid: &dyn Grid,
            log: &mut Logger,
        ) -> Result<Vec<Message>, StrategyError> {
            self.$($field).+.configure_train(round, arrays, config, grid, log)
        }
    };
}

pub mod bulyan;
pub mod config;
pub mod dp;
pub mod fedavg;
pub mod fedavgm;
pub mod fedmedian;
pub mod fedopt;
pub mod fedprox;
pub mod fedtrimmedavg;
pub mod krum;
pub mod qfedavg;
pub mod start;
#[cfg(test)]
pub(crate) mod testkit;

use crate::domain::event::Phase;
use crate::flwr_log::Logger;
use crate::prng::Prng;
use crate::records::{
    error_code, Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, MetricValue, RecordDict, Values,
};

pub use fedavg::{FedAvg, FedAvgParams, MetricsAggregation};

/// A kernel's failure is an aggregation failure of the strategy.
impl From<crate::kernels::Error> for StrategyError {
    fn from(error: crate::kernels::Error) -> StrategyError {
        StrategyError::Aggregation(error.to_string())
    }
}

/// docs/STRATEGIES.md, whose Rust examples are doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/STRATEGIES.md")]
pub struct StrategiesGuide;

/// What a strategy sees of the federation.
pub trait Grid {
    fn run_id(&self) -> u64;
    /// The connected nodes, sorted by id.
    fn node_ids(&self) -> &[u64];
    /// A random stream derived from the run's seed and `path` (see
    /// `prng`); the same path always yields the same stream.
    fn prng(&self, path: &[u64]) -> Prng;
}

/// A ready [`Grid`] for driving a strategy from plain Rust: a fixed set of
/// nodes and the seed their sampling streams derive from, exactly as a
/// simulation of that seed samples them. (`sim::node_ids(seed, n)` gives the
/// node ids a simulation of `seed` with `n` SuperNodes registers.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededGrid {
    run_id: u64,
    seed: u64,
    nodes: Vec<u64>,
}

impl SeededGrid {
    /// A grid over `nodes` (sorted and deduplicated) with run id 1.
    pub fn new(seed: u64, nodes: impl IntoIterator<Item = u64>) -> SeededGrid {
        let mut nodes: Vec<u64> = nodes.into_iter().collect();
        nodes.sort_unstable();
        nodes.dedup();
        SeededGrid { run_id: 1, seed, nodes }
    }

    /// The run id the grid reports.
    pub fn run_id(mut self, run_id: u64) -> SeededGrid {
        self.run_id = run_id;
        self
    }
}

impl Grid for SeededGrid {
    fn run_id(&self) -> u64 {
        self.run_id
    }

    fn node_ids(&self) -> &[u64] {
        &self.nodes
    }

    fn prng(&self, path: &[u64]) -> Prng {
        Prng::stream(self.seed, path)
    }
}

/// Why a strategy could not go on. The run fails with this reason.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StrategyError {
    /// Replies that cannot be aggregated (Flower's `InconsistentMessageReplies`,
    /// exit code 200).
    #[error("{0}")]
    InconsistentReplies(String),
    /// Aggregation failed (Flower's `AggregationError`).
    #[error("{0}")]
    Aggregation(String),
    /// Fewer nodes than the strategy's minimum.
    #[error(
        "the federation has {connected} SuperNodes but the strategy needs at least {required}; raise num-supernodes \
         or lower min-available-nodes / min-train-nodes / min-evaluate-nodes"
    )]
    NotEnoughNodes { connected: usize, required: usize },
    /// A parameter is out of range (checked before the run starts).
    #[error("{0}")]
    InvalidParameter(String),
}

/// A Flower strategy. Messages returned by `configure_*` name their
/// destination node; the runtime sends them and hands the replies back in the
/// same order.
pub trait Strategy: Send {
    /// The class name Flower logs ("Starting FedAvg strategy:").
    fn name(&self) -> String;
    /// The strategy-specific summary lines (Flower's `summary()`).
    fn summary(&self, log: &mut Logger);
    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError>;
    fn aggregate_train(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError>;
    fn configure_evaluate(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError>;
    fn aggregate_evaluate(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<Option<MetricRecord>, StrategyError>;
}

/// Tags of the sampling streams.
pub fn sampling_purpose(phase: Phase) -> u64 {
    match phase {
        Phase::Train => crate::prng::purpose::SAMPLE_TRAIN,
        Phase::Evaluate => crate::prng::purpose::SAMPLE_EVALUATE,
    }
}

/// Flower's `sample_nodes` with the size rule kept exactly:
/// `sample = max(trunc(n × fraction), min_nodes)`, at least
/// `max(min_available, sample)` nodes must be connected. Draws from the
/// stream `(seed, [sampling purpose, round])` over the sorted population.
pub fn sample_nodes(
    grid: &dyn Grid,
    round: u64,
    phase: Phase,
    fraction: f64,
    min_nodes: usize,
    min_available_nodes: usize,
    log: &mut Logger,
) -> Result<Vec<u64>, StrategyError> {
    if fraction == 0.0 {
        return Ok(Vec::new());
    }
    let all = grid.node_ids();
    let num_nodes = (all.len() as f64 * fraction).trunc() as usize;
    let sample_size = num_nodes.max(min_nodes);
    let required = min_available_nodes.max(sample_size);
    if all.len() < required {
        log.info(format!(
            "Waiting for nodes to connect: {} connected (minimum required: {}).",
            all.len(),
            required
        ));
        return Err(StrategyError::NotEnoughNodes {
            connected: all.len(),
            required,
        });
    }
    let mut prng = grid.prng(&[sampling_purpose(phase), round]);
    let sampled: Vec<u64> = prng
        .sample_indices(all.len(), sample_size)
        .into_iter()
        .map(|i| all[i])
        .collect();
    log.info(format!(
        "configure_{}: Sampled {} nodes (out of {})",
        phase.as_str(),
        sampled.len(),
        all.len()
    ));
    Ok(sampled)
}

/// Splits replies into content and errors, keeping order, and logs Flower's
/// "Received N results and M failures" lines. Nothing is logged for an empty
/// list (as in Flower).
pub fn check_and_log_replies<'a>(
    replies: &'a [Message],
    phase: Phase,
    log: &mut Logger,
) -> (Vec<&'a RecordDict>, Vec<&'a Message>) {
    if replies.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for reply in replies {
        match reply.content() {
            Some(content) => valid.push(content),
            None => errors.push(reply),
        }
    }
    log.info(format!(
        "aggregate_{}: Received {} results and {} failures",
        phase.as_str(),
        valid.len(),
        errors.len()
    ));
    for error in &errors {
        let reason = error.error().map(|e| e.reason.as_str()).unwrap_or("");
        log.info(format!(
            "\t> Received error in reply from node {}: {}",
            error.metadata.src_node_id, reason
        ));
    }
    (valid, errors)
}

/// Why a train reply's arrays cannot be aggregated into the global model
/// `global`, or `None` when they can (or when the reply carries no single
/// ArrayRecord, which [`validate_replies`] reports as Flower does). The
/// reply's ArrayRecord must hold exactly the global model's keys, each with
/// the same shape, as many values as the shape says, and the same dtype;
/// float32 and float64 stand for each other (numpy promotes one to the
/// other, and strategies such as FedAdam keep a float64 model of float32
/// replies).
pub fn reply_mismatch(global: &ArrayRecord, content: &RecordDict) -> Option<String> {
    if global.is_empty() || content.array_records().count() != 1 {
        return None;
    }
    let arrays = reply_arrays(content)?;
    let missing: Vec<&str> = global.keys().filter(|k| arrays.get(k).is_none()).collect();
    let extra: Vec<&str> = arrays.keys().filter(|k| global.get(k).is_none()).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Some(format!(
            "the reply's arrays do not have the global model's keys (missing {missing:?}, unexpected {extra:?})"
        ));
    }
    let is_float = |values: &Values| matches!(values, Values::F32(_) | Values::F64(_));
    for (key, expected) in global.iter() {
        let array = arrays.get(key).expect("checked above");
        let count: usize = array.shape.iter().product();
        if array.shape != expected.shape || count != array.len() {
            return Some(format!(
                "array '{key}' has shape {:?} ({} values) but the global model's has shape {:?}",
                array.shape,
                array.len(),
                expected.shape
            ));
        }
        let same_kind = array.dtype() == expected.dtype() || (is_float(&array.values) && is_float(&expected.values));
        if !same_kind {
            return Some(format!(
                "array '{key}' has dtype {} but the global model's has dtype {}",
                array.dtype(),
                expected.dtype()
            ));
        }
    }
    None
}

/// The train replies with every reply that [`reply_mismatch`] refuses
/// turned into a failure carrying the reason (logged by
/// [`check_and_log_replies`] and counted in the round's failures), so that no
/// kernel ever sees arrays of another shape or dtype.
pub fn screen_train_replies(global: &ArrayRecord, replies: Vec<Message>) -> Vec<Message> {
    replies
        .into_iter()
        .map(|reply| match reply.content().and_then(|c| reply_mismatch(global, c)) {
            None => reply,
            Some(reason) => Message {
                metadata: reply.metadata,
                body: Err(Error {
                    code: error_code::UNKNOWN,
                    reason: format!("Reply refused before aggregation: {reason}."),
                }),
            },
        })
        .collect()
}

/// Flower's `validate_message_reply_consistency`: one ArrayRecord (train) and
/// one MetricRecord per reply, identical keys, a single-valued weighting key.
pub fn validate_replies(
    contents: &[&RecordDict],
    weighted_by_key: &str,
    check_arrays: bool,
) -> Result<(), StrategyError> {
    let fail = |reason: String| Err(StrategyError::InconsistentReplies(reason));
    let Some(first) = contents.first() else { return Ok(()) };
    if check_arrays {
        if contents.iter().any(|c| c.array_records().count() != 1) {
            return fail("Expected exactly one ArrayRecord in replies. Skipping aggregation.".into());
        }
        let (name, record) = first.array_records().next().expect("checked above");
        let keys: Vec<&str> = record.keys().collect();
        for content in contents {
            let same = content.arrays(name).map(|r| r.keys().collect::<Vec<_>>() == keys);
            if same != Some(true) {
                return fail(
                    "All ArrayRecords must have the same keys for aggregation. This condition \
                     wasn't met. Skipping aggregation."
                        .into(),
                );
            }
        }
    }
    if contents.iter().any(|c| c.metric_records().count() > 1) {
        return fail("Expected exactly one MetricRecord in replies, but found more. Skipping aggregation.".into());
    }
    if let Some((name, record)) = first.metric_records().next() {
        let keys: Vec<&str> = record.keys().collect();
        for content in contents {
            let same = content.metrics(name).map(|r| r.keys().collect::<Vec<_>>() == keys);
            if same != Some(true) {
                return fail(
                    "All MetricRecords must have the same keys for aggregation. This condition \
                     wasn't met. Skipping aggregation."
                        .into(),
                );
            }
        }
    }
    for content in contents {
        match content
            .metric_records()
            .next()
            .and_then(|(_, r)| r.get(weighted_by_key))
        {
            None => {
                return fail(format!(
                    "Missing required key `{weighted_by_key}` in the MetricRecord of reply \
                     messages. Cannot average ArrayRecords and MetricRecords. Skipping aggregation."
                ))
            }
            Some(MetricValue::IntList(_) | MetricValue::FloatList(_)) => {
                return fail(format!(
                    "Key `{weighted_by_key}` in the MetricRecord of reply messages must be a \
                     single value (int or float), but a list was found. Skipping aggregation."
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The weight of a reply: its MetricRecord's `weighted_by_key` value.
pub fn reply_weight(content: &RecordDict, weighted_by_key: &str) -> f64 {
    match content
        .metric_records()
        .next()
        .and_then(|(_, r)| r.get(weighted_by_key))
    {
        Some(MetricValue::Int(i)) => *i as f64,
        Some(MetricValue::Float(f)) => *f,
        _ => 0.0,
    }
}

/// The normalised weights `w_i / Σw` of the replies, as Python floats.
pub fn weight_factors(contents: &[&RecordDict], weighted_by_key: &str) -> Vec<f64> {
    let weights: Vec<f64> = contents.iter().map(|c| reply_weight(c, weighted_by_key)).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// The first ArrayRecord of a reply.
pub fn reply_arrays(content: &RecordDict) -> Option<&ArrayRecord> {
    content.array_records().next().map(|(_, r)| r)
}

/// Flower's `aggregate_arrayrecords`: the weighted average of the replies'
/// arrays, accumulated in reply order with numpy's dtype rules (float32 stays
/// float32: the factor is rounded to f32, each product and sum is f32;
/// integers become float64).
pub fn aggregate_arrayrecords(contents: &[&RecordDict], weighted_by_key: &str) -> ArrayRecord {
    let factors = weight_factors(contents, weighted_by_key);
    weighted_sum(contents.iter().map(|c| reply_arrays(c).expect("validated")), &factors)
}

/// Σ factor_i × arrays_i, key order of the first record.
pub fn weighted_sum<'a>(records: impl Iterator<Item = &'a ArrayRecord>, factors: &[f64]) -> ArrayRecord {
    let mut accumulated: Vec<(String, Array)> = Vec::new();
    for (index, record) in records.enumerate() {
        let factor = factors[index];
        for (key, array) in record.iter() {
            match accumulated.iter_mut().find(|(k, _)| k == key) {
                None => accumulated.push((key.to_string(), scale(array, factor))),
                Some((_, sum)) => add_scaled(sum, array, factor),
            }
        }
    }
    accumulated.into_iter().collect()
}

/// `array × factor` with numpy's result dtype.
pub fn scale(array: &Array, factor: f64) -> Array {
    let values = match &array.values {
        Values::F32(v) => {
            let factor = factor as f32;
            Values::F32(v.iter().map(|x| x * factor).collect())
        }
        Values::F64(v) => Values::F64(v.iter().map(|x| x * factor).collect()),
        other => Values::F64(other.to_f64_vec().iter().map(|x| x * factor).collect()),
    };
    Array::new(array.shape.clone(), values)
}

/// `sum += array × factor`, element-wise, with numpy's promotion: a float32
/// sum stays float32 for float32 arrays and becomes float64 otherwise.
pub fn add_scaled(sum: &mut Array, array: &Array, factor: f64) {
    if let (Values::F32(s), false) = (&sum.values, matches!(array.values, Values::F32(_))) {
        sum.values = Values::F64(s.iter().map(|&x| f64::from(x)).collect());
    }
    match (&mut sum.values, &array.values) {
        (Values::F32(s), Values::F32(v)) => {
            let factor = factor as f32;
            s.iter_mut().zip(v).for_each(|(s, x)| *s += x * factor);
        }
        (Values::F64(s), Values::F64(v)) => s.iter_mut().zip(v).for_each(|(s, x)| *s += x * factor),
        (Values::F64(s), other) => s.iter_mut().zip(other.to_f64_vec()).for_each(|(s, x)| *s += x * factor),
        (s, v) => panic!("cannot accumulate {} into {}", v.dtype(), s.dtype()),
    }
}

/// Flower's `aggregate_metricrecords`: the weighted average of every metric
/// except the weighting key (which is dropped), in first-appearance order;
/// results are floats.
pub fn aggregate_metricrecords(contents: &[&RecordDict], weighted_by_key: &str) -> MetricRecord {
    let factors = weight_factors(contents, weighted_by_key);
    let mut out = MetricRecord::new();
    for (content, factor) in contents.iter().zip(&factors) {
        let Some((_, record)) = content.metric_records().next() else {
            continue;
        };
        for (key, value) in record.iter() {
            if key == weighted_by_key {
                continue;
            }
            let scaled = match value {
                MetricValue::Int(i) => MetricValue::Float(*i as f64 * factor),
                MetricValue::Float(f) => MetricValue::Float(f * factor),
                MetricValue::IntList(l) => MetricValue::FloatList(l.iter().map(|&i| i as f64 * factor).collect()),
                MetricValue::FloatList(l) => MetricValue::FloatList(l.iter().map(|f| f * factor).collect()),
            };
            match (out.get_mut(key), scaled) {
                (None, scaled) => out.insert(key, scaled),
                (Some(MetricValue::Float(sum)), MetricValue::Float(x)) => *sum += x,
                (Some(MetricValue::FloatList(sum)), MetricValue::FloatList(x)) => {
                    sum.iter_mut().zip(x).for_each(|(s, x)| *s += x)
                }
                (Some(_), _) => {}
            }
        }
    }
    out
}
