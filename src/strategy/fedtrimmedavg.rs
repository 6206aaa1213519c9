//! FedTrimmedAvg (Yin et al., 2018): per coordinate, drop the `⌊β·n⌋`
//! smallest and largest reply values and average the rest, unweighted;
//! metrics are FedAvg's weighted average.
//!
//! numpy parity: Flower's `trim_mean` (`np.partition` then `np.mean` over
//! sorted positions `[⌊β·n⌋, n − ⌊β·n⌋)`). float32 stays float32 (sum and
//! division in float32); integer arrays become float64; NaN sorts last, so a
//! NaN is trimmed like the largest value.
//!
//! Differences from Flower, on purpose:
//! - the kept values are summed in reply order (numpy sums them in
//!   `np.partition`'s unspecified order), so results can differ from Flower's
//!   in the last bit, and never depend on the sorting algorithm;
//! - arrays of different shapes under one key fail with
//!   `StrategyError::Aggregation` (numpy raises from `np.stack`).
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::kernels::{column, map_coordinates, stack, trimmed_mean, Column, Elem};
use crate::pyfmt::float_repr;
use crate::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, Values};
use crate::strategy::fedmedian::reply_records;
use crate::strategy::{FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// Federated trimmed mean.
#[derive(Clone, Debug)]
pub struct FedTrimmedAvg {
    pub base: FedAvg,
    /// Fraction cut from each end, in `[0, 0.5)` (Flower's default 0.2).
    pub beta: f64,
}

impl FedTrimmedAvg {
    /// Flower 1.42 rejects `beta` outside `[0, 0.5)`.
    pub fn new(params: FedAvgParams, beta: f64, log: &mut Logger) -> Result<FedTrimmedAvg, StrategyError> {
        if !(0.0..0.5).contains(&beta) {
            return Err(StrategyError::InvalidParameter(
                "`beta` must be in the range [0, 0.5).".into(),
            ));
        }
        Ok(FedTrimmedAvg {
            base: FedAvg::new(params, log),
            beta,
        })
    }
}

/// The coordinate-wise trimmed mean of the records' arrays, key order of the
/// first record.
pub fn trimmed_mean_arrayrecords(records: &[&ArrayRecord], beta: f64) -> Result<ArrayRecord, StrategyError> {
    let mut out = ArrayRecord::new();
    let n = records.len();
    let Some(first) = records.first() else {
        return Ok(out);
    };
    let lo = (beta * n as f64).trunc() as usize;
    let hi = n.saturating_sub(lo);
    if lo >= hi {
        return Err(StrategyError::Aggregation(format!(
            "Trimmed mean could not be computed. Likely cause: beta={} is too large.",
            float_repr(beta)
        )));
    }
    for key in first.keys() {
        let arrays = stack(records, key)?;
        let values = match column(&arrays) {
            Column::F32(slices) => coordinate_trimmed_mean(&slices, lo, hi),
            Column::F64(slices) => coordinate_trimmed_mean(&slices, lo, hi),
        };
        out.insert(key, Array::new(arrays[0].shape.clone(), values));
    }
    Ok(out)
}

fn coordinate_trimmed_mean<T: Elem, S: AsRef<[T]>>(inputs: &[S], lo: usize, hi: usize) -> Values {
    let mut scratch = Vec::with_capacity(inputs.len());
    T::into_values(map_coordinates(inputs, |values| {
        trimmed_mean(values, lo, hi, &mut scratch)
    }))
}

impl Strategy for FedTrimmedAvg {
    fn name(&self) -> String {
        "FedTrimmedAvg".into()
    }

    fn summary(&self, log: &mut Logger) {
        log.info("\t├──> FedTrimmedAvg settings:");
        log.info(format!("\t│\t└── beta: {}", float_repr(self.beta)));
        self.base.common_summary(log);
    }

    delegate_configure_train!(base);

    fn aggregate_train(
        &mut self,
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        self.base.aggregate_train_with(replies, log, |contents| {
            trimmed_mean_arrayrecords(&reply_records(contents), self.beta)
        })
    }

    delegate_evaluate!(base);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    #[test]
    fn golden_fedtrimmedavg() {
        let mut log = Logger::new();
        let mut strategy = FedTrimmedAvg::new(FedAvgParams::default(), 0.2, &mut log).unwrap();
        let results = run_golden(&mut strategy, 1, 5, &mut log).unwrap();
        assert_golden("FedTrimmedAvg(beta=0.2)", &results, 1e-15);
    }

    #[test]
    fn beta_outside_the_range_is_rejected_with_flowers_message() {
        for beta in [-0.1, 0.5, 0.7, f64::NAN] {
            let err = FedTrimmedAvg::new(FedAvgParams::default(), beta, &mut Logger::new()).unwrap_err();
            assert_eq!(
                err,
                StrategyError::InvalidParameter("`beta` must be in the range [0, 0.5).".into())
            );
        }
        assert!(FedTrimmedAvg::new(FedAvgParams::default(), 0.0, &mut Logger::new()).is_ok());
    }

    #[test]
    fn summary_snapshot() {
        let strategy = FedTrimmedAvg::new(FedAvgParams::default(), 0.2, &mut Logger::new()).unwrap();
        assert_eq!(strategy.name(), "FedTrimmedAvg");
        let mut want = vec![
            "\t├──> FedTrimmedAvg settings:".to_string(),
            "\t│\t└── beta: 0.2".to_string(),
        ];
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&strategy), want);
    }

    proptest! {
        #[test]
        fn the_trimmed_mean_stays_within_each_coordinates_range(
            rows in proptest::collection::vec(proptest::collection::vec(-1e30f32..1e30, 5), 1..15),
            beta in 0.0f64..0.499,
        ) {
            let weights = vec![1; rows.len()];
            let contents = f32_contents(&rows, &weights);
            let records = reply_records(&contents.iter().collect::<Vec<_>>());
            let out = trimmed_mean_arrayrecords(&records, beta).unwrap();
            let Values::F32(values) = &out.get("x").unwrap().values else { panic!("float32 kept") };
            for (j, v) in values.iter().enumerate() {
                let min = rows.iter().map(|r| r[j]).fold(f32::INFINITY, f32::min);
                let max = rows.iter().map(|r| r[j]).fold(f32::NEG_INFINITY, f32::max);
                prop_assert!(min <= *v && *v <= max, "{} not in [{}, {}]", v, min, max);
            }
        }
    }
}
