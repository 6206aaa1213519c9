//! `flwr replay RUN_ID`: fetch a run's record from the SuperLink (through
//! floret's Local API, never by opening `state.db`), re-execute it in this
//! process, and print the verdict: identical, or the first divergence.
//!
//! The record's pages are written to an anonymous temporary file as they
//! arrive, and the replay reads its events from there one at a time: a
//! record is never in memory at once, whatever its length.

use std::io::{self, BufReader, BufWriter, Read, Write};

use clap::Args;
use prost::Message;
use tonic::Code;

use crate::cli::connection::{self};
use crate::cli::table::{paint, Style};
use crate::cli::{exit, CliError, Format, Output};
use crate::codec;
use crate::domain::ids::{Micros, RunId, Seq};
use crate::domain::views::StoredEvent;
use crate::proto::floret::v1 as ext;
use crate::replay::{self, Divergence, RecordSource, RecordedEvent, Verdict, VerdictOutcome};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run to re-execute.
    #[arg(value_name = "RUN_ID")]
    pub run_id: u64,
    /// Name of the SuperLink connection in $FLWR_HOME/config.toml.
    #[arg(value_name = "SUPERLINK")]
    pub superlink: Option<String>,
    /// Print the run's recorded timeline (one line per event) first.
    #[arg(long)]
    pub events: bool,
    /// Stop after this round (compare only what happened until then).
    #[arg(long, value_name = "N")]
    pub until_round: Option<u64>,
    /// Threads for ClientApps (the result does not depend on it); default:
    /// the machine's CPUs.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Default, ignore_case = true)]
    pub format: Format,
}

/// A fetched record: its FAB in memory, its events in an anonymous
/// temporary file (gone with the process, however it ends; each event the
/// length of its protobuf encoding, 4 bytes little-endian, then the
/// encoding), in order.
struct SpooledRecord {
    fab: Vec<u8>,
    file: std::fs::File,
}

impl SpooledRecord {
    fn new() -> io::Result<SpooledRecord> {
        Ok(SpooledRecord {
            fab: Vec::new(),
            file: tempfile::tempfile()?,
        })
    }

    /// Appends a page of events.
    fn append(&mut self, events: &[ext::RecordedEvent]) -> io::Result<()> {
        let mut writer = BufWriter::new(&self.file);
        for event in events {
            let bytes = event.encode_to_vec();
            let length = u32::try_from(bytes.len()).map_err(io::Error::other)?;
            writer.write_all(&length.to_le_bytes())?;
            writer.write_all(&bytes)?;
        }
        writer.flush()
    }
}

/// The next spooled event, or `None` at the end of the file.
fn read_spooled(reader: &mut impl Read) -> io::Result<Option<RecordedEvent>> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length) {
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        read => read?,
    }
    let mut bytes = vec![0; u32::from_le_bytes(length) as usize];
    reader.read_exact(&mut bytes)?;
    let event =
        ext::RecordedEvent::decode(bytes.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some(RecordedEvent {
        seq: Seq(event.seq),
        kind: event.kind,
        version: event.version,
        payload: event.payload,
        at: Micros(event.recorded_at_us),
    }))
}

/// Reads a file from `offset` on, leaving the file's own position (where
/// pages are appended) alone.
struct ReadAt<'a> {
    file: &'a std::fs::File,
    offset: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = std::os::unix::fs::FileExt::read_at(self.file, buf, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

impl RecordSource for SpooledRecord {
    fn fab(&self) -> &[u8] {
        &self.fab
    }

    fn events(&self) -> Box<dyn Iterator<Item = io::Result<RecordedEvent>> + '_> {
        let mut reader = BufReader::new(ReadAt {
            file: &self.file,
            offset: 0,
        });
        Box::new(std::iter::from_fn(move || read_spooled(&mut reader).transpose()))
    }
}

async fn fetch(connection: &mut connection::Connection, run_id: u64) -> Result<SpooledRecord, CliError> {
    let secret = connection.local_secret().await;
    let request = crate::wire::with_local_secret(ext::RunRecordRequest { run_id }, secret.as_deref());
    let mut stream = match connection.local.stream_run_record(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::Unimplemented => {
            return Err(CliError::with_code(
                format!(
                "The SuperLink at {} does not keep event logs (it is not a floret SuperLink); only runs of a floret \
                     SuperLink can be replayed.",
                connection.address
            ),
                exit::REPLAY_IMPOSSIBLE,
            ))
        }
        Err(status) => return Err(connection::status_error(status)),
    };
    let spool_error = |e: io::Error| CliError::new(format!("cannot keep the run's record in a temporary file: {e}"));
    let mut record = SpooledRecord::new().map_err(spool_error)?;
    while let Some(chunk) = stream.message().await.map_err(connection::status_error)? {
        if let Some(fab) = chunk.fab {
            record.fab = fab.content;
        }
        record.append(&chunk.events).map_err(spool_error)?;
    }
    Ok(record)
}

fn timeline(record: &SpooledRecord, run_id: u64) -> Result<String, CliError> {
    let mut out = String::new();
    let mut renderer = crate::timeline::Renderer::new(true);
    for recorded in record.events() {
        let e = recorded.map_err(|e| CliError::new(e.to_string()))?;
        let event = codec::decode(&e.kind, e.version, &e.payload).map_err(|e| CliError::new(e.to_string()))?;
        let stored = StoredEvent {
            seq: e.seq,
            run_id: RunId(run_id),
            at: e.at,
            event,
        };
        renderer.push(&stored, &mut out);
    }
    Ok(out)
}

fn verdict_json(verdict: &Verdict) -> serde_json::Value {
    let divergence = match &verdict.outcome {
        VerdictOutcome::Diverged(d) => serde_json::json!({
            "index": d.index,
            "seq": d.seq,
            "round": d.round,
            "node-id": d.node_id.map(|n| n.to_string()),
            "kind": d.recorded.as_ref().or(d.replayed.as_ref()).map(|e| e.kind()),
            "recorded": d.recorded.as_ref().map(crate::timeline::describe),
            "replayed": d.replayed.as_ref().map(crate::timeline::describe),
            "fields": d.fields.iter().map(|(path, a, b)| serde_json::json!({"field": path, "recorded": a, "replayed": b})).collect::<Vec<_>>(),
            "bytes": d.bytes.as_ref().map(|(offset, a, b)| serde_json::json!({"offset": offset, "recorded": hex::encode(a), "replayed": hex::encode(b)})),
            "hint": d.hint,
        }),
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "success": true,
        "run-id": verdict.run_id.to_string(),
        "verdict": verdict_name(&verdict.outcome),
        "identical": !matches!(verdict.outcome, VerdictOutcome::Diverged(_)),
        "record-ends-early": matches!(verdict.outcome, VerdictOutcome::Truncated | VerdictOutcome::InProgress),
        "seed": verdict.seed.to_string(),
        "events-compared": verdict.events_compared,
        "events-recorded": verdict.events_recorded,
        "rounds": verdict.rounds,
        "until-round": verdict.until_round,
        "final-arrays": verdict.final_arrays.map(|d| d.to_hex()),
        "recorded-status": verdict.recorded_status,
        "recorded-build": verdict.recorded_build,
        "same-build": verdict.same_build,
        "recorded-by": verdict.recorded_by.as_ref().map(|r| serde_json::json!({
            "build": r.build.build,
            "commit": r.build.commit,
            "dirty": r.build.dirty,
            "sources": r.build.sources,
            "compiler": r.build.compiler,
            "target": r.build.target,
            "profile": r.build.profile,
            "target-features": r.build.target_features,
            "arch": r.platform.arch,
            "os": r.platform.os,
            "cpu-features": r.platform.cpu_features,
            "libc": r.platform.libc,
        })),
        "provenance-differences": verdict.provenance,
        "reinjected": verdict.reinjected,
        "notes": verdict.notes,
        "replay-seconds": verdict.replay_seconds,
        "original-seconds": verdict.original_seconds,
        "divergence": divergence,
    })
}

/// The verdict's name in JSON.
fn verdict_name(outcome: &VerdictOutcome) -> &'static str {
    match outcome {
        VerdictOutcome::Identical => "identical",
        VerdictOutcome::Truncated => "truncated",
        VerdictOutcome::InProgress => "in-progress",
        VerdictOutcome::Diverged(_) => "diverged",
    }
}

/// The exit status of a verdict (docs/CLI.md).
pub fn exit_status(outcome: &VerdictOutcome) -> i32 {
    match outcome {
        VerdictOutcome::Identical => exit::SUCCESS,
        VerdictOutcome::Truncated => exit::REPLAY_TRUNCATED,
        VerdictOutcome::InProgress => exit::REPLAY_IN_PROGRESS,
        VerdictOutcome::Diverged(_) => exit::REPLAY_DIVERGED,
    }
}

/// The verdict as text for a terminal.
pub fn render_verdict(verdict: &Verdict, color: bool, show_timing: bool) -> String {
    let mut out = String::new();
    let scope = match verdict.until_round {
        Some(round) => format!(" up to round {round}"),
        None => String::new(),
    };
    match &verdict.outcome {
        VerdictOutcome::Identical => render_identical(&mut out, verdict, &scope, color),
        VerdictOutcome::Truncated | VerdictOutcome::InProgress => render_incomplete(&mut out, verdict, color),
        VerdictOutcome::Diverged(d) => render_divergence(&mut out, verdict, d, color),
    }
    render_notes(&mut out, verdict);
    render_provenance_line(&mut out, verdict, show_timing);
    out
}

/// The headline of an identical replay.
fn render_identical(out: &mut String, verdict: &Verdict, scope: &str, color: bool) {
    let arrays = verdict
        .final_arrays
        .map(|d| format!(", final arrays {}", d.short()))
        .unwrap_or_default();
    out.push_str(&paint(
        &format!(
            "✅ Replay of run {} is identical{scope}: {} of {} simulation events, {} rounds{arrays}.",
            verdict.run_id, verdict.events_compared, verdict.events_recorded, verdict.rounds
        ),
        Style::Green,
        color,
    ));
    out.push('\n');
}

/// The headline and explanation of a record that ends before the simulation did.
fn render_incomplete(out: &mut String, verdict: &Verdict, color: bool) {
    out.push_str(&paint(
        &format!(
            "⚠️  Replay of run {} is incomplete: the {} recorded simulation events are identical, but the \
             record ends in round {} before the simulation did.",
            verdict.run_id, verdict.events_compared, verdict.rounds
        ),
        Style::Yellow,
        color,
    ));
    out.push('\n');
    let details = if verdict.recorded_details.is_empty() {
        String::new()
    } else {
        format!(" ({})", verdict.recorded_details)
    };
    out.push_str(&if matches!(verdict.outcome, VerdictOutcome::InProgress) {
        "   The run is still in progress: replay it again when it has finished.\n".to_string()
    } else {
        format!(
            "   The run ended {}{details} without finishing its simulation: what came after was never \
             recorded.\n",
            verdict.recorded_status
        )
    });
}

/// The headline of a divergence, both events, what differs, and the hint.
fn render_divergence(out: &mut String, verdict: &Verdict, d: &Divergence, color: bool) {
    let kind = d
        .recorded
        .as_ref()
        .or(d.replayed.as_ref())
        .map(|e| e.kind())
        .unwrap_or("?");
    out.push_str(&paint(
        &format!(
            "❌ Replay of run {} diverged at {}: {kind}",
            verdict.run_id,
            divergence_place(verdict, d)
        ),
        Style::Red,
        color,
    ));
    out.push('\n');
    let describe = |e: &Option<crate::domain::event::Event>| match e {
        Some(event) => format!("{} {}", event.kind(), crate::timeline::describe(event)),
        None => "(no event: the run ended)".into(),
    };
    out.push_str(&format!("   recorded: {}\n", describe(&d.recorded)));
    out.push_str(&format!("   replayed: {}\n", describe(&d.replayed)));
    render_differences(out, d, color);
    out.push_str(&format!("   Usually: {}\n", d.hint));
    out.push_str(&format!(
        "   {} of {} events were identical before it.\n",
        verdict.events_compared, verdict.events_recorded
    ));
}

/// Where a divergence happened: the event's index, and its seq, round and node when known.
fn divergence_place(verdict: &Verdict, d: &Divergence) -> String {
    let mut place = format!("event {} of {}", d.index + 1, verdict.events_recorded);
    if let Some(seq) = d.seq {
        place.push_str(&format!(" (seq {seq})"));
    }
    if let Some(round) = d.round {
        place.push_str(&format!(", round {round}"));
    }
    if let Some(node) = d.node_id {
        place.push_str(&format!(", node {node}"));
    }
    place
}

/// The fields that differ, or the first differing payload bytes when no decoded field does.
fn render_differences(out: &mut String, d: &Divergence, color: bool) {
    if !d.fields.is_empty() {
        out.push_str("   fields that differ:\n");
        let width = d.fields.iter().map(|(p, _, _)| p.len()).max().unwrap_or(0);
        for (path, recorded, replayed) in &d.fields {
            out.push_str(&format!(
                "     {path:<width$}  {} -> {}\n",
                paint(recorded, Style::Red, color),
                paint(replayed, Style::Green, color)
            ));
        }
    }
    if let (Some((offset, recorded, replayed)), true) = (&d.bytes, d.fields.is_empty()) {
        out.push_str("   the decoded values look equal, but the payload bytes differ:\n");
        out.push_str(&format!(
            "     bytes from offset {offset}  {} -> {}\n",
            paint(&hex::encode(recorded), Style::Red, color),
            paint(&hex::encode(replayed), Style::Green, color)
        ));
    }
}

/// The re-injected values, provenance differences and notes, one line each.
fn render_notes(out: &mut String, verdict: &Verdict) {
    if !verdict.reinjected.is_empty() {
        out.push_str(&format!(
            "   Re-injected from the record: {}.\n",
            verdict.reinjected.join("; ")
        ));
    }
    // A divergence names them in its hint already.
    let diverged = matches!(verdict.outcome, VerdictOutcome::Diverged(_));
    for difference in verdict.provenance.iter().filter(|_| !diverged) {
        out.push_str(&format!("   Note: the run was {difference}.\n"));
    }
    for note in &verdict.notes {
        out.push_str(&format!("   Note: {note}\n"));
    }
}

/// The closing line: the seed, which builds recorded and replayed, and optionally the timing.
fn render_provenance_line(out: &mut String, verdict: &Verdict, show_timing: bool) {
    let build = if verdict.same_build {
        format!("recorded and replayed by {}", verdict.recorded_build)
    } else {
        format!("recorded by {}, replayed by {}", verdict.recorded_build, crate::BUILD)
    };
    let timing = match verdict.original_seconds {
        Some(original) => format!(
            "replayed in {:.3}s; the run took {original:.3}s",
            verdict.replay_seconds
        ),
        None => format!("replayed in {:.3}s", verdict.replay_seconds),
    };
    if show_timing {
        out.push_str(&format!("   Seed {}; {build}; {timing}.\n", verdict.seed));
    } else {
        out.push_str(&format!("   Seed {}; {build}.\n", verdict.seed));
    }
}

pub async fn replay(args: ReplayArgs, out: &mut Output) -> Result<i32, CliError> {
    let (profile, flwr_home) = connection::load_profile(args.superlink.as_deref(), out)?;
    let mut connection = connection::connect(profile, &flwr_home, out).await?;
    let record = fetch(&mut connection, args.run_id).await?;
    if args.events && !out.json() {
        out.raw(&timeline(&record, args.run_id)?);
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let until_round = args.until_round;
    // On a terminal, a progress line on stderr while long runs replay.
    let show_progress = !out.json() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let run_id = args.run_id;
    let verdict = tokio::task::spawn_blocking(move || {
        let mut last_shown = std::time::Instant::now();
        let mut progress = |round: u64, rounds: u64| {
            if show_progress && last_shown.elapsed() > std::time::Duration::from_millis(100) {
                last_shown = std::time::Instant::now();
                eprint!("\rReplaying run {run_id}: round {round}/{rounds}...");
            }
        };
        let verdict = replay::replay_with_progress(&record, workers, until_round, &mut progress);
        if show_progress {
            eprint!("\r\x1b[2K");
        }
        verdict
    })
    .await
    .map_err(|e| CliError::new(format!("the replay failed: {e}")))?
    .map_err(|e| {
        CliError::with_code(
            format!("Run {} cannot be replayed: {e}", args.run_id),
            exit::REPLAY_IMPOSSIBLE,
        )
    })?;
    let code = exit_status(&verdict.outcome);
    if out.json() {
        out.print_json(&verdict_json(&verdict));
    } else {
        out.raw(&render_verdict(&verdict, out.color_stdout(), true));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_record_reads_back_whole_and_from_the_start_every_time() {
        let mut record = SpooledRecord::new().unwrap();
        let page = |from: u64| -> Vec<ext::RecordedEvent> {
            (from..from + 3)
                .map(|seq| ext::RecordedEvent {
                    seq,
                    kind: format!("Kind{seq}"),
                    version: 1,
                    payload: vec![seq as u8; seq as usize],
                    recorded_at_us: seq as i64 * 10,
                })
                .collect()
        };
        record.append(&page(1)).unwrap();
        record.append(&[]).unwrap();
        record.append(&page(4)).unwrap();
        for _ in 0..2 {
            let events: Vec<RecordedEvent> = record.events().map(Result::unwrap).collect();
            assert_eq!(events.len(), 6);
            for (event, seq) in events.iter().zip(1u64..) {
                assert_eq!(event.seq, Seq(seq));
                assert_eq!(event.kind, format!("Kind{seq}"));
                assert_eq!(event.payload, vec![seq as u8; seq as usize]);
                assert_eq!(event.at, Micros(seq as i64 * 10));
            }
        }
    }
}
