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

/// FedAvg's constructor parameters, with Flower's defaults.
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
        let metrics = aggregate_metricrecords(contents, &self.params.weighted_by_key);
        Ok((Some(arrays), Some(metrics)))
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
        Ok(Some(aggregate_metricrecords(&contents, &self.params.weighted_by_key)))
    }
}
