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
//! - the selection rule is a [`SelectionRule`] (Flower: any callable),
//!   `select_multikrum` by default, whose own differences apply (see
//!   `krum.rs`); a rule returns indices into the replies it is given;
//! - arrays of different shapes under one key fail with
//!   `StrategyError::Aggregation` (numpy raises from `np.stack`).
//!
//! It never does I/O and draws no randomness.

use std::sync::Arc;

use crate::flwr_log::Logger;
use crate::kernels::{closest_mean, column, map_coordinates, median, stack, Column, Elem};
use crate::records::{Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict, Values};
use crate::strategy::fedmedian::reply_records;
use crate::strategy::krum::multikrum_indices;
use crate::strategy::{FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// A selection rule's function: `(contents, num_malicious_nodes,
/// num_nodes_to_select)` to the indices of the selected contents.
pub type SelectionFn = dyn Fn(&[&RecordDict], usize, usize) -> Result<Vec<usize>, StrategyError> + Send + Sync;

/// The rule that picks the replies Bulyan aggregates, Flower's
/// `selection_rule(contents, num_malicious_nodes, num_nodes_to_select)`:
/// it returns the indices (into `contents`) of the selected replies, at most
/// `num_nodes_to_select` of them. `name` is what the summary logs
/// (Flower logs the function's `__name__`).
#[derive(Clone)]
pub struct SelectionRule {
    pub name: String,
    pub select: Arc<SelectionFn>,
}

impl SelectionRule {
    pub fn new(
        name: impl Into<String>,
        select: impl Fn(&[&RecordDict], usize, usize) -> Result<Vec<usize>, StrategyError> + Send + Sync + 'static,
    ) -> SelectionRule {
        SelectionRule {
            name: name.into(),
            select: Arc::new(select),
        }
    }

    /// Flower's default, `select_multikrum`.
    pub fn multikrum() -> SelectionRule {
        SelectionRule::new("select_multikrum", multikrum_indices)
    }

    /// The replies the rule picks, in the rule's order.
    fn apply<'a>(&self, contents: &[&'a RecordDict], f: usize, k: usize) -> Result<Vec<&'a RecordDict>, StrategyError> {
        let indices = (self.select)(contents, f, k)?;
        if indices.len() > k {
            return Err(StrategyError::Aggregation(format!(
                "selection rule {} picked {} replies, more than the {k} asked for",
                self.name,
                indices.len()
            )));
        }
        indices
            .into_iter()
            .map(|i| {
                contents.get(i).copied().ok_or_else(|| {
                    StrategyError::Aggregation(format!(
                        "selection rule {} picked reply {i} of {}",
                        self.name,
                        contents.len()
                    ))
                })
            })
            .collect()
    }
}

impl std::fmt::Debug for SelectionRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SelectionRule({})", self.name)
    }
}

/// Bulyan.
#[derive(Clone, Debug)]
pub struct Bulyan {
    pub base: FedAvg,
    pub num_malicious_nodes: usize,
    pub selection_rule: SelectionRule,
}

impl Bulyan {
    /// Flower's defaults: `num_malicious_nodes = 0`, `select_multikrum`.
    pub fn new(params: FedAvgParams, num_malicious_nodes: usize, log: &mut Logger) -> Bulyan {
        Bulyan {
            base: FedAvg::new(params, log),
            num_malicious_nodes,
            selection_rule: SelectionRule::multikrum(),
        }
    }

    /// Picks the replies with `rule` instead of `select_multikrum`.
    pub fn selection_rule(mut self, rule: SelectionRule) -> Bulyan {
        self.selection_rule = rule;
        self
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
        log.info(format!("\t│\t└── Selection rule: {}", self.selection_rule.name));
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
        let selected = self.selection_rule.apply(&contents, f, theta)?;
        let arrays = bulyan_arrayrecords(&reply_records(&selected), beta)?;
        Ok((Some(arrays), Some(self.base.train_metrics(&selected))))
    }

    delegate_evaluate!(base);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::flwr_log::Level;
    use crate::records::RecordDict;
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    #[test]
    fn golden_bulyan() {
        let mut log = Logger::new();
        let mut strategy = Bulyan::new(FedAvgParams::default(), 1, &mut log);
        let results = run_golden(&mut strategy, 1, 7, &mut log).unwrap();
        assert_golden("Bulyan(num_malicious_nodes=1) n=7", &results, 1e-15);
    }

    #[test]
    fn a_custom_selection_rule_picks_the_replies_and_is_named_in_the_summary() {
        let mut log = Logger::new();
        // The first θ replies, whatever they hold.
        let first = SelectionRule::new("select_first", |contents, _f, k| {
            Ok((0..k.min(contents.len())).collect())
        });
        let mut strategy = Bulyan::new(FedAvgParams::default(), 1, &mut log).selection_rule(first);
        let instructions: Vec<Message> = (0..7).map(instruction).collect();
        let contents = golden_contents(7);
        let (arrays, _) = strategy
            .aggregate_train(1, &replies(&instructions, contents.clone()), &mut log)
            .unwrap();
        let records: Vec<&ArrayRecord> = contents[..5].iter().map(|c| c.arrays("arrays").unwrap()).collect();
        assert_eq!(arrays.unwrap(), bulyan_arrayrecords(&records, 3).unwrap());
        let mut summary = Logger::new();
        strategy.summary(&mut summary);
        assert!(summary
            .lines()
            .iter()
            .any(|(_, line)| line == "\t│\t└── Selection rule: select_first"));
    }

    #[test]
    fn a_selection_rule_that_picks_outside_the_replies_fails_the_round() {
        let mut log = Logger::new();
        let wild = SelectionRule::new("wild", |contents, _, _| Ok(vec![contents.len()]));
        let mut strategy = Bulyan::new(FedAvgParams::default(), 1, &mut log).selection_rule(wild);
        let instructions: Vec<Message> = (0..7).map(instruction).collect();
        let err = strategy
            .aggregate_train(1, &replies(&instructions, golden_contents(7)), &mut log)
            .unwrap_err();
        assert_eq!(
            err,
            StrategyError::Aggregation("selection rule wild picked reply 7 of 7".into())
        );
        let greedy = SelectionRule::new("greedy", |contents, _, _| Ok((0..contents.len()).collect()));
        let mut strategy = Bulyan::new(FedAvgParams::default(), 1, &mut log).selection_rule(greedy);
        let err = strategy
            .aggregate_train(1, &replies(&instructions, golden_contents(7)), &mut log)
            .unwrap_err();
        assert_eq!(
            err,
            StrategyError::Aggregation("selection rule greedy picked 7 replies, more than the 5 asked for".into())
        );
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
            let selected = crate::strategy::krum::select_multikrum(&refs, f, n - 2 * f).unwrap();
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
