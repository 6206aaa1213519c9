//! Flower 1.27's content-addressed "inflatable objects": how a message
//! travels over the Fleet API, byte for byte.
//!
//! A message is a graph of objects. Each object is
//! `<class> <child ids> <body length>\0<body>` (the child ids joined by
//! commas, the length in decimal) and its id is the SHA-256 of those bytes
//! in lowercase hex. The classes and their bodies:
//!
//! | class | children | body |
//! |---|---|---|
//! | `Message` | its `RecordDict`, or none for an error | protobuf `Message` with the metadata (its `message_id` empty) and the error, never the content |
//! | `RecordDict` | its distinct records | JSON `{"<key>": "<record id>", ...}` |
//! | `ArrayRecord` | its distinct arrays | JSON `{"<key>": "<array id>", ...}` |
//! | `ConfigRecord`, `MetricRecord` | none | the protobuf record |
//! | `Array` | its distinct chunks | JSON `{"dtype": ..., "shape": [...], "stype": ..., "arraychunk_ids": [...]}`, the ids being indexes into the children |
//! | `ArrayChunk` | none | up to [`MAX_ARRAY_CHUNK_SIZE`] bytes of the array's `.npy` data |
//!
//! JSON is Python's `json.dumps` with its defaults (`", "` and `": "`,
//! non-ASCII escaped). Children are listed once each, in the order they
//! first appear; a record or array used twice is one object. The
//! `ObjectTree` proto mirrors the headers: each node's children are the ids
//! its header lists (in any order: Flower's SuperLink rebuilds trees from a
//! store that keeps none).
//!
//! [`deflate`] turns a message into its objects and tree; [`inflate`] (with
//! the tree received) and [`inflate_by_id`] (from the headers alone) rebuild
//! it from the objects a peer sent, which are untrusted: every id must be
//! the SHA-256 of its bytes, every header well formed, every class where
//! Flower's structure puts it, and the work and memory are bounded (the
//! structure is at most [`MAX_DEPTH`] objects deep, and the bytes
//! materialised are capped by the caller). Errors name the object and the
//! reason; nothing here panics on input. [`check_object`] is what a
//! `PushObject` needs, [`tree_object_ids`] what `objects_to_push` lists, and
//! [`envelope`] the `Message` proto that `PullMessages`/`PushMessages`
//! carry next to the tree (its id is the message's object id, its content
//! an empty `RecordDict`).
//!
//! Why this module uses prost (and so needs the feature `server`): three of
//! the bodies are Flower's protobuf encodings, and the generated types of
//! `proto` are the one definition of that schema here; the Fleet API, this
//! module's user, is a server module too. The `Message` body is written
//! field by field, because prost drops a `-0.0` that Python's protobuf
//! keeps, and the id must not change.
//!
//! It does no I/O, keeps no state between calls and reads no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::proto::flwr::proto as pb;
use crate::proto::{self, config_record_to_proto, metadata_from_proto, metadata_to_proto, metric_record_to_proto};
use crate::records::{
    self, Array, ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, Record, RecordDict, STYPE_NUMPY,
};

/// Flower's default `FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`: an array's `.npy`
/// bytes travel in chunks of at most this many bytes (5 MiB). A peer may
/// use another size (Flower reads it from the environment); [`inflate`]
/// accepts any.
pub const MAX_ARRAY_CHUNK_SIZE: usize = 5_242_880;

/// The deepest chain of objects Flower's structure has: `Message`,
/// `RecordDict`, `ArrayRecord`, `Array`, `ArrayChunk`.
pub(crate) const MAX_DEPTH: usize = 5;

/// Between an object's header and its body.
const HEAD_BODY_DIVIDER: u8 = 0;
/// Between the fields of a header.
const HEAD_VALUE_DIVIDER: char = ' ';

/// One object: its id and its bytes (header and body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub id: String,
    pub content: Vec<u8>,
}

/// A message as objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Deflated {
    /// The message's tree; its root id is the message's object id, which
    /// Flower also uses as the message's id.
    pub tree: pb::ObjectTree,
    /// Every distinct object, children before their parents, each once
    /// (Flower's `get_all_nested_objects` order); the message is last.
    pub objects: Vec<Object>,
}

impl Deflated {
    /// The message's object id.
    pub fn message_id(&self) -> &str {
        &self.tree.object_id
    }

    /// The objects by id, as [`inflate`] takes them.
    pub fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        self.objects
            .iter()
            .map(|object| (object.id.clone(), object.content.clone()))
            .collect()
    }
}

/// Errors of this module: why objects received are not a message. Every
/// variant names the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object id '{}' is not a SHA-256 in lowercase hex", clip(.id))]
    InvalidId { id: String },
    #[error("object {id} was not received")]
    Missing { id: String },
    #[error("object {id}: its content hashes to {actual}, not to its id")]
    IdMismatch { id: String, actual: String },
    #[error("object {id}: no divider between header and body")]
    NoDivider { id: String },
    #[error("object {id}: the header is not UTF-8")]
    HeaderNotUtf8 { id: String },
    #[error("object {id}: the header has {found} fields, not 3")]
    HeaderFields { id: String, found: usize },
    #[error("object {id}: unknown class '{}'", clip(.class))]
    UnknownClass { id: String, class: String },
    #[error("object {id}: body length '{}' is not a decimal number", clip(.text))]
    BodyLengthText { id: String, text: String },
    #[error("object {id}: the header says {declared} body bytes, the body has {actual}")]
    BodyLength { id: String, declared: usize, actual: usize },
    #[error("object {id}: its header lists child {child} twice")]
    DuplicateChild { id: String, child: String },
    #[error("object {id} is a {found} where Flower puts {expected}")]
    WrongClass {
        id: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("object {id}: the children in its header are not the ones its body refers to")]
    ChildrenMismatch { id: String },
    #[error("object {id}: a {class} has no children, its header lists {found}")]
    UnexpectedChildren {
        id: String,
        class: &'static str,
        found: usize,
    },
    #[error("object {id}: a message with content has exactly one child, its header lists {found}")]
    ContentChildren { id: String, found: usize },
    #[error("object {id}: the tree's children differ from the ones its header lists")]
    TreeMismatch { id: String },
    #[error("object {id}: the tree is deeper than Flower's {MAX_DEPTH} levels")]
    TooDeep { id: String },
    #[error("object {id}: the body is not protobuf: {source}")]
    Protobuf { id: String, source: prost::DecodeError },
    #[error("object {id}: the message body carries content, which Flower keeps in children")]
    ContentInBody { id: String },
    #[error("object {id}: the message body has no metadata")]
    NoMetadata { id: String },
    #[error("object {id}: the body is not JSON: {source}")]
    Json { id: String, source: serde_json::Error },
    #[error("object {id}: the body is not {expected}")]
    JsonShape { id: String, expected: &'static str },
    #[error("object {id}: chunk index {index} is beyond its {count} children")]
    ChunkIndex { id: String, index: u64, count: usize },
    #[error("object {id}: unsupported stype '{}'", clip(.stype))]
    Stype { id: String, stype: String },
    #[error("object {id}: {source}")]
    Npy { id: String, source: records::RecordsError },
    #[error("object {id}: its {field} differs from the one of its .npy data")]
    ArrayMismatch { id: String, field: &'static str },
    #[error("object {id}: {source}")]
    Record { id: String, source: proto::Error },
    #[error("object {id}: the message would inflate to more than {limit} bytes")]
    TooLarge { id: String, limit: usize },
}

/// At most 80 characters of a text that came from a peer, for messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// The classes of Flower's objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Message,
    RecordDict,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    Array,
    ArrayChunk,
}

impl Class {
    const ALL: [Class; 7] = [
        Class::Message,
        Class::RecordDict,
        Class::ArrayRecord,
        Class::ConfigRecord,
        Class::MetricRecord,
        Class::Array,
        Class::ArrayChunk,
    ];

    /// Flower's class name (`__qualname__`), the header's first field.
    fn name(self) -> &'static str {
        match self {
            Class::Message => "Message",
            Class::RecordDict => "RecordDict",
            Class::ArrayRecord => "ArrayRecord",
            Class::ConfigRecord => "ConfigRecord",
            Class::MetricRecord => "MetricRecord",
            Class::Array => "Array",
            Class::ArrayChunk => "ArrayChunk",
        }
    }

    fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|class| class.name() == name)
    }
}

// ---------------------------------------------------------------------------
// Deflating
// ---------------------------------------------------------------------------

/// A message as Flower 1.27 deflates it: its objects and its tree. The
/// message id of `message` plays no part (Flower empties it: the id is the
/// object id).
pub fn deflate(message: &Message) -> Deflated {
    let mut deflater = Deflater::default();
    let children = match &message.body {
        Ok(content) => vec![deflater.record_dict(content)],
        Err(_) => Vec::new(),
    };
    let body = message_body(&message.metadata, message.error());
    let tree = deflater.add(Class::Message, children, &body);
    Deflated {
        tree,
        objects: deflater.objects,
    }
}

/// The `Message` proto that `PullMessages` and `PushMessages` carry next to
/// the tree in Flower 1.27: the metadata with `message_id` set to the
/// message's object id, an empty `RecordDict` for content (the content
/// travels as objects) or the error.
pub fn envelope(message: &Message, message_id: &str) -> pb::Message {
    let mut metadata = metadata_to_proto(&message.metadata);
    metadata.message_id = message_id.to_string();
    pb::Message {
        metadata: Some(metadata),
        content: message.content().map(|_| pb::RecordDict::default()),
        error: message.error().map(error_to_proto),
    }
}

/// The distinct ids of a tree, children before parents (Flower's
/// `iterate_object_tree` order, each id once): the objects a peer must
/// have for the message.
pub fn tree_object_ids(tree: &pb::ObjectTree) -> Vec<String> {
    let mut ids = Vec::new();
    let mut seen = BTreeSet::new();
    // An explicit stack: a tree from a peer may be deep.
    let mut stack = vec![(tree, false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            if seen.insert(node.object_id.as_str()) {
                ids.push(node.object_id.clone());
            }
        } else {
            stack.push((node, true));
            stack.extend(node.children.iter().rev().map(|child| (child, false)));
        }
    }
    ids
}

/// Collects the objects of one message as they are made.
#[derive(Default)]
struct Deflater {
    objects: Vec<Object>,
    seen: BTreeSet<String>,
}

impl Deflater {
    /// Adds the object of `class` over `children` (distinct already) with
    /// `body`, and returns its tree.
    fn add(&mut self, class: Class, children: Vec<pb::ObjectTree>, body: &[u8]) -> pb::ObjectTree {
        let child_ids: Vec<&str> = children.iter().map(|child| child.object_id.as_str()).collect();
        let content = object_content(class.name(), &child_ids, body);
        let id = sha256_hex(&content);
        if self.seen.insert(id.clone()) {
            self.objects.push(Object {
                id: id.clone(),
                content,
            });
        }
        pb::ObjectTree {
            object_id: id,
            children,
        }
    }

    fn record_dict(&mut self, records: &RecordDict) -> pb::ObjectTree {
        let refs: Vec<(&str, pb::ObjectTree)> = records
            .iter()
            .map(|(key, record)| {
                let tree = match record {
                    Record::Arrays(arrays) => self.array_record(arrays),
                    Record::Config(config) => {
                        let body = canonical_config(config_record_to_proto(config)).encode_to_vec();
                        self.add(Class::ConfigRecord, Vec::new(), &body)
                    }
                    Record::Metrics(metrics) => {
                        let body = canonical_metrics(metric_record_to_proto(metrics)).encode_to_vec();
                        self.add(Class::MetricRecord, Vec::new(), &body)
                    }
                };
                (key, tree)
            })
            .collect();
        self.refs_object(Class::RecordDict, refs)
    }

    fn array_record(&mut self, arrays: &ArrayRecord) -> pb::ObjectTree {
        let refs: Vec<(&str, pb::ObjectTree)> = arrays.iter().map(|(key, array)| (key, self.array(array))).collect();
        self.refs_object(Class::ArrayRecord, refs)
    }

    /// A `RecordDict` or `ArrayRecord`: a JSON map of keys to child ids.
    fn refs_object(&mut self, class: Class, refs: Vec<(&str, pb::ObjectTree)>) -> pb::ObjectTree {
        let mut body = String::from("{");
        for (index, (key, tree)) in refs.iter().enumerate() {
            if index > 0 {
                body.push_str(", ");
            }
            push_json_string(&mut body, key);
            body.push_str(": ");
            push_json_string(&mut body, &tree.object_id);
        }
        body.push('}');
        let children = distinct(refs.into_iter().map(|(_, tree)| tree));
        self.add(class, children, body.as_bytes())
    }

    fn array(&mut self, array: &Array) -> pb::ObjectTree {
        let data = array.to_npy();
        let chunks: Vec<pb::ObjectTree> = data
            .chunks(MAX_ARRAY_CHUNK_SIZE)
            .map(|chunk| self.add(Class::ArrayChunk, Vec::new(), chunk))
            .collect();
        let children = distinct(chunks.iter().cloned());
        let indexes: Vec<usize> = chunks
            .iter()
            .map(|chunk| {
                children
                    .iter()
                    .position(|child| child.object_id == chunk.object_id)
                    .expect("every chunk is among the distinct children")
            })
            .collect();
        let mut body = String::from("{\"dtype\": ");
        push_json_string(&mut body, array.dtype());
        body.push_str(", \"shape\": ");
        push_json_ints(&mut body, &array.shape);
        body.push_str(", \"stype\": ");
        push_json_string(&mut body, STYPE_NUMPY);
        body.push_str(", \"arraychunk_ids\": ");
        push_json_ints(&mut body, &indexes);
        body.push('}');
        self.add(Class::Array, children, body.as_bytes())
    }
}

/// The trees with distinct ids, in the order they first appear (Flower's
/// `children` are dicts keyed by object id).
fn distinct(trees: impl Iterator<Item = pb::ObjectTree>) -> Vec<pb::ObjectTree> {
    let mut seen = BTreeSet::new();
    trees.filter(|tree| seen.insert(tree.object_id.clone())).collect()
}

/// `<class> <child ids> <body length>\0<body>`.
fn object_content(class: &str, child_ids: &[&str], body: &[u8]) -> Vec<u8> {
    let header = format!(
        "{class}{HEAD_VALUE_DIVIDER}{}{HEAD_VALUE_DIVIDER}{}",
        child_ids.join(","),
        body.len()
    );
    let mut content = Vec::with_capacity(header.len() + 1 + body.len());
    content.extend_from_slice(header.as_bytes());
    content.push(HEAD_BODY_DIVIDER);
    content.extend_from_slice(body);
    content
}

/// The id of an object with these bytes (header and body): their SHA-256,
/// lowercase hex.
pub fn object_id(content: &[u8]) -> String {
    sha256_hex(content)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The body of a `Message` object: `Message { metadata, error }` with an
/// empty `message_id`, written as Python's protobuf writes it. A proto3
/// scalar is left out when it is zero; for doubles that is the bit pattern
/// of `0.0` (Python keeps `-0.0`, which prost would drop).
fn message_body(metadata: &Metadata, error: Option<&records::Error>) -> Vec<u8> {
    use prost::encoding::{double, string, uint64};
    let mut fields = Vec::new();
    if metadata.run_id != 0 {
        uint64::encode(1, &metadata.run_id, &mut fields);
    }
    if metadata.src_node_id != 0 {
        uint64::encode(3, &metadata.src_node_id, &mut fields);
    }
    if metadata.dst_node_id != 0 {
        uint64::encode(4, &metadata.dst_node_id, &mut fields);
    }
    for (tag, text) in [(5, &metadata.reply_to_message_id), (6, &metadata.group_id)] {
        if !text.is_empty() {
            string::encode(tag, text, &mut fields);
        }
    }
    if metadata.ttl.to_bits() != 0 {
        double::encode(7, &metadata.ttl, &mut fields);
    }
    if !metadata.message_type.is_empty() {
        string::encode(8, &metadata.message_type, &mut fields);
    }
    if metadata.created_at.to_bits() != 0 {
        double::encode(9, &metadata.created_at, &mut fields);
    }
    let mut body = Vec::with_capacity(fields.len() + 16);
    prost::encoding::bytes::encode(1, &fields, &mut body);
    if let Some(error) = error {
        prost::encoding::message::encode(3, &error_to_proto(error), &mut body);
    }
    body
}

fn error_to_proto(error: &records::Error) -> pb::Error {
    pb::Error {
        code: error.code,
        reason: error.reason.clone(),
    }
}

/// Python's protobuf conversion writes an empty list as the first list type
/// it tries: `bool_list` in a `ConfigRecord`.
fn canonical_config(mut record: pb::ConfigRecord) -> pb::ConfigRecord {
    use pb::config_record_value::Value as V;
    for item in &mut record.items {
        if let Some(value) = item.value.as_mut() {
            let empty = match &value.value {
                Some(V::DoubleList(l)) => l.vals.is_empty(),
                Some(V::SintList(l)) => l.vals.is_empty(),
                Some(V::UintList(l)) => l.vals.is_empty(),
                Some(V::StringList(l)) => l.vals.is_empty(),
                Some(V::BytesList(l)) => l.vals.is_empty(),
                _ => false,
            };
            if empty {
                value.value = Some(V::BoolList(pb::BoolList::default()));
            }
        }
    }
    record
}

/// As [`canonical_config`]: `double_list` in a `MetricRecord`.
fn canonical_metrics(mut record: pb::MetricRecord) -> pb::MetricRecord {
    use pb::metric_record_value::Value as V;
    for item in &mut record.items {
        if let Some(value) = item.value.as_mut() {
            let empty = match &value.value {
                Some(V::SintList(l)) => l.vals.is_empty(),
                Some(V::UintList(l)) => l.vals.is_empty(),
                _ => false,
            };
            if empty {
                value.value = Some(V::DoubleList(pb::DoubleList::default()));
            }
        }
    }
    record
}

/// Python's `json.dumps(text)` (`ensure_ascii=True`).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `json.dumps` of a list (or tuple) of integers.
fn push_json_ints(out: &mut String, values: &[usize]) {
    out.push('[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(&value.to_string());
    }
    out.push(']');
}

// ---------------------------------------------------------------------------
// Checking and inflating
// ---------------------------------------------------------------------------

/// What Flower's object store checks of an object pushed to it: the id is
/// the SHA-256 of the content, and the header is well formed (three fields,
/// a known class, child ids that are ids, the body length right).
pub fn check_object(id: &str, content: &[u8]) -> Result<(), Error> {
    check_id(id)?;
    parse(id, content).map(|_| ())
}

/// Rebuilds a message from its `tree` and the `objects` received (by id;
/// others may be there too). The tree must match the headers, and the
/// message's id becomes its object id (what every Flower receiver sets).
/// At most `inflated_bytes_max` bytes are materialised: the bodies and
/// array data of the objects, counted each time an object is used.
pub fn inflate(
    tree: &pb::ObjectTree,
    objects: &BTreeMap<String, Vec<u8>>,
    inflated_bytes_max: usize,
) -> Result<Message, Error> {
    let mut inflater = Inflater::new(objects, inflated_bytes_max);
    inflater.check_tree(tree, 1)?;
    inflater.message(&tree.object_id)
}

/// As [`inflate`], from the message's object id and the headers alone.
pub fn inflate_by_id(
    message_id: &str,
    objects: &BTreeMap<String, Vec<u8>>,
    inflated_bytes_max: usize,
) -> Result<Message, Error> {
    Inflater::new(objects, inflated_bytes_max).message(message_id)
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidId { id: clip(id) })
    }
}

/// An object's header, checked, and its body.
#[derive(Clone)]
struct Parsed<'a> {
    class: Class,
    children: Vec<&'a str>,
    body: &'a [u8],
}

/// Splits and checks an object's bytes (not its id).
fn parse<'a>(id: &str, content: &'a [u8]) -> Result<Parsed<'a>, Error> {
    let divider = content
        .iter()
        .position(|&b| b == HEAD_BODY_DIVIDER)
        .ok_or_else(|| Error::NoDivider { id: id.to_string() })?;
    let (head, body) = (&content[..divider], &content[divider + 1..]);
    let head = std::str::from_utf8(head).map_err(|_| Error::HeaderNotUtf8 { id: id.to_string() })?;
    let fields: Vec<&str> = head.split(HEAD_VALUE_DIVIDER).collect();
    let [class, children, body_len] = fields[..] else {
        return Err(Error::HeaderFields {
            id: id.to_string(),
            found: fields.len(),
        });
    };
    let class = Class::from_name(class).ok_or_else(|| Error::UnknownClass {
        id: id.to_string(),
        class: class.to_string(),
    })?;
    let children: Vec<&str> = if children.is_empty() {
        Vec::new()
    } else {
        children.split(',').collect()
    };
    let mut seen = BTreeSet::new();
    for child in &children {
        check_id(child)?;
        if !seen.insert(*child) {
            return Err(Error::DuplicateChild {
                id: id.to_string(),
                child: child.to_string(),
            });
        }
    }
    let declared = body_len
        .parse::<usize>()
        .ok()
        .filter(|n| n.to_string() == body_len)
        .ok_or_else(|| Error::BodyLengthText {
            id: id.to_string(),
            text: body_len.to_string(),
        })?;
    if declared != body.len() {
        return Err(Error::BodyLength {
            id: id.to_string(),
            declared,
            actual: body.len(),
        });
    }
    Ok(Parsed { class, children, body })
}

/// One inflation: the objects received, those already checked, and the
/// bytes left to materialise.
struct Inflater<'a> {
    objects: &'a BTreeMap<String, Vec<u8>>,
    parsed: BTreeMap<&'a str, Parsed<'a>>,
    bytes_left: usize,
    bytes_max: usize,
}

impl<'a> Inflater<'a> {
    fn new(objects: &'a BTreeMap<String, Vec<u8>>, bytes_max: usize) -> Inflater<'a> {
        Inflater {
            objects,
            parsed: BTreeMap::new(),
            bytes_left: bytes_max,
            bytes_max,
        }
    }

    /// The object `id`: received, hashing to its id, well formed. Each
    /// object is hashed once.
    fn object(&mut self, id: &str) -> Result<Parsed<'a>, Error> {
        if let Some(parsed) = self.parsed.get(id) {
            return Ok(parsed.clone());
        }
        check_id(id)?;
        let (key, content) = self
            .objects
            .get_key_value(id)
            .ok_or_else(|| Error::Missing { id: id.to_string() })?;
        let actual = sha256_hex(content);
        if actual != id {
            return Err(Error::IdMismatch {
                id: id.to_string(),
                actual,
            });
        }
        let parsed = parse(id, content)?;
        self.parsed.insert(key.as_str(), parsed.clone());
        Ok(parsed)
    }

    /// The object `id`, which must be of `class`; its body is charged.
    fn expect(&mut self, id: &str, class: Class) -> Result<Parsed<'a>, Error> {
        let parsed = self.object(id)?;
        if parsed.class != class {
            return Err(Error::WrongClass {
                id: id.to_string(),
                expected: class.name(),
                found: parsed.class.name(),
            });
        }
        self.charge(id, parsed.body.len())?;
        Ok(parsed)
    }

    fn charge(&mut self, id: &str, bytes: usize) -> Result<(), Error> {
        self.bytes_left = self.bytes_left.checked_sub(bytes).ok_or_else(|| Error::TooLarge {
            id: id.to_string(),
            limit: self.bytes_max,
        })?;
        Ok(())
    }

    /// The tree lists, at each node, the children its header lists, in any
    /// order: Flower's SuperLink rebuilds the trees it sends from its object
    /// store, which (on SQLite) keeps no order.
    fn check_tree(&mut self, tree: &pb::ObjectTree, depth: usize) -> Result<(), Error> {
        let parsed = self.object(&tree.object_id)?;
        let in_header: BTreeSet<&str> = parsed.children.iter().copied().collect();
        let in_tree: BTreeSet<&str> = tree.children.iter().map(|node| node.object_id.as_str()).collect();
        let same = parsed.children.len() == tree.children.len()
            && in_tree.len() == tree.children.len()
            && in_header == in_tree;
        if !same {
            return Err(Error::TreeMismatch {
                id: tree.object_id.clone(),
            });
        }
        if !tree.children.is_empty() && depth >= MAX_DEPTH {
            return Err(Error::TooDeep {
                id: tree.object_id.clone(),
            });
        }
        tree.children
            .iter()
            .try_for_each(|child| self.check_tree(child, depth + 1))
    }

    fn message(&mut self, id: &str) -> Result<Message, Error> {
        let parsed = self.expect(id, Class::Message)?;
        let body = pb::Message::decode(parsed.body).map_err(|source| Error::Protobuf {
            id: id.to_string(),
            source,
        })?;
        if body.content.is_some() {
            return Err(Error::ContentInBody { id: id.to_string() });
        }
        let mut metadata = metadata_from_proto(&body.metadata.ok_or_else(|| Error::NoMetadata { id: id.to_string() })?);
        metadata.message_id = id.to_string();
        let body = match body.error {
            Some(error) => {
                no_children(id, &parsed, Class::Message)?;
                Err(records::Error {
                    code: error.code,
                    reason: error.reason,
                })
            }
            None => match parsed.children[..] {
                [child] => Ok(Arc::new(self.record_dict(child)?)),
                _ => {
                    return Err(Error::ContentChildren {
                        id: id.to_string(),
                        found: parsed.children.len(),
                    })
                }
            },
        };
        Ok(Message { metadata, body })
    }

    fn record_dict(&mut self, id: &str) -> Result<RecordDict, Error> {
        let parsed = self.expect(id, Class::RecordDict)?;
        let refs = refs(id, &parsed)?;
        let mut records = RecordDict::new();
        for (key, child) in refs {
            let record = match self.object(&child)?.class {
                Class::ArrayRecord => Record::Arrays(self.array_record(&child)?),
                Class::ConfigRecord => Record::Config(self.config_record(&child)?),
                Class::MetricRecord => Record::Metrics(self.metric_record(&child)?),
                other => {
                    return Err(Error::WrongClass {
                        id: child,
                        expected: "a record",
                        found: other.name(),
                    })
                }
            };
            records.insert(key, record);
        }
        Ok(records)
    }

    fn array_record(&mut self, id: &str) -> Result<ArrayRecord, Error> {
        let parsed = self.expect(id, Class::ArrayRecord)?;
        let refs = refs(id, &parsed)?;
        let mut arrays = ArrayRecord::new();
        for (key, child) in refs {
            arrays.insert(key, self.array(&child)?);
        }
        Ok(arrays)
    }

    fn config_record(&mut self, id: &str) -> Result<ConfigRecord, Error> {
        let parsed = self.expect(id, Class::ConfigRecord)?;
        no_children(id, &parsed, Class::ConfigRecord)?;
        let record = pb::ConfigRecord::decode(parsed.body).map_err(|source| Error::Protobuf {
            id: id.to_string(),
            source,
        })?;
        proto::config_record_from_proto(&record).map_err(|source| Error::Record {
            id: id.to_string(),
            source,
        })
    }

    fn metric_record(&mut self, id: &str) -> Result<MetricRecord, Error> {
        let parsed = self.expect(id, Class::MetricRecord)?;
        no_children(id, &parsed, Class::MetricRecord)?;
        let record = pb::MetricRecord::decode(parsed.body).map_err(|source| Error::Protobuf {
            id: id.to_string(),
            source,
        })?;
        proto::metric_record_from_proto(&record).map_err(|source| Error::Record {
            id: id.to_string(),
            source,
        })
    }

    fn array(&mut self, id: &str) -> Result<Array, Error> {
        let parsed = self.expect(id, Class::Array)?;
        let shape_error = || Error::JsonShape {
            id: id.to_string(),
            expected: "an object with a dtype, a shape, an stype and arraychunk_ids",
        };
        let body = json(id, parsed.body)?;
        let fields = body.as_object().ok_or_else(shape_error)?;
        let text = |name: &str| fields.get(name).and_then(serde_json::Value::as_str);
        let numbers = |name: &str| -> Option<Vec<u64>> {
            fields
                .get(name)?
                .as_array()?
                .iter()
                .map(serde_json::Value::as_u64)
                .collect()
        };
        let (Some(dtype), Some(shape), Some(stype), Some(indexes)) = (
            text("dtype"),
            numbers("shape"),
            text("stype"),
            numbers("arraychunk_ids"),
        ) else {
            return Err(shape_error());
        };
        let mut chunks = Vec::with_capacity(indexes.len().min(parsed.children.len()));
        for &index in &indexes {
            let chunk = usize::try_from(index)
                .ok()
                .and_then(|i| parsed.children.get(i))
                .ok_or_else(|| Error::ChunkIndex {
                    id: id.to_string(),
                    index,
                    count: parsed.children.len(),
                })?;
            chunks.push(*chunk);
        }
        let used: BTreeSet<&str> = chunks.iter().copied().collect();
        if used.len() != parsed.children.len() {
            return Err(Error::ChildrenMismatch { id: id.to_string() });
        }
        // Every chunk is checked before any byte is copied.
        let mut chunk_bodies = BTreeMap::new();
        for &child in &parsed.children {
            let chunk = self.object(child)?;
            if chunk.class != Class::ArrayChunk {
                return Err(Error::WrongClass {
                    id: child.to_string(),
                    expected: Class::ArrayChunk.name(),
                    found: chunk.class.name(),
                });
            }
            no_children(child, &chunk, Class::ArrayChunk)?;
            chunk_bodies.insert(child, chunk.body);
        }
        let total = chunks
            .iter()
            .try_fold(0usize, |total, chunk| total.checked_add(chunk_bodies[chunk].len()));
        self.charge(id, total.unwrap_or(usize::MAX))?;
        let mut data = Vec::with_capacity(total.unwrap_or(0));
        for chunk in &chunks {
            data.extend_from_slice(chunk_bodies[chunk]);
        }
        if stype != STYPE_NUMPY {
            return Err(Error::Stype {
                id: id.to_string(),
                stype: stype.to_string(),
            });
        }
        let array = Array::from_npy(&data).map_err(|source| Error::Npy {
            id: id.to_string(),
            source,
        })?;
        if array.dtype() != dtype {
            return Err(Error::ArrayMismatch {
                id: id.to_string(),
                field: "dtype",
            });
        }
        if array.shape.len() != shape.len() || array.shape.iter().zip(&shape).any(|(&a, &b)| a as u64 != b) {
            return Err(Error::ArrayMismatch {
                id: id.to_string(),
                field: "shape",
            });
        }
        Ok(array)
    }
}

fn no_children(id: &str, parsed: &Parsed<'_>, class: Class) -> Result<(), Error> {
    if parsed.children.is_empty() {
        Ok(())
    } else {
        Err(Error::UnexpectedChildren {
            id: id.to_string(),
            class: class.name(),
            found: parsed.children.len(),
        })
    }
}

fn json(id: &str, body: &[u8]) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(body).map_err(|source| Error::Json {
        id: id.to_string(),
        source,
    })
}

/// The `{"<key>": "<child id>", ...}` body of a `RecordDict` or an
/// `ArrayRecord`, in order; the ids it names must be the header's
/// children.
fn refs(id: &str, parsed: &Parsed<'_>) -> Result<Vec<(String, String)>, Error> {
    let shape_error = || Error::JsonShape {
        id: id.to_string(),
        expected: "an object of object ids",
    };
    let body = json(id, parsed.body)?;
    let map = body.as_object().ok_or_else(shape_error)?;
    let refs: Vec<(String, String)> = map
        .iter()
        .map(|(key, value)| value.as_str().map(|child| (key.clone(), child.to_string())))
        .collect::<Option<_>>()
        .ok_or_else(shape_error)?;
    let named: BTreeSet<&str> = refs.iter().map(|(_, child)| child.as_str()).collect();
    let listed: BTreeSet<&str> = parsed.children.iter().copied().collect();
    if named != listed {
        return Err(Error::ChildrenMismatch { id: id.to_string() });
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ConfigValue, MetricValue, Values};
    use proptest::prelude::*;

    const UNLIMITED: usize = usize::MAX;

    fn metadata() -> Metadata {
        Metadata {
            run_id: 7,
            message_id: "ignored".into(),
            src_node_id: 1,
            dst_node_id: 42,
            reply_to_message_id: String::new(),
            group_id: "1".into(),
            ttl: 43200.0,
            message_type: "train".into(),
            created_at: 1.5,
        }
    }

    fn message(content: RecordDict) -> Message {
        Message {
            metadata: metadata(),
            body: Ok(Arc::new(content)),
        }
    }

    fn content_of(id: &str, deflated: &Deflated) -> Vec<u8> {
        deflated
            .objects
            .iter()
            .find(|object| object.id == id)
            .map(|object| object.content.clone())
            .unwrap()
    }

    /// What an inflated message is: the original with its object id.
    fn with_id(mut message: Message, id: &str) -> Message {
        message.metadata.message_id = id.to_string();
        message
    }

    #[track_caller]
    fn check_round_trip(message: &Message) {
        let deflated = deflate(message);
        let expected = with_id(message.clone(), deflated.message_id());
        let contents = deflated.contents();
        assert_eq!(inflate(&deflated.tree, &contents, UNLIMITED).unwrap(), expected);
        assert_eq!(
            inflate_by_id(deflated.message_id(), &contents, UNLIMITED).unwrap(),
            expected
        );
        for object in &deflated.objects {
            check_object(&object.id, &object.content).unwrap();
        }
    }

    // The expected bytes and ids below are Flower 1.27's own, printed by its
    // Python package for the same values.

    #[test]
    fn an_empty_record_dict_is_flowers_object() {
        let deflated = deflate(&message(RecordDict::new()));
        let record_dict = &deflated.objects[0];
        assert_eq!(record_dict.content, b"RecordDict  2\0{}");
        assert_eq!(
            record_dict.id,
            "a5fc9cb09319dc373f7a8f11a799fd0d90c359120fd6241c230de34a4f93be3e"
        );
    }

    #[test]
    fn a_message_deflates_to_flowers_bytes_and_ids() {
        let mut config = ConfigRecord::new();
        config.insert("lr", ConfigValue::Float(0.1));
        let mut content = RecordDict::new();
        content.insert("cfg", Record::Config(config));
        let deflated = deflate(&message(content));
        let config_id = "efc015c52574c8eaa1cccaf60191f2106bc548d18675ab0e599b2956d841edbb";
        let record_dict_id = "816dddc3bbe57b53ce9a70bfa6f1783e1e8e602cb8c046eddee3f89b716f56e7";
        let message_id = "d1f4bcefc8e5b751a1ef9a40956cd46e6526d6ba019cf3038065fea55299e0d2";
        let ids: Vec<&str> = deflated.objects.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, [config_id, record_dict_id, message_id]);
        assert_eq!(
            content_of(config_id, &deflated),
            b"ConfigRecord  17\0\n\x0f\n\x02lr\x12\t\t\x9a\x99\x99\x99\x99\x99\xb9?"
        );
        assert_eq!(
            content_of(record_dict_id, &deflated),
            format!("RecordDict {config_id} 75\0{{\"cfg\": \"{config_id}\"}}").as_bytes()
        );
        let mut expected = format!("Message {record_dict_id} 36\0").into_bytes();
        expected.extend_from_slice(
            b"\n\"\x08\x07\x18\x01 *2\x0119\x00\x00\x00\x00\x00\x18\xe5@B\x05trainI\x00\x00\x00\x00\x00\x00\xf8?",
        );
        assert_eq!(content_of(message_id, &deflated), expected);
        assert_eq!(
            deflated.tree,
            pb::ObjectTree {
                object_id: message_id.into(),
                children: vec![pb::ObjectTree {
                    object_id: record_dict_id.into(),
                    children: vec![pb::ObjectTree {
                        object_id: config_id.into(),
                        children: vec![],
                    }],
                }],
            }
        );
    }

    #[test]
    fn an_error_message_has_no_children() {
        let failed = Message {
            metadata: metadata(),
            body: Err(records::Error {
                code: 2,
                reason: "boom".into(),
            }),
        };
        let deflated = deflate(&failed);
        assert_eq!(
            deflated.message_id(),
            "25224e50ea67c714bfa9a880e223ba9bb6792f3e8c5fe44194e3504366ee559f"
        );
        assert!(deflated.tree.children.is_empty());
        assert!(deflated.objects[0].content.starts_with(b"Message  46\0"));
        check_round_trip(&failed);
    }

    #[test]
    fn an_array_deflates_to_flowers_json_and_chunk() {
        let mut arrays = ArrayRecord::new();
        arrays.insert("w", Array::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays));
        let deflated = deflate(&message(content));
        let chunk_id = "0bd55c552a4d962cf4398ecd7b71d1a05377410b9b904603b85f1760b8928530";
        let array_id = "9a6df3451aa0b992591a9034c8bd92ed282fdd133b06f879662523e78df61e38";
        assert_eq!(
            content_of(array_id, &deflated),
            format!(
                "Array {chunk_id} 86\0{{\"dtype\": \"float32\", \"shape\": [2, 2], \"stype\": \"numpy.ndarray\", \"arraychunk_ids\": [0]}}"
            )
            .as_bytes()
        );
        assert!(content_of(chunk_id, &deflated).starts_with(b"ArrayChunk  144\0\x93NUMPY"));
    }

    #[test]
    fn json_strings_are_pythons() {
        // json.dumps('a\x7f\u00e9\U0001F600"\\\n\x01') in Python 3.
        let mut out = String::new();
        push_json_string(&mut out, "a\u{7f}\u{e9}\u{1F600}\"\\\n\u{1}");
        assert_eq!(out, r#""a\u007f\u00e9\ud83d\ude00\"\\\n\u0001""#);
        let mut out = String::new();
        push_json_string(&mut out, "\t\r\u{8}\u{c} ~");
        assert_eq!(out, r#""\t\r\b\f ~""#);
        let mut out = String::new();
        push_json_ints(&mut out, &[]);
        push_json_ints(&mut out, &[7]);
        push_json_ints(&mut out, &[1, 20, 300]);
        assert_eq!(out, "[][7][1, 20, 300]");
    }

    /// A `uint8` array whose `.npy` bytes are exactly `len` long.
    fn npy_of_len(len: usize) -> Array {
        let header = Array::new(vec![0], Values::U8(vec![])).npy_len();
        // The header's length stays 128 for any count of up to 20 digits.
        let count = len - header;
        let array = Array::new(vec![count], Values::U8(vec![0; count]));
        assert_eq!(array.npy_len(), len);
        array
    }

    fn array_objects(array: Array) -> (Deflated, Vec<usize>) {
        let mut arrays = ArrayRecord::new();
        arrays.insert("a", array);
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays));
        let deflated = deflate(&message(content));
        let chunk_lens = deflated
            .objects
            .iter()
            .filter(|object| object.content.starts_with(b"ArrayChunk "))
            .map(|object| parse(&object.id, &object.content).unwrap().body.len())
            .collect();
        (deflated, chunk_lens)
    }

    #[test]
    fn arrays_split_into_chunks_at_flowers_size() {
        let size = MAX_ARRAY_CHUNK_SIZE;
        for (len, chunks) in [
            (size - 1, vec![size - 1]),
            (size, vec![size]),
            (size + 1, vec![size, 1]),
        ] {
            let array = npy_of_len(len);
            let (deflated, lens) = array_objects(array.clone());
            assert_eq!(lens, chunks, "npy of {len} bytes");
            check_round_trip(&message({
                let mut content = RecordDict::new();
                content.insert("arrays", Record::Arrays(ArrayRecord::from_arrays(vec![array])));
                content
            }));
            let array_tree = &deflated.tree.children[0].children[0].children[0];
            assert_eq!(array_tree.children.len(), chunks.len());
        }
    }

    #[test]
    fn identical_chunks_are_one_child_listed_by_index() {
        // Three chunks, the last two all zeros: two distinct children.
        let (deflated, lens) = array_objects(npy_of_len(3 * MAX_ARRAY_CHUNK_SIZE));
        assert_eq!(lens, [MAX_ARRAY_CHUNK_SIZE, MAX_ARRAY_CHUNK_SIZE]);
        let array = deflated
            .objects
            .iter()
            .find(|object| object.content.starts_with(b"Array "))
            .unwrap();
        assert!(array.content.ends_with(b"\"arraychunk_ids\": [0, 1, 1]}"));
        let contents = deflated.contents();
        let inflated = inflate(&deflated.tree, &contents, UNLIMITED).unwrap();
        let arrays = inflated.content().unwrap().arrays("arrays").unwrap();
        assert_eq!(arrays.get("a").unwrap().npy_len(), 3 * MAX_ARRAY_CHUNK_SIZE);
    }

    #[test]
    fn a_record_used_twice_is_one_object() {
        let mut metrics = MetricRecord::new();
        metrics.insert("loss", MetricValue::Float(0.5));
        let array = Array::from_f64(vec![1], vec![2.0]);
        let mut content = RecordDict::new();
        content.insert("a", Record::Metrics(metrics.clone()));
        content.insert("b", Record::Metrics(metrics));
        content.insert(
            "c",
            Record::Arrays(ArrayRecord::from_arrays(vec![array.clone(), array])),
        );
        let deflated = deflate(&message(content.clone()));
        // metric, chunk, array, array record, record dict, message.
        assert_eq!(deflated.objects.len(), 6);
        let record_dict = &deflated.tree.children[0];
        assert_eq!(record_dict.children.len(), 2);
        assert_eq!(record_dict.children[1].children.len(), 1);
        check_round_trip(&message(content));
    }

    #[test]
    fn empty_lists_take_pythons_list_type() {
        let mut config = ConfigRecord::new();
        config.insert("i", ConfigValue::IntList(vec![]));
        config.insert("s", ConfigValue::StrList(vec![]));
        let mut metrics = MetricRecord::new();
        metrics.insert("i", MetricValue::IntList(vec![]));
        let mut content = RecordDict::new();
        content.insert("config", Record::Config(config));
        content.insert("metrics", Record::Metrics(metrics));
        let deflated = deflate(&message(content));
        let inflated = inflate(&deflated.tree, &deflated.contents(), UNLIMITED).unwrap();
        let inflated = inflated.content().unwrap();
        let config = inflated.config("config").unwrap();
        assert_eq!(config.get("i"), Some(&ConfigValue::BoolList(vec![])));
        assert_eq!(config.get("s"), Some(&ConfigValue::BoolList(vec![])));
        let metrics = inflated.metrics("metrics").unwrap();
        assert_eq!(metrics.get("i"), Some(&MetricValue::FloatList(vec![])));
    }

    #[test]
    fn negative_zero_times_are_kept() {
        let mut zero = message(RecordDict::new());
        zero.metadata.ttl = 0.0;
        let mut negative = zero.clone();
        negative.metadata.ttl = -0.0;
        assert_ne!(deflate(&zero).message_id(), deflate(&negative).message_id());
    }

    #[test]
    fn the_envelope_carries_the_id_and_no_content() {
        let mut content = RecordDict::new();
        content.insert("m", Record::Metrics(MetricRecord::new()));
        let sent = message(content);
        let envelope = envelope(&sent, "abc");
        assert_eq!(envelope.metadata.as_ref().unwrap().message_id, "abc");
        assert_eq!(envelope.metadata.as_ref().unwrap().dst_node_id, 42);
        assert_eq!(envelope.content, Some(pb::RecordDict::default()));
        assert_eq!(envelope.error, None);
        let failed = Message {
            metadata: metadata(),
            body: Err(records::Error {
                code: 0,
                reason: String::new(),
            }),
        };
        let envelope = super::envelope(&failed, "abc");
        assert_eq!(envelope.content, None);
        assert_eq!(envelope.error, Some(pb::Error::default()));
    }

    #[test]
    fn tree_ids_are_distinct_and_children_first() {
        let leaf = |id: &str| pb::ObjectTree {
            object_id: id.into(),
            children: vec![],
        };
        let tree = pb::ObjectTree {
            object_id: "root".into(),
            children: vec![
                pb::ObjectTree {
                    object_id: "x".into(),
                    children: vec![leaf("a"), leaf("b")],
                },
                pb::ObjectTree {
                    object_id: "y".into(),
                    children: vec![leaf("b"), leaf("c")],
                },
            ],
        };
        assert_eq!(tree_object_ids(&tree), ["a", "b", "x", "c", "y", "root"]);
    }

    fn sample() -> Message {
        let mut arrays = ArrayRecord::from_arrays(vec![Array::from_f32(vec![3], vec![1.0, 2.0, 3.0])]);
        arrays.insert("ints", Array::new(vec![2, 1], Values::I64(vec![-1, i64::MAX])));
        let mut config = ConfigRecord::new();
        config.insert("name", ConfigValue::Str("fédéré".into()));
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays));
        content.insert("config", Record::Config(config));
        message(content)
    }

    /// Replaces the object `id` by `content`, under its new id, and updates
    /// every object that names it (and so on up), as a peer forging a
    /// consistent graph would. Returns the renames.
    fn replace(objects: &mut BTreeMap<String, Vec<u8>>, id: &str, content: Vec<u8>) -> BTreeMap<String, String> {
        let mut renames = BTreeMap::new();
        let mut work = vec![(id.to_string(), content)];
        while let Some((old, content)) = work.pop() {
            objects.remove(&old);
            let new = sha256_hex(&content);
            objects.insert(new.clone(), content);
            if old == new {
                continue;
            }
            renames.insert(old.clone(), new.clone());
            let parents: Vec<String> = objects
                .iter()
                .filter(|(other, bytes)| **other != new && bytes.windows(64).any(|w| w == old.as_bytes()))
                .map(|(other, _)| other.clone())
                .collect();
            for parent in parents {
                let bytes = objects[&parent].clone();
                let mut updated = Vec::with_capacity(bytes.len());
                let mut at = 0;
                while at < bytes.len() {
                    if bytes[at..].starts_with(old.as_bytes()) {
                        updated.extend_from_slice(new.as_bytes());
                        at += 64;
                    } else {
                        updated.push(bytes[at]);
                        at += 1;
                    }
                }
                work.push((parent, updated));
            }
        }
        renames
    }

    fn renamed(tree: &pb::ObjectTree, renames: &BTreeMap<String, String>) -> pb::ObjectTree {
        let mut id = tree.object_id.clone();
        for _ in 0..16 {
            match renames.get(&id) {
                Some(next) => id = next.clone(),
                None => break,
            }
        }
        pb::ObjectTree {
            object_id: id,
            children: tree.children.iter().map(|child| renamed(child, renames)).collect(),
        }
    }

    #[test]
    fn forged_objects_are_refused_with_the_reason() {
        let deflated = deflate(&sample());
        let contents = deflated.contents();
        let tree = &deflated.tree;
        let array_record = deflated.tree.children[0].children[0].object_id.clone();

        let mut missing = contents.clone();
        missing.remove(&array_record);
        assert!(matches!(inflate(tree, &missing, UNLIMITED), Err(Error::Missing { id }) if id == array_record));

        let mut tampered = contents.clone();
        tampered.get_mut(&array_record).unwrap().push(b' ');
        assert!(matches!(inflate(tree, &tampered, UNLIMITED), Err(Error::IdMismatch { id, .. }) if id == array_record));

        // Flower's SuperLink sends trees whose children come in another
        // order than the headers list them (its SQLite store keeps none).
        let mut reordered = tree.clone();
        reordered.children[0].children.swap(0, 1);
        assert_eq!(
            inflate(&reordered, &contents, UNLIMITED).unwrap(),
            inflate(tree, &contents, UNLIMITED).unwrap()
        );
        let mut wrong_tree = tree.clone();
        wrong_tree.children[0].children[1] = wrong_tree.children[0].children[0].clone();
        assert!(matches!(
            inflate(&wrong_tree, &contents, UNLIMITED),
            Err(Error::TreeMismatch { .. })
        ));

        assert!(matches!(
            inflate(tree, &contents, 100),
            Err(Error::TooLarge { limit: 100, .. })
        ));

        // A record dict that names a chunk as a record.
        let chunk = deflated
            .objects
            .iter()
            .find(|object| object.content.starts_with(b"ArrayChunk "))
            .unwrap();
        let body = format!("{{\"x\": \"{}\"}}", chunk.id);
        let forged = object_content("RecordDict", &[&chunk.id], body.as_bytes());
        let record_dict = deflated.tree.children[0].object_id.clone();
        let mut objects = contents.clone();
        let renames = replace(&mut objects, &record_dict, forged);
        let root = renamed(&deflated.tree, &renames).object_id;
        assert!(matches!(
            inflate_by_id(&root, &objects, UNLIMITED),
            Err(Error::WrongClass {
                expected: "a record",
                found: "ArrayChunk",
                ..
            })
        ));

        // A message body that carries content.
        let mut body = message_body(&metadata(), None);
        prost::encoding::message::encode(2, &pb::RecordDict::default(), &mut body);
        let forged = object_content("Message", &[&record_dict], &body);
        let mut objects = contents.clone();
        objects.insert(sha256_hex(&forged), forged.clone());
        assert!(matches!(
            inflate_by_id(&sha256_hex(&forged), &objects, UNLIMITED),
            Err(Error::ContentInBody { .. })
        ));

        // Headers.
        for (content, expected) in [
            (&b"RecordDict  2{}"[..], "NoDivider"),
            (b"RecordDict 2\0{}", "HeaderFields"),
            (b"Recorddict  2\0{}", "UnknownClass"),
            (b"RecordDict  02\0{}", "BodyLengthText"),
            (b"RecordDict  3\0{}", "BodyLength"),
            (b"RecordDict abc 2\0{}", "InvalidId"),
            (b"\xff  2\0{}", "HeaderNotUtf8"),
        ] {
            let id = sha256_hex(content);
            let error = check_object(&id, content).unwrap_err();
            assert!(format!("{error:?}").starts_with(expected), "{error:?}");
        }
    }

    #[test]
    fn repeated_chunk_indexes_are_bounded() {
        // One 200-byte chunk named a million times would be 200 MB.
        let chunk = object_content("ArrayChunk", &[], &[0; 200]);
        let chunk_id = sha256_hex(&chunk);
        let indexes = vec!["0"; 1_000_000].join(", ");
        let body = format!(
            "{{\"dtype\": \"uint8\", \"shape\": [1], \"stype\": \"numpy.ndarray\", \"arraychunk_ids\": [{indexes}]}}"
        );
        let array = object_content("Array", &[&chunk_id], body.as_bytes());
        let array_id = sha256_hex(&array);
        let record = object_content(
            "ArrayRecord",
            &[&array_id],
            format!("{{\"a\": \"{array_id}\"}}").as_bytes(),
        );
        let record_id = sha256_hex(&record);
        let dict = object_content(
            "RecordDict",
            &[&record_id],
            format!("{{\"r\": \"{record_id}\"}}").as_bytes(),
        );
        let dict_id = sha256_hex(&dict);
        let message = object_content("Message", &[&dict_id], &message_body(&metadata(), None));
        let message_id = sha256_hex(&message);
        let objects: BTreeMap<String, Vec<u8>> = [
            (chunk_id, chunk),
            (array_id.clone(), array),
            (record_id, record),
            (dict_id, dict),
            (message_id.clone(), message),
        ]
        .into_iter()
        .collect();
        let error = inflate_by_id(&message_id, &objects, 64 << 20).unwrap_err();
        assert!(
            matches!(error, Error::TooLarge { ref id, .. } if *id == array_id),
            "{error:?}"
        );
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-zé\"\\\\ 😀]{0,5}"
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0), Just(-0.0), -1e300f64..1e300]
    }

    fn array() -> impl Strategy<Value = Array> {
        (proptest::collection::vec(0usize..4, 0..3), 0..5u8).prop_map(|(shape, dtype)| {
            let count: usize = shape.iter().product();
            let values = match dtype {
                0 => Values::F32((0..count).map(|i| i as f32 * 0.5).collect()),
                1 => Values::F64((0..count).map(|i| i as f64 - 1.0).collect()),
                2 => Values::I32((0..count).map(|i| i as i32 - 3).collect()),
                3 => Values::I64((0..count).map(|i| i as i64 * 1_000_000_007).collect()),
                _ => Values::U8((0..count).map(|i| i as u8).collect()),
            };
            Array::new(shape, values)
        })
    }

    fn config_value() -> impl Strategy<Value = ConfigValue> {
        prop_oneof![
            any::<i64>().prop_map(ConfigValue::Int),
            finite().prop_map(ConfigValue::Float),
            ".{0,4}".prop_map(ConfigValue::Str),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(ConfigValue::Bytes),
            any::<bool>().prop_map(ConfigValue::Bool),
            proptest::collection::vec(any::<i64>(), 1..3).prop_map(ConfigValue::IntList),
            proptest::collection::vec(finite(), 1..3).prop_map(ConfigValue::FloatList),
            proptest::collection::vec(".{0,3}", 1..3).prop_map(ConfigValue::StrList),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3), 1..3)
                .prop_map(ConfigValue::BytesList),
            proptest::collection::vec(any::<bool>(), 0..3).prop_map(ConfigValue::BoolList),
        ]
    }

    fn metric_value() -> impl Strategy<Value = MetricValue> {
        prop_oneof![
            any::<i64>().prop_map(MetricValue::Int),
            finite().prop_map(MetricValue::Float),
            proptest::collection::vec(any::<i64>(), 1..3).prop_map(MetricValue::IntList),
            proptest::collection::vec(finite(), 0..3).prop_map(MetricValue::FloatList),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            proptest::collection::vec((key(), array()), 0..3)
                .prop_map(|items| Record::Arrays(items.into_iter().collect())),
            proptest::collection::vec((key(), config_value()), 0..3)
                .prop_map(|items| Record::Config(items.into_iter().collect())),
            proptest::collection::vec((key(), metric_value()), 0..3)
                .prop_map(|items| Record::Metrics(items.into_iter().collect())),
        ]
    }

    fn any_message() -> impl Strategy<Value = Message> {
        let metadata = (
            any::<u64>(),
            any::<(u64, u64)>(),
            prop_oneof![Just(String::new()), "[0-9a-f]{64}"],
            ".{0,3}",
            finite(),
            ".{0,5}",
            finite(),
        )
            .prop_map(
                |(run_id, (src_node_id, dst_node_id), reply_to_message_id, group_id, ttl, message_type, created_at)| {
                    Metadata {
                        run_id,
                        message_id: String::new(),
                        src_node_id,
                        dst_node_id,
                        reply_to_message_id,
                        group_id,
                        ttl,
                        message_type,
                        created_at,
                    }
                },
            );
        let body = prop_oneof![
            4 => proptest::collection::vec((key(), record()), 0..4)
                .prop_map(|items| Ok(Arc::new(items.into_iter().collect::<RecordDict>()))),
            1 => (any::<i64>(), ".{0,8}").prop_map(|(code, reason)| Err(records::Error { code, reason })),
        ];
        (metadata, body).prop_map(|(metadata, body)| Message { metadata, body })
    }

    /// A mutation of an object's bytes.
    #[derive(Clone, Debug)]
    enum Mutation {
        Flip { at: usize, bits: u8 },
        Truncate { at: usize },
        Insert { at: usize, byte: u8 },
        Header { text: String },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
            any::<usize>().prop_map(|at| Mutation::Truncate { at }),
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
            "[A-Za-z0-9 ,]{0,20}".prop_map(|text| Mutation::Header { text }),
        ]
    }

    fn mutate(content: &[u8], mutation: &Mutation) -> Vec<u8> {
        let mut bytes = content.to_vec();
        match mutation {
            Mutation::Flip { at, bits } if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= bits;
            }
            Mutation::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), *byte),
            Mutation::Header { text } => {
                let divider = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                bytes.splice(..divider, text.bytes());
            }
            Mutation::Flip { .. } => {}
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Any message comes back as it was sent, with its object id.
        #[test]
        fn messages_round_trip(message in any_message()) {
            let deflated = deflate(&message);
            let contents = deflated.contents();
            let inflated = inflate(&deflated.tree, &contents, UNLIMITED).unwrap();
            prop_assert_eq!(&inflated, &with_id(message, deflated.message_id()));
            // And deflating it again gives the same objects.
            prop_assert_eq!(deflate(&inflated), deflated);
        }

        /// Mutated objects, re-hashed and named by re-hashed parents (the
        /// peer forges a consistent graph), never panic.
        #[test]
        fn mutated_objects_never_panic(message in any_message(), which in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..3)) {
            let deflated = deflate(&message);
            let mut objects = deflated.contents();
            let target = &deflated.objects[which % deflated.objects.len()];
            let mut content = target.content.clone();
            for mutation in &mutations {
                content = mutate(&content, mutation);
            }
            let renames = replace(&mut objects, &target.id, content);
            let tree = renamed(&deflated.tree, &renames);
            let _ = inflate(&tree, &objects, 1 << 20);
            let _ = inflate_by_id(&tree.object_id, &objects, 1 << 20);
            // The original tree against the forged objects too.
            let _ = inflate(&deflated.tree, &objects, 1 << 20);
            for (id, content) in &objects {
                let _ = check_object(id, content);
            }
        }

        /// Arbitrary bytes, alone or behind a real header, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            class in prop_oneof![Just(""), Just("Message"), Just("RecordDict"), Just("ArrayRecord"), Just("Array"), Just("ConfigRecord"), Just("MetricRecord"), Just("ArrayChunk")],
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let content = if class.is_empty() { body } else { object_content(class, &[], &body) };
            let id = sha256_hex(&content);
            let _ = check_object(&id, &content);
            let objects: BTreeMap<String, Vec<u8>> = [(id.clone(), content)].into_iter().collect();
            let _ = inflate_by_id(&id, &objects, 1 << 20);
        }

        /// Arbitrary trees over real objects never panic.
        #[test]
        fn arbitrary_trees_never_panic(message in any_message(), picks in proptest::collection::vec((any::<usize>(), 0usize..4), 1..12)) {
            let deflated = deflate(&message);
            let objects = deflated.contents();
            let ids: Vec<&String> = objects.keys().collect();
            // A chain of nodes, each with `children` copies of the next.
            let mut tree: Option<pb::ObjectTree> = None;
            for (pick, children) in picks {
                let id = ids[pick % ids.len()].clone();
                let child = tree.take();
                tree = Some(pb::ObjectTree {
                    object_id: id,
                    children: child.map(|c| vec![c; children]).unwrap_or_default(),
                });
            }
            let tree = tree.unwrap();
            let _ = tree_object_ids(&tree);
            let _ = inflate(&tree, &objects, 1 << 20);
        }
    }
}
