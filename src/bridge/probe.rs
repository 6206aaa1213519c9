//! Times ClientApp calls through the bridge, for `benches/flower_side_by_side.rs`
//! (docs/PERFORMANCE.md): a zygote, one worker, one node, the caller's
//! content, no engine and no events. Each call pays what a call of a run
//! pays: the content encoded as Flower's protobuf, the frame to the worker,
//! Flower's decoding and the user's code in Python, the reply back, and its
//! decoding in Rust.
//!
//! It never records anything; runs never use it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;

use super::client::{self, Call, Outcome, Workers};
use super::{Bridge, Spec};
use crate::proto::{self, flwr::proto as pb};
use crate::records::RecordDict;

/// What [`time_calls`] measured.
pub struct Timed {
    /// Each call's wall time, encoding and decoding included (the first,
    /// which forks the worker and warms its caches, is not among them).
    pub calls: Vec<Duration>,
    /// Bytes of the content sent, as Flower's `RecordDict` protobuf.
    pub content_bytes: usize,
    /// Bytes of the last reply, as Flower's `Message` protobuf.
    pub reply_bytes: usize,
}

/// Starts `client_app` of the app in `app_dir` with `interpreter` and times
/// `calls` calls of `message_type` with `content`.
pub fn time_calls(
    interpreter: &Path,
    app_dir: &Path,
    client_app: &str,
    message_type: &str,
    content: &RecordDict,
    calls: usize,
) -> Result<Timed, super::Error> {
    let spec = Spec {
        interpreter: interpreter.to_path_buf(),
        app_dir: app_dir.to_path_buf(),
        server_app: "floret:serverapp".into(),
        client_app: client_app.into(),
        run_id: 1,
        overrides: Default::default(),
        workers: 1,
        threads_per_client: 1,
        initial_arrays: None,
    };
    let bridge = Bridge::start(&spec)?;
    let workers = Workers::new(Arc::clone(&bridge.zygote), 1, 1, None);
    workers.start_all()?;
    let mut timed = Timed {
        calls: Vec::with_capacity(calls),
        content_bytes: 0,
        reply_bytes: 0,
    };
    for index in 0..=calls {
        let started = Instant::now();
        let encoded = Bytes::from(proto::record_dict_to_proto(content).encode_to_vec());
        let metadata = pb::Metadata {
            run_id: 1,
            message_id: format!("{index:064x}"),
            src_node_id: 1,
            dst_node_id: 2,
            reply_to_message_id: String::new(),
            group_id: "1".into(),
            ttl: 43_200.0,
            message_type: message_type.into(),
            created_at: 1.0,
        };
        timed.content_bytes = encoded.len();
        let call = Call {
            node_id: 2,
            partition: 0,
            metadata: Bytes::from(metadata.encode_to_vec()),
            content: encoded,
            seed: index as u64,
            vtime: 1.0,
            reply_id: format!("{index:064x}.reply"),
            deadline: None,
        };
        let result = workers.call(&call);
        let reply = match result.outcome {
            Outcome::Replied { message, ok: true } => message,
            other => {
                return Err(super::Error::CallFailed {
                    index,
                    outcome: format!("{other:?}"),
                    output: result.output,
                })
            }
        };
        timed.reply_bytes = reply.len();
        client::decode_reply(&reply).map_err(|error| super::Error::CallError { index, error })?;
        if index > 0 {
            timed.calls.push(started.elapsed());
        }
    }
    Ok(timed)
}
