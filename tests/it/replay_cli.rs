//! `flwr replay` through the real binaries, for what makes a replay worth
//! trusting: runs replay identically when the C library picks other code
//! (CPU features masked with `GLIBC_TUNABLES`), every seed the product prints
//! is accepted back (also those ≥ 2^63), and a run still in progress gets
//! its own verdict and exit status.

use crate::support::{quickstart, quickstart_with, wait_until, Home};

/// CPU features glibc is told to ignore, as on an older CPU: its libm then
/// picks its SSE2 code instead of the FMA/AVX2 variants.
const MASKS: &[&str] = &[
    "glibc.cpu.hwcaps=-FMA,-AVX2",
    "glibc.cpu.hwcaps=-FMA,-AVX2,-AVX512F,-AVX512DQ,-AVX,-SSE4_2,-SSE4_1",
];

/// Apps that exercise every transcendental function of the recorded path:
/// softmax and losses (logreg, MLP), Gaussian DP noise on a float64 model
/// (FedAdam keeps float64 arrays), adaptive clipping (exp), FedOpt and
/// QFedAvg (pow), the synthetic dataset (Box-Muller: ln, sin, cos) and
/// Dirichlet partitions (Gamma draws: ln, pow).
const APPS: &[(&str, &str)] = &[
    ("logreg", "num-server-rounds = 4\npartitioning = \"dirichlet\""),
    (
        "mlp",
        "num-server-rounds = 5\nstrategy.name = \"FedAdam\"\nstrategy.eta = 0.05\n\
         dp.mode = \"server-fixed\"\ndp.noise-multiplier = 0.5\ndp.clipping-norm = 5.0\ndp.num-sampled-clients = 5",
    ),
    (
        "logreg",
        "num-server-rounds = 4\nstrategy.name = \"FedYogi\"\ndp.mode = \"server-adaptive\"\n\
         dp.noise-multiplier = 0.2\ndp.num-sampled-clients = 5",
    ),
    (
        "mlp",
        "num-server-rounds = 3\nfraction-train = 1.0\nstrategy.name = \"QFedAvg\"\n\
         strategy.client-learning-rate = 0.3\ndataset = \"synthetic\"\nsynthetic.skew = 0.5",
    ),
];

fn app_dir(clientapp: &str, config: &str) -> tempfile::TempDir {
    let dir = quickstart_with(config);
    let path = dir.path().join("pyproject.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace(
            "clientapp = \"floret:logreg\"",
            &format!("clientapp = \"floret:{clientapp}\""),
        )
        .replace("fraction-train = 0.5\n", "")
        .replace("dataset = \"digits\"\n", "");
    std::fs::write(&path, text).unwrap();
    dir
}

fn submit(home: &Home, app: &std::path::Path, config: &str) -> u64 {
    let ran = home.flwr(&["run", app.to_str().unwrap(), "--format", "json", "-c", config]);
    ran.ok();
    ran.json()["run-id"].as_str().unwrap().parse().unwrap()
}

fn replay_json(home: &Home, run_id: u64, tunables: Option<&str>) -> (i32, serde_json::Value) {
    let mut command = home.command("flwr", &["replay", &run_id.to_string(), "--format", "json"]);
    if let Some(tunables) = tunables {
        command.env("GLIBC_TUNABLES", tunables);
    }
    let output = command.output().expect("run flwr replay");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    (output.status.code().unwrap_or(-1), json)
}

/// Runs recorded with every CPU feature replay identically when glibc is
/// told to ignore FMA, AVX2 and more (before the fix, the platform's libm
/// gave other last bits and about half of these runs diverged).
#[test]
fn replays_are_identical_when_the_c_library_picks_other_code() {
    let home = Home::new();
    let mut runs = Vec::new();
    for (clientapp, config) in APPS {
        let app = app_dir(clientapp, config);
        for seed in [1u64, 2, 3] {
            runs.push((
                submit(&home, app.path(), &format!("seed={seed}")),
                *clientapp,
                *config,
                seed,
            ));
        }
    }
    let mut failures = Vec::new();
    for (run_id, clientapp, config, seed) in &runs {
        home.wait_for_status(*run_id, |s| s.starts_with("finished"));
        assert_eq!(home.run_json(*run_id)["status"], "finished:completed");
        for tunables in MASKS {
            let (code, verdict) = replay_json(&home, *run_id, Some(tunables));
            if code != 0 || verdict["identical"] != true {
                failures.push(format!(
                    "{clientapp} seed {seed} under {tunables} ({config:?}): exit {code}, {}",
                    verdict["divergence"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} diverged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every seed the product prints is accepted back by `-c seed=N`, bare or
/// quoted, also beyond TOML's integers (before the fix: "not a TOML value",
/// or "must be a non-negative integer" when quoted), and gives the same run.
#[test]
fn every_printed_seed_is_accepted_back() {
    let home = Home::new();
    let app = std::path::PathBuf::from(quickstart());
    let automatic = submit(&home, &app, "num-server-rounds=2");
    let big = "16056393854154561687";
    let bare = submit(&home, &app, &format!("num-server-rounds=2 seed={big}"));
    let quoted = submit(&home, &app, &format!("num-server-rounds=2 seed=\"{big}\""));
    for run_id in [automatic, bare, quoted] {
        home.wait_for_status(run_id, |s| s == "finished:completed");
    }
    let (_, first) = replay_json(&home, automatic, None);
    let seed = first["seed"].as_str().unwrap().to_string();
    let again = submit(&home, &app, &format!("num-server-rounds=2 seed={seed}"));
    home.wait_for_status(again, |s| s == "finished:completed");
    let (_, second) = replay_json(&home, again, None);
    assert_eq!(second["seed"], seed.as_str());
    assert_eq!(first["final-arrays"], second["final-arrays"], "seed {seed}");

    let (code, bare_verdict) = replay_json(&home, bare, None);
    assert_eq!(code, 0, "{bare_verdict}");
    assert_eq!(bare_verdict["seed"], big);
    let (_, quoted_verdict) = replay_json(&home, quoted, None);
    assert_eq!(quoted_verdict["seed"], big);
    assert_eq!(bare_verdict["final-arrays"], quoted_verdict["final-arrays"]);
    let text = home.flwr(&["replay", &bare.to_string()]);
    assert!(text.stdout.contains(&format!("Seed {big};")), "{}", text.stdout);

    let too_big = home.flwr(&["run", &quickstart(), "-c", "seed=18446744073709551616"]);
    assert_ne!(too_big.code, 0);
    let negative = home.flwr(&["run", &quickstart(), "-c", "seed=-1", "--stream"]);
    assert_ne!(negative.code, 0);
}

/// A run still in progress replays as far as its record goes and says so
/// with its own verdict and exit status 8 (before the fix: "✅ ... identical",
/// exit 0).
#[test]
fn a_run_in_progress_has_its_own_verdict() {
    let home = Home::new();
    let app = std::path::PathBuf::from(quickstart());
    let run_id = submit(&home, &app, "num-server-rounds=100000 seed=5");
    home.wait_for_status(run_id, |s| s == "running");
    wait_until("round 2 starts", || {
        home.flwr(&["log", &run_id.to_string(), "--show"])
            .stdout
            .contains("[ROUND 2/100000]")
    });
    let (code, verdict) = replay_json(&home, run_id, None);
    assert_eq!(code, 8, "{verdict}");
    assert_eq!(verdict["verdict"], "in-progress");
    assert_eq!(verdict["record-ends-early"], true);
    let text = home.flwr(&["replay", &run_id.to_string()]);
    assert_eq!(text.code, 8);
    assert!(text.stdout.contains("still in progress"), "{}", text.stdout);
    home.flwr(&["stop", &run_id.to_string()]).ok();
}
