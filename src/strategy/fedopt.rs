//! Adaptive federated optimisation (Reddi et al., 2020): FedAdagrad,
//! FedAdam and FedYogi, sharing a private FedOpt core.
//!
//! Each round, as in Flower: `configure_train` remembers the arrays it
//! sends; `aggregate_train` runs FedAvg, then with `Δ = agg − current`
//! (keys must match as a set, shapes exactly) updates the first moment
//! `m = β1·m + (1−β1)·Δ` (m starts at zeros) and the second moment `v`
//! (starts at zeros):
//! - FedAdagrad: `v = v + Δ²`, `new = current + η·m / (√v + τ)`
//!   (β1 = β2 = 0 fixed);
//! - FedAdam: `v = β2·v + (1−β2)·Δ²`,
//!   `new = current + η_t·m / (√v + τ)` with
//!   `η_t = η·√(1−β2^(t+1)) / (1−β1^(t+1))`, `t` the server round;
//! - FedYogi: `v = v − (1−β2)·Δ²·sign(v − Δ²)`, `new = current + η·m / (√v + τ)`.
//!
//! `η_l` is only shown in the summary. The result has the current arrays'
//! key order.
//!
//! numpy parity (numpy 2 promotion): with float32 models every step stays
//! float32 (Python-float scalars are rounded to float32), except FedAdam's
//! last step: `η_t` is a numpy float64 scalar, so FedAdam returns float64
//! arrays for a float32 model, exactly as Flower does. Integer or mixed
//! dtypes are computed in float64.
//!
//! Differences from Flower, on purpose:
//! - if the arrays' keys or shapes change between rounds, the moment
//!   estimates cannot be carried over and the round fails with
//!   `StrategyError::Aggregation` (Python raises a `KeyError` or broadcasts);
//! - `β^(t+1)` is the C library's `pow` (Rust `powf`); numpy's `np.power`
//!   runs SIMD code on some CPUs (AVX-512) that can differ in the last bit,
//!   which moves FedAdam's results by a few ulps.
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::kernels::{as_f64, is_f32, narrow, np_sign, round_to};
use crate::math;
use crate::pyfmt::format_g;
use crate::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, Ordered, Values};
use crate::strategy::fedavg::setters;
use crate::strategy::{FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// The FedOpt hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FedOptParams {
    /// Server-side learning rate η.
    pub eta: f64,
    /// Client-side learning rate η_l (only logged).
    pub eta_l: f64,
    /// First-moment decay β1.
    pub beta_1: f64,
    /// Second-moment decay β2.
    pub beta_2: f64,
    /// Adaptivity τ.
    pub tau: f64,
}

impl FedOptParams {
    setters! {
        /// Server-side learning rate η.
        eta: f64,
        /// Client-side learning rate η_l (only logged).
        eta_l: f64,
        /// First-moment decay β1.
        beta_1: f64,
        /// Second-moment decay β2.
        beta_2: f64,
        /// Adaptivity τ.
        tau: f64,
    }

    /// FedAdam's defaults.
    pub fn fedadam() -> FedOptParams {
        FedOptParams {
            eta: 1e-1,
            eta_l: 1e-1,
            beta_1: 0.9,
            beta_2: 0.99,
            tau: 1e-3,
        }
    }

    /// FedYogi's defaults.
    pub fn fedyogi() -> FedOptParams {
        FedOptParams {
            eta: 1e-2,
            eta_l: 0.0316,
            beta_1: 0.9,
            beta_2: 0.99,
            tau: 1e-3,
        }
    }
}

/// FedAdagrad's hyper-parameters: Flower's FedAdagrad has no betas (it fixes
/// β1 = β2 = 0), so there are none to pass. `Default` is Flower's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FedAdagradParams {
    /// Server-side learning rate η.
    pub eta: f64,
    /// Client-side learning rate η_l (only logged).
    pub eta_l: f64,
    /// Adaptivity τ.
    pub tau: f64,
}

impl Default for FedAdagradParams {
    fn default() -> FedAdagradParams {
        FedAdagradParams {
            eta: 1e-1,
            eta_l: 1e-1,
            tau: 1e-3,
        }
    }
}

impl FedAdagradParams {
    setters! {
        /// Server-side learning rate η.
        eta: f64,
        /// Client-side learning rate η_l (only logged).
        eta_l: f64,
        /// Adaptivity τ.
        tau: f64,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Adagrad,
    Adam,
    Yogi,
}

/// What FedAdagrad, FedAdam and FedYogi share: FedAvg, the remembered
/// arrays and the moment estimates.
#[derive(Clone, Debug)]
struct FedOptCore {
    base: FedAvg,
    params: FedOptParams,
    rule: Rule,
    current_arrays: Option<ArrayRecord>,
    m_t: Option<Ordered<Values>>,
    v_t: Option<Ordered<Values>>,
}

impl FedOptCore {
    fn new(params: FedAvgParams, opt: FedOptParams, rule: Rule, log: &mut Logger) -> FedOptCore {
        FedOptCore {
            base: FedAvg::new(params, log),
            params: opt,
            rule,
            current_arrays: None,
            m_t: None,
            v_t: None,
        }
    }

    fn summary(&self, log: &mut Logger) {
        let p = &self.params;
        log.info("\t├──> FedOpt settings:");
        log.info(format!(
            "\t│\t├── eta ({}) | eta_l ({})",
            format_g(p.eta, 6),
            format_g(p.eta_l, 6)
        ));
        log.info(format!(
            "\t│\t├── beta_1 ({}) | beta_2 ({})",
            format_g(p.beta_1, 6),
            format_g(p.beta_2, 6)
        ));
        log.info(format!("\t│\t└── tau ({})", format_g(p.tau, 6)));
        self.base.common_summary(log);
    }

    fn configure_train(
        &mut self,
        round: u64,
        arrays: &ArrayRecord,
        config: &mut ConfigRecord,
        grid: &dyn Grid,
        log: &mut Logger,
    ) -> Result<Vec<Message>, StrategyError> {
        self.current_arrays = Some(arrays.clone());
        self.base.configure_train(round, arrays, config, grid, log)
    }

    fn aggregate_train(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        let (aggregated, metrics) = self.base.aggregate_train(round, replies, log)?;
        let Some(aggregated) = aggregated else {
            return Ok((None, metrics));
        };
        let new = self.optimise(round, &aggregated)?;
        if self.rule == Rule::Yogi {
            // As Flower's FedYogi (the next configure_train overwrites it).
            self.current_arrays = Some(new.clone());
        }
        Ok((Some(new), metrics))
    }

    fn optimise(&mut self, round: u64, aggregated: &ArrayRecord) -> Result<ArrayRecord, StrategyError> {
        let fail = |reason: String| Err(StrategyError::Aggregation(reason));
        let Some(current) = &self.current_arrays else {
            return fail(
                "Current arrays not set. Ensure that `configure_train` has been called before aggregation.".into(),
            );
        };
        let same_keys = aggregated.len() == current.len() && aggregated.keys().all(|k| current.contains_key(k));
        if !same_keys {
            return fail(
                "Keys of the aggregated arrays do not match those of the arrays stored at the strategy. \
                 `delta_t = aggregated_arrays - current_arrays` cannot be computed."
                    .into(),
            );
        }
        for (key, array) in aggregated.iter() {
            if current.get(key).map(|c| &c.shape) != Some(&array.shape) {
                return fail(format!(
                    "Shape of aggregated array '{key}' does not match shape of the array under the same key stored \
                     in the strategy. Cannot compute `delta_t`."
                ));
            }
        }
        let moments_match = |moments: &Option<Ordered<Values>>| match moments {
            None => true,
            Some(m) if m.is_empty() => true,
            Some(m) => {
                m.len() == aggregated.len()
                    && aggregated
                        .iter()
                        .all(|(k, a)| m.get(k).map(Values::len) == Some(a.len()))
            }
        };
        if !moments_match(&self.m_t) || !moments_match(&self.v_t) {
            return fail(
                "The arrays' keys or shapes changed since the previous round: FedOpt's moment estimates cannot \
                 be updated."
                    .into(),
            );
        }
        let p = self.params;
        // Adam's bias-corrected step (a numpy float64 scalar in Flower).
        let t = round as f64 + 1.0;
        let eta_norm = p.eta * (1.0 - math::pow(p.beta_2, t)).sqrt() / (1.0 - math::pow(p.beta_1, t));
        let mut m_next = Ordered::new();
        let mut v_next = Ordered::new();
        let mut new_by_key = Ordered::new();
        for (key, agg) in aggregated.iter() {
            let cur = current.get(key).expect("keys checked");
            let m = self.m_t.as_ref().and_then(|m| m.get(key));
            let v = self.v_t.as_ref().and_then(|v| v.get(key));
            let step = update(self.rule, &p, eta_norm, &cur.values, &agg.values, m, v);
            m_next.insert(key, step.m);
            v_next.insert(key, step.v);
            new_by_key.insert(key, Array::new(cur.shape.clone(), step.new));
        }
        self.m_t = Some(m_next);
        self.v_t = Some(v_next);
        // The result follows the current arrays' key order.
        Ok(current
            .keys()
            .map(|k| (k.to_string(), new_by_key.get(k).expect("keys checked").clone()))
            .collect())
    }
}

struct Step {
    m: Values,
    v: Values,
    new: Values,
}

/// One key's FedOpt update, element by element, in numpy's operation order
/// and with numpy's dtype for every intermediate (each `*32` flag says
/// whether that quantity is float32; Python-float scalars take the dtype of
/// the array they meet).
fn update(
    rule: Rule,
    p: &FedOptParams,
    eta_norm: f64,
    current: &Values,
    aggregated: &Values,
    m: Option<&Values>,
    v: Option<&Values>,
) -> Step {
    let (c32, a32) = (is_f32(current), is_f32(aggregated));
    // The moments start as `np.zeros_like(aggregated)`.
    let (m32, v32) = (m.map_or(a32, is_f32), v.map_or(a32, is_f32));
    let d32 = c32 && a32;
    let (m_new32, v_new32) = (m32 && d32, v32 && d32);
    let new32 = rule != Rule::Adam && c32 && m_new32 && v_new32;
    let (current, aggregated) = (as_f64(current), as_f64(aggregated));
    let (m, v) = (m.map(as_f64), v.map(as_f64));
    let r = round_to;
    let beta_1 = r(p.beta_1, m32);
    let one_minus_beta_1 = r(1.0 - p.beta_1, d32);
    let beta_2 = r(p.beta_2, v32);
    let one_minus_beta_2 = r(1.0 - p.beta_2, d32);
    let eta = r(p.eta, m_new32);
    let tau = r(p.tau, v_new32);
    let len = current.len();
    let (mut m_out, mut v_out, mut new) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    for i in 0..len {
        let x = current[i];
        let delta = r(aggregated[i] - x, d32);
        let m_prev = m.as_ref().map_or(0.0, |m| m[i]);
        let v_prev = v.as_ref().map_or(0.0, |v| v[i]);
        let m_i = r(r(beta_1 * m_prev, m32) + r(one_minus_beta_1 * delta, d32), m_new32);
        let delta_sq = r(delta * delta, d32);
        let v_i = match rule {
            Rule::Adagrad => r(v_prev + delta_sq, v_new32),
            Rule::Adam => r(r(beta_2 * v_prev, v32) + r(one_minus_beta_2 * delta_sq, d32), v_new32),
            Rule::Yogi => {
                let sign = np_sign(r(v_prev - delta_sq, v_new32));
                r(v_prev - r(r(one_minus_beta_2 * delta_sq, d32) * sign, v_new32), v_new32)
            }
        };
        let denominator = r(r(v_i.sqrt(), v_new32) + tau, v_new32);
        new.push(match rule {
            // `eta_norm` is a numpy float64: this step is float64.
            Rule::Adam => x + (eta_norm * m_i) / denominator,
            Rule::Adagrad | Rule::Yogi => r(x + r(r(eta * m_i, m_new32) / denominator, m_new32 && v_new32), new32),
        });
        m_out.push(m_i);
        v_out.push(v_i);
    }
    Step {
        m: narrow(m_out, m_new32),
        v: narrow(v_out, v_new32),
        new: narrow(new, new32),
    }
}

macro_rules! fedopt_strategy {
    ($name:ident, $rule:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug)]
        pub struct $name {
            core: FedOptCore,
        }

        impl $name {
            /// The FedAvg base parameters and the optimiser's own.
            pub fn base(&self) -> &FedAvg {
                &self.core.base
            }

            pub fn params(&self) -> &FedOptParams {
                &self.core.params
            }
        }

        impl Strategy for $name {
            fn name(&self) -> String {
                stringify!($name).into()
            }

            fn summary(&self, log: &mut Logger) {
                self.core.summary(log);
            }

            fn configure_train(
                &mut self,
                round: u64,
                arrays: &ArrayRecord,
                config: &mut ConfigRecord,
                grid: &dyn Grid,
                log: &mut Logger,
            ) -> Result<Vec<Message>, StrategyError> {
                self.core.configure_train(round, arrays, config, grid, log)
            }

            fn aggregate_train(
                &mut self,
                round: u64,
                replies: &[Message],
                log: &mut Logger,
            ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
                self.core.aggregate_train(round, replies, log)
            }

            fn configure_evaluate(
                &mut self,
                round: u64,
                arrays: &ArrayRecord,
                config: &mut ConfigRecord,
                grid: &dyn Grid,
                log: &mut Logger,
            ) -> Result<Vec<Message>, StrategyError> {
                self.core
                    .base
                    .configure_evaluate(round, arrays, config, grid, log)
            }

            fn aggregate_evaluate(
                &mut self,
                round: u64,
                replies: &[Message],
                log: &mut Logger,
            ) -> Result<Option<MetricRecord>, StrategyError> {
                self.core.base.aggregate_evaluate(round, replies, log)
            }
        }
    };
}

fedopt_strategy!(
    FedAdagrad,
    Rule::Adagrad,
    "FedAdagrad: adaptive federated optimisation with Adagrad."
);
fedopt_strategy!(
    FedAdam,
    Rule::Adam,
    "FedAdam: adaptive federated optimisation with Adam."
);
fedopt_strategy!(
    FedYogi,
    Rule::Yogi,
    "FedYogi: adaptive federated optimisation with Yogi."
);

impl FedAdagrad {
    /// Flower's FedAdagrad: β1 = β2 = 0. Defaults: [`FedAdagradParams::default`].
    pub fn new(params: FedAvgParams, opt: FedAdagradParams, log: &mut Logger) -> FedAdagrad {
        let opt = FedOptParams {
            eta: opt.eta,
            eta_l: opt.eta_l,
            beta_1: 0.0,
            beta_2: 0.0,
            tau: opt.tau,
        };
        FedAdagrad {
            core: FedOptCore::new(params, opt, Rule::Adagrad, log),
        }
    }
}

impl FedAdam {
    /// Defaults: [`FedOptParams::fedadam`].
    pub fn new(params: FedAvgParams, opt: FedOptParams, log: &mut Logger) -> FedAdam {
        FedAdam {
            core: FedOptCore::new(params, opt, Rule::Adam, log),
        }
    }
}

impl FedYogi {
    /// Defaults: [`FedOptParams::fedyogi`].
    pub fn new(params: FedAvgParams, opt: FedOptParams, log: &mut Logger) -> FedYogi {
        FedYogi {
            core: FedOptCore::new(params, opt, Rule::Yogi, log),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    fn golden_case(strategy: &mut dyn Strategy, case: &str) {
        let mut log = Logger::new();
        let results = run_golden(strategy, 2, 5, &mut log).unwrap();
        assert_golden(case, &results, 1e-15);
    }

    #[test]
    fn golden_fedadagrad() {
        let mut s = FedAdagrad::new(FedAvgParams::default(), FedAdagradParams::default(), &mut Logger::new());
        golden_case(&mut s, "FedAdagrad() 2 rounds");
    }

    #[test]
    fn golden_fedadam() {
        let mut s = FedAdam::new(FedAvgParams::default(), FedOptParams::fedadam(), &mut Logger::new());
        golden_case(&mut s, "FedAdam() 2 rounds");
    }

    #[test]
    fn golden_fedyogi() {
        let mut s = FedYogi::new(FedAvgParams::default(), FedOptParams::fedyogi(), &mut Logger::new());
        golden_case(&mut s, "FedYogi() 2 rounds");
    }

    fn opt_summary(name: &str, eta: &str, beta: &str) -> Vec<String> {
        let mut want: Vec<String> = vec![
            "\t├──> FedOpt settings:".into(),
            format!("\t│\t├── eta ({eta})"),
            format!("\t│\t├── beta_1 ({beta})"),
            "\t│\t└── tau (0.001)".into(),
        ];
        want.extend(default_common_summary());
        assert!(!name.is_empty());
        want
    }

    #[test]
    fn summary_snapshots() {
        let mut log = Logger::new();
        let adagrad = FedAdagrad::new(FedAvgParams::default(), FedAdagradParams::default(), &mut log);
        assert_eq!(adagrad.name(), "FedAdagrad");
        assert_eq!(
            summary_lines(&adagrad),
            opt_summary("FedAdagrad", "0.1) | eta_l (0.1", "0) | beta_2 (0")
        );
        let adam = FedAdam::new(FedAvgParams::default(), FedOptParams::fedadam(), &mut log);
        assert_eq!(adam.name(), "FedAdam");
        assert_eq!(
            summary_lines(&adam),
            opt_summary("FedAdam", "0.1) | eta_l (0.1", "0.9) | beta_2 (0.99")
        );
        let yogi = FedYogi::new(FedAvgParams::default(), FedOptParams::fedyogi(), &mut log);
        assert_eq!(yogi.name(), "FedYogi");
        assert_eq!(
            summary_lines(&yogi),
            opt_summary("FedYogi", "0.01) | eta_l (0.0316", "0.9) | beta_2 (0.99")
        );
    }

    /// Two float32 rounds, compared bit for bit with numpy 2.4.6 running
    /// Flower's formulas on the same inputs (FedAvg then the FedOpt rule).
    /// FedAdam's round 2 starts from its float64 round-1 output, so it
    /// mixes float32 replies and moments with float64 arrays. (The numpy run
    /// computed `β^(t+1)` with `math.pow`: numpy's own `np.power` uses SIMD
    /// code on AVX-512 machines that can differ from libm in the last bit.)
    fn float32_run(strategy: &mut dyn Strategy) -> Vec<Array> {
        let mut log = Logger::new();
        let grid = TestGrid::new(5, 3);
        let mut global = ArrayRecord::new();
        global.insert("x", Array::from_f32(vec![3], vec![0.1, -0.7, 2.5]));
        let mut out = Vec::new();
        for round in 1..=2 {
            let instructions = strategy
                .configure_train(round, &global, &mut ConfigRecord::new(), &grid, &mut log)
                .unwrap();
            let rows = [vec![0.3f32, -0.2, 2.0], vec![0.7, 0.1, 2.9], vec![-0.4, -1.1, 2.4]];
            let contents = f32_contents(&rows, &[3, 5, 7]);
            let (arrays, _) = strategy
                .aggregate_train(round, &replies(&instructions, contents), &mut log)
                .unwrap();
            global = arrays.unwrap();
            out.push(global.get("x").unwrap().clone());
        }
        out
    }

    #[test]
    fn float32_dtype_rules_match_numpy() {
        let mut log = Logger::new();
        let adagrad = float32_run(&mut FedAdagrad::new(
            FedAvgParams::default(),
            FedAdagradParams::default(),
            &mut log,
        ));
        assert!(adagrad.iter().all(|a| a.dtype() == "float32"));
        let yogi = float32_run(&mut FedYogi::new(
            FedAvgParams::default(),
            FedOptParams::fedyogi(),
            &mut log,
        ));
        assert!(yogi.iter().all(|a| a.dtype() == "float32"));
        let adam = float32_run(&mut FedAdam::new(
            FedAvgParams::default(),
            FedOptParams::fedadam(),
            &mut log,
        ));
        assert!(adam.iter().all(|a| a.dtype() == "float64"));
        let bits = |a: &Array| -> Vec<u64> {
            match &a.values {
                Values::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
                Values::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
                _ => unreachable!(),
            }
        };
        let got: Vec<Vec<u64>> = [&adagrad, &yogi, &adam]
            .iter()
            .flat_map(|run| run.iter().map(bits))
            .collect();
        assert_eq!(got, NUMPY_FLOAT32_BITS.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
    }

    /// Bits of numpy's results for `float32_run` (FedAdagrad rounds 1–2,
    /// FedYogi rounds 1–2 as float32, FedAdam rounds 1–2 as float64).
    const NUMPY_FLOAT32_BITS: [[u64; 3]; 6] = [
        [1044345226, 3206135247, 1075448808],
        [1035291305, 3205453394, 1075857431],
        [1037368821, 3207644757, 1075815009],
        [1038045892, 3207428480, 1075782557],
        [4593840898898700850, 13827218744667337265, 4612716382900897519],
        [4591712517495154964, 13826511444407283395, 4612774696869936138],
    ];

    #[test]
    fn aggregation_needs_configure_train_and_matching_keys() {
        let mut log = Logger::new();
        let mut adam = FedAdam::new(FedAvgParams::default(), FedOptParams::fedadam(), &mut log);
        let instructions: Vec<Message> = (0..5).map(instruction).collect();
        let err = adam
            .aggregate_train(1, &replies(&instructions, golden_contents(5)), &mut log)
            .unwrap_err();
        assert_eq!(
            err,
            StrategyError::Aggregation(
                "Current arrays not set. Ensure that `configure_train` has been called before aggregation.".into()
            )
        );
        let grid = TestGrid::new(1, 5);
        let mut other = ArrayRecord::new();
        other.insert("z", Array::from_f64(vec![1], vec![0.0]));
        other.insert("b", Array::from_f64(vec![1], vec![0.0]));
        let instructions = adam
            .configure_train(1, &other, &mut ConfigRecord::new(), &grid, &mut log)
            .unwrap();
        let err = adam
            .aggregate_train(1, &replies(&instructions, golden_contents(5)), &mut log)
            .unwrap_err();
        assert!(matches!(err, StrategyError::Aggregation(ref r) if r.starts_with("Keys of the aggregated arrays")));
    }
}
