//! Helpers shared by the integration tests: temporary directories and insta
//! settings (snapshots live in the top-level `snapshots/` directory).

use std::path::PathBuf;

/// Binds insta to the repository's `snapshots/` directory for the current
/// scope. insta settings are thread-local: call this in every test that
/// snapshots.
#[must_use]
pub fn snapshot_settings() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind_to_scope()
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("floret-test-")
        .tempdir()
        .expect("create a temporary directory")
}

use floret::domain::event::{Event, RunFinished, RunSubmitted, SubStatus};
use floret::domain::ids::{Micros, RunId};
use floret::records::{ConfigRecord, ConfigValue, UserConfig};
use floret::replay::{Record, RecordedEvent};
use floret::sim::{Inputs, Recorder};

/// The seed of a seeded test: `FLORET_TEST_SEED`, else `default`.
pub fn test_seed(default: u64) -> u64 {
    std::env::var("FLORET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A FAB of an app with built-in components and the given
/// `[tool.flwr.app.config]` lines.
pub fn app_fab(clientapp: &str, config: &str) -> floret::fab::BuiltFab {
    let pyproject = format!(
        "[project]\nname = \"testapp\"\nversion = \"1.0.0\"\ndescription = \"t\"\nlicense = \"Apache-2.0\"\n\n\
         [tool.flwr.app]\npublisher = \"tests\"\n\n[tool.flwr.app.components]\nserverapp = \"floret:serverapp\"\n\
         clientapp = \"floret:{clientapp}\"\n\n[tool.flwr.app.config]\n{config}\n"
    );
    let files = [("pyproject.toml".to_string(), pyproject.into_bytes())]
        .into_iter()
        .collect();
    floret::fab::build_fab_from_files(&files).expect("a valid test app")
}

/// A run as the SuperLink would record it: its submission and options.
pub struct TestRun {
    pub submitted: RunSubmitted,
    pub fab: floret::fab::BuiltFab,
}

impl TestRun {
    pub fn new(clientapp: &str, config: &str, num_supernodes: i64, seed: u64) -> TestRun {
        let fab = app_fab(clientapp, config);
        let mut options = ConfigRecord::new();
        options.insert("num-supernodes", ConfigValue::Int(num_supernodes));
        let submitted = RunSubmitted {
            run_id: RunId(77),
            fab_id: fab.app.fab_id(),
            fab_version: fab.app.version.clone(),
            fab_hash: fab.hash.clone(),
            override_config: UserConfig::new(),
            federation: "@none/default".into(),
            federation_options: options,
            seed,
            build: floret::BUILD.into(),
        };
        TestRun { submitted, fab }
    }

    pub fn inputs(&self) -> Inputs {
        let s = &self.submitted;
        floret::simulation::resolve_inputs(
            s.run_id.0,
            s.seed,
            &self.fab.bytes,
            &s.fab_hash,
            &s.override_config,
            &s.federation_options,
        )
        .expect("inputs")
    }

    /// Runs the simulation live with the built-in apps into `recorder`.
    pub fn simulate(&self, workers: usize, recorder: &mut Recorder) -> floret::sim::Finished {
        let inputs = self.inputs();
        let apps = floret::builtin::build(&inputs, &mut floret::flwr_log::Logger::new()).expect("apps");
        floret::sim::simulate(&inputs, apps, workers, recorder)
    }

    /// The record a SuperLink would hold for a live run that produced
    /// `events` and ended `finished` (`None`: the process died).
    pub fn record(&self, events: &[Event], finished: Option<RunFinished>) -> Record {
        let mut all = vec![
            Event::RunSubmitted(self.submitted.clone()),
            Event::RunStarting,
            Event::RunRunning,
        ];
        all.extend(events.iter().cloned());
        all.extend(finished.map(Event::RunFinished));
        let events = all
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let (kind, version, payload) = floret::store::codec::encode(event);
                RecordedEvent {
                    seq: index as u64 + 1,
                    kind: kind.into(),
                    version,
                    payload,
                    at: Micros(index as i64),
                }
            })
            .collect();
        Record {
            events,
            fab: self.fab.bytes.clone(),
        }
    }
}

pub fn completed() -> Option<RunFinished> {
    Some(RunFinished {
        sub_status: SubStatus::Completed,
        details: String::new(),
    })
}

/// Encoded payloads of events, for byte comparison.
pub fn payload_bytes(events: &[Event]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| {
            let (kind, _, payload) = floret::store::codec::encode(e);
            (kind.to_string(), payload)
        })
        .collect()
}
