//! A Python ServerApp's run: its Grid operations, dispatched to the Python
//! ClientApp workers and recorded as events.
//!
//! Every `push_messages` or `send_and_receive` of the ServerApp is a step,
//! numbered from 1. A step's messages get deterministic ids
//! (`<run>.<step>.<index>`) and virtual times, are recorded as `MessageSent`
//! in the order sent, run on their nodes' workers, and their replies are
//! recorded as `ReplyDelivered` and handed back in the same order, whatever
//! order the workers finished in. A pull blocks until every reply it names
//! is there (a network with no latency). `get_node_ids` is answered in Python
//! from the node list and is not a step.
//!
//! Stops are checked before each step (`step k`), between a step's messages
//! and its replies (`step k replies`) and before the ServerApp's end (which
//! counts as the next step); a stop that arrives while Python computes is
//! placed at the next of these positions, so a replay stops at the same one.
//! A worker that dies or a reply that misses its timeout is an outside
//! input: recorded, and re-injected by a replay instead of recomputed.
//!
//! This module does no network or file I/O; the `Sink` takes events and
//! output.

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::client::{self, Call, CallResult, Outcome, Workers};
use super::frame::{self, kind, Frame, Reader};
use super::Bridge;
use crate::domain::event::{
    Delivered, Event, MessageSent, NodesRegistered, Outcome as SimOutcome, ReplyDelivered, RoundStarted,
    SimulationFinished, SimulationStarted, SimulationStopped, Usage,
};
use crate::flwr_log::Level;
use crate::prng::{purpose, Prng};
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::records::{error_code, Digest, Scalar};
use crate::sim::{Finished, Inputs, Sink};

/// The virtual time of step 0 when the run's submission time is unknown
/// (Flower's earliest valid message time, 2025-02-28).
pub const ANCHOR_DEFAULT: f64 = 1_740_700_800.0;

/// How often the loop looks at the stop flag while it waits.
const POLL: Duration = Duration::from_millis(5);

/// The run as the ServerApp sees it through `grid.run`.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub fab_id: String,
    pub fab_version: String,
    pub fab_hash: String,
    pub override_config: crate::records::UserConfig,
    /// Virtual time of step 0, in seconds since the epoch.
    pub anchor: f64,
}

/// How a Python ServerApp's run ended, with its final Context (for
/// `PushAppOutputs`).
pub struct Ended {
    pub finished: Finished,
    /// `flwr.proto.Context` of the ServerApp at its end.
    pub context: Option<Bytes>,
}

/// Runs the Python ServerApp of a loaded bridge to its end (or its stop).
pub fn simulate(
    inputs: &Inputs,
    bridge: &Bridge,
    run: &RunInfo,
    stop: Option<Arc<AtomicBool>>,
    sink: &mut dyn Sink,
) -> Ended {
    let registered = crate::sim::node_ids(inputs.seed, inputs.num_supernodes);
    sink.event(Event::SimulationStarted(SimulationStarted {
        num_supernodes: inputs.num_supernodes,
        server_app: inputs.server_app.clone(),
        client_app: inputs.client_app.clone(),
        run_config: inputs.run_config.clone(),
        num_rounds: match inputs.run_config.get("num-server-rounds") {
            Some(Scalar::Int(n)) if *n >= 0 => *n as u64,
            _ => 0,
        },
        strategy: format!("Python ServerApp ({} API)", bridge.server_api),
    }));
    sink.event(Event::NodesRegistered(NodesRegistered {
        node_ids: registered.clone(),
    }));
    match Driver::start(inputs, bridge, run, &registered, stop, sink) {
        Ok(driver) => driver.run(),
        Err(error) => {
            let outcome = SimOutcome::Failed {
                reason: error.to_string(),
            };
            sink.event(Event::SimulationFinished(SimulationFinished {
                rounds_completed: 0,
                arrays: None,
                outcome: outcome.clone(),
            }));
            Ended {
                finished: Finished {
                    outcome,
                    rounds_completed: 0,
                },
                context: None,
            }
        }
    }
}

/// What the loop waits for.
enum Input {
    Server(Result<Frame, frame::Error>),
    Settled(usize, Settled),
}

/// How a call ended, or what replaces it in a replay.
enum Settled {
    Ran(CallResult),
    Injected(Delivered),
}

/// One message of a step and, once settled, its reply.
struct Slot {
    step: u64,
    round: Option<u64>,
    node_id: u64,
    message_id: String,
    message_type: String,
    group_id: String,
    ttl: f64,
    /// The content's bytes, until the call is dispatched.
    content: Option<Bytes>,
    settled: Option<Settled>,
    delivered: bool,
}

/// A grid operation waiting for replies.
struct Waiting {
    frame_id: u64,
    step: u64,
    calls: Vec<usize>,
    /// `send_and_receive` also returns the message ids.
    ids: Option<Vec<String>>,
}

/// A call to make, with its slot.
type Work = (usize, Call);

struct Driver<'a> {
    inputs: &'a Inputs,
    bridge: &'a Bridge,
    run: &'a RunInfo,
    sink: &'a mut dyn Sink,
    stop: Option<Arc<AtomicBool>>,
    workers: Arc<Workers>,
    server: UnixStream,
    server_pid: i32,
    /// Calls to make, in the order sent; one dispatcher thread per worker
    /// takes the next.
    queue: Option<mpsc::Sender<Work>>,
    inbox: mpsc::Receiver<Input>,
    partition_of: BTreeMap<u64, usize>,
    slots: Vec<Slot>,
    waiting: Vec<Waiting>,
    step: u64,
    round: u64,
    /// Messages sent to each node so far (the k of its calls' seeds).
    sent: BTreeMap<u64, u64>,
    /// Traffic and ClientApp time so far (wall-clock figures, for
    /// `flwr ls`: never in an event). Traffic counts the messages' protobuf
    /// bytes.
    usage: Usage,
}

impl<'a> Driver<'a> {
    fn start(
        inputs: &'a Inputs,
        bridge: &'a Bridge,
        run: &'a RunInfo,
        registered: &[u64],
        stop: Option<Arc<AtomicBool>>,
        sink: &'a mut dyn Sink,
    ) -> Result<Driver<'a>, super::Error> {
        let workers = Arc::new(Workers::new(
            Arc::clone(&bridge.zygote),
            bridge.workers,
            registered.len(),
            stop.clone(),
        ));
        workers.start_all().map_err(super::Error::StartWorkers)?;
        let server = bridge.zygote.fork("server", 0).map_err(super::Error::StartServer)?;
        let (inbox_tx, inbox) = mpsc::channel();
        let queue = spawn_dispatchers(&workers, &inbox_tx);
        let server_pid = server.pid;
        let writer = server.writer.try_clone()?;
        spawn_server_reader(server.reader, inbox_tx);
        let mut sorted = registered.to_vec();
        sorted.sort_unstable();
        let driver = Driver {
            inputs,
            bridge,
            run,
            sink,
            stop,
            workers,
            server: writer,
            server_pid,
            queue: Some(queue),
            inbox,
            partition_of: registered.iter().enumerate().map(|(p, &id)| (id, p)).collect(),
            slots: Vec::new(),
            waiting: Vec::new(),
            step: 0,
            round: 0,
            sent: BTreeMap::new(),
            usage: Usage::default(),
        };
        let seed = Prng::stream(inputs.seed, &[purpose::PY_SERVER]).next_u64();
        let start = Frame::new(
            kind::START,
            0,
            json!({"seed": seed, "vtime": run.anchor, "node_ids": sorted}),
        )
        .with(run_proto(inputs, run).encode_to_vec());
        frame::write(&driver.server, &start).map_err(super::Error::StartFrame)?;
        Ok(driver)
    }

    fn run(mut self) -> Ended {
        let (outcome, context) = self.drive();
        // What the ServerApp wrote to its descriptors before it ended.
        self.bridge.zygote.flush_output(Duration::from_secs(2));
        self.forward_zygote_output();
        let rounds_completed = match outcome {
            SimOutcome::Completed => self.round,
            _ => self.round.saturating_sub(1),
        };
        self.sink.event(Event::SimulationFinished(SimulationFinished {
            rounds_completed,
            arrays: None,
            outcome: outcome.clone(),
        }));
        self.shut_down();
        Ended {
            finished: Finished {
                outcome,
                rounds_completed,
            },
            context,
        }
    }

    /// The loop: grid operations, settled calls, the stop flag.
    fn drive(&mut self) -> (SimOutcome, Option<Bytes>) {
        loop {
            let input = match self.inbox.recv_timeout(POLL) {
                Ok(input) => input,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.stop.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)) {
                        let before = match self.waiting.iter().map(|w| w.step).min() {
                            Some(step) => format!("step {step} replies"),
                            None => format!("step {}", self.step + 1),
                        };
                        return (self.stopped(before), None);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return (self.server_died("its connection closed"), None);
                }
            };
            match input {
                Input::Settled(index, settled) => {
                    self.slots[index].settled = Some(settled);
                    if let Err(error) = self.complete_waiting() {
                        return (self.server_died(&error.to_string()), None);
                    }
                }
                Input::Server(Err(error)) => return (self.server_died(&error.to_string()), None),
                Input::Server(Ok(frame)) => match frame.kind {
                    kind::LOG => self.sink.output(&String::from_utf8_lossy(&frame.field(0))),
                    kind::GRID => match self.grid(&frame) {
                        Ok(None) => {}
                        Ok(Some(before)) => return (self.stopped(before), None),
                        Err(error) => return (self.server_died(&error.to_string()), None),
                    },
                    kind::DONE => return self.done(&frame),
                    _ => {}
                },
            }
        }
    }

    /// A stop at `before`: recorded, and every Python process of the run
    /// killed (their partial work is discarded, as a replay discards it).
    fn stopped(&mut self, before: String) -> SimOutcome {
        self.kill_all();
        self.sink.event(Event::SimulationStopped(SimulationStopped {
            round: self.round,
            before,
        }));
        SimOutcome::Stopped
    }

    fn server_died(&mut self, what: &str) -> SimOutcome {
        let status = self
            .bridge
            .zygote
            .wait_exit(self.server_pid, Duration::from_secs(2))
            .unwrap_or_else(|| what.to_string());
        self.kill_all();
        let reason = format!("the ServerApp process stopped unexpectedly ({status})");
        self.sink.log(Level::Error, &reason);
        SimOutcome::Failed { reason }
    }

    fn done(&mut self, frame: &Frame) -> (SimOutcome, Option<Bytes>) {
        let before = format!("step {}", self.step + 1);
        if self.checkpoint(&before) {
            return (self.stopped(before), None);
        }
        let context = Some(frame.field(0));
        match frame.str("status") {
            "ok" => (SimOutcome::Completed, context),
            "stopped" => (self.stopped(before), None),
            _ => {
                let error_type = frame.str("type");
                let error = frame.str("error");
                let reason = if error.is_empty() {
                    format!("Exception in ServerApp thread: {error_type}")
                } else {
                    format!("Exception in ServerApp thread: {error_type}: {error}")
                };
                (SimOutcome::Failed { reason }, context)
            }
        }
    }

    fn checkpoint(&mut self, before: &str) -> bool {
        self.forward_zygote_output();
        self.sink.should_stop(self.round, before)
    }

    fn forward_zygote_output(&mut self) {
        let output = self.bridge.zygote.take_output();
        if !output.is_empty() {
            self.sink.output(&output);
        }
    }

    /// One grid operation. `Ok(Some(before))` when a stop ends the run there.
    fn grid(&mut self, frame: &Frame) -> Result<Option<String>, frame::Error> {
        match frame.str("op") {
            op @ ("push" | "send_and_receive") => {
                self.step += 1;
                let step = self.step;
                let before = format!("step {step}");
                if self.checkpoint(&before) {
                    return Ok(Some(before));
                }
                let (ids, calls) = self.send(frame, step);
                let before = format!("step {step} replies");
                if self.checkpoint(&before) {
                    return Ok(Some(before));
                }
                self.dispatch(&calls, frame.header.get("timeout"));
                if op == "push" {
                    let reply = Frame::new(kind::GRID_REPLY, frame.id, json!({"ok": true, "ids": ids}));
                    frame::write(&self.server, &reply)?;
                } else {
                    self.waiting.push(Waiting {
                        frame_id: frame.id,
                        step,
                        calls,
                        ids: Some(ids),
                    });
                }
            }
            "pull" => {
                let wanted: Vec<&str> = frame
                    .header
                    .get("ids")
                    .and_then(Value::as_array)
                    .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let calls: Vec<usize> = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, slot)| !slot.delivered && wanted.contains(&slot.message_id.as_str()))
                    .map(|(index, _)| index)
                    .collect();
                let step = calls.first().map(|&i| self.slots[i].step).unwrap_or(self.step);
                self.waiting.push(Waiting {
                    frame_id: frame.id,
                    step,
                    calls,
                    ids: None,
                });
            }
            other => {
                let reply = Frame::new(
                    kind::GRID_REPLY,
                    frame.id,
                    json!({"ok": false, "error": format!("floret's grid has no operation {other:?}")}),
                );
                frame::write(&self.server, &reply)?;
            }
        }
        self.complete_waiting()?;
        Ok(None)
    }

    /// Records a step's messages; returns their ids ("" for a message that
    /// was dropped) and the slots of those to deliver.
    fn send(&mut self, frame: &Frame, step: u64) -> (Vec<String>, Vec<usize>) {
        let headers = frame
            .header
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut digests: BTreeMap<usize, (Digest, Option<u64>)> = BTreeMap::new();
        let mut ids = Vec::with_capacity(headers.len());
        let mut calls = Vec::new();
        for (index, header) in headers.iter().enumerate() {
            let dst = header.get("dst").and_then(Value::as_u64).unwrap_or(0);
            if dst <= 1 || !self.partition_of.contains_key(&dst) {
                self.sink
                    .log(Level::Error, &format!("Invalid destination node ID for Message: {dst}"));
                ids.push(String::new());
                continue;
            }
            let blob_index = header
                .get("content")
                .or_else(|| header.get("error"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            let blob = frame.field(blob_index);
            let (content, content_round) = *digests
                .entry(blob_index)
                .or_insert_with(|| (sha256(&blob), server_round(&blob)));
            let group_id = header.get("group").and_then(Value::as_str).unwrap_or("").to_string();
            let round = content_round.or_else(|| group_id.parse().ok());
            if let Some(round) = round.filter(|&round| round > self.round) {
                self.round = round;
                self.sink.event(Event::RoundStarted(RoundStarted { round }));
            }
            let message_id = format!("{}.{step}.{index}", self.inputs.run_id);
            let message_type = header.get("type").and_then(Value::as_str).unwrap_or("").to_string();
            self.sink.event(Event::MessageSent(MessageSent {
                step,
                round,
                node_id: dst,
                message_type: message_type.clone(),
                group_id: group_id.clone(),
                content,
            }));
            ids.push(message_id.clone());
            calls.push(self.slots.len());
            self.slots.push(Slot {
                step,
                round,
                node_id: dst,
                message_id,
                message_type,
                group_id,
                ttl: header
                    .get("ttl")
                    .and_then(Value::as_f64)
                    .unwrap_or(crate::records::DEFAULT_TTL),
                content: Some(blob),
                settled: None,
                delivered: false,
            });
        }
        (ids, calls)
    }

    /// Queues a step's calls (or, in a replay, settles those the record
    /// says came from outside).
    fn dispatch(&mut self, calls: &[usize], timeout: Option<&Value>) {
        let deadline = timeout
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| Instant::now() + Duration::from_secs_f64(t.min(1e9)));
        for &index in calls {
            let slot = &mut self.slots[index];
            let partition = self.partition_of[&slot.node_id];
            let content = slot.content.take().unwrap_or_default();
            if let Some(recorded) = self.sink.recorded_outside_input(slot.step, slot.node_id) {
                slot.settled = Some(Settled::Injected(recorded));
                continue;
            }
            let k = self.sent.entry(slot.node_id).or_insert(0);
            *k += 1;
            let vtime = self.run.anchor + slot.step as f64;
            let metadata = pb::Metadata {
                run_id: self.inputs.run_id,
                message_id: slot.message_id.clone(),
                src_node_id: crate::records::SUPERLINK_NODE_ID,
                dst_node_id: slot.node_id,
                reply_to_message_id: String::new(),
                group_id: slot.group_id.clone(),
                ttl: slot.ttl,
                message_type: slot.message_type.clone(),
                created_at: vtime,
            };
            let call = Call {
                node_id: slot.node_id,
                partition,
                metadata: Bytes::from(metadata.encode_to_vec()),
                content,
                seed: Prng::stream(self.inputs.seed, &[purpose::PY_CLIENT, slot.node_id, *k]).next_u64(),
                vtime,
                reply_id: format!("{}.reply", slot.message_id),
                deadline,
            };
            self.usage.bytes_sent += (call.metadata.len() + call.content.len()) as u64;
            if let Some(queue) = &self.queue {
                let _ = queue.send((index, call));
            }
        }
    }

    /// Answers every waiting grid operation whose replies are all there, in
    /// the order the operations came.
    fn complete_waiting(&mut self) -> Result<(), frame::Error> {
        while let Some(position) = self
            .waiting
            .iter()
            .position(|w| w.calls.iter().all(|&i| self.slots[i].settled.is_some()))
        {
            let waiting = self.waiting.remove(position);
            let mut blobs = Vec::new();
            for &index in &waiting.calls {
                if self.slots[index].delivered {
                    continue;
                }
                let (delivered, blob, output) = self.reply_of(index);
                let slot = &mut self.slots[index];
                slot.delivered = true;
                self.sink.event(Event::ReplyDelivered(ReplyDelivered {
                    step: slot.step,
                    round: slot.round,
                    node_id: slot.node_id,
                    reply: delivered,
                }));
                if !output.is_empty() {
                    self.sink.output(&output);
                }
                blobs.extend(blob);
            }
            self.sink.usage(&self.usage);
            let mut header = json!({"ok": true, "vtime": self.run.anchor + waiting.step as f64});
            if let Some(ids) = waiting.ids {
                header["ids"] = json!(ids);
            }
            let mut reply = Frame::new(kind::GRID_REPLY, waiting.frame_id, header);
            reply.fields = blobs;
            frame::write(&self.server, &reply)?;
        }
        Ok(())
    }

    /// What a settled call delivers: its event, its reply bytes (none for a
    /// timeout) and its output.
    fn reply_of(&mut self, index: usize) -> (Delivered, Option<Bytes>, String) {
        let settled = self.slots[index]
            .settled
            .take()
            .expect("only settled calls are delivered");
        match settled {
            Settled::Ran(result) => {
                self.usage.clientapp_runtime += result.elapsed.as_secs_f64();
                if let Outcome::Replied { message, .. } = &result.outcome {
                    self.usage.bytes_recv += message.len() as u64;
                }
                let output = result.output;
                match result.outcome {
                    Outcome::Replied { message, .. } => (read_reply(&message), Some(message), output),
                    Outcome::TimedOut => (Delivered::TimedOut, None, output),
                    outcome @ (Outcome::Crashed { .. } | Outcome::Stopped) => {
                        let error = client::failure(&outcome).expect("a failure");
                        let blob = self.error_reply(index, error.code, &error.reason);
                        let delivered = Delivered::Error {
                            code: error.code,
                            reason: error.reason,
                            injected: true,
                        };
                        (delivered, Some(blob), output)
                    }
                }
            }
            Settled::Injected(Delivered::Error { code, reason, .. }) => {
                let blob = self.error_reply(index, code, &reason);
                let delivered = Delivered::Error {
                    code,
                    reason,
                    injected: true,
                };
                (delivered, Some(blob), String::new())
            }
            Settled::Injected(other) => (other, None, String::new()),
        }
    }

    /// An error reply built here, for a call whose worker could not answer.
    fn error_reply(&self, index: usize, code: i64, reason: &str) -> Bytes {
        let slot = &self.slots[index];
        let message = pb::Message {
            metadata: Some(pb::Metadata {
                run_id: self.inputs.run_id,
                message_id: format!("{}.reply", slot.message_id),
                src_node_id: slot.node_id,
                dst_node_id: crate::records::SUPERLINK_NODE_ID,
                reply_to_message_id: slot.message_id.clone(),
                group_id: slot.group_id.clone(),
                ttl: slot.ttl,
                message_type: slot.message_type.clone(),
                created_at: self.run.anchor + slot.step as f64,
            }),
            content: None,
            error: Some(pb::Error {
                code,
                reason: reason.to_string(),
            }),
        };
        Bytes::from(message.encode_to_vec())
    }

    fn kill_all(&mut self) {
        super::process::kill(self.server_pid);
        if let Some(flag) = &self.stop {
            flag.store(true, Ordering::Relaxed);
        }
        self.workers.kill_all();
    }

    fn shut_down(&mut self) {
        super::process::kill(self.server_pid);
        self.queue = None;
        self.workers.kill_all();
    }
}

/// The event of a reply the ClientApp sent.
fn read_reply(bytes: &[u8]) -> Delivered {
    match ext::RawMessage::decode(bytes) {
        Ok(ext::RawMessage { error: Some(error), .. }) => Delivered::Error {
            code: error.code,
            reason: error.reason,
            injected: false,
        },
        Ok(raw) => Delivered::Content {
            metrics: first_metrics(&raw.content),
            content: sha256(&raw.content),
        },
        Err(error) => Delivered::Error {
            code: error_code::UNKNOWN,
            reason: format!("the ClientApp's reply cannot be read: {error}"),
            injected: false,
        },
    }
}

/// SHA-256 of bytes, as a `Digest`.
fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// The `server-round` of a content's config records, if any.
fn server_round(content: &[u8]) -> Option<u64> {
    let skim = ext::RecordDictSkim::decode(content).ok()?;
    skim.items.iter().find_map(|item| {
        let record = item.config_record.as_ref()?;
        record.items.iter().find_map(|entry| {
            if entry.key != "server-round" {
                return None;
            }
            match entry.value.as_ref()?.value.as_ref()? {
                pb::config_record_value::Value::Sint64(n) if *n >= 0 => Some(*n as u64),
                pb::config_record_value::Value::Uint64(n) => Some(*n),
                _ => None,
            }
        })
    })
}

/// The first MetricRecord of a content.
fn first_metrics(content: &[u8]) -> Option<crate::records::MetricRecord> {
    let skim = ext::RecordDictSkim::decode(content).ok()?;
    skim.items
        .iter()
        .find_map(|item| item.metric_record.as_ref())
        .and_then(|record| crate::proto::metric_record_from_proto(record).ok())
}

fn run_proto(inputs: &Inputs, run: &RunInfo) -> pb::Run {
    pb::Run {
        run_id: inputs.run_id,
        fab_id: run.fab_id.clone(),
        fab_version: run.fab_version.clone(),
        override_config: crate::proto::user_config_to_proto(&run.override_config),
        fab_hash: run.fab_hash.clone(),
        status: Some(pb::RunStatus {
            status: "running".into(),
            sub_status: String::new(),
            details: String::new(),
        }),
        flwr_aid: crate::proto::FLWR_AID_NONE.into(),
        federation: crate::proto::DEFAULT_FEDERATION.into(),
        ..Default::default()
    }
}

/// One thread per worker, each making the next queued call on an idle
/// worker.
fn spawn_dispatchers(workers: &Arc<Workers>, inbox: &mpsc::Sender<Input>) -> mpsc::Sender<Work> {
    let (tx, rx) = mpsc::channel::<Work>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for _ in 0..workers.count() {
        let (workers, inbox, rx) = (Arc::clone(workers), inbox.clone(), Arc::clone(&rx));
        std::thread::spawn(move || loop {
            let next = rx.lock().expect("queue lock").recv();
            let Ok((index, call)) = next else {
                return;
            };
            let settled = Settled::Ran(workers.call(&call));
            if inbox.send(Input::Settled(index, settled)).is_err() {
                return;
            }
        });
    }
    tx
}

fn spawn_server_reader(mut reader: Reader, inbox: mpsc::Sender<Input>) {
    std::thread::spawn(move || loop {
        match reader.read(None) {
            Ok(Some(frame)) => {
                if inbox.send(Input::Server(Ok(frame))).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => {
                let _ = inbox.send(Input::Server(Err(error)));
                return;
            }
        }
    });
}
