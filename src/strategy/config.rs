//! Building a strategy (and its optional DP wrapper) from a run
//! configuration, and the parameter table that documents it.
//!
//! Key scheme (flattened TOML keys of `[tool.flwr.app.config]` plus
//! `--run-config` overrides):
//! - FedAvg's base parameters are Flower's app-config keys at top level:
//!   `fraction-train`, `fraction-evaluate`, `min-train-nodes`,
//!   `min-evaluate-nodes`, `min-available-nodes`, and optionally
//!   `weighted-by-key`, `arrayrecord-key`, `configrecord-key`. Other
//!   top-level keys belong to the app and are ignored here.
//! - `strategy.name` picks the strategy by Flower's exact class name
//!   (default `FedAvg`); its own parameters are
//!   `strategy.<kebab-case Flower parameter>`, e.g.
//!   `strategy.server-momentum`.
//! - `dp.mode` (`server-fixed`, `client-fixed`, `server-adaptive`,
//!   `client-adaptive`) wraps the strategy in a DP wrapper whose parameters
//!   are `dp.<kebab-case Flower parameter>`.
//!
//! Every `strategy.*` and `dp.*` key must apply to the chosen strategy or DP
//! mode; a wrong key, a wrong type (ints are accepted where floats are
//! expected), an out-of-range value or a missing required parameter is one
//! clear `StrategyError::InvalidParameter` line. [`describe`] is the single
//! table the builder reads defaults and types from, and
//! `builtin::strategies_markdown` renders it (with the client mods' keys)
//! for `docs/STRATEGIES.md`, so the documentation cannot drift from the code.
//!
//! This module never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::params::{describe_scalar, ParamDefault, ParamDoc, ParamKind};
use crate::pyfmt::float_repr;
use crate::records::{Scalar, UserConfig};
use crate::strategy::bulyan::Bulyan;
use crate::strategy::dp::{
    AdaptiveClippingParams, DifferentialPrivacyClientSideAdaptiveClipping, DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping, DifferentialPrivacyServerSideFixedClipping,
};
use crate::strategy::fedavgm::FedAvgM;
use crate::strategy::fedmedian::FedMedian;
use crate::strategy::fedopt::{FedAdagrad, FedAdagradParams, FedAdam, FedOptParams, FedYogi};
use crate::strategy::fedprox::FedProx;
use crate::strategy::fedtrimmedavg::FedTrimmedAvg;
use crate::strategy::krum::{Krum, MultiKrum};
use crate::strategy::qfedavg::QFedAvg;
use crate::strategy::{FedAvg, FedAvgParams, Strategy, StrategyError};

/// The strategies `strategy.name` accepts (Flower's class names).
const STRATEGY_NAMES: &[&str] = &[
    "FedAvg",
    "FedAvgM",
    "FedProx",
    "FedAdagrad",
    "FedAdam",
    "FedYogi",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "Bulyan",
    "QFedAvg",
];

/// The values `dp.mode` accepts, with the Flower wrapper each selects.
const DP_MODES: &[(&str, &str)] = &[
    ("server-fixed", "DifferentialPrivacyServerSideFixedClipping"),
    ("client-fixed", "DifferentialPrivacyClientSideFixedClipping"),
    ("server-adaptive", "DifferentialPrivacyServerSideAdaptiveClipping"),
    ("client-adaptive", "DifferentialPrivacyClientSideAdaptiveClipping"),
];

pub fn strategy_names() -> &'static [&'static str] {
    STRATEGY_NAMES
}

/// `dp.mode` values.
/// Each `dp.mode` value with the Flower class it stands for.
pub fn dp_mode_classes() -> &'static [(&'static str, &'static str)] {
    DP_MODES
}

pub fn dp_modes() -> Vec<&'static str> {
    DP_MODES.iter().map(|(mode, _)| *mode).collect()
}

const ALL: &[&str] = &["*"];
const FEDOPT: &[&str] = &["FedAdagrad", "FedAdam", "FedYogi"];
const ADAM_YOGI: &[&str] = &["FedAdam", "FedYogi"];
const KRUMS: &[&str] = &["Krum", "MultiKrum", "Bulyan"];
const DP_ALL: &[&str] = &["server-fixed", "client-fixed", "server-adaptive", "client-adaptive"];
const DP_FIXED: &[&str] = &["server-fixed", "client-fixed"];
const DP_ADAPTIVE: &[&str] = &["server-adaptive", "client-adaptive"];

const fn p(
    key: &'static str,
    flower_name: &'static str,
    applies_to: &'static [&'static str],
    kind: ParamKind,
    default: ParamDefault,
    doc: &'static str,
) -> ParamDoc {
    ParamDoc {
        key,
        flower_name,
        applies_to,
        kind,
        default,
        doc,
    }
}

use ParamDefault::{Required, Unset};
use ParamKind::{Float, Int, Str};

const PARAMS: &[ParamDoc] = &[
    p("strategy.name", "(class)", ALL, Str, ParamDefault::Str("FedAvg"), "The strategy: one of Flower's class names listed below (case-sensitive)."),
    p("fraction-train", "fraction_train", ALL, Float, ParamDefault::Float(1.0), "Fraction of the connected nodes sampled for training, in [0, 1]; 0 skips training."),
    p("fraction-evaluate", "fraction_evaluate", ALL, Float, ParamDefault::Float(1.0), "Fraction of the connected nodes sampled for evaluation, in [0, 1]; 0 skips evaluation."),
    p("min-train-nodes", "min_train_nodes", ALL, Int, ParamDefault::Int(2), "Minimum number of nodes sampled for training."),
    p("min-evaluate-nodes", "min_evaluate_nodes", ALL, Int, ParamDefault::Int(2), "Minimum number of nodes sampled for evaluation."),
    p("min-available-nodes", "min_available_nodes", ALL, Int, ParamDefault::Int(2), "Minimum number of connected nodes."),
    p("weighted-by-key", "weighted_by_key", ALL, Str, ParamDefault::Str("num-examples"), "MetricRecord key whose value weighs each reply."),
    p("arrayrecord-key", "arrayrecord_key", ALL, Str, ParamDefault::Str("arrays"), "RecordDict key of the ArrayRecord sent to the nodes."),
    p("configrecord-key", "configrecord_key", ALL, Str, ParamDefault::Str("config"), "RecordDict key of the ConfigRecord sent to the nodes."),
    p("strategy.server-learning-rate", "server_learning_rate", &["FedAvgM"], Float, ParamDefault::Float(1.0), "Server-side learning rate."),
    p("strategy.server-momentum", "server_momentum", &["FedAvgM"], Float, ParamDefault::Float(0.0), "Server-side momentum; the server step runs when it is not 0 or the learning rate is not 1."),
    p("strategy.proximal-mu", "proximal_mu", &["FedProx"], Float, ParamDefault::Float(0.0), "Weight of the proximal term, sent to the nodes as `proximal-mu`."),
    p("strategy.eta", "eta", &["FedAdagrad", "FedAdam"], Float, ParamDefault::Float(0.1), "Server-side learning rate."),
    p("strategy.eta", "eta", &["FedYogi"], Float, ParamDefault::Float(0.01), "Server-side learning rate."),
    p("strategy.eta-l", "eta_l", &["FedAdagrad", "FedAdam"], Float, ParamDefault::Float(0.1), "Client-side learning rate (only shown in the summary)."),
    p("strategy.eta-l", "eta_l", &["FedYogi"], Float, ParamDefault::Float(0.0316), "Client-side learning rate (only shown in the summary)."),
    p("strategy.beta-1", "beta_1", ADAM_YOGI, Float, ParamDefault::Float(0.9), "First-moment decay."),
    p("strategy.beta-2", "beta_2", ADAM_YOGI, Float, ParamDefault::Float(0.99), "Second-moment decay."),
    p("strategy.tau", "tau", FEDOPT, Float, ParamDefault::Float(1e-3), "Degree of adaptivity."),
    p("strategy.beta", "beta", &["FedTrimmedAvg"], Float, ParamDefault::Float(0.2), "Fraction cut from each end, in [0, 0.5)."),
    p("strategy.num-malicious-nodes", "num_malicious_nodes", KRUMS, Int, ParamDefault::Int(0), "Assumed number of malicious nodes (f)."),
    p("strategy.num-nodes-to-select", "num_nodes_to_select", &["MultiKrum"], Int, ParamDefault::Int(1), "Number of replies kept and averaged (at least 1)."),
    p("strategy.client-learning-rate", "client_learning_rate", &["QFedAvg"], Float, Required, "The clients' learning rate (positive); L = 1/client-learning-rate."),
    p("strategy.q", "q", &["QFedAvg"], Float, ParamDefault::Float(0.1), "Fairness exponent; 0 is the plain mean."),
    p("strategy.train-loss-key", "train_loss_key", &["QFedAvg"], Str, ParamDefault::Str("train_loss"), "MetricRecord key of each reply's training loss."),
    p("dp.mode", "(class)", DP_ALL, Str, Unset, "Wraps the strategy in a central-DP wrapper: server-fixed, client-fixed, server-adaptive or client-adaptive. Unset: no DP."),
    p("dp.noise-multiplier", "noise_multiplier", DP_ALL, Float, Required, "Noise multiplier σ (non-negative)."),
    p("dp.clipping-norm", "clipping_norm", DP_FIXED, Float, Required, "Clipping norm C (positive)."),
    p("dp.num-sampled-clients", "num_sampled_clients", DP_ALL, Int, Required, "Number of nodes sampled per round (positive); the noise's std is σ·C/m."),
    p("dp.initial-clipping-norm", "initial_clipping_norm", DP_ADAPTIVE, Float, ParamDefault::Float(0.1), "Initial clipping norm (positive)."),
    p("dp.target-clipped-quantile", "target_clipped_quantile", DP_ADAPTIVE, Float, ParamDefault::Float(0.5), "Target fraction of clipped updates, in [0, 1]."),
    p("dp.clip-norm-lr", "clip_norm_lr", DP_ADAPTIVE, Float, ParamDefault::Float(0.2), "Learning rate of the clipping norm (positive)."),
    p("dp.clipped-count-stddev", "clipped_count_stddev", DP_ADAPTIVE, Float, Unset, "Std of the noise on the clipped count (non-negative); unset: num-sampled-clients/20 when the noise multiplier is positive, else 0."),
];

/// Every parameter [`build_strategy`] reads, in documentation order.
pub fn describe() -> Vec<ParamDoc> {
    PARAMS.to_vec()
}

fn invalid<T>(reason: String) -> Result<T, StrategyError> {
    Err(StrategyError::InvalidParameter(reason))
}

/// Reads the parameters that apply to one strategy or DP mode.
struct Reader<'a> {
    config: &'a UserConfig,
    /// A strategy name or a `dp.mode` value.
    target: &'a str,
}

impl Reader<'_> {
    fn doc(&self, key: &str) -> &'static ParamDoc {
        PARAMS
            .iter()
            .find(|d| d.key == key && (d.applies_to.contains(&self.target) || d.applies_to == ALL))
            .unwrap_or_else(|| panic!("`{key}` is not documented for {}", self.target))
    }

    fn raw(&self, key: &str, kind: ParamKind) -> Result<Option<Scalar>, StrategyError> {
        let Some(value) = self.config.get(key) else {
            return Ok(None);
        };
        let ok = matches!(
            (kind, value),
            (ParamKind::Float, Scalar::Float(_) | Scalar::Int(_))
                | (ParamKind::Int, Scalar::Int(_))
                | (ParamKind::Str, Scalar::Str(_))
        );
        if !ok {
            return invalid(format!(
                "`{key}` must be {}, found {}",
                article(kind),
                describe_scalar(value)
            ));
        }
        Ok(Some(value.clone()))
    }

    fn missing(&self, key: &str) -> StrategyError {
        let within = if key.starts_with("dp.") {
            format!("when `dp.mode` is \"{}\"", self.target)
        } else {
            format!("for {}", self.target)
        };
        StrategyError::InvalidParameter(format!("`{key}` is required {within}"))
    }

    /// A float, `None` when unset without a default.
    fn float_opt(&self, key: &str) -> Result<Option<f64>, StrategyError> {
        let doc = self.doc(key);
        let value = match self.raw(key, ParamKind::Float)? {
            Some(value) => value.as_f64().expect("checked numeric"),
            None => match doc.default {
                ParamDefault::Float(f) => f,
                ParamDefault::Required => return Err(self.missing(key)),
                ParamDefault::Unset => return Ok(None),
                other => unreachable!("float default {other:?}"),
            },
        };
        if !value.is_finite() {
            return invalid(format!("`{key}` must be a finite number, got {}", float_repr(value)));
        }
        Ok(Some(value))
    }

    fn float(&self, key: &str) -> Result<f64, StrategyError> {
        self.float_opt(key)?.ok_or_else(|| self.missing(key))
    }

    fn int(&self, key: &str) -> Result<i64, StrategyError> {
        match self.raw(key, ParamKind::Int)? {
            Some(value) => Ok(value.as_i64().expect("checked int")),
            None => match self.doc(key).default {
                ParamDefault::Int(i) => Ok(i),
                ParamDefault::Required => Err(self.missing(key)),
                other => unreachable!("int default {other:?}"),
            },
        }
    }

    /// An int that must be at least `min`, as a `usize`.
    fn count(&self, key: &str, min: i64) -> Result<usize, StrategyError> {
        let value = self.int(key)?;
        if value < min {
            return invalid(format!("`{key}` must be at least {min}, got {value}"));
        }
        Ok(value as usize)
    }

    fn string(&self, key: &str) -> Result<String, StrategyError> {
        match self.raw(key, ParamKind::Str)? {
            Some(Scalar::Str(s)) => Ok(s),
            Some(_) => unreachable!("checked str"),
            None => match self.doc(key).default {
                ParamDefault::Str(s) => Ok(s.to_string()),
                other => unreachable!("str default {other:?}"),
            },
        }
    }

    fn fraction(&self, key: &str) -> Result<f64, StrategyError> {
        let value = self.float(key)?;
        if !(0.0..=1.0).contains(&value) {
            return invalid(format!("`{key}` must be in [0, 1], got {}", float_repr(value)));
        }
        Ok(value)
    }
}

fn article(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Float => "a float (or an int)",
        ParamKind::Int => "an int",
        ParamKind::Str => "a string",
    }
}

/// The keys of the table that apply to `target` within a namespace.
fn valid_keys(prefix: &str, target: &str) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = PARAMS
        .iter()
        .filter(|d| d.key.starts_with(prefix) && (d.applies_to.contains(&target) || d.applies_to == ALL))
        .map(|d| d.key)
        .collect();
    keys.dedup();
    keys
}

/// Rejects `prefix*` keys of the configuration that do not apply to `target`.
fn check_keys(config: &UserConfig, prefix: &str, target: &str, extra: &[&'static str]) -> Result<(), StrategyError> {
    let mut valid = valid_keys(prefix, target);
    valid.extend_from_slice(extra);
    for key in config.keys().filter(|k| k.starts_with(prefix)) {
        if valid.contains(&key.as_str()) {
            continue;
        }
        let known_elsewhere = PARAMS.iter().any(|d| d.key == key);
        let what = if known_elsewhere {
            "does not apply to"
        } else {
            "is not a parameter of"
        };
        return invalid(format!("`{key}` {what} {target}; valid keys: {}", valid.join(", ")));
    }
    Ok(())
}

fn strategy_name(config: &UserConfig) -> Result<&'static str, StrategyError> {
    let name = match config.get("strategy.name") {
        None => return Ok("FedAvg"),
        Some(Scalar::Str(name)) => name,
        Some(other) => {
            return invalid(format!(
                "`strategy.name` must be a string, found {}",
                describe_scalar(other)
            ))
        }
    };
    if let Some(known) = STRATEGY_NAMES.iter().find(|n| **n == name) {
        return Ok(known);
    }
    let hint = STRATEGY_NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    invalid(format!(
        "unknown strategy `{}` in `strategy.name`{hint}; valid names: {}",
        crate::app::clip(name),
        STRATEGY_NAMES.join(", ")
    ))
}

/// Prefixes a constructor's (Flower) message with what was being built.
fn context(what: String) -> impl Fn(StrategyError) -> StrategyError {
    move |error| match error {
        StrategyError::InvalidParameter(reason) => StrategyError::InvalidParameter(format!("{what}: {reason}")),
        other => other,
    }
}

/// Builds the strategy the run configuration describes (scheme in the
/// module documentation). Constructor warnings go to `log`.
pub fn build_strategy(config: &UserConfig, log: &mut Logger) -> Result<Box<dyn Strategy>, StrategyError> {
    let name = strategy_name(config)?;
    check_keys(config, "strategy.", name, &[])?;
    let dp_mode = match config.get("dp.mode") {
        None => None,
        Some(Scalar::Str(mode)) => match DP_MODES.iter().find(|(m, _)| m == mode) {
            Some((mode, _)) => Some(*mode),
            None => {
                return invalid(format!(
                    "unknown `dp.mode` \"{}\"; valid modes: {}",
                    crate::app::clip(mode),
                    dp_modes().join(", ")
                ));
            }
        },
        Some(other) => return invalid(format!("`dp.mode` must be a string, found {}", describe_scalar(other))),
    };
    match dp_mode {
        Some(mode) => check_keys(config, "dp.", mode, &[])?,
        None => {
            if let Some(key) = config.keys().find(|k| k.starts_with("dp.")) {
                return invalid(format!(
                    "`{key}` is set but `dp.mode` is not; set `dp.mode` to one of: {}",
                    dp_modes().join(", ")
                ));
            }
        }
    }

    let r = Reader { config, target: name };
    let base = FedAvgParams {
        fraction_train: r.fraction("fraction-train")?,
        fraction_evaluate: r.fraction("fraction-evaluate")?,
        min_train_nodes: r.count("min-train-nodes", 0)?,
        min_evaluate_nodes: r.count("min-evaluate-nodes", 0)?,
        min_available_nodes: r.count("min-available-nodes", 0)?,
        weighted_by_key: r.string("weighted-by-key")?,
        arrayrecord_key: r.string("arrayrecord-key")?,
        configrecord_key: r.string("configrecord-key")?,
        ..FedAvgParams::default()
    };
    let fedopt = || -> Result<FedOptParams, StrategyError> {
        Ok(FedOptParams {
            eta: r.float("strategy.eta")?,
            eta_l: r.float("strategy.eta-l")?,
            beta_1: r.float("strategy.beta-1")?,
            beta_2: r.float("strategy.beta-2")?,
            tau: r.float("strategy.tau")?,
        })
    };
    let ctx = context(format!("strategy {name}"));
    let strategy: Box<dyn Strategy> = match name {
        "FedAvg" => Box::new(FedAvg::new(base, log)),
        "FedAvgM" => Box::new(FedAvgM::new(
            base,
            r.float("strategy.server-learning-rate")?,
            r.float("strategy.server-momentum")?,
            log,
        )),
        "FedProx" => Box::new(FedProx::new(base, r.float("strategy.proximal-mu")?, log)),
        "FedAdagrad" => Box::new(FedAdagrad::new(
            base,
            FedAdagradParams {
                eta: r.float("strategy.eta")?,
                eta_l: r.float("strategy.eta-l")?,
                tau: r.float("strategy.tau")?,
            },
            log,
        )),
        "FedAdam" => Box::new(FedAdam::new(base, fedopt()?, log)),
        "FedYogi" => Box::new(FedYogi::new(base, fedopt()?, log)),
        "FedMedian" => Box::new(FedMedian::new(base, log)),
        "FedTrimmedAvg" => Box::new(FedTrimmedAvg::new(base, r.float("strategy.beta")?, log).map_err(ctx)?),
        "Krum" => Box::new(Krum::new(base, r.count("strategy.num-malicious-nodes", 0)?, log)),
        "MultiKrum" => Box::new(MultiKrum::new(
            base,
            r.count("strategy.num-malicious-nodes", 0)?,
            r.count("strategy.num-nodes-to-select", 1)?,
            log,
        )),
        "Bulyan" => Box::new(Bulyan::new(base, r.count("strategy.num-malicious-nodes", 0)?, log)),
        "QFedAvg" => Box::new(
            QFedAvg::new(
                base,
                r.float("strategy.client-learning-rate")?,
                r.float("strategy.q")?,
                r.string("strategy.train-loss-key")?,
                log,
            )
            .map_err(ctx)?,
        ),
        _ => unreachable!("names checked by strategy_name"),
    };
    let Some(mode) = dp_mode else {
        return Ok(strategy);
    };
    wrap_dp(strategy, config, mode, log)
}

fn wrap_dp(
    strategy: Box<dyn Strategy>,
    config: &UserConfig,
    mode: &'static str,
    log: &mut Logger,
) -> Result<Box<dyn Strategy>, StrategyError> {
    let r = Reader { config, target: mode };
    let ctx = context(format!("dp.mode \"{mode}\""));
    let noise_multiplier = r.float("dp.noise-multiplier")?;
    let num_sampled_clients = r.int("dp.num-sampled-clients")?;
    if num_sampled_clients <= 0 {
        return Err(ctx(StrategyError::InvalidParameter(
            "The number of sampled clients should be a positive value.".into(),
        )));
    }
    let m = num_sampled_clients as usize;
    let adaptive = || -> Result<AdaptiveClippingParams, StrategyError> {
        Ok(AdaptiveClippingParams {
            initial_clipping_norm: r.float("dp.initial-clipping-norm")?,
            target_clipped_quantile: r.float("dp.target-clipped-quantile")?,
            clip_norm_lr: r.float("dp.clip-norm-lr")?,
            clipped_count_stddev: r.float_opt("dp.clipped-count-stddev")?,
        })
    };
    let wrapped: Box<dyn Strategy> = match mode {
        "server-fixed" => Box::new(
            DifferentialPrivacyServerSideFixedClipping::new(
                strategy,
                noise_multiplier,
                r.float("dp.clipping-norm")?,
                m,
            )
            .map_err(ctx)?,
        ),
        "client-fixed" => Box::new(
            DifferentialPrivacyClientSideFixedClipping::new(
                strategy,
                noise_multiplier,
                r.float("dp.clipping-norm")?,
                m,
            )
            .map_err(ctx)?,
        ),
        "server-adaptive" => Box::new(
            DifferentialPrivacyServerSideAdaptiveClipping::new(strategy, noise_multiplier, m, adaptive()?, log)
                .map_err(ctx)?,
        ),
        "client-adaptive" => Box::new(
            DifferentialPrivacyClientSideAdaptiveClipping::new(strategy, noise_multiplier, m, adaptive()?, log)
                .map_err(ctx)?,
        ),
        _ => unreachable!("modes checked by build_strategy"),
    };
    Ok(wrapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flwr_log::Level;
    use crate::strategy::testkit::*;

    fn config(pairs: &[(&str, Scalar)]) -> UserConfig {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn s(text: &str) -> Scalar {
        Scalar::Str(text.into())
    }

    fn build(pairs: &[(&str, Scalar)]) -> Result<Box<dyn Strategy>, StrategyError> {
        build_strategy(&config(pairs), &mut Logger::new())
    }

    fn error(pairs: &[(&str, Scalar)]) -> String {
        match build(pairs) {
            Err(StrategyError::InvalidParameter(reason)) => reason,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(s) => panic!("built {}", s.name()),
        }
    }

    #[test]
    fn every_strategy_builds_with_defaults_and_names_itself() {
        for name in strategy_names() {
            let mut pairs = vec![("strategy.name", s(name))];
            if *name == "QFedAvg" {
                pairs.push(("strategy.client-learning-rate", Scalar::Float(0.1)));
            }
            assert_eq!(build(&pairs).unwrap().name(), *name);
        }
        assert_eq!(build(&[]).unwrap().name(), "FedAvg");
    }

    #[test]
    fn parameters_reach_the_strategy() {
        let strategy = build(&[
            ("strategy.name", s("FedAvgM")),
            ("strategy.server-momentum", Scalar::Int(1)),
            ("fraction-train", Scalar::Float(0.5)),
            ("min-available-nodes", Scalar::Int(4)),
            ("num-server-rounds", Scalar::Int(3)),
        ])
        .unwrap();
        let lines = summary_lines(strategy.as_ref());
        assert_eq!(lines[3], "\t│\t└── Server Momentum: 1.0");
        assert_eq!(lines[5], "\t│\t├──Fraction: train (0.50) | evaluate ( 1.00)");
        assert_eq!(lines[7], "\t│\t└──Minimum available nodes: 4");
        let yogi = build(&[("strategy.name", s("FedYogi")), ("strategy.tau", Scalar::Float(1e-5))]).unwrap();
        let lines = summary_lines(yogi.as_ref());
        assert_eq!(lines[1], "\t│\t├── eta (0.01) | eta_l (0.0316)");
        assert_eq!(lines[3], "\t│\t└── tau (1e-05)");
    }

    #[test]
    fn dp_wraps_the_strategy() {
        let mut log = Logger::new();
        let strategy = build_strategy(
            &config(&[
                ("strategy.name", s("FedProx")),
                ("strategy.proximal-mu", Scalar::Float(0.1)),
                ("dp.mode", s("server-adaptive")),
                ("dp.noise-multiplier", Scalar::Float(0.3)),
                ("dp.num-sampled-clients", Scalar::Int(10)),
            ]),
            &mut log,
        )
        .unwrap();
        assert_eq!(strategy.name(), "DifferentialPrivacyServerSideAdaptiveClipping");
        let lines = summary_lines(strategy.as_ref());
        // Flower prints 0.3144854510165755 (glibc's pow; see dp.rs).
        assert_eq!(lines[1], "\t│\t├── Noise multiplier: 0.31448545101657543");
        assert_eq!(lines[5], "\t├──> FedProx settings:");
        for (mode, class) in DP_MODES {
            let mut pairs = vec![
                ("dp.mode", s(mode)),
                ("dp.noise-multiplier", Scalar::Float(0.0)),
                ("dp.num-sampled-clients", Scalar::Int(2)),
            ];
            if mode.ends_with("fixed") {
                pairs.push(("dp.clipping-norm", Scalar::Float(1.0)));
            }
            assert_eq!(build(&pairs).unwrap().name(), *class);
        }
    }

    #[test]
    fn constructor_warnings_are_logged() {
        let mut log = Logger::new();
        build_strategy(
            &config(&[("strategy.name", s("FedProx")), ("fraction-evaluate", Scalar::Int(0))]),
            &mut log,
        )
        .unwrap();
        assert_eq!(
            lines_at(&log, Level::Warning),
            [
                "fraction_evaluate is set to 0.0. Federated evaluation will be skipped.",
                "FedProx initialized with `proximal_mu=0.0`. This makes the strategy equivalent to FedAvg."
            ]
        );
    }

    #[test]
    fn unknown_names_and_keys() {
        assert_eq!(
            error(&[("strategy.name", s("fedavg"))]),
            "unknown strategy `fedavg` in `strategy.name` (did you mean `FedAvg`?); valid names: FedAvg, FedAvgM, \
             FedProx, FedAdagrad, FedAdam, FedYogi, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan, QFedAvg"
        );
        assert!(error(&[("strategy.name", s("FedXgbCyclic"))]).starts_with("unknown strategy `FedXgbCyclic`"));
        assert_eq!(
            error(&[
                ("strategy.name", s("FedAvgM")),
                ("strategy.momentum", Scalar::Float(0.9))
            ]),
            "`strategy.momentum` is not a parameter of FedAvgM; valid keys: strategy.name, \
             strategy.server-learning-rate, strategy.server-momentum"
        );
        assert_eq!(
            error(&[("strategy.proximal-mu", Scalar::Float(0.9))]),
            "`strategy.proximal-mu` does not apply to FedAvg; valid keys: strategy.name"
        );
        assert_eq!(
            error(&[("dp.mode", s("server-fixed")), ("dp.clip-norm-lr", Scalar::Float(0.1))]),
            "`dp.clip-norm-lr` does not apply to server-fixed; valid keys: dp.mode, dp.noise-multiplier, \
             dp.clipping-norm, dp.num-sampled-clients"
        );
        assert_eq!(
            error(&[("dp.noise-multiplier", Scalar::Float(0.1))]),
            "`dp.noise-multiplier` is set but `dp.mode` is not; set `dp.mode` to one of: server-fixed, client-fixed, \
             server-adaptive, client-adaptive"
        );
        assert_eq!(
            error(&[("dp.mode", s("central"))]),
            "unknown `dp.mode` \"central\"; valid modes: server-fixed, client-fixed, server-adaptive, client-adaptive"
        );
    }

    #[test]
    fn wrong_types() {
        assert_eq!(
            error(&[("strategy.name", s("FedProx")), ("strategy.proximal-mu", s("0.1"))]),
            "`strategy.proximal-mu` must be a float (or an int), found str (\"0.1\")"
        );
        assert_eq!(
            error(&[("min-train-nodes", Scalar::Float(2.0))]),
            "`min-train-nodes` must be an int, found float (2.0)"
        );
        assert_eq!(
            error(&[("weighted-by-key", Scalar::Bool(true))]),
            "`weighted-by-key` must be a string, found bool (true)"
        );
        assert_eq!(
            error(&[("strategy.name", Scalar::Int(1))]),
            "`strategy.name` must be a string, found int (1)"
        );
        assert_eq!(
            error(&[("dp.mode", Scalar::Bool(false))]),
            "`dp.mode` must be a string, found bool (false)"
        );
    }

    #[test]
    fn out_of_range_values() {
        assert_eq!(
            error(&[("fraction-train", Scalar::Float(1.5))]),
            "`fraction-train` must be in [0, 1], got 1.5"
        );
        assert_eq!(
            error(&[("min-evaluate-nodes", Scalar::Int(-1))]),
            "`min-evaluate-nodes` must be at least 0, got -1"
        );
        assert_eq!(
            error(&[
                ("strategy.name", s("FedTrimmedAvg")),
                ("strategy.beta", Scalar::Float(0.5))
            ]),
            "strategy FedTrimmedAvg: `beta` must be in the range [0, 0.5)."
        );
        assert_eq!(
            error(&[
                ("strategy.name", s("MultiKrum")),
                ("strategy.num-nodes-to-select", Scalar::Int(0))
            ]),
            "`strategy.num-nodes-to-select` must be at least 1, got 0"
        );
        assert!(error(&[
            ("strategy.name", s("QFedAvg")),
            ("strategy.client-learning-rate", Scalar::Int(0))
        ])
        .starts_with("strategy QFedAvg: `client_learning_rate` must be a positive number"));
        assert_eq!(
            error(&[
                ("strategy.name", s("FedAdam")),
                ("strategy.eta", Scalar::Float(f64::INFINITY))
            ]),
            "`strategy.eta` must be a finite number, got inf"
        );
        let fixed = |extra: (&str, Scalar)| {
            error(&[
                ("dp.mode", s("client-fixed")),
                ("dp.noise-multiplier", Scalar::Float(1.0)),
                ("dp.clipping-norm", Scalar::Float(1.0)),
                ("dp.num-sampled-clients", Scalar::Int(5)),
                extra,
            ])
        };
        assert_eq!(
            fixed(("dp.num-sampled-clients", Scalar::Int(0))),
            "dp.mode \"client-fixed\": The number of sampled clients should be a positive value."
        );
        assert_eq!(
            fixed(("dp.clipping-norm", Scalar::Float(0.0))),
            "dp.mode \"client-fixed\": The clipping norm should be a positive value."
        );
        assert_eq!(
            fixed(("dp.noise-multiplier", Scalar::Float(-1.0))),
            "dp.mode \"client-fixed\": The noise multiplier should be a non-negative value."
        );
        assert!(error(&[
            ("dp.mode", s("client-adaptive")),
            ("dp.noise-multiplier", Scalar::Float(1.0)),
            ("dp.num-sampled-clients", Scalar::Int(10)),
        ])
        .starts_with("dp.mode \"client-adaptive\": If not specified, `clipped_count_stddev`"));
    }

    #[test]
    fn missing_required_parameters() {
        assert_eq!(
            error(&[("strategy.name", s("QFedAvg"))]),
            "`strategy.client-learning-rate` is required for QFedAvg"
        );
        assert_eq!(
            error(&[
                ("dp.mode", s("server-fixed")),
                ("dp.noise-multiplier", Scalar::Float(1.0)),
                ("dp.num-sampled-clients", Scalar::Int(5))
            ]),
            "`dp.clipping-norm` is required when `dp.mode` is \"server-fixed\""
        );
        assert_eq!(
            error(&[
                ("dp.mode", s("server-adaptive")),
                ("dp.num-sampled-clients", Scalar::Int(5))
            ]),
            "`dp.noise-multiplier` is required when `dp.mode` is \"server-adaptive\""
        );
        assert_eq!(
            error(&[
                ("dp.mode", s("client-adaptive")),
                ("dp.noise-multiplier", Scalar::Float(1.0))
            ]),
            "`dp.num-sampled-clients` is required when `dp.mode` is \"client-adaptive\""
        );
    }

    /// `docs/STRATEGIES.md` must be what the code renders.
    /// docs/STRATEGIES.md is generated from the code; with
    /// `FLORET_UPDATE_DOCS=1` this test rewrites it instead of comparing.
    #[test]
    fn strategies_md_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/STRATEGIES.md");
        if std::env::var_os("FLORET_UPDATE_DOCS").is_some() {
            std::fs::write(path, crate::builtin::strategies_markdown()).expect("write docs/STRATEGIES.md");
        }
        let committed = std::fs::read_to_string(path).expect("read docs/STRATEGIES.md");
        assert!(
            committed == crate::builtin::strategies_markdown(),
            "docs/STRATEGIES.md is stale: regenerate it with `FLORET_UPDATE_DOCS=1 cargo test strategies_md`"
        );
    }

    #[test]
    fn the_docs_cover_every_key_the_builder_reads() {
        let md = crate::builtin::strategies_markdown();
        for doc in describe() {
            assert!(
                md.contains(&format!("`{}`", doc.key)),
                "{} missing from the docs",
                doc.key
            );
        }
        for name in strategy_names() {
            assert!(md.contains(&format!("## {name}\n")));
        }
        assert!(md.contains("| `strategy.eta` | float | 0.01 | `eta` |"));
        assert!(md.contains("`mods.localdp.delta`"));
        // The example in the docs builds.
        let example = md.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let mut pairs = UserConfig::new();
        for line in example.lines().skip(1) {
            let (key, value) = line.split_once(" = ").unwrap();
            let value = match value.strip_prefix('"') {
                Some(text) => Scalar::Str(text.trim_end_matches('"').into()),
                None if value.contains('.') => Scalar::Float(value.parse().unwrap()),
                None => Scalar::Int(value.parse().unwrap()),
            };
            pairs.insert(key.to_string(), value);
        }
        assert_eq!(
            build_strategy(&pairs, &mut Logger::new()).unwrap().name(),
            "DifferentialPrivacyClientSideFixedClipping"
        );
        assert_eq!(crate::mods::build_mods(&pairs).unwrap().len(), 1);
        // Every documented strategy key is accepted by its strategy.
        for doc in describe()
            .iter()
            .filter(|d| d.key.starts_with("strategy.") && d.key != "strategy.name")
        {
            for name in doc.applies_to {
                let mut pairs = vec![("strategy.name", s(name))];
                let value = match doc.kind {
                    ParamKind::Float => Scalar::Float(0.1),
                    ParamKind::Int => Scalar::Int(1),
                    ParamKind::Str => s("x"),
                };
                pairs.push((doc.key, value));
                if *name == "QFedAvg" && doc.key != "strategy.client-learning-rate" {
                    pairs.push(("strategy.client-learning-rate", Scalar::Float(0.1)));
                }
                assert!(build(&pairs).is_ok(), "{} for {name}", doc.key);
            }
        }
    }
}
