//! Which build computed a run, and on what machine: this build's exact
//! identity (from `build.rs`: commit, dirty flag, a hash of the sources,
//! compiler, target) and the platform the process runs on (architecture, CPU
//! features, C library).
//!
//! The app process records both once per run (`AppProcessStarted`); a replay
//! compares them with its own, so that a verdict names another build or
//! another platform instead of blaming the ClientApp. The recorded numbers
//! themselves do not depend on the platform (`crate::math`); the platform is
//! recorded so that a remaining difference can be named.
//!
//! This module only reads what the process can see of itself (CPU
//! identification, the C library's version, one environment variable); it
//! writes nothing.

use crate::domain::event::{AppProcessStarted, BuildIdentity, Platform};

/// This build.
pub fn build() -> BuildIdentity {
    let commit = env!("FLORET_COMMIT");
    BuildIdentity {
        build: crate::BUILD.to_string(),
        commit: (!commit.is_empty()).then(|| commit.to_string()),
        dirty: match env!("FLORET_DIRTY") {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        sources: env!("FLORET_SOURCES").to_string(),
        compiler: env!("FLORET_RUSTC").to_string(),
        target: env!("FLORET_TARGET").to_string(),
        profile: env!("FLORET_PROFILE").to_string(),
        target_features: env!("FLORET_TARGET_FEATURES").to_string(),
    }
}

/// The platform this process runs on.
pub fn platform() -> Platform {
    Platform {
        arch: std::env::consts::ARCH.to_string(),
        os: std::env::consts::OS.to_string(),
        cpu_features: cpu_features(),
        libc: libc_name(),
    }
}

/// What the app process records about itself.
pub fn app_process() -> AppProcessStarted {
    AppProcessStarted {
        build: build(),
        platform: platform(),
    }
}

/// The CPU features for which C libraries and math code choose other code.
fn cpu_features() -> Vec<String> {
    let mut features: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($name) {
                    features.push($name);
                })*
            };
        }
        detect!("sse4.1", "sse4.2", "avx", "avx2", "fma", "avx512f");
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::arch::is_aarch64_feature_detected!($name) {
                    features.push($name);
                })*
            };
        }
        detect!("neon", "sve", "sve2");
    }
    features.into_iter().map(String::from).collect()
}

/// The C library and its version, with `GLIBC_TUNABLES` (which masks CPU
/// features from glibc) when set.
fn libc_name() -> String {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let name = {
        // SAFETY: glibc returns a pointer to a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        format!("glibc {}", version.to_string_lossy())
    };
    #[cfg(all(target_os = "linux", target_env = "musl"))]
    let name = "musl".to_string();
    #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
    let name = format!("{} libc", std::env::consts::OS);
    match std::env::var("GLIBC_TUNABLES") {
        Ok(tunables) if !tunables.is_empty() => format!("{name} (GLIBC_TUNABLES={tunables})"),
        _ => name,
    }
}

/// How a recorded build and platform differ from another (this process's),
/// as phrases for a verdict; empty when they are the same.
pub(crate) fn differences(recorded: &AppProcessStarted, here: &AppProcessStarted) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (&recorded.build, &here.build);
    if a.sources != b.sources || a.commit != b.commit || a.dirty != b.dirty {
        out.push(format!("recorded by another build ({}; this is {})", a.build, b.build));
    }
    for (what, x, y) in [
        ("compiler", &a.compiler, &b.compiler),
        ("target", &a.target, &b.target),
        ("profile", &a.profile, &b.profile),
        ("compiled CPU features", &a.target_features, &b.target_features),
    ] {
        if x != y {
            out.push(format!("compiled with another {what} ({x}; this is {y})"));
        }
    }
    let (p, q) = (&recorded.platform, &here.platform);
    if p.arch != q.arch || p.os != q.os {
        out.push(format!(
            "recorded on another platform ({} {}; this is {} {})",
            p.arch, p.os, q.arch, q.os
        ));
    }
    if p.cpu_features != q.cpu_features {
        out.push(format!(
            "recorded on another CPU (features {}; this one has {})",
            p.cpu_features.join(","),
            q.cpu_features.join(",")
        ));
    }
    if p.libc != q.libc {
        out.push(format!(
            "recorded with another C library ({}; this is {})",
            p.libc, q.libc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_identified_by_its_sources() {
        let build = build();
        assert_eq!(build.sources.len(), 64);
        assert!(build.build.contains(&build.sources[..12]), "{}", build.build);
        assert!(build.compiler.starts_with("rustc "), "{}", build.compiler);
        assert!(!build.target.is_empty());
    }

    #[test]
    fn differences_name_the_build_and_the_platform() {
        let here = app_process();
        assert!(differences(&here, &here).is_empty());
        let mut other = here.clone();
        other.build.sources = "0".repeat(64);
        other.platform.libc = "glibc 2.17".into();
        let found = differences(&other, &here);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("recorded by another build"));
        assert!(found[1].starts_with("recorded with another C library (glibc 2.17;"));
    }
}
