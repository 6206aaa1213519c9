//! The machine-learning workload the simulated ClientApps and ServerApps run:
//! datasets and their partitioning ([`data`]) and small models trained with
//! SGD ([`model`]).
//!
//! Everything here is a deterministic function of its inputs and of the
//! [`Prng`](crate::prng::Prng) streams passed in or derived from a seed.
//! This module never schedules clients, never aggregates their results and
//! never touches messages, clocks, threads or the file system.

pub mod data;
pub mod model;

pub use data::{
    digits, federated_digits, partition_dirichlet, partition_iid, synthetic_partition, synthetic_test_set,
    train_test_split, Dataset, FederatedData, Partition, Partitioning, SyntheticSpec,
};
pub use model::{Evaluation, Model, ModelKind, TrainOptions};

#[cfg(test)]
mod tests {
    //! End-to-end checks: a minimal FedAvg loop over the workload.
    use super::*;
    use crate::prng::{purpose, Prng};
    use crate::records::{Array, ArrayRecord, Values};

    /// Weighted mean of the clients' parameters, accumulated in f64 in
    /// client order.
    fn fedavg(results: &[(ArrayRecord, usize)]) -> ArrayRecord {
        let total: usize = results.iter().map(|(_, n)| n).sum();
        let first = &results[0].0;
        let arrays = first
            .iter()
            .map(|(key, array)| {
                let mut sum = vec![0.0f64; array.len()];
                for (params, n) in results {
                    let Values::F32(values) = &params.get(key).unwrap().values else {
                        panic!("float32 expected");
                    };
                    for (s, &v) in sum.iter_mut().zip(values) {
                        *s += f64::from(v) * *n as f64;
                    }
                }
                let mean = sum.iter().map(|s| (s / total as f64) as f32).collect();
                Array::from_f32(array.shape.clone(), mean)
            })
            .collect();
        ArrayRecord::from_arrays(arrays)
    }

    /// Runs `rounds` of FedAvg with every client training one epoch; returns
    /// the central accuracy after each round.
    fn simulate(model: &Model, clients: &[Dataset], central: &Dataset, rounds: u64, seed: u64) -> Vec<f64> {
        let opts = TrainOptions {
            epochs: 1,
            learning_rate: 0.1,
            batch_size: 8,
            proximal_mu: 0.0,
        };
        let mut global = model.init(&mut Prng::stream(seed, &[purpose::MODEL_INIT]));
        let mut accuracies = Vec::new();
        for round in 1..=rounds {
            let results: Vec<(ArrayRecord, usize)> = clients
                .iter()
                .enumerate()
                .map(|(id, data)| {
                    let mut prng = Prng::stream(seed, &[purpose::CLIENT, round, id as u64]);
                    let (params, loss) = model.train(&global, data, &opts, &mut prng).unwrap();
                    assert!(loss.is_finite());
                    (params, data.len())
                })
                .collect();
            global = fedavg(&results);
            accuracies.push(model.evaluate(&global, central).unwrap().accuracy);
        }
        println!("{:?}: {accuracies:.3?}", model.kind());
        accuracies
    }

    fn federated_digits_accuracy(partitioning: Partitioning, kind: ModelKind) -> Vec<f64> {
        let data = federated_digits(10, partitioning, 7).unwrap();
        let clients: Vec<Dataset> = data.partitions.iter().map(|p| p.train.clone()).collect();
        simulate(&Model::new(kind, 64, 10), &clients, &data.test, 15, 7)
    }

    fn assert_improves(accuracies: &[f64], floor: f64) {
        let (first, last) = (accuracies[0], *accuracies.last().unwrap());
        assert!(last > first, "{accuracies:?}");
        assert!(last > floor, "{accuracies:?}");
    }

    #[test]
    fn fedavg_iid_digits_logreg() {
        assert_improves(&federated_digits_accuracy(Partitioning::Iid, ModelKind::LogReg), 0.85);
    }

    #[test]
    fn fedavg_iid_digits_mlp() {
        let kind = ModelKind::Mlp { hidden: 32 };
        assert_improves(&federated_digits_accuracy(Partitioning::Iid, kind), 0.85);
    }

    #[test]
    fn fedavg_dirichlet_digits() {
        let skewed = Partitioning::Dirichlet { alpha: 0.5 };
        for kind in [ModelKind::LogReg, ModelKind::Mlp { hidden: 32 }] {
            assert_improves(&federated_digits_accuracy(skewed, kind), 0.7);
        }
    }

    #[test]
    fn fedavg_synthetic_learns() {
        let spec = SyntheticSpec {
            samples_per_node: 40,
            num_features: 20,
            num_classes: 10,
            skew: 0.5,
            noise: 1.5,
        };
        let seed = 11;
        let clients: Vec<Dataset> = (0..30).map(|id| synthetic_partition(&spec, seed, id)).collect();
        let central = synthetic_test_set(&spec, seed, 1000);
        for kind in [ModelKind::LogReg, ModelKind::Mlp { hidden: 32 }] {
            let model = Model::new(kind, 20, 10);
            assert_improves(&simulate(&model, &clients, &central, 15, seed), 0.5);
        }
    }
}
