//! What a message weighs on Flower 1.27's Fleet API, counted the way
//! Flower's SuperLink counts a run's `bytes_sent` and `bytes_recv`.
//!
//! In a Flower deployment a SuperNode fetches an instruction with
//! `PullMessages` (the message without its content, plus its object tree) and
//! one `PullObject` per object of the message; it answers with `PushMessages`
//! and one `PushObject` per object. Flower's SuperLink adds, per run: the
//! protobuf size of each `PullMessages`/`PushMessages` request (received) and
//! response (sent), and the content length of each object pulled (sent) or
//! pushed (received). Objects are Flower's "inflatable" encoding,
//! `<class> <child ids> <body length>\0<body>`: a `Message` (metadata and
//! error), its `RecordDict`, each record, each `Array` and each `ArrayChunk`
//! (at most 5 MiB of the array's `.npy` bytes).
//!
//! The simulation puts nothing on a wire; this module computes those sizes
//! from lengths alone (no array is serialized, no object id hashed), so a
//! message costs microseconds to weigh. Two simplifications: every object of
//! a message counts as distinct (Flower's content-addressed store transfers
//! an object once when the same array or record appears twice, or is already
//! stored), and object ids, message ids and creation times count at the size
//! Flower gives them (64 hex digits, a non-zero `double`). Tests compare
//! these sizes with the real Flower 1.27 computing the same messages.
//!
//! It does no I/O and reads no clock.

use prost::encoding::{encoded_len_varint, key_len};

use crate::records::{
    Array, ArrayRecord, ConfigRecord, ConfigValue, Message, MetricRecord, MetricValue, Record, RecordDict, STYPE_NUMPY,
};

/// Flower's object ids and message ids: SHA-256 in hex.
const ID_LEN: usize = 64;
/// Flower's default `FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`.
const MAX_ARRAY_CHUNK_SIZE: usize = 5_242_880;

/// Bytes counted for one run on the SuperLink's side of the Fleet API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// SuperLink → SuperNode (Flower's `bytes_sent`).
    pub sent: u64,
    /// SuperNode → SuperLink (Flower's `bytes_recv`).
    pub recv: u64,
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, other: Traffic) -> Traffic {
        Traffic {
            sent: self.sent + other.sent,
            recv: self.recv + other.recv,
        }
    }
}

/// A SuperNode pulls `instruction` and pushes `reply`.
pub(crate) fn exchange(instruction: &Message, reply: &Message) -> Traffic {
    pull(instruction) + push(reply)
}

/// `PullMessages` of `message` by its destination node, then a `PullObject`
/// of each of its objects.
pub fn pull(message: &Message) -> Traffic {
    let objects = message_objects(message);
    let request = field_len(1, node_len(message.metadata.dst_node_id));
    let response = field_len(2, envelope_len(message)) + field_len(3, objects.tree);
    Traffic {
        sent: (response + objects.bytes) as u64,
        recv: request as u64,
    }
}

/// `PushMessages` of `reply` by its source node (with its ClientApp time),
/// then a `PushObject` of each of its objects.
pub fn push(reply: &Message) -> Traffic {
    let objects = message_objects(reply);
    let request = field_len(1, node_len(reply.metadata.src_node_id))
        + field_len(2, envelope_len(reply))
        + field_len(3, objects.tree)
        // `clientapp_runtime_list`: one packed double.
        + field_len(4, 8);
    // `reconnect { reconnect: 5 }`, `results { <message id>: 0 }` and the id
    // of every object to push.
    let reconnect = field_len(1, 2);
    let results = field_len(2, field_len(1, ID_LEN) + 2);
    let response = reconnect + results + objects.count * field_len(3, ID_LEN);
    Traffic {
        sent: response as u64,
        recv: (request + objects.bytes) as u64,
    }
}

/// The objects of a message (or of a part of it).
#[derive(Clone, Copy, Debug, Default)]
struct Objects {
    /// Encoded length of the part's `ObjectTree`.
    tree: usize,
    /// Number of objects.
    count: usize,
    /// Σ length of their encodings.
    bytes: usize,
}

/// The children of an object, summed as they are added.
#[derive(Clone, Copy, Debug, Default)]
struct Children {
    number: usize,
    /// Σ of their `ObjectTree` fields in the parent's tree.
    trees: usize,
    count: usize,
    bytes: usize,
}

impl Children {
    fn of(objects: impl Iterator<Item = Objects>) -> Children {
        objects.fold(Children::default(), |sum, child| Children {
            number: sum.number + 1,
            trees: sum.trees + field_len(2, child.tree),
            count: sum.count + child.count,
            bytes: sum.bytes + child.bytes,
        })
    }
}

impl Objects {
    /// An object of `class` whose body is `body` bytes, over `children`.
    fn node(class: &str, body: usize, children: Children) -> Objects {
        let ids = match children.number {
            0 => 0,
            n => n * ID_LEN + (n - 1),
        };
        let header = class.len() + 1 + ids + 1 + decimal_len(body) + 1;
        Objects {
            tree: field_len(1, ID_LEN) + children.trees,
            count: 1 + children.count,
            bytes: header + body + children.bytes,
        }
    }

    fn leaf(class: &str, body: usize) -> Objects {
        Objects::node(class, body, Children::default())
    }
}

fn message_objects(message: &Message) -> Objects {
    let content = Children::of(message.content().map(record_dict_objects).into_iter());
    Objects::node("Message", message_len(message, 0, None), content)
}

fn record_dict_objects(records: &RecordDict) -> Objects {
    let children = Children::of(records.values().map(|record| match record {
        Record::Arrays(arrays) => array_record_objects(arrays),
        Record::Metrics(metrics) => Objects::leaf("MetricRecord", metric_record_len(metrics)),
        Record::Config(config) => Objects::leaf("ConfigRecord", config_record_len(config)),
    }));
    Objects::node("RecordDict", refs_json_len(records.keys()), children)
}

fn array_record_objects(arrays: &ArrayRecord) -> Objects {
    let children = Children::of(arrays.values().map(array_objects));
    Objects::node("ArrayRecord", refs_json_len(arrays.keys()), children)
}

/// An `Array`: its metadata as JSON over the `ArrayChunk`s of its `.npy`
/// bytes.
fn array_objects(array: &Array) -> Objects {
    let data = array.npy_len();
    let chunks = data.div_ceil(MAX_ARRAY_CHUNK_SIZE).max(1);
    let children = Children::of((0..chunks).map(|i| {
        Objects::leaf(
            "ArrayChunk",
            (data - i * MAX_ARRAY_CHUNK_SIZE).min(MAX_ARRAY_CHUNK_SIZE),
        )
    }));
    // {"dtype": "<dtype>", "shape": [<dims>], "stype": "<stype>", "arraychunk_ids": [0, 1, ...]}
    let body = r#"{"dtype": "", "shape": [], "stype": "", "arraychunk_ids": []}"#.len()
        + array.dtype().len()
        + list_json_len(array.shape.iter().copied())
        + STYPE_NUMPY.len()
        + list_json_len(0..chunks);
    Objects::node("Array", body, children)
}

/// Python's `json.dumps` of a list of integers, without the brackets.
fn list_json_len(items: impl Iterator<Item = usize>) -> usize {
    let (count, digits) = items.fold((0usize, 0usize), |(count, digits), n| {
        (count + 1, digits + decimal_len(n))
    });
    digits + 2 * count.saturating_sub(1)
}

/// The message as `PullMessages`/`PushMessages` carry it: its id (Flower's
/// object id), its content replaced by an empty `RecordDict`.
fn envelope_len(message: &Message) -> usize {
    let empty_content = message.content().map(|_| 0);
    message_len(message, ID_LEN, empty_content)
}

/// Encoded length of a protobuf `Message` with `message_id` of
/// `message_id` bytes and a `content` of the given length, if any.
fn message_len(message: &Message, message_id: usize, content: Option<usize>) -> usize {
    let metadata = &message.metadata;
    let reply_to = if metadata.reply_to_message_id.is_empty() {
        0
    } else {
        ID_LEN
    };
    let metadata_len = varint_field(1, metadata.run_id)
        + bytes_field(2, message_id)
        + varint_field(3, metadata.src_node_id)
        + varint_field(4, metadata.dst_node_id)
        + bytes_field(5, reply_to)
        + bytes_field(6, metadata.group_id.len())
        + double_field(7, metadata.ttl)
        + bytes_field(8, metadata.message_type.len())
        // `created_at`: Flower's is the wall clock, never 0.
        + double_field(9, 1.0);
    let error = message
        .error()
        .map(|e| varint_field(1, zigzag(e.code)) + bytes_field(2, e.reason.len()));
    field_len(1, metadata_len) + content.map_or(0, |len| field_len(2, len)) + error.map_or(0, |len| field_len(3, len))
}

fn metric_record_len(record: &MetricRecord) -> usize {
    record
        .iter()
        .map(|(key, value)| {
            let value = match value {
                MetricValue::Float(_) => 9,
                MetricValue::Int(i) => 1 + encoded_len_varint(zigzag(*i)),
                MetricValue::FloatList(list) => field_len(21, packed_len(list.len() * 8)),
                MetricValue::IntList(list) => field_len(22, packed_len(sint_list_len(list))),
            };
            field_len(1, item_len(key, value))
        })
        .sum()
}

fn config_record_len(record: &ConfigRecord) -> usize {
    record
        .iter()
        .map(|(key, value)| {
            let value = match value {
                ConfigValue::Float(_) => 9,
                ConfigValue::Int(i) => 1 + encoded_len_varint(zigzag(*i)),
                ConfigValue::Bool(_) => 2,
                ConfigValue::Str(s) => field_len(5, s.len()),
                ConfigValue::Bytes(b) => field_len(6, b.len()),
                ConfigValue::FloatList(list) => field_len(21, packed_len(list.len() * 8)),
                ConfigValue::IntList(list) => field_len(22, packed_len(sint_list_len(list))),
                ConfigValue::BoolList(list) => field_len(24, packed_len(list.len())),
                ConfigValue::StrList(list) => field_len(25, list.iter().map(|s| field_len(1, s.len())).sum()),
                ConfigValue::BytesList(list) => field_len(26, list.iter().map(|b| field_len(1, b.len())).sum()),
            };
            field_len(1, item_len(key, value))
        })
        .sum()
}

/// A record's `Item { key, value }` whose value message is `value` bytes.
fn item_len(key: &str, value: usize) -> usize {
    bytes_field(1, key.len()) + field_len(2, value)
}

/// A packed repeated field 1 of `len` bytes of elements (absent when empty).
fn packed_len(len: usize) -> usize {
    bytes_field(1, len)
}

fn sint_list_len(list: &[i64]) -> usize {
    list.iter().map(|&i| encoded_len_varint(zigzag(i))).sum()
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// `Node { node_id }`.
fn node_len(node_id: u64) -> usize {
    varint_field(1, node_id)
}

/// A length-delimited field `tag` of `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A proto3 string or bytes field: absent when empty.
fn bytes_field(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        field_len(tag, len)
    }
}

/// A proto3 varint field: absent when 0.
fn varint_field(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// A proto3 double field: absent when 0.
fn double_field(tag: u32, value: f64) -> usize {
    if value == 0.0 {
        0
    } else {
        key_len(tag) + 8
    }
}

fn decimal_len(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Python's `json.dumps({key: <object id>, ...})`.
fn refs_json_len<'a>(keys: impl Iterator<Item = &'a str>) -> usize {
    let (count, items) = keys.fold((0usize, 0usize), |(count, items), key| {
        (count + 1, items + json_string_len(key) + 2 + (ID_LEN + 2))
    });
    2 + items + 2 * count.saturating_sub(1)
}

/// Length of a string as Python's `json.dumps` writes it (`ensure_ascii`).
fn json_string_len(text: &str) -> usize {
    let escaped: usize = text
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            ' '..='~' => 1,
            c => 6 * c.len_utf16(),
        })
        .sum();
    escaped + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lengths_match_python() {
        // len(json.dumps(s)) in Python 3.
        assert_eq!(json_string_len("arrays"), 8);
        assert_eq!(json_string_len("a\"b\\c\n"), 11);
        assert_eq!(json_string_len("é"), 8);
        assert_eq!(json_string_len("😀"), 14);
        assert_eq!(json_string_len("\u{1}\u{7f}"), 14);
        // len(json.dumps({})) and len(json.dumps({"a": "0" * 64, "b": "0" * 64}))
        assert_eq!(refs_json_len([].into_iter()), 2);
        assert_eq!(refs_json_len(["a", "b"].into_iter()), 2 + 2 * (3 + 2 + 66) + 2);
    }

    #[test]
    fn record_lengths_equal_the_protobuf_encoding() {
        use crate::proto::{config_record_to_proto, metric_record_to_proto};
        use prost::Message as _;
        let mut metrics = MetricRecord::new();
        metrics.insert("", MetricValue::Int(0));
        metrics.insert("loss", MetricValue::Float(0.0));
        metrics.insert("n", MetricValue::Int(i64::MIN));
        metrics.insert("ints", MetricValue::IntList(vec![0, -1, 300, i64::MAX]));
        metrics.insert("none", MetricValue::FloatList(vec![]));
        metrics.insert("floats", MetricValue::FloatList(vec![1.0; 20]));
        assert_eq!(
            metric_record_len(&metrics),
            metric_record_to_proto(&metrics).encoded_len()
        );
        let mut config = ConfigRecord::new();
        config.insert("a", ConfigValue::Str(String::new()));
        config.insert("b", ConfigValue::Bytes(vec![1; 200]));
        config.insert("c", ConfigValue::Bool(false));
        config.insert("d", ConfigValue::Int(-64));
        config.insert("e", ConfigValue::Float(-0.0));
        config.insert("f", ConfigValue::BoolList(vec![true; 3]));
        config.insert("g", ConfigValue::StrList(vec![String::new(), "x".repeat(130)]));
        config.insert("h", ConfigValue::BytesList(vec![]));
        config.insert("i", ConfigValue::IntList(vec![]));
        config.insert("j", ConfigValue::IntList(vec![64, -65]));
        assert_eq!(
            config_record_len(&config),
            config_record_to_proto(&config).encoded_len()
        );
    }

    #[test]
    fn decimal_lengths() {
        for (n, digits) in [(0, 1), (9, 1), (10, 2), (99, 2), (100, 3), (5_242_880, 7)] {
            assert_eq!(decimal_len(n), digits, "{n}");
        }
    }
}
