//! The SuperLink: Flower's Control and SimulationIo APIs over the event store,
//! and in deployment mode its Fleet API, to which real SuperNodes connect.
//!
//! [`run`] takes its listeners and a shutdown signal as arguments (the
//! mini-redis shape), so tests bind port 0 and stop it at will. It opens the
//! store, recovers from a previous crash (active runs fail, through events),
//! launches app processes for pending runs, and serves until shutdown, when
//! it stops active runs and ends their processes.
//!
//! Only this module and its children speak gRPC on the server side; all state
//! changes go through the [`engine`].
//!
//! Every inbound message is bounded per API (`*_REQUEST_MAX`), and no answer
//! is built over [`RESPONSE_MAX`]: logs and run records are sent in pages
//! ([`LOG_PAGE_MAX`], [`RECORD_PAGE_MAX`]) whatever the run's size.

pub mod access;
pub mod control;
pub mod engine;
pub mod ffs;
pub mod fleet;
pub mod launcher;
pub mod local;
pub mod mailbox;
pub mod serverappio;
pub mod simulationio;
pub mod warm;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;

use crate::domain::event::{RunFinished, SubStatus};
use crate::domain::ids::Micros;
use crate::domain::run::{Command, Status};
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::store::{self, Store};

const MIB: usize = 1024 * 1024;
/// The transport limit: the largest message the SuperLink sends on any API.
/// What can grow with a run (logs, records) is paged far below it.
pub(crate) const RESPONSE_MAX: usize = 64 * MIB;
/// Largest Control request: StartRun carries a FAB of at most 10 MiB
/// (larger FABs up to this size get Flower's "FAB size exceeds" message).
pub(crate) const CONTROL_REQUEST_MAX: usize = 16 * MIB;
/// Largest Local request (they are all a few bytes).
pub(crate) const LOCAL_REQUEST_MAX: usize = 64 * 1024;
/// Largest SimulationIo request (app processes push logs in pieces of at
/// most 1 MiB; a run's context and status are small).
pub(crate) const SIMULATIONIO_REQUEST_MAX: usize = 16 * MIB;
/// Largest SimulationEvents request (app processes push at most 8 MiB of
/// events at a time); one event is therefore smaller than a record page
/// can be.
pub(crate) const EVENTS_REQUEST_MAX: usize = 32 * MIB;
/// Largest Fleet and ServerAppIo request. The largest are PushObject calls:
/// one object each, and an array travels in chunks of at most 5 MiB
/// (Flower's `MAX_ARRAY_CHUNK_SIZE`), so no object a Flower peer makes comes
/// near it; messages carry only metadata and trees.
pub(crate) const MESSAGE_REQUEST_MAX: usize = 64 * MIB;
/// Log text per StreamLogs message (one log row more at most, and rows are
/// at most `domain::run::LOG_EVENT_MAX`).
pub(crate) const LOG_PAGE_MAX: usize = MIB;
/// Event payload bytes per RunRecordChunk (or one event, at most
/// [`EVENTS_REQUEST_MAX`]); the FAB (at most 10 MiB) has a chunk of its own.
pub(crate) const RECORD_PAGE_MAX: usize = 4 * MIB;

// What grows with a run is paged far below the transport limit, checked
// when this compiles.
const _: () = {
    use crate::domain::run::{LOG_EVENT_MAX, RUN_LOG_MAX};
    // A StreamLogs message: log rows up to the page (a row is smaller).
    assert!(LOG_EVENT_MAX <= LOG_PAGE_MAX && LOG_PAGE_MAX < RESPONSE_MAX / 16);
    // A whole stored log would even fit in one message.
    assert!(RUN_LOG_MAX < RESPONSE_MAX / 2);
    // A RunRecordChunk: events up to the page, or one event alone (at most
    // one whole request), or the FAB alone.
    assert!(RECORD_PAGE_MAX < RESPONSE_MAX / 2 && EVENTS_REQUEST_MAX <= RESPONSE_MAX / 2);
    assert!(control::FAB_SIZE_MAX < RESPONSE_MAX / 2 && control::FAB_SIZE_MAX < CONTROL_REQUEST_MAX);
};

/// How the SuperLink is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// `state.db`, or `:memory:` for a database that lives in memory.
    pub database: PathBuf,
    /// Where FABs are stored (Flower's `--storage-dir`).
    pub storage_dir: PathBuf,
    /// The `FLWR_HOME` a managed local SuperLink serves (reported by Identify).
    pub flwr_home: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    /// The app executable to launch per run (`flwr-simulation`, or
    /// `flwr-serverapp` in deployment mode); `None` when app processes are
    /// started by someone else (`--isolation process`).
    pub app_executable: Option<PathBuf>,
    /// Test-only: a file holding a page cap for `state.db`, read before each
    /// write, so that tests fill the database without filling a disk
    /// (`FLORET_TEST_MAX_PAGE_COUNT_FILE`; see `Store::set_page_cap_file`).
    pub page_cap_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("cannot use the storage directory {path}: {source}")]
    Storage { path: PathBuf, source: std::io::Error },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot read a listener's address: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Access(#[from] access::Error),
}

/// The sockets a SuperLink serves.
pub struct Listeners {
    /// The Control and Local APIs.
    pub control: TcpListener,
    /// SimulationIo and SimulationEvents (app processes).
    pub simulationio: TcpListener,
    /// The Fleet API (SuperNodes), in deployment mode only.
    pub fleet: Option<TcpListener>,
    /// ServerAppIo (and SimulationEvents beside it) for the ServerApp
    /// processes of deployment runs, in deployment mode only.
    pub serverappio: Option<TcpListener>,
}

/// What every service shares.
pub(crate) struct Shared {
    pub engine: engine::Handle,
    pub ffs: Arc<ffs::Ffs>,
    pub launcher: Option<Arc<launcher::Launcher>>,
    pub config: Config,
    pub control_address: SocketAddr,
    pub simulationio_address: SocketAddr,
    pub started_at: Micros,
    /// Whether the Fleet API is served (deployment mode).
    pub deployment: bool,
    /// Signalled by the Local API's Shutdown.
    pub shutdown: Notify,
    /// Messages of deployment runs in flight. A std mutex: held for one
    /// mailbox operation, never across an await.
    pub mailbox: std::sync::Mutex<mailbox::Mailbox>,
    /// The Local API secret (also in `<database>.secret`); `None` for a
    /// database in memory.
    pub local_secret: Option<String>,
}

/// Details of runs found active when the SuperLink starts.
pub(crate) const RESTART_DETAILS: &str =
    "The SuperLink stopped while the run was active (it crashed or was killed); the run cannot resume.";
/// Details of runs active when the SuperLink is shut down.
pub(crate) const SHUTDOWN_DETAILS: &str = "The SuperLink was shut down while the run was active.";

fn open_store(database: &std::path::Path) -> Result<Store, store::Error> {
    match database.to_str() {
        Some(":memory:" | ":flwr-in-memory:") => Store::open_in_memory(),
        _ => Store::open(database),
    }
}

/// Makes the SuperLink's existing files private (an earlier version or a
/// lax umask may have left them open to others); `flower-superlink` creates
/// new ones private (umask 077).
fn tighten_state(config: &Config) {
    let mut paths = vec![config.storage_dir.clone()];
    if let Some(home) = &config.flwr_home {
        paths.push(home.join("local-superlink"));
    }
    if crate::wire::secret_path(&config.database).is_some() {
        let database = config.database.display();
        for suffix in ["", "-wal", "-shm", "-journal", ".lock", ".secret"] {
            paths.push(PathBuf::from(format!("{database}{suffix}")));
        }
    }
    paths.extend(config.log_file.clone());
    for path in paths {
        if let Err(error) = crate::owner_only::restrict_tree(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot make the file private to its owner");
        }
    }
}

/// Serves the Control API, SimulationIo and (in deployment mode) the Fleet
/// API on their listeners until `shutdown` completes or a client calls
/// Local/Shutdown.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Listeners {
        control,
        simulationio,
        fleet,
        serverappio,
    } = listeners;
    tighten_state(&config);
    let (engine, local_secret) = start_engine(&config).await?;
    let serverappio_address = serverappio
        .as_ref()
        .map(|l| l.local_addr().map_err(Error::Listener))
        .transpose()?;
    let mut shared = share(
        engine,
        local_secret,
        config,
        &control,
        &simulationio,
        serverappio_address,
    )?;
    shared.deployment = fleet.is_some();
    let shared = Arc::new(shared);
    recover(&shared).await;
    let expiry = spawn_expiry(Arc::clone(&shared));
    let (stop_servers, servers_stopping) = tokio::sync::watch::channel(false);
    let control_task = tokio::spawn(serve_control(&shared, control, servers_stopping.clone()));
    let simulationio_task = tokio::spawn(serve_simulationio(&shared, simulationio, servers_stopping.clone()));
    let (control_address, simulationio_address) = (shared.control_address, shared.simulationio_address);
    tracing::info!(%control_address, %simulationio_address, "SuperLink serving");
    let fleet_task = match fleet {
        Some(listener) => {
            let fleet_address = listener.local_addr().map_err(Error::Listener)?;
            tracing::info!(%fleet_address, "Fleet API (grpc-rere) serving");
            Some(tokio::spawn(serve_fleet(&shared, listener, servers_stopping.clone())))
        }
        None => None,
    };
    let serverappio_task = match serverappio {
        Some(listener) => {
            tracing::info!(serverappio_address = %listener.local_addr().map_err(Error::Listener)?, "ServerAppIo API serving");
            Some(tokio::spawn(serve_serverappio(
                &shared,
                listener,
                servers_stopping.clone(),
            )))
        }
        None => None,
    };

    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        () = shared.shutdown.notified() => tracing::info!("shutting down (requested through the Local API)"),
    }
    stop_active_runs(&shared).await;
    let _ = stop_servers.send(true);
    expiry.abort();
    control_task.await.expect("control server task")?;
    simulationio_task.await.expect("simulationio server task")?;
    if let Some(task) = fleet_task {
        task.await.expect("fleet server task")?;
    }
    if let Some(task) = serverappio_task {
        task.await.expect("serverappio server task")?;
    }
    Ok(())
}

/// Opens the store (on a blocking thread), draws the Local API secret and
/// starts the engine over the store.
async fn start_engine(config: &Config) -> Result<(engine::Handle, Option<String>), Error> {
    let database = config.database.clone();
    let mut store = tokio::task::spawn_blocking(move || open_store(&database))
        .await
        .expect("open the store")?;
    let local_secret = crate::wire::secret_path(&config.database)
        .map(|path| access::create_secret(&path))
        .transpose()?;
    if let Some(file) = &config.page_cap_file {
        store.set_page_cap_file(file.clone());
    }
    Ok((engine::start(store), local_secret))
}

/// What every service shares: the engine, the FAB storage, the launcher
/// (when this SuperLink launches app processes) and the addresses.
fn share(
    engine: engine::Handle,
    local_secret: Option<String>,
    config: Config,
    control: &TcpListener,
    simulationio: &TcpListener,
    serverappio: Option<SocketAddr>,
) -> Result<Shared, Error> {
    let ffs = ffs::Ffs::open(&config.storage_dir).map_err(|source| Error::Storage {
        path: config.storage_dir.clone(),
        source,
    })?;
    let control_address = control.local_addr().map_err(Error::Listener)?;
    let simulationio_address = simulationio.local_addr().map_err(Error::Listener)?;
    // Deployment runs get a ServerApp process on ServerAppIo, simulations
    // an app process on SimulationIo.
    let launcher = config.app_executable.clone().map(|executable| {
        let api = match serverappio {
            Some(address) => launcher::AppApi::ServerAppIo(address),
            None => launcher::AppApi::SimulationIo(simulationio_address),
        };
        launcher::Launcher::new(
            executable,
            api,
            config.log_file.clone(),
            engine.clone(),
            warm::WarmPython::from_env(),
        )
    });
    Ok(Shared {
        engine,
        ffs: Arc::new(ffs),
        launcher,
        config,
        control_address,
        simulationio_address,
        started_at: crate::host::wall_clock(),
        deployment: false,
        shutdown: Notify::new(),
        local_secret,
        mailbox: std::sync::Mutex::new(mailbox::Mailbox::default()),
    })
}

/// Every second: retries obligations, marks SuperNodes whose heartbeat is
/// overdue offline, fails runs whose heartbeat expired, and drops the
/// messages of runs that ended (stopped, failed, or their process died).
fn spawn_expiry(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            for run_id in shared.engine.expire().await {
                tracing::warn!(%run_id, "no heartbeat from the run's process; the run failed");
            }
            let in_flight = shared.mailbox.lock().expect("mailbox lock").run_ids();
            for run_id in in_flight {
                let ended = shared
                    .engine
                    .run(crate::domain::ids::RunId(run_id))
                    .await
                    .is_none_or(|run| run.status.is_finished());
                if ended {
                    shared.mailbox.lock().expect("mailbox lock").drop_run(run_id);
                }
            }
        }
    })
}

/// Completes once `stop` turns true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The Control and Local APIs on `listener`, until `stop`.
fn serve_control(
    shared: &Arc<Shared>,
    listener: TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            pb::control_server::ControlServer::new(control::ControlService {
                shared: Arc::clone(shared),
            })
            .max_decoding_message_size(CONTROL_REQUEST_MAX)
            .max_encoding_message_size(RESPONSE_MAX),
        )
        .add_service(
            ext::local_server::LocalServer::new(local::LocalService {
                shared: Arc::clone(shared),
            })
            .max_decoding_message_size(LOCAL_REQUEST_MAX)
            .max_encoding_message_size(RESPONSE_MAX),
        )
        .serve_with_incoming_shutdown(nodelay(listener), stopped(stop))
}

/// The SimulationIo and SimulationEvents APIs on `listener`, until `stop`.
fn serve_simulationio(
    shared: &Arc<Shared>,
    listener: TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            pb::simulation_io_server::SimulationIoServer::new(simulationio::SimulationIoService {
                shared: Arc::clone(shared),
            })
            .max_decoding_message_size(SIMULATIONIO_REQUEST_MAX)
            .max_encoding_message_size(RESPONSE_MAX),
        )
        .add_service(
            ext::simulation_events_server::SimulationEventsServer::new(simulationio::SimulationEventsService {
                shared: Arc::clone(shared),
            })
            .max_decoding_message_size(EVENTS_REQUEST_MAX)
            .max_encoding_message_size(RESPONSE_MAX),
        )
        .serve_with_incoming_shutdown(nodelay(listener), stopped(stop))
}

/// The ServerAppIo and SimulationEvents APIs on `listener`, until `stop`.
fn serve_serverappio(
    shared: &Arc<Shared>,
    listener: TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            pb::server_app_io_server::ServerAppIoServer::new(serverappio::ServerAppIoService::new(Arc::clone(shared)))
                .max_decoding_message_size(MESSAGE_REQUEST_MAX)
                .max_encoding_message_size(RESPONSE_MAX),
        )
        .add_service(
            ext::simulation_events_server::SimulationEventsServer::new(simulationio::SimulationEventsService {
                shared: Arc::clone(shared),
            })
            .max_decoding_message_size(EVENTS_REQUEST_MAX)
            .max_encoding_message_size(RESPONSE_MAX),
        )
        .serve_with_incoming_shutdown(nodelay(listener), stopped(stop))
}

/// The Fleet API on `listener`, until `stop`.
fn serve_fleet(
    shared: &Arc<Shared>,
    listener: TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            pb::fleet_server::FleetServer::new(fleet::FleetService::new(Arc::clone(shared)))
                .max_decoding_message_size(MESSAGE_REQUEST_MAX)
                .max_encoding_message_size(RESPONSE_MAX),
        )
        .serve_with_incoming_shutdown(nodelay(listener), stopped(stop))
}

/// Accepted connections with Nagle's algorithm off: the APIs exchange many
/// small messages, and Nagle plus delayed ACKs would add ~40 ms to each.
fn nodelay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// After a restart: runs that were active can never finish (their process
/// died with the old SuperLink, or cannot reach this one), so they fail;
/// pending runs get a process.
async fn recover(shared: &Shared) {
    let runs = shared.engine.run_statuses().await.unwrap_or_default();
    for (run_id, status) in runs {
        match status {
            Status::Starting | Status::Running => {
                let reason = RESTART_DETAILS.to_string();
                shared.engine.oblige(run_id, Command::Abandon { reason });
            }
            Status::Pending => {
                if let Some(launcher) = &shared.launcher {
                    // After a restart no warm interpreter is ready yet.
                    launcher.launch(run_id, None);
                }
            }
            Status::Finished(_) => {}
        }
    }
}

async fn stop_active_runs(shared: &Shared) {
    let runs = shared.engine.run_statuses().await.unwrap_or_default();
    let active = runs.into_iter().filter(|(_, status)| status.is_active());
    for (run_id, _) in active {
        let finished = RunFinished {
            sub_status: SubStatus::Stopped,
            details: SHUTDOWN_DETAILS.to_string(),
        };
        if let Err(error) = shared.engine.execute(run_id, Command::Finish(finished)).await {
            tracing::warn!(%run_id, %error, "cannot stop a run at shutdown");
        }
    }
    if let Some(launcher) = &shared.launcher {
        launcher.terminate_all(Duration::from_secs(3)).await;
    }
}
