//! Flower's `Control` service (1.27): StartRun, ListRuns, StreamLogs,
//! StopRun, and ListNodes (a deployment's SuperNodes; refused in simulation
//! mode, as Flower does). The other Control RPCs answer `UNIMPLEMENTED`.
//!
//! Each handler converts the request, asks the engine (which decides and
//! appends events) or reads through its typed reads, and converts back. Bad
//! input is refused with a status that says what is wrong, and then nothing
//! is written.
//!
//! StreamLogs sends a run's log in pages of at most `LOG_PAGE_MAX` bytes,
//! whatever its size, and tells in its response metadata
//! ([`LOG_END_HEADER`]) where the log stood when the stream began, so that
//! `flwr log --show` reads every page of it and no more (Flower's `--show`
//! prints the first message only).
//!
//! Handlers never write the store directly: every change goes through the engine.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::domain::event::RunSubmitted;
use crate::domain::event::{RunFinished, SubStatus};
use crate::domain::ids::{Micros, RunId};
use crate::domain::run::{Command, Rejection, STOPPED_BY_USER};
use crate::host::wall_clock;
use crate::proto::flwr::proto as pb;
use crate::proto::{self, DEFAULT_FEDERATION};
use crate::store::RunFilter;
use crate::superlink::engine::ExecError;
use crate::superlink::{Shared, LOG_PAGE_MAX};

/// Flower's maximum FAB size: 10 MiB.
pub(crate) const FAB_SIZE_MAX: usize = crate::fab::FAB_MAX_SIZE;

pub use crate::wire::LOG_END_HEADER;

/// How long StopRun waits for a running simulation to stop by itself before
/// it finishes the run and kills the process.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

pub(crate) struct ControlService {
    pub shared: Arc<Shared>,
}

pub(crate) fn exec_status(error: ExecError) -> Status {
    match error {
        ExecError::Store(error) if error.is_full() => store_full_status(error.to_string()),
        ExecError::Rejected(Rejection::UnknownRun(_)) => Status::not_found("Run ID not found"),
        ExecError::Rejected(rejection) => Status::failed_precondition(rejection.to_string()),
        ExecError::NodeRejected(rejection) => Status::failed_precondition(rejection.to_string()),
        ExecError::Store(error) => Status::internal(error.to_string()),
        ExecError::Stopped => Status::unavailable("the SuperLink is shutting down"),
    }
}

pub use crate::wire::STORE_FULL_METADATA;

/// `RESOURCE_EXHAUSTED` with `message`, marked as a full disk.
pub(crate) fn store_full_status(message: String) -> Status {
    let mut status = Status::resource_exhausted(message);
    status
        .metadata_mut()
        .insert(STORE_FULL_METADATA, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// A random run id that is not taken, as Flower draws them (8 random bytes).
fn new_run_id(taken: impl Fn(RunId) -> bool) -> RunId {
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let run_id = RunId(u64::from_le_bytes(bytes));
        if run_id.0 != 0 && !taken(run_id) {
            return run_id;
        }
    }
}

/// A random seed for runs whose configuration does not set one.
pub(crate) fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    u64::from_le_bytes(bytes)
}

/// The most bytes of run-config overrides a run accepts (keys and encoded
/// values together): they are recorded in the run's first event and sent
/// to its app process.
pub(crate) const OVERRIDES_SIZE_MAX: usize = 64 * 1024;

/// The most bytes of an error message the Control API sends: gRPC carries it
/// in a header (percent-encoded), which clients cap at 8 KiB (Python) or
/// 16 KiB (h2) and otherwise fail with a protocol error.
pub(crate) const STATUS_MESSAGE_MAX: usize = 2048;

/// `status` with its message cut to [`STATUS_MESSAGE_MAX`] bytes.
pub(crate) fn bounded(status: Status) -> Status {
    let message = status.message();
    if message.len() <= STATUS_MESSAGE_MAX {
        return status;
    }
    let mut end = STATUS_MESSAGE_MAX - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Status::new(status.code(), format!("{}…", &message[..end]))
}

/// The checks of a StartRun request that need nothing but the request:
/// a local app, a FAB with its hash, overrides of a bounded size.
fn check_start_request(request: &pb::StartRunRequest) -> Result<&pb::Fab, Status> {
    if !request.app_spec.is_empty() {
        return Err(Status::failed_precondition(format!(
            "Cannot run '{}': the local SuperLink runs local apps only (Flower Hub apps need a network connection).",
            crate::app::clip(&request.app_spec)
        )));
    }
    let fab = request
        .fab
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("StartRun needs a FAB"))?;
    if fab.content.len() > FAB_SIZE_MAX {
        return Err(Status::invalid_argument(format!(
            "FAB size exceeds maximum allowed size of 10,485,760 bytes ({} bytes).",
            fab.content.len()
        )));
    }
    let is_sha256 = fab.hash_str.len() == 64 && fab.hash_str.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if fab.hash_str.is_empty() {
        return Err(Status::invalid_argument(
            "StartRun's Fab.hash_str is empty: it must be the FAB's SHA-256 (64 lowercase hex digits)",
        ));
    } else if !is_sha256 {
        return Err(Status::invalid_argument(format!(
            "StartRun's Fab.hash_str '{}' is not a SHA-256: it must be 64 lowercase hex digits",
            crate::app::clip(&fab.hash_str)
        )));
    }
    let overrides_size: usize = request
        .override_config
        .iter()
        .map(|(key, value)| key.len() + prost::Message::encoded_len(value))
        .sum();
    if overrides_size > OVERRIDES_SIZE_MAX {
        return Err(Status::failed_precondition(format!(
            "Invalid run configuration: the overrides take {overrides_size} bytes, more than the {OVERRIDES_SIZE_MAX} \
             a run accepts; put large values in the app's files instead"
        )));
    }
    Ok(fab)
}

impl ControlService {
    async fn start_run(&self, request: pb::StartRunRequest) -> Result<RunId, Status> {
        let fab = check_start_request(&request)?;
        let verified =
            crate::fab::verify_fab(&fab.content, &fab.hash_str).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let overrides = proto::user_config_from_proto(&request.override_config)
            .map_err(|e| Status::failed_precondition(format!("Invalid run configuration: {e}")))?;
        let run_config = crate::builtin::fuse_run_config(&verified.app.config, &overrides)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let federation = if request.federation.is_empty() {
            DEFAULT_FEDERATION.to_string()
        } else {
            request.federation
        };
        if federation != DEFAULT_FEDERATION {
            return Err(Status::failed_precondition(format!(
                "Federation '{}' does not exist",
                crate::app::clip(&federation)
            )));
        }
        let federation_options = match &request.federation_options {
            Some(options) => proto::config_record_from_proto(options)
                .map_err(|e| Status::invalid_argument(format!("Invalid federation options: {e}")))?,
            None => Default::default(),
        };
        crate::federation::validate(&federation_options, &run_config)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let warm_key = super::warm::Key::for_app(&verified.app, &federation_options);
        // A fresh warm interpreter of the run's path has imported flwr: the
        // probe would only say so again (~50 ms).
        let vouched = match (&warm_key, &self.shared.launcher) {
            (Some(key), Some(launcher)) => launcher.warm().is_some_and(|warm| warm.is_fresh(key)),
            _ => false,
        };
        let (app, config, options) = (verified.app.clone(), run_config.clone(), federation_options.clone());
        tokio::task::spawn_blocking(move || {
            crate::builtin::validate(&app, &config, &options)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            let python = crate::bridge::is_python(&app.serverapp) || crate::bridge::is_python(&app.clientapp);
            if python && !vouched {
                crate::bridge::run::check_interpreter(&options)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
            }
            Ok::<(), Status>(())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let seed = crate::builtin::seed_from_config(&run_config).unwrap_or_else(random_seed);
        let ffs = Arc::clone(&self.shared.ffs);
        let content = request.fab.map(|fab| fab.content).unwrap_or_default();
        let fab_hash = tokio::task::spawn_blocking(move || ffs.put(&content))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| {
                let message = format!("cannot store the FAB in {}: {e}", self.shared.ffs.directory().display());
                if e.kind() == std::io::ErrorKind::StorageFull {
                    store_full_status(format!("{message}; free some disk space and try again"))
                } else {
                    Status::internal(message)
                }
            })?;
        let taken = self.shared.engine.run_ids().await.map_err(exec_status)?;
        let run_id = new_run_id(|id| taken.contains(&id));
        let submitted = RunSubmitted {
            run_id,
            fab_id: verified.app.fab_id(),
            fab_version: verified.app.version.clone(),
            fab_hash,
            override_config: overrides,
            federation,
            federation_options,
            seed,
            build: crate::BUILD.to_string(),
        };
        self.shared
            .engine
            .execute(run_id, Command::Submit(submitted))
            .await
            .map_err(exec_status)?;
        tracing::info!(%run_id, "run submitted");
        if let Some(launcher) = &self.shared.launcher {
            // A deployment run's ServerApp process starts its own Python
            // (for `initial-arrays`); warm interpreters serve simulations.
            let warm_key = if self.shared.deployment { None } else { warm_key };
            launcher.launch(run_id, warm_key);
        }
        Ok(run_id)
    }

    async fn stop_run(&self, run_id: RunId) -> Result<bool, Status> {
        let engine = &self.shared.engine;
        let mut committed = engine.committed();
        engine
            .execute(run_id, Command::RequestStop)
            .await
            .map_err(exec_status)?;
        // A running simulation notices the request at its next step and
        // reports; wait for that, within a bound.
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        loop {
            let finished = engine.run(run_id).await.is_some_and(|run| run.status.is_finished());
            if finished {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, committed.changed()).await.is_err() {
                break;
            }
        }
        tracing::warn!(%run_id, "the simulation did not stop within {STOP_GRACE:?}; finishing the run and ending its process");
        let finished = RunFinished {
            sub_status: SubStatus::Stopped,
            details: STOPPED_BY_USER.to_string(),
        };
        match engine.execute(run_id, Command::Finish(finished)).await {
            Ok(_) | Err(ExecError::Rejected(Rejection::InvalidTransition { .. })) => {}
            Err(error) => return Err(exec_status(error)),
        }
        if let Some(launcher) = &self.shared.launcher {
            launcher.signal(run_id, libc::SIGKILL);
        }
        Ok(true)
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<pb::StreamLogsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    /// Flower's `ListNodes`: every SuperNode of a deployment (simulation
    /// mode has none to list, and says so as Flower does).
    async fn list_nodes(
        &self,
        _request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        if !self.shared.deployment {
            return Err(Status::unimplemented("ListNodes is not available in simulation mode."));
        }
        let nodes = self.shared.engine.nodes().await.map_err(exec_status)?;
        let now = wall_clock();
        let nodes_info = nodes
            .into_iter()
            .map(|(node, online_for)| {
                proto::node_info(&node, online_for.map(|left| now.as_secs_f64() + left.as_secs_f64()))
            })
            .collect();
        Ok(Response::new(pb::ListNodesResponse {
            nodes_info,
            now: now.to_iso(),
        }))
    }

    async fn start_run(&self, request: Request<pb::StartRunRequest>) -> Result<Response<pb::StartRunResponse>, Status> {
        let run_id = ControlService::start_run(self, request.into_inner())
            .await
            .map_err(bounded)?;
        Ok(Response::new(pb::StartRunResponse { run_id: Some(run_id.0) }))
    }

    async fn stop_run(&self, request: Request<pb::StopRunRequest>) -> Result<Response<pb::StopRunResponse>, Status> {
        let success = ControlService::stop_run(self, RunId(request.into_inner().run_id)).await?;
        Ok(Response::new(pb::StopRunResponse { success }))
    }

    async fn stream_logs(&self, request: Request<pb::StreamLogsRequest>) -> Result<Response<LogStream>, Status> {
        let request = request.into_inner();
        let run_id = RunId(request.run_id);
        let engine = self.shared.engine.clone();
        if engine.run(run_id).await.is_none() {
            return Err(Status::not_found("Run ID not found"));
        }
        // Flower: rows with timestamp > after_timestamp (+1e-6 s).
        let after = Micros::from_secs_f64(request.after_timestamp.max(0.0));
        let end = engine.last_log_at(run_id).await.map_err(exec_status)?;
        let mut committed = engine.committed();
        let stream = response_stream(move |sender| async move {
            let mut after = after;
            loop {
                // Read the status first: if the run was finished before an
                // empty page was read, the log is complete.
                let finished = engine.run(run_id).await.is_none_or(|run| run.status.is_finished());
                // A page read beside the engine thread, in a new read
                // transaction: it sees every log line acknowledged so far.
                let chunks = match engine.logs_after(run_id, after, LOG_PAGE_MAX).await {
                    Ok(chunks) => chunks,
                    Err(ExecError::Stopped) => return,
                    Err(error) => {
                        let _ = sender.send(Err(Status::internal(error.to_string()))).await;
                        return;
                    }
                };
                if let Some(last) = chunks.last() {
                    after = last.at;
                    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
                    let response = pb::StreamLogsResponse {
                        log_output: text,
                        latest_timestamp: last.at.as_secs_f64(),
                    };
                    if sender.send(Ok(response)).await.is_err() {
                        return;
                    }
                    // More may follow at once: read the next page.
                    continue;
                }
                if finished {
                    return;
                }
                tokio::select! {
                    changed = committed.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                }
            }
        });
        let mut response = Response::new(stream);
        let end = end.map_or(0, |at| at.0).to_string();
        response
            .metadata_mut()
            .insert(LOG_END_HEADER, end.parse().expect("digits are valid metadata"));
        Ok(response)
    }

    async fn list_runs(&self, request: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let request = request.into_inner();
        let filter = match (request.run_id, request.limit) {
            (Some(run_id), _) => RunFilter::One(RunId(run_id)),
            (None, Some(limit)) => RunFilter::Newest(limit),
            (None, None) => RunFilter::All,
        };
        let runs = self.shared.engine.runs(filter).await.map_err(exec_status)?;
        if matches!(filter, RunFilter::One(_)) && runs.is_empty() {
            return Err(Status::not_found("Run ID not found"));
        }
        let run_dict = runs
            .iter()
            .map(|run| (run.run_id().0, proto::run_to_proto(run)))
            .collect();
        Ok(Response::new(pb::ListRunsResponse {
            run_dict,
            now: wall_clock().to_iso(),
        }))
    }
}

/// A response stream fed by a task through a bounded channel.
pub(crate) fn response_stream<T, F, Fut>(producer: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
