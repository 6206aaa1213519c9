//! Our `floret.v1.Local` service on the Control address: who is this
//! SuperLink (so the CLI can tell ours from anything else on the port, and
//! one serving another `FLWR_HOME` from the one it wants), shut it down, and
//! hand out a run's recorded events and FAB for `flwr replay`.
//!
//! Identify is open (it is how a client tells what answers on the port);
//! Shutdown and StreamRunRecord need the Local API secret (`access`), which
//! only the owner of the state directory can read. The record is sent in
//! pages of bounded size, the FAB first in a chunk of its own.
//!
//! It never changes runs, except through the engine at shutdown.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::domain::ids::{RunId, Seq};
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::superlink::control::{exec_status, response_stream};
use crate::superlink::engine::ExecError;
use crate::superlink::{access, Shared, RECORD_PAGE_MAX};

/// Events per `RunRecordChunk`, at most (and [`RECORD_PAGE_MAX`] bytes).
const EVENTS_PER_CHUNK: usize = 2000;

pub(crate) struct LocalService {
    pub shared: Arc<Shared>,
}

type RecordStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<ext::RunRecordChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ext::local_server::Local for LocalService {
    async fn identify(
        &self,
        _request: Request<ext::IdentifyRequest>,
    ) -> Result<Response<ext::IdentifyResponse>, Status> {
        let shared = &self.shared;
        let runs = shared.engine.run_statuses().await.map_err(exec_status)?;
        let runs_total = runs.len() as u64;
        let runs_active = runs.iter().filter(|(_, status)| !status.is_finished()).count() as u64;
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        Ok(Response::new(ext::IdentifyResponse {
            product: crate::PRODUCT.to_string(),
            version: crate::VERSION.to_string(),
            flwr_home: path(&shared.config.flwr_home),
            state_db: shared.config.database.display().to_string(),
            pid: std::process::id(),
            control_address: shared.control_address.to_string(),
            simulationio_address: shared.simulationio_address.to_string(),
            started_at: shared.started_at.to_iso(),
            runs_total,
            runs_active,
            log_file: path(&shared.config.log_file),
        }))
    }

    async fn shutdown(
        &self,
        request: Request<ext::ShutdownRequest>,
    ) -> Result<Response<ext::ShutdownResponse>, Status> {
        access::check_local_secret(self.shared.local_secret.as_deref(), &request)?;
        let runs = self.shared.engine.run_statuses().await.map_err(exec_status)?;
        let active = runs.iter().filter(|(_, status)| status.is_active()).count() as u64;
        tracing::info!("shutdown requested through the Local API");
        self.shared.shutdown.notify_one();
        Ok(Response::new(ext::ShutdownResponse {
            pid: std::process::id(),
            runs_stopped: active,
        }))
    }

    async fn stream_run_record(
        &self,
        request: Request<ext::RunRecordRequest>,
    ) -> Result<Response<RecordStream>, Status> {
        access::check_local_secret(self.shared.local_secret.as_deref(), &request)?;
        let run_id = RunId(request.into_inner().run_id);
        let run = self
            .shared
            .engine
            .run(run_id)
            .await
            .ok_or_else(|| Status::not_found("Run ID not found"))?;
        let ffs = Arc::clone(&self.shared.ffs);
        let hash = run.submitted.fab_hash.clone();
        let content = tokio::task::spawn_blocking(move || ffs.get(&hash))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot read the run's FAB: {e}")))?;
        let fab = pb::Fab {
            hash_str: run.submitted.fab_hash.clone(),
            content,
            verifications: Default::default(),
        };
        let engine = self.shared.engine.clone();
        // The FAB alone, then pages of events, so that a run of millions of
        // events is never held in memory at once, nor sent in one message.
        let stream = response_stream(move |sender| async move {
            let first = ext::RunRecordChunk {
                events: Vec::new(),
                fab: Some(fab),
            };
            if sender.send(Ok(first)).await.is_err() {
                return;
            }
            send_event_pages(&engine, run_id, &sender).await;
        });
        Ok(Response::new(stream))
    }
}

/// Sends the run's events in pages of at most [`EVENTS_PER_CHUNK`] events
/// and [`RECORD_PAGE_MAX`] bytes, until there are no more.
async fn send_event_pages(
    engine: &crate::superlink::engine::Handle,
    run_id: RunId,
    sender: &tokio::sync::mpsc::Sender<Result<ext::RunRecordChunk, Status>>,
) {
    let mut after = Seq(0);
    loop {
        // Read beside the engine thread, which goes on writing meanwhile.
        let page = engine
            .raw_events(run_id, after, EVENTS_PER_CHUNK, RECORD_PAGE_MAX)
            .await;
        let events = match page {
            Ok(events) => events,
            Err(ExecError::Stopped) => return,
            Err(error) => {
                let _ = sender.send(Err(Status::internal(error.to_string()))).await;
                return;
            }
        };
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        let events = events
            .into_iter()
            .map(|e| ext::RecordedEvent {
                seq: e.seq.0,
                kind: e.kind,
                version: e.version,
                payload: e.payload,
                recorded_at_us: e.at.0,
            })
            .collect();
        if sender
            .send(Ok(ext::RunRecordChunk { events, fab: None }))
            .await
            .is_err()
        {
            return;
        }
        after = last;
    }
}
