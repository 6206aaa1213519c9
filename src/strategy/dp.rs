//! Flower's central differential-privacy wrappers: fixed clipping
//! (Geyer et al. 2017, McMahan et al. 2018) and adaptive clipping (Andrew et
//! al. 2019), each on the server side or on the client side. Every wrapper
//! owns any `Box<dyn Strategy>` and delegates sampling, aggregation and
//! evaluation to it.
//!
//! Kept from Flower 1.42, byte for byte where it shows:
//! - reply checking (`validate_replies`): an error reply logs
//!   "Received error in reply from node N: Error(code=…, reason='…')" and
//!   skips the round with `(None, None)`; otherwise "aggregate_train:
//!   Received N results and 0 failures" is logged, then the wrapped strategy
//!   logs its own identical line (the line appears twice, as in Flower); a
//!   count different from `num_sampled_clients` logs the discrepancy
//!   warning;
//! - server-side clipping of every reply's update `reply − current` to the
//!   clipping norm (one "clipped by value" line per reply), client-side
//!   clipping by sending `config["clipping_norm"]`;
//! - Gaussian noise `N(0, σ·C/m)` added to every element of a non-empty
//!   aggregate, cast to the array's dtype, with "aggregate_fit: central DP
//!   noise with %.4f stdev added";
//! - adaptive clipping: effective noise multiplier
//!   `σ_eff = (σ⁻² − (2σ_b)⁻²)^(−1/2)` (`σ_b` defaults to `m/20`), clipping
//!   norm update `C ← C·exp(−lr·(noisy_fraction − γ))` with
//!   `noisy_fraction = N(clipped_count, σ_b) / replies`, and model noise from
//!   the updated norm;
//! - constructor checks with Flower's messages (as
//!   `StrategyError::InvalidParameter`), the summary lines (DP settings,
//!   then the wrapped strategy's summary).
//!
//! Differences from Flower, on purpose:
//! - randomness: Flower draws from numpy's global generator. Here the model
//!   noise and the clipped-count noise come from two streams of the run's
//!   seed, `grid.prng(&[SERVER_NOISE, round, 0])` and
//!   `grid.prng(&[SERVER_NOISE, round, 1])`, captured in `configure_train`
//!   (aggregation has no grid), so a DP run replays bit for bit. Noise is
//!   drawn element by element in key order with Box–Muller normals. A zero
//!   standard deviation draws nothing (the noise is `+0.0`, as numpy's);
//!   aggregating with a positive one without `configure_train` for that
//!   round fails with `StrategyError::Aggregation`;
//! - a zero update norm (a reply equal to the global model) makes Python
//!   raise `ZeroDivisionError` while clipping; here the scale is 1 (nothing
//!   to clip) and the reply is not counted as clipped;
//! - update norms are accumulated in float64 (numpy: BLAS in the array's
//!   dtype), so float32 norms can differ by ~1e-7 relative; integer arrays
//!   are clipped in float64;
//! - a reply whose arrays differ in count or shape from the global arrays
//!   fails with `StrategyError::Aggregation` (Python truncates or raises);
//! - adaptive clipping with no replies at all leaves the clipping norm
//!   unchanged (Python divides by zero);
//! - parameters are floats: an integer noise multiplier prints as `1.0`
//!   where Flower would print `1`. The optional privacy accountant of 1.42
//!   is not implemented.
//!
//! It never does I/O.

use crate::flwr_log::Logger;
use crate::kernels::{add_gaussian_noise, clip_update};
use crate::math;
use crate::prng::{purpose, Prng};
use crate::pyfmt::{float_repr, format_f, PyValue};
use crate::records::{
    ArrayRecord, ConfigRecord, ConfigValue, Error, Message, MetricRecord, MetricValue, Record, RecordDict,
};
use crate::records::{KEY_CLIPPING_NORM, KEY_NORM_BIT};
use crate::strategy::{Grid, Strategy, StrategyError};

/// Flower's `CLIENTS_DISCREPANCY_WARNING`, with its two `%s` filled.
fn clients_discrepancy_warning(received: usize, sampled: usize) -> String {
    format!(
        "The number of clients returning parameters ({received}) differs from the number of sampled clients \
         ({sampled}). This could impact the differential privacy guarantees, potentially leading to privacy \
         leakage or inadequate noise calibration."
    )
}

/// Python's `repr(Error)`: `Error(code=2, reason='boom')`.
pub fn error_repr(error: &Error) -> String {
    format!(
        "Error(code={}, reason={})",
        error.code,
        PyValue::Str(error.reason.clone()).repr()
    )
}

/// Flower's DP `validate_replies`: false (skip the round) on any error reply.
fn validate_replies(replies: &[Message], num_sampled_clients: usize, log: &mut Logger) -> bool {
    let mut errors = 0;
    for reply in replies {
        if let Some(error) = reply.error() {
            log.info(format!(
                "Received error in reply from node {}: {}",
                reply.metadata.src_node_id,
                error_repr(error)
            ));
            errors += 1;
        }
    }
    if errors > 0 {
        log.info("aggregate_train: Some clients reported errors. Skipping aggregation.");
        return false;
    }
    log.info(format!(
        "aggregate_train: Received {} results and 0 failures",
        replies.len()
    ));
    if replies.len() != num_sampled_clients {
        log.warning(clients_discrepancy_warning(replies.len(), num_sampled_clients));
    }
    true
}

/// Flower's `compute_stdv`.
fn compute_stdv(noise_multiplier: f64, clipping_norm: f64, num_sampled_clients: usize) -> f64 {
    noise_multiplier * clipping_norm / num_sampled_clients as f64
}

/// The two noise streams of one round, captured in `configure_train`.
#[derive(Clone, Debug)]
struct NoiseStreams {
    round: u64,
    model: Prng,
    count: Prng,
}

impl NoiseStreams {
    fn capture(grid: &dyn Grid, round: u64) -> NoiseStreams {
        NoiseStreams {
            round,
            model: grid.prng(&[purpose::SERVER_NOISE, round, 0]),
            count: grid.prng(&[purpose::SERVER_NOISE, round, 1]),
        }
    }
}

fn streams_for(streams: &mut Option<NoiseStreams>, round: u64) -> Option<&mut NoiseStreams> {
    streams.as_mut().filter(|s| s.round == round)
}

/// Adds the central noise to a non-empty aggregate and logs it.
fn add_central_noise(
    arrays: Option<ArrayRecord>,
    std: f64,
    streams: Option<&mut NoiseStreams>,
    log: &mut Logger,
) -> Result<Option<ArrayRecord>, StrategyError> {
    match arrays {
        Some(mut arrays) if !arrays.is_empty() => {
            add_gaussian_noise(&mut arrays, std, streams.map(|s| &mut s.model))?;
            log.info(format!(
                "aggregate_fit: central DP noise with {} stdev added",
                format_f(std, 4)
            ));
            Ok(Some(arrays))
        }
        other => Ok(other),
    }
}

/// The replies with every ArrayRecord replaced by
/// `current + clip(record − current)`; also the number of clipped records.
fn clip_replies(
    replies: &[Message],
    current: &ArrayRecord,
    clipping_norm: f64,
    log_line: &str,
    log: &mut Logger,
) -> Result<(Vec<Message>, usize), StrategyError> {
    let mut clipped_count = 0;
    let mut out = Vec::with_capacity(replies.len());
    for reply in replies {
        let content = reply.content().expect("validated: no error replies");
        let mut new_content = content.clone();
        for (name, record) in content.array_records() {
            let clipped = clip_update(record, current, clipping_norm)?;
            clipped_count += usize::from(clipped.norm_bit);
            new_content.insert(name, Record::Arrays(clipped.arrays));
        }
        log.info(log_line);
        out.push(Message::reply_like(reply, new_content));
    }
    Ok((out, clipped_count))
}

/// Builds a reply with the same metadata and new content.
trait ReplyLike {
    fn reply_like(reply: &Message, content: crate::records::RecordDict) -> Message;
}

impl ReplyLike for Message {
    fn reply_like(reply: &Message, content: crate::records::RecordDict) -> Message {
        Message {
            metadata: reply.metadata.clone(),
            body: Ok(std::sync::Arc::new(content)),
        }
    }
}

fn check_common(noise_multiplier: f64, num_sampled_clients: usize) -> Result<(), StrategyError> {
    let invalid = |reason: &str| Err(StrategyError::InvalidParameter(reason.into()));
    if noise_multiplier.is_nan() || noise_multiplier < 0.0 {
        return invalid("The noise multiplier should be a non-negative value.");
    }
    if num_sampled_clients == 0 {
        return invalid("The number of sampled clients should be a positive value.");
    }
    Ok(())
}

/// What both clipping rules hold: the noise and the round's noise streams.
struct Dp {
    /// The (effective) noise multiplier.
    noise_multiplier: f64,
    clipping_norm: f64,
    num_sampled_clients: usize,
    streams: Option<NoiseStreams>,
}

impl Dp {
    fn add_noise(
        &mut self,
        round: u64,
        arrays: Option<ArrayRecord>,
        log: &mut Logger,
    ) -> Result<Option<ArrayRecord>, StrategyError> {
        let std = compute_stdv(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients);
        add_central_noise(arrays, std, streams_for(&mut self.streams, round), log)
    }

    /// The DP settings: noise multiplier, clipping norm, then `more`.
    fn summary(&self, log: &mut Logger, more: &[(&str, f64)]) {
        log.info("\t├──> DP settings:");
        log.info(format!(
            "\t│\t├── Noise multiplier: {}",
            float_repr(self.noise_multiplier)
        ));
        let mut lines = vec![("Clipping norm", self.clipping_norm)];
        lines.extend_from_slice(more);
        for (i, (label, value)) in lines.iter().enumerate() {
            let branch = if i + 1 == lines.len() { "└──" } else { "├──" };
            log.info(format!("\t│\t{branch} {label}: {}", float_repr(*value)));
        }
    }
}

/// The clipping rule of a DP wrapper: fixed or adaptive.
trait Clipping: Send {
    /// Flower's class-name suffix.
    const KIND: &'static str;
    fn dp(&self) -> &Dp;
    fn dp_mut(&mut self) -> &mut Dp;
    fn summary(&self, log: &mut Logger);
    /// The server-side "clipped by value" line (Flower's wording differs
    /// between the two rules).
    fn clip_line(&self) -> String;
    /// What the replies tell about clipping done by the clients: `None`
    /// when the rule does not need it, else the number of clipped updates
    /// (an error when a reply does not say).
    fn clipped_by_clients(&self, contents: &[&RecordDict]) -> Result<Option<usize>, StrategyError>;
    /// `clipped` of `total` updates were clipped in `round`.
    fn update(&mut self, round: u64, clipped: usize, total: usize) -> Result<(), StrategyError>;
}

/// Fixed clipping: the norm never changes.
struct FixedClipping(Dp);

impl FixedClipping {
    fn new(
        noise_multiplier: f64,
        clipping_norm: f64,
        num_sampled_clients: usize,
    ) -> Result<FixedClipping, StrategyError> {
        if noise_multiplier.is_nan() || noise_multiplier < 0.0 {
            return Err(StrategyError::InvalidParameter(
                "The noise multiplier should be a non-negative value.".into(),
            ));
        }
        if clipping_norm.is_nan() || clipping_norm <= 0.0 {
            return Err(StrategyError::InvalidParameter(
                "The clipping norm should be a positive value.".into(),
            ));
        }
        check_common(noise_multiplier, num_sampled_clients)?;
        Ok(FixedClipping(Dp {
            noise_multiplier,
            clipping_norm,
            num_sampled_clients,
            streams: None,
        }))
    }
}

impl Clipping for FixedClipping {
    const KIND: &'static str = "FixedClipping";

    fn dp(&self) -> &Dp {
        &self.0
    }

    fn dp_mut(&mut self) -> &mut Dp {
        &mut self.0
    }

    fn summary(&self, log: &mut Logger) {
        self.0.summary(log, &[]);
    }

    fn clip_line(&self) -> String {
        format!(
            "aggregate_fit: parameters are clipped by value: {}.",
            format_f(self.0.clipping_norm, 4)
        )
    }

    fn clipped_by_clients(&self, _contents: &[&RecordDict]) -> Result<Option<usize>, StrategyError> {
        Ok(None)
    }

    fn update(&mut self, _round: u64, _clipped: usize, _total: usize) -> Result<(), StrategyError> {
        Ok(())
    }
}

/// Adaptive clipping's parameters, with Flower's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveClippingParams {
    pub initial_clipping_norm: f64,
    pub target_clipped_quantile: f64,
    pub clip_norm_lr: f64,
    /// `None`: `num_sampled_clients / 20` when the noise multiplier is
    /// positive, else 0.
    pub clipped_count_stddev: Option<f64>,
}

impl Default for AdaptiveClippingParams {
    fn default() -> Self {
        AdaptiveClippingParams {
            initial_clipping_norm: 0.1,
            target_clipped_quantile: 0.5,
            clip_norm_lr: 0.2,
            clipped_count_stddev: None,
        }
    }
}

/// Flower's `compute_adaptive_noise_params`: `(clipped_count_stddev,
/// effective noise multiplier)`.
pub fn compute_adaptive_noise_params(
    noise_multiplier: f64,
    num_sampled_clients: usize,
    clipped_count_stddev: Option<f64>,
    log: &mut Logger,
) -> Result<(f64, f64), StrategyError> {
    if noise_multiplier > 0.0 {
        let default_stddev = num_sampled_clients as f64 / 20.0;
        let stddev = clipped_count_stddev.unwrap_or(default_stddev);
        if noise_multiplier >= 2.0 * stddev {
            return Err(StrategyError::InvalidParameter(format!(
                "If not specified, `clipped_count_stddev` is set to `num_sampled_clients`/20 by default. This value \
                 ({}) is too low to achieve the desired effective `noise_multiplier` ({}). Consider increasing \
                 `clipped_count_stddev` or decreasing `noise_multiplier`.",
                float_repr(default_stddev),
                float_repr(noise_multiplier)
            )));
        }
        let effective = math::pow(math::pow(noise_multiplier, -2.0) - math::pow(2.0 * stddev, -2.0), -0.5);
        let adding_noise = effective / noise_multiplier;
        if adding_noise >= 2.0 {
            log.warning(format!(
                "A significant amount of noise ({}) has to be added. Consider increasing `clipped_count_stddev` or \
                 `num_sampled_clients`.",
                float_repr(adding_noise)
            ));
        }
        Ok((stddev, effective))
    } else {
        Ok((clipped_count_stddev.unwrap_or(0.0), 0.0))
    }
}

/// Adaptive clipping: the norm follows the target quantile of clipped
/// updates.
struct AdaptiveClipping {
    dp: Dp,
    target_clipped_quantile: f64,
    clip_norm_lr: f64,
    clipped_count_stddev: f64,
}

impl AdaptiveClipping {
    fn new(
        noise_multiplier: f64,
        num_sampled_clients: usize,
        params: AdaptiveClippingParams,
        log: &mut Logger,
    ) -> Result<AdaptiveClipping, StrategyError> {
        let invalid = |reason: &str| Err(StrategyError::InvalidParameter(reason.into()));
        check_common(noise_multiplier, num_sampled_clients)?;
        if params.initial_clipping_norm.is_nan() || params.initial_clipping_norm <= 0.0 {
            return invalid("The initial clipping norm should be a positive value.");
        }
        if !(0.0..=1.0).contains(&params.target_clipped_quantile) {
            return invalid("The target clipped quantile must be in [0, 1].");
        }
        if params.clip_norm_lr.is_nan() || params.clip_norm_lr <= 0.0 {
            return invalid("The learning rate must be positive.");
        }
        if params.clipped_count_stddev.is_some_and(|s| s.is_nan() || s < 0.0) {
            return invalid("The `clipped_count_stddev` must be non-negative.");
        }
        let (clipped_count_stddev, effective) =
            compute_adaptive_noise_params(noise_multiplier, num_sampled_clients, params.clipped_count_stddev, log)?;
        Ok(AdaptiveClipping {
            dp: Dp {
                noise_multiplier: effective,
                clipping_norm: params.initial_clipping_norm,
                num_sampled_clients,
                streams: None,
            },
            target_clipped_quantile: params.target_clipped_quantile,
            clip_norm_lr: params.clip_norm_lr,
            clipped_count_stddev,
        })
    }
}

impl Clipping for AdaptiveClipping {
    const KIND: &'static str = "AdaptiveClipping";

    fn dp(&self) -> &Dp {
        &self.dp
    }

    fn dp_mut(&mut self) -> &mut Dp {
        &mut self.dp
    }

    fn summary(&self, log: &mut Logger) {
        self.dp.summary(
            log,
            &[
                ("Target clipped quantile", self.target_clipped_quantile),
                ("Clip norm learning rate", self.clip_norm_lr),
            ],
        );
    }

    fn clip_line(&self) -> String {
        format!(
            "aggregate_train: arrays in `ArrayRecord` are clipped by value: {}.",
            format_f(self.dp.clipping_norm, 4)
        )
    }

    /// `AdaptiveClippingMod` reports `norm_bit` in every MetricRecord.
    fn clipped_by_clients(&self, contents: &[&RecordDict]) -> Result<Option<usize>, StrategyError> {
        if contents
            .iter()
            .any(|c| c.metric_records().any(|(_, m)| !m.contains_key(KEY_NORM_BIT)))
        {
            return Err(StrategyError::Aggregation(
                "KEY_NORM_BIT ('norm_bit') not found in MetricRecord or metrics for reply.".into(),
            ));
        }
        Ok(Some(
            contents
                .iter()
                .filter(|c| {
                    c.metric_records()
                        .find_map(|(_, m)| m.get(KEY_NORM_BIT))
                        .is_some_and(truthy)
                })
                .count(),
        ))
    }

    /// `C ← C·exp(−lr·(N(count, σ_b)/total − γ))`.
    fn update(&mut self, round: u64, clipped_count: usize, total: usize) -> Result<(), StrategyError> {
        if total == 0 {
            return Ok(());
        }
        let noise = if self.clipped_count_stddev == 0.0 {
            0.0
        } else {
            let Some(streams) = streams_for(&mut self.dp.streams, round) else {
                return Err(StrategyError::Aggregation(
                    "No noise stream: `configure_train` must run before `aggregate_train`.".into(),
                ));
            };
            self.clipped_count_stddev * streams.count.normal_f64()
        };
        let noisy_fraction = (clipped_count as f64 + noise) / total as f64;
        self.dp.clipping_norm *= math::exp(-self.clip_norm_lr * (noisy_fraction - self.target_clipped_quantile));
        Ok(())
    }
}

/// Python's `bool()` of a metric value.
fn truthy(value: &MetricValue) -> bool {
    match value {
        MetricValue::Int(i) => *i != 0,
        MetricValue::Float(f) => *f != 0.0,
        MetricValue::IntList(l) => !l.is_empty(),
        MetricValue::FloatList(l) => !l.is_empty(),
    }
}

/// Clipping done by the server: every reply's update is clipped before the
/// wrapped strategy aggregates.
struct ServerSide<C> {
    strategy: Box<dyn Strategy>,
    clipping: C,
    current_arrays: ArrayRecord,
}

/// Clipping done by the clients' mods: the norm goes out in the config.
struct ClientSide<C> {
    strategy: Box<dyn Strategy>,
    clipping: C,
}

impl<C: Clipping> Strategy for ServerSide<C> {
    fn name(&self) -> String {
        format!("DifferentialPrivacyServerSide{}", C::KIND)
    }

    fn summary(&self, log: &mut Logger) {
        self.clipping.summary(log);
        self.strategy.summary(log);
    }

    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        self.current_arrays = arrays.clone();
        self.clipping.dp_mut().streams = Some(NoiseStreams::capture(grid, round));
        self.strategy.configure_train(round, arrays, config, grid, log)
    }

    fn aggregate_train(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        if !validate_replies(replies, self.clipping.dp().num_sampled_clients, log) {
            return Ok((None, None));
        }
        let line = self.clipping.clip_line();
        let norm = self.clipping.dp().clipping_norm;
        let (clipped, count) = clip_replies(replies, &self.current_arrays, norm, &line, log)?;
        self.clipping.update(round, count, replies.len())?;
        let (arrays, metrics) = self.strategy.aggregate_train(round, &clipped, log)?;
        Ok((self.clipping.dp_mut().add_noise(round, arrays, log)?, metrics))
    }

    delegate_evaluate!(strategy);
}

impl<C: Clipping> Strategy for ClientSide<C> {
    fn name(&self) -> String {
        format!("DifferentialPrivacyClientSide{}", C::KIND)
    }

    fn summary(&self, log: &mut Logger) {
        self.clipping.summary(log);
        self.strategy.summary(log);
    }

    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        let dp = self.clipping.dp_mut();
        config.insert(KEY_CLIPPING_NORM, ConfigValue::Float(dp.clipping_norm));
        dp.streams = Some(NoiseStreams::capture(grid, round));
        self.strategy.configure_train(round, arrays, config, grid, log)
    }

    fn aggregate_train(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        if !validate_replies(replies, self.clipping.dp().num_sampled_clients, log) {
            return Ok((None, None));
        }
        let contents: Vec<&RecordDict> = replies.iter().filter_map(Message::content).collect();
        let clipped = self.clipping.clipped_by_clients(&contents)?;
        let (arrays, metrics) = self.strategy.aggregate_train(round, replies, log)?;
        if let Some(clipped) = clipped {
            self.clipping.update(round, clipped, replies.len())?;
        }
        Ok((self.clipping.dp_mut().add_noise(round, arrays, log)?, metrics))
    }

    delegate_evaluate!(strategy);
}

/// Flower's four wrapper classes: one type each, over the two clipping
/// rules and the two sides.
macro_rules! dp_wrapper {
    ($(#[$doc:meta])* $name:ident, $side:ident<$rule:ident>) => {
        $(#[$doc])*
        pub struct $name {
            inner: $side<$rule>,
        }

        impl $name {
            /// The current clipping norm.
            pub fn clipping_norm(&self) -> f64 {
                self.inner.clipping.dp().clipping_norm
            }

            /// The (effective) noise multiplier.
            pub fn noise_multiplier(&self) -> f64 {
                self.inner.clipping.dp().noise_multiplier
            }
        }

        impl Strategy for $name {
            fn name(&self) -> String {
                self.inner.name()
            }

            fn summary(&self, log: &mut Logger) {
                self.inner.summary(log)
            }

            delegate_configure_train!(inner);

            fn aggregate_train(
                &mut self,
                round: u64,
                replies: &[Message],
                log: &mut Logger,
            ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
                self.inner.aggregate_train(round, replies, log)
            }

            delegate_evaluate!(inner);
        }
    };
}

dp_wrapper!(
    /// Central DP with fixed clipping done by the server.
    DifferentialPrivacyServerSideFixedClipping,
    ServerSide<FixedClipping>
);
dp_wrapper!(
    /// Central DP with fixed clipping done by the clients (`FixedClippingMod`).
    DifferentialPrivacyClientSideFixedClipping,
    ClientSide<FixedClipping>
);
dp_wrapper!(
    /// Central DP with adaptive clipping done by the server.
    DifferentialPrivacyServerSideAdaptiveClipping,
    ServerSide<AdaptiveClipping>
);
dp_wrapper!(
    /// Central DP with adaptive clipping done by the clients
    /// (`AdaptiveClippingMod`, which reports `norm_bit`).
    DifferentialPrivacyClientSideAdaptiveClipping,
    ClientSide<AdaptiveClipping>
);

impl DifferentialPrivacyServerSideFixedClipping {
    pub fn new(
        strategy: Box<dyn Strategy>,
        noise_multiplier: f64,
        clipping_norm: f64,
        num_sampled_clients: usize,
    ) -> Result<Self, StrategyError> {
        Ok(DifferentialPrivacyServerSideFixedClipping {
            inner: ServerSide {
                strategy,
                clipping: FixedClipping::new(noise_multiplier, clipping_norm, num_sampled_clients)?,
                current_arrays: ArrayRecord::new(),
            },
        })
    }
}

impl DifferentialPrivacyClientSideFixedClipping {
    pub fn new(
        strategy: Box<dyn Strategy>,
        noise_multiplier: f64,
        clipping_norm: f64,
        num_sampled_clients: usize,
    ) -> Result<Self, StrategyError> {
        Ok(DifferentialPrivacyClientSideFixedClipping {
            inner: ClientSide {
                strategy,
                clipping: FixedClipping::new(noise_multiplier, clipping_norm, num_sampled_clients)?,
            },
        })
    }
}

impl DifferentialPrivacyServerSideAdaptiveClipping {
    /// Flower's defaults: [`AdaptiveClippingParams::default`].
    pub fn new(
        strategy: Box<dyn Strategy>,
        noise_multiplier: f64,
        num_sampled_clients: usize,
        params: AdaptiveClippingParams,
        log: &mut Logger,
    ) -> Result<Self, StrategyError> {
        Ok(DifferentialPrivacyServerSideAdaptiveClipping {
            inner: ServerSide {
                strategy,
                clipping: AdaptiveClipping::new(noise_multiplier, num_sampled_clients, params, log)?,
                current_arrays: ArrayRecord::new(),
            },
        })
    }
}

impl DifferentialPrivacyClientSideAdaptiveClipping {
    /// Flower's defaults: [`AdaptiveClippingParams::default`].
    pub fn new(
        strategy: Box<dyn Strategy>,
        noise_multiplier: f64,
        num_sampled_clients: usize,
        params: AdaptiveClippingParams,
        log: &mut Logger,
    ) -> Result<Self, StrategyError> {
        Ok(DifferentialPrivacyClientSideAdaptiveClipping {
            inner: ClientSide {
                strategy,
                clipping: AdaptiveClipping::new(noise_multiplier, num_sampled_clients, params, log)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flwr_log::Level;
    use crate::records::{error_code, RecordDict, Values};
    use crate::strategy::testkit::*;
    use crate::strategy::{FedAvg, FedAvgParams};

    fn fedavg() -> Box<dyn Strategy> {
        Box::new(FedAvg::new(FedAvgParams::default(), &mut Logger::new()))
    }

    /// Runs `rounds` golden rounds and records the clipping norm after each.
    fn run_dp(
        strategy: &mut dyn Strategy,
        rounds: u64,
        seed: u64,
        norm: &dyn Fn(&dyn Strategy) -> f64,
    ) -> (Vec<(ArrayRecord, MetricRecord)>, Vec<f64>, Logger) {
        let mut log = Logger::new();
        let grid = TestGrid::new(seed, 5);
        let mut arrays = global_arrays();
        let (mut results, mut norms) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let instructions = strategy.configure_train(round, &arrays, &mut ConfigRecord::new(), &grid, &mut log);
            let replies = replies(&instructions.unwrap(), golden_contents(5));
            let (agg, metrics) = strategy.aggregate_train(round, &replies, &mut log).unwrap();
            arrays = agg.unwrap();
            results.push((arrays.clone(), metrics.unwrap()));
            norms.push(norm(strategy));
        }
        (results, norms, log)
    }

    fn golden_norms(case: &str) -> Vec<f64> {
        golden()["cases"][case]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["clipping_norm_after"].as_f64().unwrap())
            .collect()
    }

    const FIXED_CASE: &str =
        "DPServerSideFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=1.0, num_sampled_clients=5)";
    const ADAPTIVE_CASE: &str =
        "DPServerSideAdaptiveClipping(FedAvg(), noise_multiplier=0.0, num_sampled_clients=5) 2 rounds";

    #[test]
    fn golden_server_side_fixed_clipping() {
        let mut dp = DifferentialPrivacyServerSideFixedClipping::new(fedavg(), 0.0, 1.0, 5).unwrap();
        let (results, norms, log) = run_dp(&mut dp, 1, 42, &|_| 1.0);
        assert_golden(FIXED_CASE, &results, 1e-15);
        assert_eq!(norms, golden_norms(FIXED_CASE));
        let messages = messages(&log);
        let received = "aggregate_train: Received 5 results and 0 failures";
        assert_eq!(
            messages.iter().filter(|m| *m == received).count(),
            2,
            "the doubled line"
        );
        assert_eq!(
            messages
                .iter()
                .filter(|m| *m == "aggregate_fit: parameters are clipped by value: 1.0000.")
                .count(),
            5
        );
        assert_eq!(
            messages.last().unwrap(),
            "aggregate_fit: central DP noise with 0.0000 stdev added"
        );
    }

    #[test]
    fn golden_server_side_adaptive_clipping() {
        let mut log = Logger::new();
        let mut dp = DifferentialPrivacyServerSideAdaptiveClipping::new(
            fedavg(),
            0.0,
            5,
            AdaptiveClippingParams::default(),
            &mut log,
        )
        .unwrap();
        let norm = |s: &dyn Strategy| {
            // Read the norm back from the summary ("Clipping norm: x").
            let lines = summary_lines(s);
            lines[2].rsplit(": ").next().unwrap().parse::<f64>().unwrap()
        };
        let (results, norms, log) = run_dp(&mut dp, 2, 42, &norm);
        assert_golden(ADAPTIVE_CASE, &results, 1e-15);
        assert_eq!(norms, golden_norms(ADAPTIVE_CASE));
        assert_eq!(dp.clipping_norm(), 0.08187307530779818);
        let messages = messages(&log);
        assert!(messages.contains(&"aggregate_train: arrays in `ArrayRecord` are clipped by value: 0.1000.".into()));
        assert!(messages.contains(&"aggregate_train: arrays in `ArrayRecord` are clipped by value: 0.0905.".into()));
    }

    fn noisy_run(seed: u64) -> Vec<(ArrayRecord, MetricRecord)> {
        let mut dp = DifferentialPrivacyServerSideAdaptiveClipping::new(
            fedavg(),
            0.3,
            5,
            AdaptiveClippingParams {
                clipped_count_stddev: Some(1.0),
                ..Default::default()
            },
            &mut Logger::new(),
        )
        .unwrap();
        run_dp(&mut dp, 2, seed, &|_| 0.0).0
    }

    #[test]
    fn noise_replays_bit_for_bit_from_the_seed() {
        let a = noisy_run(7);
        assert_eq!(a, noisy_run(7));
        assert_ne!(a, noisy_run(8));
        let digests = |r: &[(ArrayRecord, MetricRecord)]| r.iter().map(|(a, _)| a.digest()).collect::<Vec<_>>();
        assert_eq!(digests(&a), digests(&noisy_run(7)));
        let fixed = |seed| {
            let mut dp = DifferentialPrivacyServerSideFixedClipping::new(fedavg(), 1.0, 1.0, 5).unwrap();
            run_dp(&mut dp, 1, seed, &|_| 0.0).0
        };
        assert_eq!(fixed(1), fixed(1));
        assert_ne!(fixed(1), fixed(2));
    }

    #[test]
    fn noise_without_configure_train_is_an_error() {
        let mut dp = DifferentialPrivacyClientSideFixedClipping::new(fedavg(), 1.0, 1.0, 5).unwrap();
        let instructions: Vec<Message> = (0..5).map(instruction).collect();
        let err = dp
            .aggregate_train(1, &replies(&instructions, golden_contents(5)), &mut Logger::new())
            .unwrap_err();
        assert!(matches!(err, StrategyError::Aggregation(_)));
    }

    #[test]
    fn float32_noise_keeps_the_dtype() {
        let mut dp = DifferentialPrivacyClientSideFixedClipping::new(fedavg(), 1.0, 1.0, 2).unwrap();
        let grid = TestGrid::new(3, 2);
        let mut log = Logger::new();
        let mut global = ArrayRecord::new();
        global.insert("x", crate::records::Array::from_f32(vec![2], vec![0.0, 0.0]));
        let instructions = dp
            .configure_train(1, &global, &mut ConfigRecord::new(), &grid, &mut log)
            .unwrap();
        let contents = f32_contents(&[vec![1.0, 2.0], vec![3.0, 4.0]], &[1, 1]);
        let (arrays, _) = dp
            .aggregate_train(1, &replies(&instructions, contents), &mut log)
            .unwrap();
        let x = arrays.unwrap().get("x").unwrap().clone();
        assert!(matches!(x.values, Values::F32(ref v) if v != &vec![2.0, 3.0]));
        assert!(messages(&log).contains(&"aggregate_fit: central DP noise with 0.5000 stdev added".to_string()));
    }

    #[test]
    fn client_side_wrappers_send_the_clipping_norm() {
        let grid = TestGrid::new(3, 5);
        let mut fixed = DifferentialPrivacyClientSideFixedClipping::new(fedavg(), 0.0, 2.5, 5).unwrap();
        let mut config = ConfigRecord::new();
        let messages = fixed
            .configure_train(1, &global_arrays(), &mut config, &grid, &mut Logger::new())
            .unwrap();
        let sent = messages[0].content().unwrap().config("config").unwrap();
        assert_eq!(sent.get(KEY_CLIPPING_NORM), Some(&ConfigValue::Float(2.5)));
        let mut adaptive = DifferentialPrivacyClientSideAdaptiveClipping::new(
            fedavg(),
            0.0,
            5,
            AdaptiveClippingParams::default(),
            &mut Logger::new(),
        )
        .unwrap();
        let mut config = ConfigRecord::new();
        adaptive
            .configure_train(1, &global_arrays(), &mut config, &grid, &mut Logger::new())
            .unwrap();
        assert_eq!(config.get(KEY_CLIPPING_NORM), Some(&ConfigValue::Float(0.1)));
    }

    fn with_norm_bits(bits: &[i64]) -> Vec<RecordDict> {
        let mut contents = golden_contents(bits.len());
        for (content, &bit) in contents.iter_mut().zip(bits) {
            if let Some(Record::Metrics(m)) = content.get_mut("metrics") {
                m.insert(KEY_NORM_BIT, MetricValue::Int(bit));
            }
        }
        contents
    }

    #[test]
    fn client_side_adaptive_counts_norm_bits_and_requires_them() {
        let grid = TestGrid::new(3, 5);
        let mut log = Logger::new();
        let mut dp = DifferentialPrivacyClientSideAdaptiveClipping::new(
            fedavg(),
            0.0,
            5,
            AdaptiveClippingParams::default(),
            &mut log,
        )
        .unwrap();
        let instructions = dp
            .configure_train(1, &global_arrays(), &mut ConfigRecord::new(), &grid, &mut log)
            .unwrap();
        let (_, metrics) = dp
            .aggregate_train(1, &replies(&instructions, with_norm_bits(&[1, 0, 1, 1, 0])), &mut log)
            .unwrap();
        // norm_bit is averaged like any metric; 3 of 5 clipped.
        assert!(metrics.unwrap().contains_key(KEY_NORM_BIT));
        assert_eq!(dp.clipping_norm(), 0.1 * crate::math::exp(-0.2 * (0.6 - 0.5f64)));
        let err = dp
            .aggregate_train(1, &replies(&instructions, golden_contents(5)), &mut log)
            .unwrap_err();
        assert_eq!(
            err,
            StrategyError::Aggregation(
                "KEY_NORM_BIT ('norm_bit') not found in MetricRecord or metrics for reply.".into()
            )
        );
    }

    #[test]
    fn error_replies_skip_the_round_and_counts_are_checked() {
        let mut log = Logger::new();
        let mut dp = DifferentialPrivacyServerSideFixedClipping::new(fedavg(), 0.0, 1.0, 3).unwrap();
        let instructions: Vec<Message> = (0..2).map(instruction).collect();
        let mut replies = replies(&instructions, golden_contents(1));
        replies.push(Message::reply(
            &instructions[1],
            Err(Error {
                code: error_code::CLIENT_APP_RAISED_EXCEPTION,
                reason: "boom".into(),
            }),
        ));
        assert_eq!(dp.aggregate_train(1, &replies, &mut log).unwrap(), (None, None));
        assert_eq!(
            messages(&log),
            [
                "Received error in reply from node 1: Error(code=2, reason='boom')",
                "aggregate_train: Some clients reported errors. Skipping aggregation."
            ]
        );
        let mut log = Logger::new();
        let grid = TestGrid::new(1, 5);
        let instructions = dp
            .configure_train(1, &global_arrays(), &mut ConfigRecord::new(), &grid, &mut log)
            .unwrap();
        dp.aggregate_train(
            1,
            &super::super::testkit::replies(&instructions, golden_contents(5)),
            &mut log,
        )
        .unwrap();
        assert_eq!(lines_at(&log, Level::Warning), [clients_discrepancy_warning(5, 3)]);
    }

    #[test]
    fn constructors_check_like_flower() {
        let err = |r: Result<DifferentialPrivacyServerSideFixedClipping, StrategyError>| match r {
            Err(StrategyError::InvalidParameter(reason)) => reason,
            _ => panic!("expected an error"),
        };
        assert_eq!(
            err(DifferentialPrivacyServerSideFixedClipping::new(fedavg(), -1.0, 1.0, 5)),
            "The noise multiplier should be a non-negative value."
        );
        assert_eq!(
            err(DifferentialPrivacyServerSideFixedClipping::new(fedavg(), 1.0, 0.0, 5)),
            "The clipping norm should be a positive value."
        );
        assert_eq!(
            err(DifferentialPrivacyServerSideFixedClipping::new(fedavg(), 1.0, 1.0, 0)),
            "The number of sampled clients should be a positive value."
        );
        let adaptive =
            |sigma: f64, m: usize, p: AdaptiveClippingParams| match DifferentialPrivacyServerSideAdaptiveClipping::new(
                fedavg(),
                sigma,
                m,
                p,
                &mut Logger::new(),
            ) {
                Err(StrategyError::InvalidParameter(reason)) => reason,
                _ => panic!("expected an error"),
            };
        let d = AdaptiveClippingParams::default();
        assert_eq!(
            adaptive(
                0.0,
                5,
                AdaptiveClippingParams {
                    initial_clipping_norm: 0.0,
                    ..d
                }
            ),
            "The initial clipping norm should be a positive value."
        );
        assert_eq!(
            adaptive(
                0.0,
                5,
                AdaptiveClippingParams {
                    target_clipped_quantile: 1.5,
                    ..d
                }
            ),
            "The target clipped quantile must be in [0, 1]."
        );
        assert_eq!(
            adaptive(0.0, 5, AdaptiveClippingParams { clip_norm_lr: 0.0, ..d }),
            "The learning rate must be positive."
        );
        assert_eq!(
            adaptive(
                0.0,
                5,
                AdaptiveClippingParams {
                    clipped_count_stddev: Some(-1.0),
                    ..d
                }
            ),
            "The `clipped_count_stddev` must be non-negative."
        );
        assert_eq!(
            adaptive(1.0, 10, d),
            "If not specified, `clipped_count_stddev` is set to `num_sampled_clients`/20 by default. This value (0.5) \
             is too low to achieve the desired effective `noise_multiplier` (1.0). Consider increasing \
             `clipped_count_stddev` or decreasing `noise_multiplier`."
        );
    }

    #[test]
    fn effective_noise_multiplier_matches_the_spec_example() {
        let mut log = Logger::new();
        let (stddev, effective) = compute_adaptive_noise_params(0.3, 10, None, &mut log).unwrap();
        // Flower (glibc's pow) prints 0.3144854510165755; floret's pinned
        // pow (`crate::math`, within 1 ULP) gives the neighbouring double.
        assert_eq!((stddev, effective), (0.5, 0.31448545101657543));
        assert!(log.lines().is_empty());
        // Flower: 2.2941573387056176 (the same 1-ULP difference).
        compute_adaptive_noise_params(0.9, 10, None, &mut log).unwrap();
        assert_eq!(
            lines_at(&log, Level::Warning),
            [
                "A significant amount of noise (2.294157338705618) has to be added. Consider increasing \
              `clipped_count_stddev` or `num_sampled_clients`."
            ]
        );
    }

    #[test]
    fn summary_snapshots() {
        let fixed = DifferentialPrivacyServerSideFixedClipping::new(fedavg(), 0.5, 1.0, 5).unwrap();
        assert_eq!(fixed.name(), "DifferentialPrivacyServerSideFixedClipping");
        let mut want: Vec<String> = [
            "\t├──> DP settings:",
            "\t│\t├── Noise multiplier: 0.5",
            "\t│\t└── Clipping norm: 1.0",
        ]
        .map(String::from)
        .to_vec();
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&fixed), want);
        let client = DifferentialPrivacyClientSideFixedClipping::new(fedavg(), 0.5, 1.0, 5).unwrap();
        assert_eq!(client.name(), "DifferentialPrivacyClientSideFixedClipping");
        assert_eq!(summary_lines(&client), want);

        let mut log = Logger::new();
        let adaptive = DifferentialPrivacyClientSideAdaptiveClipping::new(
            fedavg(),
            0.3,
            10,
            AdaptiveClippingParams::default(),
            &mut log,
        )
        .unwrap();
        assert_eq!(adaptive.name(), "DifferentialPrivacyClientSideAdaptiveClipping");
        let mut want: Vec<String> = [
            "\t├──> DP settings:",
            "\t│\t├── Noise multiplier: 0.31448545101657543",
            "\t│\t├── Clipping norm: 0.1",
            "\t│\t├── Target clipped quantile: 0.5",
            "\t│\t└── Clip norm learning rate: 0.2",
        ]
        .map(String::from)
        .to_vec();
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&adaptive), want);
        let server = DifferentialPrivacyServerSideAdaptiveClipping::new(
            fedavg(),
            0.3,
            10,
            AdaptiveClippingParams::default(),
            &mut log,
        )
        .unwrap();
        assert_eq!(server.name(), "DifferentialPrivacyServerSideAdaptiveClipping");
        assert_eq!(summary_lines(&server), want);
    }
}
