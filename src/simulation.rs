//! `flwr-simulation`: the app process of one run.
//!
//! It follows Flower 1.27's sequence over the SimulationIo API: find the run
//! among the apps to launch, claim it (`RequestToken`), pull its inputs and
//! FAB, read the federation options, heartbeat, push logs, and at the end
//! push outputs and the final status (logs and status with the run's token
//! in gRPC metadata, which Flower's messages have no field for). In between it runs the deterministic
//! engine (`sim::simulate`) and streams every simulation event to the
//! SuperLink through `floret.v1.SimulationEvents/PushEvents`, with the
//! traffic and ClientApp time measured so far (what `flwr ls` shows); the
//! answer to each push says whether a stop was requested, so a stop is
//! noticed at the next step.
//!
//! This module is the imperative shell around the engine: all network I/O of
//! a run happens here.
//!
//! It never decides anything about the run: the engine does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use crate::bridge::{self, run::PythonRun};
use crate::codec;
use crate::domain::event::{Event, Outcome, Phase, SubStatus, Usage};
use crate::flwr_log::{format_line, Level, Logger};
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::proto::FLORET_STATE_KEY;
use crate::proto::{self};
use crate::records::{ConfigRecord, ConfigValue, Error};
use crate::sim::{self, Inputs, Sink};
use crate::wire as access;
use crate::wire::STORE_FULL_METADATA;

/// How often the process proves it is alive (Flower: every ~20 s).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often buffered log lines are pushed (Flower: 0.2 s).
const LOG_UPLOAD_INTERVAL: Duration = Duration::from_millis(100);
/// Events buffered before a push even between steps.
const EVENTS_PER_PUSH: usize = 4096;
/// Event bytes buffered before a push (the SuperLink takes at most 32 MiB).
const EVENT_BYTES_PER_PUSH: usize = 8 * 1024 * 1024;
/// Log text per PushLogs request, at most (the SuperLink takes 16 MiB).
const LOG_BYTES_PER_PUSH: usize = 1024 * 1024;
/// How long a call the SuperLink could not record because its disk is full is
/// retried before the process gives up (its run then fails, once recorded).
const STORE_FULL_PATIENCE: Duration = Duration::from_secs(300);

/// Command-line arguments, in Flower's spelling where Flower has one.
#[derive(Clone, Debug)]
pub struct Args {
    pub simulationio_address: String,
    pub run_id: Option<u64>,
    pub token: Option<String>,
    pub parent_pid: Option<u32>,
    /// Faults to inject, `round:phase:node_id` separated by commas (chaos
    /// testing; recorded as injected failures and re-injected on replay).
    pub faults: Vec<(u64, Phase, u64)>,
}

/// Errors of this module: why the process could not run its simulation,
/// or (those the run's inputs cause) why the run fails before it starts.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("cannot reach the SuperLink's SimulationIo API at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("{0}")]
    Rpc(#[from] tonic::Status),
    #[error("the simulation thread failed: {0}")]
    Thread(tokio::task::JoinError),
    #[error("fault {0:?} is not round:phase:node_id")]
    FaultForm(String),
    #[error("fault {0:?}: phase must be train or evaluate")]
    FaultPhase(String),
    #[error("fault {0:?}: bad round")]
    FaultRound(String),
    #[error("fault {0:?}: bad node id")]
    FaultNode(String),
    #[error("the SuperLink sent no run")]
    NoRun,
    #[error("the SuperLink sent no FAB")]
    NoFab,
    #[error("the SuperLink sent no context")]
    NoContext,
    #[error("invalid seed {0:?} in the run's context")]
    Seed(String),
    #[error(transparent)]
    Proto(#[from] proto::Error),
    #[error(transparent)]
    Inputs(#[from] crate::builtin::BuiltinError),
    #[error(transparent)]
    Fab(#[from] crate::fab::FabError),
    #[error(transparent)]
    Python(#[from] bridge::python::Error),
}

/// Parses `round:phase:node_id,...`.
pub fn parse_faults(text: &str) -> Result<Vec<(u64, Phase, u64)>, SimulationError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|fault| {
            let parts: Vec<&str> = fault.split(':').collect();
            let [round, phase, node] = parts[..] else {
                return Err(SimulationError::FaultForm(fault.to_string()));
            };
            let phase = match phase {
                "train" => Phase::Train,
                "evaluate" => Phase::Evaluate,
                _ => return Err(SimulationError::FaultPhase(fault.to_string())),
            };
            let round = round
                .parse()
                .map_err(|_| SimulationError::FaultRound(fault.to_string()))?;
            let node = node
                .parse()
                .map_err(|_| SimulationError::FaultNode(fault.to_string()))?;
            Ok((round, phase, node))
        })
        .collect()
}

/// The seed the SuperLink recorded, from the ServerApp context's state;
/// `None` from a SuperLink that is not floret's.
fn seed_from_context(context: &pb::Context) -> Result<Option<u64>, SimulationError> {
    let state = context
        .state
        .as_ref()
        .map(proto::record_dict_from_proto)
        .transpose()?
        .unwrap_or_default();
    match state.config(FLORET_STATE_KEY).and_then(|c| c.get("seed")) {
        Some(ConfigValue::Str(seed)) => seed.parse().map(Some).map_err(|_| SimulationError::Seed(seed.clone())),
        _ => Ok(None),
    }
}

/// Streams events to the SuperLink and brings back stop requests.
struct LiveSink {
    runtime: tokio::runtime::Handle,
    events: ext::simulation_events_client::SimulationEventsClient<Channel>,
    token: String,
    run_id: u64,
    pending: Vec<ext::SimEvent>,
    pending_bytes: usize,
    stop: Arc<AtomicBool>,
    logs: std::sync::mpsc::Sender<String>,
    color: bool,
    faults: Vec<(u64, Phase, u64)>,
    /// The first push that failed; the run cannot be recorded any more.
    broken: Option<String>,
    /// The SuperLink has no SimulationEvents API (a Python Flower
    /// SuperLink): events are not recorded, the run goes on.
    events_unsupported: bool,
    /// The latest usage the engine reported, and the last one pushed.
    usage: Option<Usage>,
    pushed_usage: Option<Usage>,
}

impl LiveSink {
    fn flush(&mut self) {
        self.pending_bytes = 0;
        let usage_changed = self.usage != self.pushed_usage;
        if (self.pending.is_empty() && !usage_changed) || self.broken.is_some() || self.events_unsupported {
            self.pending.clear();
            return;
        }
        let usage = self.usage.clone().filter(|_| usage_changed);
        let request = ext::PushEventsRequest {
            token: self.token.clone(),
            run_id: self.run_id,
            events: std::mem::take(&mut self.pending),
            usage: usage.as_ref().map(|u| ext::Usage {
                bytes_sent: u.bytes_sent,
                bytes_recv: u.bytes_recv,
                clientapp_runtime: u.clientapp_runtime,
            }),
        };
        if usage.is_some() {
            self.pushed_usage = usage;
        }
        let client = &self.events;
        let pushed = self.runtime.block_on(retry_while_full("push the run's events", || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.push_events(request).await }
        }));
        match pushed {
            Ok(response) => {
                if response.into_inner().stop_requested {
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                self.events_unsupported = true;
                let warning = "This SuperLink does not record simulation events (it is not floret's); the run \
                               cannot be replayed.";
                let _ = self.logs.send(format_line(Level::Warning, warning, self.color));
            }
            Err(status) => {
                self.broken = Some(format!("the SuperLink refused the run's events: {}", status.message()));
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Sink for LiveSink {
    fn event(&mut self, event: Event) {
        let (kind, version, payload) = codec::encode(&event);
        self.pending_bytes += payload.len();
        self.pending.push(ext::SimEvent {
            kind: kind.to_string(),
            version,
            payload,
        });
        if self.pending.len() >= EVENTS_PER_PUSH || self.pending_bytes >= EVENT_BYTES_PER_PUSH {
            self.flush();
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        let _ = self.logs.send(format_line(level, line, self.color));
    }

    fn output(&mut self, text: &str) {
        let _ = self.logs.send(text.to_string());
    }

    fn should_stop(&mut self, _round: u64, _before: &str) -> bool {
        self.flush();
        self.stop.load(Ordering::Relaxed)
    }

    fn stop_flag(&self) -> Option<Arc<AtomicBool>> {
        Some(Arc::clone(&self.stop))
    }

    fn usage(&mut self, usage: &Usage) {
        self.usage = Some(usage.clone());
    }

    fn injected_fault(&mut self, round: u64, phase: Phase, node_id: u64) -> Option<Error> {
        self.faults.contains(&(round, phase, node_id)).then(|| Error {
            code: crate::records::error_code::CLIENT_APP_CRASHED,
            reason: format!(
                "node {node_id} crashed (fault injected in round {round}, {})",
                phase.as_str()
            ),
        })
    }
}

type SimulationIoClient = pb::simulation_io_client::SimulationIoClient<Channel>;
type EventsClient = ext::simulation_events_client::SimulationEventsClient<Channel>;

/// Runs the app process; returns the exit code.
pub async fn run(args: Args) -> Result<i32, SimulationError> {
    let (simio, events) = connect_clients(&args).await?;
    let Some((run_id, token)) = claim_run(&simio, &args).await? else {
        return Ok(0);
    };
    let color = std::env::var_os("NO_COLOR").is_none();
    let helpers = Helpers::start(&simio, &events, &token, run_id, args.parent_pid);
    let _ = helpers
        .logs
        .send(format_line(Level::Info, "Starting Flower Simulation", color));
    let (inputs, options) = pull_inputs(&simio, &token, run_id).await?;
    let prepared = prepare(&inputs, &options);
    let sink = live_sink(events, &token, run_id, &helpers, color, &args);
    let workers = crate::builtin::worker_threads(&options);
    let (outcome, final_context, broken) = tokio::task::spawn_blocking(move || execute(prepared, workers, sink))
        .await
        .map_err(SimulationError::Thread)?;
    let (sub_status, details) = final_status(&outcome, &helpers.logs, color);
    helpers.finish();
    if let Some(reason) = broken {
        tracing::error!(run_id, "{reason}");
        return Ok(1);
    }
    push_outputs(&simio, &token, run_id, final_context, &inputs).await;
    report_end(&simio, &token, run_id, sub_status, details).await;
    tracing::info!(run_id, peak_rss_kb = peak_rss_kb(), "flwr-simulation finished");
    Ok(if matches!(outcome, Outcome::Failed { .. }) {
        1
    } else {
        0
    })
}

/// The SimulationIo and SimulationEvents clients of the SuperLink.
async fn connect_clients(args: &Args) -> Result<(SimulationIoClient, EventsClient), SimulationError> {
    let address = format!("http://{}", args.simulationio_address);
    let channel = connect(&address).await.map_err(|source| SimulationError::Connect {
        address: address.clone(),
        source,
    })?;
    let simio = SimulationIoClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
    let events = EventsClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    Ok((simio, events))
}

/// The run and its token: the given ones, or a pending run claimed with
/// `RequestToken` (`None` when there is nothing to launch).
async fn claim_run(simio: &SimulationIoClient, args: &Args) -> Result<Option<(u64, String)>, SimulationError> {
    if let (Some(token), Some(run_id)) = (&args.token, args.run_id) {
        return Ok(Some((run_id, token.clone())));
    }
    let pending = simio
        .clone()
        .list_apps_to_launch(pb::ListAppsToLaunchRequest {})
        .await?
        .into_inner()
        .run_ids;
    let Some(run_id) = args.run_id.or_else(|| pending.first().copied()) else {
        tracing::info!("no run to launch");
        return Ok(None);
    };
    if !pending.contains(&run_id) {
        tracing::info!(run_id, "the run is not waiting to be launched");
        return Ok(None);
    }
    let token = retry_while_full("claim the run", || {
        let mut simio = simio.clone();
        async move { simio.request_token(pb::RequestTokenRequest { run_id }).await }
    })
    .await?
    .into_inner()
    .token;
    if token.is_empty() {
        tracing::info!(run_id, "another process claimed the run");
        return Ok(None);
    }
    Ok(Some((run_id, token)))
}

/// What runs beside the simulation: the heartbeat, the stop watch, the
/// parent watch and the log uploader (fed through `logs`).
struct Helpers {
    stop: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    stop_watch: tokio::task::JoinHandle<()>,
    logs: std::sync::mpsc::Sender<String>,
    uploader: std::thread::JoinHandle<()>,
}

impl Helpers {
    fn start(
        simio: &SimulationIoClient,
        events: &EventsClient,
        token: &str,
        run_id: u64,
        parent_pid: Option<u32>,
    ) -> Helpers {
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(simio.clone(), token.to_string(), Arc::clone(&stop)));
        let stop_watch = tokio::spawn(await_stop(events.clone(), token.to_string(), run_id, Arc::clone(&stop)));
        if let Some(parent) = parent_pid {
            tokio::spawn(watch_parent(parent));
        }
        let (logs, log_receiver) = std::sync::mpsc::channel::<String>();
        let uploader = std::thread::spawn({
            let client = simio.clone();
            let runtime = tokio::runtime::Handle::current();
            let token = token.to_string();
            move || upload_logs(client, runtime, run_id, &token, log_receiver)
        });
        Helpers {
            stop,
            heartbeat,
            stop_watch,
            logs,
            uploader,
        }
    }

    /// Every log line reaches the SuperLink before the final status, so a
    /// log stream that ends with the run has all of them.
    fn finish(self) {
        drop(self.logs);
        let _ = self.uploader.join();
        self.heartbeat.abort();
        self.stop_watch.abort();
    }
}

/// The run's inputs (`PullAppInputs`) and its federation options.
async fn pull_inputs(
    simio: &SimulationIoClient,
    token: &str,
    run_id: u64,
) -> Result<(pb::PullAppInputsResponse, ConfigRecord), SimulationError> {
    let inputs = retry_while_full("pull the run's inputs", || {
        let mut simio = simio.clone();
        let request = pb::PullAppInputsRequest {
            token: token.to_string(),
        };
        async move { simio.pull_app_inputs(request).await }
    })
    .await?
    .into_inner();
    let options = simio
        .clone()
        .get_federation_options(pb::GetFederationOptionsRequest { run_id })
        .await?
        .into_inner()
        .federation_options
        .map(|o| proto::config_record_from_proto(&o))
        .transpose()?
        .unwrap_or_default();
    Ok((inputs, options))
}

/// The sink that pushes the run's events, its first event (which build
/// computes the run, and on what: replay names them) already in it.
fn live_sink(events: EventsClient, token: &str, run_id: u64, helpers: &Helpers, color: bool, args: &Args) -> LiveSink {
    let mut sink = LiveSink {
        runtime: tokio::runtime::Handle::current(),
        events,
        token: token.to_string(),
        run_id,
        pending: Vec::new(),
        pending_bytes: 0,
        stop: Arc::clone(&helpers.stop),
        logs: helpers.logs.clone(),
        color,
        faults: args.faults.clone(),
        broken: None,
        events_unsupported: false,
        usage: None,
        pushed_usage: None,
    };
    sink.event(Event::AppProcessStarted(crate::provenance::app_process()));
    sink
}

/// The run's final status, with its last log line.
fn final_status(outcome: &Outcome, logs: &std::sync::mpsc::Sender<String>, color: bool) -> (SubStatus, String) {
    match outcome {
        Outcome::Completed => (SubStatus::Completed, String::new()),
        Outcome::Stopped => {
            let _ = logs.send(format_line(Level::Info, crate::domain::run::STOPPED_BY_USER, color));
            (SubStatus::Stopped, crate::domain::run::STOPPED_BY_USER.to_string())
        }
        Outcome::Failed { reason } => {
            let _ = logs.send(format_line(Level::Error, &format!("Run failed: {reason}"), color));
            (SubStatus::Failed, reason.clone())
        }
    }
}

/// `PushAppOutputs`: the final context (the pulled one when the run has
/// none).
async fn push_outputs(
    simio: &SimulationIoClient,
    token: &str,
    run_id: u64,
    final_context: Option<bytes::Bytes>,
    inputs: &pb::PullAppInputsResponse,
) {
    if simio
        .clone()
        .push_app_outputs(pb::PushAppOutputsRequest {
            token: token.to_string(),
            run_id,
            context: final_context
                .and_then(|bytes| <pb::Context as prost::Message>::decode(bytes).ok())
                .or_else(|| inputs.context.clone()),
        })
        .await
        .is_err()
    {
        tracing::warn!(
            run_id,
            "the SuperLink did not take the run's outputs (it was stopped or finished)"
        );
    }
}

/// `UpdateRunStatus`: the run finished with `sub_status`.
async fn report_end(simio: &SimulationIoClient, token: &str, run_id: u64, sub_status: SubStatus, details: String) {
    let status = pb::RunStatus {
        status: "finished".into(),
        sub_status: sub_status.as_str().into(),
        details,
    };
    let request = pb::UpdateRunStatusRequest {
        run_id,
        run_status: Some(status),
    };
    let updated = retry_while_full("report the run's end", || {
        let mut simio = simio.clone();
        let request = access::with_app_token(request.clone(), token);
        async move { simio.update_run_status(request).await }
    })
    .await;
    if let Err(status) = updated {
        tracing::warn!(
            run_id,
            "the SuperLink did not take the final status: {}",
            status.message()
        );
    }
}

/// What the simulation thread needs (and warnings to log), or why the run
/// cannot start.
type Prepared = Result<Ready, SimulationError>;

struct Ready {
    inputs: Inputs,
    warnings: Vec<String>,
    /// Set when a component is Python code.
    python: Option<PythonRun>,
}

fn prepare(inputs: &pb::PullAppInputsResponse, options: &ConfigRecord) -> Prepared {
    let run = inputs.run.as_ref().ok_or(SimulationError::NoRun)?;
    let fab = inputs.fab.as_ref().ok_or(SimulationError::NoFab)?;
    let context = inputs.context.as_ref().ok_or(SimulationError::NoContext)?;
    let overrides = proto::user_config_from_proto(&run.override_config)?;
    let mut warnings = Vec::new();
    let seed = match seed_from_context(context)? {
        Some(seed) => seed,
        None => {
            // A Python Flower SuperLink records no seed: use the run
            // configuration's, else the run id, and say so.
            let inputs =
                crate::builtin::resolve_inputs(run.run_id, 0, &fab.content, &fab.hash_str, &overrides, options)?;
            let seed = crate::builtin::seed_from_config(&inputs.run_config).unwrap_or(run.run_id);
            warnings.push(format!(
                "This SuperLink does not record seeds (it is not floret's): the run uses seed {seed}. It can be \
                 reproduced with `-c seed={seed}` on a floret SuperLink, but not replayed from this one."
            ));
            seed
        }
    };
    let resolved = crate::builtin::resolve_inputs(run.run_id, seed, &fab.content, &fab.hash_str, &overrides, options)?;
    let python = if bridge::is_python(&resolved.server_app) || bridge::is_python(&resolved.client_app) {
        let verified = crate::fab::verify_fab(&fab.content, &fab.hash_str)?;
        let anchor = crate::domain::ids::Micros::parse_iso(&run.pending_at)
            .map(|at| at.0.div_euclid(1_000_000) as f64)
            .unwrap_or(bridge::server::ANCHOR_DEFAULT);
        Some(PythonRun {
            fab: fab.content.clone(),
            fab_id: verified.app.fab_id(),
            fab_version: verified.app.version.clone(),
            fab_hash: crate::fab::sha256_hex(&fab.content),
            overrides,
            app_config: verified.app.config.clone(),
            federation_options: options.clone(),
            interpreter: bridge::run::interpreter_for(options)?,
            flwr_home: crate::host::flwr_home(),
            anchor,
            workers: crate::builtin::worker_threads(options),
        })
    } else {
        None
    };
    Ok(Ready {
        inputs: resolved,
        warnings,
        python,
    })
}

/// How the simulation thread ended: the outcome, the ServerApp's final
/// context when it has one, and a broken event stream.
type Executed = (Outcome, Option<bytes::Bytes>, Option<String>);

/// Runs the engine on the current (blocking) thread.
fn execute(prepared: Prepared, workers: usize, mut sink: LiveSink) -> Executed {
    let mut context = None;
    let outcome = match prepared {
        Err(error) => Outcome::Failed {
            reason: error.to_string(),
        },
        Ok(ready) => {
            let mut log = Logger::new();
            for warning in &ready.warnings {
                log.warning(warning.clone());
            }
            for entry in log.drain() {
                sink.entry(entry);
            }
            match &ready.python {
                Some(python) => {
                    let stop = Some(Arc::clone(&sink.stop));
                    let ended = bridge::run::run(&ready.inputs, python, stop, &mut sink);
                    context = ended.context;
                    ended.outcome
                }
                None => {
                    let apps = crate::builtin::build(&ready.inputs, &mut log);
                    for entry in log.drain() {
                        sink.entry(entry);
                    }
                    match apps {
                        Err(error) => Outcome::Failed {
                            reason: error.to_string(),
                        },
                        Ok(apps) => sim::simulate(&ready.inputs, apps, workers, &mut sink).outcome,
                    }
                }
            }
        }
    };
    sink.flush();
    (outcome, context, sink.broken.take())
}

/// Whether the SuperLink refused a call because its disk is full (nothing
/// was recorded; the same call can succeed later).
fn is_store_full(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::ResourceExhausted && status.metadata().get(STORE_FULL_METADATA).is_some()
}

/// Makes `call` until it succeeds or fails for another reason than the
/// SuperLink's full disk, for at most [`STORE_FULL_PATIENCE`].
async fn retry_while_full<T, F, Fut>(what: &str, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + STORE_FULL_PATIENCE;
    let mut delay = Duration::from_millis(50);
    let mut waited = false;
    loop {
        match call().await {
            Err(status) if is_store_full(&status) && tokio::time::Instant::now() < deadline => {
                if !waited {
                    tracing::warn!("cannot {what} yet: {}; retrying", status.message());
                    waited = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            result => {
                if waited && result.is_ok() {
                    tracing::info!("could {what}: the SuperLink's disk has space again");
                }
                return result;
            }
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

async fn heartbeat(
    mut client: pb::simulation_io_client::SimulationIoClient<Channel>,
    token: String,
    stop: Arc<AtomicBool>,
) {
    let mut interval = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        interval.tick().await;
        match client
            .send_app_heartbeat(pb::SendAppHeartbeatRequest { token: token.clone() })
            .await
        {
            Ok(response) => {
                if !response.into_inner().success {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            Err(status) => tracing::warn!("heartbeat failed: {}", status.message()),
        }
    }
}

/// Sets the stop flag as soon as the SuperLink says a stop was requested
/// (`floret.v1.SimulationEvents/AwaitStop`); a SuperLink without it (Python
/// Flower's) leaves stops to the heartbeat and the event pushes.
async fn await_stop(
    mut client: ext::simulation_events_client::SimulationEventsClient<Channel>,
    token: String,
    run_id: u64,
    stop: Arc<AtomicBool>,
) {
    loop {
        let request = ext::AwaitStopRequest {
            token: token.clone(),
            run_id,
        };
        match client.await_stop(request).await {
            Ok(_) => {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => return,
            Err(status) if status.code() == tonic::Code::PermissionDenied => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
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
/// dropped, then pushes the rest: at most `LOG_BYTES_PER_PUSH` per request,
/// with the run's token.
fn upload_logs(
    client: pb::simulation_io_client::SimulationIoClient<Channel>,
    runtime: tokio::runtime::Handle,
    run_id: u64,
    token: &str,
    receiver: std::sync::mpsc::Receiver<String>,
) {
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        match receiver.recv_timeout(LOG_UPLOAD_INTERVAL) {
            Ok(line) => batch.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        // Take what else arrived in this interval.
        let deadline = std::time::Instant::now() + LOG_UPLOAD_INTERVAL;
        while open {
            match receiver.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(line) => batch.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
        }
        for logs in crate::flwr_log::batches(batch, LOG_BYTES_PER_PUSH) {
            let request = pb::PushLogsRequest {
                node: Some(pb::Node { node_id: 0 }),
                run_id,
                logs,
            };
            let pushed = runtime.block_on(retry_while_full("push the run's log", || {
                let mut client = client.clone();
                let request = access::with_app_token(request.clone(), token);
                async move { client.push_logs(request).await }
            }));
            if let Err(status) = pushed {
                tracing::warn!("cannot push logs: {}", status.message());
            }
        }
    }
}

/// This process's peak resident memory in KiB (`VmHWM`), for the log.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
