//! Datasets of the built-in workloads and how they are split among virtual
//! SuperNodes: the embedded UCI digits set, IID and Dirichlet (label-skew)
//! partitioning, per-partition train/test splits, and synthetic data generated
//! on demand for very large federations.
//!
//! Every random choice draws from a [`Prng`] stream: either one passed in by
//! the caller, or one derived here from a seed along a documented path under
//! [`purpose::DATA`] or [`purpose::SYNTHETIC`] (see [`stream`]). This module
//! never reads files, clocks or the operating system's randomness (the digits
//! set is compiled into the binary), and never trains or evaluates models.

use std::io::Read as _;
use std::sync::OnceLock;

use crate::math;
use crate::prng::{purpose, Prng};

/// Errors of this module: inconsistent data, or a split that cannot be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("dataset has {values} feature values for {rows} rows of {num_features} features")]
    FeatureCount {
        values: usize,
        rows: usize,
        num_features: usize,
    },
    #[error("dataset has label {label} but only {num_classes} classes")]
    Label { label: u32, num_classes: usize },
    /// The embedded digits set is unreadable (a broken build).
    #[error("cannot decompress digits: {0}")]
    Decompress(String),
    #[error("digits line {line}: {source}")]
    DigitsNumber {
        line: usize,
        source: std::num::ParseIntError,
    },
    #[error("digits line {line}: pixel {value}")]
    DigitsPixel { line: usize, value: u32 },
    #[error("digits line {line}: {count} fields, expected 65")]
    DigitsFields { line: usize, count: usize },
    #[error("num_partitions must be at least 1")]
    NoPartitions,
    #[error(
        "cannot split {examples} examples into {num_partitions} partitions: num_partitions must not exceed the \
         number of examples"
    )]
    MorePartitionsThanExamples { examples: usize, num_partitions: usize },
    #[error("alpha must be positive and finite, got {0}")]
    Alpha(f64),
    #[error("label {label} at index {index} is not below num_classes = {num_classes}")]
    LabelOutOfRange {
        label: u32,
        index: usize,
        num_classes: usize,
    },
    /// flwr-datasets says "Please update the values of alpha"; the usual
    /// cause is too few examples per partition, so this says both, with numbers.
    #[error(
        "cannot split {examples} examples into {num_partitions} label-skewed partitions of at least \
         {min_partition_size} examples each: that is {:.1} examples per partition on average, and in {attempts} \
         Dirichlet draws (alpha {}) the smallest partition got at most {best_smallest}; use fewer partitions \
         (SuperNodes), a larger alpha, or IID partitioning",
        *.examples as f64 / *.num_partitions as f64,
        crate::pyfmt::float_repr(*.alpha)
    )]
    Dirichlet {
        examples: usize,
        num_partitions: usize,
        min_partition_size: usize,
        attempts: usize,
        alpha: f64,
        best_smallest: usize,
    },
    #[error("digits can be split into 1 to {max_partitions} partitions (each needs a train and a test example), not {num_partitions}")]
    DigitsPartitions {
        max_partitions: usize,
        num_partitions: usize,
    },
    #[error("synthetic data needs at least one feature and one class, got {num_features} and {num_classes}")]
    SyntheticShape { num_features: usize, num_classes: usize },
    #[error("skew must be 0 (IID) or a positive Dirichlet alpha, got {0}")]
    Skew(f64),
    #[error("noise must be finite and non-negative, got {0}")]
    Noise(f32),
}

/// The second element of the stream paths this module derives from a seed.
/// The first element is [`purpose::DATA`] or [`purpose::SYNTHETIC`].
pub mod stream {
    /// `[purpose::DATA, HOLDOUT]`: which 20% of digits is the central test set.
    pub const HOLDOUT: u64 = 1;
    /// `[purpose::DATA, PARTITION]`: partitioning of the remaining 80%.
    pub const PARTITION: u64 = 2;
    /// `[purpose::SYNTHETIC, MEANS, num_features, num_classes]`: class means.
    pub const MEANS: u64 = 1;
    /// `[purpose::SYNTHETIC, NODE, partition_id]`: one partition's samples.
    pub const NODE: u64 = 2;
    /// `[purpose::SYNTHETIC, TEST]`: the central synthetic test set.
    pub const TEST: u64 = 3;
}

/// Labelled examples: `features` holds `len() * num_features` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    pub num_features: usize,
    pub num_classes: usize,
}

impl Dataset {
    /// A dataset whose sizes and labels are consistent; `Err` otherwise.
    pub fn new(
        features: Vec<f32>,
        labels: Vec<u32>,
        num_features: usize,
        num_classes: usize,
    ) -> Result<Dataset, Error> {
        let dataset = Dataset {
            features,
            labels,
            num_features,
            num_classes,
        };
        dataset.validate()?;
        Ok(dataset)
    }

    /// Checks that `features` has `len() * num_features` values and that
    /// every label is below `num_classes`.
    pub fn validate(&self) -> Result<(), Error> {
        let expected = self.labels.len().checked_mul(self.num_features);
        if expected != Some(self.features.len()) {
            return Err(Error::FeatureCount {
                values: self.features.len(),
                rows: self.labels.len(),
                num_features: self.num_features,
            });
        }
        if let Some(bad) = self.labels.iter().find(|&&l| l as usize >= self.num_classes) {
            return Err(Error::Label {
                label: *bad,
                num_classes: self.num_classes,
            });
        }
        Ok(())
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The features of example `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.num_features..(i + 1) * self.num_features]
    }

    /// The examples at `indices`, in that order (repeats allowed).
    /// Panics if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.num_features);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.row(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            features,
            labels,
            num_features: self.num_features,
            num_classes: self.num_classes,
        }
    }
}

static DIGITS_GZ: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz"));

/// The UCI handwritten digits (1,797 8x8 images, 10 classes), pixel values
/// scaled from 0..16 to [0, 1]. Parsed from the embedded copy on first use.
pub fn digits() -> &'static Dataset {
    static DIGITS: OnceLock<Dataset> = OnceLock::new();
    DIGITS.get_or_init(|| parse_digits(DIGITS_GZ).expect("the embedded digits.csv.gz is valid"))
}

fn parse_digits(gz: &[u8]) -> Result<Dataset, Error> {
    const PIXELS: usize = 64;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| Error::Decompress(e.to_string()))?;
    let mut features = Vec::with_capacity(1797 * PIXELS);
    let mut labels = Vec::with_capacity(1797);
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut count = 0;
        for (column, field) in line.split(',').enumerate() {
            let value: u32 = field.trim().parse().map_err(|source| Error::DigitsNumber {
                line: line_no + 1,
                source,
            })?;
            if column < PIXELS {
                if value > 16 {
                    return Err(Error::DigitsPixel {
                        line: line_no + 1,
                        value,
                    });
                }
                features.push(value as f32 / 16.0);
            } else {
                labels.push(value);
            }
            count += 1;
        }
        if count != PIXELS + 1 {
            return Err(Error::DigitsFields {
                line: line_no + 1,
                count,
            });
        }
    }
    Dataset::new(features, labels, PIXELS, 10)
}

/// Shuffles `0..n` and cuts it into `num_partitions` contiguous shards, the
/// first `n % num_partitions` of which get one extra item (HuggingFace's
/// `shard(contiguous=True)` rule). Partitions are empty when
/// `num_partitions > n`; no partitions when `num_partitions == 0`.
pub fn partition_iid(n: usize, num_partitions: usize, prng: &mut Prng) -> Vec<Vec<usize>> {
    if num_partitions == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    prng.shuffle(&mut order);
    let div = n / num_partitions;
    let rem = n % num_partitions;
    let mut start = 0;
    (0..num_partitions)
        .map(|i| {
            let size = div + usize::from(i < rem);
            let shard = order[start..start + size].to_vec();
            start += size;
            shard
        })
        .collect()
}

/// A Dirichlet(alpha, ..., alpha) draw over `k` items. When every Gamma draw
/// underflows (extremely small `alpha`), the weights are not finite; the draw
/// then degenerates to its limit, all mass on one item chosen by `prng`.
fn dirichlet(prng: &mut Prng, alpha: f64, k: usize) -> Vec<f64> {
    let weights = prng.dirichlet_f64(alpha, k);
    if weights.iter().all(|w| w.is_finite()) {
        return weights;
    }
    let winner = prng.below(k as u64) as usize;
    (0..k).map(|i| if i == winner { 1.0 } else { 0.0 }).collect()
}

/// Label-skewed partitions, following flwr-datasets' `DirichletPartitioner`
/// (without self-balancing): for each class present, in increasing label
/// order, draw proportions p ~ Dirichlet(alpha) over the partitions and cut
/// that class's indices (in dataset order) at `floor(cumsum(p) * n_k)`. If the
/// smallest partition has fewer than `min_partition_size` items, everything
/// is redrawn, at most 10 attempts. Finally each partition's indices are
/// shuffled, in partition order. All draws come from `prng`.
pub fn partition_dirichlet(
    labels: &[u32],
    num_classes: usize,
    num_partitions: usize,
    alpha: f64,
    min_partition_size: usize,
    prng: &mut Prng,
) -> Result<Vec<Vec<usize>>, Error> {
    const MAX_ATTEMPTS: usize = 10;
    if num_partitions == 0 {
        return Err(Error::NoPartitions);
    }
    if num_partitions > labels.len() {
        return Err(Error::MorePartitionsThanExamples {
            examples: labels.len(),
            num_partitions,
        });
    }
    if !(alpha > 0.0 && alpha.is_finite()) {
        return Err(Error::Alpha(alpha));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &label) in labels.iter().enumerate() {
        let slot = by_class.get_mut(label as usize).ok_or(Error::LabelOutOfRange {
            label,
            index: i,
            num_classes,
        })?;
        slot.push(i);
    }
    let mut best_smallest = 0;
    for _ in 0..MAX_ATTEMPTS {
        let mut partitions: Vec<Vec<usize>> = vec![Vec::new(); num_partitions];
        for class_indices in by_class.iter().filter(|c| !c.is_empty()) {
            let n_k = class_indices.len();
            let proportions = dirichlet(prng, alpha, num_partitions);
            let mut cumulative = 0.0f64;
            let mut start = 0usize;
            for (j, (partition, p)) in partitions.iter_mut().zip(&proportions).enumerate() {
                cumulative += p;
                // The last cut is the end of the class, as np.split's [:-1].
                let end = if j + 1 == num_partitions {
                    n_k
                } else {
                    ((cumulative * n_k as f64) as usize).clamp(start, n_k)
                };
                partition.extend_from_slice(&class_indices[start..end]);
                start = end;
            }
        }
        let smallest = partitions.iter().map(Vec::len).min().unwrap_or(0);
        if smallest >= min_partition_size {
            for partition in &mut partitions {
                prng.shuffle(partition);
            }
            return Ok(partitions);
        }
        best_smallest = best_smallest.max(smallest);
    }
    Err(Error::Dirichlet {
        examples: labels.len(),
        num_partitions,
        min_partition_size,
        attempts: MAX_ATTEMPTS,
        alpha,
        best_smallest,
    })
}

/// Splits `indices` without shuffling: the last `round(len * test_fraction)`
/// items (half away from zero; fraction clamped to [0, 1]) are the test set.
/// When `len >= 2` both sides get at least one item.
pub fn train_test_split(indices: &[usize], test_fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let len = indices.len();
    let fraction = if test_fraction.is_nan() {
        0.0
    } else {
        test_fraction.clamp(0.0, 1.0)
    };
    let mut test = (len as f64 * fraction).round() as usize;
    if len >= 2 {
        test = test.clamp(1, len - 1);
    } else {
        test = 0;
    }
    let (train, test) = indices.split_at(len - test);
    (train.to_vec(), test.to_vec())
}

/// How [`federated_digits`] spreads examples over partitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Partitioning {
    Iid,
    Dirichlet { alpha: f64 },
}

/// One virtual SuperNode's local data.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    pub train: Dataset,
    pub test: Dataset,
}

/// The digits set prepared for a federation.
#[derive(Clone, Debug, PartialEq)]
pub struct FederatedData {
    /// Held-out 20% of digits for central (server-side) evaluation.
    pub test: Dataset,
    /// Partition `i`'s 80/20 local train/test split.
    pub partitions: Vec<Partition>,
}

/// Fraction of the data held out for testing, centrally and per partition.
const TEST_FRACTION: f64 = 0.2;
/// flwr-datasets' default `min_partition_size`, lowered for many partitions.
const DIRICHLET_MIN_PARTITION_SIZE: usize = 10;

/// Digits for `num_partitions` SuperNodes, a pure function of its arguments.
///
/// 1. `[DATA, HOLDOUT]` shuffles all rows; the last 20% (359 rows) become the
///    central test set. Both sides are then put back in dataset order.
/// 2. The remaining 1,438 rows are partitioned with `[DATA, PARTITION]`:
///    [`partition_iid`], or [`partition_dirichlet`] with
///    `min_partition_size = min(10, rows / num_partitions)`.
/// 3. Each partition (already in shuffled order) is split 80/20 with
///    [`train_test_split`].
///
/// At most `rows / 2` (719) partitions, so that each gets a train and a test
/// example.
pub fn federated_digits(num_partitions: usize, partitioning: Partitioning, seed: u64) -> Result<FederatedData, Error> {
    let all = digits();
    let mut order: Vec<usize> = (0..all.len()).collect();
    Prng::stream(seed, &[purpose::DATA, stream::HOLDOUT]).shuffle(&mut order);
    let (mut pool_indices, mut test_indices) = train_test_split(&order, TEST_FRACTION);
    pool_indices.sort_unstable();
    test_indices.sort_unstable();
    let pool = all.subset(&pool_indices);
    let max_partitions = pool.len() / 2;
    if num_partitions == 0 || num_partitions > max_partitions {
        return Err(Error::DigitsPartitions {
            max_partitions,
            num_partitions,
        });
    }
    let mut prng = Prng::stream(seed, &[purpose::DATA, stream::PARTITION]);
    let partition_indices = match partitioning {
        Partitioning::Iid => partition_iid(pool.len(), num_partitions, &mut prng),
        Partitioning::Dirichlet { alpha } => partition_dirichlet(
            &pool.labels,
            pool.num_classes,
            num_partitions,
            alpha,
            DIRICHLET_MIN_PARTITION_SIZE.min(pool.len() / num_partitions),
            &mut prng,
        )?,
    };
    let partitions = partition_indices
        .iter()
        .map(|indices| {
            let (train, test) = train_test_split(indices, TEST_FRACTION);
            Partition {
                train: pool.subset(&train),
                test: pool.subset(&test),
            }
        })
        .collect();
    Ok(FederatedData {
        test: all.subset(&test_indices),
        partitions,
    })
}

/// Shape and difficulty of synthetic data. Every class `c` has a mean vector
/// whose components are standard normal; a sample of class `c` is that mean
/// plus `noise` times standard normal noise per feature, so `noise` sets the
/// difficulty (with 20 features, `noise = 1` is nearly separable and
/// `noise = 3` is hard).
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    pub samples_per_node: usize,
    pub num_features: usize,
    pub num_classes: usize,
    /// 0 = IID labels; > 0 = Dirichlet alpha of each node's label mix.
    pub skew: f64,
    pub noise: f32,
}

impl SyntheticSpec {
    /// `Err` unless there are features and classes, `skew` is finite and
    /// non-negative and `noise` is finite and non-negative.
    pub fn validate(&self) -> Result<(), Error> {
        if self.num_features == 0 || self.num_classes == 0 {
            return Err(Error::SyntheticShape {
                num_features: self.num_features,
                num_classes: self.num_classes,
            });
        }
        if !(self.skew >= 0.0 && self.skew.is_finite()) {
            return Err(Error::Skew(self.skew));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::Noise(self.noise));
        }
        Ok(())
    }

    /// The class means, row-major `[num_classes, num_features]`, from
    /// `[SYNTHETIC, MEANS, num_features, num_classes]`.
    fn means(&self, seed: u64) -> Vec<f32> {
        let path = [
            purpose::SYNTHETIC,
            stream::MEANS,
            self.num_features as u64,
            self.num_classes as u64,
        ];
        let mut prng = Prng::stream(seed, &path);
        let mut means = vec![0.0f32; self.num_classes * self.num_features];
        fill_normal(&mut prng, &mut means, 1.0);
        means
    }
}

/// Fills `out` with `scale * N(0, 1)` draws, using both outputs of each
/// Box-Muller pair (the last pair may be half used).
fn fill_normal(prng: &mut Prng, out: &mut [f32], scale: f32) {
    let mut pairs = out.chunks_mut(2);
    for pair in &mut pairs {
        let u1 = 1.0 - prng.unit_f64();
        let u2 = prng.unit_f64();
        let radius = (-2.0 * math::ln(u1)).sqrt();
        let (sin, cos) = math::sin_cos(std::f64::consts::TAU * u2);
        pair[0] = scale * (radius * cos) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = scale * (radius * sin) as f32;
        }
    }
}

/// `n` samples drawn from `prng`. Labels first (uniform, or from a per-call
/// Dirichlet(skew) mix drawn first), then the noise of all rows in order.
fn synthetic_samples(spec: &SyntheticSpec, means: &[f32], n: usize, prng: &mut Prng) -> Dataset {
    let (d, k) = (spec.num_features, spec.num_classes);
    let labels: Vec<u32> = if spec.skew > 0.0 {
        let mix = dirichlet(prng, spec.skew, k);
        (0..n)
            .map(|_| {
                let u = prng.unit_f64();
                let mut cumulative = 0.0;
                let mut label = k - 1;
                for (c, w) in mix.iter().enumerate() {
                    cumulative += w;
                    if u < cumulative {
                        label = c;
                        break;
                    }
                }
                label as u32
            })
            .collect()
    } else {
        (0..n).map(|_| prng.below(k as u64) as u32).collect()
    };
    let mut features = vec![0.0f32; n * d];
    fill_normal(prng, &mut features, spec.noise);
    for (row, &label) in features.chunks_exact_mut(d).zip(&labels) {
        let mean = &means[label as usize * d..(label as usize + 1) * d];
        for (x, m) in row.iter_mut().zip(mean) {
            *x += m;
        }
    }
    Dataset {
        features,
        labels,
        num_features: d,
        num_classes: k,
    }
}

/// Partition `partition_id`'s `samples_per_node` synthetic examples. Class
/// means come from `(seed, spec)` only, so all partitions share one task;
/// labels and noise come from `[SYNTHETIC, NODE, partition_id]`.
/// Panics if `spec` fails [`SyntheticSpec::validate`].
pub fn synthetic_partition(spec: &SyntheticSpec, seed: u64, partition_id: u64) -> Dataset {
    spec.validate().expect("invalid SyntheticSpec");
    let mut prng = Prng::stream(seed, &[purpose::SYNTHETIC, stream::NODE, partition_id]);
    synthetic_samples(spec, &spec.means(seed), spec.samples_per_node, &mut prng)
}

/// `n` synthetic examples with IID labels for central evaluation, from
/// `[SYNTHETIC, TEST]` (`spec.skew` and `samples_per_node` are ignored).
/// Panics if `spec` fails [`SyntheticSpec::validate`].
pub fn synthetic_test_set(spec: &SyntheticSpec, seed: u64, n: usize) -> Dataset {
    spec.validate().expect("invalid SyntheticSpec");
    let iid = SyntheticSpec {
        skew: 0.0,
        ..spec.clone()
    };
    let mut prng = Prng::stream(seed, &[purpose::SYNTHETIC, stream::TEST]);
    synthetic_samples(&iid, &spec.means(seed), n, &mut prng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_exact_cover(partitions: &[Vec<usize>], n: usize) {
        let mut all: Vec<usize> = partitions.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn digits_loads_balanced_classes() {
        let data = digits();
        assert_eq!(data.len(), 1797);
        assert_eq!(data.num_features, 64);
        assert_eq!(data.num_classes, 10);
        assert_eq!(data.features.len(), 1797 * 64);
        assert!(data.features.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert!(data.features.contains(&1.0));
        let mut counts = [0usize; 10];
        for &label in &data.labels {
            counts[label as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (170..=190).contains(&c)), "{counts:?}");
        // First row of the file: 0,0,5,13,... label 0.
        assert_eq!(data.row(0)[2], 5.0 / 16.0);
        assert_eq!(data.labels[0], 0);
    }

    #[test]
    fn subset_copies_rows_in_order() {
        let data = digits();
        let sub = data.subset(&[5, 0, 5]);
        assert_eq!(sub.len(), 3);
        assert_eq!(sub.row(0), data.row(5));
        assert_eq!(sub.row(1), data.row(0));
        assert_eq!(sub.labels, vec![data.labels[5], data.labels[0], data.labels[5]]);
        assert!(Dataset::new(vec![0.0; 3], vec![0, 1], 2, 2).is_err());
        assert!(Dataset::new(vec![0.0; 4], vec![0, 2], 2, 2).is_err());
    }

    #[test]
    fn iid_partitions_cover_and_follow_the_shard_rule() {
        let parts = partition_iid(103, 10, &mut Prng::from_seed(1));
        assert_exact_cover(&parts, 103);
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![11, 11, 11, 10, 10, 10, 10, 10, 10, 10]);
        assert_eq!(parts, partition_iid(103, 10, &mut Prng::from_seed(1)));
        assert_ne!(parts, partition_iid(103, 10, &mut Prng::from_seed(2)));
        assert!(partition_iid(5, 0, &mut Prng::from_seed(1)).is_empty());
    }

    #[test]
    fn dirichlet_partitions_cover_and_are_reproducible() {
        let labels = &digits().labels;
        let run = |seed, alpha| partition_dirichlet(labels, 10, 20, alpha, 10, &mut Prng::from_seed(seed)).unwrap();
        let parts = run(3, 0.5);
        assert_exact_cover(&parts, labels.len());
        assert!(parts.iter().all(|p| p.len() >= 10));
        assert_eq!(parts, run(3, 0.5));
        assert_ne!(parts, run(4, 0.5));
        // Indices within a partition are shuffled, not grouped by class.
        let p = &parts[0];
        assert!(p.windows(2).any(|w| w[0] > w[1]));
    }

    /// Mean over partitions of the share of the partition's majority class.
    fn majority_share(labels: &[u32], parts: &[Vec<usize>]) -> f64 {
        let shares: Vec<f64> = parts
            .iter()
            .map(|p| {
                let mut counts = [0usize; 10];
                for &i in p {
                    counts[labels[i] as usize] += 1;
                }
                *counts.iter().max().unwrap() as f64 / p.len() as f64
            })
            .collect();
        shares.iter().sum::<f64>() / shares.len() as f64
    }

    #[test]
    fn small_alpha_is_skewed_and_large_alpha_is_not() {
        let labels = &digits().labels;
        let skewed = partition_dirichlet(labels, 10, 10, 0.1, 1, &mut Prng::from_seed(5)).unwrap();
        let mild = partition_dirichlet(labels, 10, 10, 100.0, 1, &mut Prng::from_seed(5)).unwrap();
        let iid = partition_iid(labels.len(), 10, &mut Prng::from_seed(5));
        let (s, m, i) = (
            majority_share(labels, &skewed),
            majority_share(labels, &mild),
            majority_share(labels, &iid),
        );
        assert!(s > 0.5, "alpha 0.1: majority share {s}");
        assert!(m < 0.2 && i < 0.2, "alpha 100: {m}, iid: {i}");
    }

    #[test]
    fn dirichlet_rejects_impossible_requests() {
        let labels = [0u32, 1, 0, 1];
        let mut prng = Prng::from_seed(1);
        assert!(partition_dirichlet(&labels, 2, 5, 1.0, 0, &mut prng)
            .unwrap_err()
            .to_string()
            .contains("must not exceed"));
        assert_eq!(
            partition_dirichlet(&labels, 2, 4, 1.0, 2, &mut prng)
                .unwrap_err()
                .to_string(),
            "cannot split 4 examples into 4 label-skewed partitions of at least 2 examples each: that is 1.0 \
             examples per partition on average, and in 10 Dirichlet draws (alpha 1.0) the smallest partition \
             got at most 0; use fewer partitions (SuperNodes), a larger alpha, or IID partitioning"
        );
        assert!(partition_dirichlet(&labels, 1, 2, 1.0, 0, &mut prng).is_err());
        assert!(partition_dirichlet(&labels, 2, 2, 0.0, 0, &mut prng).is_err());
        assert!(partition_dirichlet(&labels, 2, 0, 1.0, 0, &mut prng).is_err());
        // Tiny alpha never panics and still covers everything.
        let parts = partition_dirichlet(&labels, 2, 2, 1e-6, 0, &mut prng).unwrap();
        assert_exact_cover(&parts, 4);
    }

    #[test]
    fn train_test_split_takes_the_tail() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(train_test_split(&items, 0.2), ((0..8).collect(), vec![8, 9]));
        assert_eq!(train_test_split(&[7, 3], 0.2), (vec![7], vec![3]));
        assert_eq!(train_test_split(&[7, 3], 0.9), (vec![7], vec![3]));
        assert_eq!(train_test_split(&[7], 0.5), (vec![7], vec![]));
        assert_eq!(train_test_split(&[], 0.5), (vec![], vec![]));
        assert_eq!(train_test_split(&items, 0.25).1, vec![7, 8, 9]);
    }

    #[test]
    fn federated_digits_is_pure_and_complete() {
        let a = federated_digits(10, Partitioning::Iid, 42).unwrap();
        assert_eq!(a, federated_digits(10, Partitioning::Iid, 42).unwrap());
        assert_ne!(a.test, federated_digits(10, Partitioning::Iid, 43).unwrap().test);
        assert_eq!(a.test.len(), 359);
        assert_eq!(a.partitions.len(), 10);
        let local: usize = a
            .partitions
            .iter()
            .map(|p| {
                assert!(!p.train.is_empty() && !p.test.is_empty());
                p.train.len() + p.test.len()
            })
            .sum();
        assert_eq!(local + a.test.len(), 1797);
        let skewed = federated_digits(10, Partitioning::Dirichlet { alpha: 0.5 }, 42).unwrap();
        assert_eq!(skewed.test, a.test, "the holdout does not depend on partitioning");
        assert!(skewed.partitions.iter().all(|p| p.train.len() + p.test.len() >= 10));
        assert!(federated_digits(0, Partitioning::Iid, 1).is_err());
        assert!(federated_digits(720, Partitioning::Iid, 1).is_err());
        assert!(federated_digits(719, Partitioning::Iid, 1).is_ok());
    }

    fn spec(skew: f64) -> SyntheticSpec {
        SyntheticSpec {
            samples_per_node: 50,
            num_features: 7,
            num_classes: 4,
            skew,
            noise: 1.0,
        }
    }

    #[test]
    fn synthetic_data_is_reproducible_per_partition() {
        for skew in [0.0, 0.3] {
            let s = spec(skew);
            let a = synthetic_partition(&s, 9, 17);
            let b = synthetic_partition(&s, 9, 17);
            let bits = |d: &Dataset| d.features.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.len(), 50);
            a.validate().unwrap();
            assert_ne!(a, synthetic_partition(&s, 9, 18));
            assert_ne!(a, synthetic_partition(&s, 10, 17));
        }
        assert_eq!(
            synthetic_test_set(&spec(0.3), 9, 30),
            synthetic_test_set(&spec(0.0), 9, 30)
        );
        assert!(spec(-1.0).validate().is_err());
        assert!(SyntheticSpec {
            num_classes: 0,
            ..spec(0.0)
        }
        .validate()
        .is_err());
    }

    #[test]
    fn synthetic_skew_concentrates_labels() {
        let s = SyntheticSpec {
            samples_per_node: 200,
            num_classes: 10,
            ..spec(0.05)
        };
        let data = synthetic_partition(&s, 1, 2);
        let mut counts = [0usize; 10];
        for &label in &data.labels {
            counts[label as usize] += 1;
        }
        assert!(*counts.iter().max().unwrap() > 100, "{counts:?}");
        let iid = synthetic_partition(&SyntheticSpec { skew: 0.0, ..s }, 1, 2);
        let mut counts = [0usize; 10];
        for &label in &iid.labels {
            counts[label as usize] += 1;
        }
        assert!(*counts.iter().max().unwrap() < 40, "{counts:?}");
    }
}
