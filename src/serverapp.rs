//! `flwr-serverapp`: the ServerApp process of a deployment run, where the
//! ClientApps run on real SuperNodes.
//!
//! It follows Flower 1.27's `flwr-serverapp` over the ServerAppIo API: find a
//! run among the apps to launch and claim it (`RequestToken`), pull its
//! inputs and FAB, heartbeat, push logs, and at the end push outputs and the
//! final status. In between it runs floret's built-in ServerApp
//! (`floret:serverapp`, any strategy) through a [`Driver`] whose messages go
//! to the SuperNodes the SuperLink knows: `GetNodes`, `PushMessages` plus
//! `PushObject` for the contents (Flower's content-addressed objects,
//! [`crate::objects`]), then `PullMessages`, `PullObject` and
//! `ConfirmMessageReceived` for the replies. The model it starts from comes
//! from the app's `initial-arrays` function, called in the run's Python
//! interpreter (the app is installed as for a simulation).
//!
//! A Python ServerApp is Flower's to run (its own `flwr-serverapp`); this
//! process refuses one with a message saying so.
//!
//! It never decides anything about the run: the strategy loop does; all
//! network I/O of the ServerApp happens here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::bridge::{self, run::PythonRun};
use crate::domain::event::{Event, Outcome, Phase, SubStatus};
use crate::flwr_log::{format_line, Entry, Level, Logger};
use crate::objects;
use crate::prng::Prng;
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::proto::{self};
use crate::records::{error_code, ConfigRecord, Error, Message, Scalar, SUPERLINK_NODE_ID};
use crate::sim::Inputs;
use crate::strategy::start::{Driver, Interrupt, StartError};
use crate::strategy::Grid;

type Io = pb::server_app_io_client::ServerAppIoClient<Channel>;
/// floret's SimulationEvents beside ServerAppIo: served by floret's
/// SuperLink (the run's events, a prompt stop), not by Flower's.
type Events = ext::simulation_events_client::SimulationEventsClient<Channel>;

/// How often the process proves it is alive.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often buffered log lines are pushed.
const LOG_UPLOAD_INTERVAL: Duration = Duration::from_millis(100);
/// Log text per PushLogs request, at most.
const LOG_BYTES_PER_PUSH: usize = 1024 * 1024;
/// How often the SuperLink is asked for replies (Flower's grid: every 3 s).
const PULL_INTERVAL: Duration = Duration::from_millis(200);
/// How often an unclaimed SuperLink is asked for a run to launch.
const LAUNCH_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The most bytes one reply may inflate to (its arrays and records).
const REPLY_BYTES_MAX: usize = 1 << 30;
/// The largest message the ServerAppIo client takes or sends.
const MESSAGE_MAX: usize = 512 * 1024 * 1024;
/// How long a phase waits for its replies when the run configuration does
/// not say (`round-timeout`, seconds; Flower's strategies: 3600).
const DEFAULT_ROUND_TIMEOUT: f64 = 3600.0;
/// How long the ServerApp waits for `min-available-nodes` SuperNodes.
const NODES_PATIENCE: Duration = Duration::from_secs(600);

/// Command-line arguments, in Flower's spelling.
#[derive(Clone, Debug)]
pub struct Args {
    pub serverappio_address: String,
    pub token: Option<String>,
    pub run_id: Option<u64>,
    pub parent_pid: Option<u32>,
    /// Exit after one run (else keep launching runs).
    pub run_once: bool,
}

/// Why the process could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ServerAppError {
    #[error("cannot connect to the ServerAppIo API at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the SuperLink refused a call: {}", .0.message())]
    Status(#[from] tonic::Status),
    #[error("the ServerApp thread ended abnormally: {0}")]
    Thread(#[from] tokio::task::JoinError),
}

/// Why a run failed in this process (its text is the run's status details).
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("the SuperLink sent no {0} with the run's inputs")]
    MissingInput(&'static str),
    #[error(transparent)]
    Proto(#[from] proto::Error),
    #[error(transparent)]
    Builtin(#[from] crate::builtin::BuiltinError),
    #[error(transparent)]
    Fab(#[from] crate::fab::FabError),
    #[error(transparent)]
    Python(#[from] bridge::python::Error),
    #[error(transparent)]
    Bridge(#[from] bridge::Error),
    #[error(
        "floret's flwr-serverapp runs the built-in ServerApp `floret:serverapp` only; the ServerApp `{0}` is Python \
         code, which Flower's own flwr-serverapp runs"
    )]
    PythonServerApp(String),
    #[error(
        "the ClientApp `{0}` is built into floret, and SuperNodes run Python ClientApps: name your app's ClientApp in \
         [tool.flwr.app.components]"
    )]
    BuiltinClientApp(String),
    #[error("{call} failed: {}", .status.message())]
    Call {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
    #[error("the SuperLink asked for object {0}, which no message has")]
    UnknownObject(String),
    #[error(
        "{connected} SuperNodes connected, and the run needs {minimum} (min-available-nodes): none more came in \
         {seconds} s"
    )]
    TooFewNodes {
        connected: usize,
        minimum: usize,
        seconds: u64,
    },
    #[error("{}", crate::domain::run::STOPPED_BY_USER)]
    Stopped,
}

/// A failed call, named.
fn call(call: &'static str) -> impl FnOnce(tonic::Status) -> RunError {
    move |status| RunError::Call { call, status }
}

/// Runs runs until there is nothing more to do (`run_once`: one run).
pub async fn run(args: Args) -> Result<i32, ServerAppError> {
    let address = format!("http://{}", args.serverappio_address);
    let channel = connect(&address)
        .await
        .map_err(|source| ServerAppError::Connect { address, source })?;
    let events = Events::new(channel.clone()).max_encoding_message_size(MESSAGE_MAX);
    let io = Io::new(channel)
        .max_decoding_message_size(MESSAGE_MAX)
        .max_encoding_message_size(MESSAGE_MAX);
    if let Some(parent) = args.parent_pid {
        tokio::spawn(watch_parent(parent));
    }
    let mut code = 0;
    loop {
        let claimed = match (&args.token, args.run_id) {
            (Some(token), Some(run_id)) => Some((run_id, token.clone())),
            _ => claim_run(&io, args.run_id).await?,
        };
        match claimed {
            Some((run_id, token)) => {
                code = run_one(&io, &events, run_id, &token).await?;
                if args.run_once || args.token.is_some() {
                    return Ok(code);
                }
            }
            None => tokio::time::sleep(LAUNCH_POLL_INTERVAL).await,
        }
        if args.token.is_some() {
            return Ok(code);
        }
    }
}

/// A pending run and its token, or `None` when there is none to claim now.
async fn claim_run(io: &Io, wanted: Option<u64>) -> Result<Option<(u64, String)>, ServerAppError> {
    let pending = io
        .clone()
        .list_apps_to_launch(pb::ListAppsToLaunchRequest {})
        .await?
        .into_inner()
        .run_ids;
    let Some(run_id) = wanted
        .filter(|id| pending.contains(id))
        .or_else(|| pending.first().copied())
    else {
        return Ok(None);
    };
    let token = io
        .clone()
        .request_token(pb::RequestTokenRequest { run_id })
        .await?
        .into_inner()
        .token;
    Ok((!token.is_empty()).then_some((run_id, token)))
}

/// One run from its inputs to its final status; the process's exit code.
async fn run_one(io: &Io, events: &Events, run_id: u64, token: &str) -> Result<i32, ServerAppError> {
    let color = std::env::var_os("NO_COLOR").is_none();
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(io.clone(), token.to_string(), Arc::clone(&stop)));
    let stop_watch = tokio::spawn(await_stop(events.clone(), run_id, token.to_string(), Arc::clone(&stop)));
    let (logs, receiver) = std::sync::mpsc::channel::<String>();
    let uploader = std::thread::spawn({
        let io = io.clone();
        let runtime = tokio::runtime::Handle::current();
        let token = token.to_string();
        move || upload_logs(io, runtime, run_id, &token, receiver)
    });
    let inputs = io
        .clone()
        .pull_app_inputs(pb::PullAppInputsRequest {
            token: token.to_string(),
        })
        .await?
        .into_inner();
    let context = inputs.context.clone();
    let outcome = {
        let io = io.clone();
        let logs = logs.clone();
        let stop = Arc::clone(&stop);
        let runtime = tokio::runtime::Handle::current();
        let recorder = Recorder {
            events: events.clone(),
            token: token.to_string(),
            pending: Vec::new(),
            supported: true,
        };
        tokio::task::spawn_blocking(move || execute(&inputs, io, recorder, runtime, stop, logs, color)).await?
    };
    let (sub_status, details) = match &outcome {
        Outcome::Completed => (SubStatus::Completed, String::new()),
        Outcome::Stopped => {
            let _ = logs.send(format_line(Level::Info, crate::domain::run::STOPPED_BY_USER, color));
            (SubStatus::Stopped, crate::domain::run::STOPPED_BY_USER.to_string())
        }
        Outcome::Failed { reason } => {
            let _ = logs.send(format_line(Level::Error, &format!("Run failed: {reason}"), color));
            (SubStatus::Failed, reason.clone())
        }
    };
    drop(logs);
    let _ = uploader.join();
    heartbeat.abort();
    stop_watch.abort();
    let pushed = io
        .clone()
        .push_app_outputs(pb::PushAppOutputsRequest {
            token: token.to_string(),
            run_id,
            context,
        })
        .await;
    if let Err(status) = pushed {
        tracing::warn!(
            run_id,
            "the SuperLink did not take the run's outputs: {}",
            status.message()
        );
    }
    let status = pb::RunStatus {
        status: "finished".into(),
        sub_status: sub_status.as_str().into(),
        details,
    };
    let request = crate::wire::with_app_token(
        pb::UpdateRunStatusRequest {
            run_id,
            run_status: Some(status),
        },
        token,
    );
    if let Err(status) = io.clone().update_run_status(request).await {
        tracing::warn!(
            run_id,
            "the SuperLink did not take the final status: {}",
            status.message()
        );
    }
    Ok(i32::from(matches!(outcome, Outcome::Failed { .. })))
}

/// The ServerApp of the run, on the current (blocking) thread.
fn execute(
    inputs: &pb::PullAppInputsResponse,
    io: Io,
    recorder: Recorder,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    logs: Sender<String>,
    color: bool,
) -> Outcome {
    let mut log = Logger::new();
    let outcome =
        serve(inputs, io, recorder, runtime, stop, &logs, color, &mut log).unwrap_or_else(|error| match error {
            RunError::Stopped => Outcome::Stopped,
            error => Outcome::Failed {
                reason: error.to_string(),
            },
        });
    forward(&mut log, &logs, color);
    outcome
}

#[allow(clippy::too_many_arguments)]
fn serve(
    inputs: &pb::PullAppInputsResponse,
    io: Io,
    recorder: Recorder,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    logs: &Sender<String>,
    color: bool,
    log: &mut Logger,
) -> Result<Outcome, RunError> {
    let (inputs, python) = prepare(inputs)?;
    let initial = bridge::run::initial_arrays(&inputs, &python)?;
    let mut server = crate::builtin::server_for_client(&inputs, initial, log)?;
    forward(log, logs, color);
    let mut driver = GridDriver::connect(&inputs, io, recorder, runtime, stop, logs.clone(), color)?;
    Ok(match server.run(&mut driver, log) {
        Ok(_) => Outcome::Completed,
        Err(incomplete) => match incomplete.error {
            StartError::Interrupted(Interrupt::Stopped { .. }) => Outcome::Stopped,
            StartError::Interrupted(Interrupt::Failed(reason)) => Outcome::Failed { reason },
            StartError::Strategy(error) => Outcome::Failed {
                reason: error.to_string(),
            },
        },
    })
}

/// The run's inputs for the built-in ServerApp, and what its Python
/// interpreter needs; or why it cannot run here.
fn prepare(inputs: &pb::PullAppInputsResponse) -> Result<(Inputs, PythonRun), RunError> {
    let run = inputs.run.as_ref().ok_or(RunError::MissingInput("run"))?;
    let fab = inputs.fab.as_ref().ok_or(RunError::MissingInput("FAB"))?;
    let overrides = proto::user_config_from_proto(&run.override_config)?;
    let options = ConfigRecord::new();
    let resolved = crate::builtin::resolve_inputs(run.run_id, 0, &fab.content, &fab.hash_str, &overrides, &options)?;
    let seed = crate::builtin::seed_from_config(&resolved.run_config).unwrap_or(run.run_id);
    let inputs = Inputs { seed, ..resolved };
    if bridge::is_python(&inputs.server_app) {
        return Err(RunError::PythonServerApp(inputs.server_app));
    }
    if !bridge::is_python(&inputs.client_app) {
        return Err(RunError::BuiltinClientApp(inputs.client_app));
    }
    let verified = crate::fab::verify_fab(&fab.content, &fab.hash_str)?;
    let python = PythonRun {
        fab: fab.content.clone(),
        fab_id: verified.app.fab_id(),
        fab_version: verified.app.version.clone(),
        fab_hash: crate::fab::sha256_hex(&fab.content),
        overrides,
        app_config: verified.app.config.clone(),
        federation_options: options.clone(),
        interpreter: bridge::run::interpreter_for(&options)?,
        flwr_home: crate::host::flwr_home(),
        anchor: bridge::server::ANCHOR_DEFAULT,
        workers: 1,
    };
    Ok((inputs, python))
}

/// Sends the logger's entries to the log uploader.
fn forward(log: &mut Logger, logs: &Sender<String>, color: bool) {
    for entry in log.drain() {
        let text = match entry {
            Entry::Line(level, line) => format_line(level, &line, color),
            Entry::Output(text) => text,
        };
        let _ = logs.send(text);
    }
}

/// The strategy loop's runtime in a deployment: its nodes are the
/// SuperNodes the SuperLink reports, its messages travel through the
/// ServerAppIo API.
struct GridDriver {
    io: Io,
    runtime: tokio::runtime::Handle,
    run_id: u64,
    seed: u64,
    /// The connected nodes, sorted.
    nodes: Vec<u64>,
    stop: Arc<AtomicBool>,
    logs: Sender<String>,
    color: bool,
    started: Instant,
    round_timeout: Duration,
    recorder: Recorder,
    /// Replies pulled whose objects are still arriving, by the message
    /// they answer.
    partial: BTreeMap<String, Partial>,
}

impl GridDriver {
    /// A driver for the run, once `min-available-nodes` SuperNodes (default
    /// 2) are connected.
    fn connect(
        inputs: &Inputs,
        io: Io,
        recorder: Recorder,
        runtime: tokio::runtime::Handle,
        stop: Arc<AtomicBool>,
        logs: Sender<String>,
        color: bool,
    ) -> Result<GridDriver, RunError> {
        let number = |key: &str| match inputs.run_config.get(key) {
            Some(Scalar::Int(i)) => Some(*i as f64),
            Some(Scalar::Float(f)) => Some(*f),
            _ => None,
        };
        let minimum = number("min-available-nodes").map_or(2, |n| n.max(0.0) as usize);
        let round_timeout = number("round-timeout").unwrap_or(DEFAULT_ROUND_TIMEOUT).max(0.0);
        let mut driver = GridDriver {
            io,
            runtime,
            run_id: inputs.run_id,
            seed: inputs.seed,
            nodes: Vec::new(),
            stop,
            logs,
            color,
            started: Instant::now(),
            round_timeout: Duration::from_secs_f64(round_timeout),
            recorder,
            partial: BTreeMap::new(),
        };
        let deadline = Instant::now() + NODES_PATIENCE;
        let mut said = false;
        loop {
            driver.refresh_nodes()?;
            if driver.nodes.len() >= minimum {
                return Ok(driver);
            }
            if driver.stop.load(Ordering::Relaxed) {
                return Err(RunError::Stopped);
            }
            if Instant::now() >= deadline {
                return Err(RunError::TooFewNodes {
                    connected: driver.nodes.len(),
                    minimum,
                    seconds: NODES_PATIENCE.as_secs(),
                });
            }
            if !said {
                driver.say(
                    Level::Info,
                    &format!(
                        "Waiting for nodes to connect: {} connected (minimum required: {minimum}).",
                        driver.nodes.len()
                    ),
                );
                said = true;
            }
            std::thread::sleep(PULL_INTERVAL);
        }
    }

    /// Pushes the events the strategy recorded since the last push.
    fn flush_events(&mut self) {
        let (run_id, runtime) = (self.run_id, self.runtime.clone());
        if self.recorder.flush(run_id, &runtime) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn say(&self, level: Level, line: &str) {
        let _ = self.logs.send(format_line(level, line, self.color));
    }

    /// The SuperNodes connected now (`GetNodes`).
    fn refresh_nodes(&mut self) -> Result<(), RunError> {
        let mut io = self.io.clone();
        let request = pb::GetNodesRequest { run_id: self.run_id };
        let nodes = self
            .runtime
            .block_on(async move { io.get_nodes(request).await })
            .map_err(call("GetNodes"))?
            .into_inner()
            .nodes;
        let mut ids: Vec<u64> = nodes.into_iter().map(|node| node.node_id).collect();
        ids.sort_unstable();
        ids.dedup();
        self.nodes = ids;
        Ok(())
    }

    fn forward(&self, log: &mut Logger) {
        forward(log, &self.logs, self.color);
    }

    fn node() -> Option<pb::Node> {
        Some(pb::Node {
            node_id: SUPERLINK_NODE_ID,
        })
    }

    /// Pushes the messages and their objects; their ids, in order.
    fn push(&self, messages: &[Message]) -> Result<Vec<String>, RunError> {
        let mut envelopes = Vec::with_capacity(messages.len());
        let mut trees = Vec::with_capacity(messages.len());
        let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut ids = Vec::with_capacity(messages.len());
        for message in messages {
            let deflated = objects::deflate(message);
            let id = deflated.message_id().to_string();
            envelopes.push(objects::envelope(message, &id));
            trees.push(deflated.tree.clone());
            for object in deflated.objects {
                contents.entry(object.id).or_insert(object.content);
            }
            ids.push(id);
        }
        let request = pb::PushAppMessagesRequest {
            token: String::new(),
            messages_list: envelopes,
            run_id: self.run_id,
            message_object_trees: trees,
        };
        let mut io = self.io.clone();
        let pushed = self
            .runtime
            .block_on(async move { io.push_messages(request).await })
            .map_err(call("PushMessages"))?
            .into_inner();
        for object_id in pushed.objects_to_push.iter().collect::<BTreeSet<_>>() {
            let Some(content) = contents.get(object_id) else {
                return Err(RunError::UnknownObject(object_id.clone()));
            };
            let request = pb::PushObjectRequest {
                node: Self::node(),
                run_id: self.run_id,
                object_id: object_id.clone(),
                object_content: content.clone(),
            };
            let mut io = self.io.clone();
            self.runtime
                .block_on(async move { io.push_object(request).await })
                .map_err(call("PushObject"))?;
        }
        Ok(ids)
    }

    /// The replies complete now to the messages `pending`, by the id of the
    /// message they answer. A reply whose objects have not all arrived
    /// (its SuperNode may still be pushing them, or have died doing so) is
    /// kept and its objects asked for again at the next pull: the SuperLink
    /// hands a reply out once. One whose objects the SuperLink no longer has
    /// is dropped, and its message counts as unanswered.
    fn pull(&mut self, pending: &BTreeSet<String>) -> Result<BTreeMap<String, Message>, RunError> {
        let request = pb::PullAppMessagesRequest {
            token: String::new(),
            message_ids: pending
                .iter()
                .filter(|id| !self.partial.contains_key(*id))
                .cloned()
                .collect(),
            run_id: self.run_id,
        };
        let mut io = self.io.clone();
        let pulled = self
            .runtime
            .block_on(async move { io.pull_messages(request).await })
            .map_err(call("PullMessages"))?
            .into_inner();
        for (envelope, tree) in pulled.messages_list.into_iter().zip(pulled.message_object_trees) {
            let Some(metadata) = envelope.metadata else {
                continue;
            };
            self.partial.insert(
                metadata.reply_to_message_id.clone(),
                Partial {
                    reply_id: metadata.message_id,
                    tree,
                    objects: BTreeMap::new(),
                },
            );
        }
        let mut replies = BTreeMap::new();
        let answering: Vec<String> = self.partial.keys().cloned().collect();
        for to in answering {
            let partial = self.partial.get_mut(&to).expect("listed");
            let mut lost = false;
            for object_id in objects::tree_object_ids(&partial.tree) {
                if partial.objects.contains_key(&object_id) {
                    continue;
                }
                match pull_object(&self.io, &self.runtime, self.run_id, &object_id)? {
                    Pulled::Content(content) => {
                        partial.objects.insert(object_id, content);
                    }
                    Pulled::NotYet => {}
                    Pulled::Gone => lost = true,
                }
            }
            if lost {
                tracing::warn!(reply_to = %to, "a reply's objects are gone from the SuperLink; the message counts as unanswered");
                self.partial.remove(&to);
                continue;
            }
            if partial.objects.len() < objects::tree_object_ids(&partial.tree).len() {
                continue;
            }
            let partial = self.partial.remove(&to).expect("listed");
            let reply = match objects::inflate(&partial.tree, &partial.objects, REPLY_BYTES_MAX) {
                Ok(reply) => reply,
                Err(error) => {
                    // A SuperNode's bad reply is that node's failure, not the run's.
                    tracing::warn!(reply_to = %to, %error, "a reply cannot be read; the message counts as unanswered");
                    continue;
                }
            };
            let request = pb::ConfirmMessageReceivedRequest {
                node: Self::node(),
                run_id: self.run_id,
                message_object_id: partial.reply_id,
            };
            let mut io = self.io.clone();
            self.runtime
                .block_on(async move { io.confirm_message_received(request).await })
                .map_err(call("ConfirmMessageReceived"))?;
            replies.insert(to, reply);
        }
        Ok(replies)
    }
}

/// A reply pulled whose objects are still arriving.
struct Partial {
    reply_id: String,
    tree: pb::ObjectTree,
    objects: BTreeMap<String, Vec<u8>>,
}

/// What PullObject gave.
enum Pulled {
    Content(Vec<u8>),
    /// Registered, its bytes not pushed yet.
    NotYet,
    /// Not (or no longer) in the SuperLink.
    Gone,
}

/// One object of a reply (`node_id` 1, the SuperLink's, as Flower's grid).
fn pull_object(io: &Io, runtime: &tokio::runtime::Handle, run_id: u64, object_id: &str) -> Result<Pulled, RunError> {
    let request = pb::PullObjectRequest {
        node: GridDriver::node(),
        run_id,
        object_id: object_id.to_string(),
    };
    let mut io = io.clone();
    let pulled = runtime
        .block_on(async move { io.pull_object(request).await })
        .map_err(call("PullObject"))?
        .into_inner();
    Ok(match (pulled.object_found, pulled.object_available) {
        (true, true) => Pulled::Content(pulled.object_content),
        (true, false) => Pulled::NotYet,
        (false, _) => Pulled::Gone,
    })
}

impl Grid for GridDriver {
    fn run_id(&self) -> u64 {
        self.run_id
    }

    fn node_ids(&self) -> &[u64] {
        &self.nodes
    }

    fn prng(&self, path: &[u64]) -> Prng {
        Prng::stream(self.seed, path)
    }
}

impl Driver for GridDriver {
    fn send_and_receive(
        &mut self,
        round: u64,
        phase: Phase,
        mut messages: Vec<Message>,
        log: &mut Logger,
    ) -> Result<Vec<Message>, Interrupt> {
        self.forward(log);
        self.flush_events();
        let before = format!("{} replies", phase.as_str());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        for message in &mut messages {
            message.metadata.run_id = self.run_id;
            message.metadata.src_node_id = SUPERLINK_NODE_ID;
            message.metadata.group_id = round.to_string();
            message.metadata.created_at = now;
        }
        let ids = self.push(&messages).map_err(|e| Interrupt::Failed(e.to_string()))?;
        for (message, id) in messages.iter_mut().zip(&ids) {
            message.metadata.message_id = id.clone();
        }
        let mut pending: BTreeSet<String> = ids.iter().cloned().collect();
        let mut replies: BTreeMap<String, Message> = BTreeMap::new();
        let deadline = Instant::now() + self.round_timeout;
        while !pending.is_empty() {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Interrupt::Stopped { round, before });
            }
            for (to, reply) in self.pull(&pending).map_err(|e| Interrupt::Failed(e.to_string()))? {
                if pending.remove(&to) {
                    replies.insert(to, reply);
                }
            }
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(PULL_INTERVAL);
        }
        // Replies still arriving when the phase ends are not waited for.
        self.partial.retain(|to, _| !pending.contains(to));
        let timeout = self.round_timeout.as_secs_f64();
        Ok(messages
            .iter()
            .map(|message| match replies.remove(&message.metadata.message_id) {
                Some(reply) => reply,
                None => Message::reply(
                    message,
                    Err(Error {
                        code: error_code::REPLY_MESSAGE_UNAVAILABLE,
                        reason: format!(
                            "node {} sent no reply within {timeout} s (round-timeout)",
                            message.metadata.dst_node_id
                        ),
                    }),
                ),
            })
            .collect())
    }

    fn record(&mut self, event: Event) {
        self.recorder.pending.push(event);
    }

    fn checkpoint(&mut self, round: u64, before: &str, log: &mut Logger) -> Result<(), Interrupt> {
        self.forward(log);
        self.flush_events();
        if self.stop.load(Ordering::Relaxed) {
            return Err(Interrupt::Stopped {
                round,
                before: before.to_string(),
            });
        }
        // Nodes that joined or left since the last step are seen by the next
        // sampling.
        self.refresh_nodes().map_err(|e| Interrupt::Failed(e.to_string()))
    }

    fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for GridDriver {
    /// The last events (the end of the run) are recorded too.
    fn drop(&mut self) {
        self.flush_events();
    }
}

/// What the strategy loop records (rounds, sampled nodes, replies,
/// aggregates, the end), pushed to floret's SuperLink as the run's events;
/// Flower's SuperLink has no place for them (`UNIMPLEMENTED`), and they are
/// dropped.
struct Recorder {
    events: Events,
    token: String,
    pending: Vec<Event>,
    supported: bool,
}

impl Recorder {
    /// Pushes the pending events; whether the SuperLink asks the run to stop.
    fn flush(&mut self, run_id: u64, runtime: &tokio::runtime::Handle) -> bool {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() || !self.supported {
            return false;
        }
        let request = ext::PushEventsRequest {
            token: self.token.clone(),
            run_id,
            events: pending
                .iter()
                .map(|event| {
                    let (kind, version, payload) = crate::codec::encode(event);
                    ext::SimEvent {
                        kind: kind.into(),
                        version,
                        payload,
                    }
                })
                .collect(),
            usage: None,
        };
        let mut events = self.events.clone();
        match runtime.block_on(async move { events.push_events(request).await }) {
            Ok(response) => response.get_ref().stop_requested,
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                self.supported = false;
                false
            }
            Err(status) => {
                tracing::warn!("the SuperLink did not take the run's events: {}", status.message());
                false
            }
        }
    }
}

/// Sets `stop` as soon as the SuperLink says the run is to stop (floret's
/// SuperLink answers AwaitStop then; Flower's does not serve it, and the
/// heartbeat tells instead).
async fn await_stop(mut events: Events, run_id: u64, token: String, stop: Arc<AtomicBool>) {
    loop {
        let request = ext::AwaitStopRequest {
            token: token.clone(),
            run_id,
        };
        match events.await_stop(request).await {
            Ok(_) => {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => return,
            Err(status) if status.code() == tonic::Code::PermissionDenied => return,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn connect(address: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Channel::from_shared(address.to_string())
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut attempt = 0;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(error) if attempt >= 20 => return Err(error),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Heartbeats until aborted; a refused one (the run was stopped) sets `stop`.
async fn heartbeat(mut io: Io, token: String, stop: Arc<AtomicBool>) {
    let mut interval = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        interval.tick().await;
        match io
            .send_app_heartbeat(pb::SendAppHeartbeatRequest { token: token.clone() })
            .await
        {
            Ok(response) if !response.get_ref().success => stop.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(status) => tracing::warn!("heartbeat failed: {}", status.message()),
        }
    }
}

/// Exits when the parent (the SuperLink) is gone, as Flower's `--parent-pid`.
async fn watch_parent(pid: u32) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid as i32, 0) } != 0 {
            tracing::error!(pid, "the parent process is gone; exiting");
            std::process::exit(1);
        }
    }
}

/// Pushes buffered log text every `LOG_UPLOAD_INTERVAL` until the sender is
/// dropped, then the rest.
fn upload_logs(
    io: Io,
    runtime: tokio::runtime::Handle,
    run_id: u64,
    token: &str,
    receiver: std::sync::mpsc::Receiver<String>,
) {
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        let deadline = Instant::now() + LOG_UPLOAD_INTERVAL;
        loop {
            match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => batch.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        for logs in crate::flwr_log::batches(batch, LOG_BYTES_PER_PUSH) {
            // floret's SuperLink takes a run's logs only with its token.
            let request = crate::wire::with_app_token(
                pb::PushLogsRequest {
                    node: Some(pb::Node { node_id: 0 }),
                    run_id,
                    logs,
                },
                token,
            );
            let mut io = io.clone();
            if let Err(status) = runtime.block_on(async move { io.push_logs(request).await }) {
                tracing::warn!("cannot push logs: {}", status.message());
            }
        }
    }
}
