//! The one pseudo-random generator of the simulation, and how child streams are
//! derived from a run's seed.
//!
//! The algorithm is pinned here, not borrowed from `rand`: `StdRng`/`SmallRng`
//! may change between releases, and a replay must draw the same numbers years
//! later. We use xoshiro256++ (Blackman and Vigna, 2019) seeded through
//! SplitMix64, both written out below in a few lines.
//!
//! Every random decision of a run draws from a *stream* derived from
//! `(seed, path)`, where the path names what the numbers are for, e.g.
//! `[purpose::SAMPLE_TRAIN, round]` or `[purpose::CLIENT, round, node_id]`.
//! Streams are independent of the order in which they are created, which is
//! what lets clients run on any number of threads and still draw the same
//! numbers.
//!
//! This module never reads the clock or the operating system's randomness.

use crate::math;

/// Names of the streams a run draws from. Each is a distinct 64-bit tag so that
/// two purposes never share a stream by accident.
pub mod purpose {
    /// Node ids of the virtual SuperNodes.
    pub const NODE_IDS: u64 = 0x6e6f_6465_5f69_6473; // "node_ids"
    /// Sampling of the nodes for a training round.
    pub const SAMPLE_TRAIN: u64 = 0x7361_6d70_6c5f_7472; // "sampl_tr"
    /// Sampling of the nodes for an evaluation round.
    pub const SAMPLE_EVALUATE: u64 = 0x7361_6d70_6c5f_6576; // "sampl_ev"
    /// Dataset shuffling and partitioning.
    pub const DATA: u64 = 0x6461_7461_5f70_6172; // "data_par"
    /// Initial model parameters.
    pub const MODEL_INIT: u64 = 0x6d6f_6465_6c5f_696e; // "model_in"
    /// Randomness of one ClientApp call (minibatch order, dropout, ...).
    pub const CLIENT: u64 = 0x636c_6965_6e74_5f63; // "client_c"
    /// Server-side noise, e.g. differential privacy.
    pub const SERVER_NOISE: u64 = 0x7365_7276_5f6e_6f69; // "serv_noi"
    /// Synthetic data generation.
    pub const SYNTHETIC: u64 = 0x7379_6e74_685f_6461; // "synth_da"
    /// The seed of a Python ServerApp's global generators.
    pub const PY_SERVER: u64 = 0x7079_5f73_6572_7665; // "py_serve"
    /// The seed of one Python ClientApp call: `[PY_CLIENT, node_id, k]`,
    /// the k-th message to that node.
    pub const PY_CLIENT: u64 = 0x7079_5f63_6c69_656e; // "py_clien"
}

/// SplitMix64 step: the standard seed expander for the xoshiro family.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mixes a path into a seed, one element at a time. Distinct paths give
/// unrelated seeds; the same path always gives the same seed.
pub fn derive_seed(seed: u64, path: &[u64]) -> u64 {
    let mut state = seed;
    let mut acc = splitmix64(&mut state);
    for &element in path {
        state = acc ^ element.wrapping_mul(0xd1b5_4a32_d192_ed03);
        acc = splitmix64(&mut state);
    }
    acc
}

/// A xoshiro256++ generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prng {
    state: [u64; 4],
}

impl Prng {
    /// A generator seeded from one 64-bit value.
    pub fn from_seed(seed: u64) -> Prng {
        let mut sm = seed;
        let mut state = [0u64; 4];
        for word in &mut state {
            *word = splitmix64(&mut sm);
        }
        // xoshiro must not start from the all-zero state; SplitMix64 never
        // yields four zeros in a row, but keep the invariant visible.
        assert!(state.iter().any(|&w| w != 0));
        Prng { state }
    }

    /// The stream for `path` under `seed`; see the module documentation.
    pub fn stream(seed: u64, path: &[u64]) -> Prng {
        Prng::from_seed(derive_seed(seed, path))
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.state;
        let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let mut s = [s0, s1, s2 ^ s0, s3 ^ s1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        self.state = s;
        result
    }

    /// A uniform integer in `0..n` without modulo bias (Lemire's method).
    /// `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no valid result");
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        let mut low = product as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
                low = product as u64;
            }
        }
        (product >> 64) as u64
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        assert!(denominator > 0 && numerator <= denominator);
        self.below(denominator) < numerator
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// `k` distinct indices out of `0..n`, in the order they were drawn
    /// (a partial Fisher-Yates shuffle). `k` must not exceed `n`.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "cannot sample {k} of {n}");
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.below((n - i) as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box-Muller, one value per call).
    pub fn normal_f64(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.unit_f64();
        let u2 = self.unit_f64();
        (-2.0 * math::ln(u1)).sqrt() * math::cos(std::f64::consts::TAU * u2)
    }

    /// A Gamma(shape, 1) draw (Marsaglia and Tsang), used for Dirichlet draws.
    pub fn gamma_f64(&mut self, shape: f64) -> f64 {
        assert!(shape > 0.0 && shape.is_finite());
        if shape < 1.0 {
            // Boost: Gamma(a) = Gamma(a + 1) * U^(1/a).
            let u = 1.0 - self.unit_f64();
            return self.gamma_f64(shape + 1.0) * math::pow(u, 1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal_f64();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.unit_f64();
            if math::ln(u) < 0.5 * x * x + d - d * v + d * math::ln(v) {
                return d * v;
            }
        }
    }

    /// A Dirichlet(alpha, ..., alpha) draw of `k` weights summing to 1.
    pub fn dirichlet_f64(&mut self, alpha: f64, k: usize) -> Vec<f64> {
        let mut weights: Vec<f64> = (0..k).map(|_| self.gamma_f64(alpha)).collect();
        let total: f64 = weights.iter().sum();
        for weight in &mut weights {
            *weight /= total;
        }
        weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_reference_vector() {
        // Reference: xoshiro256++ from state {1, 2, 3, 4} (the authors' C code).
        let mut prng = Prng { state: [1, 2, 3, 4] };
        let first: Vec<u64> = (0..4).map(|_| prng.next_u64()).collect();
        assert_eq!(first, vec![41943041, 58720359, 3588806011781223, 3591011842654386]);
    }

    #[test]
    fn streams_depend_on_path_not_on_creation_order() {
        let a = Prng::stream(7, &[purpose::CLIENT, 1, 99]).next_u64();
        let _noise = Prng::stream(7, &[purpose::SAMPLE_TRAIN, 1]).next_u64();
        let b = Prng::stream(7, &[purpose::CLIENT, 1, 99]).next_u64();
        assert_eq!(a, b);
        assert_ne!(a, Prng::stream(7, &[purpose::CLIENT, 1, 98]).next_u64());
        assert_ne!(a, Prng::stream(8, &[purpose::CLIENT, 1, 99]).next_u64());
        assert_ne!(derive_seed(1, &[2, 3]), derive_seed(1, &[3, 2]));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut prng = Prng::from_seed(1);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let value = prng.below(7) as usize;
            seen[value] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn sample_indices_are_distinct() {
        let mut prng = Prng::from_seed(3);
        let mut sample = prng.sample_indices(100, 30);
        sample.sort_unstable();
        sample.dedup();
        assert_eq!(sample.len(), 30);
        assert!(sample.iter().all(|&i| i < 100));
    }

    #[test]
    fn dirichlet_weights_sum_to_one() {
        let mut prng = Prng::from_seed(11);
        for alpha in [0.1, 0.5, 1.0, 10.0] {
            let weights = prng.dirichlet_f64(alpha, 10);
            let total: f64 = weights.iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "alpha {alpha}: {total}");
            assert!(weights.iter().all(|&w| (0.0..=1.0).contains(&w)));
        }
    }
}
