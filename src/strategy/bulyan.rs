//! Bulyan (El Mhamdi et al., 2018): MultiKrum picks `θ = n − 2f` replies,
//! then per coordinate the `β = θ − 2f` selected values closest to the
//! selected values' median are averaged (unweighted). Metrics are FedAvg's
//! weighted average over the selected replies.
//!
//! With fewer than `4f + 3` valid replies the round is skipped with
//! Flower's warning and `(None, None)`.
//!
//! numpy parity: the median is `np.median` (float32 stays float32, integer
//! arrays become float64), distances are `|x − median|` in that dtype.
//!
//! Differences from Flower, on purpose:
//! - ties among the "closest" values go to the earlier selected reply
//!   (numpy's `argpartition` leaves them arbitrary) and the kept values are
//!   summed in selection order (numpy: `argpartition` order), so results can
//!   differ from Flower's in the last bit;
//! - the selection rule is always `select_multikrum` (Flower accepts any
//!   callable); MultiKrum's own differences apply (see `krum.rs`);
//! - arrays of different shapes under one key fail with
//!   `StrategyError::Aggregation` (numpy raises from `np.stack`).
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, Values};
use crate::strategy::fedmedian::reply_records;
use crate::strategy::kernels::{closest_mean, column, map_coordinates, median, stack, Column, Elem};
use crate::strategy::krum::select_multikrum;
use crate::strategy::{aggregate_metricrecords, FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// Bulyan.
#[derive(Clone, Debug)]
pub struct Bulyan {
    pub base: FedAvg,
    pub num_malicious_nodes: usize,
}

impl Bulyan {
    /// Flower's default: `num_malicious_nodes = 0`.
    pub fn new(params: FedAvgParams, num_malicious_nodes: usize, log: &mut Logger) -> Bulyan {
        Bulyan {
            base: FedAvg::new(params, log),
            num_malicious_nodes,
        }
    }
}

/// Per key and coordinate: the mean of the `beta` values closest to the
/// records' median. Key order of the first record.
pub fn bulyan_arrayrecords(records: &[&ArrayRecord], beta: usize) -> Result<ArrayRecord, StrategyError> {
    let mut out = ArrayRecord::new();
    let Some(first) = records.first() else {
        return Ok(out);
    };
    for key in first.keys() {
        let arrays = stack(records, key)?;
        let values = match column(&arrays) {
            Column::F32(slices) => coordinate_bulyan(&slices, beta),
            Column::F64(slices) => coordinate_bulyan(&slices, beta),
        };
        out.insert(key, Array::new(arrays[0].shape.clone(), values));
    }
    Ok(out)
}

fn coordinate_bulyan<T: Elem, S: AsRef<[T]>>(inputs: &[S], beta: usize) -> Values {
    let mut scratch = Vec::with_capacity(inputs.len());
    T::into_values(map_coordinates(inputs, |values| {
        let center = median(values, &mut scratch);
        closest_mean(values, center, beta, &mut scratch)
    }))
}

impl Strategy for Bulyan {
    fn name(&self) -> String {
        "Bulyan".into()
    }

    fn summary(&self, log: &mut Logger) {
        log.info("\t├──> Bulyan settings:");
        log.info(format!(
            "\t│\t├── Number of malicious nodes: {}",
            self.num_malicious_nodes
        ));
        log.info("\t│\t└── Selection rule: select_multikrum");
        self.base.common_summary(log);
    }

    delegate_configure_train!(base);

    fn aggregate_train(
        &mut self,
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        let contents = self.base.train_contents(replies, log)?;
        let key = &self.base.params.weighted_by_key;
        let f = self.num_malicious_nodes;
        let required = 4 * f + 3;
        if contents.len() < required {
            log.warning(format!(
                "Insufficient replies, skipping Bulyan aggregation: Required at least {required} \
                 (4*num_malicious_nodes + 3), but received {}.",
                contents.len()
            ));
            return Ok((None, None));
        }
        let theta = contents.len() - 2 * f;
        let beta = theta - 2 * f;
        let selected = select_multikrum(&contents, f, theta)?;
        let arrays = bulyan_arrayrecords(&reply_records(&selected), beta)?;
        Ok((Some(arrays), Some(aggregate_metricrecords(&selected, key))))
    }

    delegate_evaluate!(base);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::flwr_log::Level;
    use crate::records::RecordDict;
    use crate::strategy::kernels::testkit::*;
    use crate::strategy::Strategy;

    #[test]
    fn golden_bulyan() {
        let mut log = Logger::new();
        let mut strategy = Bulyan::new(FedAvgParams::default(), 1, &mut log);
        let results = run_golden(&mut strategy, 1, 7, &mut log).unwrap();
        assert_golden("Bulyan(num_malicious_nodes=1) n=7", &results, 1e-15);
    }

    #[test]
    fn too_few_replies_skip_the_round_with_flowers_warning() {
        let mut log = Logger::new();
        let mut strategy = Bulyan::new(FedAvgParams::default(), 1, &mut log);
        let instructions: Vec<Message> = (0..5).map(instruction).collect();
        let replies = replies(&instructions, golden_contents(5));
        let out = strategy.aggregate_train(1, &replies, &mut log).unwrap();
        assert_eq!(out, (None, None));
        assert_eq!(
            lines_at(&log, Level::Warning),
            [
                "Insufficient replies, skipping Bulyan aggregation: Required at least 7 (4*num_malicious_nodes + 3), \
              but received 5."
            ]
        );
    }

    #[test]
    fn summary_snapshot() {
        let strategy = Bulyan::new(FedAvgParams::default(), 0, &mut Logger::new());
        assert_eq!(strategy.name(), "Bulyan");
        let mut want: Vec<String> = [
            "\t├──> Bulyan settings:",
            "\t│\t├── Number of malicious nodes: 0",
            "\t│\t└── Selection rule: select_multikrum",
        ]
        .map(String::from)
        .to_vec();
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&strategy), want);
    }

    proptest! {
        #[test]
        fn the_result_stays_within_the_selected_replies_range(
            rows in proptest::collection::vec(proptest::collection::vec(-1e30f32..1e30, 4), 3..16),
            f in 0usize..4,
        ) {
            let n = rows.len();
            prop_assume!(n >= 4 * f + 3);
            let contents = f32_contents(&rows, &vec![1; n]);
            let refs: Vec<&RecordDict> = contents.iter().collect();
            let selected = select_multikrum(&refs, f, n - 2 * f).unwrap();
            let selected_records = reply_records(&selected);
            let out = bulyan_arrayrecords(&selected_records, n - 4 * f).unwrap();
            let Values::F32(values) = &out.get("x").unwrap().values else { panic!("float32 kept") };
            for (j, v) in values.iter().enumerate() {
                let column: Vec<f32> = selected_records
                    .iter()
                    .map(|r| match &r.get("x").unwrap().values { Values::F32(x) => x[j], _ => unreachable!() })
                    .collect();
                let min = column.iter().copied().fold(f32::INFINITY, f32::min);
                let max = column.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                prop_assert!(min <= *v && *v <= max, "{} not in [{}, {}]", v, min, max);
            }
            // And through the strategy: the same arrays.
            let mut bulyan = Bulyan::new(FedAvgParams::default(), f, &mut Logger::new());
            let instructions: Vec<Message> = (0..n as u64).map(instruction).collect();
            let (arrays, _) = bulyan.aggregate_train(1, &replies(&instructions, contents.clone()), &mut Logger::new()).unwrap();
            prop_assert_eq!(arrays.unwrap(), out);
        }
    }
}
