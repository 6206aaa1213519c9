//! Flower 1.27's inflatable objects against the real thing: for a set of
//! messages (every record type, empty records, arrays of every dtype and
//! several shapes, an array of two chunks and one of repeated chunks, an
//! error, replies), the objects Flower's Python deflates are ours byte for
//! byte, with the same ids, order and tree, and the same `Message` proto
//! next to the tree and ids to push; `floret::objects` inflates
//! Flower's objects back to the messages; and Flower inflates ours (after
//! its object store's checks) to the same messages. One Python process
//! (`tests/data/flower_objects.py`) does Flower's side of every message.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use floret::objects::{self, MAX_ARRAY_CHUNK_SIZE};
use floret::proto::flwr::proto as pb;
use floret::records::{
    error_code, Array, ArrayRecord, ConfigRecord, ConfigValue, Error, Message, MetricRecord, MetricValue, Record,
    RecordDict, Values,
};
use prost::Message as _;

use crate::interop::flower_venv;
use crate::support::temp_dir;

/// The message as a protobuf `Message` with its content, which Flower's
/// `message_from_proto` reads.
fn to_proto(message: &Message) -> pb::Message {
    let metadata = &message.metadata;
    pb::Message {
        metadata: Some(pb::Metadata {
            run_id: metadata.run_id,
            message_id: metadata.message_id.clone(),
            src_node_id: metadata.src_node_id,
            dst_node_id: metadata.dst_node_id,
            reply_to_message_id: metadata.reply_to_message_id.clone(),
            group_id: metadata.group_id.clone(),
            ttl: metadata.ttl,
            message_type: metadata.message_type.clone(),
            created_at: metadata.created_at,
        }),
        content: message.content().map(floret::proto::record_dict_to_proto),
        error: message.error().map(|e| pb::Error {
            code: e.code,
            reason: e.reason.clone(),
        }),
    }
}

fn records() -> RecordDict {
    let mut arrays = ArrayRecord::from_arrays(vec![
        Array::from_f32(vec![64, 10], (0..640).map(|i| i as f32 * 0.5 - 7.0).collect()),
        Array::from_f64(vec![10], vec![0.25; 10]),
    ]);
    arrays.insert("scalar", Array::from_f64(vec![], vec![-1.5]));
    arrays.insert("bytes ü", Array::new(vec![3], Values::U8(vec![1, 2, 255])));
    arrays.insert("ids\"\\", Array::new(vec![2, 1], Values::I64(vec![-1, i64::MAX])));
    arrays.insert(
        "cube",
        Array::new(vec![2, 2, 2], Values::I32((0..8).map(|i| i - 4).collect())),
    );
    arrays.insert("none", Array::new(vec![0, 3], Values::F32(vec![])));
    let mut config = ConfigRecord::new();
    config.insert("lr", ConfigValue::Float(0.1));
    config.insert("server-round", ConfigValue::Int(3));
    config.insert("negative", ConfigValue::Int(-70_000));
    config.insert("name", ConfigValue::Str("fédéré 😀".into()));
    config.insert("", ConfigValue::Str(String::new()));
    config.insert("blob", ConfigValue::Bytes(vec![0, 255, 7]));
    config.insert("flag", ConfigValue::Bool(false));
    config.insert("ints", ConfigValue::IntList(vec![1, -2, 3]));
    config.insert("floats", ConfigValue::FloatList(vec![1e-300, -0.0]));
    config.insert("words", ConfigValue::StrList(vec!["a".into(), "bc".into()]));
    config.insert("blobs", ConfigValue::BytesList(vec![vec![], vec![9]]));
    config.insert("flags", ConfigValue::BoolList(vec![true, false]));
    config.insert("empty", ConfigValue::BoolList(vec![]));
    let mut metrics = MetricRecord::new();
    metrics.insert("train_loss", MetricValue::Float(0.3125));
    metrics.insert("num-examples", MetricValue::Int(115));
    metrics.insert("losses", MetricValue::FloatList(vec![1.0, 0.5]));
    metrics.insert("counts", MetricValue::IntList(vec![i64::MIN, 0]));
    metrics.insert("none", MetricValue::FloatList(vec![]));
    let mut content = RecordDict::new();
    content.insert("arrays", Record::Arrays(arrays));
    content.insert("config", Record::Config(config));
    content.insert("metrics", Record::Metrics(metrics));
    content
}

fn instruction(content: RecordDict, dst: u64) -> Message {
    let mut message = Message::instruction(Arc::new(content), dst, "train");
    message.metadata.run_id = 11_552_096_691_401_131_052;
    message.metadata.group_id = "3".into();
    message.metadata.created_at = 1_795_831_687.25;
    message
}

/// The messages compared, with what each covers.
fn messages() -> Vec<(&'static str, Message)> {
    let mut cases = Vec::new();
    let first = instruction(records(), 4_081_356_406_518_456_415);
    cases.push(("every record type", first.clone()));

    // 1_500_000 float32: 6_000_128 .npy bytes, two chunks.
    let mut big = RecordDict::new();
    let values: Vec<f32> = (0..1_500_000).map(|i| i as f32).collect();
    big.insert(
        "arrays",
        Record::Arrays(ArrayRecord::from_arrays(vec![Array::from_f32(vec![1_500_000], values)])),
    );
    cases.push(("an array of two chunks", instruction(big, 2)));

    // Zeros whose .npy is exactly three chunks: the last two are one object.
    let count = 3 * MAX_ARRAY_CHUNK_SIZE - 128;
    let mut zeros = RecordDict::new();
    zeros.insert(
        "zeros",
        Record::Arrays(ArrayRecord::from_arrays(vec![Array::new(
            vec![count],
            Values::U8(vec![0; count]),
        )])),
    );
    cases.push(("repeated chunks", instruction(zeros, 3)));

    cases.push(("empty content", instruction(RecordDict::new(), u64::MAX)));

    let mut empties = RecordDict::new();
    empties.insert("a", Record::Arrays(ArrayRecord::new()));
    empties.insert("c", Record::Config(ConfigRecord::new()));
    empties.insert("m", Record::Metrics(MetricRecord::new()));
    cases.push(("empty records", instruction(empties, 5)));

    // The same record under two keys, the same array twice.
    let mut metrics = MetricRecord::new();
    metrics.insert("loss", MetricValue::Float(0.5));
    let array = Array::from_f64(vec![2], vec![1.0, 2.0]);
    let mut shared = RecordDict::new();
    shared.insert("first", Record::Metrics(metrics.clone()));
    shared.insert("second", Record::Metrics(metrics));
    shared.insert(
        "arrays",
        Record::Arrays(ArrayRecord::from_arrays(vec![array.clone(), array])),
    );
    cases.push(("shared records and arrays", instruction(shared, 6)));

    // Replies as a SuperNode sends them: the instruction's id is its object id.
    let mut delivered = first.clone();
    delivered.metadata.message_id = objects::deflate(&first).message_id().to_string();
    let mut reply = Message::reply(&delivered, Ok(records()));
    reply.metadata.message_id = String::new();
    reply.metadata.created_at = 1_795_831_700.5;
    reply.metadata.ttl = 43_187.5;
    cases.push(("a reply", reply));
    let mut failed = Message::reply(
        &delivered,
        Err(Error {
            code: error_code::CLIENT_APP_RAISED_EXCEPTION,
            reason: "ClientApp raised ValueError: ü".into(),
        }),
    );
    failed.metadata.message_id = String::new();
    cases.push(("an error reply", failed));
    cases
}

fn read_objects(directory: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn objects_are_flower_1_27s_byte_for_byte_both_ways() {
    let cases = messages();
    let directory = temp_dir();
    let root = directory.path();
    for sub in ["messages", "rust/objects"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let deflated: Vec<objects::Deflated> = cases.iter().map(|(_, message)| objects::deflate(message)).collect();
    for (index, ((_, message), ours)) in cases.iter().zip(&deflated).enumerate() {
        std::fs::write(
            root.join(format!("messages/{index}.pb")),
            to_proto(message).encode_to_vec(),
        )
        .unwrap();
        std::fs::write(root.join(format!("rust/{index}.tree")), ours.tree.encode_to_vec()).unwrap();
        for object in &ours.objects {
            std::fs::write(root.join("rust/objects").join(&object.id), &object.content).unwrap();
        }
    }
    let output = Command::new(flower_venv().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flower_objects.py"))
        .arg(root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(results.len(), cases.len());
    let python_objects = read_objects(&root.join("python/objects"));

    for (index, ((name, message), ours)) in cases.iter().zip(&deflated).enumerate() {
        let result = &results[index];
        assert_eq!(result["index"], index, "{name}");
        assert_eq!(result["npy_equal"], true, "{name}: our .npy bytes are not numpy's");

        // Flower's objects are ours: same ids, same order, same bytes.
        let ids = std::fs::read_to_string(root.join(format!("python/{index}.ids"))).unwrap();
        let python_ids: Vec<&str> = ids.split('\n').collect();
        let our_ids: Vec<&str> = ours.objects.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(our_ids, python_ids, "{name}: object ids");
        for object in &ours.objects {
            assert!(
                python_objects.get(&object.id) == Some(&object.content),
                "{name}: object {} differs",
                object.id
            );
        }
        let python_tree =
            pb::ObjectTree::decode(&std::fs::read(root.join(format!("python/{index}.tree"))).unwrap()[..]).unwrap();
        assert_eq!(python_tree, ours.tree, "{name}: tree");

        // Flower's object store would take every object of ours.
        for object in &ours.objects {
            objects::check_object(&object.id, &object.content).unwrap();
        }
        let tree_ids = std::fs::read_to_string(root.join(format!("python/{index}.tree_ids"))).unwrap();
        assert_eq!(
            objects::tree_object_ids(&ours.tree),
            tree_ids.split('\n').collect::<Vec<_>>(),
            "{name}: ids to push"
        );
        // The Message proto next to the tree.
        let envelope =
            pb::Message::decode(&std::fs::read(root.join(format!("python/{index}.envelope"))).unwrap()[..]).unwrap();
        assert_eq!(
            envelope,
            objects::envelope(message, ours.message_id()),
            "{name}: the envelope"
        );

        // We inflate Flower's objects to the message.
        let mut expected = message.clone();
        expected.metadata.message_id = ours.message_id().to_string();
        let inflated = objects::inflate(&python_tree, &python_objects, usize::MAX).unwrap();
        assert_eq!(inflated, expected, "{name}: inflated from Flower's objects");
        let by_id = objects::inflate_by_id(&python_tree.object_id, &python_objects, usize::MAX).unwrap();
        assert_eq!(by_id, expected, "{name}: inflated by id");

        // Flower inflates ours to the message, and deflates it to the same id.
        assert_eq!(
            result["inflated_equal"], true,
            "{name}: Flower's inflation of our objects"
        );
        assert_eq!(
            result["redeflated_id"],
            ours.message_id(),
            "{name}: Flower's id of our message"
        );
    }
    // The two-chunk and the repeated-chunk arrays are what they claim.
    let array_tree = |index: usize| &deflated[index].tree.children[0].children[0].children[0];
    assert_eq!(array_tree(1).children.len(), 2);
    assert_eq!(array_tree(2).children.len(), 2);
}
