//! FedAvg: Flower's default strategy, and the base every FedAvg-family
//! strategy builds on (sampling, messages, weighted averaging).
//!
//! It never does I/O; randomness comes only from the grid's seeded streams.

use std::sync::Arc;

use crate::domain::event::Phase;
use crate::flwr_log::Logger;
use crate::pyfmt::format_f;
use crate::records::{ArrayRecord, ConfigRecord, ConfigValue, Message, MetricRecord, Record, RecordDict};
use crate::strategy::{
    aggregate_arrayrecords, aggregate_metricrecords, check_and_log_replies, sample_nodes, validate_replies, Grid,
    Strategy, StrategyError,
};

/// Flower's `train_metrics_aggr_fn` / `evaluate_metrics_aggr_fn`: turns
/// the checked reply contents and the weighting key into the round's
/// metrics. The default is [`aggregate_metricrecords`] (the weighted average
/// of every metric).
///
/// Two hooks are equal only if they are the same closure (`Arc::ptr_eq`).
/// The hook's function type.
pub type MetricsAggregationFn = dyn Fn(&[&RecordDict], &str) -> MetricRecord + Send + Sync;

#[derive(Clone)]
pub struct MetricsAggregation(pub Arc<MetricsAggregationFn>);

impl MetricsAggregation {
    pub fn new(f: impl Fn(&[&RecordDict], &str) -> MetricRecord + Send + Sync + 'static) -> MetricsAggregation {
        MetricsAggregation(Arc::new(f))
    }
}

impl std::fmt::Debug for MetricsAggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsAggregation(..)")
    }
}

impl PartialEq for MetricsAggregation {
    fn eq(&self, other: &MetricsAggregation) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// FedAvg's constructor parameters, with Flower's defaults. Every field has
/// a setter of the same name, so parameters read as a builder:
/// `FedAvgParams::default().fraction_train(0.5).min_train_nodes(5)`.
#[derive(Clone, Debug, PartialEq)]
pub struct FedAvgParams {
    pub fraction_train: f64,
    pub fraction_evaluate: f64,
    pub min_train_nodes: usize,
    pub min_evaluate_nodes: usize,
    pub min_available_nodes: usize,
    pub weighted_by_key: String,
    pub arrayrecord_key: String,
    pub configrecord_key: String,
    /// Custom aggregation of train metrics (Flower's `train_metrics_aggr_fn`).
    pub train_metrics_aggr: Option<MetricsAggregation>,
    /// Custom aggregation of evaluate metrics (Flower's `evaluate_metrics_aggr_fn`).
    pub evaluate_metrics_aggr: Option<MetricsAggregation>,
}

/// Chainable setters, one per field.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}
pub(crate) use setters;

/// Chainable setters of string fields.
macro_rules! string_setters {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: impl Into<String>) -> Self {
                self.$field = value.into();
                self
            }
        )*
    };
}

impl FedAvgParams {
    setters! {
        /// Fraction of the connected nodes sampled for training (0 disables training).
        fraction_train: f64,
        /// Fraction sampled for evaluation (0 disables federated evaluation).
        fraction_evaluate: f64,
        min_train_nodes: usize,
        min_evaluate_nodes: usize,
        min_available_nodes: usize,
    }
    string_setters! {
        /// The reply metric that weights averages (`num-examples`).
        weighted_by_key,
        /// The key of the model's ArrayRecord in messages (`arrays`).
        arrayrecord_key,
        /// The key of the ConfigRecord in instructions (`config`).
        configrecord_key,
    }

    /// Aggregates train metrics with `f` instead of the weighted average.
    pub fn train_metrics_aggr(
        mut self,
        f: impl Fn(&[&RecordDict], &str) -> MetricRecord + Send + Sync + 'static,
    ) -> Self {
        self.train_metrics_aggr = Some(MetricsAggregation::new(f));
        self
    }

    /// Aggregates evaluate metrics with `f` instead of the weighted average.
    pub fn evaluate_metrics_aggr(
        mut self,
        f: impl Fn(&[&RecordDict], &str) -> MetricRecord + Send + Sync + 'static,
    ) -> Self {
        self.evaluate_metrics_aggr = Some(MetricsAggregation::new(f));
        self
    }
}

impl Default for FedAvgParams {
    fn default() -> Self {
        FedAvgParams {
            fraction_train: 1.0,
            fraction_evaluate: 1.0,
            min_train_nodes: 2,
            min_evaluate_nodes: 2,
            min_available_nodes: 2,
            weighted_by_key: "num-examples".into(),
            arrayrecord_key: "arrays".into(),
            configrecord_key: "config".into(),
            train_metrics_aggr: None,
            evaluate_metrics_aggr: None,
        }
    }
}

/// Federated averaging (McMahan et al., 2017).
#[derive(Clone, Debug)]
pub struct FedAvg {
    pub params: FedAvgParams,
}

impl FedAvg {
    /// As Flower's constructor: a zero fraction disables the phase (its
    /// minimum becomes 0) and logs a warning.
    pub fn new(mut params: FedAvgParams, log: &mut Logger) -> FedAvg {
        if params.fraction_train == 0.0 {
            params.min_train_nodes = 0;
            log.warning("fraction_train is set to 0.0. Federated training will be skipped.");
        }
        if params.fraction_evaluate == 0.0 {
            params.min_evaluate_nodes = 0;
            log.warning("fraction_evaluate is set to 0.0. Federated evaluation will be skipped.");
        }
        FedAvg { params }
    }

    /// The sampling and keys block every FedAvg-family summary ends with.
    pub fn common_summary(&self, log: &mut Logger) {
        let p = &self.params;
        log.info("\t├──> Sampling:");
        log.info(format!(
            "\t│\t├──Fraction: train ({}) | evaluate ( {})",
            format_f(p.fraction_train, 2),
            format_f(p.fraction_evaluate, 2)
        ));
        log.info(format!(
            "\t│\t├──Minimum nodes: train ({}) | evaluate ({})",
            p.min_train_nodes, p.min_evaluate_nodes
        ));
        log.info(format!("\t│\t└──Minimum available nodes: {}", p.min_available_nodes));
        log.info("\t└──> Keys in records:");
        log.info(format!("\t\t├── Weighted by: '{}'", p.weighted_by_key));
        log.info(format!("\t\t├── ArrayRecord key: '{}'", p.arrayrecord_key));
        log.info(format!("\t\t└── ConfigRecord key: '{}'", p.configrecord_key));
    }

    /// Samples nodes for `phase` and builds one message per node carrying the
    /// same `{arrays, config}` records; adds `server-round` to the config.
    pub fn configure(
        &self,
        round: u64,
        phase: Phase,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        let p = &self.params;
        let (fraction, min_nodes) = match phase {
            Phase::Train => (p.fraction_train, p.min_train_nodes),
            Phase::Evaluate => (p.fraction_evaluate, p.min_evaluate_nodes),
        };
        if fraction == 0.0 {
            return Ok(Vec::new());
        }
        let nodes = sample_nodes(grid, round, phase, fraction, min_nodes, p.min_available_nodes, log)?;
        config.insert("server-round", ConfigValue::Int(round as i64));
        let mut content = RecordDict::new();
        content.insert(p.arrayrecord_key.clone(), Record::Arrays(arrays.clone()));
        content.insert(p.configrecord_key.clone(), Record::Config(config.clone()));
        let content = Arc::new(content);
        Ok(nodes
            .into_iter()
            .map(|node| Message::instruction(Arc::clone(&content), node, phase.as_str()))
            .collect())
    }

    /// The contents of the train replies, checked as FedAvg checks them:
    /// Flower's "Received N results and M failures" lines, then one
    /// consistent ArrayRecord and MetricRecord per reply. Empty when no reply
    /// carried content. Strategies that aggregate the arrays differently
    /// (FedMedian, Krum, ...) start here.
    pub fn train_contents<'a>(
        &self,
        replies: &'a [Message],
        log: &mut Logger,
    ) -> Result<Vec<&'a RecordDict>, StrategyError> {
        let (contents, _errors) = check_and_log_replies(replies, Phase::Train, log);
        if !contents.is_empty() {
            validate_replies(&contents, &self.params.weighted_by_key, true)?;
        }
        Ok(contents)
    }

    /// The round's train metrics: the custom hook if one is set, else the
    /// weighted average.
    pub fn train_metrics(&self, contents: &[&RecordDict]) -> MetricRecord {
        let key = &self.params.weighted_by_key;
        match &self.params.train_metrics_aggr {
            Some(hook) => (hook.0)(contents, key),
            None => aggregate_metricrecords(contents, key),
        }
    }

    /// The round's evaluate metrics: the custom hook if one is set, else the
    /// weighted average.
    pub fn evaluate_metrics(&self, contents: &[&RecordDict]) -> MetricRecord {
        let key = &self.params.weighted_by_key;
        match &self.params.evaluate_metrics_aggr {
            Some(hook) => (hook.0)(contents, key),
            None => aggregate_metricrecords(contents, key),
        }
    }

    /// The train path of the strategies that aggregate arrays their own way
    /// (FedMedian, FedTrimmedAvg, QFedAvg): the checked contents, `(None,
    /// None)` when no reply carried content, else what `arrays` makes of
    /// them and the metrics of the same contents.
    pub fn aggregate_train_with(
        &self,
        replies: &[Message],
        log: &mut Logger,
        arrays: impl FnOnce(&[&RecordDict]) -> Result<ArrayRecord, StrategyError>,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        let contents = self.train_contents(replies, log)?;
        if contents.is_empty() {
            return Ok((None, None));
        }
        let arrays = arrays(&contents)?;
        Ok((Some(arrays), Some(self.train_metrics(&contents))))
    }

    /// FedAvg's `aggregate_train` over already-checked replies.
    pub fn aggregate_train_contents(
        &self,
        contents: &[&RecordDict],
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        if contents.is_empty() {
            return Ok((None, None));
        }
        validate_replies(contents, &self.params.weighted_by_key, true)?;
        let arrays = aggregate_arrayrecords(contents, &self.params.weighted_by_key);
        Ok((Some(arrays), Some(self.train_metrics(contents))))
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> String {
        "FedAvg".into()
    }

    fn summary(&self, log: &mut Logger) {
        self.common_summary(log);
    }

    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        self.configure(round, Phase::Train, arrays, config, grid, log)
    }

    fn aggregate_train(
        &mut self,
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        let (contents, _errors) = check_and_log_replies(replies, Phase::Train, log);
        self.aggregate_train_contents(&contents)
    }

    fn configure_evaluate(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        self.configure(round, Phase::Evaluate, arrays, config, grid, log)
    }

    fn aggregate_evaluate(
        &mut self,
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<Option<MetricRecord>, StrategyError> {
        let (contents, _errors) = check_and_log_replies(replies, Phase::Evaluate, log);
        if contents.is_empty() {
            return Ok(None);
        }
        validate_replies(&contents, &self.params.weighted_by_key, false)?;
        Ok(Some(self.evaluate_metrics(&contents)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MetricValue;
    use crate::strategy::testkit::*;

    #[test]
    fn metric_hooks_replace_the_weighted_average() {
        let mut log = Logger::new();
        let count = |contents: &[&RecordDict], key: &str| {
            let mut m = MetricRecord::new();
            m.insert("replies", MetricValue::Int(contents.len() as i64));
            m.insert("key", MetricValue::Int(key.len() as i64));
            m
        };
        let params = FedAvgParams::default()
            .min_train_nodes(3)
            .train_metrics_aggr(count)
            .evaluate_metrics_aggr(|_, _| MetricRecord::new());
        assert_eq!(params.min_train_nodes, 3);
        let mut strategy = FedAvg::new(params.clone(), &mut log);
        let instructions: Vec<Message> = (0..3).map(instruction).collect();
        let replies = replies(&instructions, golden_contents(3));
        let (arrays, metrics) = strategy.aggregate_train(1, &replies, &mut log).unwrap();
        let mut expected = MetricRecord::new();
        expected.insert("replies", MetricValue::Int(3));
        expected.insert("key", MetricValue::Int("num-examples".len() as i64));
        assert_eq!(metrics.unwrap(), expected);
        // The arrays are FedAvg's whatever the metrics hook does.
        let plain = FedAvg::new(FedAvgParams::default(), &mut log)
            .aggregate_train(1, &replies, &mut log)
            .unwrap();
        assert_eq!(arrays, plain.0);
        assert_ne!(Some(expected), plain.1);
        let evaluated = strategy.aggregate_evaluate(1, &replies, &mut log).unwrap();
        assert_eq!(evaluated, Some(MetricRecord::new()));
        // A clone shares the hook; a new closure is another hook.
        assert_eq!(params.clone(), params);
        assert_ne!(params.clone().train_metrics_aggr(count), params);
    }
}
