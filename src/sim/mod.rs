//! The deterministic simulation engine: virtual SuperNodes, a ServerApp's
//! strategy loop, ClientApps on a bounded worker pool, and the events that
//! record every step.
//!
//! [`simulate`] is the one code path of a run: the app process drives it live
//! (events go to the SuperLink) and `flwr replay` drives it again (events are
//! compared with the recorded ones). Everything a run does is a function of
//! its [`Inputs`]: node ids and sampling come from the seed, each ClientApp
//! call gets its own random stream, replies are put back in the order the
//! instructions were sent, and outside inputs (a stop request, an injected
//! fault) come through the [`Sink`], which records them as events at a
//! logical position. Thread count and timing change nothing but speed.
//!
//! This module does no network or file I/O and never reads the clock except
//! for the one log line that reports elapsed time and the ClientApp time it
//! reports to the [`Sink`] with the traffic (never in an event).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::clientapp::{ClientApp, ClientEnv};
use crate::domain::event::{
    Delivered, Event, NodeSampled, NodesRegistered, Outcome, Phase, Reply, ReplyReceived, SimulationFinished,
    SimulationStarted, SimulationStopped, Usage,
};
use crate::flwr_log::{Entry, Level, Logger};
use crate::prng::{purpose, Prng};
use crate::records::{error_code, Context, Error, Message, RecordDict, Scalar, UserConfig};
use crate::strategy::start::{self, Driver, Incomplete, Interrupt, StartError};
use crate::strategy::Grid;
use crate::traffic::{self, Traffic};

/// Everything that determines a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    pub run_id: u64,
    pub seed: u64,
    /// The effective run configuration (app defaults fused with overrides).
    pub run_config: UserConfig,
    pub num_supernodes: u64,
    /// `[tool.flwr.app.components]`.
    pub server_app: String,
    pub client_app: String,
}

/// Where a simulation's events, logs and outside inputs go.
pub trait Sink {
    /// Each event, in order.
    fn event(&mut self, event: Event);
    /// Log lines, in order.
    fn log(&mut self, level: Level, line: &str);
    /// Output that is already text (a Python app's prints and log lines), in
    /// order with the lines.
    fn output(&mut self, text: &str);
    /// A logged entry, line or output.
    fn entry(&mut self, entry: Entry) {
        match entry {
            Entry::Line(level, line) => self.log(level, &line),
            Entry::Output(text) => self.output(&text),
        }
    }
    /// A step boundary (`before` names the next step): true when the run
    /// must stop here.
    fn should_stop(&mut self, round: u64, before: &str) -> bool;
    /// A flag workers poll between ClientApp calls, so that a stop request
    /// interrupts a long phase; `None` when the sink never stops mid-phase.
    fn stop_flag(&self) -> Option<Arc<AtomicBool>> {
        None
    }
    /// A fault injected from outside for this call, if any: the node's reply
    /// becomes this error instead of running the ClientApp.
    fn injected_fault(&mut self, _round: u64, _phase: Phase, _node_id: u64) -> Option<Error> {
        None
    }
    /// What a replay re-injects for the reply of `node_id` at `step` of a
    /// Python ServerApp: an outside input the record holds there (a worker
    /// that died, a timeout), so that the call is not made again.
    fn recorded_outside_input(&mut self, _step: u64, _node_id: u64) -> Option<Delivered> {
        None
    }
    /// The run's traffic and ClientApp time so far, after each phase.
    /// Wall-clock figures: they must never reach an event.
    fn usage(&mut self, _usage: &Usage) {}
}

/// The apps of a run, built from its components.
pub struct Apps {
    pub server: Box<dyn ServerApp>,
    pub client: Arc<dyn ClientApp>,
}

/// A ServerApp: drives the federation through a [`Driver`].
pub trait ServerApp: Send {
    /// The strategy's class name, for the `SimulationStarted` event.
    fn strategy_name(&self) -> String;
    fn num_rounds(&self) -> u64;
    fn run(&mut self, driver: &mut dyn Driver, log: &mut Logger) -> Result<start::RunResult, Box<Incomplete>>;
}

/// How a simulation ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub outcome: Outcome,
    pub rounds_completed: u64,
}

/// Node ids of the virtual SuperNodes in registration order (partition id =
/// index): distinct, never 0 or 1 (reserved by Flower), from the seed.
pub fn node_ids(seed: u64, count: u64) -> Vec<u64> {
    let mut prng = Prng::stream(seed, &[purpose::NODE_IDS]);
    let mut seen = std::collections::BTreeSet::new();
    let mut ids = Vec::with_capacity(count as usize);
    while (ids.len() as u64) < count {
        let id = prng.next_u64();
        if id > 1 && seen.insert(id) {
            ids.push(id);
        }
    }
    ids
}

/// Runs a simulation to its end (or its stop) on `workers` threads.
pub fn simulate(inputs: &Inputs, mut apps: Apps, workers: usize, sink: &mut dyn Sink) -> Finished {
    let registered = node_ids(inputs.seed, inputs.num_supernodes);
    let mut sorted = registered.clone();
    sorted.sort_unstable();
    let num_partitions = registered.len() as i64;
    let contexts = registered
        .iter()
        .enumerate()
        .map(|(partition, &node_id)| Context {
            run_id: inputs.run_id,
            node_id,
            node_config: [
                ("partition-id".to_string(), Scalar::Int(partition as i64)),
                ("num-partitions".to_string(), Scalar::Int(num_partitions)),
            ]
            .into_iter()
            .collect(),
            state: RecordDict::new(),
            run_config: inputs.run_config.clone(),
        })
        .collect::<Vec<_>>();
    let partition_of = sorted_index(&registered);
    sink.event(Event::SimulationStarted(SimulationStarted {
        num_supernodes: inputs.num_supernodes,
        server_app: inputs.server_app.clone(),
        client_app: inputs.client_app.clone(),
        run_config: inputs.run_config.clone(),
        num_rounds: apps.server.num_rounds(),
        strategy: apps.server.strategy_name(),
    }));
    sink.event(Event::NodesRegistered(NodesRegistered {
        node_ids: registered.clone(),
    }));

    let mut driver = SimDriver {
        sorted,
        pool: Pool {
            inputs,
            partition_of,
            contexts: contexts.into_iter().map(|c| Mutex::new(Some(c))).collect(),
            client: Arc::clone(&apps.client),
            workers: workers.max(1),
        },
        sink,
        started: Instant::now(),
        usage: Usage::default(),
    };
    let mut log = Logger::new();
    let result = apps.server.run(&mut driver, &mut log);
    driver.forward(&mut log);
    let (outcome, rounds_completed, arrays) = match result {
        Ok(result) => (Outcome::Completed, result.rounds_completed, result.arrays),
        Err(incomplete) => {
            let Incomplete { error, result } = *incomplete;
            let outcome = match error {
                StartError::Interrupted(Interrupt::Stopped { round, before }) => {
                    driver
                        .sink
                        .event(Event::SimulationStopped(SimulationStopped { round, before }));
                    Outcome::Stopped
                }
                StartError::Interrupted(Interrupt::Failed(reason)) => Outcome::Failed { reason },
                StartError::Strategy(error) => Outcome::Failed {
                    reason: error.to_string(),
                },
            };
            (outcome, result.rounds_completed, result.arrays)
        }
    };
    let arrays = (!arrays.is_empty()).then(|| arrays.digest());
    driver.sink.event(Event::SimulationFinished(SimulationFinished {
        rounds_completed,
        arrays,
        outcome: outcome.clone(),
    }));
    Finished {
        outcome,
        rounds_completed,
    }
}

/// For each registered node id, its partition id, looked up by binary search
/// over the ids sorted.
fn sorted_index(registered: &[u64]) -> Vec<(u64, usize)> {
    let mut pairs: Vec<(u64, usize)> = registered.iter().enumerate().map(|(p, &id)| (id, p)).collect();
    pairs.sort_unstable();
    pairs
}

struct SimDriver<'a> {
    /// The population, sorted by node id.
    sorted: Vec<u64>,
    pool: Pool<'a>,
    sink: &'a mut dyn Sink,
    started: Instant,
    usage: Usage,
}

/// What worker threads share: the nodes' contexts and the ClientApp.
struct Pool<'a> {
    inputs: &'a Inputs,
    /// (node id, partition id), sorted by node id.
    partition_of: Vec<(u64, usize)>,
    /// Each node's context, by partition id; taken out while its ClientApp
    /// runs. A std mutex per node: locked only to take or put back.
    contexts: Vec<Mutex<Option<Context>>>,
    client: Arc<dyn ClientApp>,
    workers: usize,
}

/// The result of one ClientApp call.
struct CallResult {
    reply: Message,
    context: Context,
    log: Vec<Entry>,
    /// What the exchange would weigh on Flower's Fleet API.
    traffic: Traffic,
    /// Seconds the ClientApp took.
    seconds: f64,
}

fn phase_tag(phase: Phase) -> u64 {
    match phase {
        Phase::Train => 0,
        Phase::Evaluate => 1,
    }
}

impl SimDriver<'_> {
    fn partition(&self, node_id: u64) -> Option<usize> {
        self.pool.partition(node_id)
    }

    fn forward(&mut self, log: &mut Logger) {
        for entry in log.drain() {
            self.sink.entry(entry);
        }
    }

    /// Adds the measured calls of a phase and reports the totals.
    fn measure(&mut self, results: &[Option<CallResult>]) {
        for result in results.iter().flatten() {
            self.usage.bytes_sent += result.traffic.sent;
            self.usage.bytes_recv += result.traffic.recv;
            self.usage.clientapp_runtime += result.seconds;
        }
        self.sink.usage(&self.usage);
    }
}

impl Pool<'_> {
    fn partition(&self, node_id: u64) -> Option<usize> {
        self.partition_of
            .binary_search_by_key(&node_id, |(id, _)| *id)
            .ok()
            .map(|i| self.partition_of[i].1)
    }

    /// Runs the ClientApp for one instruction.
    fn call(&self, message: &Message, round: u64, phase: Phase) -> CallResult {
        let node_id = message.metadata.dst_node_id;
        let partition = self.partition(node_id).expect("instructions go to registered nodes");
        let mut context = self.contexts[partition]
            .lock()
            .expect("context lock")
            .take()
            .expect("one call per node");
        let mut log = Logger::new();
        let prng = Prng::stream(self.inputs.seed, &[purpose::CLIENT, round, phase_tag(phase), node_id]);
        let started = Instant::now();
        let outcome = {
            let mut env = ClientEnv { prng, log: &mut log };
            let client = &self.client;
            catch_unwind(AssertUnwindSafe(|| client.handle(message, &mut context, &mut env)))
        };
        let seconds = started.elapsed().as_secs_f64();
        let body = match outcome {
            Ok(body) => body,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(Error {
                    code: error_code::CLIENT_APP_RAISED_EXCEPTION,
                    reason: format!("ClientApp panicked: {text}"),
                })
            }
        };
        if context.run_config != self.inputs.run_config {
            // Flower refuses a ClientApp that changed its run_config.
            context.run_config = self.inputs.run_config.clone();
        }
        let reply = Message::reply(message, body);
        CallResult {
            traffic: traffic::exchange(message, &reply),
            reply,
            context,
            log: log.drain(),
            seconds,
        }
    }

    /// Runs the calls on the worker pool; `None` where a stop request
    /// interrupted the phase before the call started.
    fn execute(
        &self,
        messages: &[Message],
        round: u64,
        phase: Phase,
        skip: &[bool],
        stop: Option<Arc<AtomicBool>>,
    ) -> Vec<Option<CallResult>> {
        let stopping = || stop.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed));
        let results: Vec<Mutex<Option<CallResult>>> = messages.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let work = || loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= messages.len() || stopping() {
                break;
            }
            if !skip[index] {
                let result = self.call(&messages[index], round, phase);
                *results[index].lock().expect("result lock") = Some(result);
            }
        };
        let threads = self.workers.min(messages.len());
        if threads <= 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(work);
                }
            });
        }
        results
            .into_iter()
            .map(|r| r.into_inner().expect("result lock"))
            .collect()
    }
}

impl Grid for SimDriver<'_> {
    fn run_id(&self) -> u64 {
        self.pool.inputs.run_id
    }

    fn node_ids(&self) -> &[u64] {
        &self.sorted
    }

    fn prng(&self, path: &[u64]) -> Prng {
        Prng::stream(self.pool.inputs.seed, path)
    }
}

impl Driver for SimDriver<'_> {
    fn send_and_receive(
        &mut self,
        round: u64,
        phase: Phase,
        mut messages: Vec<Message>,
        log: &mut Logger,
    ) -> Result<Vec<Message>, Interrupt> {
        self.forward(log);
        for (index, message) in messages.iter_mut().enumerate() {
            let node_id = message.metadata.dst_node_id;
            if self.partition(node_id).is_none() {
                return Err(Interrupt::Failed(format!(
                    "the strategy sent a message to unknown node {node_id}"
                )));
            }
            message.metadata.run_id = self.pool.inputs.run_id;
            message.metadata.message_id = format!("{}.{round}.{}.{index}", self.pool.inputs.run_id, phase.as_str());
            message.metadata.created_at = round as f64;
            self.sink
                .event(Event::NodeSampled(NodeSampled { round, phase, node_id }));
        }
        let before = format!("{} replies", phase.as_str());
        self.checkpoint(round, &before, log)?;
        let injected: Vec<Option<Error>> = messages
            .iter()
            .map(|m| self.sink.injected_fault(round, phase, m.metadata.dst_node_id))
            .collect();
        let skip: Vec<bool> = injected.iter().map(Option::is_some).collect();
        let stop = self.sink.stop_flag();
        let results = self.pool.execute(&messages, round, phase, &skip, stop.clone());
        self.measure(&results);
        // A stop during the phase discards it, even when every call came
        // back (a call a stop cut short comes back as a failure).
        let stopped = stop.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed));
        let interrupted = stopped || results.iter().zip(&skip).any(|(r, skipped)| r.is_none() && !skipped);
        if interrupted {
            // Calls that had not started when the stop came are not made and
            // the partial phase is discarded, exactly as a replay that stops
            // at the checkpoint above discards it.
            for (message, result) in messages.iter().zip(results) {
                if let Some(result) = result {
                    let partition = self.partition(message.metadata.dst_node_id).expect("checked above");
                    *self.pool.contexts[partition].lock().expect("context lock") = Some(result.context);
                }
            }
            return Err(Interrupt::Stopped { round, before });
        }
        let mut replies = Vec::with_capacity(messages.len());
        for ((message, result), fault) in messages.iter().zip(results).zip(injected) {
            let node_id = message.metadata.dst_node_id;
            match (result, fault) {
                (_, Some(error)) => {
                    self.sink
                        .event(reply_event(round, phase, node_id, &Err(error.clone()), true));
                    replies.push(Message::reply(message, Err(error)));
                }
                (Some(result), None) => {
                    let partition = self.partition(node_id).expect("checked above");
                    *self.pool.contexts[partition].lock().expect("context lock") = Some(result.context);
                    self.sink
                        .event(reply_event(round, phase, node_id, &result.reply.body, false));
                    for entry in result.log {
                        self.sink.entry(entry);
                    }
                    replies.push(result.reply);
                }
                (None, None) => unreachable!("every call ran when the phase was not interrupted"),
            }
        }
        Ok(replies)
    }

    fn record(&mut self, event: Event) {
        self.sink.event(event);
    }

    fn checkpoint(&mut self, round: u64, before: &str, log: &mut Logger) -> Result<(), Interrupt> {
        self.forward(log);
        if self.sink.should_stop(round, before) {
            return Err(Interrupt::Stopped {
                round,
                before: before.to_string(),
            });
        }
        Ok(())
    }

    fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The `ReplyReceived` event for a reply body.
fn reply_event(round: u64, phase: Phase, node_id: u64, body: &Result<Arc<RecordDict>, Error>, injected: bool) -> Event {
    let reply = match body {
        Ok(content) => Reply::Content {
            metrics: content.metric_records().next().map(|(_, m)| m.clone()),
            arrays: content.array_records().next().map(|(_, a)| a.digest()),
        },
        Err(error) => Reply::Error {
            code: error.code,
            reason: error.reason.clone(),
            injected,
        },
    };
    Event::ReplyReceived(ReplyReceived {
        round,
        phase,
        node_id,
        reply,
    })
}

/// A sink that keeps every event and log line, for tests, benchmarks and
/// tools. It can stop the run at a given step and inject faults, like a live
/// run's outside inputs.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event>,
    pub logs: Vec<(Level, String)>,
    /// Raw output (Python apps), in order.
    pub output: String,
    /// Stop at the step boundary `(round, before)`.
    pub stop_at: Option<(u64, String)>,
    /// `(round, phase, node)` whose reply becomes an injected fault.
    pub faults: Vec<(u64, Phase, u64)>,
}

impl Sink for Recorder {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    fn log(&mut self, level: Level, line: &str) {
        self.logs.push((level, line.to_string()));
    }

    fn output(&mut self, text: &str) {
        self.output.push_str(text);
    }

    fn should_stop(&mut self, round: u64, before: &str) -> bool {
        self.stop_at.as_ref().is_some_and(|(r, b)| *r == round && b == before)
    }

    fn injected_fault(&mut self, round: u64, phase: Phase, node_id: u64) -> Option<Error> {
        self.faults.contains(&(round, phase, node_id)).then(|| Error {
            code: error_code::CLIENT_APP_CRASHED,
            reason: format!(
                "node {node_id} crashed (fault injected in round {round}, {})",
                phase.as_str()
            ),
        })
    }
}
