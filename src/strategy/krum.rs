//! Krum and MultiKrum (Blanchard et al., 2017): keep the replies whose
//! arrays are closest to their neighbours, then FedAvg over those only.
//!
//! Selection, as in Flower: flatten each reply's arrays (key order) into
//! one vector; `D_ij = ‖x_i‖² + ‖x_j‖² − 2·x_i·x_j`; with
//! `c = max(1, n − f − 2)` the score of reply i is the sum of the entries of
//! row i at sorted positions `1..=c` (position 0 is assumed to be i itself,
//! exactly as Flower assumes); the `k` lowest scores are kept, in ascending
//! score order, and weighted-averaged (arrays and metrics) in that order.
//! Krum is MultiKrum with `k = 1`.
//!
//! Differences from Flower, on purpose:
//! - sorting is stable, so ties (in a distance row or between scores) go to
//!   the earlier reply; numpy's `argsort` (quicksort) leaves them arbitrary;
//! - distances are computed in float64 whatever the arrays' dtype (numpy
//!   uses the dtype, float32 for float32 models, through BLAS), so a near-tie
//!   can select differently;
//! - arrays of different shapes under one key fail with
//!   `StrategyError::Aggregation` (numpy raises from `np.stack`).
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::kernels::{cmp_nan_last, gram_matrix};
use crate::records::{ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict};
use crate::strategy::fedmedian::reply_records;
use crate::strategy::{aggregate_arrayrecords, FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// The Krum scores of the replies' arrays (lower is more central).
pub fn krum_scores(records: &[&ArrayRecord], num_malicious_nodes: usize) -> Result<Vec<f64>, StrategyError> {
    let n = records.len();
    let gram = gram_matrix(records)?;
    let norm = |i: usize| gram[i * n + i];
    let num_closest = n.saturating_sub(num_malicious_nodes).saturating_sub(2).max(1);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut row = vec![0.0f64; n];
    let mut scores = Vec::with_capacity(n);
    for i in 0..n {
        for (j, d) in row.iter_mut().enumerate() {
            *d = (norm(i) + norm(j)) - 2.0 * gram[i * n + j];
        }
        order.clear();
        order.extend(0..n);
        order.sort_by(|&a, &b| cmp_nan_last(&row[a], &row[b]));
        let score = order.iter().skip(1).take(num_closest).fold(0.0, |sum, &j| sum + row[j]);
        scores.push(score);
    }
    Ok(scores)
}

/// Flower's `select_multikrum`: the `num_nodes_to_select` replies with the
/// lowest Krum scores, lowest first.
pub fn select_multikrum<'a>(
    contents: &[&'a RecordDict],
    num_malicious_nodes: usize,
    num_nodes_to_select: usize,
) -> Result<Vec<&'a RecordDict>, StrategyError> {
    Ok(multikrum_indices(contents, num_malicious_nodes, num_nodes_to_select)?
        .into_iter()
        .map(|i| contents[i])
        .collect())
}

/// [`select_multikrum`] as indices into `contents`.
pub fn multikrum_indices(
    contents: &[&RecordDict],
    num_malicious_nodes: usize,
    num_nodes_to_select: usize,
) -> Result<Vec<usize>, StrategyError> {
    let scores = krum_scores(&reply_records(contents), num_malicious_nodes)?;
    let mut order: Vec<usize> = (0..contents.len()).collect();
    order.sort_by(|&a, &b| cmp_nan_last(&scores[a], &scores[b]));
    order.truncate(num_nodes_to_select);
    Ok(order)
}

/// MultiKrum.
#[derive(Clone, Debug)]
pub struct MultiKrum {
    pub base: FedAvg,
    pub num_malicious_nodes: usize,
    pub num_nodes_to_select: usize,
}

impl MultiKrum {
    /// Flower's defaults: `num_malicious_nodes = 0`, `num_nodes_to_select = 1`.
    pub fn new(
        params: FedAvgParams,
        num_malicious_nodes: usize,
        num_nodes_to_select: usize,
        log: &mut Logger,
    ) -> MultiKrum {
        MultiKrum {
            base: FedAvg::new(params, log),
            num_malicious_nodes,
            num_nodes_to_select,
        }
    }

    fn multikrum_summary(&self, log: &mut Logger) {
        log.info("\t├──> MultiKrum settings:");
        log.info(format!(
            "\t│\t├── Number of malicious nodes: {}",
            self.num_malicious_nodes
        ));
        log.info(format!(
            "\t│\t└── Number of nodes to select: {}",
            self.num_nodes_to_select
        ));
        self.base.common_summary(log);
    }
}

impl Strategy for MultiKrum {
    fn name(&self) -> String {
        "MultiKrum".into()
    }

    fn summary(&self, log: &mut Logger) {
        self.multikrum_summary(log);
    }

    delegate_configure_train!(base);

    fn aggregate_train(
        &mut self,
        _round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        let contents = self.base.train_contents(replies, log)?;
        if contents.is_empty() {
            return Ok((None, None));
        }
        let key = &self.base.params.weighted_by_key;
        let selected = select_multikrum(&contents, self.num_malicious_nodes, self.num_nodes_to_select)?;
        Ok((
            Some(aggregate_arrayrecords(&selected, key)),
            Some(self.base.train_metrics(&selected)),
        ))
    }

    delegate_evaluate!(base);
}

/// Krum: MultiKrum keeping a single reply.
#[derive(Clone, Debug)]
pub struct Krum {
    pub inner: MultiKrum,
}

impl Krum {
    /// Flower's default: `num_malicious_nodes = 0`.
    pub fn new(params: FedAvgParams, num_malicious_nodes: usize, log: &mut Logger) -> Krum {
        Krum {
            inner: MultiKrum::new(params, num_malicious_nodes, 1, log),
        }
    }
}

impl Strategy for Krum {
    fn name(&self) -> String {
        "Krum".into()
    }

    /// Krum's lines, then MultiKrum's (as Flower logs both).
    fn summary(&self, log: &mut Logger) {
        log.info("\t├──> Krum settings:");
        log.info(format!(
            "\t│\t└── Number of malicious nodes: {}",
            self.inner.num_malicious_nodes
        ));
        self.inner.multikrum_summary(log);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::records::{MetricValue, Record, Values};
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    #[test]
    fn golden_krum() {
        let mut log = Logger::new();
        let mut strategy = Krum::new(FedAvgParams::default(), 1, &mut log);
        let results = run_golden(&mut strategy, 1, 5, &mut log).unwrap();
        assert_eq!(assert_golden("Krum(num_malicious_nodes=1)", &results, 0.0), 0.0);
    }

    #[test]
    fn golden_multikrum() {
        let mut log = Logger::new();
        let mut strategy = MultiKrum::new(FedAvgParams::default(), 1, 3, &mut log);
        let results = run_golden(&mut strategy, 1, 5, &mut log).unwrap();
        assert_golden(
            "MultiKrum(num_malicious_nodes=1,num_nodes_to_select=3)",
            &results,
            1e-15,
        );
    }

    #[test]
    fn summary_snapshots() {
        let krum = Krum::new(FedAvgParams::default(), 1, &mut Logger::new());
        assert_eq!(krum.name(), "Krum");
        let mut want: Vec<String> = [
            "\t├──> Krum settings:",
            "\t│\t└── Number of malicious nodes: 1",
            "\t├──> MultiKrum settings:",
            "\t│\t├── Number of malicious nodes: 1",
            "\t│\t└── Number of nodes to select: 1",
        ]
        .map(String::from)
        .to_vec();
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&krum), want);

        let multi = MultiKrum::new(FedAvgParams::default(), 2, 3, &mut Logger::new());
        assert_eq!(multi.name(), "MultiKrum");
        let mut want: Vec<String> = [
            "\t├──> MultiKrum settings:",
            "\t│\t├── Number of malicious nodes: 2",
            "\t│\t└── Number of nodes to select: 3",
        ]
        .map(String::from)
        .to_vec();
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&multi), want);
    }

    #[test]
    fn ties_go_to_the_earlier_reply() {
        let rows = vec![vec![1.0f32, 1.0], vec![1.0, 1.0], vec![1.0, 1.0]];
        let contents = f32_contents(&rows, &[1, 2, 3]);
        let refs: Vec<&RecordDict> = contents.iter().collect();
        let selected = select_multikrum(&refs, 0, 2).unwrap();
        assert!(std::ptr::eq(selected[0], refs[0]) && std::ptr::eq(selected[1], refs[1]));
    }

    /// Replies carrying a one-hot metric list (which reply it is) and a
    /// constant metric, so the aggregated metrics show the selection.
    fn tagged(rows: &[Vec<f32>], weights: &[i64]) -> Vec<RecordDict> {
        let n = rows.len();
        let mut contents = f32_contents(rows, weights);
        for (i, content) in contents.iter_mut().enumerate() {
            let Some(Record::Metrics(metrics)) = content.get_mut("metrics") else {
                unreachable!()
            };
            let mut one_hot = vec![0.0; n];
            one_hot[i] = 1.0;
            metrics.insert("which", MetricValue::FloatList(one_hot));
            metrics.insert("one", MetricValue::Float(1.0));
        }
        contents
    }

    fn aggregate(strategy: &mut dyn Strategy, contents: Vec<RecordDict>) -> (ArrayRecord, MetricRecord) {
        let instructions: Vec<Message> = (0..contents.len() as u64).map(instruction).collect();
        let (arrays, metrics) = strategy
            .aggregate_train(1, &replies(&instructions, contents), &mut Logger::new())
            .unwrap();
        (arrays.unwrap(), metrics.unwrap())
    }

    proptest! {
        #[test]
        fn krum_returns_one_of_the_replies_arrays(
            rows in proptest::collection::vec(proptest::collection::vec(-1e3f32..1e3, 4), 1..9),
            f in 0usize..3,
        ) {
            let weights: Vec<i64> = (1..=rows.len() as i64).collect();
            let mut krum = Krum::new(FedAvgParams::default(), f, &mut Logger::new());
            let (arrays, _) = aggregate(&mut krum, f32_contents(&rows, &weights));
            let Values::F32(out) = &arrays.get("x").unwrap().values else { panic!("float32 kept") };
            prop_assert!(rows.iter().any(|r| r == out), "{:?} is none of {:?}", out, rows);
        }

        #[test]
        fn multikrum_weights_the_selected_replies_and_they_sum_to_one(
            rows in proptest::collection::vec(proptest::collection::vec(-1e3f32..1e3, 3), 1..9),
            weights in proptest::collection::vec(1i64..100, 9),
            f in 0usize..3,
            k in 1usize..10,
        ) {
            let n = rows.len();
            let weights = &weights[..n];
            let mut multi = MultiKrum::new(FedAvgParams::default(), f, k, &mut Logger::new());
            let (_, metrics) = aggregate(&mut multi, tagged(&rows, weights));
            let Some(MetricValue::Float(one)) = metrics.get("one") else { panic!("one") };
            prop_assert!((one - 1.0).abs() < 1e-12);
            let Some(MetricValue::FloatList(which)) = metrics.get("which") else { panic!("which") };
            let chosen: Vec<usize> = (0..n).filter(|&i| which[i] != 0.0).collect();
            prop_assert_eq!(chosen.len(), k.min(n));
            let total: i64 = chosen.iter().map(|&i| weights[i]).sum();
            for &i in &chosen {
                prop_assert!((which[i] - weights[i] as f64 / total as f64).abs() < 1e-12);
            }
        }

        #[test]
        fn multikrum_of_identical_replies_is_that_reply(
            row in proptest::collection::vec(-1e3f32..1e3, 3),
            n in 1usize..8,
            k in 1usize..8,
        ) {
            // Equal weights: each factor is 1/n, so the result is the reply up
            // to the rounding of the factors.
            let weights = vec![4i64; n];
            let mut multi = MultiKrum::new(FedAvgParams::default(), 0, k, &mut Logger::new());
            let (arrays, _) = aggregate(&mut multi, f32_contents(&vec![row.clone(); n], &weights));
            let Values::F32(out) = &arrays.get("x").unwrap().values else { panic!("float32 kept") };
            for (o, r) in out.iter().zip(&row) {
                prop_assert!((o - r).abs() <= r.abs() * 1e-6, "{} vs {}", o, r);
            }
        }
    }
}
