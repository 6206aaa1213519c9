//! FedProx (Li et al., 2020): FedAvg that sends the proximal-term weight to
//! the clients as `config["proximal-mu"]` (a float) in every training
//! round. The proximal term itself is the ClientApp's job; aggregation is
//! FedAvg's.
//!
//! Flower's behaviour kept: `proximal_mu == 0.0` logs the warning
//! "FedProx initialized with `proximal_mu=0.0`. This makes the strategy
//! equivalent to FedAvg." at construction. No deliberate differences.
//!
//! It never does I/O and draws no randomness.

use crate::flwr_log::Logger;
use crate::pyfmt::float_repr;
use crate::records::{ArrayRecord, ConfigRecord, ConfigValue, Message, MetricRecord};
use crate::strategy::{FedAvg, FedAvgParams, Grid, Strategy, StrategyError};

/// The ConfigRecord key FedProx writes.
pub const KEY_PROXIMAL_MU: &str = "proximal-mu";

/// Federated optimisation with a proximal term.
#[derive(Clone, Debug)]
pub struct FedProx {
    pub base: FedAvg,
    pub proximal_mu: f64,
}

impl FedProx {
    /// Flower's default: `proximal_mu = 0.0` (with a warning).
    pub fn new(params: FedAvgParams, proximal_mu: f64, log: &mut Logger) -> FedProx {
        let base = FedAvg::new(params, log);
        if proximal_mu == 0.0 {
            log.warning("FedProx initialized with `proximal_mu=0.0`. This makes the strategy equivalent to FedAvg.");
        }
        FedProx { base, proximal_mu }
    }
}

impl Strategy for FedProx {
    fn name(&self) -> String {
        "FedProx".into()
    }

    fn summary(&self, log: &mut Logger) {
        log.info("\t├──> FedProx settings:");
        log.info(format!("\t│\t└── Proximal mu: {}", float_repr(self.proximal_mu)));
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
        config.insert(KEY_PROXIMAL_MU, ConfigValue::Float(self.proximal_mu));
        self.base.configure_train(round, arrays, config, grid, log)
    }

    fn aggregate_train(
        &mut self,
        round: u64,
        replies: &[Message],
        log: &mut Logger,
    ) -> Result<(Option<ArrayRecord>, Option<MetricRecord>), StrategyError> {
        self.base.aggregate_train(round, replies, log)
    }

    delegate_evaluate!(base);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flwr_log::Level;
    use crate::strategy::testkit::*;
    use crate::strategy::Strategy;

    #[test]
    fn sends_proximal_mu_and_aggregates_like_fedavg() {
        let mut log = Logger::new();
        let mut strategy = FedProx::new(FedAvgParams::default(), 0.5, &mut log);
        assert!(log.lines().is_empty());
        let grid = TestGrid::new(3, 5);
        let mut config = ConfigRecord::new();
        let messages = strategy
            .configure_train(1, &global_arrays(), &mut config, &grid, &mut log)
            .unwrap();
        assert_eq!(messages.len(), 5);
        let sent = messages[0].content().unwrap().config("config").unwrap();
        assert_eq!(sent.get(KEY_PROXIMAL_MU), Some(&ConfigValue::Float(0.5)));
        assert_eq!(sent.keys().collect::<Vec<_>>(), ["proximal-mu", "server-round"]);
        let results = run_golden(&mut strategy, 1, 5, &mut log).unwrap();
        assert_golden("FedAvg", &results, 2e-16);
    }

    #[test]
    fn zero_mu_warns_as_flower_does() {
        let mut log = Logger::new();
        FedProx::new(FedAvgParams::default(), 0.0, &mut log);
        assert_eq!(
            lines_at(&log, Level::Warning),
            ["FedProx initialized with `proximal_mu=0.0`. This makes the strategy equivalent to FedAvg."]
        );
    }

    #[test]
    fn summary_snapshot() {
        let strategy = FedProx::new(FedAvgParams::default(), 0.1, &mut Logger::new());
        assert_eq!(strategy.name(), "FedProx");
        let mut want = vec![
            "\t├──> FedProx settings:".to_string(),
            "\t│\t└── Proximal mu: 0.1".to_string(),
        ];
        want.extend(default_common_summary());
        assert_eq!(summary_lines(&strategy), want);
    }
}
