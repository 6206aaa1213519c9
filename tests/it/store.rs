//! The store and the run and node state machines together, on real SQLite
//! files: the event-sourcing laws over random command sequences (of runs and
//! of a deployment's SuperNodes), schema refusal, and crash safety when the
//! writer is killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};

use floret::codec;
use floret::domain::event::*;
use floret::domain::ids::{Micros, RunId};
use floret::domain::node::{self, NodeStatus};
use floret::domain::run::{decide, Command, Status};
use floret::domain::views::{Projections, StoredEvent};
use floret::records::{ConfigRecord, ConfigValue, Digest, MetricRecord, MetricValue, Scalar};
use floret::store::{Error, Store, EXIT_SCHEMA_MISMATCH};
use proptest::prelude::*;

use crate::support::temp_dir;

fn submitted(run_id: RunId, seed: u64, lr: f64) -> RunSubmitted {
    let mut options = ConfigRecord::new();
    options.insert("num-supernodes", ConfigValue::Int(10));
    options.insert("backend.client-resources.num-cpus", ConfigValue::Int(1));
    RunSubmitted {
        run_id,
        fab_id: "flwrlabs/quickstart".into(),
        fab_version: "1.0.0".into(),
        fab_hash: "a7a7441c9e53fc7fcaf5584bcfe44a8a269d98a311d858067439246b87038874".into(),
        override_config: [("lr".to_string(), Scalar::Float(lr))].into_iter().collect(),
        federation: "@none/default".into(),
        federation_options: options,
        seed,
        build: "floret test".into(),
    }
}

fn metrics(values: &[(&str, f64)]) -> MetricRecord {
    values
        .iter()
        .map(|(k, v)| (k.to_string(), MetricValue::Float(*v)))
        .collect()
}

fn arb_metrics() -> impl Strategy<Value = MetricRecord> {
    prop::collection::vec(
        (
            "[a-z_]{1,8}",
            prop_oneof![
                any::<i64>().prop_map(MetricValue::Int),
                (-1e6f64..1e6).prop_map(MetricValue::Float),
                prop::collection::vec(-1e3f64..1e3, 0..4).prop_map(MetricValue::FloatList),
                prop::collection::vec(any::<i64>(), 0..4).prop_map(MetricValue::IntList),
            ],
        ),
        0..4,
    )
    .prop_map(|items| items.into_iter().collect())
}

fn arb_simulation_event() -> impl Strategy<Value = Event> {
    let phase = prop_oneof![Just(Phase::Train), Just(Phase::Evaluate)];
    prop_oneof![
        (1u64..5).prop_map(|round| Event::RoundStarted(RoundStarted { round })),
        (1u64..5, phase.clone(), any::<u64>()).prop_map(|(round, phase, node_id)| Event::NodeSampled(NodeSampled {
            round,
            phase,
            node_id
        })),
        (1u64..5, phase.clone(), any::<u64>(), arb_metrics(), any::<[u8; 32]>()).prop_map(
            |(round, phase, node_id, metrics, digest)| {
                Event::ReplyReceived(ReplyReceived {
                    round,
                    phase,
                    node_id,
                    reply: Reply::Content {
                        metrics: Some(metrics),
                        arrays: Some(Digest(digest)),
                    },
                })
            }
        ),
        (1u64..5, any::<u64>(), ".{0,20}").prop_map(|(round, node_id, reason)| {
            Event::ReplyReceived(ReplyReceived {
                round,
                phase: Phase::Train,
                node_id,
                reply: Reply::Error {
                    code: 2,
                    reason,
                    injected: false,
                },
            })
        }),
        (1u64..5, phase, 0u64..10, 0u64..3, prop::option::of(arb_metrics())).prop_map(
            |(round, phase, results, failures, metrics)| {
                Event::Aggregated(Aggregated {
                    round,
                    phase,
                    results,
                    failures,
                    metrics,
                    arrays: None,
                })
            }
        ),
        (0u64..5, prop::option::of(arb_metrics()))
            .prop_map(|(round, metrics)| Event::CentralEvaluated(CentralEvaluated { round, metrics })),
    ]
}

/// One step of a random script: a command for one of four runs or for the
/// SuperNodes, and how the wall clock moved (it may jump backwards; the
/// store must not).
#[derive(Clone, Debug)]
struct Step {
    action: Action,
    clock_delta: i64,
}

#[derive(Clone, Debug)]
enum Action {
    Run(u8, Command),
    Node(node::Command),
}

/// A node command about one of three nodes (ids with the top bit set
/// included) and two public keys.
fn arb_node_command() -> impl Strategy<Value = node::Command> {
    let node_id = prop_oneof![Just(2u64), Just(u64::MAX - 1), Just(11552096691401131052u64)];
    let key = prop_oneof![Just(b"key-a".to_vec()), Just(vec![0u8, 255, 7])];
    let interval = prop_oneof![Just(30.0f64), Just(10.0), Just(5.0), Just(1800.5)];
    prop_oneof![
        (node_id.clone(), key.clone())
            .prop_map(|(node_id, public_key)| node::Command::Register { node_id, public_key }),
        (key, interval.clone()).prop_map(|(public_key, heartbeat_interval)| node::Command::Activate {
            public_key,
            heartbeat_interval
        }),
        node_id
            .clone()
            .prop_map(|node_id| node::Command::Deactivate { node_id }),
        node_id
            .clone()
            .prop_map(|node_id| node::Command::Unregister { node_id }),
        (node_id.clone(), interval).prop_map(|(node_id, heartbeat_interval)| node::Command::Heartbeat {
            node_id,
            heartbeat_interval
        }),
        node_id.prop_map(|node_id| node::Command::MarkOffline { node_id }),
    ]
}

fn arb_command() -> impl Strategy<Value = (u8, Command)> {
    let sub_status = prop_oneof![
        Just(SubStatus::Completed),
        Just(SubStatus::Failed),
        Just(SubStatus::Stopped)
    ];
    (
        0u8..4,
        prop_oneof![
            (any::<u64>(), -1.0f64..1.0).prop_map(|(seed, lr)| Command::Submit(submitted(RunId(0), seed, lr))),
            Just(Command::Claim),
            Just(Command::Activate),
            (sub_status, ".{0,12}")
                .prop_map(|(sub_status, details)| Command::Finish(RunFinished { sub_status, details })),
            Just(Command::RequestStop),
            "(.|\n){0,40}".prop_map(Command::AppendLog),
            prop::collection::vec(arb_simulation_event(), 1..6).prop_map(Command::AppendSimulation),
            Just(Command::AppendSimulation(vec![Event::SimulationFinished(
                SimulationFinished {
                    rounds_completed: 3,
                    arrays: None,
                    outcome: Outcome::Completed,
                }
            )])),
            ".{0,12}".prop_map(|reason| Command::Abandon { reason }),
            (
                any::<u64>(),
                any::<u64>(),
                prop_oneof![0.0f64..1e4, Just(f64::NAN), Just(-1.0)]
            )
                .prop_map(
                    |(bytes_sent, bytes_recv, clientapp_runtime)| Command::RecordUsage(Usage {
                        bytes_sent: bytes_sent >> 1,
                        bytes_recv: bytes_recv >> 1,
                        clientapp_runtime,
                    })
                ),
        ],
    )
}

fn arb_script() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![
                4 => arb_command().prop_map(|(run, command)| Action::Run(run, command)),
                1 => arb_node_command().prop_map(Action::Node),
            ],
            -2_000i64..50_000,
        )
            .prop_map(|(action, clock_delta)| Step { action, clock_delta }),
        1..60,
    )
}

fn run_id_of(index: u8) -> RunId {
    // Include ids with the top bit set: they are stored as negative integers.
    [RunId(1), RunId(u64::MAX - 7), RunId(11552096691401131052), RunId(42)][usize::from(index)]
}

/// Executes a script through `decide` and the store, checking the laws that
/// hold after every step.
fn execute(store: &mut Store, script: &[Step]) -> Result<(), TestCaseError> {
    let mut clock = 1_795_831_687_000_000i64;
    for step in script {
        clock += step.clock_delta;
        let (run, command) = match &step.action {
            Action::Run(run, command) => (*run, command),
            Action::Node(command) => {
                execute_node(store, command, Micros(clock))?;
                continue;
            }
        };
        let run_id = run_id_of(run);
        let command = match command {
            Command::Submit(s) => Command::Submit(RunSubmitted { run_id, ..s.clone() }),
            other => other.clone(),
        };
        let before = store.state().runs.get(&run_id).cloned();
        let last_at = store.last_at();
        let Ok(events) = decide(store.state(), run_id, &command) else {
            // A rejection changes nothing.
            prop_assert_eq!(store.state().runs.get(&run_id), before.as_ref());
            continue;
        };
        let stored = store.append(run_id, &events, Micros(clock)).expect("append");
        // Recorded time strictly increases, whatever the wall clock did.
        let mut previous = last_at;
        for event in &stored {
            prop_assert!(event.at > previous, "time went from {:?} to {:?}", previous, event.at);
            previous = event.at;
        }
        let run = &store.state().runs[&run_id];
        // Finished is terminal.
        if let Some(before) = &before {
            if before.status.is_finished() {
                prop_assert_eq!(run.status, before.status);
                prop_assert_eq!(run.finished_at, before.finished_at);
            }
        }
        // Timestamps never go backwards along the life of a run.
        let times: Vec<Micros> = [Some(run.pending_at), run.starting_at, run.running_at, run.finished_at]
            .into_iter()
            .flatten()
            .collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]), "{:?}", times);
        // Status and timestamps agree, as Flower derives one from the other.
        match run.status {
            Status::Pending => prop_assert!(run.starting_at.is_none() && run.finished_at.is_none()),
            Status::Starting => prop_assert!(run.starting_at.is_some() && run.running_at.is_none()),
            Status::Running => prop_assert!(run.running_at.is_some() && run.finished_at.is_none()),
            Status::Finished(_) => prop_assert!(run.finished_at.is_some()),
        }
    }
    Ok(())
}

/// One node step: a rejection changes nothing, unregistered is terminal,
/// and no two nodes share a public key.
fn execute_node(store: &mut Store, command: &node::Command, now: Micros) -> Result<(), TestCaseError> {
    let before = store.nodes().clone();
    let Ok(events) = node::decide(store.nodes(), command) else {
        prop_assert_eq!(store.nodes(), &before);
        return Ok(());
    };
    store.append(NODE_EVENTS_RUN_ID, &events, now).expect("append");
    for (node_id, node) in &store.nodes().nodes {
        if let Some(old) = before.nodes.get(node_id) {
            if old.status == NodeStatus::Unregistered {
                prop_assert_eq!(node, old);
            }
        }
        let sharing = store
            .nodes()
            .nodes
            .values()
            .filter(|other| other.public_key == node.public_key)
            .count();
        prop_assert_eq!(sharing, 1);
    }
    Ok(())
}

fn check_codec_round_trip(events: &[StoredEvent]) -> Result<(), TestCaseError> {
    for stored in events {
        let (kind, version, bytes) = codec::encode(&stored.event);
        let decoded = codec::decode(kind, version, &bytes).expect("decode");
        prop_assert_eq!(&decoded, &stored.event);
        prop_assert_eq!(codec::encode(&decoded).2, bytes);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every event `decide` emits is accepted by `apply`; finished is terminal;
    /// time never goes backwards; the projection tables equal the fold of the
    /// events, before and after closing and reopening the file; payloads
    /// round-trip byte for byte.
    #[test]
    fn event_sourcing_laws_hold_for_random_scripts(script in arb_script()) {
        let directory = temp_dir();
        let path = directory.path().join("state.db");
        let mut store = Store::open(&path).expect("open");
        execute(&mut store, &script)?;
        store.verify().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let events = store.all_events().expect("events");
        check_codec_round_trip(&events)?;
        let live = store.state().clone();
        let live_nodes = store.nodes().clone();
        drop(store);

        let reopened = Store::open(&path).expect("reopen");
        prop_assert_eq!(reopened.state(), &live);
        prop_assert_eq!(reopened.nodes(), &live_nodes);
        reopened.verify().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let folded = Projections::fold(&reopened.all_events().unwrap());
        prop_assert_eq!(folded.state, live);
        prop_assert_eq!(folded.nodes, live_nodes);
        let audit = floret::store::Reader::open(&path).unwrap().audit(floret::domain::ids::Seq(0)).unwrap();
        prop_assert!(audit.violations.is_empty(), "{:?}", audit.violations);
    }
}

#[test]
fn rebuild_restores_projections_from_events() {
    let directory = temp_dir();
    let path = directory.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    let run_id = RunId(9);
    let mut now = Micros(1_000);
    for command in [
        Command::Submit(submitted(run_id, 1, 0.1)),
        Command::Claim,
        Command::Activate,
        Command::AppendLog("INFO :      Starting Flower Simulation\n".into()),
        Command::AppendSimulation(vec![Event::Aggregated(Aggregated {
            round: 1,
            phase: Phase::Train,
            results: 10,
            failures: 0,
            metrics: Some(metrics(&[("train_loss", 0.5)])),
            arrays: Some(Digest([7; 32])),
        })]),
    ] {
        let events = decide(store.state(), run_id, &command).unwrap();
        store.append(run_id, &events, now).unwrap();
        now.0 += 10;
    }
    for command in [
        node::Command::Register {
            node_id: 5,
            public_key: b"key".to_vec(),
        },
        node::Command::Activate {
            public_key: b"key".to_vec(),
            heartbeat_interval: 30.0,
        },
        node::Command::MarkOffline { node_id: 5 },
    ] {
        let events = node::decide(store.nodes(), &command).unwrap();
        store.append(NODE_EVENTS_RUN_ID, &events, now).unwrap();
        now.0 += 10;
    }
    let expected = store.load_projections().unwrap();
    store.rebuild().unwrap();
    assert_eq!(store.load_projections().unwrap(), expected);
    store.verify().unwrap();
    assert_eq!(expected.logs.len(), 1);
    assert_eq!(expected.rounds.len(), 1);
    assert_eq!(expected.nodes.nodes[&5].status, NodeStatus::Offline);
    assert_eq!(expected.nodes.nodes[&5].last_deactivated_at, Some(Micros(1_070)));
    // The run's projections are untouched by the node events beside them.
    assert_eq!(expected.state.runs[&run_id].events, 5);
}

/// A state.db written before usage was measured (schema 1) opens: its runs
/// have no usage, read as Flower's runs without figures (zeros), and the
/// projections still equal the fold.
#[test]
fn a_database_from_before_usage_opens_without_figures() {
    let directory = temp_dir();
    let path = directory.path().join("state.db");
    let run_id = RunId(9);
    let mut store = Store::open(&path).unwrap();
    for (at, command) in [
        Command::Submit(submitted(run_id, 1, 0.1)),
        Command::Claim,
        Command::Activate,
    ]
    .into_iter()
    .enumerate()
    {
        let events = decide(store.state(), run_id, &command).unwrap();
        store.append(run_id, &events, Micros(1_000 + at as i64)).unwrap();
    }
    drop(store);
    // What schema 1 had: no usage columns.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE runs DROP COLUMN bytes_sent; ALTER TABLE runs DROP COLUMN bytes_recv;
             ALTER TABLE runs DROP COLUMN clientapp_runtime; DROP TABLE nodes; PRAGMA user_version = 1;",
        )
        .unwrap();
    let mut store = Store::open(&path).unwrap();
    store.verify().unwrap();
    let run = store.state().runs[&run_id].clone();
    assert_eq!(run.usage, None);
    let wire = floret::proto::run_to_proto(&run);
    assert_eq!((wire.bytes_sent, wire.bytes_recv, wire.clientapp_runtime), (0, 0, 0.0));
    // Usage recorded from now on is kept.
    let usage = Usage {
        bytes_sent: 5,
        bytes_recv: 7,
        clientapp_runtime: 0.5,
    };
    let events = decide(store.state(), run_id, &Command::RecordUsage(usage.clone())).unwrap();
    store.append(run_id, &events, Micros(2_000)).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    store.verify().unwrap();
    assert_eq!(store.state().runs[&run_id].usage, Some(usage));
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn refuses_a_flower_state_database_without_touching_it() {
    let directory = temp_dir();
    let path = directory.path().join("state.db");
    create_flower_like_database(&path);
    let before = sha256_of(&path);
    let error = Store::open(&path).err().expect("a Flower database must be refused");
    assert!(matches!(error, Error::SchemaMismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("is not a floret state database"), "{message}");
    assert!(message.contains("Python Flower state database"), "{message}");
    assert!(message.contains("alembic_version"), "{message}");
    assert_eq!(sha256_of(&path), before, "the refused file was modified");
    assert_eq!(EXIT_SCHEMA_MISMATCH, 105);
}

/// A database shaped like Flower 1.27's: a `run` table and Alembic's
/// version table, in WAL mode as Flower leaves it.
fn create_flower_like_database(path: &Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
             INSERT INTO alembic_version VALUES ('8e65d8ae60b0');
             CREATE TABLE run (run_id INTEGER, fab_id VARCHAR);
             PRAGMA journal_mode = DELETE;",
        )
        .unwrap();
}

#[test]
fn refuses_a_newer_schema_without_touching_it() {
    let directory = temp_dir();
    let path = directory.path().join("state.db");
    drop(Store::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let before = sha256_of(&path);
    let error = Store::open(&path).err().expect("a newer schema must be refused");
    let message = error.to_string();
    assert!(matches!(error, Error::SchemaMismatch { .. }));
    assert!(message.contains("schema version 99"), "{message}");
    assert!(message.contains("newer floret"), "{message}");
    assert_eq!(sha256_of(&path), before);
}

const CRASH_CHILD: &str = "FLORET_TEST_CRASH_CHILD_DB";

/// The child side of the crash test: appends forever, acknowledging each
/// committed append on stdout, until it is killed.
fn crash_child(path: &Path) -> ! {
    let mut store = Store::open(path).expect("child: open");
    let mut counter = store.state().runs.len() as u64;
    loop {
        counter += 1;
        let run_id = RunId(counter);
        let mut events = decide(store.state(), run_id, &Command::Submit(submitted(run_id, counter, 0.1))).unwrap();
        events.push(Event::LogAppended(LogAppended {
            text: format!("line {counter}\n").repeat(3),
        }));
        let now = Micros(1_000_000 + counter as i64);
        let stored = store.append(run_id, &events, now).expect("child: append");
        println!("ACK {} {}", run_id.0, stored.last().unwrap().seq.0);
    }
}

/// Kills a writer with SIGKILL at random moments, many times: every append it
/// acknowledged is there, the projections equal the fold of the events, and
/// the file opens.
#[test]
fn appends_survive_sigkill_of_the_writer() {
    if let Ok(path) = std::env::var(CRASH_CHILD) {
        crash_child(Path::new(&path));
    }
    let directory = temp_dir();
    let path = directory.path().join("state.db");
    let seed: u64 = std::env::var("FLORET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut prng = floret::prng::Prng::from_seed(seed);
    let mut acknowledged = Vec::new();
    for round in 0..40 {
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args([
                "store::appends_survive_sigkill_of_the_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it acknowledge a random number of appends, then kill it while
        // it is in the middle of the next ones.
        let wanted = 1 + prng.below(40);
        let mut seen = 0;
        while seen < wanted {
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut parts = rest.split(' ');
                let run: u64 = parts.next().unwrap().parse().unwrap();
                acknowledged.push(RunId(run));
                seen += 1;
            }
        }
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        // Acknowledgements already written before the kill are valid too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                acknowledged.push(RunId(rest.split(' ').next().unwrap().parse().unwrap()));
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must have been killed (seed {seed})"
        );

        let store = Store::open(&path).unwrap_or_else(|e| panic!("round {round}, seed {seed}: {e}"));
        for run_id in &acknowledged {
            assert!(
                store.state().runs.contains_key(run_id),
                "round {round}: acknowledged run {run_id} is missing (seed {seed})"
            );
        }
        store
            .verify()
            .unwrap_or_else(|e| panic!("round {round}, seed {seed}: {e}"));
    }
    assert!(acknowledged.len() >= 40);
}

#[test]
fn timeline_of_a_run_stopped_by_its_user() {
    let _settings = crate::support::snapshot_settings();
    let mut store = Store::open_in_memory().unwrap();
    let run_id = RunId(11552096691401131052);
    let mut now = Micros(1_795_831_687_000_000);
    for command in [
        Command::Submit(submitted(run_id, 42, 0.05)),
        Command::Claim,
        Command::Activate,
        Command::AppendLog("\u{1b}[92mINFO \u{1b}[0m:      Starting Flower Simulation\n".into()),
        Command::AppendSimulation(vec![Event::RoundStarted(RoundStarted { round: 1 })]),
        Command::RequestStop,
        Command::AppendSimulation(vec![
            Event::SimulationStopped(SimulationStopped {
                round: 1,
                before: "train replies".into(),
            }),
            Event::SimulationFinished(SimulationFinished {
                rounds_completed: 0,
                arrays: None,
                outcome: Outcome::Stopped,
            }),
        ]),
        Command::Finish(RunFinished {
            sub_status: SubStatus::Stopped,
            details: "Task stopped by user.".into(),
        }),
    ] {
        let events = decide(store.state(), run_id, &command).unwrap();
        store.append(run_id, &events, now).unwrap();
        now.0 += 1_500;
    }
    let events = store.run_events(run_id).unwrap();
    insta::assert_snapshot!("timeline_stopped_run", floret::timeline::render(&events, true));
}
