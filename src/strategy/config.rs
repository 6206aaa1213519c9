//! Building a strategy from the run configuration (interim: FedAvg only).
use crate::flwr_log::Logger;
use crate::records::{Scalar, UserConfig};
use crate::strategy::{FedAvg, FedAvgParams, Strategy, StrategyError};

pub fn build_strategy(config: &UserConfig, log: &mut Logger) -> Result<Box<dyn Strategy>, StrategyError> {
    let float = |key: &str, default: f64| match config.get(key) {
        Some(Scalar::Float(f)) => *f,
        Some(Scalar::Int(i)) => *i as f64,
        _ => default,
    };
    let int = |key: &str, default: usize| match config.get(key) {
        Some(Scalar::Int(i)) => *i as usize,
        _ => default,
    };
    let params = FedAvgParams {
        fraction_train: float("fraction-train", 1.0),
        fraction_evaluate: float("fraction-evaluate", 1.0),
        min_train_nodes: int("min-train-nodes", 2),
        min_evaluate_nodes: int("min-evaluate-nodes", 2),
        min_available_nodes: int("min-available-nodes", 2),
        ..FedAvgParams::default()
    };
    Ok(Box::new(FedAvg::new(params, log)))
}
