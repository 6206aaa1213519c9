//! Flower's `Strategy.start()`: the round loop of a ServerApp, with Flower's
//! log lines byte for byte.
//!
//! The loop talks to the federation through a [`Driver`]: it sends messages
//! and gets replies back in the order sent, records the loop's events
//! (`RoundStarted`, `Aggregated`, `CentralEvaluated`) and offers a checkpoint
//! between steps where a stop request interrupts the run. The loop itself
//! does no I/O and reads no clock; the driver reports elapsed time for the
//! one line that prints it.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::event::{Aggregated, CentralEvaluated, Event, Phase, RoundStarted};
use crate::flwr_log::Logger;
use crate::pyfmt::{format_e, format_f, pformat, PyValue};
use crate::records::{ArrayRecord, ConfigRecord, ConfigValue, Message, MetricRecord, MetricValue};
use crate::strategy::{Grid, Strategy, StrategyError};

/// Why the loop stopped before its last round.
#[derive(Clone, Debug, PartialEq)]
pub enum Interrupt {
    /// A stop was requested; the loop stopped before `before` in `round`.
    Stopped { round: u64, before: String },
    /// The runtime failed (not the strategy).
    Failed(String),
}

/// The runtime side of the loop.
pub trait Driver: Grid {
    /// Sends `messages` (in order) and returns one reply per message, in the
    /// same order.
    fn send_and_receive(
        &mut self,
        round: u64,
        phase: Phase,
        messages: Vec<Message>,
        log: &mut Logger,
    ) -> Result<Vec<Message>, Interrupt>;
    /// Records a simulation event.
    fn record(&mut self, event: Event);
    /// A step boundary: `Err(Interrupt::Stopped)` when a stop was requested.
    fn checkpoint(&mut self, round: u64, before: &str, log: &mut Logger) -> Result<(), Interrupt>;
    /// Seconds since the loop started (only for Flower's timing line).
    fn elapsed_secs(&self) -> f64;
}

/// Server-side evaluation of the global model (`evaluate_fn`).
pub type EvaluateFn<'a> = dyn FnMut(u64, &ArrayRecord) -> Option<MetricRecord> + 'a;

/// What the loop needs besides the strategy.
pub struct StartConfig {
    pub num_rounds: u64,
    pub train_config: ConfigRecord,
    pub evaluate_config: ConfigRecord,
}

/// Flower's `Result`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunResult {
    pub arrays: ArrayRecord,
    pub train_metrics_clientapp: BTreeMap<u64, MetricRecord>,
    pub evaluate_metrics_clientapp: BTreeMap<u64, MetricRecord>,
    pub evaluate_metrics_serverapp: BTreeMap<u64, MetricRecord>,
    /// Rounds that ran to their end.
    pub rounds_completed: u64,
}

/// How the loop ended early.
#[derive(Clone, Debug, PartialEq)]
pub enum StartError {
    Strategy(StrategyError),
    Interrupted(Interrupt),
}

impl From<StrategyError> for StartError {
    fn from(error: StrategyError) -> Self {
        StartError::Strategy(error)
    }
}

impl From<Interrupt> for StartError {
    fn from(interrupt: Interrupt) -> Self {
        StartError::Interrupted(interrupt)
    }
}

/// The loop ended early, with what it had produced so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Incomplete {
    pub error: StartError,
    pub result: RunResult,
}

/// Flower's `Strategy.start()`.
pub fn start(
    strategy: &mut dyn Strategy,
    driver: &mut dyn Driver,
    initial_arrays: ArrayRecord,
    config: StartConfig,
    mut evaluate_fn: Option<&mut EvaluateFn<'_>>,
    log: &mut Logger,
) -> Result<RunResult, Box<Incomplete>> {
    let mut result = RunResult::default();
    match run_rounds(
        strategy,
        driver,
        initial_arrays,
        config,
        &mut evaluate_fn,
        log,
        &mut result,
    ) {
        Ok(()) => Ok(result),
        Err(error) => Err(Box::new(Incomplete { error, result })),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_rounds(
    strategy: &mut dyn Strategy,
    driver: &mut dyn Driver,
    initial_arrays: ArrayRecord,
    config: StartConfig,
    evaluate_fn: &mut Option<&mut EvaluateFn<'_>>,
    log: &mut Logger,
    result: &mut RunResult,
) -> Result<(), StartError> {
    let StartConfig {
        num_rounds,
        mut train_config,
        mut evaluate_config,
    } = config;
    log_start(
        &*strategy,
        num_rounds,
        &initial_arrays,
        &train_config,
        &evaluate_config,
        log,
    );
    strategy.summary(log);
    log.info("");
    if let Some(evaluate) = evaluate_fn.as_mut() {
        initial_evaluation(driver, evaluate, &initial_arrays, log, result)?;
    }
    let mut arrays = initial_arrays;
    for round in 1..=num_rounds {
        driver.checkpoint(round, "round", log)?;
        log.info("");
        log.info(format!("[ROUND {round}/{num_rounds}]"));
        driver.record(Event::RoundStarted(RoundStarted { round }));
        train(strategy, driver, round, &mut arrays, &mut train_config, log, result)?;
        federated_evaluation(strategy, driver, round, &arrays, &mut evaluate_config, log, result)?;
        if let Some(evaluate) = evaluate_fn.as_mut() {
            central_evaluation(driver, evaluate, round, &arrays, log, result)?;
        }
        result.rounds_completed = round;
    }
    log_finish(&*driver, result, log);
    Ok(())
}

/// Flower's lines before the first round: the strategy and its inputs.
fn log_start(
    strategy: &dyn Strategy,
    num_rounds: u64,
    initial_arrays: &ArrayRecord,
    train_config: &ConfigRecord,
    evaluate_config: &ConfigRecord,
    log: &mut Logger,
) {
    log.info(format!("Starting {} strategy:", strategy.name()));
    log.info(format!("\t├── Number of rounds: {num_rounds}"));
    log.info(format!(
        "\t├── ArrayRecord ({} MB)",
        format_f(initial_arrays.npy_bytes() as f64 / (1024.0 * 1024.0), 2)
    ));
    log.info(format!("\t├── ConfigRecord (train): {}", config_str(train_config)));
    log.info(format!(
        "\t├── ConfigRecord (evaluate): {}",
        config_str(evaluate_config)
    ));
}

/// The server-side evaluation of the initial arrays (round 0).
fn initial_evaluation(
    driver: &mut dyn Driver,
    evaluate: &mut EvaluateFn<'_>,
    initial_arrays: &ArrayRecord,
    log: &mut Logger,
    result: &mut RunResult,
) -> Result<(), StartError> {
    driver.checkpoint(0, "initial evaluation", log)?;
    let metrics = evaluate(0, initial_arrays);
    log.info(format!(
        "Initial global evaluation results: {}",
        metrics_repr(metrics.as_ref())
    ));
    driver.record(Event::CentralEvaluated(CentralEvaluated {
        round: 0,
        metrics: metrics.clone(),
    }));
    if let Some(metrics) = metrics {
        result.evaluate_metrics_serverapp.insert(0, metrics);
    }
    Ok(())
}

/// A round's training: configure, send, aggregate; `arrays` become the
/// aggregate, when there is one.
fn train(
    strategy: &mut dyn Strategy,
    driver: &mut dyn Driver,
    round: u64,
    arrays: &mut ArrayRecord,
    train_config: &mut ConfigRecord,
    log: &mut Logger,
    result: &mut RunResult,
) -> Result<(), StartError> {
    let messages = strategy.configure_train(round, arrays, train_config, &*driver, log)?;
    let replies = driver.send_and_receive(round, Phase::Train, messages, log)?;
    let replies = crate::strategy::screen_train_replies(arrays, replies);
    driver.checkpoint(round, "aggregate_train", log)?;
    let (aggregated_arrays, aggregated_metrics) = strategy.aggregate_train(round, &replies, log)?;
    driver.record(aggregated_event(
        round,
        Phase::Train,
        &replies,
        &aggregated_metrics,
        &aggregated_arrays,
    ));
    if let Some(new_arrays) = aggregated_arrays {
        result.arrays = new_arrays.clone();
        *arrays = new_arrays;
    }
    if let Some(metrics) = aggregated_metrics {
        log.info(format!(
            "\t└──> Aggregated MetricRecord: {}",
            metrics_repr(Some(&metrics))
        ));
        result.train_metrics_clientapp.insert(round, metrics);
    }
    Ok(())
}

/// A round's federated evaluation: configure, send, aggregate.
fn federated_evaluation(
    strategy: &mut dyn Strategy,
    driver: &mut dyn Driver,
    round: u64,
    arrays: &ArrayRecord,
    evaluate_config: &mut ConfigRecord,
    log: &mut Logger,
    result: &mut RunResult,
) -> Result<(), StartError> {
    driver.checkpoint(round, "configure_evaluate", log)?;
    let messages = strategy.configure_evaluate(round, arrays, evaluate_config, &*driver, log)?;
    let replies = driver.send_and_receive(round, Phase::Evaluate, messages, log)?;
    driver.checkpoint(round, "aggregate_evaluate", log)?;
    let aggregated = strategy.aggregate_evaluate(round, &replies, log)?;
    driver.record(aggregated_event(round, Phase::Evaluate, &replies, &aggregated, &None));
    if let Some(metrics) = aggregated {
        log.info(format!(
            "\t└──> Aggregated MetricRecord: {}",
            metrics_repr(Some(&metrics))
        ));
        result.evaluate_metrics_clientapp.insert(round, metrics);
    }
    Ok(())
}

/// A round's server-side evaluation of the global arrays.
fn central_evaluation(
    driver: &mut dyn Driver,
    evaluate: &mut EvaluateFn<'_>,
    round: u64,
    arrays: &ArrayRecord,
    log: &mut Logger,
    result: &mut RunResult,
) -> Result<(), StartError> {
    driver.checkpoint(round, "central evaluation", log)?;
    log.info("Global evaluation");
    let metrics = evaluate(round, arrays);
    log.info(format!("\t└──> MetricRecord: {}", metrics_repr(metrics.as_ref())));
    driver.record(Event::CentralEvaluated(CentralEvaluated {
        round,
        metrics: metrics.clone(),
    }));
    if let Some(metrics) = metrics {
        result.evaluate_metrics_serverapp.insert(round, metrics);
    }
    Ok(())
}

/// Flower's lines after the last round: the time taken and the results.
fn log_finish(driver: &dyn Driver, result: &RunResult, log: &mut Logger) {
    log.info("");
    log.info(format!(
        "Strategy execution finished in {}s",
        format_f(driver.elapsed_secs(), 2)
    ));
    log.info("");
    log.info("Final results:");
    log.info("");
    for line in result.to_string().lines() {
        log.info(format!("\t{line}"));
    }
    log.info("");
}

fn aggregated_event(
    round: u64,
    phase: Phase,
    replies: &[Message],
    metrics: &Option<MetricRecord>,
    arrays: &Option<ArrayRecord>,
) -> Event {
    let results = replies.iter().filter(|r| r.content().is_some()).count() as u64;
    Event::Aggregated(Aggregated {
        round,
        phase,
        results,
        failures: replies.len() as u64 - results,
        metrics: metrics.clone(),
        arrays: arrays.as_ref().map(ArrayRecord::digest),
    })
}

/// A MetricRecord as Python prints the dict (`repr`), or `None`.
pub fn metrics_repr(metrics: Option<&MetricRecord>) -> String {
    match metrics {
        None => "None".into(),
        Some(metrics) => metric_dict(metrics, metric_value_repr).repr(),
    }
}

fn metric_dict(metrics: &MetricRecord, value: fn(&MetricValue) -> PyValue) -> PyValue {
    PyValue::Dict(
        metrics
            .iter()
            .map(|(k, v)| (PyValue::Str(k.to_string()), value(v)))
            .collect(),
    )
}

fn metric_value_repr(value: &MetricValue) -> PyValue {
    match value {
        MetricValue::Int(i) => PyValue::Int(*i),
        MetricValue::Float(f) => PyValue::Float(*f),
        MetricValue::IntList(l) => PyValue::List(l.iter().map(|&i| PyValue::Int(i)).collect()),
        MetricValue::FloatList(l) => PyValue::List(l.iter().map(|&f| PyValue::Float(f)).collect()),
    }
}

/// Flower's `format_value` for the final results block: floats as `%.4e`
/// strings, ints as strings, lists as the string of their formatted items.
fn metric_value_formatted(value: &MetricValue) -> PyValue {
    let list = |items: Vec<String>| PyValue::Str(PyValue::List(items.into_iter().map(PyValue::Str).collect()).repr());
    match value {
        MetricValue::Int(i) => PyValue::Str(i.to_string()),
        MetricValue::Float(f) => PyValue::Str(format_e(*f, 4)),
        MetricValue::IntList(l) => list(l.iter().map(|i| i.to_string()).collect()),
        MetricValue::FloatList(l) => list(l.iter().map(|f| format_e(*f, 4)).collect()),
    }
}

/// The ConfigRecord line of the start block: `str` of each value, bytes as
/// `<bytes>`, `(empty!)` when empty.
fn config_str(config: &ConfigRecord) -> String {
    if config.is_empty() {
        return "(empty!)".into();
    }
    let items: Vec<String> = config
        .iter()
        .map(|(k, v)| {
            let value = match v {
                ConfigValue::Int(i) => i.to_string(),
                ConfigValue::Float(f) => PyValue::Float(*f).repr(),
                ConfigValue::Str(s) => s.clone(),
                ConfigValue::Bytes(_) => "<bytes>".into(),
                ConfigValue::Bool(b) => PyValue::Bool(*b).repr(),
                ConfigValue::IntList(l) => PyValue::List(l.iter().map(|&i| PyValue::Int(i)).collect()).repr(),
                ConfigValue::FloatList(l) => PyValue::List(l.iter().map(|&f| PyValue::Float(f)).collect()).repr(),
                ConfigValue::StrList(l) => PyValue::List(l.iter().map(|s| PyValue::Str(s.clone())).collect()).repr(),
                ConfigValue::BytesList(_) => "<bytes>".into(),
                ConfigValue::BoolList(l) => PyValue::List(l.iter().map(|&b| PyValue::Bool(b)).collect()).repr(),
            };
            format!("{}: {value}", PyValue::Str(k.to_string()).repr())
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

impl fmt::Display for RunResult {
    /// Flower's `Result.__repr__`, the "Final results" block.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_round = |metrics: &BTreeMap<u64, MetricRecord>| {
            PyValue::Dict(
                metrics
                    .iter()
                    .map(|(round, m)| (PyValue::Int(*round as i64), metric_dict(m, metric_value_formatted)))
                    .collect(),
            )
        };
        let megabytes = self.arrays.npy_bytes() as f64 / (1024.0 * 1024.0);
        writeln!(f, "Global Arrays:")?;
        writeln!(f, "\tArrayRecord ({} MB)", format_f(megabytes, 3))?;
        writeln!(f)?;
        writeln!(f, "Aggregated ClientApp-side Train Metrics:")?;
        writeln!(f, "{}", pformat(&by_round(&self.train_metrics_clientapp)))?;
        writeln!(f)?;
        writeln!(f, "Aggregated ClientApp-side Evaluate Metrics:")?;
        writeln!(f, "{}", pformat(&by_round(&self.evaluate_metrics_clientapp)))?;
        writeln!(f)?;
        writeln!(f, "ServerApp-side Evaluate Metrics:")?;
        write!(f, "{}", pformat(&by_round(&self.evaluate_metrics_serverapp)))
    }
}
