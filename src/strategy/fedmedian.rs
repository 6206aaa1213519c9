//! FedMedian (Yin et al., 2018): the coordinate-wise median of the replies'
//! arrays, unweighted; metrics are FedAvg's weighted average.
//!
//! numpy parity: `np.median(np.stack(layers), axis=0)`. float32 arrays stay
//! float32 (an even count averages the two middle values in float32);
//! integer arrays become float64; a NaN anywhere in a coordinate gives NaN.
//! The median does not depend on reply order.
//!
//! Differences from Flower, on purpose: arrays of different shapes under
//! one key fail with `StrategyError::Aggregation` (numpy raises a
//! `ValueError` from `np.stack`).
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::kernels::{column, map_coordinates, median, stack, Column, Elem};
use crate::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict};
use crate::strategy::{reply_arrays, FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// Federated median.
#[derive(Clone, Debug)]
pub struct FedMedian {
    pub base: FedAvg,
}

impl FedMedian {
    pub fn new(params: FedAvgParams, log: &mut Logger) -> FedMedian {
        FedMedian {
            base: FedAvg::new(params, log),
        }
    }
}

/// The coordinate-wise median of the records' arrays, key order of the
/// first record.
pub fn median_arrayrecords(records: &[&ArrayRecord]) -> Result<ArrayRecord, StrategyError> {
    let mut out = ArrayRecord::new();
    let Some(first) = records.first() else {
        return Ok(out);
    };
    for key in first.keys() {
        let arrays = stack(records, key)?;
        let values = match column(&arrays) {
            Column::F32(slices) => coordinate_median(&slices),
            Column::F64(slices) => coordinate_median(&slices),
        };
        out.insert(key, Array::new(arrays[0].shape.clone(), values));
    }
    Ok(out)
}

fn coordinate_median<T: Elem, S: AsRef<[T]>>(inputs: &[S]) -> crate::records::Values {
    let mut scratch = Vec::with_capacity(inputs.len());
    T::into_values(map_coordinates(inputs, |values| median(values, &mut scratch)))
}

/// The first ArrayRecord of every reply (validated replies have one).
pub(crate) fn reply_records<'a>(contents: &[&'a RecordDict]) -> Vec<&'a ArrayRecord> {
    contents
        .iter()
        .map(|c| reply_arrays(c).expect("validated replies hold one ArrayRecord"))
        .collect()
}

impl Strategy for FedMedian {
    fn name(&self) -> String {
        "FedMedian".into()
    }

    fn summary(&self, log: &mut Logger) {
        self.base.common_summary(log);
    }

    delegate_configure_train!(base);

    fn aggregate_train(
        &mut self,
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        self.base
            .aggregate_train_with(replies, log, |contents| median_arrayrecords(&reply_records(contents)))
    }

    delegate_evaluate!(base);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::records::Values;
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    #[test]
    fn golden_fedmedian() {
        let mut log = Logger::new();
        let mut strategy = FedMedian::new(FedAvgParams::default(), &mut log);
        let results = run_golden(&mut strategy, 1, 5, &mut log).unwrap();
        assert_eq!(assert_golden("FedMedian", &results, 0.0), 0.0);
    }

    #[test]
    fn summary_is_the_common_block() {
        let strategy = FedMedian::new(FedAvgParams::default(), &mut Logger::new());
        assert_eq!(strategy.name(), "FedMedian");
        assert_eq!(summary_lines(&strategy), default_common_summary());
    }

    #[test]
    fn float32_stays_float32_and_ints_become_float64() {
        let a = ArrayRecord::from_arrays(vec![Array::from_f32(vec![2], vec![1.0, 4.0])]);
        let b = ArrayRecord::from_arrays(vec![Array::from_f32(vec![2], vec![2.0, 8.0])]);
        let out = median_arrayrecords(&[&a, &b]).unwrap();
        assert_eq!(out.get("0").unwrap().values, Values::F32(vec![1.5, 6.0]));
        let i = ArrayRecord::from_arrays(vec![Array::new(vec![1], Values::I64(vec![3]))]);
        let j = ArrayRecord::from_arrays(vec![Array::new(vec![1], Values::I64(vec![4]))]);
        let out = median_arrayrecords(&[&i, &j]).unwrap();
        assert_eq!(out.get("0").unwrap().values, Values::F64(vec![3.5]));
    }

    #[test]
    fn different_shapes_fail_cleanly() {
        let a = ArrayRecord::from_arrays(vec![Array::from_f32(vec![2], vec![1.0, 4.0])]);
        let b = ArrayRecord::from_arrays(vec![Array::from_f32(vec![1, 2], vec![2.0, 8.0])]);
        assert!(matches!(
            median_arrayrecords(&[&a, &b]),
            Err(StrategyError::Aggregation(_))
        ));
    }

    proptest! {
        #[test]
        fn permuting_replies_does_not_change_the_median(
            rows in proptest::collection::vec(proptest::collection::vec(-1e6f32..1e6, 7), 1..12),
            seed in any::<u64>(),
        ) {
            let weights: Vec<i64> = (1..=rows.len() as i64).collect();
            let contents = f32_contents(&rows, &weights);
            let mut shuffled = contents.clone();
            crate::prng::Prng::from_seed(seed).shuffle(&mut shuffled);
            let a = median_arrayrecords(&reply_records(&contents.iter().collect::<Vec<_>>())).unwrap();
            let b = median_arrayrecords(&reply_records(&shuffled.iter().collect::<Vec<_>>())).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}
