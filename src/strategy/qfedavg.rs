//! q-FedAvg (Li et al., 2020, "Fair resource allocation in federated
//! learning"): replies with a higher training loss weigh more.
//!
//! As in Flower: `configure_train` remembers the arrays it sends (`w`).
//! With `L = 1 / client_learning_rate` and, per valid reply k (arrays paired
//! with `w` by position), `ΔW_k = L·(w − w_k)`, `F_k = loss_k + 1e-10`:
//! `δ_k = F_k^q·ΔW_k` and `h_k = q·F_k^(q−1)·‖ΔW_k‖² + L·F_k^q`; the new
//! model is `w − Σδ_k / Σh_k` under `w`'s keys. Unweighted; `q = 0` gives
//! the plain mean. Metrics are FedAvg's weighted average.
//!
//! numpy parity: `ΔW_k` and `δ_k` keep the reply's dtype (float32 stays
//! float32, computed in place as Flower does); `Σh_k` is a numpy float64, so
//! the new model is float64 even for float32 models, exactly as Flower's.
//!
//! Differences from Flower, on purpose:
//! - the constructor rejects a non-positive or non-finite
//!   `client_learning_rate` (Python divides by it and raises
//!   `ZeroDivisionError` at aggregation for 0);
//! - a reply whose arrays differ in count or shape from `w` fails with
//!   `StrategyError::Aggregation` (Python's `zip` would drop arrays, numpy
//!   would broadcast or raise); integer arrays are computed in float64
//!   (numpy raises on the in-place float update).
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::kernels::{as_f64, is_f32, pairwise_sum, round_to};
use crate::math;
use crate::pyfmt::float_repr;
use crate::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, MetricValue, RecordDict, Values};
use crate::strategy::{reply_arrays, FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// q-FedAvg.
#[derive(Clone, Debug)]
pub struct QFedAvg {
    pub base: FedAvg,
    pub client_learning_rate: f64,
    pub q: f64,
    pub train_loss_key: String,
    current_arrays: Option<ArrayRecord>,
}

impl QFedAvg {
    /// `client_learning_rate` is required (Flower has no default); Flower's
    /// defaults for the others: `q = 0.1`, `train_loss_key = "train_loss"`.
    pub fn new(
        params: FedAvgParams,
        client_learning_rate: f64,
        q: f64,
        train_loss_key: impl Into<String>,
        log: &mut Logger,
    ) -> Result<QFedAvg, StrategyError> {
        if !(client_learning_rate > 0.0 && client_learning_rate.is_finite()) {
            return Err(StrategyError::InvalidParameter(format!(
                "`client_learning_rate` must be a positive number (q-FedAvg uses 1/client_learning_rate), got {}.",
                float_repr(client_learning_rate)
            )));
        }
        Ok(QFedAvg {
            base: FedAvg::new(params, log),
            client_learning_rate,
            q,
            train_loss_key: train_loss_key.into(),
            current_arrays: None,
        })
    }

    fn train_loss(&self, content: &RecordDict) -> Result<f64, StrategyError> {
        match content
            .metric_records()
            .next()
            .and_then(|(_, m)| m.get(&self.train_loss_key))
        {
            Some(MetricValue::Float(loss)) => Ok(*loss),
            Some(MetricValue::Int(loss)) => Ok(*loss as f64),
            _ => Err(StrategyError::Aggregation(format!(
                "Missing or invalid training loss. The strategy expected a float value for the key '{k}' as the \
                 training loss in each MetricRecord from the clients. Ensure that '{k}' is present and maps to a \
                 valid float.",
                k = self.train_loss_key
            ))),
        }
    }

    fn aggregate_arrays(&self, contents: &[&RecordDict]) -> Result<ArrayRecord, StrategyError> {
        let Some(global) = &self.current_arrays else {
            return Err(StrategyError::Aggregation(
                "Current global model weights are not available. Make sure to call`configure_train` before \
                 calling `aggregate_train`."
                    .into(),
            ));
        };
        let lipschitz = 1.0 / self.client_learning_rate;
        let q = self.q;
        let globals: Vec<std::borrow::Cow<[f64]>> = global.values().map(|a| as_f64(&a.values)).collect();
        // Σδ_k per array (values in float64, `true` while numpy would keep
        // float32) and Σh_k.
        let mut sum_delta: Vec<(Vec<f64>, bool)> = Vec::new();
        let mut sum_h = 0.0f64;
        for content in contents {
            let local = reply_arrays(content).expect("validated replies hold one ArrayRecord");
            let loss = self.train_loss(content)?;
            if local.len() != global.len() {
                return Err(StrategyError::Aggregation(format!(
                    "q-FedAvg cannot pair the arrays: a reply holds {} arrays but the global model holds {}.",
                    local.len(),
                    global.len()
                )));
            }
            // ΔW = L·(w − w_k), in place in the reply's dtype.
            let mut grads: Vec<(Vec<f64>, bool)> = Vec::with_capacity(local.len());
            let mut norm = 0.0f64;
            let mut norm_single = true;
            for ((g_array, g), (key, l_array)) in global.values().zip(&globals).zip(local.iter()) {
                if l_array.shape != g_array.shape {
                    return Err(StrategyError::Aggregation(format!(
                        "q-FedAvg cannot update array '{key}': the reply has shape {:?} but the global model has \
                         {:?}.",
                        l_array.shape, g_array.shape
                    )));
                }
                let single = is_f32(&l_array.values);
                let l_scale = round_to(lipschitz, single);
                let grad: Vec<f64> = g
                    .iter()
                    .zip(as_f64(&l_array.values).iter())
                    .map(|(g, l)| round_to(round_to(g - l, single) * l_scale, single))
                    .collect();
                // `np.sum(np.square(g))`, then Python's `sum` over arrays
                // (float32 while every array is float32).
                let squares: Vec<f64> = grad.iter().map(|x| round_to(x * x, single)).collect();
                norm_single = norm_single && single;
                norm = round_to(norm + pairwise_sum(&squares, single), norm_single);
                grads.push((grad, single));
            }
            let loss_pow_q = math::pow(loss + 1e-10, q);
            let h = q * math::pow(loss + 1e-10, q - 1.0) * norm + lipschitz * loss_pow_q;
            // δ = F^q·ΔW: a float64 product stored back in the reply's dtype.
            for (grad, single) in &mut grads {
                grad.iter_mut().for_each(|x| *x = round_to(*x * loss_pow_q, *single));
            }
            if sum_delta.is_empty() {
                sum_delta = grads;
            } else {
                for ((sum, sum_single), (delta, single)) in sum_delta.iter_mut().zip(grads) {
                    *sum_single = *sum_single && single;
                    sum.iter_mut()
                        .zip(&delta)
                        .for_each(|(s, d)| *s = round_to(*s + d, *sum_single));
                }
            }
            sum_h += h;
        }
        // `Σh` is a numpy float64: the division and the update are float64.
        Ok(global
            .iter()
            .zip(&globals)
            .zip(&sum_delta)
            .map(|(((key, array), g), (delta, _))| {
                let values = g.iter().zip(delta).map(|(g, d)| g - d / sum_h).collect();
                (key.to_string(), Array::new(array.shape.clone(), Values::F64(values)))
            })
            .collect())
    }
}

impl Strategy for QFedAvg {
    fn name(&self) -> String {
        "QFedAvg".into()
    }

    fn summary(&self, log: &mut Logger) {
        log.info("\t├──> q-FedAvg settings:");
        log.info(format!(
            "\t│\t├── client_learning_rate: {}",
            float_repr(self.client_learning_rate)
        ));
        log.info(format!("\t│\t├── q: {}", float_repr(self.q)));
        log.info(format!("\t│\t└── train_loss_key: '{}'", self.train_loss_key));
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
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        self.base
            .aggregate_train_with(replies, log, |contents| self.aggregate_arrays(contents))
    }

    delegate_evaluate!(base);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    fn qfedavg(q: f64) -> QFedAvg {
        QFedAvg::new(FedAvgParams::default(), 0.1, q, "train_loss", &mut Logger::new()).unwrap()
    }

    #[test]
    fn golden_qfedavg() {
        let mut log = Logger::new();
        let results = run_golden(&mut qfedavg(0.1), 1, 5, &mut log).unwrap();
        assert_golden("QFedAvg(client_learning_rate=0.1,q=0.1)", &results, 1e-15);
        let results = run_golden(&mut qfedavg(0.0), 1, 5, &mut log).unwrap();
        assert_golden("QFedAvg(client_learning_rate=0.1,q=0.0)", &results, 1e-15);
    }

    #[test]
    fn summary_snapshot() {
        let strategy = qfedavg(0.1);
        assert_eq!(strategy.name(), "QFedAvg");
        let mut want: Vec<String> = [
            "\t├──> q-FedAvg settings:",
            "\t│\t├── client_learning_rate: 0.1",
            "\t│\t├── q: 0.1",
            "\t│\t└── train_loss_key: 'train_loss'",
        ]
        .map(String::from)
        .to_vec();
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&strategy), want);
    }

    #[test]
    fn missing_loss_and_missing_configure_fail_with_flowers_messages() {
        let mut log = Logger::new();
        let mut strategy = QFedAvg::new(FedAvgParams::default(), 0.1, 0.1, "loss", &mut log).unwrap();
        let instructions: Vec<Message> = (0..5).map(instruction).collect();
        let err = strategy
            .aggregate_train(1, &replies(&instructions, golden_contents(5)), &mut log)
            .unwrap_err();
        assert!(matches!(err, StrategyError::Aggregation(ref r) if r.starts_with("Current global model weights")));
        let grid = TestGrid::new(1, 5);
        let instructions = strategy
            .configure_train(1, &global_arrays(), &mut ConfigRecord::new(), &grid, &mut log)
            .unwrap();
        let err = strategy
            .aggregate_train(1, &replies(&instructions, golden_contents(5)), &mut log)
            .unwrap_err();
        assert_eq!(
            err,
            StrategyError::Aggregation(
                "Missing or invalid training loss. The strategy expected a float value for the key 'loss' as the \
                 training loss in each MetricRecord from the clients. Ensure that 'loss' is present and maps to a \
                 valid float."
                    .into()
            )
        );
    }

    #[test]
    fn a_non_positive_learning_rate_is_rejected() {
        for lr in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = QFedAvg::new(FedAvgParams::default(), lr, 0.1, "train_loss", &mut Logger::new()).unwrap_err();
            assert!(matches!(err, StrategyError::InvalidParameter(_)));
        }
    }

    #[test]
    fn float32_models_become_float64_as_in_numpy() {
        let mut log = Logger::new();
        let mut strategy = qfedavg(0.5);
        let grid = TestGrid::new(1, 2);
        let mut global = ArrayRecord::new();
        global.insert("x", Array::from_f32(vec![2], vec![1.0, -1.0]));
        let instructions = strategy
            .configure_train(1, &global, &mut ConfigRecord::new(), &grid, &mut log)
            .unwrap();
        let mut contents = f32_contents(&[vec![0.9, -1.2], vec![1.3, -0.7]], &[1, 1]);
        for (c, loss) in contents.iter_mut().zip([0.4, 1.7]) {
            if let Some(crate::records::Record::Metrics(m)) = c.get_mut("metrics") {
                m.insert("train_loss", MetricValue::Float(loss));
            }
        }
        let (arrays, _) = strategy
            .aggregate_train(1, &replies(&instructions, contents), &mut log)
            .unwrap();
        let x = arrays.unwrap().get("x").unwrap().clone();
        assert_eq!(x.dtype(), "float64");
        // numpy 2.4.6 running Flower's compute_delta_and_h on these inputs.
        assert_eq!(f64s(&x), NUMPY_FLOAT32_RESULT);
    }

    const NUMPY_FLOAT32_RESULT: [f64; 2] = [1.1085118699782028, -0.9124175364097182];
}
