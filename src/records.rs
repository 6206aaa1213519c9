//! Flower's Message API as plain Rust data: `Array`, `ArrayRecord`,
//! `MetricRecord`, `ConfigRecord`, `RecordDict`, `Message` and `Context`.
//!
//! These are the values a ServerApp and a ClientApp exchange. Records keep
//! insertion order, as Flower's do, because that order is visible in logs and
//! decides the order of floating-point sums. Arrays hold typed values; the
//! `.npy` bytes Flower puts on the wire are produced only when asked for
//! ([`Array::to_npy`]) and their length is computed without building them.
//!
//! This module does no I/O and knows nothing about protobuf; `proto.rs`
//! converts at the boundary.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The element values of an [`Array`], by dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// numpy's name for the dtype, as Flower's `Array.dtype` holds it.
    pub fn dtype(&self) -> &'static str {
        match self {
            Values::F32(_) => "float32",
            Values::F64(_) => "float64",
            Values::I32(_) => "int32",
            Values::I64(_) => "int64",
            Values::U8(_) => "uint8",
        }
    }

    /// numpy's `descr` for little-endian data, as written in `.npy` headers.
    fn descr(&self) -> &'static str {
        match self {
            Values::F32(_) => "<f4",
            Values::F64(_) => "<f8",
            Values::I32(_) => "<i4",
            Values::I64(_) => "<i8",
            Values::U8(_) => "|u1",
        }
    }

    fn item_size(&self) -> usize {
        match self {
            Values::F32(_) | Values::I32(_) => 4,
            Values::F64(_) | Values::I64(_) => 8,
            Values::U8(_) => 1,
        }
    }

    /// The raw little-endian element bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.item_size());
        match self {
            Values::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::U8(v) => out.extend_from_slice(v),
        }
        out
    }

    /// The values as `f64`, whatever their dtype (used where Flower's numpy
    /// code promotes to float64).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Values::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::F64(v) => v.clone(),
            Values::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Values::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }
}

/// One tensor of a model: a shape and typed values in row-major order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Values,
}

/// The only storage type Flower defines (`SType.NUMPY`).
pub const STYPE_NUMPY: &str = "numpy.ndarray";

impl Array {
    /// An array whose element count must match its shape.
    pub fn new(shape: Vec<usize>, values: Values) -> Array {
        let count: usize = shape.iter().product();
        assert_eq!(
            count,
            values.len(),
            "shape {shape:?} does not match {} values",
            values.len()
        );
        Array { shape, values }
    }

    pub fn from_f32(shape: Vec<usize>, values: Vec<f32>) -> Array {
        Array::new(shape, Values::F32(values))
    }

    pub fn from_f64(shape: Vec<usize>, values: Vec<f64>) -> Array {
        Array::new(shape, Values::F64(values))
    }

    pub fn dtype(&self) -> &'static str {
        self.values.dtype()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn npy_header_dict(&self) -> String {
        let shape = match self.shape.len() {
            0 => "()".to_string(),
            1 => format!("({},)", self.shape[0]),
            _ => {
                let parts: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
                format!("({})", parts.join(", "))
            }
        };
        format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
            self.values.descr(),
            shape
        )
    }

    /// Length of the `.npy` preamble: magic, version, header length and the
    /// header padded with spaces and a newline to a multiple of 64 bytes.
    fn npy_preamble_len(&self) -> usize {
        let unpadded = 10 + self.npy_header_dict().len() + 1;
        unpadded.div_ceil(64) * 64
    }

    /// Length in bytes of [`Array::to_npy`], computed without building it.
    /// Flower counts model sizes in these bytes.
    pub fn npy_len(&self) -> usize {
        self.npy_preamble_len() + self.values.len() * self.values.item_size()
    }

    /// The array as a complete `.npy` (version 1.0) file, the bytes Flower
    /// keeps in `Array.data`.
    pub fn to_npy(&self) -> Vec<u8> {
        let preamble_len = self.npy_preamble_len();
        let mut header = self.npy_header_dict();
        while 10 + header.len() + 1 < preamble_len {
            header.push(' ');
        }
        header.push('\n');
        let mut out = Vec::with_capacity(self.npy_len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.values.to_le_bytes());
        out
    }

    /// Parses a `.npy` file of one of the supported dtypes (C order).
    pub fn from_npy(bytes: &[u8]) -> Result<Array, RecordsError> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(RecordsError::NotNpy);
        }
        let (header_len, start) = match bytes[6] {
            1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            version => return Err(RecordsError::NpyVersion(version)),
        };
        let header = bytes
            .get(start..start + header_len)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or(RecordsError::TruncatedHeader)?;
        if header.contains("'fortran_order': True") {
            return Err(RecordsError::FortranOrder);
        }
        let descr = header
            .split("'descr':")
            .nth(1)
            .and_then(|rest| rest.split('\'').nth(1))
            .ok_or(RecordsError::NoDescr)?;
        let shape_text = header
            .split("'shape':")
            .nth(1)
            .and_then(|rest| rest.split('(').nth(1))
            .and_then(|rest| rest.split(')').next())
            .ok_or(RecordsError::NoShape)?;
        let shape: Vec<usize> = shape_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(RecordsError::Dimension))
            .collect::<Result<_, _>>()?;
        let data = &bytes[start + header_len..];
        // The shape comes from the bytes: its product may not fit.
        let count = shape
            .iter()
            .try_fold(1usize, |count, &dim| count.checked_mul(dim))
            .ok_or(RecordsError::ShapeTooLarge)?;
        fn chunks<const N: usize, T>(data: &[u8], count: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>, RecordsError> {
            let expected = count.checked_mul(N).ok_or(RecordsError::ShapeTooLarge)?;
            if data.len() != expected {
                return Err(RecordsError::DataLength {
                    expected,
                    found: data.len(),
                });
            }
            Ok(data
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunk size")))
                .collect())
        }
        let values = match descr {
            "<f4" => Values::F32(chunks(data, count, f32::from_le_bytes)?),
            "<f8" => Values::F64(chunks(data, count, f64::from_le_bytes)?),
            "<i4" => Values::I32(chunks(data, count, i32::from_le_bytes)?),
            "<i8" => Values::I64(chunks(data, count, i64::from_le_bytes)?),
            "|u1" | "<u1" => Values::U8(chunks(data, count, u8::from_le_bytes)?),
            other => return Err(RecordsError::Dtype(other.to_string())),
        };
        Ok(Array { shape, values })
    }
}

/// Errors of this module: why `.npy` bytes are not an [`Array`]. (Named so
/// because [`Error`] is Flower's error record of a message.)
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RecordsError {
    #[error("not a .npy file")]
    NotNpy,
    #[error("unsupported .npy version {0}")]
    NpyVersion(u8),
    #[error("truncated .npy header")]
    TruncatedHeader,
    #[error("Fortran-ordered arrays are not supported")]
    FortranOrder,
    #[error("no descr in .npy header")]
    NoDescr,
    #[error("no shape in .npy header")]
    NoShape,
    /// A dimension of the shape is not a number.
    #[error("{0}")]
    Dimension(std::num::ParseIntError),
    #[error("the shape has more elements than memory can address")]
    ShapeTooLarge,
    #[error("expected {expected} data bytes, found {found}")]
    DataLength { expected: usize, found: usize },
    #[error("unsupported dtype {0}")]
    Dtype(String),
}

/// An ordered map from keys to values with unique keys, as Python's dict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ordered<V> {
    items: Vec<(String, V)>,
}

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered { items: Vec::new() }
    }
}

impl<V> Ordered<V> {
    pub fn new() -> Self {
        Ordered { items: Vec::new() }
    }

    /// Inserts or replaces; a replaced key keeps its position (Python dict).
    pub fn insert(&mut self, key: impl Into<String>, value: V) {
        let key = key.into();
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.items.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.items.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let index = self.items.iter().position(|(k, _)| k == key)?;
        Some(self.items.remove(index).1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut V)> {
        self.items.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(k, _)| k.as_str())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }
}

impl<V> FromIterator<(String, V)> for Ordered<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut out = Ordered::new();
        for (k, v) in iter {
            out.insert(k, v);
        }
        out
    }
}

impl<V> IntoIterator for Ordered<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// Named arrays: a model's parameters. Keys are `"0"`, `"1"`, ... when built
/// from a list.
pub type ArrayRecord = Ordered<Array>;

impl ArrayRecord {
    /// Builds a record with keys `"0"`, `"1"`, ... as Flower does for lists.
    pub fn from_arrays(arrays: Vec<Array>) -> ArrayRecord {
        arrays
            .into_iter()
            .enumerate()
            .map(|(i, a)| (i.to_string(), a))
            .collect()
    }

    /// Flower's `ArrayRecord.count_bytes()`: `.npy` bytes plus key lengths.
    pub fn count_bytes(&self) -> usize {
        self.iter().map(|(k, a)| k.len() + a.npy_len()).sum()
    }

    /// Σ `.npy` bytes, the size Flower prints as "ArrayRecord (x MB)".
    pub fn npy_bytes(&self) -> usize {
        self.values().map(Array::npy_len).sum()
    }

    /// A digest of keys, dtypes, shapes and element bytes, in order. Two
    /// records have the same digest exactly when they are bit-identical.
    pub fn digest(&self) -> Digest {
        let mut hasher = Sha256::new();
        for (key, array) in self.iter() {
            hasher.update((key.len() as u64).to_le_bytes());
            hasher.update(key.as_bytes());
            hasher.update(array.dtype().as_bytes());
            hasher.update((array.shape.len() as u64).to_le_bytes());
            for dim in &array.shape {
                hasher.update((*dim as u64).to_le_bytes());
            }
            hasher.update(array.values.to_le_bytes());
        }
        Digest(hasher.finalize().into())
    }
}

/// A SHA-256 digest, rendered as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for readable timelines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A value of a `MetricRecord`: numbers or homogeneous lists of numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetricValue {
    Int(i64),
    Float(f64),
    IntList(Vec<i64>),
    FloatList(Vec<f64>),
}

pub type MetricRecord = Ordered<MetricValue>;

impl MetricRecord {
    /// Flower's `count_bytes`: 8 per number plus the key length.
    pub fn count_bytes(&self) -> usize {
        self.iter()
            .map(|(k, v)| {
                k.len()
                    + 8 * match v {
                        MetricValue::Int(_) | MetricValue::Float(_) => 1,
                        MetricValue::IntList(l) => l.len(),
                        MetricValue::FloatList(l) => l.len(),
                    }
            })
            .sum()
    }
}

/// A value of a `ConfigRecord`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConfigValue {
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Bool(bool),
    IntList(Vec<i64>),
    FloatList(Vec<f64>),
    StrList(Vec<String>),
    BytesList(Vec<Vec<u8>>),
    BoolList(Vec<bool>),
}

pub type ConfigRecord = Ordered<ConfigValue>;

impl ConfigRecord {
    /// Flower's `count_bytes`: bool 1, numbers 8, strings/bytes their length,
    /// plus the key length.
    pub fn count_bytes(&self) -> usize {
        self.iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        ConfigValue::Bool(_) => 1,
                        ConfigValue::Int(_) | ConfigValue::Float(_) => 8,
                        ConfigValue::Str(s) => s.len(),
                        ConfigValue::Bytes(b) => b.len(),
                        ConfigValue::IntList(l) => 8 * l.len(),
                        ConfigValue::FloatList(l) => 8 * l.len(),
                        ConfigValue::StrList(l) => l.iter().map(String::len).sum(),
                        ConfigValue::BytesList(l) => l.iter().map(Vec::len).sum(),
                        ConfigValue::BoolList(l) => l.len(),
                    }
            })
            .sum()
    }
}

/// One record of a [`RecordDict`].
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Arrays(ArrayRecord),
    Metrics(MetricRecord),
    Config(ConfigRecord),
}

impl Record {
    pub fn count_bytes(&self) -> usize {
        match self {
            Record::Arrays(r) => r.count_bytes(),
            Record::Metrics(r) => r.count_bytes(),
            Record::Config(r) => r.count_bytes(),
        }
    }
}

/// The content of a message: named records of the three kinds.
pub type RecordDict = Ordered<Record>;

impl RecordDict {
    pub fn array_records(&self) -> impl Iterator<Item = (&str, &ArrayRecord)> {
        self.iter().filter_map(|(k, r)| match r {
            Record::Arrays(a) => Some((k, a)),
            _ => None,
        })
    }

    pub fn metric_records(&self) -> impl Iterator<Item = (&str, &MetricRecord)> {
        self.iter().filter_map(|(k, r)| match r {
            Record::Metrics(m) => Some((k, m)),
            _ => None,
        })
    }

    pub fn config_records(&self) -> impl Iterator<Item = (&str, &ConfigRecord)> {
        self.iter().filter_map(|(k, r)| match r {
            Record::Config(c) => Some((k, c)),
            _ => None,
        })
    }

    pub fn arrays(&self, key: &str) -> Option<&ArrayRecord> {
        match self.get(key) {
            Some(Record::Arrays(a)) => Some(a),
            _ => None,
        }
    }

    pub fn metrics(&self, key: &str) -> Option<&MetricRecord> {
        match self.get(key) {
            Some(Record::Metrics(m)) => Some(m),
            _ => None,
        }
    }

    pub fn config(&self, key: &str) -> Option<&ConfigRecord> {
        match self.get(key) {
            Some(Record::Config(c)) => Some(c),
            _ => None,
        }
    }

    pub fn count_bytes(&self) -> usize {
        self.values().map(Record::count_bytes).sum()
    }
}

/// A scalar of a run or node configuration (`UserConfigValue`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The TOML/Python-ish type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "bool",
            Scalar::Int(_) => "int",
            Scalar::Float(_) => "float",
            Scalar::Str(_) => "str",
        }
    }
}

/// A flattened run or node configuration. Sorted by key, so that every
/// rendering and every encoding of it is stable.
pub type UserConfig = BTreeMap<String, Scalar>;

/// Flower's error codes for error replies (`ErrorCode`).
pub mod error_code {
    pub const UNKNOWN: i64 = 0;
    pub const LOAD_CLIENT_APP_EXCEPTION: i64 = 1;
    pub const CLIENT_APP_RAISED_EXCEPTION: i64 = 2;
    pub const MESSAGE_UNAVAILABLE: i64 = 3;
    pub const REPLY_MESSAGE_UNAVAILABLE: i64 = 4;
    pub const NODE_UNAVAILABLE: i64 = 5;
    pub const MOD_FAILED_PRECONDITION: i64 = 6;
    pub const INVALID_FAB: i64 = 7;
    pub const CLIENT_APP_CRASHED: i64 = 8;
}

/// An error carried by a message instead of content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Error {
    pub code: i64,
    pub reason: String,
}

/// Message types Flower's strategies use.
pub mod message_type {
    pub const TRAIN: &str = "train";
    pub const EVALUATE: &str = "evaluate";
    pub const QUERY: &str = "query";
}

/// The SuperLink's node id; instructions come from it.
pub const SUPERLINK_NODE_ID: u64 = 1;

/// Routing and identity of a message. Unlike Flower, ids and times are not
/// random or wall-clock: message ids are derived from the run's position and
/// `created_at` is logical, so that messages are reproducible.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub run_id: u64,
    pub message_id: String,
    pub src_node_id: u64,
    pub dst_node_id: u64,
    pub reply_to_message_id: String,
    pub group_id: String,
    pub ttl: f64,
    pub message_type: String,
    pub created_at: f64,
}

/// Flower's default message time-to-live, 12 hours.
pub const DEFAULT_TTL: f64 = 43200.0;

/// A message: metadata plus either content or an error.
///
/// Content is shared: a strategy sends the same records to every sampled node
/// (as Flower does), so instructions to a thousand nodes hold one copy of the
/// model. A receiver that needs to change content clones it (`Arc::make_mut`).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub metadata: Metadata,
    pub body: Result<Arc<RecordDict>, Error>,
}

impl Message {
    /// An instruction from the SuperLink to node `dst_node_id`. The message id
    /// and run id are filled in by the grid that sends it.
    pub fn instruction(content: Arc<RecordDict>, dst_node_id: u64, message_type: &str) -> Message {
        Message {
            metadata: Metadata {
                run_id: 0,
                message_id: String::new(),
                src_node_id: SUPERLINK_NODE_ID,
                dst_node_id,
                reply_to_message_id: String::new(),
                group_id: String::new(),
                ttl: DEFAULT_TTL,
                message_type: message_type.to_string(),
                created_at: 0.0,
            },
            body: Ok(content),
        }
    }

    /// A reply to `to` (src and dst swapped).
    pub fn reply(to: &Message, body: Result<RecordDict, Error>) -> Message {
        Message {
            metadata: Metadata {
                run_id: to.metadata.run_id,
                message_id: format!("{}.reply", to.metadata.message_id),
                src_node_id: to.metadata.dst_node_id,
                dst_node_id: to.metadata.src_node_id,
                reply_to_message_id: to.metadata.message_id.clone(),
                group_id: to.metadata.group_id.clone(),
                ttl: to.metadata.ttl,
                message_type: to.metadata.message_type.clone(),
                created_at: to.metadata.created_at,
            },
            body: body.map(Arc::new),
        }
    }

    pub fn content(&self) -> Option<&RecordDict> {
        self.body.as_deref().ok()
    }

    pub fn error(&self) -> Option<&Error> {
        self.body.as_ref().err()
    }
}

/// Per-node (or ServerApp) context: identity, configuration and the state
/// that persists across the messages of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    pub run_id: u64,
    pub node_id: u64,
    pub node_config: UserConfig,
    pub state: RecordDict,
    pub run_config: UserConfig,
}

/// Flower's key of the ConfigRecord entry that carries the clipping norm from
/// a client-side DP wrapper (server) to its clipping mod (client).
pub const KEY_CLIPPING_NORM: &str = "clipping_norm";
/// Flower's key of the MetricRecord entry by which the adaptive clipping mod
/// (client) tells its DP wrapper (server) whether it clipped.
pub const KEY_NORM_BIT: &str = "norm_bit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_bytes_match_numpy_layout() {
        // numpy 2.x: a float32 (2, 2) array is 144 bytes, a 0-d float64 136,
        // an int64 [3] 152 (reference §1.6).
        let a = Array::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(a.to_npy().len(), 144);
        assert_eq!(a.npy_len(), 144);
        let b = Array::from_f64(vec![], vec![1.5]);
        assert_eq!(b.to_npy().len(), 136);
        let c = Array::new(vec![3], Values::I64(vec![1, 2, 3]));
        assert_eq!(c.to_npy().len(), 152);
        let npy = a.to_npy();
        assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
        let header = std::str::from_utf8(&npy[10..128]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(Array::from_npy(&npy).unwrap(), a);
        assert_eq!(Array::from_npy(&b.to_npy()).unwrap(), b);
        assert_eq!(Array::from_npy(&c.to_npy()).unwrap(), c);
    }

    #[test]
    fn ordered_keeps_insertion_order_and_replaces_in_place() {
        let mut record = MetricRecord::new();
        record.insert("b", MetricValue::Int(1));
        record.insert("a", MetricValue::Int(2));
        record.insert("b", MetricValue::Int(3));
        let keys: Vec<&str> = record.keys().collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(record.get("b"), Some(&MetricValue::Int(3)));
    }

    #[test]
    fn digest_changes_with_any_bit() {
        let base = ArrayRecord::from_arrays(vec![Array::from_f32(vec![2], vec![1.0, 2.0])]);
        let mut other = base.clone();
        if let Some(array) = other.get_mut("0") {
            array.values = Values::F32(vec![1.0, f32::from_bits(2.0f32.to_bits() + 1)]);
        }
        assert_ne!(base.digest(), other.digest());
        assert_eq!(base.digest(), base.clone().digest());
    }
}
