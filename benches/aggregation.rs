//! Aggregation throughput on a large model: 100 replies of 1M float32
//! parameters (400 MB of input), for FedAvg and the robust aggregators,
//! against a plain memory copy of the same bytes measured in the same run.
//!
//! Run with `cargo bench --bench aggregation`; prints a Markdown table for
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use floret::prng::Prng;
use floret::records::{Array, ArrayRecord, MetricRecord, MetricValue, Record, RecordDict};
use floret::strategy::{self, bulyan, fedmedian, fedtrimmedavg, krum};

const REPLIES: usize = 100;
const PARAMETERS: usize = 1_000_000;

fn replies() -> Vec<RecordDict> {
    let mut prng = Prng::from_seed(1);
    (0..REPLIES)
        .map(|i| {
            // Two arrays, as a model's layers.
            let values: Vec<f32> = (0..PARAMETERS).map(|_| prng.normal_f64() as f32).collect();
            let (a, b) = values.split_at(PARAMETERS * 3 / 4);
            let arrays = ArrayRecord::from_arrays(vec![
                Array::from_f32(vec![a.len()], a.to_vec()),
                Array::from_f32(vec![b.len()], b.to_vec()),
            ]);
            let mut metrics = MetricRecord::new();
            metrics.insert("num-examples", MetricValue::Int(100 + i as i64));
            let mut content = RecordDict::new();
            content.insert("arrays", Record::Arrays(arrays));
            content.insert("metrics", Record::Metrics(metrics));
            content
        })
        .collect()
}

fn best_of(runs: usize, mut work: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let contents = replies();
    let refs: Vec<&RecordDict> = contents.iter().collect();
    let records: Vec<&ArrayRecord> = contents.iter().map(|c| c.arrays("arrays").unwrap()).collect();
    let bytes = (REPLIES * PARAMETERS * 4) as f64;

    // The baseline: copy every reply's element bytes once.
    let sources: Vec<Vec<f32>> = records
        .iter()
        .map(|r| {
            r.values()
                .flat_map(|a| match &a.values {
                    floret::records::Values::F32(v) => v.clone(),
                    _ => unreachable!(),
                })
                .collect()
        })
        .collect();
    let mut destination = vec![0f32; PARAMETERS];
    let copy = best_of(5, || {
        for source in &sources {
            destination.copy_from_slice(source);
            black_box(&destination);
        }
    });

    let mut rows: Vec<(&str, Duration)> = vec![("memory copy (baseline)", copy)];
    rows.push((
        "FedAvg (weighted mean)",
        best_of(3, || {
            black_box(strategy::aggregate_arrayrecords(&refs, "num-examples"));
        }),
    ));
    rows.push((
        "FedMedian",
        best_of(2, || {
            black_box(fedmedian::median_arrayrecords(&records).unwrap());
        }),
    ));
    rows.push((
        "FedTrimmedAvg (beta 0.2)",
        best_of(2, || {
            black_box(fedtrimmedavg::trimmed_mean_arrayrecords(&records, 0.2).unwrap());
        }),
    ));
    rows.push((
        "Krum scores (f = 10)",
        best_of(2, || {
            black_box(krum::krum_scores(&records, 10).unwrap());
        }),
    ));
    rows.push((
        "Bulyan coordinate step (beta = 60)",
        best_of(2, || {
            black_box(bulyan::bulyan_arrayrecords(&records, 60).unwrap());
        }),
    ));

    println!("| aggregation of {REPLIES} replies x {PARAMETERS} float32 | time | input throughput | vs memory copy |");
    println!("|---|---|---|---|");
    for (name, time) in &rows {
        println!(
            "| {name} | {:.3} s | {:.2} GB/s | {:.1}x |",
            time.as_secs_f64(),
            bytes / time.as_secs_f64() / 1e9,
            time.as_secs_f64() / copy.as_secs_f64()
        );
    }
}
