//! Traffic figures against the real Flower 1.27: for the same messages, the
//! bytes `floret::traffic` counts equal what Flower's own code counts for a
//! SuperNode pulling an instruction and pushing a reply over the Fleet API
//! (`tests/data/flower_traffic.py` builds Flower's requests, responses and
//! object encodings and measures them). Run end to end, the figures reach
//! `flwr ls` through the app process's usage reports.

use std::process::Command;
use std::sync::Arc;

use floret::proto::flwr::proto as pb;
use floret::records::{
    error_code, Array, ArrayRecord, ConfigRecord, ConfigValue, Error, Message, MetricRecord, MetricValue, Record,
    RecordDict, Values,
};
use floret::traffic::{self, Traffic};

use crate::interop::flower_venv;
use crate::support::{quickstart, temp_dir, Home};

/// A run's message as Flower would carry it, content included, with ids of
/// Flower's length.
fn to_proto(message: &Message) -> pb::Message {
    let metadata = &message.metadata;
    let id = |text: &str| {
        if text.is_empty() {
            String::new()
        } else {
            "ab".repeat(32)
        }
    };
    pb::Message {
        metadata: Some(pb::Metadata {
            run_id: metadata.run_id,
            message_id: "cd".repeat(32),
            src_node_id: metadata.src_node_id,
            dst_node_id: metadata.dst_node_id,
            reply_to_message_id: id(&metadata.reply_to_message_id),
            group_id: metadata.group_id.clone(),
            ttl: metadata.ttl,
            message_type: metadata.message_type.clone(),
            created_at: 1_795_831_687.25,
        }),
        content: message.content().map(floret::proto::record_dict_to_proto),
        error: message.error().map(|e| pb::Error {
            code: e.code,
            reason: e.reason.clone(),
        }),
    }
}

fn content() -> RecordDict {
    let mut arrays = ArrayRecord::from_arrays(vec![
        Array::from_f32(vec![64, 10], (0..640).map(|i| i as f32 * 0.5).collect()),
        Array::from_f64(vec![10], vec![0.25; 10]),
    ]);
    arrays.insert("scalar", Array::from_f64(vec![], vec![1.5]));
    arrays.insert("bytes ü", Array::new(vec![3], Values::U8(vec![1, 2, 3])));
    arrays.insert("ids\"\\", Array::new(vec![2, 1], Values::I64(vec![-1, i64::MAX])));
    let mut config = ConfigRecord::new();
    config.insert("lr", ConfigValue::Float(0.1));
    config.insert("server-round", ConfigValue::Int(3));
    config.insert("negative", ConfigValue::Int(-70_000));
    config.insert("name", ConfigValue::Str("fédéré 😀".into()));
    config.insert("blob", ConfigValue::Bytes(vec![0, 255, 7]));
    config.insert("flag", ConfigValue::Bool(false));
    config.insert("ints", ConfigValue::IntList(vec![1, -2, 3]));
    config.insert("empty", ConfigValue::FloatList(vec![]));
    config.insert("words", ConfigValue::StrList(vec!["a".into(), "bc".into()]));
    let mut metrics = MetricRecord::new();
    metrics.insert("train_loss", MetricValue::Float(0.3125));
    metrics.insert("num-examples", MetricValue::Int(115));
    metrics.insert("losses", MetricValue::FloatList(vec![1.0, 0.5]));
    let mut content = RecordDict::new();
    content.insert("arrays", Record::Arrays(arrays));
    content.insert("config", Record::Config(config));
    content.insert("metrics", Record::Metrics(metrics));
    content
}

/// Instructions and replies of many shapes, including an array of more than
/// one 5 MiB chunk, an empty content and an error.
fn messages() -> Vec<(Message, Message)> {
    let mut big = RecordDict::new();
    let values: Vec<f32> = (0..1_500_000).map(|i| i as f32).collect();
    big.insert(
        "arrays",
        Record::Arrays(ArrayRecord::from_arrays(vec![Array::from_f32(vec![1_500_000], values)])),
    );
    let mut cases = Vec::new();
    for (content, dst) in [
        (content(), 4_081_356_406_518_456_415u64),
        (big, 2),
        (RecordDict::new(), u64::MAX),
    ] {
        let mut instruction = Message::instruction(Arc::new(content.clone()), dst, "train");
        instruction.metadata.run_id = 11_552_096_691_401_131_052;
        instruction.metadata.message_id = "run.1.train.0".into();
        instruction.metadata.created_at = 1.0;
        let reply = Message::reply(&instruction, Ok(content));
        cases.push((instruction, reply));
    }
    let (instruction, _) = cases[0].clone();
    let failed = Message::reply(
        &instruction,
        Err(Error {
            code: error_code::CLIENT_APP_RAISED_EXCEPTION,
            reason: "ClientApp raised ValueError: ü".into(),
        }),
    );
    cases.push((instruction, failed));
    cases
}

/// Flower's count for each message, from `tests/data/flower_traffic.py`.
fn flower_counts(kind: &str, messages: &[&Message]) -> Vec<Traffic> {
    let venv = flower_venv();
    let directory = temp_dir();
    let mut command = Command::new(venv.join("bin/python"));
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flower_traffic.py"))
        .arg(kind);
    for (index, message) in messages.iter().enumerate() {
        let path = directory.path().join(format!("{index}.pb"));
        std::fs::write(&path, prost::Message::encode_to_vec(&to_proto(message))).unwrap();
        command.arg(path);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let [sent, recv]: [u64; 2] = serde_json::from_str(line).unwrap();
            Traffic { sent, recv }
        })
        .collect()
}

#[test]
fn message_weights_equal_flower_1_27s_own_count() {
    let cases = messages();
    let instructions: Vec<&Message> = cases.iter().map(|(i, _)| i).collect();
    let replies: Vec<&Message> = cases.iter().map(|(_, r)| r).collect();
    let pulls = flower_counts("pull", &instructions);
    let pushes = flower_counts("push", &replies);
    for (index, (instruction, reply)) in cases.iter().enumerate() {
        assert_eq!(traffic::pull(instruction), pulls[index], "pull of instruction {index}");
        assert_eq!(traffic::push(reply), pushes[index], "push of reply {index}");
    }
    // The big array travels in two chunks: its bytes are all counted.
    assert!(pulls[1].sent > 6_000_000, "{:?}", pulls[1]);
}

#[test]
fn a_run_reports_its_traffic_and_clientapp_time() {
    let home = Home::new();
    let ran = home.flwr(&["run", &quickstart(), "--stream", "--format", "json"]);
    ran.ok();
    let run_id: u64 = ran.json()["run-id"].as_str().unwrap().parse().unwrap();
    let run = &home.run_json(run_id);
    let traffic = &run["network-traffic"];
    let inbound = traffic["inbound-bytes"].as_u64().unwrap();
    let outbound = traffic["outbound-bytes"].as_u64().unwrap();
    // 3 rounds of 5 train and 10 evaluate instructions, each carrying the
    // model (.npy of a 10 x 64 and a 10 float32 array: 2,856 bytes), and 15
    // train replies carrying it back.
    let model = 2_688 + 168;
    assert!(outbound > 45 * model, "{run}");
    assert!(inbound > 15 * model && inbound < outbound, "{run}");
    assert_eq!(traffic["total-bytes"].as_u64().unwrap(), inbound + outbound);
    let compute = &run["compute-time"];
    assert!(compute["clientapp-seconds"].as_f64().unwrap() > 0.0, "{run}");
    let shown = home.flwr(&["ls", "--run-id", &run_id.to_string()]);
    shown.ok();
    assert!(
        !shown.stdout.contains("Network traffic (inbound)  │ 0 B"),
        "{}",
        shown.stdout
    );
}
