//! The SuperNode state machine of a deployment: `decide` validates a Fleet
//! API call (or the SuperLink's own offline verdict) into node events,
//! `apply` folds a node event into [`Nodes`].
//!
//! Flower 1.27's rules (its `LinkState`): a node is created *registered*
//! with a public key no other node ever had (an unregistered node keeps its
//! key), becomes *online* when it activates (from registered or offline) or
//! heartbeats (from registered or offline), *offline* when it deactivates
//! (only from online) or its heartbeats stop (the SuperLink's verdict), and
//! *unregistered* for good (from any other status). Heartbeat intervals must
//! lie between [`HEARTBEAT_INTERVAL_MIN`] and [`HEARTBEAT_INTERVAL_MAX`]
//! seconds.
//!
//! Both functions are pure: no I/O, no clock (the time of an event is an
//! argument of `apply`), no randomness (node ids arrive inside commands).
//! When a heartbeat is due is not history and not here: the engine keeps
//! the deadlines and sends [`Command::MarkOffline`].

use std::collections::BTreeMap;

use crate::domain::event::{Event, NodeActivated, NodeDeactivated, NodeRegistered, NodeUnregistered, NodeWentOffline};
use crate::domain::ids::Micros;

/// Flower's `HEARTBEAT_MIN_INTERVAL`, in seconds.
pub const HEARTBEAT_INTERVAL_MIN: f64 = 10.0;
/// Flower's `HEARTBEAT_MAX_INTERVAL`, in seconds.
pub const HEARTBEAT_INTERVAL_MAX: f64 = 1800.0;
/// Flower's `HEARTBEAT_PATIENCE`: a node is online until `patience ×
/// heartbeat_interval` after its last activation or heartbeat, so it may miss
/// one heartbeat.
pub const HEARTBEAT_PATIENCE: f64 = 2.0;
/// Node ids Flower never hands out: 0 (no node) and 1 (the SuperLink's own,
/// `SUPERLINK_NODE_ID`).
pub const RESERVED_NODE_IDS: [u64; 2] = [0, 1];

/// Flower's `NodeStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeStatus {
    Registered,
    Online,
    Offline,
    Unregistered,
}

impl NodeStatus {
    /// Flower's status string (`NodeInfo.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Registered => "registered",
            NodeStatus::Online => "online",
            NodeStatus::Offline => "offline",
            NodeStatus::Unregistered => "unregistered",
        }
    }

    pub fn parse(text: &str) -> Option<NodeStatus> {
        match text {
            "registered" => Some(NodeStatus::Registered),
            "online" => Some(NodeStatus::Online),
            "offline" => Some(NodeStatus::Offline),
            "unregistered" => Some(NodeStatus::Unregistered),
            _ => None,
        }
    }
}

/// One SuperNode, as Flower's `NodeInfo` describes it (without
/// `online_until`, which is not history). Also the row of the `nodes`
/// projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub node_id: u64,
    pub public_key: Vec<u8>,
    pub status: NodeStatus,
    pub registered_at: Micros,
    pub last_activated_at: Option<Micros>,
    pub last_deactivated_at: Option<Micros>,
    pub unregistered_at: Option<Micros>,
    /// Seconds, as the node's last activation said (0 before it activated).
    pub heartbeat_interval: f64,
}

/// Every node ever registered, by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Nodes {
    pub nodes: BTreeMap<u64, Node>,
}

impl Nodes {
    /// The node that registered `public_key`, whatever its status.
    pub fn by_public_key(&self, public_key: &[u8]) -> Option<&Node> {
        self.nodes.values().find(|node| node.public_key == public_key)
    }
}

/// What the Fleet API (or the SuperLink itself) asks of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `RegisterNode`, with the id the engine drew.
    Register { node_id: u64, public_key: Vec<u8> },
    /// `ActivateNode`: the node is found by its public key.
    Activate {
        public_key: Vec<u8>,
        heartbeat_interval: f64,
    },
    /// `DeactivateNode`.
    Deactivate { node_id: u64 },
    /// `UnregisterNode`.
    Unregister { node_id: u64 },
    /// `SendNodeHeartbeat`: brings a registered or offline node online.
    Heartbeat { node_id: u64, heartbeat_interval: f64 },
    /// The SuperLink saw no heartbeat in time.
    MarkOffline { node_id: u64 },
}

/// Why a node command was refused, with Flower 1.27's texts. Nothing changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// Flower's `PUBLIC_KEY_ALREADY_IN_USE_MESSAGE`.
    #[error("Public key already in use")]
    PublicKeyInUse,
    /// The drawn id is taken (the engine draws another).
    #[error("node ID {0} is already taken")]
    NodeIdTaken(u64),
    #[error("No SuperNode found with the given public key.")]
    NoNodeWithPublicKey,
    #[error("Heartbeat interval {0} is out of bounds [10, 1800].")]
    InvalidHeartbeatInterval(f64),
    #[error("SuperNode with node ID {0} could not be activated.")]
    CannotActivate(u64),
    #[error("SuperNode with node ID {0} could not be deactivated.")]
    CannotDeactivate(u64),
    #[error("Node ID {0} already unregistered, not found or the request was unauthorized.")]
    CannotUnregister(u64),
    /// A heartbeat of a node that does not exist or is unregistered
    /// (Flower answers `success = false`).
    #[error("SuperNode {0} is not registered")]
    UnknownNode(u64),
}

fn check_interval(interval: f64) -> Result<(), Rejection> {
    if (HEARTBEAT_INTERVAL_MIN..=HEARTBEAT_INTERVAL_MAX).contains(&interval) {
        Ok(())
    } else {
        Err(Rejection::InvalidHeartbeatInterval(interval))
    }
}

/// Validates `command` against `nodes`, returning the events to append
/// (possibly none) or why it is refused.
pub fn decide(nodes: &Nodes, command: &Command) -> Result<Vec<Event>, Rejection> {
    let live = |node_id: u64| {
        nodes
            .nodes
            .get(&node_id)
            .filter(|node| node.status != NodeStatus::Unregistered)
    };
    match command {
        Command::Register { node_id, public_key } => {
            if nodes.by_public_key(public_key).is_some() {
                return Err(Rejection::PublicKeyInUse);
            }
            if RESERVED_NODE_IDS.contains(node_id) || nodes.nodes.contains_key(node_id) {
                return Err(Rejection::NodeIdTaken(*node_id));
            }
            Ok(vec![Event::NodeRegistered(NodeRegistered {
                node_id: *node_id,
                public_key: public_key.clone(),
            })])
        }
        Command::Activate {
            public_key,
            heartbeat_interval,
        } => {
            let node = nodes
                .by_public_key(public_key)
                .filter(|node| node.status != NodeStatus::Unregistered)
                .ok_or(Rejection::NoNodeWithPublicKey)?;
            check_interval(*heartbeat_interval)?;
            match node.status {
                NodeStatus::Registered | NodeStatus::Offline => Ok(vec![Event::NodeActivated(NodeActivated {
                    node_id: node.node_id,
                    heartbeat_interval: *heartbeat_interval,
                })]),
                NodeStatus::Online | NodeStatus::Unregistered => Err(Rejection::CannotActivate(node.node_id)),
            }
        }
        Command::Deactivate { node_id } => match live(*node_id).map(|node| node.status) {
            Some(NodeStatus::Online) => Ok(vec![Event::NodeDeactivated(NodeDeactivated { node_id: *node_id })]),
            _ => Err(Rejection::CannotDeactivate(*node_id)),
        },
        Command::Unregister { node_id } => match live(*node_id) {
            Some(_) => Ok(vec![Event::NodeUnregistered(NodeUnregistered { node_id: *node_id })]),
            None => Err(Rejection::CannotUnregister(*node_id)),
        },
        Command::Heartbeat {
            node_id,
            heartbeat_interval,
        } => {
            check_interval(*heartbeat_interval)?;
            let node = live(*node_id).ok_or(Rejection::UnknownNode(*node_id))?;
            Ok(match node.status {
                NodeStatus::Online => vec![],
                _ => vec![Event::NodeActivated(NodeActivated {
                    node_id: *node_id,
                    heartbeat_interval: *heartbeat_interval,
                })],
            })
        }
        Command::MarkOffline { node_id } => Ok(match live(*node_id).map(|node| node.status) {
            Some(NodeStatus::Online) => vec![Event::NodeWentOffline(NodeWentOffline { node_id: *node_id })],
            _ => vec![],
        }),
    }
}

/// Whether `apply` folds `event` (the node events).
pub fn is_node_event(event: &Event) -> bool {
    event.node_id().is_some()
}

/// Folds one node event, recorded at `at`, into `nodes`; other events
/// change nothing. Total over every event [`decide`] can emit.
pub fn apply(nodes: &mut Nodes, event: &Event, at: Micros) {
    if let Event::NodeRegistered(registered) = event {
        nodes.nodes.insert(
            registered.node_id,
            Node {
                node_id: registered.node_id,
                public_key: registered.public_key.clone(),
                status: NodeStatus::Registered,
                registered_at: at,
                last_activated_at: None,
                last_deactivated_at: None,
                unregistered_at: None,
                heartbeat_interval: 0.0,
            },
        );
        return;
    }
    let Some(node_id) = event.node_id() else {
        return;
    };
    let Some(node) = nodes.nodes.get_mut(&node_id) else {
        // Only `decide` produces node events, and it refuses unknown nodes.
        panic!(
            "event {} for unknown node {node_id}: the event log is corrupt",
            event.kind()
        );
    };
    match event {
        Event::NodeActivated(activated) => {
            node.status = NodeStatus::Online;
            node.last_activated_at = Some(at);
            node.heartbeat_interval = activated.heartbeat_interval;
        }
        Event::NodeDeactivated(_) | Event::NodeWentOffline(_) => {
            node.status = NodeStatus::Offline;
            node.last_deactivated_at = Some(at);
        }
        Event::NodeUnregistered(_) => {
            node.status = NodeStatus::Unregistered;
            node.unregistered_at = Some(at);
        }
        _ => unreachable!("not a node event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `commands` against no nodes, recording each outcome.
    fn script(commands: &[Command]) -> (Nodes, Vec<String>) {
        let mut nodes = Nodes::default();
        let mut outcomes = Vec::new();
        for (at, command) in commands.iter().enumerate() {
            match decide(&nodes, command) {
                Ok(events) => {
                    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
                    outcomes.push(format!("ok {}", kinds.join(" ")).trim_end().to_string());
                    for event in &events {
                        apply(&mut nodes, event, Micros(at as i64));
                    }
                }
                Err(rejection) => outcomes.push(format!("rejected: {rejection}")),
            }
        }
        (nodes, outcomes)
    }

    #[test]
    fn follows_flower_node_lifecycle() {
        let key = b"key-a".to_vec();
        let activate = |interval: f64| Command::Activate {
            public_key: key.clone(),
            heartbeat_interval: interval,
        };
        let (nodes, outcomes) = script(&[
            activate(30.0),
            Command::Register {
                node_id: 1,
                public_key: key.clone(),
            },
            Command::Register {
                node_id: 7,
                public_key: key.clone(),
            },
            Command::Register {
                node_id: 7,
                public_key: key.clone(),
            },
            Command::Heartbeat {
                node_id: 8,
                heartbeat_interval: 30.0,
            },
            activate(5.0),
            activate(30.0),
            activate(30.0),
            Command::Heartbeat {
                node_id: 7,
                heartbeat_interval: 30.0,
            },
            Command::MarkOffline { node_id: 7 },
            Command::MarkOffline { node_id: 7 },
            Command::Deactivate { node_id: 7 },
            Command::Heartbeat {
                node_id: 7,
                heartbeat_interval: 30.0,
            },
            Command::Deactivate { node_id: 7 },
            activate(30.0),
            Command::Unregister { node_id: 7 },
            Command::Unregister { node_id: 7 },
            Command::Heartbeat {
                node_id: 7,
                heartbeat_interval: 30.0,
            },
            activate(30.0),
            Command::Register {
                node_id: 9,
                public_key: key.clone(),
            },
        ]);
        insta::assert_snapshot!(outcomes.join("\n"), @r"
        rejected: No SuperNode found with the given public key.
        rejected: node ID 1 is already taken
        ok NodeRegistered
        rejected: Public key already in use
        rejected: SuperNode 8 is not registered
        rejected: Heartbeat interval 5 is out of bounds [10, 1800].
        ok NodeActivated
        rejected: SuperNode with node ID 7 could not be activated.
        ok
        ok NodeWentOffline
        ok
        rejected: SuperNode with node ID 7 could not be deactivated.
        ok NodeActivated
        ok NodeDeactivated
        ok NodeActivated
        ok NodeUnregistered
        rejected: Node ID 7 already unregistered, not found or the request was unauthorized.
        rejected: SuperNode 7 is not registered
        rejected: No SuperNode found with the given public key.
        rejected: Public key already in use
        ");
        let node = &nodes.nodes[&7];
        assert_eq!(node.status, NodeStatus::Unregistered);
        assert_eq!(
            (
                node.registered_at,
                node.last_activated_at,
                node.last_deactivated_at,
                node.unregistered_at
            ),
            (Micros(2), Some(Micros(14)), Some(Micros(13)), Some(Micros(15)))
        );
        assert_eq!(node.heartbeat_interval, 30.0);
    }
}
