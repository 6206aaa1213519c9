//! The engine: one thread that owns the [`Store`] and is the only writer of
//! `state.db`.
//!
//! gRPC handlers hold a cheap [`Handle`] and send requests over one channel,
//! which keeps every change in one order. For each command the engine runs
//! `domain::run::decide` against the current state, appends the resulting
//! events (one transaction) and answers.
//!
//! Reads are typed methods of the [`Handle`]; handlers never see the
//! [`Store`]. What the engine keeps in memory (a run, the runs and their
//! statuses) is read on its thread. Pages of the tables (logs, a run's
//! events, the listed runs) are read on a blocking task through a read-only
//! connection of its own ([`store::Reader`], WAL lets readers run beside the
//! writer), so that long streams never occupy the writer. Each page is a new
//! read transaction, which sees every transaction committed before it: a
//! client still reads its own writes. A database in memory has no second
//! connection; its pages are read on the engine thread.
//!
//! The engine also keeps what is not history and therefore not in events: the
//! app tokens of active runs and their heartbeat deadlines (Flower keeps them
//! in a `token_store` table that it never replays either; a token lives from
//! the claim until the run finishes, or its heartbeat expires), and the
//! *obligations*: facts the SuperLink decided itself (a run's process died,
//! its heartbeat expired, it was active when the SuperLink restarted) that
//! could not be written yet because the disk was full. They are retried every
//! second and after every successful write until recorded, so that space
//! coming back ends such runs without a restart.
//!
//! Nodes: the engine decides the Fleet API's node commands
//! (`domain::node::decide`, stored under run id 0) and keeps, beside them,
//! when each online node's heartbeat is due (Flower's `online_until`: now +
//! `HEARTBEAT_PATIENCE` × the node's interval, after each activation and
//! heartbeat). That deadline is not history: every second, and before each
//! node command (Flower checks before it activates or deactivates), a node
//! past it is marked offline with a `NodeWentOffline` event. After a
//! restart the nodes online in the events get a full window from the
//! restart (the SuperLink's downtime is not held against them), so a
//! SuperNode that heartbeats again stays online.
//!
//! Why a thread and not a task: SQLite calls block; a dedicated thread keeps
//! them off the async runtime's workers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::event::{Event, NODE_EVENTS_RUN_ID};
use crate::domain::ids::{Micros, RunId, Seq};
use crate::domain::node::{self, NodeStatus, Nodes, RESERVED_NODE_IDS};
use crate::domain::run::{decide, Command, Rejection, Run, Status};
use crate::domain::views::{LogChunk, StoredEvent};
use crate::store::{self, RawEvent, ReadView, Reader, RunFilter, Store};

/// How long a claimed token lives without a heartbeat (Flower: 30 s).
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(30);
/// A heartbeat extends the token to now + this (Flower: 2 × 30 s).
pub(crate) const HEARTBEAT_PATIENCE: Duration = Duration::from_secs(60);

/// Why a command did not change anything.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Rejected(Rejection),
    #[error("{0}")]
    NodeRejected(node::Rejection),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the engine has stopped")]
    Stopped,
}

type Query = Box<dyn FnOnce(&Store) + Send>;

enum Request {
    Execute {
        run_id: RunId,
        command: Command,
        reply: oneshot::Sender<Result<Vec<StoredEvent>, ExecError>>,
    },
    Claim {
        run_id: RunId,
        reply: oneshot::Sender<Result<Option<String>, ExecError>>,
    },
    Authenticate {
        token: String,
        reply: oneshot::Sender<Option<RunId>>,
    },
    Heartbeat {
        token: String,
        reply: oneshot::Sender<bool>,
    },
    Expire {
        reply: oneshot::Sender<Vec<RunId>>,
    },
    Oblige {
        run_id: RunId,
        command: Command,
    },
    RegisterNode {
        public_key: Vec<u8>,
        reply: oneshot::Sender<Result<u64, ExecError>>,
    },
    Node {
        command: node::Command,
        reply: oneshot::Sender<Result<u64, ExecError>>,
    },
    ListNodes {
        reply: oneshot::Sender<Vec<(node::Node, Option<Duration>)>>,
    },
    Query(Query),
}

/// A cheap, cloneable handle on the engine.
#[derive(Clone)]
pub struct Handle {
    requests: mpsc::UnboundedSender<Request>,
    committed: watch::Receiver<Seq>,
    /// Read-only connections for pages; `None` for a database in memory.
    readers: Option<Arc<Readers>>,
}

/// Idle read-only connections kept for the next page, at most.
const IDLE_READERS_MAX: usize = 4;

/// Read-only connections to the database file, opened when needed and kept
/// (a few) for the next page.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

impl Readers {
    /// Runs `read` on an idle connection or a new one (blocking).
    fn read<T>(&self, read: impl FnOnce(ReadView<'_>) -> Result<T, store::Error>) -> Result<T, store::Error> {
        let idle = self.idle.lock().expect("readers lock").pop();
        let reader = match idle {
            Some(reader) => reader,
            None => Reader::open(&self.path)?,
        };
        let result = read(reader.view());
        let mut idle = self.idle.lock().expect("readers lock");
        if idle.len() < IDLE_READERS_MAX {
            idle.push(reader);
        }
        result
    }
}

/// The app token of an active run.
struct Token {
    token: String,
    active_until: Instant,
}

struct Engine {
    store: Store,
    tokens: HashMap<RunId, Token>,
    runs_by_token: HashMap<String, RunId>,
    committed: watch::Sender<Seq>,
    /// Commands that must be recorded, waiting for the store to take them.
    obligations: BTreeMap<RunId, Command>,
    /// When each online node must have sent its next heartbeat.
    online_until: BTreeMap<u64, Instant>,
}

/// How long a node with heartbeats every `interval` seconds stays online
/// after its last one.
fn online_window(interval: f64) -> Duration {
    Duration::try_from_secs_f64(node::HEARTBEAT_PATIENCE * interval).unwrap_or(Duration::from_secs(3600))
}

/// The nodes online in `nodes`, each given a full window from `now`.
fn online_nodes(nodes: &Nodes, now: Instant) -> BTreeMap<u64, Instant> {
    nodes
        .nodes
        .values()
        .filter(|node| node.status == NodeStatus::Online)
        .map(|node| (node.node_id, now + online_window(node.heartbeat_interval)))
        .collect()
}

/// Starts the engine thread over `store`.
pub fn start(store: Store) -> Handle {
    let (requests, receiver) = mpsc::unbounded_channel();
    let (committed, committed_rx) = watch::channel(Seq(0));
    let readers = (!store.in_memory()).then(|| {
        Arc::new(Readers {
            path: store.path().to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })
    });
    let online_until = online_nodes(store.nodes(), Instant::now());
    let engine = Engine {
        store,
        tokens: HashMap::new(),
        runs_by_token: HashMap::new(),
        committed,
        obligations: BTreeMap::new(),
        online_until,
    };
    std::thread::Builder::new()
        .name("floret-engine".into())
        .spawn(move || engine.run(receiver))
        .expect("spawn the engine thread");
    Handle {
        requests,
        committed: committed_rx,
        readers,
    }
}

use crate::host::wall_clock;

/// The node an event takes off line (deactivated, unregistered, overdue).
fn offline_node(event: &Event) -> Option<u64> {
    match event {
        Event::NodeDeactivated(e) => Some(e.node_id),
        Event::NodeUnregistered(e) => Some(e.node_id),
        Event::NodeWentOffline(e) => Some(e.node_id),
        _ => None,
    }
}

/// A fresh random token, 256 hex characters as Flower's `token_hex(128)`.
fn new_token() -> String {
    let mut bytes = [0u8; 128];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

impl Engine {
    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Request>) {
        while let Some(request) = receiver.blocking_recv() {
            match request {
                Request::Execute { run_id, command, reply } => {
                    let _ = reply.send(self.execute(run_id, &command));
                }
                Request::Claim { run_id, reply } => {
                    let _ = reply.send(self.claim(run_id));
                }
                Request::Authenticate { token, reply } => {
                    let _ = reply.send(self.runs_by_token.get(&token).copied());
                }
                Request::Heartbeat { token, reply } => {
                    let _ = reply.send(self.heartbeat(&token));
                }
                Request::Expire { reply } => {
                    self.retry_obligations();
                    self.expire_nodes();
                    let _ = reply.send(self.expire());
                }
                Request::Oblige { run_id, command } => self.oblige(run_id, command),
                Request::RegisterNode { public_key, reply } => {
                    let _ = reply.send(self.register_node(public_key));
                }
                Request::Node { command, reply } => {
                    self.expire_nodes();
                    let _ = reply.send(self.execute_node(&command));
                }
                Request::ListNodes { reply } => {
                    self.expire_nodes();
                    let now = Instant::now();
                    let nodes = self
                        .store
                        .nodes()
                        .nodes
                        .values()
                        .map(|node| {
                            let left = self
                                .online_until
                                .get(&node.node_id)
                                .map(|until| until.saturating_duration_since(now));
                            (node.clone(), left)
                        })
                        .collect();
                    let _ = reply.send(nodes);
                }
                Request::Query(query) => query(&self.store),
            }
        }
    }

    fn execute(&mut self, run_id: RunId, command: &Command) -> Result<Vec<StoredEvent>, ExecError> {
        let result = self.execute_once(run_id, command);
        if result.as_ref().is_ok_and(|stored| !stored.is_empty()) && !self.obligations.is_empty() {
            // The store takes writes again.
            self.retry_obligations();
        }
        result
    }

    /// Executes `command` now, or keeps it to retry when the store cannot
    /// take it (a full disk). Rejections are final: the run moved on.
    fn oblige(&mut self, run_id: RunId, command: Command) {
        match self.execute_once(run_id, &command) {
            Ok(_) | Err(ExecError::Rejected(_) | ExecError::NodeRejected(_) | ExecError::Stopped) => {}
            Err(ExecError::Store(error)) => {
                tracing::warn!(
                    %run_id,
                    %error,
                    "cannot record the end of the run yet; retrying every second until it is recorded"
                );
                self.obligations.entry(run_id).or_insert(command);
            }
        }
    }

    fn retry_obligations(&mut self) {
        while let Some((&run_id, command)) = self.obligations.iter().next() {
            let command = command.clone();
            match self.execute_once(run_id, &command) {
                Err(ExecError::Store(_)) => return,
                Ok(stored) if !stored.is_empty() => {
                    tracing::info!(%run_id, "recorded the end of the run: the state database takes writes again")
                }
                Ok(_) | Err(_) => {}
            }
            self.obligations.remove(&run_id);
        }
    }

    fn execute_once(&mut self, run_id: RunId, command: &Command) -> Result<Vec<StoredEvent>, ExecError> {
        let events = decide(self.store.state(), run_id, command).map_err(ExecError::Rejected)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.store.append(run_id, &events, wall_clock())?;
        if events.iter().any(|e| matches!(e, Event::RunFinished(_))) {
            self.release(run_id);
        }
        if let Some(last) = stored.last() {
            self.committed.send_replace(last.seq);
        }
        Ok(stored)
    }

    /// Registers a node under a fresh id, drawn as Flower draws them
    /// (8 random bytes, never 0 or 1, never taken).
    fn register_node(&mut self, public_key: Vec<u8>) -> Result<u64, ExecError> {
        let node_id = loop {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).expect("the operating system's random source");
            let node_id = u64::from_le_bytes(bytes);
            if !RESERVED_NODE_IDS.contains(&node_id) && !self.store.nodes().nodes.contains_key(&node_id) {
                break node_id;
            }
        };
        self.execute_node(&node::Command::Register { node_id, public_key })
    }

    /// Decides and appends a node command; returns the node it concerns.
    fn execute_node(&mut self, command: &node::Command) -> Result<u64, ExecError> {
        let events = node::decide(self.store.nodes(), command).map_err(ExecError::NodeRejected)?;
        let now = Instant::now();
        if !events.is_empty() {
            let stored = self.store.append(NODE_EVENTS_RUN_ID, &events, wall_clock())?;
            if let Some(last) = stored.last() {
                self.committed.send_replace(last.seq);
            }
        }
        let mut activated = None;
        for event in &events {
            if let Event::NodeActivated(e) = event {
                activated = Some(e.node_id);
                self.online_until
                    .insert(e.node_id, now + online_window(e.heartbeat_interval));
            }
            if let Some(gone) = offline_node(event) {
                self.online_until.remove(&gone);
            }
        }
        let node_id = match command {
            node::Command::Register { node_id, .. }
            | node::Command::Deactivate { node_id }
            | node::Command::Unregister { node_id }
            | node::Command::MarkOffline { node_id } => *node_id,
            node::Command::Heartbeat {
                node_id,
                heartbeat_interval,
            } => {
                // An online node's heartbeat changes nothing recorded: only
                // its deadline moves.
                self.online_until
                    .insert(*node_id, now + online_window(*heartbeat_interval));
                *node_id
            }
            node::Command::Activate { .. } => activated.expect("an activation records the node it activated"),
        };
        Ok(node_id)
    }

    /// Marks offline the online nodes whose heartbeat is overdue. A node
    /// that cannot be marked yet (a full disk) keeps its deadline and is
    /// tried again at the next call.
    fn expire_nodes(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .online_until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(node_id, _)| *node_id)
            .collect();
        for node_id in overdue {
            let online = self
                .store
                .nodes()
                .nodes
                .get(&node_id)
                .is_some_and(|node| node.status == NodeStatus::Online);
            if !online {
                self.online_until.remove(&node_id);
                continue;
            }
            match self.execute_node(&node::Command::MarkOffline { node_id }) {
                Ok(_) => {
                    tracing::warn!(node_id, "no heartbeat from the SuperNode in time; it is offline");
                    self.online_until.remove(&node_id);
                }
                Err(ExecError::Store(error)) => {
                    tracing::warn!(node_id, %error, "cannot record that the SuperNode went offline yet; retrying");
                }
                Err(_) => {
                    self.online_until.remove(&node_id);
                }
            }
        }
    }

    fn claim(&mut self, run_id: RunId) -> Result<Option<String>, ExecError> {
        if self.tokens.contains_key(&run_id) {
            return Ok(None);
        }
        self.execute(run_id, &Command::Claim)?;
        let token = new_token();
        self.runs_by_token.insert(token.clone(), run_id);
        self.tokens.insert(
            run_id,
            Token {
                token: token.clone(),
                active_until: Instant::now() + TOKEN_TTL,
            },
        );
        Ok(Some(token))
    }

    /// Extends the token's life; false when the token is unknown or its run
    /// should stop (which is how Flower tells an app process to exit).
    fn heartbeat(&mut self, token: &str) -> bool {
        let Some(run_id) = self.runs_by_token.get(token).copied() else {
            return false;
        };
        let stop_requested = self
            .store
            .state()
            .runs
            .get(&run_id)
            .is_none_or(|run| run.stop_requested_at.is_some() || run.status.is_finished());
        if let Some(entry) = self.tokens.get_mut(&run_id) {
            entry.active_until = Instant::now() + HEARTBEAT_PATIENCE;
        }
        !stop_requested
    }

    fn release(&mut self, run_id: RunId) {
        if let Some(entry) = self.tokens.remove(&run_id) {
            self.runs_by_token.remove(&entry.token);
        }
    }

    /// Fails active runs whose token expired; returns them.
    fn expire(&mut self) -> Vec<RunId> {
        let now = Instant::now();
        let expired: Vec<RunId> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.active_until < now)
            .map(|(run_id, _)| *run_id)
            .collect();
        for run_id in &expired {
            let reason = "No heartbeat received from the run.".to_string();
            self.oblige(*run_id, Command::Abandon { reason });
            self.release(*run_id);
        }
        expired
    }
}

impl Handle {
    fn send(&self, request: Request) -> Result<(), ExecError> {
        self.requests.send(request).map_err(|_| ExecError::Stopped)
    }

    /// Decides and appends `command` for `run_id`; returns the new events.
    pub async fn execute(&self, run_id: RunId, command: Command) -> Result<Vec<StoredEvent>, ExecError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Execute { run_id, command, reply })?;
        response.await.map_err(|_| ExecError::Stopped)?
    }

    /// Flower's `RequestToken`: a new token and the run starting, or `None`
    /// when the run already has one.
    pub async fn claim(&self, run_id: RunId) -> Result<Option<String>, ExecError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Claim { run_id, reply })?;
        response.await.map_err(|_| ExecError::Stopped)?
    }

    /// The run a token belongs to, if it is valid.
    pub async fn authenticate(&self, token: &str) -> Option<RunId> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Authenticate {
            token: token.to_string(),
            reply,
        })
        .ok()?;
        response.await.ok().flatten()
    }

    pub async fn heartbeat(&self, token: &str) -> bool {
        let (reply, response) = oneshot::channel();
        if self
            .send(Request::Heartbeat {
                token: token.to_string(),
                reply,
            })
            .is_err()
        {
            return false;
        }
        response.await.unwrap_or(false)
    }

    /// Records `command` for `run_id` now or, if the store cannot take it
    /// (a full disk), as soon as it can: for facts that must not be lost,
    /// such as the death of a run's process.
    pub fn oblige(&self, run_id: RunId, command: Command) {
        let _ = self.send(Request::Oblige { run_id, command });
    }

    /// Flower's `RegisterNode`: the new node's id.
    pub async fn register_node(&self, public_key: Vec<u8>) -> Result<u64, ExecError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::RegisterNode { public_key, reply })?;
        response.await.map_err(|_| ExecError::Stopped)?
    }

    /// Decides and records a node command of the Fleet API; returns the
    /// node it concerns (for `Activate`, the node of the public key).
    pub async fn execute_node(&self, command: node::Command) -> Result<u64, ExecError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Node { command, reply })?;
        response.await.map_err(|_| ExecError::Stopped)?
    }

    /// Every node, as the events say, with how long each online node stays
    /// online without another heartbeat.
    pub async fn nodes(&self) -> Result<Vec<(node::Node, Option<Duration>)>, ExecError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::ListNodes { reply })?;
        response.await.map_err(|_| ExecError::Stopped)
    }

    /// Retries obligations, marks overdue nodes offline, then fails runs
    /// whose heartbeat expired.
    pub async fn expire(&self) -> Vec<RunId> {
        let (reply, response) = oneshot::channel();
        if self.send(Request::Expire { reply }).is_err() {
            return Vec::new();
        }
        response.await.unwrap_or_default()
    }

    /// Runs `query` on the engine thread with read access to the store: for
    /// tests and checks of the whole store (`Store::verify`). Handlers use
    /// the typed reads below.
    pub async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, ExecError> {
        let (reply, response) = oneshot::channel();
        self.send(Request::Query(Box::new(move |store| {
            let _ = reply.send(query(store));
        })))?;
        response.await.map_err(|_| ExecError::Stopped)
    }

    /// The current state of one run.
    pub async fn run(&self, run_id: RunId) -> Option<Run> {
        self.query(move |store| store.state().runs.get(&run_id).cloned())
            .await
            .ok()
            .flatten()
    }

    /// The ids of every run.
    pub async fn run_ids(&self) -> Result<BTreeSet<RunId>, ExecError> {
        self.query(|store| store.state().runs.keys().copied().collect()).await
    }

    /// Every run's id and status, by id.
    pub async fn run_statuses(&self) -> Result<Vec<(RunId, Status)>, ExecError> {
        self.query(|store| store.state().runs.values().map(|r| (r.run_id(), r.status)).collect())
            .await
    }

    /// Runs as the `runs` table holds them (a page read).
    pub async fn runs(&self, filter: RunFilter) -> Result<Vec<Run>, ExecError> {
        self.read(move |view| view.runs(filter)).await
    }

    /// When the last log chunk of a run was recorded, if it has one.
    pub async fn last_log_at(&self, run_id: RunId) -> Result<Option<Micros>, ExecError> {
        self.read(move |view| view.last_log_at(run_id)).await
    }

    /// A page of a run's log after `after`: at most `max_bytes` of text (at
    /// least one chunk when there is one).
    pub async fn logs_after(&self, run_id: RunId, after: Micros, max_bytes: usize) -> Result<Vec<LogChunk>, ExecError> {
        self.read(move |view| view.logs_after(run_id, after, max_bytes)).await
    }

    /// A page of a run's events after `after`, undecoded: at most `limit`
    /// events and `max_bytes` of payload (at least one event when there is
    /// one).
    pub async fn raw_events(
        &self,
        run_id: RunId,
        after: Seq,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<RawEvent>, ExecError> {
        self.read(move |view| view.raw_events(run_id, after, limit, max_bytes))
            .await
    }

    /// Runs `read` in a new read transaction: on a read-only connection of
    /// its own (a blocking task, beside the writer), or on the engine thread
    /// for a database in memory.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(ReadView<'_>) -> Result<T, store::Error> + Send + 'static,
    ) -> Result<T, ExecError> {
        let result = match &self.readers {
            Some(readers) => {
                let readers = Arc::clone(readers);
                tokio::task::spawn_blocking(move || readers.read(read))
                    .await
                    .map_err(|_| ExecError::Stopped)?
            }
            None => self.query(move |store| read(store.reader())).await?,
        };
        result.map_err(ExecError::Store)
    }

    /// A receiver that changes whenever events are committed.
    pub fn committed(&self) -> watch::Receiver<Seq> {
        self.committed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::RunSubmitted;

    fn submitted(run_id: RunId) -> RunSubmitted {
        RunSubmitted {
            run_id,
            fab_id: "floret/quickstart".into(),
            fab_version: "1.0.0".into(),
            fab_hash: "00".repeat(32),
            override_config: Default::default(),
            federation: "@none/default".into(),
            federation_options: Default::default(),
            seed: 1,
            build: "floret test".into(),
        }
    }

    /// Submits, claims and activates a run, then appends log lines one by
    /// one: every page read after an acknowledged line sees it.
    async fn every_acknowledged_line_is_read_back(engine: &Handle) {
        let run_id = RunId(3);
        for command in [Command::Submit(submitted(run_id)), Command::Claim, Command::Activate] {
            engine.execute(run_id, command).await.unwrap();
        }
        let mut expected = String::new();
        for line in 0..40 {
            let text = format!("line {line}\n");
            engine.execute(run_id, Command::AppendLog(text.clone())).await.unwrap();
            expected.push_str(&text);
            let chunks = engine.logs_after(run_id, Micros(0), usize::MAX).await.unwrap();
            let read: String = chunks.iter().map(|c| c.text.as_str()).collect();
            assert_eq!(read, expected);
            let last = engine.last_log_at(run_id).await.unwrap();
            assert_eq!(last, chunks.last().map(|c| c.at));
        }
        let events = engine.raw_events(run_id, Seq(0), usize::MAX, usize::MAX).await.unwrap();
        assert_eq!(events.len(), 3 + 40);
        let runs = engine.runs(RunFilter::One(run_id)).await.unwrap();
        assert_eq!(runs.first().map(|r| r.status), Some(Status::Running));
        assert_eq!(engine.run_statuses().await.unwrap(), vec![(run_id, Status::Running)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_read_beside_the_writer_see_every_acknowledged_write() {
        let directory = tempfile::tempdir().unwrap();
        let engine = start(Store::open(&directory.path().join("state.db")).unwrap());
        assert!(engine.readers.is_some());
        every_acknowledged_line_is_read_back(&engine).await;
    }

    /// Pages are read while the engine thread is busy: a stream of pages
    /// never waits for the writer, nor holds it up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_are_read_while_the_engine_thread_is_busy() {
        let directory = tempfile::tempdir().unwrap();
        let engine = start(Store::open(&directory.path().join("state.db")).unwrap());
        let run_id = RunId(5);
        engine
            .execute(run_id, Command::Submit(submitted(run_id)))
            .await
            .unwrap();
        engine
            .execute(run_id, Command::AppendLog("hello\n".into()))
            .await
            .unwrap();
        // Occupy the engine thread until told to go on.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (busy, is_busy) = oneshot::channel();
        let blocked = tokio::spawn({
            let engine = engine.clone();
            async move {
                engine
                    .query(move |_| {
                        let _ = busy.send(());
                        let _ = released.recv();
                    })
                    .await
            }
        });
        is_busy.await.unwrap();
        let deadline = Duration::from_secs(30);
        let read = tokio::time::timeout(deadline, async {
            let logs = engine.logs_after(run_id, Micros(0), usize::MAX).await.unwrap();
            let events = engine.raw_events(run_id, Seq(0), 10, usize::MAX).await.unwrap();
            (logs, events)
        })
        .await
        .expect("pages are read without the engine thread");
        assert_eq!(read.0.len(), 1);
        assert_eq!(read.1.len(), 2);
        release.send(()).unwrap();
        blocked.await.unwrap().unwrap();
    }

    /// Nodes survive a restart: the engine on the reopened file has them
    /// with their statuses, and the online one gets a full heartbeat window
    /// from the restart, so that its next heartbeat keeps it online.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_come_back_after_a_restart_with_a_fresh_heartbeat_window() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.db");
        let engine = start(Store::open(&path).unwrap());
        let mut ids = Vec::new();
        for key in [b"a".to_vec(), b"b".to_vec()] {
            let node_id = engine.register_node(key.clone()).await.unwrap();
            assert!(!RESERVED_NODE_IDS.contains(&node_id));
            let activate = node::Command::Activate {
                public_key: key,
                heartbeat_interval: 30.0,
            };
            assert_eq!(engine.execute_node(activate).await.unwrap(), node_id);
            ids.push(node_id);
        }
        engine
            .execute_node(node::Command::Deactivate { node_id: ids[1] })
            .await
            .unwrap();
        let rejected = engine.register_node(b"a".to_vec()).await.unwrap_err();
        assert!(matches!(
            rejected,
            ExecError::NodeRejected(node::Rejection::PublicKeyInUse)
        ));
        engine.query(|store| store.verify().unwrap()).await.unwrap();
        drop(engine);

        let engine = start(Store::open(&path).unwrap());
        let nodes = engine.nodes().await.unwrap();
        let status = |node_id: u64| {
            let (node, left) = nodes.iter().find(|(node, _)| node.node_id == node_id).unwrap();
            (node.status, left.map(|left| left > Duration::from_secs(55)))
        };
        assert_eq!(status(ids[0]), (NodeStatus::Online, Some(true)));
        assert_eq!(status(ids[1]), (NodeStatus::Offline, None));
        let heartbeat = |node_id: u64| node::Command::Heartbeat {
            node_id,
            heartbeat_interval: 30.0,
        };
        engine.execute_node(heartbeat(ids[0])).await.unwrap();
        // A heartbeat brings the offline node back (Flower's rule).
        engine.execute_node(heartbeat(ids[1])).await.unwrap();
        let events = engine
            .query(|store| store.run_events(NODE_EVENTS_RUN_ID).unwrap())
            .await
            .unwrap();
        let kinds: Vec<&str> = events.iter().map(|stored| stored.event.kind()).collect();
        assert_eq!(
            kinds,
            [
                "NodeRegistered",
                "NodeActivated",
                "NodeRegistered",
                "NodeActivated",
                "NodeDeactivated",
                "NodeActivated"
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_in_memory_is_read_on_the_engine_thread() {
        let engine = start(Store::open_in_memory().unwrap());
        assert!(engine.readers.is_none());
        every_acknowledged_line_is_read_back(&engine).await;
    }
}
