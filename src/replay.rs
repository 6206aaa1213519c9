//! Replay: re-execute a recorded run and compare every event it produces with
//! the recorded one, or pin the first divergence.
//!
//! A replay runs the very code path of a live run (`sim::simulate`) from the
//! run's first event: its seed, run configuration overrides and federation
//! options, and the FAB stored under its hash. What came from outside the
//! simulated computation is taken from the record and re-injected at its
//! logical position: a stop request (the `SimulationStopped` event says
//! before which step), an injected fault (a `ReplyReceived` error marked
//! `injected`), and the death of the app process (the record simply ends;
//! the replay stops there too).
//!
//! Events are compared by kind and payload bytes; wall-clock metadata is not
//! compared. On a difference the replay stops at the next step and reports
//! both versions with the fields that differ (or the bytes, when the decoded
//! values look equal). A record that ends before its simulation does (the
//! process died, or the run is still going) gets its own outcome: what was
//! recorded is identical, but the run was not compared to its end. The build
//! and platform that recorded the run (`AppProcessStarted`) are compared with
//! this process's, so that a divergence can name them.
//!
//! A run with Python components is re-executed through the Python bridge
//! (`bridge::run`), on the very path of the live run: the same FAB, seed,
//! node ids, message ids, virtual times and number of workers; a worker that
//! died or a reply that timed out is re-injected where the record has it.
//!
//! The record is read as a [`RecordSource`], one event at a time and twice:
//! a first pass learns the run's inputs, its outcome and the outside inputs
//! to re-inject (a few small values), and the second compares the recorded
//! simulation events with the re-executed ones as they are produced. So
//! memory does not grow with the record's length.
//!
//! Apart from the Python processes of such a run, this module does no I/O:
//! the caller fetches the record.

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use crate::codec;
use crate::domain::event::{AppProcessStarted, Delivered, Event, Phase, PythonStarted, Reply, RunFinished};
use crate::domain::ids::Micros;
use crate::flwr_log::Level;
use crate::records::{Digest, Error};
use crate::sim::{self, Apps, Inputs, Sink};

/// One recorded event, undecoded (the store's form).
pub use crate::codec::RawEvent as RecordedEvent;

/// A run's record: its events in order and its FAB.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub events: Vec<RecordedEvent>,
    pub fab: Vec<u8>,
}

/// A run's record as replay reads it: its FAB, and its events from the
/// first, in order, one at a time, as often as asked (replay reads them
/// twice). A record held in memory is one; the CLI keeps the pages it
/// fetches in a file.
pub trait RecordSource {
    /// The run's FAB.
    fn fab(&self) -> &[u8];
    /// The recorded events from the first, in order; every call starts
    /// again. An error ends the replay.
    fn events(&self) -> Box<dyn Iterator<Item = io::Result<RecordedEvent>> + '_>;
}

impl RecordSource for Record {
    fn fab(&self) -> &[u8] {
        &self.fab
    }

    fn events(&self) -> Box<dyn Iterator<Item = io::Result<RecordedEvent>> + '_> {
        Box::new(self.events.iter().cloned().map(Ok))
    }
}

/// Why a run cannot be re-executed at all.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotReplayable {
    #[error("the record has no RunSubmitted event; it is not a run's record")]
    NoSubmission,
    #[error("the record cannot be decoded: {0}")]
    Undecodable(String),
    #[error("the record cannot be read: {0}")]
    Unreadable(String),
    #[error(
        "the run recorded no simulation events (it ended {status} before its simulation began): there is nothing \
         to replay{details}"
    )]
    NeverRan { status: String, details: String },
    #[error("the run's inputs cannot be resolved again: {0}")]
    Inputs(#[source] crate::builtin::BuiltinError),
    #[error("the run's inputs cannot be resolved again: {0}")]
    Interpreter(#[source] crate::bridge::python::Error),
    #[error(
        "the run is a deployment run: its ClientApps ran on SuperNodes, whose replies are outside inputs, and \
         re-executing its ServerApp against the recorded replies is not supported yet; `flwr replay --events` shows \
         its {messages} message events and what its ServerApp recorded"
    )]
    Deployment { messages: usize },
}

/// What the replay found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub run_id: u64,
    pub seed: u64,
    /// The build that recorded the run, and whether it is this one.
    pub recorded_build: String,
    pub same_build: bool,
    /// The build and platform of the process that computed the run (absent
    /// in records of older builds).
    pub recorded_by: Option<AppProcessStarted>,
    /// How that build and platform differ from this process's, as phrases
    /// ("recorded by another build (...)"); empty when they are the same.
    pub provenance: Vec<String>,
    /// Simulation events compared (all of them when identical).
    pub events_compared: usize,
    pub events_recorded: usize,
    pub rounds: u64,
    /// Digest of the final global arrays of the replay, if any.
    pub final_arrays: Option<Digest>,
    pub outcome: VerdictOutcome,
    /// How the recorded run ended (its status text and details).
    pub recorded_status: String,
    pub recorded_details: String,
    /// Outside inputs re-injected: a stop, faults.
    pub reinjected: Vec<String>,
    pub replay_seconds: f64,
    /// running → finished of the recorded run, when known.
    pub original_seconds: Option<f64>,
    /// The replay stopped after this round on request (`--until-round`).
    pub until_round: Option<u64>,
    /// What the reader should know besides the outcome (e.g. another Python
    /// environment than the recorded one).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum VerdictOutcome {
    /// Every compared event is identical.
    Identical,
    /// The record ends before the simulation did: the run ended (its process
    /// was killed or crashed) without finishing it. Identical up to there.
    Truncated,
    /// The record ends before the simulation did because the run is still in
    /// progress. Identical up to there.
    InProgress,
    Diverged(Box<Divergence>),
}

/// The first event that differs.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// Position among the run's simulation events (0-based).
    pub index: usize,
    /// Sequence number of the recorded event in the store, if there is one.
    pub seq: Option<u64>,
    pub round: Option<u64>,
    pub node_id: Option<u64>,
    pub recorded: Option<Event>,
    pub replayed: Option<Event>,
    /// `(field path, recorded value, replayed value)`.
    pub fields: Vec<(String, String, String)>,
    /// What usually causes a divergence at this kind of event.
    pub hint: String,
    /// The first differing payload byte: `(offset, recorded bytes from
    /// there, replayed bytes from there)` (up to 16 each), when the payloads
    /// of the same kind differ.
    pub bytes: Option<(usize, Vec<u8>, Vec<u8>)>,
}

/// What the first pass learnt about the recorded run's simulation events.
struct Expected {
    /// How many there are.
    count: usize,
    /// Faults injected from outside: `(round, phase, node) → error`.
    faults: BTreeMap<(u64, Phase, u64), Error>,
    /// Outside inputs of a Python ServerApp's run: `(step, node) → reply`.
    outside: BTreeMap<(u64, u64), Delivered>,
    /// The record stops without `SimulationFinished` (the process died).
    truncated: bool,
}

/// The record's simulation events, read and decoded one at a time as the
/// comparison reaches them (the second pass).
struct Upcoming<'a> {
    events: Box<dyn Iterator<Item = io::Result<RecordedEvent>> + 'a>,
    /// The next simulation event.
    next: Option<(RecordedEvent, Event)>,
    /// Simulation events the first pass counted that are not read yet.
    remaining: usize,
    /// A read that failed (the record changed between the passes).
    error: Option<NotReplayable>,
}

impl<'a> Upcoming<'a> {
    fn new(record: &'a (impl RecordSource + ?Sized), count: usize) -> Upcoming<'a> {
        let mut upcoming = Upcoming {
            events: record.events(),
            next: None,
            remaining: count,
            error: None,
        };
        upcoming.fill();
        upcoming
    }

    fn peek(&self) -> Option<&(RecordedEvent, Event)> {
        self.next.as_ref()
    }

    /// Moves past the next event; returns it.
    fn advance(&mut self) -> Option<(RecordedEvent, Event)> {
        let current = self.next.take();
        self.fill();
        current
    }

    /// Reads up to the next simulation event, if there is one.
    fn fill(&mut self) {
        while self.next.is_none() && self.remaining > 0 && self.error.is_none() {
            let Some(read) = self.events.next() else {
                return;
            };
            let decoded = read
                .map_err(|e| NotReplayable::Unreadable(e.to_string()))
                .and_then(|recorded| {
                    let event = codec::decode(&recorded.kind, recorded.version, &recorded.payload)
                        .map_err(|e| NotReplayable::Undecodable(e.to_string()))?;
                    Ok((recorded, event))
                });
            match decoded {
                Ok((recorded, event)) if event.is_simulation() => {
                    self.remaining -= 1;
                    self.next = Some((recorded, event));
                }
                Ok(_) => {}
                Err(error) => self.error = Some(error),
            }
        }
    }
}

/// Compares the replay's events with the record as they come.
struct Comparer<'a> {
    expected: &'a Expected,
    upcoming: Upcoming<'a>,
    index: usize,
    /// The final arrays of the last compared `SimulationFinished` that has
    /// them.
    final_arrays: Option<Digest>,
    divergence: Option<Divergence>,
    until_round: Option<u64>,
    reinjected: Vec<String>,
    /// The replay went past the end of a truncated record.
    past_end: bool,
    /// Told `(round, rounds)` as each round starts.
    progress: &'a mut dyn FnMut(u64, u64),
    rounds: u64,
    notes: Vec<String>,
}

impl Sink for Comparer<'_> {
    fn event(&mut self, event: Event) {
        match &event {
            Event::SimulationStarted(started) => self.rounds = started.num_rounds,
            Event::RoundStarted(started) => (self.progress)(started.round, self.rounds),
            _ => {}
        }
        if self.divergence.is_some() || self.past_end {
            return;
        }
        let Some((recorded, recorded_event)) = self.upcoming.peek() else {
            if self.expected.truncated {
                self.past_end = true;
            } else {
                self.divergence = Some(divergence(self.index, None, Some(event)));
            }
            return;
        };
        if let (Event::PythonStarted(recorded_env), Event::PythonStarted(replayed_env)) = (recorded_event, &event) {
            if let Some(note) = environment_note(recorded_env, replayed_env) {
                self.notes.push(note);
            }
            if recorded_env.workers == replayed_env.workers && recorded_env.server_api == replayed_env.server_api {
                self.advance();
                return;
            }
        }
        let (kind, version, payload) = codec::encode(&event);
        let same = if recorded.version == version {
            recorded.kind == kind && recorded.payload == payload
        } else {
            // Written by a build with another payload version: compare values.
            *recorded_event == event
        };
        if same {
            self.advance();
        } else {
            self.divergence = Some(divergence(self.index, Some((recorded, recorded_event)), Some(event)));
        }
    }

    fn log(&mut self, _level: Level, _line: &str) {}

    fn output(&mut self, _text: &str) {}

    fn should_stop(&mut self, round: u64, before: &str) -> bool {
        if self.divergence.is_some() || self.past_end {
            return true;
        }
        if self.until_round.is_some_and(|last| round > last && before == "round") {
            // What the engine records after this stop is not compared.
            self.past_end = true;
            return true;
        }
        match self.upcoming.peek() {
            Some((_, Event::SimulationStopped(stopped))) if stopped.round == round && stopped.before == before => {
                self.reinjected
                    .push(format!("the stop request, in round {round} before {before}"));
                true
            }
            None if self.expected.truncated => {
                self.past_end = true;
                true
            }
            _ => false,
        }
    }

    fn recorded_outside_input(&mut self, step: u64, node_id: u64) -> Option<Delivered> {
        let input = self.expected.outside.get(&(step, node_id)).cloned();
        if let Some(input) = &input {
            let what = match input {
                Delivered::TimedOut => "a timeout",
                _ => "the loss of its worker process",
            };
            self.reinjected.push(format!("{what} of node {node_id} at step {step}"));
        }
        input
    }

    fn injected_fault(&mut self, round: u64, phase: Phase, node_id: u64) -> Option<Error> {
        let fault = self.expected.faults.get(&(round, phase, node_id)).cloned();
        if fault.is_some() {
            self.reinjected.push(format!(
                "a fault of node {node_id} in round {round} ({})",
                phase.as_str()
            ));
        }
        fault
    }
}

impl Comparer<'_> {
    /// The next recorded event was compared and is identical.
    fn advance(&mut self) {
        if let Some((_, Event::SimulationFinished(finished))) = self.upcoming.advance() {
            if finished.arrays.is_some() {
                self.final_arrays = finished.arrays;
            }
        }
        self.index += 1;
    }
}

fn node_of(event: &Event) -> Option<u64> {
    match event {
        Event::NodeSampled(e) => Some(e.node_id),
        Event::ReplyReceived(e) => Some(e.node_id),
        Event::MessageSent(e) => Some(e.node_id),
        Event::ReplyDelivered(e) => Some(e.node_id),
        _ => None,
    }
}

/// A note when the replay's Python environment is not the recorded one.
fn environment_note(recorded: &PythonStarted, replayed: &PythonStarted) -> Option<String> {
    let describe = |env: &PythonStarted| {
        let mut parts = vec![format!("Python {}", env.python), format!("flwr {}", env.flwr)];
        parts.extend(env.libraries.iter().cloned());
        format!("{} ({})", env.interpreter, parts.join(", "))
    };
    let (recorded_text, replayed_text) = (describe(recorded), describe(replayed));
    (recorded_text != replayed_text)
        .then(|| format!("The run was recorded with {recorded_text} and replayed with {replayed_text}."))
}

fn hint(event: &Event) -> String {
    match event {
        Event::SimulationStarted(_) => "The run's inputs resolved differently: the FAB, the run configuration or the \
            build that reads them changed."
            .into(),
        Event::NodesRegistered(_) => "Node ids derive from the seed and num-supernodes; one of them differs.".into(),
        Event::NodeSampled(_) => "Sampling derives from the seed, the population and the strategy's fractions and \
            minimums; a different strategy configuration or build samples differently."
            .into(),
        Event::ReplyReceived(e) => format!(
            "The ClientApp on node {} answered differently to the same message: it depends on something outside \
             its seeded stream (a clock, a global random generator, thread timing, files), or the build differs.",
            e.node_id
        ),
        Event::Aggregated(_) => "The replies were identical but their aggregate is not: the strategy's code or \
            parameters differ (another build?), or it uses unseeded randomness."
            .into(),
        Event::CentralEvaluated(_) => "The server-side evaluation of identical arrays differs: the evaluation is not \
            deterministic, or the build differs."
            .into(),
        Event::RoundStarted(_) | Event::SimulationStopped(_) | Event::SimulationFinished(_) => {
            "The run's control flow differs: a different number of rounds, a stop, or a failure.".into()
        }
        Event::MessageSent(e) => format!(
            "The Python ServerApp sent something else at step {} (to node {}): it depends on something outside its \
             seeded generators (a clock, os.urandom, an unseeded numpy Generator, thread timing, files), or its code \
             or the Python environment changed.",
            e.step, e.node_id
        ),
        Event::ReplyDelivered(e) => format!(
            "The Python ClientApp on node {} answered differently at step {} to the same message: it depends on \
             something outside its seeded generators (a clock, os.urandom, an unseeded numpy Generator, state kept \
             in module globals, files), or its code or the Python environment changed.",
            e.node_id, e.step
        ),
        Event::PythonStarted(_) => "The run used another number of ClientApp workers or another ServerApp API.".into(),
        _ => "The event differs.".into(),
    }
}

/// Payload as JSON for field-level comparison.
fn as_json(event: &Event) -> serde_json::Value {
    let (_, _, payload) = codec::encode(event);
    rmp_serde::from_slice::<serde_json::Value>(&payload).unwrap_or(serde_json::Value::Null)
}

fn diff(
    path: &str,
    recorded: &serde_json::Value,
    replayed: &serde_json::Value,
    out: &mut Vec<(String, String, String)>,
) {
    use serde_json::Value;
    match (recorded, replayed) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    &sub,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() && !is_digest(a) => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{index}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push((path.to_string(), render_value(a), render_value(b))),
        _ => {}
    }
}

/// A digest serialises as 32 small integers; show it as hex instead.
fn is_digest(items: &[serde_json::Value]) -> bool {
    items.len() == 32 && items.iter().all(|v| v.as_u64().is_some_and(|n| n < 256))
}

fn render_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) if is_digest(items) => {
            let bytes: Vec<u8> = items.iter().map(|v| v.as_u64().unwrap_or(0) as u8).collect();
            hex::encode(&bytes[..4])
        }
        other => other.to_string(),
    }
}

fn divergence(index: usize, recorded: Option<(&RecordedEvent, &Event)>, replayed: Option<Event>) -> Divergence {
    let mut fields = Vec::new();
    let mut bytes = None;
    if let (Some((stored, recorded)), Some(replayed)) = (recorded, &replayed) {
        if recorded.kind() == replayed.kind() {
            diff("", &as_json(recorded), &as_json(replayed), &mut fields);
            bytes = first_difference(&stored.payload, &codec::encode(replayed).2);
        } else {
            fields.push(("kind".into(), recorded.kind().into(), replayed.kind().into()));
        }
    }
    let reference = replayed.as_ref().or(recorded.map(|(_, e)| e));
    let round = reference.and_then(Event::round);
    let hint = reference
        .map(hint)
        .unwrap_or_else(|| "The replay produced fewer events than the record.".into());
    Divergence {
        index,
        seq: recorded.map(|(r, _)| r.seq.0),
        round,
        node_id: recorded
            .and_then(|(_, e)| node_of(e))
            .or_else(|| replayed.as_ref().and_then(node_of)),
        recorded: recorded.map(|(_, e)| e.clone()),
        replayed,
        fields,
        hint,
        bytes,
    }
}

/// Bytes shown on each side of a payload difference.
const BYTES_SHOWN: usize = 16;

/// Where two payloads first differ, with the bytes from there on.
fn first_difference(recorded: &[u8], replayed: &[u8]) -> Option<(usize, Vec<u8>, Vec<u8>)> {
    let offset = recorded
        .iter()
        .zip(replayed)
        .position(|(a, b)| a != b)
        .or_else(|| (recorded.len() != replayed.len()).then(|| recorded.len().min(replayed.len())))?;
    let window = |payload: &[u8]| payload[offset..payload.len().min(offset + BYTES_SHOWN)].to_vec();
    Some((offset, window(recorded), window(replayed)))
}

/// When the run was recorded by another build or on another platform, that
/// is the first suspect, before the ClientApp or the strategy.
fn blame_provenance(divergence: &mut Divergence, provenance: &[String]) {
    if provenance.is_empty() {
        return;
    }
    let platform_only = !provenance
        .iter()
        .any(|p| p.starts_with("recorded by another build") || p.starts_with("compiled with"));
    let why = if platform_only {
        "floret's results are meant not to depend on the platform, so please report this with both platforms"
    } else {
        "code or compiler changes can change results"
    };
    divergence.hint = format!(
        "The run was {}: that is the likely cause ({why}), rather than the app. Otherwise: {}",
        provenance.join("; "),
        divergence.hint
    );
}

/// What a record says about its run.
struct Decoded {
    submitted: crate::domain::event::RunSubmitted,
    recorded_by: Option<AppProcessStarted>,
    /// When the run was submitted (the virtual clock of a Python run starts
    /// there).
    submitted_at: Micros,
    /// The recorded Python environment, for a run with Python components.
    python: Option<PythonStarted>,
    finished: Option<RunFinished>,
    /// When the run started running and when it finished.
    times: Option<(Micros, Micros)>,
    expected: Expected,
}

/// Decodes a record (the first pass): the submission, the run's outcome and
/// what the comparison expects.
fn decode(record: &(impl RecordSource + ?Sized)) -> Result<Decoded, NotReplayable> {
    let mut pass = FirstPass::default();
    for recorded in record.events() {
        let recorded = recorded.map_err(|e| NotReplayable::Unreadable(e.to_string()))?;
        let event = codec::decode(&recorded.kind, recorded.version, &recorded.payload)
            .map_err(|e| NotReplayable::Undecodable(e.to_string()))?;
        pass.observe(&recorded, &event);
    }
    pass.finish()
}

/// What the first pass has learned from the events read so far.
#[derive(Default)]
struct FirstPass {
    submitted: Option<crate::domain::event::RunSubmitted>,
    finished: Option<RunFinished>,
    running_at: Option<Micros>,
    finished_at: Option<Micros>,
    count: usize,
    faults: BTreeMap<(u64, Phase, u64), Error>,
    outside: BTreeMap<(u64, u64), Delivered>,
    python: Option<PythonStarted>,
    submitted_at: Option<Micros>,
    simulation_finished: bool,
    recorded_by: Option<AppProcessStarted>,
    /// Message events (a deployment run's).
    messages: usize,
}

impl FirstPass {
    /// Takes note of one recorded event (`event`, decoded from `recorded`).
    fn observe(&mut self, recorded: &RecordedEvent, event: &Event) {
        match event {
            Event::RunSubmitted(s) => {
                self.submitted = Some(s.clone());
                self.submitted_at = Some(recorded.at);
            }
            Event::PythonStarted(p) => self.python = Some(p.clone()),
            Event::ReplyDelivered(reply) => match &reply.reply {
                Delivered::Error { injected: true, .. } | Delivered::TimedOut => {
                    self.outside.insert((reply.step, reply.node_id), reply.reply.clone());
                }
                _ => {}
            },
            Event::RunRunning => self.running_at = Some(recorded.at),
            Event::RunFinished(f) => {
                self.finished = Some(f.clone());
                self.finished_at = Some(recorded.at);
            }
            Event::ReplyReceived(reply) => {
                if let Reply::Error {
                    code,
                    reason,
                    injected: true,
                } = &reply.reply
                {
                    self.faults.insert(
                        (reply.round, reply.phase, reply.node_id),
                        Error {
                            code: *code,
                            reason: reason.clone(),
                        },
                    );
                }
            }
            Event::SimulationFinished(_) => self.simulation_finished = true,
            Event::AppProcessStarted(started) => self.recorded_by = Some(started.clone()),
            Event::MessageRouted(_) => self.messages += 1,
            _ => {}
        }
        if event.is_simulation() {
            self.count += 1;
        }
    }

    /// What the whole record says, or why it cannot be replayed.
    fn finish(self) -> Result<Decoded, NotReplayable> {
        let submitted = self.submitted.ok_or(NotReplayable::NoSubmission)?;
        if self.messages > 0 {
            return Err(NotReplayable::Deployment {
                messages: self.messages,
            });
        }
        if self.count == 0 {
            return Err(never_ran(self.finished.as_ref()));
        }
        let times = self.running_at.zip(self.finished_at);
        Ok(Decoded {
            submitted,
            recorded_by: self.recorded_by,
            submitted_at: self.submitted_at.unwrap_or(Micros(0)),
            finished: self.finished,
            times,
            python: self.python,
            expected: Expected {
                count: self.count,
                faults: self.faults,
                outside: self.outside,
                truncated: !self.simulation_finished,
            },
        })
    }
}

/// The refusal of a record without simulation events, with the run's status.
fn never_ran(finished: Option<&RunFinished>) -> NotReplayable {
    let (status, details) = match finished {
        Some(f) => (format!("finished:{}", f.sub_status.as_str()), f.details.clone()),
        None => ("pending".into(), String::new()),
    };
    let details = if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    };
    NotReplayable::NeverRan { status, details }
}

/// Re-executes the recorded run with the built-in apps.
pub fn replay(
    record: &(impl RecordSource + ?Sized),
    workers: usize,
    until_round: Option<u64>,
) -> Result<Verdict, NotReplayable> {
    replay_with(record, workers, until_round, |inputs| {
        crate::builtin::build(inputs, &mut crate::flwr_log::Logger::new())
    })
}

/// [`replay`], telling `progress` `(round, rounds)` as each round starts.
pub(crate) fn replay_with_progress(
    record: &(impl RecordSource + ?Sized),
    workers: usize,
    until_round: Option<u64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verdict, NotReplayable> {
    replay_inner(
        record,
        workers,
        until_round,
        |inputs| crate::builtin::build(inputs, &mut crate::flwr_log::Logger::new()),
        progress,
    )
}

/// Re-executes the recorded run with apps built by `build_apps` (tests use
/// their own ClientApps).
pub fn replay_with(
    record: &(impl RecordSource + ?Sized),
    workers: usize,
    until_round: Option<u64>,
    build_apps: impl FnOnce(&Inputs) -> Result<Apps, crate::builtin::BuiltinError>,
) -> Result<Verdict, NotReplayable> {
    replay_inner(record, workers, until_round, build_apps, &mut |_, _| {})
}

/// Decodes the record, re-executes its run into a [`Comparer`] and gives the
/// verdict.
fn replay_inner(
    record: &(impl RecordSource + ?Sized),
    workers: usize,
    until_round: Option<u64>,
    build_apps: impl FnOnce(&Inputs) -> Result<Apps, crate::builtin::BuiltinError>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verdict, NotReplayable> {
    let decoded = decode(record)?;
    let inputs = recorded_inputs(record, &decoded.submitted)?;
    let (apps, python_run) = prepare_apps(record, &decoded, &inputs, workers, build_apps)?;
    let mut comparer = Comparer::new(record, &decoded.expected, until_round, progress);
    let started = Instant::now();
    let rounds_completed = re_execute(&inputs, apps, python_run.as_ref(), workers, &mut comparer);
    let replay_seconds = started.elapsed().as_secs_f64();
    if let Some(error) = comparer.upcoming.error.take() {
        return Err(error);
    }
    let comparison = Comparison::of(comparer, decoded.finished.is_some(), rounds_completed, replay_seconds);
    Ok(verdict(decoded, comparison, until_round))
}

/// The run's inputs, resolved from its submission and the recorded FAB.
fn recorded_inputs(
    record: &(impl RecordSource + ?Sized),
    submitted: &crate::domain::event::RunSubmitted,
) -> Result<Inputs, NotReplayable> {
    crate::builtin::resolve_inputs(
        submitted.run_id.0,
        submitted.seed,
        record.fab(),
        &submitted.fab_hash,
        &submitted.override_config,
        &submitted.federation_options,
    )
    .map_err(NotReplayable::Inputs)
}

/// The built-in apps by `build_apps`, or the Python run for a run with Python
/// components.
fn prepare_apps(
    record: &(impl RecordSource + ?Sized),
    decoded: &Decoded,
    inputs: &Inputs,
    workers: usize,
    build_apps: impl FnOnce(&Inputs) -> Result<Apps, crate::builtin::BuiltinError>,
) -> Result<(Option<Apps>, Option<crate::bridge::run::PythonRun>), NotReplayable> {
    let is_python = crate::bridge::is_python(&inputs.server_app) || crate::bridge::is_python(&inputs.client_app);
    let python_run = if is_python {
        Some(python_replay(
            record,
            &decoded.submitted,
            decoded.submitted_at,
            decoded.python.as_ref(),
            workers,
        )?)
    } else {
        None
    };
    let apps = if is_python {
        None
    } else {
        Some(build_apps(inputs).map_err(NotReplayable::Inputs)?)
    };
    Ok((apps, python_run))
}

impl<'a> Comparer<'a> {
    /// A comparer at the start of the record's simulation events.
    fn new(
        record: &'a (impl RecordSource + ?Sized),
        expected: &'a Expected,
        until_round: Option<u64>,
        progress: &'a mut dyn FnMut(u64, u64),
    ) -> Self {
        Comparer {
            expected,
            upcoming: Upcoming::new(record, expected.count),
            index: 0,
            final_arrays: None,
            divergence: None,
            until_round,
            reinjected: Vec::new(),
            past_end: false,
            progress,
            rounds: 0,
            notes: Vec::new(),
        }
    }
}

/// What the re-execution showed, once the comparer is done.
struct Comparison {
    outcome: VerdictOutcome,
    events_compared: usize,
    rounds: u64,
    final_arrays: Option<Digest>,
    reinjected: Vec<String>,
    notes: Vec<String>,
    replay_seconds: f64,
}

impl Comparison {
    /// The outcome and findings of `comparer` (`finished`: the run finished).
    fn of(mut comparer: Comparer<'_>, finished: bool, rounds: u64, replay_seconds: f64) -> Self {
        let outcome = outcome(&mut comparer, finished);
        Comparison {
            outcome,
            events_compared: comparer.index,
            rounds,
            final_arrays: comparer.final_arrays,
            reinjected: comparer.reinjected,
            notes: comparer.notes,
            replay_seconds,
        }
    }
}

/// The verdict on a decoded record and its comparison, with the likely
/// causes of a divergence.
fn verdict(decoded: Decoded, comparison: Comparison, until_round: Option<u64>) -> Verdict {
    let Decoded {
        submitted,
        recorded_by,
        finished,
        times,
        python,
        expected,
        ..
    } = decoded;
    let Comparison {
        mut outcome, mut notes, ..
    } = comparison;
    let provenance = provenance(recorded_by.as_ref(), &submitted.build);
    let same_build = !provenance.iter().any(|p| p.starts_with("recorded by another build"));
    if let VerdictOutcome::Diverged(divergence) = &mut outcome {
        blame_provenance(divergence, &provenance);
    }
    if matches!(outcome, VerdictOutcome::Diverged(_)) && python.as_ref().is_some_and(|p| p.server_api == "legacy") {
        notes.push(LEGACY_NOTE.into());
    }
    let (recorded_status, recorded_details) = match &finished {
        Some(f) => (format!("finished:{}", f.sub_status.as_str()), f.details.clone()),
        None => ("running".to_string(), String::new()),
    };
    Verdict {
        run_id: submitted.run_id.0,
        seed: submitted.seed,
        same_build,
        recorded_build: recorded_by
            .as_ref()
            .map(|r| r.build.build.clone())
            .unwrap_or(submitted.build),
        recorded_by,
        provenance,
        events_compared: comparison.events_compared,
        events_recorded: expected.count,
        rounds: comparison.rounds,
        final_arrays: comparison.final_arrays,
        outcome,
        recorded_status,
        recorded_details,
        reinjected: comparison.reinjected,
        replay_seconds: comparison.replay_seconds,
        original_seconds: times.map(|(start, end)| (end.0 - start.0) as f64 / 1e6),
        until_round,
        notes,
    }
}

/// Runs the simulation again, with the built-in `apps` or through the
/// Python bridge, into `comparer`; returns the rounds completed.
fn re_execute(
    inputs: &Inputs,
    apps: Option<Apps>,
    python_run: Option<&crate::bridge::run::PythonRun>,
    workers: usize,
    comparer: &mut Comparer<'_>,
) -> u64 {
    match (apps, python_run) {
        (Some(apps), _) => sim::simulate(inputs, apps, workers, comparer).rounds_completed,
        (None, Some(python_run)) => crate::bridge::run::run(inputs, python_run, None, comparer)
            .finished
            .map(|f| f.rounds_completed)
            .unwrap_or(0),
        (None, None) => unreachable!("a run has apps or Python"),
    }
}

/// The outcome once the re-execution ended (`finished`: the record has the
/// run's end).
fn outcome(comparer: &mut Comparer<'_>, finished: bool) -> VerdictOutcome {
    let expected = comparer.expected;
    let stopped_early = comparer.until_round.is_some() && comparer.index < expected.count;
    match comparer.divergence.take() {
        Some(divergence) => VerdictOutcome::Diverged(Box::new(divergence)),
        None if stopped_early => VerdictOutcome::Identical,
        None if comparer.past_end || (expected.truncated && comparer.index == expected.count) => {
            if finished {
                VerdictOutcome::Truncated
            } else {
                VerdictOutcome::InProgress
            }
        }
        None if comparer.index < expected.count && !stopped_early => {
            let recorded = comparer.upcoming.peek().map(|(recorded, event)| (recorded, event));
            VerdictOutcome::Diverged(Box::new(divergence(comparer.index, recorded, None)))
        }
        None => VerdictOutcome::Identical,
    }
}

/// How the build and platform that recorded the run differ from this
/// process's (`recorded_build`: the build named at submission, for records
/// without `AppProcessStarted`).
fn provenance(recorded_by: Option<&AppProcessStarted>, recorded_build: &str) -> Vec<String> {
    let here = crate::provenance::app_process();
    match recorded_by {
        Some(recorded) => crate::provenance::differences(recorded, &here),
        None if recorded_build != crate::BUILD => vec![format!(
            "recorded by another build ({}; this is {})",
            recorded_build,
            crate::BUILD
        )],
        None => Vec::new(),
    }
}

/// The note of a divergence in a run of Flower's legacy ServerApp API.
const LEGACY_NOTE: &str = "The ServerApp uses Flower's legacy API (`server_fn`), whose server loop calls the \
     ClientApps from a thread pool and aggregates their results in the order the threads finish: its runs are not \
     bit-reproducible, even for a deterministic app (docs/REPLAY.md).";

/// What re-executing a run with Python components needs. The interpreter:
/// `FLWR_PYTHON` when set, else the recorded one while it exists, else the
/// rule of `flwr run` in this environment. The number of workers is the
/// recorded one.
fn python_replay(
    record: &(impl RecordSource + ?Sized),
    submitted: &crate::domain::event::RunSubmitted,
    submitted_at: Micros,
    recorded: Option<&PythonStarted>,
    workers: usize,
) -> Result<crate::bridge::run::PythonRun, NotReplayable> {
    use std::path::PathBuf;
    let verified =
        crate::fab::verify_fab(record.fab(), &submitted.fab_hash).map_err(|e| NotReplayable::Inputs(e.into()))?;
    let explicit = std::env::var_os("FLWR_PYTHON").filter(|p| !p.is_empty());
    let recorded_path = recorded
        .map(|p| PathBuf::from(&p.interpreter))
        .filter(|path| path.exists());
    let interpreter = match (explicit, recorded_path) {
        (Some(_), _) => crate::bridge::python::resolve_here(),
        (None, Some(path)) => Ok(path),
        (None, None) => crate::bridge::run::interpreter_for(&submitted.federation_options),
    }
    .map_err(NotReplayable::Interpreter)?;
    Ok(crate::bridge::run::PythonRun {
        fab: record.fab().to_vec(),
        fab_id: verified.app.fab_id(),
        fab_version: verified.app.version.clone(),
        fab_hash: submitted.fab_hash.clone(),
        overrides: submitted.override_config.clone(),
        app_config: verified.app.config.clone(),
        federation_options: submitted.federation_options.clone(),
        interpreter,
        flwr_home: crate::host::flwr_home(),
        anchor: submitted_at.0.div_euclid(1_000_000) as f64,
        workers: recorded.map(|p| p.workers as usize).unwrap_or(workers),
    })
}
