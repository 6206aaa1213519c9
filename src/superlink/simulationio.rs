//! Flower's `SimulationIo` service (1.27), which app processes use to claim a
//! run, pull its inputs, heartbeat, push logs and report the end; and our
//! `SimulationEvents` service beside it, through which the simulation engine
//! streams its events into the run's log, with the traffic and ClientApp
//! time measured so far.
//!
//! Status codes and messages follow Flower 1.27's servicer, except where
//! Flower lets any local process write (see `access`): PushLogs and
//! UpdateRunStatus need the run's token (gRPC metadata), and a SuperLink that
//! launches app processes itself offers its runs to nobody else
//! (ListAppsToLaunch lists none, RequestToken grants none).
//!
//! Handlers never write the store directly: every change goes through the engine.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::codec;
use crate::domain::event::{Event, RunFinished, SubStatus, Usage};
use crate::domain::ids::RunId;
use crate::domain::run::{Command, Run, Status as RunStatus};
use crate::proto::floret::v1 as ext;
use crate::proto::flwr::proto as pb;
use crate::proto::{self};
use crate::records::{ConfigRecord, ConfigValue, Record, RecordDict};
use crate::superlink::control::exec_status;
use crate::superlink::engine::ExecError;
use crate::superlink::{access, Shared};

pub(crate) struct SimulationIoService {
    pub shared: Arc<Shared>,
}

use crate::proto::FLORET_STATE_KEY;

/// Flower's message for a run that no longer accepts app output.
fn finished_message(run: &Run) -> String {
    let stopped = if run.status == RunStatus::Finished(SubStatus::Stopped) {
        " Stopped by user."
    } else {
        ""
    };
    format!("Run is {}.{stopped}", run.status.status_str())
}

impl SimulationIoService {
    async fn run_of_token(&self, token: &str) -> Result<RunId, Status> {
        self.shared
            .engine
            .authenticate(token)
            .await
            .ok_or_else(|| Status::permission_denied("Invalid token."))
    }

    /// Refuses a write to `run_id` that does not carry the run's token.
    async fn authorize<T>(&self, request: &Request<T>, run_id: RunId) -> Result<(), Status> {
        let token = access::app_token(request).ok_or_else(|| Status::permission_denied("Invalid token."))?;
        match self.run_of_token(token).await? {
            owner if owner == run_id => Ok(()),
            _ => Err(Status::permission_denied("Invalid token.")),
        }
    }

    /// Whether this SuperLink launches app processes itself.
    fn launches_apps(&self) -> bool {
        self.shared.launcher.is_some()
    }

    async fn existing_run(&self, run_id: RunId) -> Result<Run, Status> {
        self.shared
            .engine
            .run(run_id)
            .await
            .ok_or_else(|| Status::not_found("Run ID not found"))
    }
}

#[tonic::async_trait]
impl pb::simulation_io_server::SimulationIo for SimulationIoService {
    async fn list_apps_to_launch(
        &self,
        _request: Request<pb::ListAppsToLaunchRequest>,
    ) -> Result<Response<pb::ListAppsToLaunchResponse>, Status> {
        if self.launches_apps() {
            return Ok(Response::new(pb::ListAppsToLaunchResponse { run_ids: Vec::new() }));
        }
        let runs = self.shared.engine.run_statuses().await.map_err(exec_status)?;
        let run_ids = runs
            .into_iter()
            .filter(|(_, status)| *status == RunStatus::Pending)
            .map(|(run_id, _)| run_id.0)
            .collect();
        Ok(Response::new(pb::ListAppsToLaunchResponse { run_ids }))
    }

    async fn request_token(
        &self,
        request: Request<pb::RequestTokenRequest>,
    ) -> Result<Response<pb::RequestTokenResponse>, Status> {
        let run_id = RunId(request.into_inner().run_id);
        if self.launches_apps() {
            tracing::warn!(%run_id, "refused RequestToken: this SuperLink launches the run's app process itself");
            return Ok(Response::new(pb::RequestTokenResponse { token: String::new() }));
        }
        let token = match self.shared.engine.claim(run_id).await {
            Ok(token) => token.unwrap_or_default(),
            // Not pending (already claimed, finished) or unknown: no token.
            Err(crate::superlink::engine::ExecError::Rejected(_)) => String::new(),
            Err(error) => return Err(exec_status(error)),
        };
        Ok(Response::new(pb::RequestTokenResponse { token }))
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::GetRunResponse>, Status> {
        let run_id = RunId(request.into_inner().run_id);
        let run = self.shared.engine.run(run_id).await;
        Ok(Response::new(pb::GetRunResponse {
            run: run.as_ref().map(proto::run_to_proto),
        }))
    }

    async fn send_app_heartbeat(
        &self,
        request: Request<pb::SendAppHeartbeatRequest>,
    ) -> Result<Response<pb::SendAppHeartbeatResponse>, Status> {
        let success = self.shared.engine.heartbeat(&request.into_inner().token).await;
        Ok(Response::new(pb::SendAppHeartbeatResponse { success }))
    }

    async fn pull_app_inputs(
        &self,
        request: Request<pb::PullAppInputsRequest>,
    ) -> Result<Response<pb::PullAppInputsResponse>, Status> {
        let run_id = self.run_of_token(&request.into_inner().token).await?;
        let failed = |error: ExecError| match error {
            ExecError::Store(error) if error.is_full() => exec_status(ExecError::Store(error)),
            _ => Status::failed_precondition(format!("Failed to start run {run_id}")),
        };
        self.shared
            .engine
            .execute(run_id, Command::Activate)
            .await
            .map_err(failed)?;
        let run = self.existing_run(run_id).await?;
        let ffs = Arc::clone(&self.shared.ffs);
        let hash = run.submitted.fab_hash.clone();
        let content = tokio::task::spawn_blocking(move || ffs.get(&hash))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot read the run's FAB: {e}")))?;
        // The ServerApp context, with floret's additions in its state.
        let mut floret = ConfigRecord::new();
        floret.insert("seed", ConfigValue::Str(run.submitted.seed.to_string()));
        floret.insert("build", ConfigValue::Str(run.submitted.build.clone()));
        let mut state = RecordDict::new();
        state.insert(FLORET_STATE_KEY, Record::Config(floret));
        let context = pb::Context {
            run_id: run_id.0,
            node_id: 0,
            node_config: Default::default(),
            state: Some(proto::record_dict_to_proto(&state)),
            run_config: Default::default(),
        };
        Ok(Response::new(pb::PullAppInputsResponse {
            context: Some(context),
            run: Some(proto::run_to_proto(&run)),
            fab: Some(pb::Fab {
                hash_str: run.submitted.fab_hash.clone(),
                content,
                verifications: Default::default(),
            }),
        }))
    }

    async fn push_app_outputs(
        &self,
        request: Request<pb::PushAppOutputsRequest>,
    ) -> Result<Response<pb::PushAppOutputsResponse>, Status> {
        let request = request.into_inner();
        let run_id = self.run_of_token(&request.token).await?;
        if run_id.0 != request.run_id {
            return Err(Status::permission_denied("Invalid token."));
        }
        let run = self.existing_run(run_id).await?;
        if run.status != RunStatus::Running {
            return Err(Status::permission_denied(finished_message(&run)));
        }
        // The final context is not needed later: the events hold the run.
        // The token lives on until the run finishes: the final
        // UpdateRunStatus needs it (Flower deletes it here).
        Ok(Response::new(pb::PushAppOutputsResponse {}))
    }

    async fn update_run_status(
        &self,
        request: Request<pb::UpdateRunStatusRequest>,
    ) -> Result<Response<pb::UpdateRunStatusResponse>, Status> {
        let run_id = RunId(request.get_ref().run_id);
        self.authorize(&request, run_id).await?;
        let request = request.into_inner();
        let run = self.existing_run(run_id).await?;
        if run.status.is_finished() {
            return Err(Status::permission_denied(finished_message(&run)));
        }
        let status = request.run_status.unwrap_or_default();
        let command = match (status.status.as_str(), SubStatus::parse(&status.sub_status)) {
            ("starting", _) => Command::Claim,
            ("running", _) => Command::Activate,
            ("finished", Some(sub_status)) => Command::Finish(RunFinished {
                sub_status,
                details: status.details,
            }),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "Invalid run status: {}:{}",
                    status.status, status.sub_status
                )))
            }
        };
        self.shared.engine.execute(run_id, command).await.map_err(exec_status)?;
        Ok(Response::new(pb::UpdateRunStatusResponse {}))
    }

    /// Stores the text (in events of at most `LOG_EVENT_MAX` bytes, up to
    /// the run's `RUN_LOG_MAX`, then a notice; later text is dropped).
    async fn push_logs(&self, request: Request<pb::PushLogsRequest>) -> Result<Response<pb::PushLogsResponse>, Status> {
        let run_id = RunId(request.get_ref().run_id);
        self.authorize(&request, run_id).await?;
        let text: String = request.into_inner().logs.concat();
        if !text.is_empty() {
            self.shared
                .engine
                .execute(run_id, Command::AppendLog(text))
                .await
                .map_err(exec_status)?;
        }
        Ok(Response::new(pb::PushLogsResponse {}))
    }

    async fn get_federation_options(
        &self,
        request: Request<pb::GetFederationOptionsRequest>,
    ) -> Result<Response<pb::GetFederationOptionsResponse>, Status> {
        let run = self.existing_run(RunId(request.into_inner().run_id)).await?;
        Ok(Response::new(pb::GetFederationOptionsResponse {
            federation_options: Some(proto::config_record_to_proto(&run.submitted.federation_options)),
        }))
    }
}

/// The events of a PushEvents request, decoded by the store's codec; each
/// must be in canonical form (the bytes the engine's own encoding gives).
fn decode_events(raw: &[ext::SimEvent]) -> Result<Vec<Event>, Status> {
    let mut events = Vec::with_capacity(raw.len());
    for raw in raw {
        let event =
            codec::decode(&raw.kind, raw.version, &raw.payload).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Events are stored as the engine produced them; the encoding is
        // canonical, so re-encoding must give the same bytes.
        if codec::encode(&event).2 != raw.payload {
            return Err(Status::invalid_argument(format!(
                "{} payload is not in canonical form; the simulation and the SuperLink are different builds",
                raw.kind
            )));
        }
        events.push(event);
    }
    Ok(events)
}

pub(crate) struct SimulationEventsService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl ext::simulation_events_server::SimulationEvents for SimulationEventsService {
    async fn push_events(
        &self,
        request: Request<ext::PushEventsRequest>,
    ) -> Result<Response<ext::PushEventsResponse>, Status> {
        let request = request.into_inner();
        let run_id = self.shared.engine.authenticate(&request.token).await;
        if run_id != Some(RunId(request.run_id)) {
            return Err(Status::permission_denied("Invalid token."));
        }
        let run_id = RunId(request.run_id);
        let events = decode_events(&request.events)?;
        if !events.is_empty() {
            self.shared
                .engine
                .execute(run_id, Command::AppendSimulation(events))
                .await
                .map_err(exec_status)?;
        }
        if let Some(usage) = request.usage {
            let usage = Usage {
                bytes_sent: usage.bytes_sent,
                bytes_recv: usage.bytes_recv,
                clientapp_runtime: usage.clientapp_runtime,
            };
            self.shared
                .engine
                .execute(run_id, Command::RecordUsage(usage))
                .await
                .map_err(exec_status)?;
        }
        let stop_requested = self
            .shared
            .engine
            .run(run_id)
            .await
            .is_none_or(|run| run.stop_requested_at.is_some() || run.status.is_finished());
        Ok(Response::new(ext::PushEventsResponse { stop_requested }))
    }

    async fn await_stop(
        &self,
        request: Request<ext::AwaitStopRequest>,
    ) -> Result<Response<ext::AwaitStopResponse>, Status> {
        let request = request.into_inner();
        let run_id = RunId(request.run_id);
        if self.shared.engine.authenticate(&request.token).await != Some(run_id) {
            return Err(Status::permission_denied("Invalid token."));
        }
        // Every commit wakes the watcher; the run's state says whether a
        // stop is due.
        let mut committed = self.shared.engine.committed();
        loop {
            let due = self
                .shared
                .engine
                .run(run_id)
                .await
                .is_none_or(|run| run.stop_requested_at.is_some() || run.status.is_finished());
            if due {
                return Ok(Response::new(ext::AwaitStopResponse {}));
            }
            if committed.changed().await.is_err() {
                return Err(Status::unavailable("The SuperLink is shutting down."));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::mutation::{mutated, mutations};

    /// What the SuperLink does with the body of a PushEvents call: prost
    /// decodes it (as tonic's codec does), then [`decode_events`].
    fn receive(body: &[u8]) -> Option<Result<Vec<Event>, Status>> {
        let request = ext::PushEventsRequest::decode(body).ok()?;
        Some(decode_events(&request.events))
    }

    /// A valid request carrying `events`.
    fn request_of(events: &[Event]) -> Vec<u8> {
        ext::PushEventsRequest {
            token: "token".into(),
            run_id: 7,
            events: events
                .iter()
                .map(|e| {
                    let (kind, version, payload) = codec::encode(e);
                    ext::SimEvent {
                        kind: kind.into(),
                        version,
                        payload,
                    }
                })
                .collect(),
            usage: Some(ext::Usage {
                bytes_sent: 1,
                bytes_recv: 2,
                clientapp_runtime: 0.5,
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn valid_requests_decode_and_non_canonical_payloads_are_refused() {
        let events = codec::sample_events();
        assert_eq!(receive(&request_of(&events)).unwrap().unwrap(), events);
        // `RunStarting` as a map instead of nil: readable, not canonical.
        let raw = [ext::SimEvent {
            kind: "RunStarting".into(),
            version: 1,
            payload: vec![0x80],
        }];
        assert!(decode_events(&raw).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        /// Arbitrary request bodies never panic.
        #[test]
        fn push_events_never_panics_on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = receive(&body);
        }

        /// Mutated valid requests (events of every kind) never panic.
        #[test]
        fn push_events_never_panics_on_mutated_requests(
            picks in proptest::collection::vec(any::<proptest::sample::Index>(), 1..6),
            mutations in mutations(4),
        ) {
            let all = codec::sample_events();
            let events: Vec<Event> = picks.iter().map(|i| i.get(&all).clone()).collect();
            let _ = receive(&mutated(&request_of(&events), &mutations));
        }
    }
}
