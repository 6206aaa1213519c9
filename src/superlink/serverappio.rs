//! Flower's `ServerAppIo` service (1.27), which the ServerApp process of a
//! deployment run uses: the run's life (claim, inputs, heartbeat, logs,
//! outputs, status) exactly as SimulationIo serves it, and the run's
//! messages: `GetNodes`, `PushMessages` and `PullMessages`, and the objects
//! of their contents (`PushObject`, `PullObject`, `ConfirmMessageReceived`),
//! held by the [`Mailbox`](super::mailbox::Mailbox) until the SuperNodes
//! (Fleet API) take them.
//!
//! Status codes and texts are Flower 1.27's: a run that is not running is
//! `PERMISSION_DENIED` ("Run is pending.", ...); a malformed PushMessages is
//! refused with Flower's "Malformed PushMessages: ..." (as
//! `INVALID_ARGUMENT`, where Flower lets the exception become `UNKNOWN`);
//! objects pushed or pulled for another node than the SuperLink's are
//! `FAILED_PRECONDITION` ("Unexpected node ID."). As in Flower, the message
//! calls carry no token.
//!
//! Every message that passes is recorded as a `MessageRouted` event of its
//! run. Handlers never write the store: events go through the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::domain::event::SubStatus;
use crate::domain::ids::RunId;
use crate::domain::node::NodeStatus;
use crate::domain::run::{Command, Run, Status as RunStatus};
use crate::proto::flwr::proto as pb;
use crate::records::SUPERLINK_NODE_ID;
use crate::superlink::control::exec_status;
use crate::superlink::mailbox::{Envelope, Pulled, Refusal, Routed};
use crate::superlink::simulationio::SimulationIoService;
use crate::superlink::Shared;

/// The seconds since the Unix epoch, as Flower's message times count them.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The run, if messages may pass for it: Flower's `check_abort` (only a
/// running run), with its texts.
pub(crate) async fn running_run(shared: &Shared, run_id: u64) -> Result<Run, Status> {
    let run = shared
        .engine
        .run(RunId(run_id))
        .await
        .ok_or_else(|| Status::permission_denied(format!("Run ID not found: {run_id}")))?;
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

/// Every SuperNode's status now.
pub(crate) async fn node_statuses(shared: &Shared) -> Result<BTreeMap<u64, NodeStatus>, Status> {
    let nodes = shared.engine.nodes().await.map_err(exec_status)?;
    Ok(nodes.into_iter().map(|(node, _)| (node.node_id, node.status)).collect())
}

/// Records the hops of messages as events of their runs (a run that has
/// finished meanwhile records nothing more).
pub(crate) async fn record(shared: &Shared, routed: Vec<Routed>) -> Result<(), Status> {
    let mut by_run: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    for (run_id, event) in routed {
        by_run.entry(run_id).or_default().push(event);
    }
    for (run_id, events) in by_run {
        match shared
            .engine
            .execute(RunId(run_id), Command::RouteMessages(events))
            .await
        {
            Ok(_) => {}
            Err(crate::superlink::engine::ExecError::Rejected(rejection)) => {
                tracing::debug!(run_id, %rejection, "message events not recorded");
            }
            Err(error) => return Err(exec_status(error)),
        }
    }
    Ok(())
}

/// A refused message or object, as Flower answers it.
pub(crate) fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Malformed(_) | Refusal::InvalidObjectId(_) => Status::invalid_argument(refusal.to_string()),
        Refusal::UnexpectedStructure { .. } => Status::failed_precondition(refusal.to_string()),
        Refusal::Full { .. } => Status::resource_exhausted(refusal.to_string()),
    }
}

/// Pairs messages with their trees (Flower zips them strictly).
pub(crate) fn envelopes(messages: Vec<pb::Message>, trees: Vec<pb::ObjectTree>) -> Result<Vec<Envelope>, Status> {
    if messages.len() != trees.len() {
        return Err(Status::invalid_argument(format!(
            "Malformed PushMessages: {} messages and {} object trees",
            messages.len(),
            trees.len()
        )));
    }
    Ok(messages
        .into_iter()
        .zip(trees)
        .map(|(message, tree)| Envelope { message, tree })
        .collect())
}

pub(crate) struct ServerAppIoService {
    pub shared: Arc<Shared>,
    /// The run's life is served as SimulationIo serves it.
    life: SimulationIoService,
}

impl ServerAppIoService {
    pub fn new(shared: Arc<Shared>) -> ServerAppIoService {
        ServerAppIoService {
            life: SimulationIoService {
                shared: Arc::clone(&shared),
            },
            shared,
        }
    }

    fn superlink_node(node: Option<&pb::Node>) -> Result<(), Status> {
        match node {
            Some(node) if node.node_id == SUPERLINK_NODE_ID => Ok(()),
            _ => Err(Status::failed_precondition("Unexpected node ID.")),
        }
    }
}

use pb::simulation_io_server::SimulationIo as _;

#[tonic::async_trait]
impl pb::server_app_io_server::ServerAppIo for ServerAppIoService {
    async fn list_apps_to_launch(
        &self,
        request: Request<pb::ListAppsToLaunchRequest>,
    ) -> Result<Response<pb::ListAppsToLaunchResponse>, Status> {
        self.life.list_apps_to_launch(request).await
    }

    async fn request_token(
        &self,
        request: Request<pb::RequestTokenRequest>,
    ) -> Result<Response<pb::RequestTokenResponse>, Status> {
        self.life.request_token(request).await
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::GetRunResponse>, Status> {
        self.life.get_run(request).await
    }

    async fn send_app_heartbeat(
        &self,
        request: Request<pb::SendAppHeartbeatRequest>,
    ) -> Result<Response<pb::SendAppHeartbeatResponse>, Status> {
        self.life.send_app_heartbeat(request).await
    }

    async fn pull_app_inputs(
        &self,
        request: Request<pb::PullAppInputsRequest>,
    ) -> Result<Response<pb::PullAppInputsResponse>, Status> {
        self.life.pull_app_inputs(request).await
    }

    async fn push_app_outputs(
        &self,
        request: Request<pb::PushAppOutputsRequest>,
    ) -> Result<Response<pb::PushAppOutputsResponse>, Status> {
        self.life.push_app_outputs(request).await
    }

    async fn update_run_status(
        &self,
        request: Request<pb::UpdateRunStatusRequest>,
    ) -> Result<Response<pb::UpdateRunStatusResponse>, Status> {
        let run_id = request.get_ref().run_id;
        let finishing = request
            .get_ref()
            .run_status
            .as_ref()
            .is_some_and(|status| status.status == "finished");
        let response = self.life.update_run_status(request).await?;
        if finishing {
            // What the run left in flight goes with it (Flower:
            // `delete_objects_in_run`).
            self.shared.mailbox.lock().expect("mailbox lock").drop_run(run_id);
        }
        Ok(response)
    }

    async fn push_logs(&self, request: Request<pb::PushLogsRequest>) -> Result<Response<pb::PushLogsResponse>, Status> {
        self.life.push_logs(request).await
    }

    async fn get_nodes(&self, request: Request<pb::GetNodesRequest>) -> Result<Response<pb::GetNodesResponse>, Status> {
        running_run(&self.shared, request.into_inner().run_id).await?;
        let nodes = node_statuses(&self.shared).await?;
        Ok(Response::new(pb::GetNodesResponse {
            nodes: nodes
                .into_iter()
                .filter(|(_, status)| *status == NodeStatus::Online)
                .map(|(node_id, _)| pb::Node { node_id })
                .collect(),
        }))
    }

    async fn push_messages(
        &self,
        request: Request<pb::PushAppMessagesRequest>,
    ) -> Result<Response<pb::PushAppMessagesResponse>, Status> {
        let request = request.into_inner();
        running_run(&self.shared, request.run_id).await?;
        let envelopes = envelopes(request.messages_list, request.message_object_trees)?;
        let nodes = node_statuses(&self.shared).await?;
        let pushed = self
            .shared
            .mailbox
            .lock()
            .expect("mailbox lock")
            .push_instructions(request.run_id, envelopes, &nodes, unix_now())
            .map_err(refusal_status)?;
        record(&self.shared, pushed.routed).await?;
        Ok(Response::new(pb::PushAppMessagesResponse {
            message_ids: pushed.message_ids,
            objects_to_push: pushed.objects_to_push,
        }))
    }

    async fn pull_messages(
        &self,
        request: Request<pb::PullAppMessagesRequest>,
    ) -> Result<Response<pb::PullAppMessagesResponse>, Status> {
        let request = request.into_inner();
        running_run(&self.shared, request.run_id).await?;
        let nodes = node_statuses(&self.shared).await?;
        let (replies, routed) = self.shared.mailbox.lock().expect("mailbox lock").pull_replies(
            request.run_id,
            &request.message_ids,
            &nodes,
            unix_now(),
        );
        record(&self.shared, routed).await?;
        let (messages_list, message_object_trees) = replies
            .into_iter()
            .map(|envelope| (envelope.message, envelope.tree))
            .unzip();
        Ok(Response::new(pb::PullAppMessagesResponse {
            messages_list,
            message_object_trees,
        }))
    }

    async fn push_object(
        &self,
        request: Request<pb::PushObjectRequest>,
    ) -> Result<Response<pb::PushObjectResponse>, Status> {
        let request = request.into_inner();
        running_run(&self.shared, request.run_id).await?;
        Self::superlink_node(request.node.as_ref())?;
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
        Self::superlink_node(request.node.as_ref())?;
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

/// PullObject's answer (the bytes are copied outside the mailbox's lock).
pub(crate) fn pulled_object(pulled: Pulled) -> pb::PullObjectResponse {
    match pulled {
        Pulled::NotFound => pb::PullObjectResponse {
            object_found: false,
            object_available: false,
            object_content: Vec::new(),
        },
        Pulled::NotAvailable => pb::PullObjectResponse {
            object_found: true,
            object_available: false,
            object_content: Vec::new(),
        },
        Pulled::Available(content) => pb::PullObjectResponse {
            object_found: true,
            object_available: true,
            object_content: content.as_ref().clone(),
        },
    }
}
