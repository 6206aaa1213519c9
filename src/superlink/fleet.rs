//! Flower's `Fleet` API (1.27, grpc-rere), which real `flower-supernode`
//! processes call: the node lifecycle (RegisterNode, ActivateNode,
//! DeactivateNode, UnregisterNode, SendNodeHeartbeat), GetRun and GetFab,
//! and the messages: PullMessages hands a node its next instruction (one per
//! call, once), PushMessages takes its reply, and PushObject, PullObject and
//! ConfirmMessageReceived move their contents through the SuperLink's
//! [`Mailbox`](super::mailbox::Mailbox), where the ServerApp (ServerAppIo)
//! finds them. A reply that answers no instruction of that node is dropped
//! with Flower's `results = {"None": 0}`.
//!
//! Status codes and texts are Flower 1.27's (its `FleetServicer` and
//! `message_handler`): a public key already in use, an unknown key, a node
//! that cannot be (de)activated or unregistered are `FAILED_PRECONDITION`;
//! a heartbeat interval outside [10, 1800] s is `INVALID_ARGUMENT`; a
//! heartbeat of an unknown node answers `success = false`; GetRun and GetFab
//! of an unknown run, of a run of another federation, or of a run that is
//! not running are `PERMISSION_DENIED` ("Run is pending.", ...), as Flower's
//! SuperNode expects. As in Flower without SuperNode authentication, any
//! caller may register a node; the signature metadata the SuperNode sends is
//! not checked.
//!
//! Handlers never write the store: node commands go through the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tonic::{Request, Response, Status};

use crate::domain::event::SubStatus;
use crate::domain::ids::RunId;
use crate::domain::node::{self, Rejection};
use crate::domain::run::{Run, Status as RunStatus};
use crate::proto::flwr::proto as pb;
use crate::proto::{self, DEFAULT_FEDERATION};
use crate::superlink::control::exec_status;
use crate::superlink::engine::ExecError;
use crate::superlink::serverappio::{envelopes, pulled_object, record, refusal_status, running_run, unix_now};
use crate::superlink::Shared;

/// The largest public key a SuperNode may register (Flower's are PEM EC
/// keys of ~180 bytes); the key is stored in an event.
pub(crate) const PUBLIC_KEY_MAX: usize = 16 * 1024;

/// Refuses a public key over [`PUBLIC_KEY_MAX`].
fn check_public_key(public_key: &[u8]) -> Result<(), Status> {
    if public_key.len() > PUBLIC_KEY_MAX {
        return Err(Status::invalid_argument(format!(
            "The public key has {} bytes; a SuperNode's public key has at most {PUBLIC_KEY_MAX}",
            public_key.len()
        )));
    }
    Ok(())
}

pub(crate) struct FleetService {
    pub shared: Arc<Shared>,
    /// Nodes that called since this SuperLink started, so that the first
    /// call of each (a new node, or one reconnecting after a restart) is
    /// logged once. A std mutex: held for one insertion, never across an
    /// await.
    seen: Mutex<BTreeSet<u64>>,
}

impl FleetService {
    pub fn new(shared: Arc<Shared>) -> FleetService {
        FleetService {
            shared,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// Logs the first call of `node_id` since the start.
    fn seen(&self, node_id: u64, call: &str) {
        if self.seen.lock().expect("seen lock").insert(node_id) {
            tracing::info!(node_id, call, "SuperNode connected");
        }
    }

    /// The run a SuperNode asks about, if it may read it: Flower checks that
    /// the run exists, that its federation exists (without federations,
    /// only Flower's default one does) and that the run is running.
    async fn running_run(&self, run_id: u64) -> Result<Run, Status> {
        let run = self
            .shared
            .engine
            .run(RunId(run_id))
            .await
            .ok_or_else(|| Status::permission_denied(format!("Run ID not found: {run_id}")))?;
        if run.submitted.federation != DEFAULT_FEDERATION {
            return Err(Status::permission_denied(format!(
                "Federation '{}' does not exist.",
                run.submitted.federation
            )));
        }
        if run.status != RunStatus::Running {
            let stopped = if run.status == RunStatus::Finished(SubStatus::Stopped) {
                " Stopped by user."
            } else {
                ""
            };
            return Err(Status::permission_denied(format!(
                "Run is {}.{stopped}",
                run.status.status_str()
            )));
        }
        Ok(run)
    }
}

/// A refused node command as Flower answers it.
fn node_status(error: ExecError) -> Status {
    match error {
        ExecError::NodeRejected(Rejection::InvalidHeartbeatInterval(_)) => {
            Status::invalid_argument("Invalid heartbeat interval")
        }
        ExecError::NodeRejected(rejection) => Status::failed_precondition(rejection.to_string()),
        other => exec_status(other),
    }
}

#[tonic::async_trait]
impl pb::fleet_server::Fleet for FleetService {
    async fn register_node(
        &self,
        request: Request<pb::RegisterNodeFleetRequest>,
    ) -> Result<Response<pb::RegisterNodeFleetResponse>, Status> {
        let public_key = request.into_inner().public_key;
        check_public_key(&public_key)?;
        let node_id = self
            .shared
            .engine
            .register_node(public_key)
            .await
            .map_err(node_status)?;
        tracing::info!(node_id, "SuperNode registered");
        Ok(Response::new(pb::RegisterNodeFleetResponse { node_id }))
    }

    async fn activate_node(
        &self,
        request: Request<pb::ActivateNodeRequest>,
    ) -> Result<Response<pb::ActivateNodeResponse>, Status> {
        let request = request.into_inner();
        check_public_key(&request.public_key)?;
        let command = node::Command::Activate {
            public_key: request.public_key,
            heartbeat_interval: request.heartbeat_interval,
        };
        let node_id = self.shared.engine.execute_node(command).await.map_err(node_status)?;
        self.seen(node_id, "ActivateNode");
        tracing::info!(node_id, "SuperNode activated");
        Ok(Response::new(pb::ActivateNodeResponse { node_id }))
    }

    async fn deactivate_node(
        &self,
        request: Request<pb::DeactivateNodeRequest>,
    ) -> Result<Response<pb::DeactivateNodeResponse>, Status> {
        let node_id = request.into_inner().node_id;
        let command = node::Command::Deactivate { node_id };
        self.shared.engine.execute_node(command).await.map_err(node_status)?;
        tracing::info!(node_id, "SuperNode deactivated");
        Ok(Response::new(pb::DeactivateNodeResponse {}))
    }

    async fn unregister_node(
        &self,
        request: Request<pb::UnregisterNodeFleetRequest>,
    ) -> Result<Response<pb::UnregisterNodeFleetResponse>, Status> {
        let node_id = request.into_inner().node_id;
        let command = node::Command::Unregister { node_id };
        self.shared.engine.execute_node(command).await.map_err(node_status)?;
        tracing::info!(node_id, "SuperNode unregistered");
        Ok(Response::new(pb::UnregisterNodeFleetResponse {}))
    }

    async fn send_node_heartbeat(
        &self,
        request: Request<pb::SendNodeHeartbeatRequest>,
    ) -> Result<Response<pb::SendNodeHeartbeatResponse>, Status> {
        let request = request.into_inner();
        let node_id = request.node.map_or(0, |node| node.node_id);
        let command = node::Command::Heartbeat {
            node_id,
            heartbeat_interval: request.heartbeat_interval,
        };
        let success = match self.shared.engine.execute_node(command).await {
            Ok(_) => true,
            Err(ExecError::NodeRejected(Rejection::UnknownNode(_))) => false,
            Err(error) => return Err(node_status(error)),
        };
        if success {
            self.seen(node_id, "SendNodeHeartbeat");
        }
        Ok(Response::new(pb::SendNodeHeartbeatResponse { success }))
    }

    async fn pull_messages(
        &self,
        request: Request<pb::PullMessagesRequest>,
    ) -> Result<Response<pb::PullMessagesResponse>, Status> {
        let Some(node) = request.into_inner().node else {
            return Err(Status::invalid_argument("PullMessages names no node"));
        };
        self.seen(node.node_id, "PullMessages");
        // One message per pull, as Flower's SuperLink hands them out.
        let pulled = self
            .shared
            .mailbox
            .lock()
            .expect("mailbox lock")
            .pull_instruction(node.node_id, unix_now());
        let Some((envelope, routed)) = pulled else {
            return Ok(Response::new(pb::PullMessagesResponse::default()));
        };
        record(&self.shared, vec![routed]).await?;
        Ok(Response::new(pb::PullMessagesResponse {
            reconnect: None,
            messages_list: vec![envelope.message],
            message_object_trees: vec![envelope.tree],
        }))
    }

    async fn push_messages(
        &self,
        request: Request<pb::PushMessagesRequest>,
    ) -> Result<Response<pb::PushMessagesResponse>, Status> {
        let request = request.into_inner();
        let mut envelopes = envelopes(request.messages_list, request.message_object_trees)?.into_iter();
        // Flower takes the first message (a SuperNode sends one).
        let Some(envelope) = envelopes.next() else {
            return Err(Status::invalid_argument("PushMessages carries no message"));
        };
        let run_id = envelope.message.metadata.as_ref().map_or(0, |m| m.run_id);
        running_run(&self.shared, run_id).await?;
        let (taken, objects_to_push, routed) = self
            .shared
            .mailbox
            .lock()
            .expect("mailbox lock")
            .push_reply(envelope, run_id, unix_now())
            .map_err(refusal_status)?;
        if taken.is_none() {
            tracing::warn!(
                run_id,
                "a SuperNode's reply answers no message in flight; it was dropped"
            );
        }
        record(&self.shared, routed).await?;
        Ok(Response::new(pb::PushMessagesResponse {
            reconnect: Some(pb::Reconnect { reconnect: 5 }),
            results: BTreeMap::from([(taken.unwrap_or_else(|| "None".into()), 0)]),
            objects_to_push,
        }))
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::GetRunResponse>, Status> {
        let run = self.running_run(request.into_inner().run_id).await?;
        Ok(Response::new(pb::GetRunResponse {
            run: Some(proto::run_to_proto(&run)),
        }))
    }

    async fn get_fab(&self, request: Request<pb::GetFabRequest>) -> Result<Response<pb::GetFabResponse>, Status> {
        let request = request.into_inner();
        self.running_run(request.run_id).await?;
        let ffs = Arc::clone(&self.shared.ffs);
        let hash = request.hash_str.clone();
        let content = tokio::task::spawn_blocking(move || ffs.get(&hash))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|_| Status::permission_denied(format!("Found no FAB with hash: {}", request.hash_str)))?;
        Ok(Response::new(pb::GetFabResponse {
            fab: Some(pb::Fab {
                hash_str: request.hash_str,
                content,
                verifications: Default::default(),
            }),
        }))
    }

    async fn push_object(
        &self,
        request: Request<pb::PushObjectRequest>,
    ) -> Result<Response<pb::PushObjectResponse>, Status> {
        let request = request.into_inner();
        running_run(&self.shared, request.run_id).await?;
        let (stored, routed) = self
            .shared
            .mailbox
            .lock()
            .expect("mailbox lock")
            .push_object(&request.object_id, request.object_content)
            .map_err(refusal_status)?;
        record(&self.shared, routed).await?;
        Ok(Response::new(pb::PushObjectResponse { stored }))
    }

    async fn pull_object(
        &self,
        request: Request<pb::PullObjectRequest>,
    ) -> Result<Response<pb::PullObjectResponse>, Status> {
        let request = request.into_inner();
        running_run(&self.shared, request.run_id).await?;
        let pulled = self
            .shared
            .mailbox
            .lock()
            .expect("mailbox lock")
            .pull_object(&request.object_id);
        Ok(Response::new(pulled_object(pulled)))
    }

    async fn confirm_message_received(
        &self,
        request: Request<pb::ConfirmMessageReceivedRequest>,
    ) -> Result<Response<pb::ConfirmMessageReceivedResponse>, Status> {
        let request = request.into_inner();
        running_run(&self.shared, request.run_id).await?;
        self.shared
            .mailbox
            .lock()
            .expect("mailbox lock")
            .confirm(&request.message_object_id);
        Ok(Response::new(pb::ConfirmMessageReceivedResponse {}))
    }
}
