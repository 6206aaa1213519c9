//! ClientApp calls on Python workers: a fixed pool of forked worker
//! processes, each call on whichever worker is idle (the lowest-numbered
//! one), and each node's Context state and node_config kept here, between
//! its calls, as Flower's simulation keeps them. Which worker runs a call
//! changes nothing for an app whose calls depend only on their inputs: the
//! node's context travels with the call and Python's global generators are
//! seeded before it.
//!
//! A node's state is replaced only when its call succeeds (Flower drops the
//! state of a call that raised). A worker that dies or outlives its deadline
//! is killed and replaced by a new fork before its next call; the call's
//! outcome says what happened, and the caller records it.
//!
//! [`PyClientApp`] adapts the workers to the engine's [`ClientApp`] trait, so
//! that the built-in ServerApp's strategy loop drives Python ClientApps
//! through Flower's message conventions.
//!
//! This module never decides the order of calls or of replies: its callers
//! do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};

use super::frame::{kind, Frame};
use super::process::{Forked, Zygote};
use crate::clientapp::{ClientApp, ClientEnv};
use crate::proto;
use crate::proto::flwr::proto as pb;
use crate::records::{error_code, Context, Error, Message, RecordDict, Scalar};

/// How often a waiting call looks at its deadline, the stop flag and its
/// worker's life.
const POLL: Duration = Duration::from_millis(10);

/// One ClientApp call.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub node_id: u64,
    pub partition: usize,
    /// `flwr.proto.Metadata` of the instruction, ids and times final.
    pub metadata: Bytes,
    /// `flwr.proto.RecordDict` of its content.
    pub content: Bytes,
    /// Seeds Python's global generators before the call.
    pub seed: u64,
    /// Virtual "now" during the call (seconds since the epoch).
    pub vtime: f64,
    /// The id the reply gets.
    pub reply_id: String,
    pub deadline: Option<Instant>,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The ClientApp answered: `flwr.proto.Message` bytes, with content when
    /// `ok`, with the error it raised otherwise.
    Replied { message: Bytes, ok: bool },
    /// The worker died during the call (a crash, `os._exit`, a kill).
    Crashed { status: String },
    /// The call outlived its deadline; its worker was killed.
    TimedOut,
    /// A stop request ended the call; its worker was killed.
    Stopped,
}

#[derive(Clone, Debug)]
pub(crate) struct CallResult {
    pub outcome: Outcome,
    /// Everything the call printed or logged, in order.
    pub output: String,
    pub elapsed: Duration,
}

/// A node's Context between calls.
struct NodeState {
    /// `flwr.proto.RecordDict` of `context.state`.
    state: Bytes,
    /// `context.node_config` as ordered `[key, value]` pairs.
    node_config: Value,
}

/// The ClientApp workers of a run.
pub(crate) struct Workers {
    zygote: Arc<Zygote>,
    /// Worker processes, forked lazily and again after a loss.
    slots: Vec<Mutex<Option<Forked>>>,
    /// Slots no call holds, and the condition callers wait on for one.
    idle: Mutex<Vec<usize>>,
    freed: Condvar,
    nodes: Vec<Mutex<NodeState>>,
    stop: Option<Arc<AtomicBool>>,
    next_call: AtomicU64,
    /// Workers lost (crashed, timed out, stopped) and replaced.
    replaced: AtomicU64,
}

impl Workers {
    /// `count` worker processes (forked lazily) for `num_nodes` nodes.
    pub fn new(zygote: Arc<Zygote>, count: usize, num_nodes: usize, stop: Option<Arc<AtomicBool>>) -> Workers {
        let count = count.max(1);
        let nodes = (0..num_nodes)
            .map(|partition| {
                Mutex::new(NodeState {
                    state: Bytes::new(),
                    node_config: json!([["partition-id", partition], ["num-partitions", num_nodes]]),
                })
            })
            .collect();
        Workers {
            zygote,
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            idle: Mutex::new((0..count).rev().collect()),
            freed: Condvar::new(),
            nodes,
            stop,
            next_call: AtomicU64::new(1),
            replaced: AtomicU64::new(0),
        }
    }

    pub fn count(&self) -> usize {
        self.slots.len()
    }

    /// Forks every worker now (instead of at its first call).
    pub(crate) fn start_all(&self) -> Result<(), super::process::Error> {
        for (index, slot) in self.slots.iter().enumerate() {
            let mut slot = slot.lock().expect("slot lock");
            if slot.is_none() {
                *slot = Some(self.zygote.fork("client", index)?);
            }
        }
        Ok(())
    }

    /// Kills every worker (a stop): calls in flight end `Stopped` or
    /// `Crashed`.
    pub(crate) fn kill_all(&self) {
        for slot in &self.slots {
            if let Ok(slot) = slot.try_lock() {
                if let Some(worker) = slot.as_ref() {
                    worker.kill();
                }
            }
        }
        for pid in self.zygote.forked_pids() {
            super::process::kill(pid);
        }
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// Takes the lowest idle worker slot, waiting until one is free or the
    /// deadline passes.
    fn acquire(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut idle = self.idle.lock().expect("idle lock");
        loop {
            if let Some(position) = (0..idle.len()).min_by_key(|&i| idle[i]) {
                return Some(idle.swap_remove(position));
            }
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    left.min(POLL)
                }
                None => POLL,
            };
            idle = self.freed.wait_timeout(idle, wait).expect("idle lock").0;
        }
    }

    fn release(&self, index: usize) {
        self.idle.lock().expect("idle lock").push(index);
        self.freed.notify_one();
    }

    /// Runs one call on an idle worker, blocking until it ends.
    pub fn call(&self, call: &Call) -> CallResult {
        let started = Instant::now();
        let mut output = String::new();
        let Some(index) = self.acquire(call.deadline) else {
            // Its operation timed out before a worker got to it.
            return CallResult {
                outcome: Outcome::TimedOut,
                output,
                elapsed: Duration::ZERO,
            };
        };
        let outcome = {
            let mut slot = self.slots[index].lock().expect("slot lock");
            let outcome = self.call_on(&mut slot, index, call, &mut output);
            if !matches!(outcome, Outcome::Replied { .. }) {
                if let Some(worker) = slot.take() {
                    worker.kill();
                    self.replaced.fetch_add(1, Ordering::Relaxed);
                }
            }
            outcome
        };
        self.release(index);
        CallResult {
            outcome,
            output,
            elapsed: started.elapsed(),
        }
    }

    fn call_on(&self, slot: &mut Option<Forked>, index: usize, call: &Call, output: &mut String) -> Outcome {
        if slot.is_none() {
            match self.zygote.fork("client", index) {
                Ok(worker) => *slot = Some(worker),
                Err(error) => {
                    return Outcome::Crashed {
                        status: format!("no worker process could be started: {error}"),
                    }
                }
            }
        }
        let worker = slot.as_mut().expect("a worker was just forked");
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (state, node_config) = {
            let node = self.nodes[call.partition].lock().expect("node lock");
            (node.state.clone(), node.node_config.clone())
        };
        let frame = Frame::new(
            kind::CALL,
            id,
            json!({
                "node_id": call.node_id,
                "node_config": node_config,
                "seed": call.seed,
                "vtime": call.vtime,
                "reply_id": call.reply_id,
            }),
        )
        .with(call.metadata.clone())
        .with(call.content.clone())
        .with(state);
        if worker.send(&frame).is_err() {
            return self.crashed(worker.pid);
        }
        loop {
            match worker.reader.read(Some(POLL)) {
                Ok(Some(frame)) if frame.kind == kind::LOG => {
                    output.push_str(&String::from_utf8_lossy(&frame.field(0)));
                }
                Ok(Some(frame)) if frame.kind == kind::RESULT && frame.id == id => {
                    let ok = frame.str("status") == "ok";
                    if ok {
                        let mut node = self.nodes[call.partition].lock().expect("node lock");
                        node.state = frame.field(1);
                        if let Some(config) = frame.header.get("node_config") {
                            node.node_config = config.clone();
                        }
                    }
                    return Outcome::Replied {
                        message: frame.field(0),
                        ok,
                    };
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if self.stopping() {
                        return Outcome::Stopped;
                    }
                    if call.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return Outcome::TimedOut;
                    }
                    if self.zygote.exit_of(worker.pid).is_some() {
                        return self.crashed(worker.pid);
                    }
                }
                Err(_) => return self.crashed(worker.pid),
            }
        }
    }

    fn crashed(&self, pid: i32) -> Outcome {
        let status = self
            .zygote
            .wait_exit(pid, Duration::from_secs(2))
            .unwrap_or_else(|| "ended".to_string());
        Outcome::Crashed { status }
    }
}

/// The error reply of a call that did not answer, as the engine records it.
pub(crate) fn failure(outcome: &Outcome) -> Option<Error> {
    match outcome {
        Outcome::Replied { .. } => None,
        Outcome::Crashed { status } => Some(Error {
            code: error_code::CLIENT_APP_CRASHED,
            reason: format!("ClientApp stopped responding (its worker process: {status})."),
        }),
        Outcome::TimedOut => Some(Error {
            code: error_code::CLIENT_APP_CRASHED,
            reason: "ClientApp did not reply before the timeout; its worker process was killed.".into(),
        }),
        Outcome::Stopped => Some(Error {
            code: error_code::CLIENT_APP_CRASHED,
            reason: "the run was stopped during the call".into(),
        }),
    }
}

/// Python ClientApps behind the engine's [`ClientApp`] trait (a built-in
/// ServerApp driving a Python ClientApp).
pub(crate) struct PyClientApp {
    pub workers: Arc<Workers>,
    encoded: EncodedContent,
}

impl PyClientApp {
    pub fn new(workers: Arc<Workers>) -> PyClientApp {
        PyClientApp {
            workers,
            encoded: EncodedContent::default(),
        }
    }
}

/// The content of the phase being sent, encoded once: every instruction of
/// a phase shares one `Arc<RecordDict>`.
///
/// The cache keeps the `Arc` it encoded, not only its address: an address
/// alone would match a later content that the allocator placed where a
/// dropped one was, and send the old bytes (a model of an earlier round).
#[derive(Default)]
struct EncodedContent(Mutex<Option<(Arc<RecordDict>, Bytes)>>);

impl EncodedContent {
    fn bytes(&self, message: &Message) -> Bytes {
        let Ok(content) = &message.body else {
            return Bytes::new();
        };
        let mut cached = self.0.lock().expect("content lock");
        if let Some((cached_content, bytes)) = cached.as_ref() {
            if Arc::ptr_eq(cached_content, content) {
                return bytes.clone();
            }
        }
        let bytes = Bytes::from(proto::record_dict_to_proto(content).encode_to_vec());
        *cached = Some((Arc::clone(content), bytes.clone()));
        bytes
    }
}

/// Flower's `Metadata` of a message.
pub(crate) fn metadata_to_proto(metadata: &crate::records::Metadata) -> pb::Metadata {
    pb::Metadata {
        run_id: metadata.run_id,
        message_id: metadata.message_id.clone(),
        src_node_id: metadata.src_node_id,
        dst_node_id: metadata.dst_node_id,
        reply_to_message_id: metadata.reply_to_message_id.clone(),
        group_id: metadata.group_id.clone(),
        ttl: metadata.ttl,
        message_type: metadata.message_type.clone(),
        created_at: metadata.created_at,
    }
}

impl ClientApp for PyClientApp {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        let partition = match context.node_config.get("partition-id") {
            Some(Scalar::Int(id)) if *id >= 0 => *id as usize,
            _ => {
                return Err(Error {
                    code: error_code::UNKNOWN,
                    reason: "the node has no partition-id".into(),
                })
            }
        };
        let call = Call {
            node_id: message.metadata.dst_node_id,
            partition,
            metadata: Bytes::from(metadata_to_proto(&message.metadata).encode_to_vec()),
            content: self.encoded.bytes(message),
            seed: env.prng.next_u64(),
            vtime: message.metadata.created_at,
            reply_id: format!("{}.reply", message.metadata.message_id),
            deadline: None,
        };
        let result = self.workers.call(&call);
        if !result.output.is_empty() {
            env.log.output(result.output);
        }
        if let Some(error) = failure(&result.outcome) {
            return Err(error);
        }
        let Outcome::Replied { message: reply, .. } = result.outcome else {
            unreachable!("failures returned above")
        };
        decode_reply(&reply)
    }
}

/// The content of a reply as records, or its error.
pub(crate) fn decode_reply(bytes: &[u8]) -> Result<RecordDict, Error> {
    let unreadable = |reason: String| Error {
        code: error_code::UNKNOWN,
        reason: format!("the ClientApp's reply cannot be used by floret's built-in ServerApp: {reason}"),
    };
    let reply = pb::Message::decode(bytes).map_err(|e| unreadable(e.to_string()))?;
    if let Some(error) = reply.error {
        return Err(Error {
            code: error.code,
            reason: error.reason,
        });
    }
    let content = reply.content.unwrap_or_default();
    proto::record_dict_from_proto(&content).map_err(|e| unreadable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ConfigRecord, ConfigValue, Record};

    fn content(round: i64) -> Arc<RecordDict> {
        let mut config = ConfigRecord::new();
        config.insert("server-round", ConfigValue::Int(round));
        let mut content = RecordDict::new();
        content.insert("config", Record::Config(config));
        Arc::new(content)
    }

    /// Each phase's content is dropped before the next is built, so the
    /// allocator tends to put the next one where the last one was: the
    /// cache must still encode every new content (a cache keyed by address
    /// sent round 2's model in round 3).
    #[test]
    fn a_new_content_is_encoded_even_where_an_old_one_was() {
        let encoded = EncodedContent::default();
        for round in 0..200 {
            let content = content(round);
            let message = Message::instruction(Arc::clone(&content), 7, "train");
            let expected = Bytes::from(proto::record_dict_to_proto(&content).encode_to_vec());
            assert_eq!(encoded.bytes(&message), expected, "round {round}");
            assert_eq!(encoded.bytes(&message), expected, "round {round}, again");
        }
    }
}
