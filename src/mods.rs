//! Flower's built-in client-side mods (`flwr.clientapp.mod`): the
//! differential-privacy mods `FixedClippingMod`, `AdaptiveClippingMod` and
//! `LocalDpMod`, and the statistics mods `MessageSizeMod` and
//! `ArraysSizeMod`, plus [`build_mods`], which builds the mod stack from a
//! run configuration.
//!
//! Kept from Flower 1.42: the preconditions and their error replies (code 6,
//! `MOD_FAILED_PRECONDITION`, with Flower's reason texts, also logged at
//! ERROR), the clipping of `reply − received` to the clipping norm (see
//! `kernels::clip_update`), `norm_bit` as an int metric, local DP
//! noise `N(0, sensitivity·√(2·ln(1.25/δ))/ε)` cast to each array's dtype,
//! and every log line. Like Flower's, the mods do not look at the message
//! type themselves; [`build_mods`] attaches them per message type instead.
//!
//! Differences from Flower, on purpose:
//! - `LocalDpMod` draws its noise from the call's own stream (`env.prng`,
//!   after the inner app has run) instead of numpy's global generator, so
//!   client-side noise replays bit for bit;
//! - a zero update is not clipped (Python raises `ZeroDivisionError`);
//!   update norms are accumulated in float64;
//! - when the inner app returns an error reply, `MessageSizeMod` and
//!   `ArraysSizeMod` pass it through without the outgoing lines (Flower's
//!   mods read the reply's content and raise);
//! - a clipping norm that is not a number, or reply arrays whose shapes
//!   differ from the received ones, give a code-6 error reply (Flower raises
//!   inside the mod).
//!
//! Run configuration scheme read by [`build_mods`] (all keys optional):
//! - `mods.train`: comma-separated mod names applied to `train` messages,
//!   outermost first; `mods.evaluate`: the same for `evaluate` messages.
//!   Names: `fixedclipping`, `adaptiveclipping`, `localdp`, `message-size`,
//!   `arrays-size`. Flower recommends per-function attachment
//!   (`@app.train(mods=[…])`) because evaluate configs carry no
//!   `clipping_norm`; this is that.
//! - `mods.localdp.clipping-norm`, `mods.localdp.sensitivity`,
//!   `mods.localdp.epsilon`, `mods.localdp.delta`: `LocalDpMod`'s
//!   parameters, all required when `localdp` is listed (ints are accepted).
//! - With `dp.mode = "client-fixed"` (or `"client-adaptive"`), `mods.train`
//!   must list `fixedclipping` (or `adaptiveclipping`): the server-side
//!   wrapper relies on the clients clipping (Flower would silently skip the
//!   clipping, or fail every round for lack of `norm_bit`).
//!
//! Mods never do I/O; they log to `env.log` and draw only from `env.prng`.

use crate::clientapp::{ClientEnv, Mod};
use crate::flwr_log::Logger;
use crate::kernels::{add_gaussian_noise, clip_update};
use crate::math;
use crate::params::{describe_scalar, ParamDefault, ParamDoc, ParamKind};
use crate::pyfmt::{format_f, PyValue};
use crate::records::{error_code, ArrayRecord, ConfigValue, Context, Error, Message, MetricValue, Record, RecordDict};
use crate::records::{Scalar, UserConfig, KEY_CLIPPING_NORM, KEY_NORM_BIT};

/// Errors of this module: a mod stack or mod parameters that cannot be
/// built. (Named so because [`Error`] here is a message's error record.)
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModsError {
    /// Flower's `LocalDpMod` constructor checks, with its messages.
    #[error("The clipping norm should be a positive value.")]
    ClippingNorm,
    #[error("The sensitivity should be a non-negative value.")]
    Sensitivity,
    #[error("Epsilon should be a non-negative value.")]
    Epsilon,
    #[error("Delta should be a non-negative value.")]
    Delta,
    #[error("unknown key `{key}`; valid keys: {}", .valid.join(", "))]
    UnknownKey { key: String, valid: Vec<&'static str> },
    #[error("`{key}` must be a string of comma-separated mod names, found {}", describe_scalar(.found))]
    NotAList { key: &'static str, found: Scalar },
    #[error(
        "unknown mod `{name}` in `{key}`{}; valid mods: {}",
        .suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
        MOD_NAMES.join(", ")
    )]
    UnknownMod {
        name: String,
        key: &'static str,
        suggestion: Option<&'static str>,
    },
    #[error("`dp.mode = \"{mode}\"` expects the clients to clip their updates: add `{needed}` to `mods.train`")]
    DpNeedsClipping { mode: String, needed: &'static str },
    #[error("`{key}` must be a number, found {}", describe_scalar(.found))]
    NotANumber { key: &'static str, found: Scalar },
    #[error("mod `localdp` needs `{key}` (required: {})", LOCALDP_KEYS.join(", "))]
    LocalDpKeyMissing { key: &'static str },
    #[error("mods.localdp: {0}")]
    LocalDp(Box<ModsError>),
    #[error("`{key}` is set but `localdp` is not listed in `mods.train` or `mods.evaluate`")]
    LocalDpNotListed { key: &'static str },
}

/// The inner layer a mod calls.
type Next<'n> = &'n dyn Fn(&Message, &mut Context, &mut ClientEnv<'_>) -> Result<RecordDict, Error>;

/// Logs `reason` at ERROR and returns the error reply (Flower's `_handle_err`).
fn fail<T>(log: &mut Logger, reason: String) -> Result<T, Error> {
    log.error(reason.clone());
    Err(Error {
        code: error_code::MOD_FAILED_PRECONDITION,
        reason,
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Arrays,
    Metrics,
    Config,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Arrays => "ArrayRecord",
            Kind::Metrics => "MetricRecord",
            Kind::Config => "ConfigRecord",
        }
    }

    fn count(self, content: &RecordDict) -> usize {
        match self {
            Kind::Arrays => content.array_records().count(),
            Kind::Metrics => content.metric_records().count(),
            Kind::Config => content.config_records().count(),
        }
    }
}

/// Flower's `_handle_multi_record_err` unless `content` holds exactly one
/// record of `kind`.
fn expect_one(mod_name: &str, content: &RecordDict, kind: Kind, log: &mut Logger) -> Result<(), Error> {
    match kind.count(content) {
        1 => Ok(()),
        n => fail(
            log,
            format!(
                "{mod_name} expects exactly one {t}, but found {n} {t}(s).",
                t = kind.name()
            ),
        ),
    }
}

fn key_mismatch<T>(mod_name: &str, log: &mut Logger) -> Result<T, Error> {
    fail(
        log,
        format!(
            "{mod_name} expects the keys in the ArrayRecord of the reply message to match those from the \
             ArrayRecord that the ClientApp received, but they do not."
        ),
    )
}

fn only_arrays(content: &RecordDict) -> (String, ArrayRecord) {
    let (name, record) = content.array_records().next().expect("checked: one ArrayRecord");
    (name.to_string(), record.clone())
}

/// What the clipping mods' shared body produced: the reply, and the
/// clipping norm and norm bit when an update was clipped (`None` when the
/// instruction had no content and the reply was passed through).
type Clipped = (RecordDict, Option<(f64, bool)>);

/// The shared body of the clipping mods: checks the instruction, calls the
/// inner app, checks the reply and clips its update to the clipping norm
/// (`clipping_norm`, or the instruction's `config["clipping_norm"]`).
fn clip_reply(
    mod_name: &str,
    message: &Message,
    context: &mut Context,
    env: &mut ClientEnv<'_>,
    next: Next<'_>,
    clipping_norm: Option<f64>,
    need_metrics: bool,
) -> Result<Clipped, Error> {
    let Some(content) = message.content() else {
        return Ok((next(message, context, env)?, None));
    };
    expect_one(mod_name, content, Kind::Arrays, env.log)?;
    let clipping_norm = match clipping_norm {
        Some(c) => c,
        None => {
            expect_one(mod_name, content, Kind::Config, env.log)?;
            let (_, config) = content.config_records().next().expect("checked: one ConfigRecord");
            match config.get(KEY_CLIPPING_NORM) {
                None => {
                    return fail(
                        env.log,
                        format!(
                            "{mod_name} requires the key '{KEY_CLIPPING_NORM}' to be present in the ConfigRecord, \
                             but it was not found. Please ensure the `DifferentialPrivacyClientSideFixedClipping` \
                             wrapper is used in the ServerApp."
                        ),
                    )
                }
                Some(ConfigValue::Float(c)) => *c,
                Some(ConfigValue::Int(c)) => *c as f64,
                Some(_) => {
                    return fail(
                        env.log,
                        format!("{mod_name} requires '{KEY_CLIPPING_NORM}' to be a number."),
                    )
                }
            }
        }
    };
    let (_, received) = only_arrays(content);
    let mut reply = next(message, context, env)?;
    expect_one(mod_name, &reply, Kind::Arrays, env.log)?;
    if need_metrics {
        expect_one(mod_name, &reply, Kind::Metrics, env.log)?;
    }
    let (name, sent) = only_arrays(&reply);
    if !sent.keys().eq(received.keys()) {
        return key_mismatch(mod_name, env.log);
    }
    let clipped = match clip_update(&sent, &received, clipping_norm) {
        Ok(clipped) => clipped,
        Err(reason) => return fail(env.log, format!("{mod_name}: {reason}")),
    };
    reply.insert(name, Record::Arrays(clipped.arrays));
    Ok((reply, Some((clipping_norm, clipped.norm_bit))))
}

/// Flower's `fixedclipping_mod`: clips the update to the `clipping_norm`
/// the server sent (`DifferentialPrivacyClientSideFixedClipping`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedClippingMod;

impl Mod for FixedClippingMod {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: Next<'_>,
    ) -> Result<RecordDict, Error> {
        let (reply, clipped) = clip_reply("fixedclipping_mod", message, context, env, next, None, false)?;
        if let Some((norm, _)) = clipped {
            env.log.info(format!(
                "fixedclipping_mod: parameters are clipped by value: {}.",
                format_f(norm, 4)
            ));
        }
        Ok(reply)
    }
}

/// Flower's `adaptiveclipping_mod`: clips like [`FixedClippingMod`] and
/// reports `norm_bit` (1 when the update was scaled down) in the reply's
/// MetricRecord (`DifferentialPrivacyClientSideAdaptiveClipping`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AdaptiveClippingMod;

impl Mod for AdaptiveClippingMod {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: Next<'_>,
    ) -> Result<RecordDict, Error> {
        let (mut reply, clipped) = clip_reply("adaptiveclipping_mod", message, context, env, next, None, true)?;
        let Some((norm, norm_bit)) = clipped else {
            return Ok(reply);
        };
        env.log.info(format!(
            "adaptiveclipping_mod: ndarrays are clipped by value: {}.",
            format_f(norm, 4)
        ));
        if let Some((_, Record::Metrics(metrics))) = reply.iter_mut().find(|(_, r)| matches!(r, Record::Metrics(_))) {
            metrics.insert(KEY_NORM_BIT, MetricValue::Int(i64::from(norm_bit)));
        }
        Ok(reply)
    }
}

/// Flower's `LocalDpMod`: clips the update to `clipping_norm`, then adds
/// Gaussian noise with `std = sensitivity·√(2·ln(1.25/δ))/ε` to every
/// element of the reply's arrays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalDpMod {
    pub clipping_norm: f64,
    pub sensitivity: f64,
    pub epsilon: f64,
    pub delta: f64,
}

impl LocalDpMod {
    /// Flower's constructor checks, with its messages.
    pub fn new(clipping_norm: f64, sensitivity: f64, epsilon: f64, delta: f64) -> Result<LocalDpMod, ModsError> {
        if clipping_norm.is_nan() || clipping_norm <= 0.0 {
            return Err(ModsError::ClippingNorm);
        }
        if sensitivity.is_nan() || sensitivity < 0.0 {
            return Err(ModsError::Sensitivity);
        }
        if epsilon.is_nan() || epsilon < 0.0 {
            return Err(ModsError::Epsilon);
        }
        if delta.is_nan() || delta < 0.0 {
            return Err(ModsError::Delta);
        }
        Ok(LocalDpMod {
            clipping_norm,
            sensitivity,
            epsilon,
            delta,
        })
    }

    /// The noise's standard deviation.
    pub fn std_dev(&self) -> f64 {
        self.sensitivity * (2.0 * math::ln(1.25 / self.delta)).sqrt() / self.epsilon
    }
}

impl Mod for LocalDpMod {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: Next<'_>,
    ) -> Result<RecordDict, Error> {
        let (mut reply, clipped) = clip_reply(
            "LocalDpMod",
            message,
            context,
            env,
            next,
            Some(self.clipping_norm),
            false,
        )?;
        let Some((norm, _)) = clipped else {
            return Ok(reply);
        };
        env.log.info(format!(
            "LocalDpMod: parameters are clipped by value: {}.",
            format_f(norm, 4)
        ));
        let std = self.std_dev();
        if let Some((_, Record::Arrays(arrays))) = reply.iter_mut().find(|(_, r)| matches!(r, Record::Arrays(_))) {
            add_gaussian_noise(arrays, std, Some(&mut env.prng)).expect("a stream is given");
        }
        env.log.info(format!(
            "LocalDpMod: local DP noise with {} stddev added to parameters",
            format_f(std, 4)
        ));
        Ok(reply)
    }
}

/// Flower's `message_size_mod`: logs the content's size before and after
/// the inner app (`count_bytes` of every record).
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageSizeMod;

impl Mod for MessageSizeMod {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: Next<'_>,
    ) -> Result<RecordDict, Error> {
        let incoming = message.content().map_or(0, RecordDict::count_bytes);
        env.log.info(format!("Incoming message size: {incoming} bytes"));
        let reply = next(message, context, env)?;
        env.log
            .info(format!("Outgoing message size: {} bytes", reply.count_bytes()));
        Ok(reply)
    }
}

/// Flower's `arrays_size_mod`: logs per-ArrayRecord element counts and
/// byte sizes before and after the inner app.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArraysSizeMod;

/// `({name: {'elements': n, 'bytes': b}}, total bytes)` as Flower logs it.
fn array_stats(content: &RecordDict) -> (Option<String>, usize) {
    let mut items = Vec::new();
    let mut total = 0;
    for (name, record) in content.array_records() {
        let elements: usize = record.values().map(|a| a.len()).sum();
        let bytes = record.count_bytes();
        total += bytes;
        items.push((
            PyValue::Str(name.to_string()),
            PyValue::Dict(vec![
                (PyValue::Str("elements".into()), PyValue::Int(elements as i64)),
                (PyValue::Str("bytes".into()), PyValue::Int(bytes as i64)),
            ]),
        ));
    }
    let repr = (!items.is_empty()).then(|| PyValue::Dict(items).repr());
    (repr, total)
}

impl Mod for ArraysSizeMod {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: Next<'_>,
    ) -> Result<RecordDict, Error> {
        let (stats, total) = message.content().map_or((None, 0), array_stats);
        if let Some(stats) = stats {
            env.log.info("Incoming `ArrayRecord` size statistics:");
            env.log.info(stats);
        }
        env.log.info(format!("Total array elements received: {total} bytes"));
        let reply = next(message, context, env)?;
        let (stats, total) = array_stats(&reply);
        if let Some(stats) = stats {
            env.log.info("Outgoing `ArrayRecord` size statistics:");
            env.log.info(stats);
        }
        env.log.info(format!("Total array elements sent: {total} bytes"));
        Ok(reply)
    }
}

/// Applies `inner` to messages of one category (`train`, `train.<action>`,
/// …) and passes every other message straight to the next layer, as
/// Flower's per-function mods (`@app.train(mods=[…])`) do.
pub struct ForMessageType {
    pub category: &'static str,
    pub inner: Box<dyn Mod>,
}

impl ForMessageType {
    fn applies(&self, message_type: &str) -> bool {
        message_type == self.category
            || message_type
                .strip_prefix(self.category)
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

impl Mod for ForMessageType {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: Next<'_>,
    ) -> Result<RecordDict, Error> {
        if self.applies(&message.metadata.message_type) {
            self.inner.handle(message, context, env, next)
        } else {
            next(message, context, env)
        }
    }
}

/// The mod names [`build_mods`] accepts.
pub const MOD_NAMES: &[&str] = &[
    "fixedclipping",
    "adaptiveclipping",
    "localdp",
    "message-size",
    "arrays-size",
];

/// Each mod name with the Flower mod it reproduces.
pub const FLOWER_MODS: &[(&str, &str)] = &[
    ("fixedclipping", "fixedclipping_mod"),
    ("adaptiveclipping", "adaptiveclipping_mod"),
    ("localdp", "LocalDpMod"),
    ("message-size", "message_size_mod"),
    ("arrays-size", "arrays_size_mod"),
];

/// Client-side DP modes and the train mod they rely on.
const DP_CLIENT_MODS: &[(&str, &str)] = &[
    ("client-fixed", "fixedclipping"),
    ("client-adaptive", "adaptiveclipping"),
];

const LOCALDP_KEYS: [&str; 4] = [
    "mods.localdp.clipping-norm",
    "mods.localdp.sensitivity",
    "mods.localdp.epsilon",
    "mods.localdp.delta",
];

/// The `mods.*` keys [`build_mods`] reads, for `docs/STRATEGIES.md`
/// (rendered by `builtin::strategies_markdown`).
pub fn describe() -> Vec<ParamDoc> {
    let list = |key, flower_name, doc| ParamDoc {
        key,
        flower_name,
        applies_to: &["*"],
        kind: ParamKind::Str,
        default: ParamDefault::Str(""),
        doc,
    };
    let mut docs = vec![
        list(
            "mods.train",
            "@app.train(mods=[…])",
            "Comma-separated mods applied to `train` messages, outermost first.",
        ),
        list(
            "mods.evaluate",
            "@app.evaluate(mods=[…])",
            "Comma-separated mods applied to `evaluate` messages, outermost first.",
        ),
    ];
    let localdp = [
        ("clipping_norm", "LocalDpMod: clipping norm of the update (positive)."),
        ("sensitivity", "LocalDpMod: sensitivity (non-negative)."),
        ("epsilon", "LocalDpMod: privacy budget ε (non-negative)."),
        ("delta", "LocalDpMod: failure probability δ (non-negative)."),
    ];
    for (key, (flower_name, doc)) in LOCALDP_KEYS.into_iter().zip(localdp) {
        docs.push(ParamDoc {
            key,
            flower_name,
            applies_to: &["localdp"],
            kind: ParamKind::Float,
            default: ParamDefault::Required,
            doc,
        });
    }
    docs
}

/// `fixedclipping_mod`, `LocalDpMod`, `message_size` … → a known name.
fn suggest(name: &str) -> Option<&'static str> {
    let mut normalized = name.trim().to_lowercase().replace('_', "-");
    for suffix in ["-mod", "mod"] {
        if let Some(stripped) = normalized.strip_suffix(suffix) {
            normalized = stripped.to_string();
        }
    }
    let squashed = normalized.replace('-', "");
    MOD_NAMES.iter().copied().find(|n| n.replace('-', "") == squashed)
}

/// Builds the client mod stack from the run configuration (scheme in the
/// module documentation). `train` mods come first, then `evaluate` mods;
/// each applies only to its message type.
pub fn build_mods(config: &UserConfig) -> Result<Vec<Box<dyn Mod>>, ModsError> {
    let valid_keys = ["mods.train", "mods.evaluate"]
        .iter()
        .chain(LOCALDP_KEYS.iter())
        .copied()
        .collect::<Vec<_>>();
    for key in config.keys().filter(|k| k.starts_with("mods.")) {
        if !valid_keys.contains(&key.as_str()) {
            return Err(ModsError::UnknownKey {
                key: key.clone(),
                valid: valid_keys,
            });
        }
    }
    let mut lists: Vec<(&'static str, Vec<String>)> = Vec::new();
    for (category, key) in [("train", "mods.train"), ("evaluate", "mods.evaluate")] {
        let names = match config.get(key) {
            None => Vec::new(),
            Some(Scalar::Str(text)) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(other) => {
                return Err(ModsError::NotAList {
                    key,
                    found: other.clone(),
                })
            }
        };
        for name in &names {
            if !MOD_NAMES.contains(&name.as_str()) {
                return Err(ModsError::UnknownMod {
                    name: name.clone(),
                    key,
                    suggestion: suggest(name),
                });
            }
        }
        lists.push((category, names));
    }
    if let Some(Scalar::Str(mode)) = config.get("dp.mode") {
        if let Some((_, needed)) = DP_CLIENT_MODS.iter().find(|(m, _)| m == mode) {
            if !lists[0].1.iter().any(|n| n == needed) {
                return Err(ModsError::DpNeedsClipping {
                    mode: mode.clone(),
                    needed,
                });
            }
        }
    }
    let wants_localdp = lists.iter().any(|(_, names)| names.iter().any(|n| n == "localdp"));
    let localdp = if wants_localdp {
        let mut values = [0.0f64; 4];
        for (value, key) in values.iter_mut().zip(LOCALDP_KEYS) {
            *value = match config.get(key) {
                Some(Scalar::Float(f)) => *f,
                Some(Scalar::Int(i)) => *i as f64,
                Some(other) => {
                    return Err(ModsError::NotANumber {
                        key,
                        found: other.clone(),
                    })
                }
                None => return Err(ModsError::LocalDpKeyMissing { key }),
            };
        }
        Some(LocalDpMod::new(values[0], values[1], values[2], values[3]).map_err(|e| ModsError::LocalDp(Box::new(e)))?)
    } else {
        if let Some(key) = LOCALDP_KEYS.iter().find(|k| config.contains_key(**k)) {
            return Err(ModsError::LocalDpNotListed { key });
        }
        None
    };
    let mut mods: Vec<Box<dyn Mod>> = Vec::new();
    for (category, names) in lists {
        for name in names {
            let inner: Box<dyn Mod> = match name.as_str() {
                "fixedclipping" => Box::new(FixedClippingMod),
                "adaptiveclipping" => Box::new(AdaptiveClippingMod),
                "localdp" => Box::new(localdp.expect("built above")),
                "message-size" => Box::new(MessageSizeMod),
                "arrays-size" => Box::new(ArraysSizeMod),
                _ => unreachable!("names checked above"),
            };
            mods.push(Box::new(ForMessageType { category, inner }));
        }
    }
    Ok(mods)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clientapp::{ClientApp, WithMods};
    use crate::flwr_log::Level;
    use crate::prng::Prng;
    use crate::records::{Array, ConfigRecord, MetricRecord, Values};

    /// A ClientApp answering with `reply(message)`.
    struct FnApp<F>(F);

    impl<F> ClientApp for FnApp<F>
    where
        F: Fn(&Message) -> Result<RecordDict, Error> + Send + Sync,
    {
        fn handle(&self, message: &Message, _: &mut Context, _: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
            (self.0)(message)
        }
    }

    fn arrays(values: &[f32]) -> ArrayRecord {
        let mut record = ArrayRecord::new();
        record.insert("w", Array::from_f32(vec![values.len()], values.to_vec()));
        record
    }

    fn instruction(message_type: &str, received: &[f32], clipping_norm: Option<f64>) -> Message {
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays(received)));
        let mut config = ConfigRecord::new();
        if let Some(c) = clipping_norm {
            config.insert(KEY_CLIPPING_NORM, ConfigValue::Float(c));
        }
        content.insert("config", Record::Config(config));
        Message::instruction(Arc::new(content), 5, message_type)
    }

    fn trained(values: &[f32]) -> RecordDict {
        let mut content = RecordDict::new();
        content.insert("arrays", Record::Arrays(arrays(values)));
        let mut metrics = MetricRecord::new();
        metrics.insert("num-examples", MetricValue::Int(10));
        content.insert("metrics", Record::Metrics(metrics));
        content
    }

    fn context() -> Context {
        Context {
            run_id: 1,
            node_id: 5,
            node_config: UserConfig::new(),
            state: RecordDict::new(),
            run_config: UserConfig::new(),
        }
    }

    /// Runs `mods` around an app replying `reply`; returns the result and log.
    fn run(
        mods: Vec<Box<dyn Mod>>,
        message: &Message,
        reply: Result<RecordDict, Error>,
        seed: u64,
    ) -> (Result<RecordDict, Error>, Logger) {
        let app = WithMods {
            app: FnApp(move |_: &Message| reply.clone()),
            mods,
        };
        let mut log = Logger::new();
        let mut env = ClientEnv {
            prng: Prng::from_seed(seed),
            log: &mut log,
        };
        let out = app.handle(message, &mut context(), &mut env);
        (out, log)
    }

    fn reply_values(reply: &RecordDict) -> Values {
        reply.arrays("arrays").unwrap().get("w").unwrap().values.clone()
    }

    fn messages(log: &Logger) -> Vec<String> {
        log.lines().iter().map(|(_, m)| m.clone()).collect()
    }

    #[test]
    fn fixed_clipping_clips_the_update() {
        let message = instruction("train", &[0.0, 0.0], Some(1.0));
        let (out, log) = run(vec![Box::new(FixedClippingMod)], &message, Ok(trained(&[3.0, 4.0])), 1);
        let reply = out.unwrap();
        assert_eq!(reply_values(&reply), Values::F32(vec![0.6, 0.8]));
        assert!(reply.metrics("metrics").is_some());
        assert_eq!(
            messages(&log),
            ["fixedclipping_mod: parameters are clipped by value: 1.0000."]
        );
    }

    #[test]
    fn clipping_preconditions_fail_with_flowers_reasons() {
        let check = |m: Box<dyn Mod>, message: &Message, reply: RecordDict, reason: &str| {
            let (out, log) = run(vec![m], message, Ok(reply), 1);
            let err = out.unwrap_err();
            assert_eq!(
                err,
                Error {
                    code: error_code::MOD_FAILED_PRECONDITION,
                    reason: reason.into()
                }
            );
            assert_eq!(log.lines(), [(Level::Error, reason.to_string())]);
        };
        check(
            Box::new(FixedClippingMod),
            &instruction("train", &[0.0], None),
            trained(&[1.0]),
            "fixedclipping_mod requires the key 'clipping_norm' to be present in the ConfigRecord, but it was not \
             found. Please ensure the `DifferentialPrivacyClientSideFixedClipping` wrapper is used in the ServerApp.",
        );
        let mut two = instruction("train", &[0.0], Some(1.0)).content().unwrap().clone();
        two.insert("more", Record::Arrays(arrays(&[1.0])));
        check(
            Box::new(FixedClippingMod),
            &Message::instruction(Arc::new(two), 5, "train"),
            trained(&[1.0]),
            "fixedclipping_mod expects exactly one ArrayRecord, but found 2 ArrayRecord(s).",
        );
        let mut renamed = RecordDict::new();
        let mut other = ArrayRecord::new();
        other.insert("v", Array::from_f32(vec![1], vec![1.0]));
        renamed.insert("arrays", Record::Arrays(other));
        check(
            Box::new(FixedClippingMod),
            &instruction("train", &[0.0], Some(1.0)),
            renamed,
            "fixedclipping_mod expects the keys in the ArrayRecord of the reply message to match those from the \
             ArrayRecord that the ClientApp received, but they do not.",
        );
        let mut no_metrics = RecordDict::new();
        no_metrics.insert("arrays", Record::Arrays(arrays(&[1.0])));
        check(
            Box::new(AdaptiveClippingMod),
            &instruction("train", &[0.0], Some(1.0)),
            no_metrics,
            "adaptiveclipping_mod expects exactly one MetricRecord, but found 0 MetricRecord(s).",
        );
    }

    #[test]
    fn adaptive_clipping_reports_the_norm_bit() {
        let message = instruction("train", &[0.0, 0.0], Some(1.0));
        let (out, log) = run(
            vec![Box::new(AdaptiveClippingMod)],
            &message,
            Ok(trained(&[3.0, 4.0])),
            1,
        );
        let reply = out.unwrap();
        assert_eq!(
            reply.metrics("metrics").unwrap().get(KEY_NORM_BIT),
            Some(&MetricValue::Int(1))
        );
        assert_eq!(
            messages(&log),
            ["adaptiveclipping_mod: ndarrays are clipped by value: 1.0000."]
        );
        let (out, _) = run(
            vec![Box::new(AdaptiveClippingMod)],
            &message,
            Ok(trained(&[0.3, 0.4])),
            1,
        );
        let reply = out.unwrap();
        assert_eq!(
            reply.metrics("metrics").unwrap().get(KEY_NORM_BIT),
            Some(&MetricValue::Int(0))
        );
        assert_eq!(reply_values(&reply), Values::F32(vec![0.3, 0.4]));
    }

    #[test]
    fn app_errors_pass_through_the_mods() {
        let boom = Error {
            code: error_code::CLIENT_APP_RAISED_EXCEPTION,
            reason: "boom".into(),
        };
        let message = instruction("train", &[0.0], Some(1.0));
        let all: Vec<Box<dyn Mod>> = vec![
            Box::new(MessageSizeMod),
            Box::new(ArraysSizeMod),
            Box::new(FixedClippingMod),
            Box::new(AdaptiveClippingMod),
            Box::new(LocalDpMod::new(1.0, 1.0, 1.0, 1e-5).unwrap()),
        ];
        let (out, _) = run(all, &message, Err(boom.clone()), 1);
        assert_eq!(out.unwrap_err(), boom);
    }

    #[test]
    fn local_dp_clips_then_adds_replayable_noise() {
        let dp = LocalDpMod::new(1.0, 0.5, 2.0, 1e-5).unwrap();
        let message = instruction("train", &[0.0, 0.0], None);
        let go = |seed| run(vec![Box::new(dp)], &message, Ok(trained(&[3.0, 4.0])), seed);
        let (a, log) = go(9);
        let (b, _) = go(9);
        let (c, _) = go(10);
        let a = reply_values(&a.unwrap());
        assert_eq!(a, reply_values(&b.unwrap()));
        assert_ne!(a, reply_values(&c.unwrap()));
        assert!(matches!(a, Values::F32(_)));
        let std = 0.5 * (2.0 * crate::math::ln(1.25f64 / 1e-5)).sqrt() / 2.0;
        assert_eq!(dp.std_dev(), std);
        assert_eq!(
            messages(&log),
            [
                "LocalDpMod: parameters are clipped by value: 1.0000.".to_string(),
                format!(
                    "LocalDpMod: local DP noise with {} stddev added to parameters",
                    format_f(std, 4)
                ),
            ]
        );
        assert_eq!(
            LocalDpMod::new(0.0, 1.0, 1.0, 1.0).unwrap_err().to_string(),
            "The clipping norm should be a positive value."
        );
        assert_eq!(
            LocalDpMod::new(1.0, -1.0, 1.0, 1.0).unwrap_err().to_string(),
            "The sensitivity should be a non-negative value."
        );
        assert_eq!(
            LocalDpMod::new(1.0, 1.0, -1.0, 1.0).unwrap_err().to_string(),
            "Epsilon should be a non-negative value."
        );
        assert_eq!(
            LocalDpMod::new(1.0, 1.0, 1.0, -1.0).unwrap_err().to_string(),
            "Delta should be a non-negative value."
        );
    }

    #[test]
    fn size_mods_log_like_flower() {
        let message = instruction("train", &[0.0, 0.0], Some(1.0));
        let reply = trained(&[3.0, 4.0]);
        let (incoming, outgoing) = (message.content().unwrap().count_bytes(), reply.count_bytes());
        // float32 [2]: a 128-byte .npy preamble and 8 data bytes, plus the key.
        assert_eq!(reply.arrays("arrays").unwrap().count_bytes(), 137);
        let (_, log) = run(vec![Box::new(MessageSizeMod)], &message, Ok(reply.clone()), 1);
        assert_eq!(
            messages(&log),
            [
                format!("Incoming message size: {incoming} bytes"),
                format!("Outgoing message size: {outgoing} bytes")
            ]
        );
        let (_, log) = run(vec![Box::new(ArraysSizeMod)], &message, Ok(reply), 1);
        assert_eq!(
            messages(&log),
            [
                "Incoming `ArrayRecord` size statistics:",
                "{'arrays': {'elements': 2, 'bytes': 137}}",
                "Total array elements received: 137 bytes",
                "Outgoing `ArrayRecord` size statistics:",
                "{'arrays': {'elements': 2, 'bytes': 137}}",
                "Total array elements sent: 137 bytes",
            ]
        );
        let (_, log) = run(vec![Box::new(ArraysSizeMod)], &message, Ok(RecordDict::new()), 1);
        assert_eq!(messages(&log)[3], "Total array elements sent: 0 bytes");
    }

    fn config(pairs: &[(&str, Scalar)]) -> UserConfig {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn s(text: &str) -> Scalar {
        Scalar::Str(text.into())
    }

    #[test]
    fn build_mods_attaches_mods_per_message_type() {
        let mods = build_mods(&config(&[
            ("mods.train", s("message-size, fixedclipping")),
            ("lr", Scalar::Float(0.1)),
        ]))
        .unwrap();
        assert_eq!(mods.len(), 2);
        let train = instruction("train", &[0.0, 0.0], Some(1.0));
        let (out, log) = run(mods, &train, Ok(trained(&[3.0, 4.0])), 1);
        assert_eq!(reply_values(&out.unwrap()), Values::F32(vec![0.6, 0.8]));
        assert_eq!(log.lines().len(), 3);
        // Evaluate messages (no clipping_norm) go straight to the app.
        let mods = build_mods(&config(&[("mods.train", s("fixedclipping"))])).unwrap();
        let evaluate = instruction("evaluate", &[0.0, 0.0], None);
        let (out, log) = run(mods, &evaluate, Ok(trained(&[3.0, 4.0])), 1);
        assert!(out.is_ok() && log.lines().is_empty());
        let mods = build_mods(&config(&[("mods.evaluate", s("message-size"))])).unwrap();
        let (_, log) = run(
            mods,
            &instruction("evaluate.custom", &[0.0], None),
            Ok(trained(&[1.0])),
            1,
        );
        assert_eq!(log.lines().len(), 2);
        assert!(build_mods(&UserConfig::new()).unwrap().is_empty());
        assert_eq!(
            build_mods(&config(&[
                ("dp.mode", s("client-adaptive")),
                ("mods.train", s("fixedclipping"))
            ]))
            .err()
            .map(|e| e.to_string()),
            Some(
                "`dp.mode = \"client-adaptive\"` expects the clients to clip their updates: add `adaptiveclipping` \
                 to `mods.train`"
                    .into()
            )
        );
        assert!(build_mods(&config(&[
            ("dp.mode", s("client-fixed")),
            ("mods.train", s("fixedclipping"))
        ]))
        .is_ok());
        assert!(build_mods(&config(&[("dp.mode", s("server-fixed"))])).is_ok());
        let mods = build_mods(&config(&[
            ("mods.train", s("localdp")),
            ("mods.localdp.clipping-norm", Scalar::Int(1)),
            ("mods.localdp.sensitivity", Scalar::Float(0.1)),
            ("mods.localdp.epsilon", Scalar::Float(1.0)),
            ("mods.localdp.delta", Scalar::Float(1e-5)),
        ]))
        .unwrap();
        assert_eq!(mods.len(), 1);
    }

    #[test]
    fn build_mods_explains_each_mistake() {
        let err = |pairs: &[(&str, Scalar)]| build_mods(&config(pairs)).err().expect("an error").to_string();
        assert_eq!(
            err(&[("mods.train", s("fixedclipping_mod"))]),
            "unknown mod `fixedclipping_mod` in `mods.train` (did you mean `fixedclipping`?); valid mods: \
             fixedclipping, adaptiveclipping, localdp, message-size, arrays-size"
        );
        assert!(err(&[("mods.evaluate", s("LocalDpMod"))]).contains("did you mean `localdp`?"));
        assert!(err(&[("mods.train", s("zip"))]).starts_with("unknown mod `zip` in `mods.train`; valid mods:"));
        assert_eq!(
            err(&[("mods.trian", s("localdp"))]),
            "unknown key `mods.trian`; valid keys: mods.train, mods.evaluate, mods.localdp.clipping-norm, \
             mods.localdp.sensitivity, mods.localdp.epsilon, mods.localdp.delta"
        );
        assert_eq!(
            err(&[("mods.train", Scalar::Int(1))]),
            "`mods.train` must be a string of comma-separated mod names, found int (1)"
        );
        assert!(err(&[("mods.train", s("localdp"))]).starts_with("mod `localdp` needs `mods.localdp.clipping-norm`"));
        assert_eq!(
            err(&[("mods.localdp.delta", Scalar::Float(0.1))]),
            "`mods.localdp.delta` is set but `localdp` is not listed in `mods.train` or `mods.evaluate`"
        );
        assert_eq!(
            err(&[
                ("mods.train", s("localdp")),
                ("mods.localdp.clipping-norm", Scalar::Float(-1.0)),
                ("mods.localdp.sensitivity", Scalar::Float(0.1)),
                ("mods.localdp.epsilon", Scalar::Float(1.0)),
                ("mods.localdp.delta", s("x")),
            ]),
            "`mods.localdp.delta` must be a number, found str (\"x\")"
        );
    }
}
