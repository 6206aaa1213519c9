//! Store benchmark: append throughput (one event per transaction, and
//! batched), and the queries behind `flwr list` and `flwr log` on a file with
//! 10,000 runs and 1,000,000 events.
//!
//! Run with `cargo bench --bench store`. Prints a Markdown table; figures go
//! to docs/PERFORMANCE.md.

use std::time::{Duration, Instant};

use floret::domain::event::*;
use floret::domain::ids::{Micros, RunId};
use floret::domain::run::{decide, Command};
use floret::records::{ConfigRecord, Digest, MetricRecord, MetricValue};
use floret::store::{Reader, RunFilter, Store};

fn submitted(run_id: RunId) -> RunSubmitted {
    RunSubmitted {
        run_id,
        fab_id: "flwrlabs/quickstart".into(),
        fab_version: "1.0.0".into(),
        fab_hash: "a7a7441c9e53fc7fcaf5584bcfe44a8a269d98a311d858067439246b87038874".into(),
        override_config: Default::default(),
        federation: "@none/default".into(),
        federation_options: ConfigRecord::new(),
        seed: run_id.0,
        build: "floret bench".into(),
    }
}

/// The events of one plausible run: status changes, 10 rounds of sampled
/// nodes, replies and aggregates, and log chunks; `events_per_run` in all.
fn run_events(store: &Store, run_id: RunId, events_per_run: usize) -> Vec<Event> {
    let mut events = decide(store.state(), run_id, &Command::Submit(submitted(run_id))).unwrap();
    events.push(Event::RunStarting);
    events.push(Event::RunRunning);
    let mut metrics = MetricRecord::new();
    metrics.insert("train_loss", MetricValue::Float(0.25));
    metrics.insert("num-examples", MetricValue::Int(143));
    let mut round = 0;
    while events.len() + 1 < events_per_run {
        match events.len() % 25 {
            0 => {
                round += 1;
                events.push(Event::RoundStarted(RoundStarted { round }));
            }
            1..=10 => events.push(Event::NodeSampled(NodeSampled {
                round,
                phase: Phase::Train,
                node_id: events.len() as u64 * 7919,
            })),
            11..=20 => events.push(Event::ReplyReceived(ReplyReceived {
                round,
                phase: Phase::Train,
                node_id: events.len() as u64 * 7919,
                reply: Reply::Content {
                    metrics: Some(metrics.clone()),
                    arrays: Some(Digest([3; 32])),
                },
            })),
            21 => events.push(Event::Aggregated(Aggregated {
                round,
                phase: Phase::Train,
                results: 10,
                failures: 0,
                metrics: Some(metrics.clone()),
                arrays: Some(Digest([4; 32])),
            })),
            _ => events.push(Event::LogAppended(LogAppended {
                text: "INFO :      aggregate_train: Received 10 results and 0 failures\n".into(),
            })),
        }
    }
    events.push(Event::RunFinished(RunFinished {
        sub_status: SubStatus::Completed,
        details: String::new(),
    }));
    events
}

fn per_second(count: usize, elapsed: Duration) -> String {
    format!("{:.0}", count as f64 / elapsed.as_secs_f64())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let directory = tempfile::tempdir().unwrap();
    let mut now = 1_795_831_687_000_000i64;
    let mut rows = Vec::new();

    // Append throughput, one event per transaction.
    let path = directory.path().join("single.db");
    let mut store = Store::open(&path).unwrap();
    let run_id = RunId(1);
    let events = decide(store.state(), run_id, &Command::Submit(submitted(run_id))).unwrap();
    store.append(run_id, &events, Micros(now)).unwrap();
    let count = 20_000;
    let log = Event::LogAppended(LogAppended {
        text: "INFO :      [ROUND 1/3]\n".into(),
    });
    let start = Instant::now();
    for _ in 0..count {
        now += 1;
        store.append(run_id, std::slice::from_ref(&log), Micros(now)).unwrap();
    }
    let elapsed = start.elapsed();
    rows.push((
        "append, 1 event per transaction",
        format!("{} events/s", per_second(count, elapsed)),
    ));

    // Batched: 1,000 events per transaction.
    let start = Instant::now();
    let batch: Vec<Event> = std::iter::repeat_n(log.clone(), 1000).collect();
    for _ in 0..(count * 10 / 1000) {
        now += 1;
        store.append(run_id, &batch, Micros(now)).unwrap();
    }
    let elapsed = start.elapsed();
    rows.push((
        "append, 1,000 events per transaction",
        format!("{} events/s", per_second(count * 10, elapsed)),
    ));
    drop(store);

    // A big file: 10,000 runs, 1,000,000 events.
    let path = directory.path().join("big.db");
    let mut store = Store::open(&path).unwrap();
    let runs = 10_000;
    let start = Instant::now();
    for index in 0..runs {
        let run_id = RunId(1_000_000 + index as u64);
        let events = run_events(&store, run_id, 100);
        now += 1;
        store.append(run_id, &events, Micros(now)).unwrap();
    }
    let build = start.elapsed();
    let total_events = Reader::open(&path).unwrap().view().count_events().unwrap();
    rows.push((
        "build 10,000 runs x 100 events (1 transaction per run)",
        format!(
            "{:.2} s, {} events/s",
            build.as_secs_f64(),
            per_second(total_events as usize, build)
        ),
    ));
    let size = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    rows.push(("file size (db + wal)", format!("{:.1} MB", size as f64 / 1e6)));

    let reader = Reader::open(&path).unwrap();
    let view = reader.view();
    let list_all = median(
        (0..7)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(view.runs(RunFilter::All).unwrap().len(), runs);
                start.elapsed()
            })
            .collect(),
    );
    rows.push((
        "list all 10,000 runs (flwr list)",
        format!("{:.1} ms", list_all.as_secs_f64() * 1e3),
    ));
    let list_20 = median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(view.runs(RunFilter::Newest(20)).unwrap().len(), 20);
                start.elapsed()
            })
            .collect(),
    );
    rows.push(("list newest 20 runs", format!("{:.3} ms", list_20.as_secs_f64() * 1e3)));
    let one = RunId(1_000_000 + 4321);
    let read_log = median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                assert!(!view.logs_after(one, Micros(0), usize::MAX).unwrap().is_empty());
                start.elapsed()
            })
            .collect(),
    );
    rows.push((
        "read one run's log (flwr log --show)",
        format!("{:.3} ms", read_log.as_secs_f64() * 1e3),
    ));
    let read_events = median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(view.run_events(one).unwrap().len(), 100);
                start.elapsed()
            })
            .collect(),
    );
    rows.push((
        "read and decode one run's 100 events (replay)",
        format!("{:.3} ms", read_events.as_secs_f64() * 1e3),
    ));
    let reopen = median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                let store = Store::open(&path).unwrap();
                assert_eq!(store.state().runs.len(), runs);
                start.elapsed()
            })
            .collect(),
    );
    rows.push((
        "open the file (load 10,000 runs)",
        format!("{:.1} ms", reopen.as_secs_f64() * 1e3),
    ));
    let verify = Instant::now();
    store.verify().unwrap();
    rows.push((
        "verify: fold 1,000,000 events and compare",
        format!("{:.2} s", verify.elapsed().as_secs_f64()),
    ));

    println!("| operation | result |");
    println!("|---|---|");
    for (operation, result) in rows {
        println!("| {operation} | {result} |");
    }
}
