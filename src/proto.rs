//! Generated protobuf types (Flower's `flwr.proto` and our `floret.v1`) and
//! the conversions between them and our own types.
//!
//! **Architecture invariant:** prost types appear only here, in `superlink`,
//! in `simulation` (the app process), in `cli`, `bridge`, `traffic` and
//! `objects` (Flower's inflatable objects); the domain, the store, the
//! simulation engine and the strategies never see them. Conversions are
//! explicit functions, so a change of wire format never ripples inward.

use std::collections::BTreeMap;

use crate::domain::ids::{Micros, RunId};
use crate::domain::run::Run;
use crate::records::{
    ArrayRecord, ConfigRecord, ConfigValue, Metadata, MetricRecord, MetricValue, Record, RecordDict, Scalar, UserConfig,
};

/// Key of the ConfigRecord in the ServerApp context's state that carries
/// what floret adds to a run's inputs (the seed): the SuperLink writes it in
/// `PullAppInputs`, the app process reads it.
pub(crate) const FLORET_STATE_KEY: &str = "floret";

#[allow(clippy::all, clippy::pedantic)]
pub mod flwr {
    pub mod proto {
        tonic::include_proto!("flwr.proto");
    }
}

#[allow(clippy::all, clippy::pedantic)]
pub mod floret {
    pub mod v1 {
        tonic::include_proto!("floret.v1");
    }
}

use flwr::proto as pb;

/// Errors of this module: why a wire value is not one of our values.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("integer {0} is too large")]
    IntegerTooLarge(u64),
    #[error("bytes values are not allowed in a run configuration")]
    BytesInRunConfig,
    #[error("empty scalar")]
    EmptyScalar,
    /// A run-configuration value, under its key.
    #[error("key '{}': {source}", crate::app::clip(.key))]
    UserConfigKey { key: String, source: Box<Error> },
    #[error("empty config value")]
    EmptyConfigValue,
    #[error("key '{0}' has no value")]
    ConfigKeyNoValue(String),
    #[error("metric '{0}' has no value")]
    MetricNoValue(String),
    #[error("array '{0}' has no value")]
    ArrayNoValue(String),
    #[error("array '{key}' has unsupported stype {stype}")]
    UnsupportedStype { key: String, stype: String },
    #[error(transparent)]
    Npy(#[from] crate::records::RecordsError),
    #[error("record '{0}' has no value")]
    RecordNoValue(String),
}

/// Flower's `flwr_aid` when no account authentication is configured.
pub(crate) const FLWR_AID_NONE: &str = "<id:none>";

/// Flower's account name when no account authentication is configured.
pub(crate) const ACCOUNT_NAME_NONE: &str = "none";

/// Flower's `NodeInfo` of a SuperNode; `online_until` in seconds since the
/// epoch (for a node that is not online: when it went offline or left).
pub(crate) fn node_info(node: &crate::domain::node::Node, online_until: Option<f64>) -> pb::NodeInfo {
    let left = node.unregistered_at.or(node.last_deactivated_at);
    pb::NodeInfo {
        node_id: node.node_id,
        owner_aid: FLWR_AID_NONE.to_string(),
        owner_name: ACCOUNT_NAME_NONE.to_string(),
        status: node.status.as_str().to_string(),
        registered_at: node.registered_at.to_iso(),
        last_activated_at: node.last_activated_at.map(Micros::to_iso),
        last_deactivated_at: node.last_deactivated_at.map(Micros::to_iso),
        unregistered_at: node.unregistered_at.map(Micros::to_iso),
        online_until: online_until.or(left.map(Micros::as_secs_f64)),
        heartbeat_interval: node.heartbeat_interval,
        public_key: node.public_key.clone(),
    }
}

/// The federation of every run of the local SuperLink.
pub(crate) const DEFAULT_FEDERATION: &str = "@none/default";

pub(crate) fn scalar_to_proto(value: &Scalar) -> pb::Scalar {
    use pb::scalar::Scalar as S;
    let scalar = match value {
        Scalar::Bool(b) => S::Bool(*b),
        Scalar::Int(i) => S::Sint64(*i),
        Scalar::Float(f) => S::Double(*f),
        Scalar::Str(s) => S::String(s.clone()),
    };
    pb::Scalar { scalar: Some(scalar) }
}

/// A wire scalar as a configuration value. Bytes have no place in a run
/// configuration and are refused; an unsigned value beyond `i64` too.
pub(crate) fn scalar_from_proto(value: &pb::Scalar) -> Result<Scalar, Error> {
    use pb::scalar::Scalar as S;
    match &value.scalar {
        Some(S::Bool(b)) => Ok(Scalar::Bool(*b)),
        Some(S::Sint64(i)) => Ok(Scalar::Int(*i)),
        Some(S::Uint64(u)) => i64::try_from(*u)
            .map(Scalar::Int)
            .map_err(|_| Error::IntegerTooLarge(*u)),
        Some(S::Double(f)) => Ok(Scalar::Float(*f)),
        Some(S::String(s)) => Ok(Scalar::Str(s.clone())),
        Some(S::Bytes(_)) => Err(Error::BytesInRunConfig),
        None => Err(Error::EmptyScalar),
    }
}

pub(crate) fn user_config_to_proto(config: &UserConfig) -> BTreeMap<String, pb::Scalar> {
    config.iter().map(|(k, v)| (k.clone(), scalar_to_proto(v))).collect()
}

pub(crate) fn user_config_from_proto(map: &BTreeMap<String, pb::Scalar>) -> Result<UserConfig, Error> {
    map.iter()
        .map(|(k, v)| {
            scalar_from_proto(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::UserConfigKey {
                    key: k.clone(),
                    source: Box::new(e),
                })
        })
        .collect()
}

pub(crate) fn config_value_to_proto(value: &ConfigValue) -> pb::ConfigRecordValue {
    use pb::config_record_value::Value as V;
    let value = match value {
        ConfigValue::Int(i) => V::Sint64(*i),
        ConfigValue::Float(f) => V::Double(*f),
        ConfigValue::Str(s) => V::String(s.clone()),
        ConfigValue::Bytes(b) => V::Bytes(b.clone()),
        ConfigValue::Bool(b) => V::Bool(*b),
        ConfigValue::IntList(l) => V::SintList(pb::SintList { vals: l.clone() }),
        ConfigValue::FloatList(l) => V::DoubleList(pb::DoubleList { vals: l.clone() }),
        ConfigValue::StrList(l) => V::StringList(pb::StringList { vals: l.clone() }),
        ConfigValue::BytesList(l) => V::BytesList(pb::BytesList { vals: l.clone() }),
        ConfigValue::BoolList(l) => V::BoolList(pb::BoolList { vals: l.clone() }),
    };
    pb::ConfigRecordValue { value: Some(value) }
}

pub(crate) fn config_value_from_proto(value: &pb::ConfigRecordValue) -> Result<ConfigValue, Error> {
    use pb::config_record_value::Value as V;
    Ok(match &value.value {
        Some(V::Sint64(i)) => ConfigValue::Int(*i),
        Some(V::Uint64(u)) => ConfigValue::Int(i64::try_from(*u).map_err(|_| Error::IntegerTooLarge(*u))?),
        Some(V::Double(f)) => ConfigValue::Float(*f),
        Some(V::String(s)) => ConfigValue::Str(s.clone()),
        Some(V::Bytes(b)) => ConfigValue::Bytes(b.clone()),
        Some(V::Bool(b)) => ConfigValue::Bool(*b),
        Some(V::SintList(l)) => ConfigValue::IntList(l.vals.clone()),
        Some(V::UintList(l)) => ConfigValue::IntList(
            l.vals
                .iter()
                .map(|&u| i64::try_from(u).map_err(|_| Error::IntegerTooLarge(u)))
                .collect::<Result<_, _>>()?,
        ),
        Some(V::DoubleList(l)) => ConfigValue::FloatList(l.vals.clone()),
        Some(V::StringList(l)) => ConfigValue::StrList(l.vals.clone()),
        Some(V::BytesList(l)) => ConfigValue::BytesList(l.vals.clone()),
        Some(V::BoolList(l)) => ConfigValue::BoolList(l.vals.clone()),
        None => return Err(Error::EmptyConfigValue),
    })
}

pub fn config_record_to_proto(record: &ConfigRecord) -> pb::ConfigRecord {
    pb::ConfigRecord {
        items: record
            .iter()
            .map(|(k, v)| pb::config_record::Item {
                key: k.to_string(),
                value: Some(config_value_to_proto(v)),
            })
            .collect(),
    }
}

pub(crate) fn config_record_from_proto(record: &pb::ConfigRecord) -> Result<ConfigRecord, Error> {
    record
        .items
        .iter()
        .map(|item| {
            let value = item
                .value
                .as_ref()
                .ok_or_else(|| Error::ConfigKeyNoValue(item.key.clone()))?;
            Ok((item.key.clone(), config_value_from_proto(value)?))
        })
        .collect()
}

pub(crate) fn metric_record_to_proto(record: &MetricRecord) -> pb::MetricRecord {
    use pb::metric_record_value::Value as V;
    pb::MetricRecord {
        items: record
            .iter()
            .map(|(k, v)| pb::metric_record::Item {
                key: k.to_string(),
                value: Some(pb::MetricRecordValue {
                    value: Some(match v {
                        MetricValue::Int(i) => V::Sint64(*i),
                        MetricValue::Float(f) => V::Double(*f),
                        MetricValue::IntList(l) => V::SintList(pb::SintList { vals: l.clone() }),
                        MetricValue::FloatList(l) => V::DoubleList(pb::DoubleList { vals: l.clone() }),
                    }),
                }),
            })
            .collect(),
    }
}

pub(crate) fn metric_record_from_proto(record: &pb::MetricRecord) -> Result<MetricRecord, Error> {
    use pb::metric_record_value::Value as V;
    record
        .items
        .iter()
        .map(|item| {
            let value = match item.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(V::Sint64(i)) => MetricValue::Int(*i),
                Some(V::Uint64(u)) => MetricValue::Int(i64::try_from(*u).map_err(|_| Error::IntegerTooLarge(*u))?),
                Some(V::Double(f)) => MetricValue::Float(*f),
                Some(V::SintList(l)) => MetricValue::IntList(l.vals.clone()),
                Some(V::UintList(l)) => MetricValue::IntList(
                    l.vals
                        .iter()
                        .map(|&u| i64::try_from(u).map_err(|_| Error::IntegerTooLarge(u)))
                        .collect::<Result<_, _>>()?,
                ),
                Some(V::DoubleList(l)) => MetricValue::FloatList(l.vals.clone()),
                None => return Err(Error::MetricNoValue(item.key.clone())),
            };
            Ok((item.key.clone(), value))
        })
        .collect()
}

pub(crate) fn array_record_to_proto(record: &ArrayRecord) -> pb::ArrayRecord {
    pb::ArrayRecord {
        items: record
            .iter()
            .map(|(k, a)| pb::array_record::Item {
                key: k.to_string(),
                value: Some(pb::Array {
                    dtype: a.dtype().to_string(),
                    shape: a.shape.iter().map(|&d| d as i32).collect(),
                    stype: crate::records::STYPE_NUMPY.to_string(),
                    data: a.to_npy(),
                }),
            })
            .collect(),
    }
}

pub(crate) fn array_record_from_proto(record: &pb::ArrayRecord) -> Result<ArrayRecord, Error> {
    record
        .items
        .iter()
        .map(|item| {
            let array = item
                .value
                .as_ref()
                .ok_or_else(|| Error::ArrayNoValue(item.key.clone()))?;
            if array.stype != crate::records::STYPE_NUMPY {
                return Err(Error::UnsupportedStype {
                    key: item.key.clone(),
                    stype: array.stype.clone(),
                });
            }
            Ok((item.key.clone(), crate::records::Array::from_npy(&array.data)?))
        })
        .collect()
}

pub fn record_dict_to_proto(records: &RecordDict) -> pb::RecordDict {
    use pb::record_dict::item::Value as V;
    pb::RecordDict {
        items: records
            .iter()
            .map(|(k, r)| pb::record_dict::Item {
                key: k.to_string(),
                value: Some(match r {
                    Record::Arrays(a) => V::ArrayRecord(array_record_to_proto(a)),
                    Record::Metrics(m) => V::MetricRecord(metric_record_to_proto(m)),
                    Record::Config(c) => V::ConfigRecord(config_record_to_proto(c)),
                }),
            })
            .collect(),
    }
}

pub(crate) fn record_dict_from_proto(records: &pb::RecordDict) -> Result<RecordDict, Error> {
    use pb::record_dict::item::Value as V;
    records
        .items
        .iter()
        .map(|item| {
            let record = match &item.value {
                Some(V::ArrayRecord(a)) => Record::Arrays(array_record_from_proto(a)?),
                Some(V::MetricRecord(m)) => Record::Metrics(metric_record_from_proto(m)?),
                Some(V::ConfigRecord(c)) => Record::Config(config_record_from_proto(c)?),
                None => return Err(Error::RecordNoValue(item.key.clone())),
            };
            Ok((item.key.clone(), record))
        })
        .collect()
}

/// A message's metadata as Flower's `Metadata` message carries it.
pub(crate) fn metadata_to_proto(metadata: &Metadata) -> pb::Metadata {
    pb::Metadata {
        run_id: metadata.run_id,
        message_id: metadata.message_id.clone(),
        src_node_id: metadata.src_node_id,
        dst_node_id: metadata.dst_node_id,
        reply_to_message_id: metadata.reply_to_message_id.clone(),
        group_id: metadata.group_id.clone(),
        ttl: metadata.ttl,
        message_type: metadata.message_type.clone(),
        created_at: metadata.created_at,
    }
}

/// Flower's `Metadata` message as ours (every field has a value).
pub(crate) fn metadata_from_proto(metadata: &pb::Metadata) -> Metadata {
    Metadata {
        run_id: metadata.run_id,
        message_id: metadata.message_id.clone(),
        src_node_id: metadata.src_node_id,
        dst_node_id: metadata.dst_node_id,
        reply_to_message_id: metadata.reply_to_message_id.clone(),
        group_id: metadata.group_id.clone(),
        ttl: metadata.ttl,
        message_type: metadata.message_type.clone(),
        created_at: metadata.created_at,
    }
}

fn iso(time: Option<Micros>) -> String {
    time.map(Micros::to_iso).unwrap_or_default()
}

/// A run as Flower's `Run` message describes it.
pub fn run_to_proto(run: &Run) -> pb::Run {
    let submitted = &run.submitted;
    pb::Run {
        run_id: submitted.run_id.0,
        fab_id: submitted.fab_id.clone(),
        fab_version: submitted.fab_version.clone(),
        override_config: user_config_to_proto(&submitted.override_config),
        fab_hash: submitted.fab_hash.clone(),
        pending_at: run.pending_at.to_iso(),
        starting_at: iso(run.starting_at),
        running_at: iso(run.running_at),
        finished_at: iso(run.finished_at),
        status: Some(pb::RunStatus {
            status: run.status.status_str().to_string(),
            sub_status: run.status.sub_status_str().to_string(),
            details: run.details.clone(),
        }),
        flwr_aid: FLWR_AID_NONE.to_string(),
        federation: submitted.federation.clone(),
        // A run without measured usage reads as Flower's runs without
        // figures do: zeros.
        bytes_sent: run.usage.as_ref().map_or(0, |u| u.bytes_sent),
        bytes_recv: run.usage.as_ref().map_or(0, |u| u.bytes_recv),
        clientapp_runtime: run.usage.as_ref().map_or(0.0, |u| u.clientapp_runtime),
    }
}

/// What a client needs of a `Run` message, in our terms.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub run_id: RunId,
    pub fab_id: String,
    pub fab_version: String,
    pub fab_hash: String,
    pub federation: String,
    pub status: String,
    pub sub_status: String,
    pub details: String,
    pub pending_at: Option<Micros>,
    pub starting_at: Option<Micros>,
    pub running_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub clientapp_runtime: f64,
}

impl RunInfo {
    /// The CLI's status text (`status` or `status:sub_status`).
    pub(crate) fn status_text(&self) -> String {
        if self.sub_status.is_empty() {
            self.status.clone()
        } else {
            format!("{}:{}", self.status, self.sub_status)
        }
    }
}

/// Reads a `Run` from any Flower 1.27 SuperLink (ours or Python's).
pub(crate) fn run_from_proto(run: &pb::Run) -> RunInfo {
    let time = |text: &str| if text.is_empty() { None } else { Micros::parse_iso(text) };
    let status = run.status.clone().unwrap_or_default();
    RunInfo {
        run_id: RunId(run.run_id),
        fab_id: run.fab_id.clone(),
        fab_version: run.fab_version.clone(),
        fab_hash: run.fab_hash.clone(),
        federation: run.federation.clone(),
        status: status.status,
        sub_status: status.sub_status,
        details: status.details,
        pending_at: time(&run.pending_at),
        starting_at: time(&run.starting_at),
        running_at: time(&run.running_at),
        finished_at: time(&run.finished_at),
        bytes_sent: run.bytes_sent,
        bytes_recv: run.bytes_recv,
        clientapp_runtime: run.clientapp_runtime,
    }
}
