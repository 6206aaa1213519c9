//! The encoding of events, `(kind, version, payload)`: how the store keeps
//! them, how the app process pushes them (PushEvents), and what replay
//! compares. A format of the whole product, not a detail of the store.
//!
//! Payloads are MessagePack (rmp-serde) maps with named fields, one versioned
//! payload type per kind. Every kind starts at version 1. To change a payload,
//! add a new version: keep the old payload type here, decode it and upgrade it
//! to the current domain value, and encode only the newest version. A log
//! written today therefore stays readable by every later build; a log written
//! by a later build with a version this build does not know is refused with
//! [`Error::UnknownVersion`], never misread.
//!
//! Encoding is canonical: `encode(decode(bytes)) == bytes` for every payload
//! this build writes (tests check it), which is what lets replay compare
//! events byte for byte.
//!
//! This module is the only place that knows the byte layout of events; it
//! does no I/O.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::event::*;

/// The current version of every kind's payload.
pub(crate) const VERSION: u32 = 1;

/// Why bytes could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown event kind {kind:?}; the event log was written by a newer or foreign program")]
    UnknownKind { kind: String },
    #[error("event kind {kind} has payload version {version}, this build reads up to {VERSION}; the event log was written by a newer build")]
    UnknownVersion { kind: String, version: u32 },
    #[error("malformed {kind} payload: {source}; this indicates data corruption")]
    Malformed {
        kind: String,
        source: rmp_serde::decode::Error,
    },
}

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail: no I/O, no maps with
    // non-string keys, no unsupported types.
    rmp_serde::to_vec_named(value).expect("event payloads always encode")
}

/// Encodes a value with the same rules as event payloads (for projection
/// columns that hold structured data).
pub(crate) fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    to_bytes(value)
}

/// Decodes what [`encode_value`] wrote.
pub(crate) fn decode_value<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|source| Error::Malformed {
        kind: what.to_string(),
        source,
    })
}

/// Unit payloads are encoded as MessagePack `nil`.
const UNIT: &[u8] = &[0xc0];

/// `(kind, version, payload)` of an event.
pub fn encode(event: &Event) -> (&'static str, u32, Vec<u8>) {
    let payload = match event {
        Event::RunSubmitted(e) => to_bytes(e),
        Event::RunStarting | Event::RunRunning | Event::RunStopRequested => UNIT.to_vec(),
        Event::RunFinished(e) => to_bytes(e),
        Event::LogAppended(e) => to_bytes(e),
        Event::AppProcessStarted(e) => to_bytes(e),
        Event::UsageRecorded(e) => to_bytes(e),
        Event::NodeRegistered(e) => to_bytes(e),
        Event::NodeActivated(e) => to_bytes(e),
        Event::NodeDeactivated(e) => to_bytes(e),
        Event::NodeUnregistered(e) => to_bytes(e),
        Event::NodeWentOffline(e) => to_bytes(e),
        Event::MessageRouted(e) => to_bytes(e),
        Event::SimulationStarted(e) => to_bytes(e),
        Event::NodesRegistered(e) => to_bytes(e),
        Event::RoundStarted(e) => to_bytes(e),
        Event::NodeSampled(e) => to_bytes(e),
        Event::ReplyReceived(e) => to_bytes(e),
        Event::Aggregated(e) => to_bytes(e),
        Event::CentralEvaluated(e) => to_bytes(e),
        Event::SimulationStopped(e) => to_bytes(e),
        Event::SimulationFinished(e) => to_bytes(e),
        Event::PythonStarted(e) => to_bytes(e),
        Event::MessageSent(e) => to_bytes(e),
        Event::ReplyDelivered(e) => to_bytes(e),
    };
    (event.kind(), VERSION, payload)
}

/// Reads an event back from its stored form.
pub fn decode(kind: &str, version: u32, payload: &[u8]) -> Result<Event, Error> {
    fn payload_of<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T, Error> {
        decode_value(kind, bytes)
    }
    if version == 0 || version > VERSION {
        // Known kinds only have version 1 so far; see the module doc for how
        // a version 2 is added.
        if KINDS.contains(&kind) {
            return Err(Error::UnknownVersion {
                kind: kind.to_string(),
                version,
            });
        }
    }
    let event = match kind {
        "RunSubmitted" => Event::RunSubmitted(payload_of(kind, payload)?),
        "RunStarting" => unit(kind, payload, Event::RunStarting)?,
        "RunRunning" => unit(kind, payload, Event::RunRunning)?,
        "RunStopRequested" => unit(kind, payload, Event::RunStopRequested)?,
        "RunFinished" => Event::RunFinished(payload_of(kind, payload)?),
        "LogAppended" => Event::LogAppended(payload_of(kind, payload)?),
        "AppProcessStarted" => Event::AppProcessStarted(payload_of(kind, payload)?),
        "UsageRecorded" => Event::UsageRecorded(payload_of(kind, payload)?),
        "NodeRegistered" => Event::NodeRegistered(payload_of(kind, payload)?),
        "NodeActivated" => Event::NodeActivated(payload_of(kind, payload)?),
        "NodeDeactivated" => Event::NodeDeactivated(payload_of(kind, payload)?),
        "NodeUnregistered" => Event::NodeUnregistered(payload_of(kind, payload)?),
        "NodeWentOffline" => Event::NodeWentOffline(payload_of(kind, payload)?),
        "MessageRouted" => Event::MessageRouted(payload_of(kind, payload)?),
        "SimulationStarted" => Event::SimulationStarted(payload_of(kind, payload)?),
        "NodesRegistered" => Event::NodesRegistered(payload_of(kind, payload)?),
        "RoundStarted" => Event::RoundStarted(payload_of(kind, payload)?),
        "NodeSampled" => Event::NodeSampled(payload_of(kind, payload)?),
        "ReplyReceived" => Event::ReplyReceived(payload_of(kind, payload)?),
        "Aggregated" => Event::Aggregated(payload_of(kind, payload)?),
        "CentralEvaluated" => Event::CentralEvaluated(payload_of(kind, payload)?),
        "SimulationStopped" => Event::SimulationStopped(payload_of(kind, payload)?),
        "SimulationFinished" => Event::SimulationFinished(payload_of(kind, payload)?),
        "PythonStarted" => Event::PythonStarted(payload_of(kind, payload)?),
        "MessageSent" => Event::MessageSent(payload_of(kind, payload)?),
        "ReplyDelivered" => Event::ReplyDelivered(payload_of(kind, payload)?),
        other => {
            return Err(Error::UnknownKind {
                kind: other.to_string(),
            })
        }
    };
    Ok(event)
}

fn unit(kind: &str, payload: &[u8], event: Event) -> Result<Event, Error> {
    let () = decode_value(kind, payload)?;
    Ok(event)
}

/// Every kind this build knows.
const KINDS: &[&str] = &[
    "RunSubmitted",
    "RunStarting",
    "RunRunning",
    "RunStopRequested",
    "RunFinished",
    "LogAppended",
    "AppProcessStarted",
    "UsageRecorded",
    "NodeRegistered",
    "NodeActivated",
    "NodeDeactivated",
    "NodeUnregistered",
    "NodeWentOffline",
    "MessageRouted",
    "SimulationStarted",
    "NodesRegistered",
    "RoundStarted",
    "NodeSampled",
    "ReplyReceived",
    "Aggregated",
    "CentralEvaluated",
    "SimulationStopped",
    "SimulationFinished",
    "PythonStarted",
    "MessageSent",
    "ReplyDelivered",
];

/// An event in its stored form, undecoded: as the store keeps it, the
/// Local API streams it and replay compares it.
#[derive(Clone, Debug, PartialEq)]
pub struct RawEvent {
    pub seq: crate::domain::ids::Seq,
    pub kind: String,
    pub version: u32,
    pub payload: Vec<u8>,
    pub at: crate::domain::ids::Micros,
}

/// One event of every kind, with nested records, options and enums filled
/// in: the valid payloads the property tests mutate (here and in
/// `superlink::simulationio`).
#[cfg(test)]
pub(crate) fn sample_events() -> Vec<Event> {
    use crate::domain::ids::RunId;
    use crate::records::{ConfigRecord, ConfigValue, Digest, MetricRecord, MetricValue, Scalar};

    let mut options = ConfigRecord::new();
    options.insert("num-supernodes", ConfigValue::Int(10));
    let mut metrics = MetricRecord::new();
    metrics.insert("loss", MetricValue::Float(0.25));
    metrics.insert("counts", MetricValue::IntList(vec![1, -2, 3]));
    metrics.insert("accs", MetricValue::FloatList(vec![0.5, 1e-9]));
    let config: crate::records::UserConfig = [
        ("lr".to_string(), Scalar::Float(0.5)),
        ("epochs".to_string(), Scalar::Int(3)),
        ("name".to_string(), Scalar::Str("ä".into())),
        ("on".to_string(), Scalar::Bool(true)),
    ]
    .into_iter()
    .collect();
    vec![
        Event::RunSubmitted(RunSubmitted {
            run_id: RunId(5),
            fab_id: "p/a".into(),
            fab_version: "1.0.0".into(),
            fab_hash: "ab".into(),
            override_config: config.clone(),
            federation: "@none/default".into(),
            federation_options: options,
            seed: 42,
            build: "floret 0.1.0".into(),
        }),
        Event::RunStarting,
        Event::RunRunning,
        Event::RunStopRequested,
        Event::RunFinished(RunFinished {
            sub_status: SubStatus::Failed,
            details: "boom".into(),
        }),
        Event::LogAppended(LogAppended { text: "line\n".into() }),
        Event::AppProcessStarted(AppProcessStarted {
            build: BuildIdentity {
                build: "floret 0.1.0".into(),
                commit: Some("abc".into()),
                dirty: Some(false),
                sources: "00".into(),
                compiler: "rustc".into(),
                target: "x86_64".into(),
                profile: "debug".into(),
                target_features: "sse2".into(),
            },
            platform: Platform {
                arch: "x86_64".into(),
                os: "linux".into(),
                cpu_features: vec!["avx2".into()],
                libc: "glibc 2.39".into(),
            },
        }),
        Event::UsageRecorded(Usage {
            bytes_sent: 300,
            bytes_recv: 5,
            clientapp_runtime: 0.5,
        }),
        Event::NodeRegistered(NodeRegistered {
            node_id: u64::MAX - 3,
            public_key: b"-----BEGIN PUBLIC KEY-----\n\x00\xff".to_vec(),
        }),
        Event::NodeActivated(NodeActivated {
            node_id: 2,
            heartbeat_interval: 30.0,
        }),
        Event::NodeDeactivated(NodeDeactivated { node_id: 2 }),
        Event::NodeUnregistered(NodeUnregistered { node_id: 2 }),
        Event::NodeWentOffline(NodeWentOffline { node_id: 2 }),
        Event::MessageRouted(MessageRouted {
            hop: Hop::Replied,
            message_id: "ab".repeat(32),
            reply_to: "cd".repeat(32),
            src_node_id: 2,
            dst_node_id: 1,
            message_type: "train".into(),
            group_id: "3".into(),
            bytes: 1 << 20,
            error_code: Some(2),
        }),
        Event::SimulationStarted(SimulationStarted {
            num_supernodes: 10,
            server_app: "a.server:app".into(),
            client_app: "a.client:app".into(),
            run_config: config,
            num_rounds: 3,
            strategy: "FedAvg".into(),
        }),
        Event::NodesRegistered(NodesRegistered {
            node_ids: vec![1, u64::MAX, 7],
        }),
        Event::RoundStarted(RoundStarted { round: 1 }),
        Event::NodeSampled(NodeSampled {
            round: 1,
            phase: Phase::Evaluate,
            node_id: 9,
        }),
        Event::ReplyReceived(ReplyReceived {
            round: 1,
            phase: Phase::Train,
            node_id: 9,
            reply: Reply::Content {
                metrics: Some(metrics.clone()),
                arrays: Some(Digest([1; 32])),
            },
        }),
        Event::ReplyReceived(ReplyReceived {
            round: 2,
            phase: Phase::Evaluate,
            node_id: 3,
            reply: Reply::Error {
                code: -1,
                reason: "fault".into(),
                injected: true,
            },
        }),
        Event::Aggregated(Aggregated {
            round: 1,
            phase: Phase::Train,
            results: 4,
            failures: 1,
            metrics: Some(metrics.clone()),
            arrays: Some(Digest([2; 32])),
        }),
        Event::CentralEvaluated(CentralEvaluated {
            round: 0,
            metrics: None,
        }),
        Event::SimulationStopped(SimulationStopped {
            round: 2,
            before: "evaluate".into(),
        }),
        Event::SimulationFinished(SimulationFinished {
            rounds_completed: 3,
            arrays: None,
            outcome: Outcome::Failed { reason: "x".into() },
        }),
        Event::PythonStarted(PythonStarted {
            interpreter: "/usr/bin/python3".into(),
            python: "3.12".into(),
            flwr: "1.27.0".into(),
            libraries: vec!["numpy=2.0".into()],
            workers: 2,
            server_api: "message".into(),
        }),
        Event::MessageSent(MessageSent {
            step: 1,
            round: Some(1),
            node_id: 4,
            message_type: "train".into(),
            group_id: "1".into(),
            content: Digest([3; 32]),
        }),
        Event::ReplyDelivered(ReplyDelivered {
            step: 1,
            round: None,
            node_id: 4,
            reply: Delivered::Content {
                metrics: Some(metrics),
                content: Digest([4; 32]),
            },
        }),
        Event::ReplyDelivered(ReplyDelivered {
            step: 2,
            round: Some(2),
            node_id: 5,
            reply: Delivered::TimedOut,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::ids::RunId;
    use crate::mutation::{mutated, mutations};
    use crate::records::{ConfigRecord, ConfigValue, Digest, MetricRecord, MetricValue, Scalar};

    #[test]
    fn refuses_unknown_kinds_and_versions() {
        let (_, _, payload) = encode(&Event::RunStarting);
        assert!(matches!(
            decode("RunStarting", 2, &payload),
            Err(Error::UnknownVersion { .. })
        ));
        assert!(matches!(
            decode("Teleported", 1, &payload),
            Err(Error::UnknownKind { .. })
        ));
        assert!(matches!(
            decode("RunFinished", 1, &[0x01]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn payload_bytes_are_pinned() {
        // A change to these bytes breaks every recorded log: add a version
        // instead (see the module documentation).
        let mut options = ConfigRecord::new();
        options.insert("num-supernodes", ConfigValue::Int(10));
        let submitted = Event::RunSubmitted(RunSubmitted {
            run_id: RunId(5),
            fab_id: "p/a".into(),
            fab_version: "1.0.0".into(),
            fab_hash: "ab".into(),
            override_config: [("lr".to_string(), Scalar::Float(0.5))].into_iter().collect(),
            federation: "@none/default".into(),
            federation_options: options,
            seed: 42,
            build: "floret 0.1.0".into(),
        });
        let (kind, version, payload) = encode(&submitted);
        assert_eq!((kind, version), ("RunSubmitted", 1));
        insta::assert_snapshot!(hex::encode(&payload), @"89a672756e5f696405a66661625f6964a3702f61ab6661625f76657273696f6ea5312e302e30a86661625f68617368a26162af6f766572726964655f636f6e66696781a26c7281a5466c6f6174cb3fe0000000000000aa66656465726174696f6ead406e6f6e652f64656661756c74b266656465726174696f6e5f6f7074696f6e7381a56974656d739192ae6e756d2d73757065726e6f64657381a3496e740aa4736565642aa56275696c64ac666c6f72657420302e312e30");
        let mut metrics = MetricRecord::new();
        metrics.insert("loss", MetricValue::Float(0.25));
        let reply = Event::ReplyReceived(ReplyReceived {
            round: 1,
            phase: Phase::Train,
            node_id: 9,
            reply: Reply::Content {
                metrics: Some(metrics),
                arrays: Some(Digest([1; 32])),
            },
        });
        let (_, _, payload) = encode(&reply);
        assert_eq!(decode("ReplyReceived", 1, &payload).unwrap(), reply);
        let usage = Event::UsageRecorded(Usage {
            bytes_sent: 300,
            bytes_recv: 5,
            clientapp_runtime: 0.5,
        });
        let (kind, version, payload) = encode(&usage);
        assert_eq!((kind, version), ("UsageRecorded", 1));
        insta::assert_snapshot!(hex::encode(&payload), @"83aa62797465735f73656e74cd012caa62797465735f7265637605b1636c69656e746170705f72756e74696d65cb3fe0000000000000");
        assert!(!usage.is_simulation());
        let node_events = [
            Event::NodeRegistered(NodeRegistered {
                node_id: 11552096691401131052,
                public_key: vec![0x2d, 0x00, 0xff],
            }),
            Event::NodeActivated(NodeActivated {
                node_id: 7,
                heartbeat_interval: 30.0,
            }),
            Event::NodeDeactivated(NodeDeactivated { node_id: 7 }),
            Event::NodeUnregistered(NodeUnregistered { node_id: 7 }),
            Event::NodeWentOffline(NodeWentOffline { node_id: 7 }),
        ];
        let encoded: Vec<String> = node_events
            .iter()
            .map(|event| {
                assert!(!event.is_simulation());
                let (kind, version, payload) = encode(event);
                format!("{kind} v{version} {}", hex::encode(payload))
            })
            .collect();
        insta::assert_snapshot!(encoded.join("\n"), @r"
        NodeRegistered v1 82a76e6f64655f6964cfa0514abc35ee042caa7075626c69635f6b6579c4032d00ff
        NodeActivated v1 82a76e6f64655f696407b26865617274626561745f696e74657276616ccb403e000000000000
        NodeDeactivated v1 81a76e6f64655f696407
        NodeUnregistered v1 81a76e6f64655f696407
        NodeWentOffline v1 81a76e6f64655f696407
        ");
    }

    #[test]
    fn sample_events_cover_every_kind_and_round_trip() {
        let events = sample_events();
        for kind in KINDS {
            assert!(events.iter().any(|e| e.kind() == *kind), "{kind}");
        }
        for event in &events {
            let (kind, version, payload) = encode(event);
            assert_eq!(&decode(kind, version, &payload).unwrap(), event);
        }
    }

    /// A kind name: mostly known ones (which reach the payload decoders),
    /// some near misses and arbitrary text.
    fn kind_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(KINDS).prop_map(str::to_string),
            1 => proptest::sample::select(KINDS).prop_map(|k| k.to_lowercase()),
            1 => ".{0,24}",
        ]
    }

    fn version() -> impl Strategy<Value = u32> {
        prop_oneof![4 => Just(VERSION), 1 => Just(0u32), 1 => any::<u32>()]
    }

    /// Decodes and, when that succeeds, checks the event encodes and reads
    /// back (the SuperLink re-encodes every pushed event).
    fn decode_checked(kind: &str, version: u32, payload: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(event) = decode(kind, version, payload) {
            let (kind, version, again) = encode(&event);
            prop_assert!(decode(kind, version, &again).is_ok());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        /// Arbitrary kind names, versions and payload bytes never panic.
        #[test]
        fn decode_never_panics_on_arbitrary_input(
            kind in kind_name(),
            version in version(),
            payload in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            decode_checked(&kind, version, &payload)?;
            let _ = decode_value::<crate::records::UserConfig>("x", &payload);
        }

        /// Byte flips, edge-value fields, truncations, insertions and
        /// removals of valid payloads of every kind never panic.
        #[test]
        fn decode_never_panics_on_mutated_payloads(
            which in any::<proptest::sample::Index>(),
            mutations in mutations(3),
            other_kind in proptest::option::weighted(0.2, proptest::sample::select(KINDS)),
        ) {
            let events = sample_events();
            let (kind, version, payload) = encode(which.get(&events));
            let payload = mutated(&payload, &mutations);
            decode_checked(other_kind.unwrap_or(kind), version, &payload)?;
        }
    }
}
