//! The transcendental functions of the recorded path, from one pure-Rust
//! library (`libm`, a port of musl's libm) instead of the platform's C
//! library.
//!
//! `f64::exp`, `ln`, `powf`, `cos`, ... call the C library, which picks its
//! code by CPU (glibc has FMA and AVX2 variants that differ in the last bit)
//! and differs between C libraries and versions. Everything whose result
//! reaches an event or an aggregated model (softmax and losses, the synthetic
//! data, Gaussian and Gamma draws, DP noise and clipping, FedOpt, QFedAvg)
//! calls these functions instead, so a run replays bit for bit on another CPU
//! or C library. `libm` is used without its `arch` feature: no code chosen at
//! run time, no fused multiply-add. `sqrt`, `abs`, `floor` and the basic
//! operations are exact in IEEE 754 and stay as they are.
//!
//! `tests/it/tidy.rs` forbids the standard library's transcendental methods,
//! `mul_add` and `std::arch` in the recorded path. This module does no I/O.

/// `e^x`.
#[inline]
pub fn exp(x: f64) -> f64 {
    libm::exp(x)
}

/// `e^x` in single precision.
#[inline]
pub(crate) fn exp_f32(x: f32) -> f32 {
    libm::expf(x)
}

/// The natural logarithm.
#[inline]
pub fn ln(x: f64) -> f64 {
    libm::log(x)
}

/// `x^y`.
#[inline]
pub fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// The cosine.
#[inline]
pub fn cos(x: f64) -> f64 {
    libm::cos(x)
}

/// `(sin x, cos x)`.
#[inline]
pub fn sin_cos(x: f64) -> (f64, f64) {
    libm::sincos(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values pinned from this implementation: they must not change with the
    /// CPU, the C library or the build (a change breaks every recorded run).
    #[test]
    fn results_are_pinned() {
        let bits = [
            exp(-0.3).to_bits(),
            ln(2.5).to_bits(),
            pow(0.9, 7.0).to_bits(),
            cos(1.0).to_bits(),
            sin_cos(2.0).0.to_bits(),
            sin_cos(2.0).1.to_bits(),
            u64::from(exp_f32(-1.5).to_bits()),
        ];
        let hex: Vec<String> = bits.iter().map(|b| format!("{b:016x}")).collect();
        // The same as glibc's correctly rounded results for these inputs.
        assert_eq!(
            hex,
            [
                "3fe7b4c869c37c05",
                "3fed5240f0e0e078",
                "3fde9c6a99d1cdbf",
                "3fe14a280fb5068c",
                "3fed18f6ead1b446",
                "bfdaa22657537205",
                "000000003e647c3c",
            ]
        );
    }
}
