//! The event vocabulary: everything that ever happens to a run or to a
//! deployment's SuperNodes.
//!
//! Events are the ground truth. Every Control action (submit, status change,
//! stop, log output) and every step of a simulation (rounds, sampled nodes,
//! replies, aggregates) is one event, appended to the `events` table and never
//! changed. Run lists, statuses, logs and metrics are folds over them.
//!
//! Three families share the table:
//! - *control* events, decided by the SuperLink from Control and SimulationIo
//!   calls ([`Event::is_simulation`] is false);
//! - *node* events, decided by the SuperLink from Fleet API calls of a
//!   deployment's SuperNodes (and its own heartbeat verdicts); they belong to
//!   no run and are stored under [`NODE_EVENTS_RUN_ID`];
//! - *simulation* events, produced by the deterministic simulation engine. For
//!   a given seed, configuration and app they are the same bytes on every
//!   execution; `flwr replay` re-executes a run and compares them.
//!
//! Payloads hold no wall-clock time, no process ids, nothing random that the
//! seed does not determine. Their encoding lives in `codec`; this module
//! does no I/O and no encoding.

use serde::{Deserialize, Serialize};

use crate::domain::ids::RunId;
use crate::records::{ConfigRecord, Digest, MetricRecord, UserConfig};

/// Everything recorded about a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    // Control events.
    /// The run was accepted by StartRun: what it runs, with which inputs.
    RunSubmitted(RunSubmitted),
    /// An app process claimed the run (Flower's `RequestToken`).
    RunStarting,
    /// The app process pulled its inputs and runs (Flower's `PullAppInputs`).
    RunRunning,
    /// A user asked to stop the run (Flower's `StopRun`).
    RunStopRequested,
    /// The run ended; terminal.
    RunFinished(RunFinished),
    /// Output of the app process (Flower's `PushLogs`), verbatim.
    LogAppended(LogAppended),
    /// The app process that computes the simulation: its build and platform
    /// (written once, before the first simulation event; not compared).
    AppProcessStarted(AppProcessStarted),
    /// The app process measured the run's traffic and ClientApp time so far
    /// (wall-clock figures: never compared by replay).
    UsageRecorded(Usage),

    // Node events: the SuperNodes of a deployment (Fleet API), which belong
    // to no run (stored under [`NODE_EVENTS_RUN_ID`]). Not to be confused
    // with `NodesRegistered`, a simulation's virtual nodes.
    /// `RegisterNode`: a SuperNode's public key got a node id.
    NodeRegistered(NodeRegistered),
    /// `ActivateNode`, or a heartbeat of a registered or offline node: the
    /// node is online.
    NodeActivated(NodeActivated),
    /// `DeactivateNode`: the node said it goes offline.
    NodeDeactivated(NodeDeactivated),
    /// `UnregisterNode`: the node left for good.
    NodeUnregistered(NodeUnregistered),
    /// The SuperLink saw no heartbeat in time and marked the node offline.
    NodeWentOffline(NodeWentOffline),

    // Message events of a deployment run: a message passed through the
    // SuperLink (Fleet and ServerAppIo). Outside inputs, never compared.
    /// One hop of a message: its ids, ends, kind and size, not its content.
    MessageRouted(MessageRouted),

    // Simulation events.
    SimulationStarted(SimulationStarted),
    NodesRegistered(NodesRegistered),
    RoundStarted(RoundStarted),
    NodeSampled(NodeSampled),
    ReplyReceived(ReplyReceived),
    Aggregated(Aggregated),
    CentralEvaluated(CentralEvaluated),
    SimulationStopped(SimulationStopped),
    SimulationFinished(SimulationFinished),

    // Simulation events of runs with Python components.
    PythonStarted(PythonStarted),
    MessageSent(MessageSent),
    ReplyDelivered(ReplyDelivered),
}

/// The run id under which node events are stored: Flower never draws run
/// id 0, so no run's events mix with them.
pub const NODE_EVENTS_RUN_ID: RunId = RunId(0);

/// A SuperNode registered (Flower's `RegisterNode`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRegistered {
    /// Drawn by the SuperLink, as Flower draws it (8 random bytes, never 0
    /// or 1).
    pub node_id: u64,
    /// The SuperNode's public key as it sent it (MessagePack `bin`).
    #[serde(with = "bytes")]
    pub public_key: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeActivated {
    pub node_id: u64,
    /// Seconds between the node's heartbeats, as it announced them.
    pub heartbeat_interval: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeDeactivated {
    pub node_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeUnregistered {
    pub node_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeWentOffline {
    pub node_id: u64,
}

/// Where a message of a deployment run went through the SuperLink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Hop {
    /// The ServerApp pushed an instruction (ServerAppIo `PushMessages`).
    Pushed,
    /// Its SuperNode pulled it (Fleet `PullMessages`).
    Delivered,
    /// The SuperNode pushed the reply (Fleet `PushMessages`).
    Replied,
    /// The ServerApp pulled the reply (ServerAppIo `PullMessages`).
    Answered,
    /// The SuperLink answered in the node's place: its node went offline,
    /// or the message outlived its TTL (Flower's error replies).
    Failed,
}

impl Hop {
    pub fn as_str(self) -> &'static str {
        match self {
            Hop::Pushed => "pushed",
            Hop::Delivered => "delivered",
            Hop::Replied => "replied",
            Hop::Answered => "answered",
            Hop::Failed => "failed",
        }
    }
}

/// A message of a deployment run at one [`Hop`]. Its content stays in the
/// SuperLink's object store while the message is in flight; the event keeps
/// the message id, which is the SHA-256 of the message object and so names
/// the content exactly, and the size of its objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRouted {
    pub hop: Hop,
    /// The message's id (an instruction's, or a reply's).
    pub message_id: String,
    /// The instruction a reply answers; empty for instructions.
    pub reply_to: String,
    pub src_node_id: u64,
    pub dst_node_id: u64,
    pub message_type: String,
    pub group_id: String,
    /// Bytes of the message's objects (its content, and its error).
    pub bytes: u64,
    /// The error code of a reply that carries an error.
    pub error_code: Option<i64>,
}

/// `Vec<u8>` as one byte string (MessagePack `bin`), not an array of numbers.
mod bytes {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// The first event of every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSubmitted {
    pub run_id: RunId,
    /// `<publisher>/<name>` from the app's `pyproject.toml`.
    pub fab_id: String,
    pub fab_version: String,
    /// SHA-256 of the FAB, lowercase hex; the FAB is stored under this name.
    pub fab_hash: String,
    /// `--run-config` overrides as sent by the client.
    pub override_config: UserConfig,
    pub federation: String,
    /// The profile's `options.*`, flattened (Flower 1.27's `federation_options`).
    pub federation_options: ConfigRecord,
    /// The seed of every random decision of the run.
    pub seed: u64,
    /// The program that accepted the run, e.g. `floret 0.1.0`.
    pub build: String,
}

/// Flower's finished sub-statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SubStatus {
    Completed,
    Failed,
    Stopped,
}

impl SubStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::Completed => "completed",
            SubStatus::Failed => "failed",
            SubStatus::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<SubStatus> {
        match text {
            "completed" => Some(SubStatus::Completed),
            "failed" => Some(SubStatus::Failed),
            "stopped" => Some(SubStatus::Stopped),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    pub sub_status: SubStatus,
    /// Why it failed or stopped; empty when completed.
    pub details: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogAppended {
    pub text: String,
}

/// Which program computed a run's simulation, and on what: what a replay
/// names when it cannot reproduce a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppProcessStarted {
    pub build: BuildIdentity,
    pub platform: Platform,
}

/// An exact build: the sources it was compiled from and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildIdentity {
    /// `floret 0.1.0 (<commit>[-dirty], sources <hash>)`, as in `RunSubmitted`.
    pub build: String,
    /// The git commit, if the sources were a git checkout.
    pub commit: Option<String>,
    /// Whether the checkout had uncommitted changes (`None` without git).
    pub dirty: Option<bool>,
    /// SHA-256 of the compiled sources (`src/`, `proto/`, `data/`, the
    /// manifest, the lock file and `build.rs`), lowercase hex.
    pub sources: String,
    /// `rustc --version`, the target triple and the profile.
    pub compiler: String,
    pub target: String,
    pub profile: String,
    /// The CPU features the code was compiled for (`cfg(target_feature)`).
    pub target_features: String,
}

/// The machine a process ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    pub os: String,
    /// CPU features that change which code a C library picks, as detected.
    pub cpu_features: Vec<String>,
    /// The C library and its version, with `GLIBC_TUNABLES` when set.
    pub libc: String,
}

/// A run's resource use so far, as Flower reports it in its `Run` message:
/// totals since the run started, each record superseding the previous one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes the SuperLink sent to SuperNodes (Flower's `bytes_sent`, shown
    /// as "Network traffic (outbound)").
    pub bytes_sent: u64,
    /// Bytes the SuperLink received from SuperNodes (`bytes_recv`, inbound).
    pub bytes_recv: u64,
    /// Seconds spent in ClientApp calls, summed over calls (Flower's
    /// `clientapp_runtime`, "Compute Time (ClientApp)").
    pub clientapp_runtime: f64,
}

/// The two halves of a federated round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    Train,
    Evaluate,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Train => "train",
            Phase::Evaluate => "evaluate",
        }
    }
}

/// The inputs the simulation engine resolved, recorded before its first step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationStarted {
    pub num_supernodes: u64,
    /// Component names from `[tool.flwr.app.components]`.
    pub server_app: String,
    pub client_app: String,
    /// The effective run configuration: app defaults fused with overrides.
    pub run_config: UserConfig,
    pub num_rounds: u64,
    /// Name of the strategy class, as Flower logs it.
    pub strategy: String,
}

/// The virtual SuperNodes, in registration order (partition id = index).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodesRegistered {
    pub node_ids: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundStarted {
    pub round: u64,
}

/// A node was sampled to receive an instruction; one event per node, in the
/// order the instructions are sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSampled {
    pub round: u64,
    pub phase: Phase,
    pub node_id: u64,
}

/// What a node answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Content {
        /// Its `MetricRecord`, if it sent one.
        metrics: Option<MetricRecord>,
        /// Digest of its `ArrayRecord`, if it sent one.
        arrays: Option<Digest>,
    },
    Error {
        code: i64,
        reason: String,
        /// Whether the failure came from outside the simulated computation
        /// (an injected fault) and is replayed rather than recomputed.
        injected: bool,
    },
}

/// A reply, in canonical order (the order the instructions were sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyReceived {
    pub round: u64,
    pub phase: Phase,
    pub node_id: u64,
    pub reply: Reply,
}

/// The strategy aggregated one phase of a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregated {
    pub round: u64,
    pub phase: Phase,
    pub results: u64,
    pub failures: u64,
    pub metrics: Option<MetricRecord>,
    /// Digest of the aggregated arrays (train only, when aggregation produced some).
    pub arrays: Option<Digest>,
}

/// Server-side (central) evaluation; round 0 is the initial model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CentralEvaluated {
    pub round: u64,
    pub metrics: Option<MetricRecord>,
}

/// The engine observed a stop request and stopped before `before`, in
/// `round`. Recorded so that a replay stops at the same logical position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationStopped {
    pub round: u64,
    pub before: String,
}

/// How the simulation ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Completed,
    Failed { reason: String },
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationFinished {
    pub rounds_completed: u64,
    /// Digest of the final global arrays (`Result.arrays`), if any.
    pub arrays: Option<Digest>,
    pub outcome: Outcome,
}

/// The Python environment of a run with Python components, recorded before
/// its first step. Replay compares it as a note (another interpreter is a
/// likely cause of a divergence, not a divergence itself), except `workers`
/// and `server_api`, which shape the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PythonStarted {
    /// The interpreter's path, as the run named it.
    pub interpreter: String,
    pub python: String,
    pub flwr: String,
    /// Versions of the numeric libraries that were installed, `name=version`.
    pub libraries: Vec<String>,
    /// ClientApp worker processes; a replay uses the same number.
    pub workers: u64,
    /// The ServerApp: `"builtin"`, or a Python one's API, `"message"`
    /// (`@app.main`) or `"legacy"` (`server_fn`, whose rounds aggregate in
    /// thread-completion order and are not bit-reproducible).
    pub server_api: String,
}

/// A message a Python ServerApp sent to a node, in the order it sent them.
/// `step` numbers its grid operations (`push_messages`,
/// `send_and_receive`), from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageSent {
    pub step: u64,
    /// The `server-round` of the message's config record, else its group id
    /// when that is a number.
    pub round: Option<u64>,
    pub node_id: u64,
    pub message_type: String,
    pub group_id: String,
    /// SHA-256 of the content's (or error's) protobuf bytes.
    pub content: Digest,
}

/// What a Python ServerApp received from a node, in the order it sent the
/// messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyDelivered {
    pub step: u64,
    pub round: Option<u64>,
    pub node_id: u64,
    pub reply: Delivered,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Delivered {
    Content {
        /// Its first `MetricRecord`, if any.
        metrics: Option<MetricRecord>,
        /// SHA-256 of the reply content's protobuf bytes.
        content: Digest,
    },
    Error {
        code: i64,
        reason: String,
        /// From outside the computation (the worker died): replayed, not
        /// recomputed.
        injected: bool,
    },
    /// No reply before the grid operation's timeout (an outside input; the
    /// ServerApp does not get it, as in Flower).
    TimedOut,
}

impl Event {
    /// The stable name of the event's kind, as stored in the `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunSubmitted(_) => "RunSubmitted",
            Event::RunStarting => "RunStarting",
            Event::RunRunning => "RunRunning",
            Event::RunStopRequested => "RunStopRequested",
            Event::RunFinished(_) => "RunFinished",
            Event::LogAppended(_) => "LogAppended",
            Event::AppProcessStarted(_) => "AppProcessStarted",
            Event::UsageRecorded(_) => "UsageRecorded",
            Event::NodeRegistered(_) => "NodeRegistered",
            Event::NodeActivated(_) => "NodeActivated",
            Event::NodeDeactivated(_) => "NodeDeactivated",
            Event::NodeUnregistered(_) => "NodeUnregistered",
            Event::NodeWentOffline(_) => "NodeWentOffline",
            Event::MessageRouted(_) => "MessageRouted",
            Event::SimulationStarted(_) => "SimulationStarted",
            Event::NodesRegistered(_) => "NodesRegistered",
            Event::RoundStarted(_) => "RoundStarted",
            Event::NodeSampled(_) => "NodeSampled",
            Event::ReplyReceived(_) => "ReplyReceived",
            Event::Aggregated(_) => "Aggregated",
            Event::CentralEvaluated(_) => "CentralEvaluated",
            Event::SimulationStopped(_) => "SimulationStopped",
            Event::SimulationFinished(_) => "SimulationFinished",
            Event::PythonStarted(_) => "PythonStarted",
            Event::MessageSent(_) => "MessageSent",
            Event::ReplyDelivered(_) => "ReplyDelivered",
        }
    }

    /// Whether the deterministic engine produced it (and replay compares it).
    pub fn is_simulation(&self) -> bool {
        !matches!(
            self,
            Event::RunSubmitted(_)
                | Event::RunStarting
                | Event::RunRunning
                | Event::RunStopRequested
                | Event::RunFinished(_)
                | Event::LogAppended(_)
                | Event::AppProcessStarted(_)
                | Event::UsageRecorded(_)
                | Event::NodeRegistered(_)
                | Event::NodeActivated(_)
                | Event::NodeDeactivated(_)
                | Event::NodeUnregistered(_)
                | Event::NodeWentOffline(_)
                | Event::MessageRouted(_)
        )
    }

    /// The SuperNode a node event is about (`None` for other events).
    pub fn node_id(&self) -> Option<u64> {
        match self {
            Event::NodeRegistered(e) => Some(e.node_id),
            Event::NodeActivated(e) => Some(e.node_id),
            Event::NodeDeactivated(e) => Some(e.node_id),
            Event::NodeUnregistered(e) => Some(e.node_id),
            Event::NodeWentOffline(e) => Some(e.node_id),
            _ => None,
        }
    }

    /// The round an event belongs to, if any.
    pub fn round(&self) -> Option<u64> {
        match self {
            Event::RoundStarted(e) => Some(e.round),
            Event::NodeSampled(e) => Some(e.round),
            Event::ReplyReceived(e) => Some(e.round),
            Event::Aggregated(e) => Some(e.round),
            Event::CentralEvaluated(e) => Some(e.round),
            Event::SimulationStopped(e) => Some(e.round),
            Event::MessageSent(e) => e.round,
            Event::ReplyDelivered(e) => e.round,
            _ => None,
        }
    }
}
