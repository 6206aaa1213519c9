//! The models of the built-in workloads, multinomial logistic regression and a
//! one-hidden-layer ReLU perceptron, trained with minibatch SGD on softmax
//! cross-entropy (optionally with FedProx's proximal term) and evaluated on a
//! [`Dataset`]. Parameters cross this module's boundary as Flower
//! `ArrayRecord`s of float32 arrays with keys `"0"`, `"1"`, ...
//!
//! Computations are single-threaded with fixed loop and summation orders, so
//! the same inputs give bit-identical outputs on the same binary. Parameters
//! and activations are `f32`; only reported losses are accumulated in `f64`.
//! Randomness (initialisation, minibatch order) comes only from the [`Prng`]
//! passed in. This module never aggregates parameters across clients, never
//! chooses hyper-parameters and never panics on non-finite values: a NaN or
//! infinite loss is returned as is for the caller to judge.

use crate::math;
use crate::prng::Prng;
use crate::records::{Array, ArrayRecord, Values};

use super::data::Dataset;

/// Errors of this module: parameters, data or options that do not fit the
/// model. `model` is the model's description (`LogReg(64 features, 10 classes)`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{model} has an empty layer")]
    EmptyLayer { model: String },
    #[error(
        "{model} expects {expected} arrays with keys \"0\"..\"{}\", found {found} (keys {keys:?})",
        .expected - 1
    )]
    ArrayCount {
        model: String,
        expected: usize,
        found: usize,
        keys: Vec<String>,
    },
    #[error("{model}: array {index} has key {key:?}, expected \"{index}\"")]
    ArrayKey { model: String, index: usize, key: String },
    #[error("{model}: array \"{index}\" has dtype {dtype}, expected float32")]
    ArrayDtype {
        model: String,
        index: usize,
        dtype: &'static str,
    },
    #[error("{model}: array \"{index}\" has shape {shape:?}, expected {expected:?}")]
    ArrayShape {
        model: String,
        index: usize,
        shape: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("dataset has {found} features but {model} expects {expected}")]
    DataFeatures {
        found: usize,
        model: String,
        expected: usize,
    },
    #[error(transparent)]
    Data(#[from] super::data::Error),
    #[error("dataset has label {label} but {model} has {num_classes} classes")]
    DataLabel {
        label: u32,
        model: String,
        num_classes: usize,
    },
    #[error("dataset is empty")]
    EmptyData,
    #[error("epochs and batch_size must be at least 1, got {epochs} and {batch_size}")]
    EpochsOrBatchSize { epochs: usize, batch_size: usize },
    #[error("learning_rate must be finite, got {0}")]
    LearningRate(f32),
    #[error("proximal_mu must be finite and non-negative, got {0}")]
    ProximalMu(f32),
}

/// Which network a [`Model`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Multinomial logistic regression: `softmax(W x + b)`.
    LogReg,
    /// `softmax(W2 relu(W1 x + b1) + b2)`.
    Mlp { hidden: usize },
}

/// Hyper-parameters of one [`Model::train`] call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    /// Passes over the data; at least 1.
    pub epochs: usize,
    /// SGD step size; finite.
    pub learning_rate: f32,
    /// Examples per step (the last batch of an epoch may be smaller); at least 1.
    pub batch_size: usize,
    /// FedProx's mu; 0 disables the proximal term. Finite, non-negative.
    pub proximal_mu: f32,
}

/// Result of [`Model::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy per example.
    pub loss: f64,
    /// Fraction of examples whose highest logit (first on ties) is the label.
    pub accuracy: f64,
    pub num_examples: usize,
}

/// A model architecture of fixed input and output sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    kind: ModelKind,
    num_features: usize,
    num_classes: usize,
}

/// Per-call work buffers, so that the per-example loops never allocate.
struct Scratch {
    hidden: Vec<f32>,
    dhidden: Vec<f32>,
    logits: Vec<f32>,
}

impl Model {
    pub fn new(kind: ModelKind, num_features: usize, num_classes: usize) -> Model {
        Model {
            kind,
            num_features,
            num_classes,
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn num_features(&self) -> usize {
        self.num_features
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn hidden(&self) -> usize {
        match self.kind {
            ModelKind::LogReg => 0,
            ModelKind::Mlp { hidden } => hidden,
        }
    }

    /// The shapes of the arrays `"0"`, `"1"`, ..., in order.
    pub fn shapes(&self) -> Vec<Vec<usize>> {
        let (d, c) = (self.num_features, self.num_classes);
        match self.kind {
            ModelKind::LogReg => vec![vec![c, d], vec![c]],
            ModelKind::Mlp { hidden: h } => vec![vec![h, d], vec![h], vec![c, h], vec![c]],
        }
    }

    /// Total number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.shapes().iter().map(|s| s.iter().product::<usize>()).sum()
    }

    fn describe(&self) -> String {
        let (d, c) = (self.num_features, self.num_classes);
        match self.kind {
            ModelKind::LogReg => format!("LogReg({d} features, {c} classes)"),
            ModelKind::Mlp { hidden } => {
                format!("Mlp({d} features, {hidden} hidden, {c} classes)")
            }
        }
    }

    fn check_dims(&self) -> Result<(), Error> {
        let hidden_ok = !matches!(self.kind, ModelKind::Mlp { hidden: 0 });
        if self.num_features == 0 || self.num_classes == 0 || !hidden_ok {
            return Err(Error::EmptyLayer { model: self.describe() });
        }
        Ok(())
    }

    /// Initial parameters. LogReg: all zeros (draws nothing from `prng`).
    /// Mlp: W1 He-normal `N(0, 2 / features)`, then W2 Glorot-uniform
    /// `U(-a, a)` with `a = sqrt(6 / (hidden + classes))`, both drawn from
    /// `prng` in row-major order; biases zero.
    pub fn init(&self, prng: &mut Prng) -> ArrayRecord {
        let (d, c) = (self.num_features, self.num_classes);
        let arrays = match self.kind {
            ModelKind::LogReg => vec![
                Array::from_f32(vec![c, d], vec![0.0; c * d]),
                Array::from_f32(vec![c], vec![0.0; c]),
            ],
            ModelKind::Mlp { hidden: h } => {
                let std = (2.0 / d.max(1) as f64).sqrt();
                let w1: Vec<f32> = (0..h * d).map(|_| (prng.normal_f64() * std) as f32).collect();
                let limit = (6.0 / (h + c).max(1) as f64).sqrt();
                let w2: Vec<f32> = (0..c * h)
                    .map(|_| ((2.0 * prng.unit_f64() - 1.0) * limit) as f32)
                    .collect();
                vec![
                    Array::from_f32(vec![h, d], w1),
                    Array::from_f32(vec![h], vec![0.0; h]),
                    Array::from_f32(vec![c, h], w2),
                    Array::from_f32(vec![c], vec![0.0; c]),
                ]
            }
        };
        ArrayRecord::from_arrays(arrays)
    }

    /// `Ok` when `params` holds exactly the keys `"0"`, `"1"`, ... in order,
    /// each a float32 array of the expected shape.
    pub fn check(&self, params: &ArrayRecord) -> Result<(), Error> {
        self.check_dims()?;
        let shapes = self.shapes();
        if params.len() != shapes.len() {
            return Err(Error::ArrayCount {
                model: self.describe(),
                expected: shapes.len(),
                found: params.len(),
                keys: params.keys().map(str::to_string).collect(),
            });
        }
        for (i, ((key, array), shape)) in params.iter().zip(&shapes).enumerate() {
            if key != i.to_string() {
                return Err(Error::ArrayKey {
                    model: self.describe(),
                    index: i,
                    key: key.to_string(),
                });
            }
            if !matches!(array.values, Values::F32(_)) {
                return Err(Error::ArrayDtype {
                    model: self.describe(),
                    index: i,
                    dtype: array.dtype(),
                });
            }
            if array.shape != *shape || array.len() != shape.iter().product::<usize>() {
                return Err(Error::ArrayShape {
                    model: self.describe(),
                    index: i,
                    shape: array.shape.clone(),
                    expected: shape.clone(),
                });
            }
        }
        Ok(())
    }

    fn check_data(&self, data: &Dataset) -> Result<(), Error> {
        if data.num_features != self.num_features {
            return Err(Error::DataFeatures {
                found: data.num_features,
                model: self.describe(),
                expected: self.num_features,
            });
        }
        data.validate()?;
        if let Some(bad) = data.labels.iter().find(|&&l| l as usize >= self.num_classes) {
            return Err(Error::DataLabel {
                label: *bad,
                model: self.describe(),
                num_classes: self.num_classes,
            });
        }
        if data.is_empty() {
            return Err(Error::EmptyData);
        }
        Ok(())
    }

    /// All parameters in one vector, in key order. Call after [`Model::check`].
    fn flatten(&self, params: &ArrayRecord) -> Vec<f32> {
        let mut flat = Vec::with_capacity(self.num_parameters());
        for array in params.values() {
            if let Values::F32(values) = &array.values {
                flat.extend_from_slice(values);
            }
        }
        flat
    }

    fn unflatten(&self, flat: &[f32]) -> ArrayRecord {
        let mut rest = flat;
        let arrays = self
            .shapes()
            .into_iter()
            .map(|shape| {
                let (head, tail) = rest.split_at(shape.iter().product());
                rest = tail;
                Array::from_f32(shape, head.to_vec())
            })
            .collect();
        ArrayRecord::from_arrays(arrays)
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            hidden: vec![0.0; self.hidden()],
            dhidden: vec![0.0; self.hidden()],
            logits: vec![0.0; self.num_classes],
        }
    }

    /// Computes `s.logits` (and `s.hidden`) for one example.
    fn forward(&self, p: &[f32], x: &[f32], s: &mut Scratch) {
        let (d, c) = (self.num_features, self.num_classes);
        match self.kind {
            ModelKind::LogReg => {
                let (w, b) = p.split_at(c * d);
                linear(w, b, x, &mut s.logits);
            }
            ModelKind::Mlp { hidden: h } => {
                let (w1, rest) = p.split_at(h * d);
                let (b1, rest) = rest.split_at(h);
                let (w2, b2) = rest.split_at(c * h);
                linear(w1, b1, x, &mut s.hidden);
                for v in &mut s.hidden {
                    // NaN stays NaN, as in PyTorch's relu.
                    if *v < 0.0 {
                        *v = 0.0;
                    }
                }
                linear(w2, b2, &s.hidden, &mut s.logits);
            }
        }
    }

    /// Adds the gradient of one example's loss to `grad`, given `s.logits`
    /// already turned into `softmax - onehot` and `s.hidden` from `forward`.
    fn backward(&self, p: &[f32], x: &[f32], s: &mut Scratch, grad: &mut [f32]) {
        let (d, c) = (self.num_features, self.num_classes);
        match self.kind {
            ModelKind::LogReg => {
                let (gw, gb) = grad.split_at_mut(c * d);
                for ((row, gbk), &dz) in gw.chunks_exact_mut(d).zip(gb).zip(&s.logits) {
                    axpy(row, dz, x);
                    *gbk += dz;
                }
            }
            ModelKind::Mlp { hidden: h } => {
                let w2 = &p[h * d + h..h * d + h + c * h];
                let (gw1, rest) = grad.split_at_mut(h * d);
                let (gb1, rest) = rest.split_at_mut(h);
                let (gw2, gb2) = rest.split_at_mut(c * h);
                s.dhidden.fill(0.0);
                let rows = gw2.chunks_exact_mut(h).zip(gb2).zip(w2.chunks_exact(h));
                for (((grow, gbk), wrow), &dz) in rows.zip(&s.logits) {
                    axpy(grow, dz, &s.hidden);
                    *gbk += dz;
                    axpy(&mut s.dhidden, dz, wrow);
                }
                let rows = gw1.chunks_exact_mut(d).zip(gb1);
                for (((grow, gbj), &dh), &hj) in rows.zip(&s.dhidden).zip(&s.hidden) {
                    if hj > 0.0 {
                        axpy(grow, dh, x);
                        *gbj += dh;
                    }
                }
            }
        }
    }

    /// `epochs` passes of minibatch SGD over `data`, each in a fresh order
    /// drawn from `prng` (identity then Fisher-Yates). Each step moves the
    /// parameters by `-learning_rate * (mean gradient of the batch's
    /// cross-entropy + proximal_mu * (w - w_global))`, where `w_global` are
    /// the `params` passed in. Returns the new parameters and the mean
    /// cross-entropy (without the proximal term) over the examples of the
    /// last epoch, each measured before its batch's step.
    pub fn train(
        &self,
        params: &ArrayRecord,
        data: &Dataset,
        opts: &TrainOptions,
        prng: &mut Prng,
    ) -> Result<(ArrayRecord, f64), Error> {
        self.check(params)?;
        self.check_data(data)?;
        if opts.epochs == 0 || opts.batch_size == 0 {
            return Err(Error::EpochsOrBatchSize {
                epochs: opts.epochs,
                batch_size: opts.batch_size,
            });
        }
        if !opts.learning_rate.is_finite() {
            return Err(Error::LearningRate(opts.learning_rate));
        }
        if !(opts.proximal_mu >= 0.0 && opts.proximal_mu.is_finite()) {
            return Err(Error::ProximalMu(opts.proximal_mu));
        }
        let mut w = self.flatten(params);
        let global = (opts.proximal_mu > 0.0).then(|| w.clone());
        let mut grad = vec![0.0f32; w.len()];
        let mut s = self.scratch();
        let n = data.len();
        let mut order: Vec<usize> = Vec::with_capacity(n);
        let mut epoch_loss = 0.0f64;
        for _ in 0..opts.epochs {
            order.clear();
            order.extend(0..n);
            prng.shuffle(&mut order);
            epoch_loss = 0.0;
            for batch in order.chunks(opts.batch_size) {
                grad.fill(0.0);
                for &i in batch {
                    let x = data.row(i);
                    self.forward(&w, x, &mut s);
                    epoch_loss += softmax_xent_grad(&mut s.logits, data.labels[i] as usize);
                    self.backward(&w, x, &mut s, &mut grad);
                }
                let step = opts.learning_rate / batch.len() as f32;
                match &global {
                    None => axpy(&mut w, -step, &grad),
                    Some(w0) => {
                        let pull = opts.learning_rate * opts.proximal_mu;
                        for ((wi, &gi), &w0i) in w.iter_mut().zip(&grad).zip(w0) {
                            *wi -= step * gi + pull * (*wi - w0i);
                        }
                    }
                }
            }
        }
        Ok((self.unflatten(&w), epoch_loss / n as f64))
    }

    /// Mean cross-entropy and accuracy of `params` on `data`, in data order.
    pub fn evaluate(&self, params: &ArrayRecord, data: &Dataset) -> Result<Evaluation, Error> {
        self.check(params)?;
        self.check_data(data)?;
        let w = self.flatten(params);
        let mut s = self.scratch();
        let mut total_loss = 0.0f64;
        let mut correct = 0usize;
        for (i, &label) in data.labels.iter().enumerate() {
            self.forward(&w, data.row(i), &mut s);
            let z = &s.logits;
            let mut best = 0;
            for (k, &v) in z.iter().enumerate() {
                if v > z[best] {
                    best = k;
                }
            }
            correct += usize::from(best == label as usize);
            total_loss += cross_entropy(z, label as usize);
        }
        let n = data.len();
        Ok(Evaluation {
            loss: total_loss / n as f64,
            accuracy: correct as f64 / n as f64,
            num_examples: n,
        })
    }
}

/// `out[k] = b[k] + w[k, :] . x` for a row-major `w` of `out.len()` rows.
#[inline]
fn linear(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    for ((o, row), &bk) in out.iter_mut().zip(w.chunks_exact(x.len())).zip(b) {
        *o = bk + dot(row, x);
    }
}

/// Dot product with eight interleaved partial sums (so that it vectorises),
/// combined in a fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(xa).zip(xb) {
            *s += p * q;
        }
    }
    let mut tail = 0.0f32;
    for (&p, &q) in ra.iter().zip(rb) {
        tail += p * q;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y += a * x`.
#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Cross-entropy of `logits` for `label`, via a max-shifted log-sum-exp.
fn cross_entropy(logits: &[f32], label: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = logits.iter().map(|&v| math::exp_f32(v - max)).sum();
    math::ln(f64::from(sum)) - f64::from(logits[label] - max)
}

/// Replaces `logits` by `softmax(logits) - onehot(label)`, the gradient of
/// the cross-entropy with respect to the logits, and returns that loss.
fn softmax_xent_grad(logits: &mut [f32], label: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let shifted_label = logits[label] - max;
    let mut sum = 0.0f32;
    for v in logits.iter_mut() {
        *v = math::exp_f32(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in logits.iter_mut() {
        *v *= inv;
    }
    logits[label] -= 1.0;
    math::ln(f64::from(sum)) - f64::from(shifted_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::data::{digits, train_test_split};

    fn split_digits(seed: u64) -> (Dataset, Dataset) {
        let all = digits();
        let mut order: Vec<usize> = (0..all.len()).collect();
        Prng::from_seed(seed).shuffle(&mut order);
        let (train, test) = train_test_split(&order, 0.2);
        (all.subset(&train), all.subset(&test))
    }

    fn opts(epochs: usize) -> TrainOptions {
        TrainOptions {
            epochs,
            learning_rate: 0.1,
            batch_size: 32,
            proximal_mu: 0.0,
        }
    }

    fn centralised(kind: ModelKind) -> Vec<(f64, f64)> {
        let (train, test) = split_digits(1);
        let model = Model::new(kind, 64, 10);
        let mut params = model.init(&mut Prng::from_seed(2));
        let mut prng = Prng::from_seed(3);
        let mut history = Vec::new();
        for _ in 0..8 {
            let (next, loss) = model.train(&params, &train, &opts(1), &mut prng).unwrap();
            params = next;
            let eval = model.evaluate(&params, &test).unwrap();
            assert_eq!(eval.num_examples, 359);
            println!("{kind:?}: train loss {loss:.4}, test {eval:?}");
            history.push((loss, eval.accuracy));
        }
        history
    }

    fn assert_learns(history: &[(f64, f64)]) {
        for pair in history.windows(2) {
            assert!(pair[1].0 < pair[0].0, "loss went up: {history:?}");
        }
        assert!(history.last().unwrap().1 > 0.90, "{history:?}");
    }

    #[test]
    fn logreg_learns_digits() {
        assert_learns(&centralised(ModelKind::LogReg));
    }

    #[test]
    fn mlp_learns_digits() {
        assert_learns(&centralised(ModelKind::Mlp { hidden: 32 }));
    }

    #[test]
    fn init_and_check_agree_on_the_layout() {
        let mlp = Model::new(ModelKind::Mlp { hidden: 5 }, 3, 2);
        let params = mlp.init(&mut Prng::from_seed(1));
        mlp.check(&params).unwrap();
        let keys: Vec<&str> = params.keys().collect();
        assert_eq!(keys, ["0", "1", "2", "3"]);
        let shapes: Vec<Vec<usize>> = params.values().map(|a| a.shape.clone()).collect();
        assert_eq!(shapes, vec![vec![5, 3], vec![5], vec![2, 5], vec![2]]);
        assert_eq!(mlp.num_parameters(), 15 + 5 + 10 + 2);
        assert_eq!(params, mlp.init(&mut Prng::from_seed(1)));
        assert_ne!(params, mlp.init(&mut Prng::from_seed(2)));

        let logreg = Model::new(ModelKind::LogReg, 3, 2);
        let err = logreg.check(&params).unwrap_err().to_string();
        assert!(err.contains("expects 2 arrays"), "{err}");
        let mut wrong = logreg.init(&mut Prng::from_seed(1));
        wrong.insert("1", Array::from_f64(vec![2], vec![0.0, 0.0]));
        assert!(logreg.check(&wrong).unwrap_err().to_string().contains("float64"));
        wrong.insert("1", Array::from_f32(vec![1, 2], vec![0.0, 0.0]));
        assert!(logreg.check(&wrong).unwrap_err().to_string().contains("shape [1, 2]"));
        let renamed: ArrayRecord = logreg
            .init(&mut Prng::from_seed(1))
            .into_iter()
            .map(|(k, a)| (format!("w{k}"), a))
            .collect();
        assert!(logreg.check(&renamed).unwrap_err().to_string().contains("key"));
        let empty = Model::new(ModelKind::Mlp { hidden: 0 }, 3, 2);
        assert!(empty.check(&empty.init(&mut Prng::from_seed(1))).is_err());
    }

    #[test]
    fn training_is_bit_reproducible() {
        let (train, _) = split_digits(4);
        let train = train.subset(&(0..150).collect::<Vec<_>>());
        for kind in [ModelKind::LogReg, ModelKind::Mlp { hidden: 16 }] {
            let model = Model::new(kind, 64, 10);
            let params = model.init(&mut Prng::from_seed(5));
            let run = |seed| {
                let o = TrainOptions {
                    proximal_mu: 0.01,
                    ..opts(2)
                };
                let (p, loss) = model.train(&params, &train, &o, &mut Prng::from_seed(seed)).unwrap();
                (p.digest(), loss.to_bits())
            };
            assert_eq!(run(6), run(6));
            assert_ne!(run(6).0, run(7).0);
        }
    }

    #[test]
    fn proximal_term_keeps_parameters_close() {
        let (train, _) = split_digits(8);
        let model = Model::new(ModelKind::LogReg, 64, 10);
        let start = model.init(&mut Prng::from_seed(1));
        let distance = |mu| {
            let o = TrainOptions {
                proximal_mu: mu,
                ..opts(2)
            };
            let (p, _) = model.train(&start, &train, &o, &mut Prng::from_seed(9)).unwrap();
            let (a, b) = (model.flatten(&p), model.flatten(&start));
            a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>()
        };
        assert!(distance(1.0) < 0.5 * distance(0.0));
    }

    #[test]
    fn bad_inputs_are_errors_and_nan_is_reported() {
        let (train, _) = split_digits(1);
        let model = Model::new(ModelKind::LogReg, 64, 10);
        let params = model.init(&mut Prng::from_seed(1));
        let mut prng = Prng::from_seed(1);
        for bad in [
            TrainOptions { epochs: 0, ..opts(1) },
            TrainOptions {
                batch_size: 0,
                ..opts(1)
            },
            TrainOptions {
                learning_rate: f32::NAN,
                ..opts(1)
            },
            TrainOptions {
                proximal_mu: -1.0,
                ..opts(1)
            },
        ] {
            assert!(model.train(&params, &train, &bad, &mut prng).is_err());
        }
        let empty = train.subset(&[]);
        assert!(model.train(&params, &empty, &opts(1), &mut prng).is_err());
        assert!(model.evaluate(&params, &empty).is_err());
        let other = Model::new(ModelKind::LogReg, 63, 10);
        assert!(other
            .evaluate(&other.init(&mut prng), &train)
            .unwrap_err()
            .to_string()
            .contains("features"));

        let nan = model.unflatten(&vec![f32::NAN; model.num_parameters()]);
        let (after, loss) = model.train(&nan, &train, &opts(1), &mut prng).unwrap();
        assert!(loss.is_nan());
        assert!(model.evaluate(&after, &train).unwrap().loss.is_nan());
        let huge = TrainOptions {
            learning_rate: 1e30,
            ..opts(3)
        };
        let (_, loss) = model.train(&params, &train, &huge, &mut prng).unwrap();
        assert!(!loss.is_finite() || loss > 1.0);
    }

    #[test]
    fn dot_matches_naive_sum_closely() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.25).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
        let mut logits = vec![1000.0f32, 0.0, -1000.0];
        let loss = softmax_xent_grad(&mut logits, 0);
        assert!(loss.abs() < 1e-6 && logits.iter().all(|v| v.is_finite()));
        assert!((cross_entropy(&[1000.0, 0.0, -1000.0], 1) - 1000.0).abs() < 1e-3);
    }
}
