//! The messages of deployment runs while they pass through the SuperLink:
//! instructions from the ServerApp (ServerAppIo) waiting for their SuperNode
//! (Fleet), the replies waiting for the ServerApp, and the object store that
//! carries their contents (Flower 1.27's content-addressed objects,
//! [`crate::objects`]).
//!
//! Flower 1.27's rules (its `InMemoryLinkState` and `InMemoryObjectStore`):
//! an instruction is handed to its node once, oldest first, one per pull; a
//! reply is handed to the ServerApp once, and then the instruction and its
//! reply are gone; a pull for an instruction that is unknown or expired
//! answers Flower's `MESSAGE_UNAVAILABLE` error reply, one whose node went
//! offline `NODE_UNAVAILABLE`, made here with the ids Flower gives them.
//! Objects are preregistered from a message's tree, pushed once (their id
//! must be the SHA-256 of their bytes), and deleted when the receiver
//! confirms the message, or with their run, while another message still
//! holds them they stay.
//!
//! Two things differ, both invisible to Flower's peers except in speed and
//! safety: a message is handed on only once all its objects have arrived
//! (a SuperNode that gets a message too early backs off for seconds per
//! object), and the bytes held are bounded ([`MAILBOX_BYTES_MAX`]): an
//! object that would pass the bound is refused.
//!
//! It is pure state: no I/O, no clock (times are arguments), no gRPC
//! status. It returns the [`MessageRouted`] events for the caller to record.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::domain::event::{Hop, MessageRouted};
use crate::domain::node::NodeStatus;
use crate::objects;
use crate::proto::flwr::proto as pb;
use crate::records::{self, error_code, Message, Metadata, SUPERLINK_NODE_ID};

/// The most bytes of object content the SuperLink holds at once (every
/// run's messages in flight): 4 GiB.
pub(crate) const MAILBOX_BYTES_MAX: usize = 4 << 30;

/// Flower's earliest valid `created_at` (2025-02-28, its `validate_message`).
const CREATED_AT_MIN: f64 = 1_740_700_800.0;
/// How far a reply's TTL may pass its instruction's (Flower's
/// `MESSAGE_TTL_TOLERANCE`).
const TTL_TOLERANCE: f64 = 0.1;

/// Flower 1.27's reasons, verbatim.
pub(crate) const MESSAGE_UNAVAILABLE_REASON: &str = "Error: Message Unavailable - The requested message could not \
     be found in the database. It may have expired due to its TTL, been deleted because the destination SuperNode \
     was removed from the federation, or never existed.";
pub(crate) const NODE_UNAVAILABLE_REASON: &str =
    "Error: Node Unavailable \u{2014} The destination node failed to report a heartbeat within 2 \u{d7} its expected \
     interval.";

/// Why a request was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum Refusal {
    /// A malformed PushMessages of the ServerApp (Flower's text).
    #[error("Malformed PushMessages: {0}")]
    Malformed(String),
    #[error("Invalid object ID format: {0}")]
    InvalidObjectId(String),
    /// An object whose header is not Flower's (FAILED_PRECONDITION).
    #[error("Object with ID '{id}' has an unexpected structure. {reason}")]
    UnexpectedStructure { id: String, reason: String },
    #[error(
        "The SuperLink holds {held} bytes of messages in flight and takes at most {max}: object {id} ({size} bytes) \
         was refused"
    )]
    Full {
        id: String,
        size: usize,
        held: usize,
        max: usize,
    },
}

/// What PullObject finds.
#[derive(Debug, PartialEq)]
pub(crate) enum Pulled {
    /// No such object (never preregistered, or deleted).
    NotFound,
    /// Preregistered, its bytes not pushed yet.
    NotAvailable,
    Available(Arc<Vec<u8>>),
}

#[derive(Debug)]
struct Entry {
    content: Option<Arc<Vec<u8>>>,
    children: Vec<String>,
    /// Direct parents (distinct objects holding it as a child).
    parents: u32,
    runs: BTreeSet<u64>,
}

/// Flower's object store, bounded.
#[derive(Debug)]
struct Store {
    objects: HashMap<String, Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            objects: HashMap::new(),
            bytes: 0,
            max_bytes: MAILBOX_BYTES_MAX,
        }
    }
}

impl Store {
    /// Registers the objects of `tree` (children first); the ids whose
    /// bytes are still missing.
    fn preregister(
        &mut self,
        run_id: u64,
        tree: &pb::ObjectTree,
        missing: &mut BTreeSet<String>,
    ) -> Result<(), Refusal> {
        for child in &tree.children {
            self.preregister(run_id, child, missing)?;
        }
        let id = &tree.object_id;
        if !is_object_id(id) {
            return Err(Refusal::InvalidObjectId(id.clone()));
        }
        match self.objects.get_mut(id) {
            Some(entry) => {
                entry.runs.insert(run_id);
                if entry.content.is_none() {
                    missing.insert(id.clone());
                }
            }
            None => {
                let children: Vec<String> = tree.children.iter().map(|c| c.object_id.clone()).collect();
                for child in children.iter().collect::<BTreeSet<_>>() {
                    if let Some(entry) = self.objects.get_mut(child.as_str()) {
                        entry.parents += 1;
                    }
                }
                self.objects.insert(
                    id.clone(),
                    Entry {
                        content: None,
                        children,
                        parents: 0,
                        runs: BTreeSet::from([run_id]),
                    },
                );
                missing.insert(id.clone());
            }
        }
        Ok(())
    }

    /// Flower's `put`: `Ok(false)` for bytes that do not hash to the id or
    /// an id nobody registered.
    fn put(&mut self, id: &str, content: Vec<u8>) -> Result<bool, Refusal> {
        if objects::object_id(&content) != id {
            return Ok(false);
        }
        if let Err(error) = objects::check_object(id, &content) {
            return Err(Refusal::UnexpectedStructure {
                id: id.to_string(),
                reason: error.to_string(),
            });
        }
        let held = self.bytes;
        let Some(entry) = self.objects.get_mut(id) else {
            return Ok(false);
        };
        if entry.content.is_some() {
            return Ok(true);
        }
        if held + content.len() > self.max_bytes {
            return Err(Refusal::Full {
                id: id.to_string(),
                size: content.len(),
                held,
                max: self.max_bytes,
            });
        }
        self.bytes += content.len();
        entry.content = Some(Arc::new(content));
        Ok(true)
    }

    fn get(&self, id: &str) -> Pulled {
        match self.objects.get(id) {
            None => Pulled::NotFound,
            Some(Entry { content: None, .. }) => Pulled::NotAvailable,
            Some(Entry {
                content: Some(content), ..
            }) => Pulled::Available(Arc::clone(content)),
        }
    }

    /// Deletes `id` unless something still holds it, then its children
    /// nothing holds any more.
    fn delete(&mut self, id: &str) {
        let mut stack = vec![id.to_string()];
        while let Some(id) = stack.pop() {
            let Some(entry) = self.objects.get(&id) else { continue };
            if entry.parents > 0 {
                continue;
            }
            let entry = self.objects.remove(&id).expect("present");
            if let Some(content) = &entry.content {
                self.bytes -= content.len();
            }
            for child in entry.children.iter().collect::<BTreeSet<_>>() {
                if let Some(child_entry) = self.objects.get_mut(child.as_str()) {
                    child_entry.parents = child_entry.parents.saturating_sub(1);
                    stack.push(child.clone());
                }
            }
        }
    }

    /// Deletes every object of `run_id` nothing else holds.
    fn delete_run(&mut self, run_id: u64) {
        let roots: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, entry)| entry.runs.contains(&run_id) && entry.parents == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for root in roots {
            let only_this_run = self.objects.get(&root).is_some_and(|e| e.runs.len() == 1);
            if only_this_run {
                self.delete(&root);
            } else if let Some(entry) = self.objects.get_mut(&root) {
                entry.runs.remove(&run_id);
            }
        }
    }

    /// The bytes of a message's objects, once all arrived.
    fn message_bytes(&self, tree: &pb::ObjectTree) -> Option<u64> {
        let mut bytes = 0u64;
        for id in objects::tree_object_ids(tree) {
            match self.objects.get(&id) {
                Some(Entry {
                    content: Some(content), ..
                }) => bytes += content.len() as u64,
                _ => return None,
            }
        }
        Some(bytes)
    }
}

fn is_object_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A message as it travels: the proto with its metadata, and its tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Envelope {
    pub message: pb::Message,
    pub tree: pb::ObjectTree,
}

impl Envelope {
    fn metadata(&self) -> &pb::Metadata {
        self.message
            .metadata
            .as_ref()
            .expect("validated envelopes have metadata")
    }
}

#[derive(Debug)]
struct Instruction {
    run_id: u64,
    envelope: Envelope,
    /// Recorded as pushed (all its objects arrived).
    complete: bool,
    delivered: bool,
    reply: Option<Reply>,
}

#[derive(Debug)]
struct Reply {
    envelope: Envelope,
    complete: bool,
}

/// Messages in flight and their objects.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    instructions: HashMap<String, Instruction>,
    /// Undelivered instructions per node, oldest first.
    queues: BTreeMap<u64, VecDeque<String>>,
    store: Store,
}

/// The errors of Flower's `validate_message`, in its order.
fn validate(message: &pb::Message, is_reply: bool, now: f64) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(m) = message.metadata.as_ref() else {
        return vec!["`metadata` is not set".into()];
    };
    if m.message_id.is_empty() {
        errors.push("empty `metadata.message_id`".into());
    }
    if m.created_at < CREATED_AT_MIN {
        errors.push(
            "`metadata.created_at` must be a float that records the unix timestamp in seconds when the message was \
             created."
                .into(),
        );
    }
    if m.ttl <= 0.0 {
        errors.push("`metadata.ttl` must be higher than zero".into());
    }
    if m.created_at + m.ttl <= now {
        errors.push("Message TTL has expired".into());
    }
    if m.src_node_id == 0 {
        errors.push("`metadata.src_node_id` is not set.".into());
    }
    if m.dst_node_id == 0 {
        errors.push("`metadata.dst_node_id` is not set.".into());
    }
    if m.message_type.is_empty() {
        errors.push("`metadata.message_type` MUST be set".into());
    }
    if message.content.is_some() == message.error.is_some() {
        errors.push("Either message `content` or `error` MUST be set (but not both)".into());
    }
    if is_reply {
        if m.reply_to_message_id.is_empty() {
            errors.push("`metadata.reply_to_message_id` MUST be set.".into());
        }
        if m.src_node_id == SUPERLINK_NODE_ID {
            errors.push("`metadata.src_node_id` is 1 (SuperLink node ID)".into());
        }
        if m.dst_node_id != SUPERLINK_NODE_ID {
            errors.push("`metadata.dst_node_id` is not 1 (SuperLink node ID)".into());
        }
    } else {
        if !m.reply_to_message_id.is_empty() {
            errors.push("`metadata.reply_to_message_id` MUST not be set.".into());
        }
        if m.src_node_id != SUPERLINK_NODE_ID {
            errors.push("`metadata.src_node_id` is not 1 (SuperLink node ID)".into());
        }
        if m.dst_node_id == SUPERLINK_NODE_ID {
            errors.push("`metadata.dst_node_id` is 1 (SuperLink node ID)".into());
        }
    }
    errors
}

/// A [`MessageRouted`] event and the run it belongs to.
pub(crate) type Routed = (u64, MessageRouted);

fn routed(hop: Hop, envelope: &Envelope, bytes: u64) -> Routed {
    let m = envelope.metadata();
    (
        m.run_id,
        MessageRouted {
            hop,
            message_id: m.message_id.clone(),
            reply_to: m.reply_to_message_id.clone(),
            src_node_id: m.src_node_id,
            dst_node_id: m.dst_node_id,
            message_type: m.message_type.clone(),
            group_id: m.group_id.clone(),
            bytes,
            error_code: envelope.message.error.as_ref().map(|e| e.code),
        },
    )
}

/// What a Fleet PushMessages did: the reply's id if it was taken, the
/// objects still to push, and the events.
pub(crate) type PushedReply = (Option<String>, Vec<String>, Vec<Routed>);

/// What a PushMessages of the ServerApp did.
#[derive(Debug, Default)]
pub(crate) struct PushedInstructions {
    /// Per message, its id, or `""` when it was not taken (Flower's answer).
    pub message_ids: Vec<String>,
    pub objects_to_push: Vec<String>,
    pub routed: Vec<Routed>,
}

impl Mailbox {
    /// The bytes of object content held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.store.bytes
    }

    /// The runs that have messages or objects here.
    pub fn run_ids(&self) -> BTreeSet<u64> {
        let mut runs: BTreeSet<u64> = self.instructions.values().map(|i| i.run_id).collect();
        for entry in self.store.objects.values() {
            runs.extend(&entry.runs);
        }
        runs
    }

    /// ServerAppIo `PushMessages`: instructions of run `run_id` to nodes
    /// whose status `nodes` gives (an offline node is accepted, as in
    /// Flower; one never activated, or gone, is not).
    pub fn push_instructions(
        &mut self,
        run_id: u64,
        envelopes: Vec<Envelope>,
        nodes: &BTreeMap<u64, NodeStatus>,
        now: f64,
    ) -> Result<PushedInstructions, Refusal> {
        if envelopes.is_empty() {
            return Err(Refusal::Malformed("`messages_list` must not be empty".into()));
        }
        let mut pushed = PushedInstructions::default();
        let mut missing = BTreeSet::new();
        for envelope in envelopes {
            let errors = validate(&envelope.message, false, now);
            if !errors.is_empty() {
                return Err(Refusal::Malformed(errors.join(", ")));
            }
            let metadata = envelope.metadata().clone();
            if metadata.run_id != run_id {
                return Err(Refusal::Malformed("`Message.metadata` has mismatched `run_id`".into()));
            }
            self.store.preregister(run_id, &envelope.tree, &mut missing)?;
            let reachable = matches!(
                nodes.get(&metadata.dst_node_id),
                Some(NodeStatus::Online | NodeStatus::Offline)
            );
            let id = metadata.message_id.clone();
            if !reachable || envelope.tree.object_id != id || self.instructions.contains_key(&id) {
                // Flower stores no such message; its objects are dropped
                // with the run.
                pushed.message_ids.push(String::new());
                continue;
            }
            self.instructions.insert(
                id.clone(),
                Instruction {
                    run_id,
                    envelope,
                    complete: false,
                    delivered: false,
                    reply: None,
                },
            );
            self.queues
                .entry(metadata.dst_node_id)
                .or_default()
                .push_back(id.clone());
            pushed.routed.extend(self.complete(&id));
            pushed.message_ids.push(id);
        }
        pushed.objects_to_push = missing.into_iter().collect();
        Ok(pushed)
    }

    /// Marks the messages of `instruction_id` (it, and its reply) complete
    /// once all their objects arrived; the events of those that just did.
    fn complete(&mut self, instruction_id: &str) -> Vec<Routed> {
        let mut events = Vec::new();
        let Some(instruction) = self.instructions.get_mut(instruction_id) else {
            return events;
        };
        if !instruction.complete {
            if let Some(bytes) = self.store.message_bytes(&instruction.envelope.tree) {
                instruction.complete = true;
                events.push(routed(Hop::Pushed, &instruction.envelope, bytes));
            }
        }
        if let Some(reply) = instruction.reply.as_mut().filter(|r| !r.complete) {
            if let Some(bytes) = self.store.message_bytes(&reply.envelope.tree) {
                reply.complete = true;
                events.push(routed(Hop::Replied, &reply.envelope, bytes));
            }
        }
        events
    }

    /// PushObject (either API); the events of the messages it completed.
    pub fn push_object(&mut self, id: &str, content: Vec<u8>) -> Result<(bool, Vec<Routed>), Refusal> {
        let stored = self.store.put(id, content)?;
        if !stored {
            return Ok((false, Vec::new()));
        }
        let waiting: Vec<String> = self
            .instructions
            .iter()
            .filter(|(_, i)| !i.complete || i.reply.as_ref().is_some_and(|r| !r.complete))
            .map(|(id, _)| id.clone())
            .collect();
        let mut events = Vec::new();
        for instruction_id in waiting {
            events.extend(self.complete(&instruction_id));
        }
        Ok((true, events))
    }

    pub fn pull_object(&self, id: &str) -> Pulled {
        self.store.get(id)
    }

    /// ConfirmMessageReceived: the receiver has the message; its objects go.
    pub fn confirm(&mut self, message_id: &str) {
        self.store.delete(message_id);
    }

    /// Drops expired instructions (and their replies), as Flower does
    /// whenever it looks at them.
    fn expire(&mut self, now: f64) {
        let expired: Vec<String> = self
            .instructions
            .iter()
            .filter(|(_, i)| {
                let m = i.envelope.metadata();
                m.created_at + m.ttl <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    fn remove(&mut self, instruction_id: &str) {
        if let Some(instruction) = self.instructions.remove(instruction_id) {
            let node = instruction.envelope.metadata().dst_node_id;
            if let Some(queue) = self.queues.get_mut(&node) {
                queue.retain(|id| id != instruction_id);
                if queue.is_empty() {
                    self.queues.remove(&node);
                }
            }
        }
    }

    /// Fleet `PullMessages`: the oldest complete instruction for `node_id`,
    /// handed on once.
    pub fn pull_instruction(&mut self, node_id: u64, now: f64) -> Option<(Envelope, Routed)> {
        self.expire(now);
        let queue = self.queues.get(&node_id)?;
        let position = queue
            .iter()
            .position(|id| self.instructions.get(id).is_some_and(|i| i.complete))?;
        let queue = self.queues.get_mut(&node_id).expect("present");
        let id = queue.remove(position).expect("position in the queue");
        if queue.is_empty() {
            self.queues.remove(&node_id);
        }
        let instruction = self.instructions.get_mut(&id).expect("queued instructions exist");
        instruction.delivered = true;
        let bytes = self.store.message_bytes(&instruction.envelope.tree).unwrap_or(0);
        Some((
            instruction.envelope.clone(),
            routed(Hop::Delivered, &instruction.envelope, bytes),
        ))
    }

    /// Fleet `PushMessages` from node `node_id`: its reply, if it answers an
    /// instruction delivered to that node and keeps within its TTL (else
    /// Flower stores nothing and says so only with the id `None`). The
    /// objects to push are those of every tree sent, as Flower's.
    pub fn push_reply(&mut self, envelope: Envelope, run_id: u64, now: f64) -> Result<PushedReply, Refusal> {
        let mut missing = BTreeSet::new();
        self.store.preregister(run_id, &envelope.tree, &mut missing)?;
        let objects_to_push: Vec<String> = missing.into_iter().collect();
        self.expire(now);
        if !validate(&envelope.message, true, now).is_empty() {
            return Ok((None, objects_to_push, Vec::new()));
        }
        let m = envelope.metadata().clone();
        let Some(instruction) = self.instructions.get_mut(&m.reply_to_message_id) else {
            return Ok((None, objects_to_push, Vec::new()));
        };
        let ins = instruction.envelope.metadata();
        let ttl_left = ins.created_at + ins.ttl - m.created_at;
        let valid = ins.dst_node_id == m.src_node_id
            && ins.run_id == m.run_id
            && envelope.tree.object_id == m.message_id
            && !(m.ttl > 0.0 && m.ttl - ttl_left > TTL_TOLERANCE);
        if !valid {
            return Ok((None, objects_to_push, Vec::new()));
        }
        instruction.reply = Some(Reply {
            envelope,
            complete: false,
        });
        let events = self.complete(&m.reply_to_message_id);
        Ok((Some(m.message_id), objects_to_push, events))
    }

    /// ServerAppIo `PullMessages`: for each id asked, the reply if it is
    /// complete, Flower's error reply if the instruction is unknown or its
    /// node is offline, nothing if the reply is still to come. What is
    /// answered is gone afterwards (its objects stay until confirmed).
    pub fn pull_replies(
        &mut self,
        run_id: u64,
        ids: &[String],
        nodes: &BTreeMap<u64, NodeStatus>,
        now: f64,
    ) -> (Vec<Envelope>, Vec<Routed>) {
        self.expire(now);
        let mut answered = Vec::new();
        let mut events = Vec::new();
        for id in ids.iter().collect::<BTreeSet<_>>() {
            let Some(instruction) = self.instructions.get(id.as_str()).filter(|i| i.run_id == run_id) else {
                let reply = self.error_reply(run_id, None, id, error_code::MESSAGE_UNAVAILABLE, now);
                events.push((run_id, routed(Hop::Failed, &reply, 0).1));
                answered.push(reply);
                continue;
            };
            let ins = instruction.envelope.metadata().clone();
            if nodes.get(&ins.dst_node_id) != Some(&NodeStatus::Online) {
                let reply = self.error_reply(run_id, Some(&ins), id, error_code::NODE_UNAVAILABLE, now);
                events.push(routed(Hop::Failed, &reply, 0));
                answered.push(reply);
                self.remove(id);
                continue;
            }
            match &instruction.reply {
                Some(reply) if reply.complete => {
                    let bytes = self.store.message_bytes(&reply.envelope.tree).unwrap_or(0);
                    events.push(routed(Hop::Answered, &reply.envelope, bytes));
                    answered.push(reply.envelope.clone());
                    self.remove(id);
                }
                _ => {}
            }
        }
        (answered, events)
    }

    /// Flower's error reply in a node's place, stored as objects (so the
    /// ServerApp pulls and confirms it as any reply).
    fn error_reply(&mut self, run_id: u64, ins: Option<&pb::Metadata>, id: &str, code: i64, now: f64) -> Envelope {
        let (metadata, reason) = match ins {
            None => (
                Metadata {
                    run_id: 0,
                    message_id: String::new(),
                    src_node_id: SUPERLINK_NODE_ID,
                    dst_node_id: SUPERLINK_NODE_ID,
                    reply_to_message_id: id.to_string(),
                    group_id: String::new(),
                    ttl: 0.0,
                    message_type: "system".into(),
                    created_at: now,
                },
                MESSAGE_UNAVAILABLE_REASON,
            ),
            Some(ins) => (
                Metadata {
                    run_id: ins.run_id,
                    message_id: String::new(),
                    src_node_id: SUPERLINK_NODE_ID,
                    dst_node_id: SUPERLINK_NODE_ID,
                    reply_to_message_id: id.to_string(),
                    group_id: ins.group_id.clone(),
                    ttl: (ins.ttl - (now - ins.created_at)).max(0.0),
                    message_type: ins.message_type.clone(),
                    created_at: now,
                },
                NODE_UNAVAILABLE_REASON,
            ),
        };
        let message = Message {
            metadata,
            body: Err(records::Error {
                code,
                reason: reason.to_string(),
            }),
        };
        let deflated = objects::deflate(&message);
        let message_id = deflated.message_id().to_string();
        let mut missing = BTreeSet::new();
        self.store
            .preregister(run_id, &deflated.tree, &mut missing)
            .expect("our own object ids are valid");
        for object in deflated.objects {
            // A few hundred bytes; the bound is for what peers send.
            let _ = self.store.put(&object.id, object.content);
        }
        Envelope {
            message: objects::envelope(&message, &message_id),
            tree: deflated.tree,
        }
    }

    /// Everything of a finished run.
    pub fn drop_run(&mut self, run_id: u64) {
        let ids: Vec<String> = self
            .instructions
            .iter()
            .filter(|(_, i)| i.run_id == run_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.remove(&id);
        }
        self.store.delete_run(run_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ConfigRecord, ConfigValue, Record, RecordDict};

    const NOW: f64 = 1_800_000_000.0;

    fn instruction(dst: u64, text: &str) -> (Envelope, Vec<objects::Object>) {
        let mut config = ConfigRecord::new();
        config.insert("text", ConfigValue::Str(text.into()));
        let mut content = RecordDict::new();
        content.insert("config", Record::Config(config));
        let mut message = Message::instruction(Arc::new(content), dst, "train");
        message.metadata.run_id = 7;
        message.metadata.created_at = NOW;
        let deflated = objects::deflate(&message);
        let id = deflated.message_id().to_string();
        (
            Envelope {
                message: objects::envelope(&message, &id),
                tree: deflated.tree,
            },
            deflated.objects,
        )
    }

    fn reply_to(ins: &Envelope) -> (Envelope, Vec<objects::Object>) {
        let metadata = crate::proto::metadata_from_proto(ins.metadata());
        let to = Message {
            metadata,
            body: Ok(Arc::new(RecordDict::new())),
        };
        let mut reply = Message::reply(&to, Ok(RecordDict::new()));
        reply.metadata.created_at = NOW + 1.0;
        reply.metadata.ttl = records::DEFAULT_TTL - 1.0;
        let deflated = objects::deflate(&reply);
        let id = deflated.message_id().to_string();
        (
            Envelope {
                message: objects::envelope(&reply, &id),
                tree: deflated.tree,
            },
            deflated.objects,
        )
    }

    fn online(ids: &[u64]) -> BTreeMap<u64, NodeStatus> {
        ids.iter().map(|id| (*id, NodeStatus::Online)).collect()
    }

    #[test]
    fn a_message_goes_out_once_complete_and_its_reply_comes_back_once() {
        let mut mailbox = Mailbox::default();
        let nodes = online(&[5]);
        let (ins, objects) = instruction(5, "hello");
        let id = ins.tree.object_id.clone();
        let pushed = mailbox.push_instructions(7, vec![ins.clone()], &nodes, NOW).unwrap();
        assert_eq!(pushed.message_ids, vec![id.clone()]);
        assert_eq!(pushed.objects_to_push.len(), objects.len());
        assert!(pushed.routed.is_empty(), "not complete yet");
        // Not handed on before its objects arrived.
        assert!(mailbox.pull_instruction(5, NOW).is_none());
        let mut events = Vec::new();
        for object in &objects {
            let (stored, routed) = mailbox.push_object(&object.id, object.content.clone()).unwrap();
            assert!(stored);
            events.extend(routed);
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.hop, Hop::Pushed);
        let total: usize = objects.iter().map(|o| o.content.len()).sum();
        assert_eq!(events[0].1.bytes, total as u64);
        let (delivered, event) = mailbox.pull_instruction(5, NOW).unwrap();
        assert_eq!(delivered, ins);
        assert_eq!(event.1.hop, Hop::Delivered);
        assert!(mailbox.pull_instruction(5, NOW).is_none(), "delivered once");
        // Nothing yet for the ServerApp.
        let (answered, _) = mailbox.pull_replies(7, std::slice::from_ref(&id), &nodes, NOW);
        assert!(answered.is_empty());
        mailbox.confirm(&id);
        let (reply, reply_objects) = reply_to(&ins);
        let (taken, to_push, _) = mailbox.push_reply(reply.clone(), 7, NOW + 1.0).unwrap();
        assert_eq!(taken.as_deref(), Some(reply.tree.object_id.as_str()));
        for object in &reply_objects {
            assert!(to_push.contains(&object.id));
            mailbox.push_object(&object.id, object.content.clone()).unwrap();
        }
        let (answered, events) = mailbox.pull_replies(7, std::slice::from_ref(&id), &nodes, NOW + 2.0);
        assert_eq!(answered, vec![reply.clone()]);
        assert_eq!(events[0].1.hop, Hop::Answered);
        mailbox.confirm(&reply.tree.object_id);
        assert_eq!(mailbox.bytes(), 0, "everything confirmed is gone");
        // Asked again: Flower's MESSAGE_UNAVAILABLE.
        let (answered, _) = mailbox.pull_replies(7, &[id], &nodes, NOW + 3.0);
        assert_eq!(
            answered[0].message.error.as_ref().unwrap().code,
            error_code::MESSAGE_UNAVAILABLE
        );
        assert_eq!(
            answered[0].message.error.as_ref().unwrap().reason,
            MESSAGE_UNAVAILABLE_REASON
        );
    }

    #[test]
    fn an_offline_node_answers_node_unavailable_and_a_foreign_reply_is_refused() {
        let mut mailbox = Mailbox::default();
        let (ins, objects) = instruction(5, "x");
        let id = ins.tree.object_id.clone();
        mailbox
            .push_instructions(7, vec![ins.clone()], &online(&[5]), NOW)
            .unwrap();
        for object in &objects {
            mailbox.push_object(&object.id, object.content.clone()).unwrap();
        }
        mailbox.pull_instruction(5, NOW).unwrap();
        // A reply from another node than the one asked.
        let (mut reply, _) = reply_to(&ins);
        reply.message.metadata.as_mut().unwrap().src_node_id = 6;
        assert_eq!(mailbox.push_reply(reply, 7, NOW).unwrap().0, None);
        let mut offline = online(&[]);
        offline.insert(5, NodeStatus::Offline);
        let (answered, events) = mailbox.pull_replies(7, &[id], &offline, NOW);
        let error = answered[0].message.error.as_ref().unwrap();
        assert_eq!(
            (error.code, error.reason.as_str()),
            (error_code::NODE_UNAVAILABLE, NODE_UNAVAILABLE_REASON)
        );
        assert_eq!(events[0].1.hop, Hop::Failed);
        // The error reply's objects are there to pull, as any reply's.
        let reply_id = &answered[0].tree.object_id;
        assert!(matches!(mailbox.pull_object(reply_id), Pulled::Available(_)));
        mailbox.drop_run(7);
        assert_eq!(mailbox.bytes(), 0);
        assert!(mailbox.run_ids().is_empty());
    }

    #[test]
    fn malformed_instructions_and_objects_are_refused_as_flower_refuses_them() {
        let mut mailbox = Mailbox::default();
        let (mut ins, objects) = instruction(5, "x");
        ins.message.metadata.as_mut().unwrap().src_node_id = 3;
        let refused = mailbox.push_instructions(7, vec![ins], &online(&[5]), NOW).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Malformed PushMessages: `metadata.src_node_id` is not 1 (SuperLink node ID)"
        );
        // A node that is not connected: no id.
        let (ins, _) = instruction(9, "x");
        let pushed = mailbox.push_instructions(7, vec![ins], &online(&[5]), NOW).unwrap();
        assert_eq!(pushed.message_ids, vec![String::new()]);
        // Bytes that are not the object: not stored.
        let (stored, _) = mailbox.push_object(&objects[0].id, b"other".to_vec()).unwrap();
        assert!(!stored);
        // Expired instructions are gone.
        let (ins, objects) = instruction(5, "late");
        let id = ins.tree.object_id.clone();
        mailbox.push_instructions(7, vec![ins], &online(&[5]), NOW).unwrap();
        for object in &objects {
            mailbox.push_object(&object.id, object.content.clone()).unwrap();
        }
        assert!(mailbox.pull_instruction(5, NOW + records::DEFAULT_TTL).is_none());
        let (answered, _) = mailbox.pull_replies(7, &[id], &online(&[5]), NOW + records::DEFAULT_TTL);
        assert_eq!(
            answered[0].message.error.as_ref().unwrap().code,
            error_code::MESSAGE_UNAVAILABLE
        );
    }

    #[test]
    fn the_bytes_held_are_bounded_and_freed_objects_make_room() {
        let mut mailbox = Mailbox::default();
        let (a, objects_a) = instruction(5, "first");
        let size: usize = objects_a.iter().map(|o| o.content.len()).sum();
        mailbox.store.max_bytes = size + 10;
        mailbox
            .push_instructions(7, vec![a.clone()], &online(&[5]), NOW)
            .unwrap();
        for object in &objects_a {
            mailbox.push_object(&object.id, object.content.clone()).unwrap();
        }
        let (b, objects_b) = instruction(5, "second");
        mailbox.push_instructions(7, vec![b], &online(&[5]), NOW).unwrap();
        let refused = objects_b
            .iter()
            .map(|object| mailbox.push_object(&object.id, object.content.clone()))
            .find_map(Result::err)
            .expect("the second message does not fit");
        assert!(matches!(refused, Refusal::Full { .. }), "{refused}");
        // Once the first is confirmed, the second fits.
        mailbox.pull_instruction(5, NOW).unwrap();
        mailbox.confirm(&a.tree.object_id);
        for object in &objects_b {
            assert!(mailbox.push_object(&object.id, object.content.clone()).unwrap().0);
        }
    }

    #[test]
    fn shared_objects_stay_while_another_message_holds_them() {
        let mut mailbox = Mailbox::default();
        let nodes = online(&[5, 6]);
        let (a, objects_a) = instruction(5, "same");
        let (b, objects_b) = instruction(6, "same");
        let pushed = mailbox
            .push_instructions(7, vec![a.clone(), b.clone()], &nodes, NOW)
            .unwrap();
        // The content is one object tree under two message objects.
        assert_eq!(pushed.objects_to_push.len(), objects_a.len() + 1);
        for object in objects_a.iter().chain(&objects_b) {
            mailbox.push_object(&object.id, object.content.clone()).unwrap();
        }
        mailbox.pull_instruction(5, NOW).unwrap();
        mailbox.confirm(&a.tree.object_id);
        let (b_delivered, _) = mailbox.pull_instruction(6, NOW).unwrap();
        for id in objects::tree_object_ids(&b_delivered.tree) {
            assert!(matches!(mailbox.pull_object(&id), Pulled::Available(_)), "{id}");
        }
        mailbox.confirm(&b.tree.object_id);
        assert_eq!(mailbox.bytes(), 0);
    }
}
