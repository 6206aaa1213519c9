//! Projections: the derived state (runs, logs, per-round metrics, the
//! SuperNodes of a deployment) as a pure fold over stored events.
//!
//! The store keeps the same projections in tables, updated in the same
//! transaction as each append; [`Projections::fold`] is the definition they
//! must equal, and tests rebuild them from the event table and compare.
//! Nothing here does I/O.
//!
//! It never reads or writes the store; the store calls it.

use std::collections::BTreeMap;

use crate::domain::event::{Event, Phase};
use crate::domain::ids::{Micros, RunId, Seq};
use crate::domain::node::{self, Nodes};
use crate::domain::run::{self, State};
use crate::records::{Digest, MetricRecord};

/// An event as the store holds it: its position, run and recorded time.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: Seq,
    pub run_id: RunId,
    pub at: Micros,
    pub event: Event,
}

/// One `PushLogs` batch of a run's output.
#[derive(Clone, Debug, PartialEq)]
pub struct LogChunk {
    pub seq: Seq,
    pub run_id: RunId,
    pub at: Micros,
    pub text: String,
}

/// Where a round's metrics come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricSource {
    /// Aggregated ClientApp-side training metrics.
    Train,
    /// Aggregated ClientApp-side evaluation metrics.
    Evaluate,
    /// ServerApp-side (central) evaluation.
    Central,
}

impl MetricSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricSource::Train => "train",
            MetricSource::Evaluate => "evaluate",
            MetricSource::Central => "central",
        }
    }

    pub fn parse(text: &str) -> Option<MetricSource> {
        match text {
            "train" => Some(MetricSource::Train),
            "evaluate" => Some(MetricSource::Evaluate),
            "central" => Some(MetricSource::Central),
            _ => None,
        }
    }
}

/// The metrics of one round from one source.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundMetrics {
    pub run_id: RunId,
    pub round: u64,
    pub source: MetricSource,
    /// Replies that carried content (0 for central evaluation).
    pub results: u64,
    pub failures: u64,
    pub metrics: Option<MetricRecord>,
    pub arrays: Option<Digest>,
}

/// All derived state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projections {
    pub state: State,
    pub logs: Vec<LogChunk>,
    pub rounds: BTreeMap<(RunId, u64, MetricSource), RoundMetrics>,
    pub nodes: Nodes,
}

impl Projections {
    /// The definition of every projection: fold the events in order.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Projections {
        let mut projections = Projections::default();
        for stored in events {
            projections.apply(stored);
        }
        projections
    }

    pub fn apply(&mut self, stored: &StoredEvent) {
        if node::is_node_event(&stored.event) {
            node::apply(&mut self.nodes, &stored.event, stored.at);
            return;
        }
        run::apply(&mut self.state, stored.run_id, &stored.event, stored.at);
        if let Some(chunk) = log_chunk(stored) {
            self.logs.push(chunk);
        }
        if let Some(metrics) = round_metrics(stored) {
            self.rounds
                .insert((metrics.run_id, metrics.round, metrics.source), metrics);
        }
    }
}

/// The log projection's row for an event, if it has one.
pub(crate) fn log_chunk(stored: &StoredEvent) -> Option<LogChunk> {
    match &stored.event {
        Event::LogAppended(log) => Some(LogChunk {
            seq: stored.seq,
            run_id: stored.run_id,
            at: stored.at,
            text: log.text.clone(),
        }),
        _ => None,
    }
}

/// The round-metrics projection's row for an event, if it has one.
pub(crate) fn round_metrics(stored: &StoredEvent) -> Option<RoundMetrics> {
    match &stored.event {
        Event::Aggregated(aggregated) => Some(RoundMetrics {
            run_id: stored.run_id,
            round: aggregated.round,
            source: match aggregated.phase {
                Phase::Train => MetricSource::Train,
                Phase::Evaluate => MetricSource::Evaluate,
            },
            results: aggregated.results,
            failures: aggregated.failures,
            metrics: aggregated.metrics.clone(),
            arrays: aggregated.arrays,
        }),
        Event::CentralEvaluated(central) => Some(RoundMetrics {
            run_id: stored.run_id,
            round: central.round,
            source: MetricSource::Central,
            results: 0,
            failures: 0,
            metrics: central.metrics.clone(),
            arrays: None,
        }),
        _ => None,
    }
}
