//! `state.db`: the event table and its projections, in one SQLite file.
//!
//! **This is the only module that contains SQL or imports rusqlite.**
//!
//! [`Store`] is the single writer. [`Store::append`] writes a run's new
//! events (or node events, under run id 0) and updates the projections
//! (`runs`, `run_logs`, `round_metrics`, `nodes`) in the same transaction, so a reader never sees one without the other.
//! The projection rows are computed by the pure fold of `domain::views`; the
//! store only writes them. [`Store::rebuild_projections`] folds the whole
//! event table again and [`Store::verify`] compares the result with the
//! tables.
//!
//! [`Reader`] opens its own read-only connection; WAL mode lets any number of
//! readers run beside the writer.
//!
//! Durability: WAL with `synchronous=NORMAL`. An append that returned is in
//! the WAL file and survives the death of the process (tests kill a writer
//! with SIGKILL); after a power loss the last appends may be rolled back, the
//! file is never corrupt.
//!
//! Compatibility: a file that is not ours, or was written by a newer schema,
//! is refused with [`Error::SchemaMismatch`] (Flower's exit code 105) before
//! anything is written to it.

use crate::codec;
pub mod migrations;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, Row};

use crate::domain::event::{Event, RunSubmitted, SubStatus, Usage};
use crate::domain::ids::{Micros, RunId, Seq};
use crate::domain::node::{self, Node, NodeStatus, Nodes};
use crate::domain::run::{self, Run, State, Status};
use crate::domain::views::{self, LogChunk, MetricSource, Projections, RoundMetrics, StoredEvent};
use crate::records::{Digest, MetricRecord};
use migrations::{APPLICATION_ID, EVENTS, MIGRATIONS, NODES, ROUND_METRICS, RUNS, RUN_LOGS};

/// Flower's exit code for a state database of another schema.
pub const EXIT_SCHEMA_MISMATCH: i32 = 105;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a floret state database of a schema this build knows.
    #[error("{detail}")]
    SchemaMismatch { path: PathBuf, detail: String },
    #[error("state database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("state database {path}: {source}")]
    Codec { path: PathBuf, source: codec::Error },
    #[error("projections of {path} differ from the fold of its events: {detail}")]
    ProjectionMismatch { path: PathBuf, detail: String },
    /// SQLite's `SQLITE_FULL`: the disk is full, or the file reached its
    /// page limit. Nothing was written; the same write can succeed later.
    #[error("cannot write the state database {path}: {reason}; free some disk space and try again")]
    Full { path: PathBuf, reason: String },
}

impl Error {
    /// Whether the write failed for lack of space (and may succeed later).
    pub fn is_full(&self) -> bool {
        matches!(self, Error::Full { .. })
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What a database file holds, read without changing it.
#[derive(Debug, PartialEq)]
enum Inspection {
    /// No tables yet: a new or empty file.
    Empty,
    /// Ours, with this many migrations applied.
    Ours { version: usize },
    /// Someone else's (tables listed).
    Foreign { application_id: i32, tables: Vec<String> },
}

fn inspect(connection: &Connection) -> rusqlite::Result<Inspection> {
    let application_id: i32 = connection.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = version as usize;
    let mut statement = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables: Vec<String> = statement
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match (application_id, tables.is_empty()) {
        (APPLICATION_ID, _) => Inspection::Ours { version },
        (0, true) => Inspection::Empty,
        _ => Inspection::Foreign { application_id, tables },
    })
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -64000;",
    )
}

fn schema_mismatch(path: &Path, inspection: &Inspection) -> Option<Error> {
    let detail = match inspection {
        Inspection::Empty => return None,
        Inspection::Ours { version } if *version <= MIGRATIONS.len() => return None,
        Inspection::Ours { version } => format!(
            "The state database {} has schema version {version}, but this build of floret only knows \
             versions up to {}: it was written by a newer floret. Upgrade floret, or move the file \
             away to start with a fresh database.",
            path.display(),
            MIGRATIONS.len()
        ),
        Inspection::Foreign { tables, .. } => {
            let flower = tables.iter().any(|t| t == "alembic_version" || t == "run");
            format!(
                "The file {} is not a floret state database{} (tables: [{}]). Back it up and move it \
                 away, or point --database at another file, to start with a fresh database.",
                path.display(),
                if flower {
                    "; it looks like a Python Flower state database"
                } else {
                    ""
                },
                tables.join(", ")
            )
        }
    };
    Some(Error::SchemaMismatch {
        path: path.to_path_buf(),
        detail,
    })
}

/// The single writer of a state database.
pub struct Store {
    connection: Connection,
    path: PathBuf,
    /// The fold of every event so far; loaded from the `runs` projection.
    state: State,
    /// The fold of every node event so far; loaded from `nodes`.
    nodes: Nodes,
    /// Time of the newest event; new events get strictly later times.
    last_at: Micros,
    /// Test-only page cap (see [`Store::set_page_cap_file`]).
    page_cap_file: Option<PathBuf>,
    page_cap: Option<u64>,
}

impl Store {
    /// Opens (or creates) the database at `path`. A file of another schema is
    /// refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Store> {
        let sqlite = sqlite_at(path);
        if path.exists() {
            let probe =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(sqlite)?;
            let inspection = inspect(&probe).map_err(sqlite)?;
            drop(probe);
            if let Some(error) = schema_mismatch(path, &inspection) {
                return Err(error);
            }
        }
        let connection = Connection::open(path).map_err(sqlite)?;
        Store::init(connection, path.to_path_buf())
    }

    /// A database that lives only in memory (tests, replay).
    pub fn open_in_memory() -> Result<Store> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(sqlite_at(&path))?;
        Store::init(connection, path)
    }

    fn init(mut connection: Connection, path: PathBuf) -> Result<Store> {
        let sqlite = sqlite_at(&path);
        configure(&connection).map_err(sqlite)?;
        // Check again under the write connection: the file may have been
        // created by another process since the probe.
        let inspection = inspect(&connection).map_err(sqlite)?;
        if let Some(error) = schema_mismatch(&path, &inspection) {
            return Err(error);
        }
        if let Err(source) = migrations::migrate(&mut connection) {
            return Err(write_error(&connection, &path, source, 0));
        }
        let runs = query_runs(&connection, &path, RunFilter::All)?;
        let state = State {
            runs: runs.into_iter().map(|run| (run.run_id(), run)).collect(),
        };
        let nodes = query_nodes(&connection, &path)?;
        let last_at: Option<i64> = connection
            .query_row(&format!("SELECT MAX(recorded_at_us) FROM {EVENTS}"), [], |r| r.get(0))
            .map_err(sqlite)?;
        Ok(Store {
            connection,
            path,
            state,
            nodes,
            last_at: Micros(last_at.unwrap_or(0)),
            page_cap_file: None,
            page_cap: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database lives in memory (no other connection can open it).
    pub fn in_memory(&self) -> bool {
        self.path == Path::new(":memory:")
    }

    /// The fold of every event appended so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The fold of every node event appended so far.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Time of the newest event.
    pub fn last_at(&self) -> Micros {
        self.last_at
    }

    /// Appends `events` of one run in one transaction and updates the
    /// projections. `now` is the wall clock; each event is stamped with a time
    /// strictly after the previous event's. Events must come from
    /// `domain::run::decide` against [`Store::state`].
    pub fn append(&mut self, run_id: RunId, events: &[Event], now: Micros) -> Result<Vec<StoredEvent>> {
        self.append_batch(&[(run_id, events)], now)
    }

    /// Appends the events of several runs in one transaction.
    pub(crate) fn append_batch(&mut self, batch: &[(RunId, &[Event])], now: Micros) -> Result<Vec<StoredEvent>> {
        self.apply_page_cap();
        // Fold into a scratch copy of the touched runs first: if the
        // transaction fails, the in-memory state is left as it was.
        let mut scratch = State::default();
        for (run_id, _) in batch {
            if let Some(run) = self.state.runs.get(run_id) {
                scratch.runs.insert(*run_id, run.clone());
            }
        }
        let touches_nodes = batch.iter().any(|(_, events)| events.iter().any(node::is_node_event));
        let mut nodes = if touches_nodes {
            self.nodes.clone()
        } else {
            Nodes::default()
        };
        let last_at = self.last_at;
        let written = self.connection.transaction().and_then(|transaction| {
            let written = write_batch(&transaction, batch, now, last_at, &mut scratch, &mut nodes)?;
            transaction.commit()?;
            Ok(written)
        });
        let (stored, at) = written.map_err(|source| self.write_error(source, batch))?;
        self.last_at = at;
        self.state.runs.extend(scratch.runs);
        if touches_nodes {
            self.nodes = nodes;
        }
        Ok(stored)
    }

    /// Test-only: caps the database's page count at the number held in
    /// `file` (read before each append; 0 or no file: no cap), so that tests
    /// can fill the database without filling a disk.
    pub fn set_page_cap_file(&mut self, file: PathBuf) {
        self.page_cap_file = Some(file);
    }

    fn apply_page_cap(&mut self) {
        let Some(file) = &self.page_cap_file else {
            return;
        };
        let cap = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|&cap| cap > 0)
            .unwrap_or(SQLITE_MAX_PAGE_COUNT);
        if self.page_cap != Some(cap) {
            let applied: rusqlite::Result<i64> =
                self.connection
                    .query_row(&format!("PRAGMA max_page_count = {cap}"), [], |r| r.get(0));
            if applied.is_ok() {
                self.page_cap = Some(cap);
            }
        }
    }

    /// The error of a failed write: a full disk (or a database at its size
    /// limit) says which file and how much it needs.
    fn write_error(&self, source: rusqlite::Error, batch: &[(RunId, &[Event])]) -> Error {
        let payload: u64 = batch
            .iter()
            .flat_map(|(_, events)| events.iter())
            .map(|event| codec::encode(event).2.len() as u64)
            .sum();
        write_error(&self.connection, &self.path, source, payload)
    }

    /// Every event, in order (used to rebuild projections).
    pub fn all_events(&self) -> Result<Vec<StoredEvent>> {
        query_events(&self.connection, &self.path, None)
    }

    /// Every event of one run, in order.
    pub fn run_events(&self, run_id: RunId) -> Result<Vec<StoredEvent>> {
        query_events(&self.connection, &self.path, Some(run_id))
    }

    /// The projections as the tables hold them.
    pub fn load_projections(&self) -> Result<Projections> {
        load_projections(&self.connection, &self.path)
    }

    /// The projections as the fold of the event table defines them.
    pub(crate) fn rebuild_projections(&self) -> Result<Projections> {
        Ok(Projections::fold(&self.all_events()?))
    }

    /// Checks that the projection tables equal the fold of the events, and
    /// that the writer's in-memory state equals both.
    pub fn verify(&self) -> Result<()> {
        let folded = self.rebuild_projections()?;
        let loaded = self.load_projections()?;
        let mismatch = |detail: String| Error::ProjectionMismatch {
            path: self.path.clone(),
            detail,
        };
        if folded.state != loaded.state {
            return Err(mismatch(first_run_difference(&folded.state, &loaded.state)));
        }
        if folded.state != self.state {
            return Err(mismatch("the writer's in-memory state differs from the tables".into()));
        }
        if folded.logs != loaded.logs {
            return Err(mismatch(format!(
                "run_logs has {} chunks, the fold has {}",
                loaded.logs.len(),
                folded.logs.len()
            )));
        }
        if folded.rounds != loaded.rounds {
            return Err(mismatch(format!(
                "round_metrics has {} rows, the fold has {}",
                loaded.rounds.len(),
                folded.rounds.len()
            )));
        }
        if folded.nodes != loaded.nodes {
            return Err(mismatch(first_node_difference(&folded.nodes, &loaded.nodes)));
        }
        if folded.nodes != self.nodes {
            return Err(mismatch(
                "the writer's in-memory nodes differ from the nodes table".into(),
            ));
        }
        Ok(())
    }

    /// Replaces the projection tables with the fold of the event table.
    pub fn rebuild(&mut self) -> Result<()> {
        let folded = self.rebuild_projections()?;
        let transaction = self.connection.transaction().map_err(sqlite_at(&self.path))?;
        let write = |transaction: &rusqlite::Transaction| -> rusqlite::Result<()> {
            transaction.execute_batch(&format!(
                "DELETE FROM {RUNS}; DELETE FROM {RUN_LOGS}; DELETE FROM {ROUND_METRICS}; DELETE FROM {NODES};"
            ))?;
            for node in folded.nodes.nodes.values() {
                write_node(transaction, node)?;
            }
            for run in folded.state.runs.values() {
                write_run(transaction, run)?;
            }
            for chunk in &folded.logs {
                insert_log(transaction, chunk)?;
            }
            for metrics in folded.rounds.values() {
                upsert_round(transaction, metrics)?;
            }
            Ok(())
        };
        write(&transaction).map_err(sqlite_at(&self.path))?;
        transaction.commit().map_err(sqlite_at(&self.path))?;
        self.state = folded.state;
        self.nodes = folded.nodes;
        Ok(())
    }

    /// A read-only view through the writer's own connection.
    pub fn reader(&self) -> ReadView<'_> {
        ReadView {
            connection: &self.connection,
            path: &self.path,
        }
    }
}

/// How every SQLite error of the file at `path` becomes ours.
fn sqlite_at(path: &Path) -> impl Fn(rusqlite::Error) -> Error + Copy + '_ {
    move |source| Error::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// The error of a failed write of `payload` bytes: for `SQLITE_FULL`, which
/// file, why and about how much the write needs.
fn write_error(connection: &Connection, path: &Path, source: rusqlite::Error, payload: u64) -> Error {
    if source.sqlite_error_code() != Some(rusqlite::ErrorCode::DiskFull) {
        return sqlite_at(path)(source);
    }
    let pragma = |name: &str| -> u64 {
        connection
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map_or(0, |n| n as u64)
    };
    let page_size = pragma("page_size").max(512);
    let (pages, max_pages) = (pragma("page_count"), pragma("max_page_count"));
    // Pages are written whole (to the WAL, with a 24-byte frame header): the
    // payload's, plus the index, projection and parent pages it touches.
    let needed = human_bytes((payload.div_ceil(page_size) + 4) * (page_size + 24));
    let reason = if max_pages < SQLITE_MAX_PAGE_COUNT && pages + 1 >= max_pages {
        format!(
            "it reached its size limit of {} ({max_pages} pages, PRAGMA max_page_count) and this change needs \
             about {needed} more",
            human_bytes(max_pages * page_size),
        )
    } else {
        let free = free_space(path).map_or_else(|| "unknown".to_string(), human_bytes);
        format!("the disk is full ({free} free where it lives; this change needs about {needed})")
    };
    Error::Full {
        path: path.to_path_buf(),
        reason,
    }
}

/// Inserts a batch's events and projection rows in `transaction`; returns
/// them stored, and the time of the last.
fn write_batch(
    transaction: &Connection,
    batch: &[(RunId, &[Event])],
    now: Micros,
    last_at: Micros,
    scratch: &mut State,
    nodes: &mut Nodes,
) -> rusqlite::Result<(Vec<StoredEvent>, Micros)> {
    let mut at = last_at;
    let mut stored = Vec::with_capacity(batch.iter().map(|(_, e)| e.len()).sum());
    for (run_id, events) in batch {
        for event in events.iter() {
            at = Micros(now.0.max(at.0 + 1));
            let (kind, version, payload) = codec::encode(event);
            transaction
                .prepare_cached(&format!(
                    "INSERT INTO {EVENTS} (run_id, kind, version, payload, recorded_at_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5)"
                ))?
                .execute(params![run_id.to_sql(), kind, version, payload, at.0])?;
            let record = StoredEvent {
                seq: Seq(transaction.last_insert_rowid() as u64),
                run_id: *run_id,
                at,
                event: event.clone(),
            };
            if node::is_node_event(event) {
                node::apply(nodes, event, at);
                if let Some(node) = event.node_id().and_then(|node_id| nodes.nodes.get(&node_id)) {
                    write_node(transaction, node)?;
                }
            } else {
                run::apply(scratch, *run_id, event, at);
            }
            write_event_projections(transaction, &record)?;
            stored.push(record);
        }
        if let Some(run) = scratch.runs.get(run_id) {
            write_run(transaction, run)?;
        }
    }
    Ok((stored, at))
}

/// SQLite's largest `max_page_count` (its default).
const SQLITE_MAX_PAGE_COUNT: u64 = 4_294_967_294;

/// Bytes available to unprivileged users on the file system holding `path`.
fn free_space(path: &Path) -> Option<u64> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let directory = std::ffi::CString::new(directory.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a
    // valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(directory.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// 1024-based sizes, as `flwr ls` prints them.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    value /= 1024.0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn first_run_difference(folded: &State, loaded: &State) -> String {
    for (run_id, run) in &folded.runs {
        match loaded.runs.get(run_id) {
            None => return format!("run {run_id} is missing from the runs table"),
            Some(row) if row != run => return format!("run {run_id}: table has {row:?}, fold has {run:?}"),
            Some(_) => {}
        }
    }
    match loaded.runs.keys().find(|id| !folded.runs.contains_key(id)) {
        Some(run_id) => format!("run {run_id} is in the runs table but has no events"),
        None => "the runs differ".into(),
    }
}

fn first_node_difference(folded: &Nodes, loaded: &Nodes) -> String {
    for (node_id, node) in &folded.nodes {
        match loaded.nodes.get(node_id) {
            None => return format!("node {node_id} is missing from the nodes table"),
            Some(row) if row != node => return format!("node {node_id}: table has {row:?}, fold has {node:?}"),
            Some(_) => {}
        }
    }
    match loaded.nodes.keys().find(|id| !folded.nodes.contains_key(id)) {
        Some(node_id) => format!("node {node_id} is in the nodes table but has no events"),
        None => "the nodes differ".into(),
    }
}

fn write_node(connection: &Connection, node: &Node) -> rusqlite::Result<()> {
    connection
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {NODES} (node_id, public_key, status, registered_at_us, \
             last_activated_at_us, last_deactivated_at_us, unregistered_at_us, heartbeat_interval) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?
        .execute(params![
            node.node_id as i64,
            node.public_key,
            node.status.as_str(),
            node.registered_at.0,
            node.last_activated_at.map(|t| t.0),
            node.last_deactivated_at.map(|t| t.0),
            node.unregistered_at.map(|t| t.0),
            node.heartbeat_interval,
        ])?;
    Ok(())
}

fn query_nodes(connection: &Connection, path: &Path) -> Result<Nodes> {
    let rows = collect_rows(
        connection,
        path,
        &format!(
            "SELECT node_id, public_key, status, registered_at_us, last_activated_at_us, \
             last_deactivated_at_us, unregistered_at_us, heartbeat_interval FROM {NODES} ORDER BY node_id"
        ),
        &[],
        |row| {
            let status: String = row.get(2)?;
            let status = NodeStatus::parse(&status).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown node status {status}").into(),
                )
            })?;
            let micros = |index: usize| -> rusqlite::Result<Option<Micros>> {
                Ok(row.get::<_, Option<i64>>(index)?.map(Micros))
            };
            Ok(Node {
                node_id: row.get::<_, i64>(0)? as u64,
                public_key: row.get(1)?,
                status,
                registered_at: Micros(row.get(3)?),
                last_activated_at: micros(4)?,
                last_deactivated_at: micros(5)?,
                unregistered_at: micros(6)?,
                heartbeat_interval: row.get(7)?,
            })
        },
    )?;
    Ok(Nodes {
        nodes: rows.into_iter().map(|node| (node.node_id, node)).collect(),
    })
}

fn write_event_projections(transaction: &Connection, stored: &StoredEvent) -> rusqlite::Result<()> {
    if let Some(chunk) = views::log_chunk(stored) {
        insert_log(transaction, &chunk)?;
    }
    if let Some(metrics) = views::round_metrics(stored) {
        upsert_round(transaction, &metrics)?;
    }
    Ok(())
}

fn insert_log(connection: &Connection, chunk: &LogChunk) -> rusqlite::Result<()> {
    connection
        .prepare_cached(&format!(
            "INSERT INTO {RUN_LOGS} (seq, run_id, recorded_at_us, text) VALUES (?1, ?2, ?3, ?4)"
        ))?
        .execute(params![
            chunk.seq.0 as i64,
            chunk.run_id.to_sql(),
            chunk.at.0,
            chunk.text
        ])?;
    Ok(())
}

fn upsert_round(connection: &Connection, metrics: &RoundMetrics) -> rusqlite::Result<()> {
    connection
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {ROUND_METRICS} \
             (run_id, round, source, results, failures, metrics, arrays) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))?
        .execute(params![
            metrics.run_id.to_sql(),
            metrics.round as i64,
            metrics.source.as_str(),
            metrics.results as i64,
            metrics.failures as i64,
            metrics.metrics.as_ref().map(codec::encode_value),
            metrics.arrays.map(|d| d.0.to_vec()),
        ])?;
    Ok(())
}

fn write_run(connection: &Connection, run: &Run) -> rusqlite::Result<()> {
    let submitted = &run.submitted;
    connection
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {RUNS} (run_id, fab_id, fab_version, fab_hash, federation, \
             override_config, federation_options, seed, build, status, sub_status, details, \
             pending_at_us, starting_at_us, running_at_us, finished_at_us, stop_requested_at_us, \
             events, simulation_events, log_bytes, round, simulation_finished, bytes_sent, \
             bytes_recv, clientapp_runtime) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
        ))?
        .execute(params![
            submitted.run_id.to_sql(),
            submitted.fab_id,
            submitted.fab_version,
            submitted.fab_hash,
            submitted.federation,
            codec::encode_value(&submitted.override_config),
            codec::encode_value(&submitted.federation_options),
            submitted.seed as i64,
            submitted.build,
            run.status.status_str(),
            run.status.sub_status_str(),
            run.details,
            run.pending_at.0,
            run.starting_at.map(|t| t.0),
            run.running_at.map(|t| t.0),
            run.finished_at.map(|t| t.0),
            run.stop_requested_at.map(|t| t.0),
            run.events as i64,
            run.simulation_events as i64,
            run.log_bytes as i64,
            run.round as i64,
            run.simulation_finished,
            run.usage.as_ref().map(|u| u.bytes_sent as i64),
            run.usage.as_ref().map(|u| u.bytes_recv as i64),
            run.usage.as_ref().map(|u| u.clientapp_runtime),
        ])?;
    Ok(())
}

const RUN_COLUMNS: &str = "run_id, fab_id, fab_version, fab_hash, federation, override_config, \
    federation_options, seed, build, status, sub_status, details, pending_at_us, starting_at_us, \
    running_at_us, finished_at_us, stop_requested_at_us, events, simulation_events, log_bytes, \
    round, simulation_finished, bytes_sent, bytes_recv, clientapp_runtime";

/// A row of `runs` before its blobs are decoded.
struct RawRun {
    run: Run,
    override_config: Vec<u8>,
    federation_options: Vec<u8>,
}

fn raw_run(row: &Row) -> rusqlite::Result<RawRun> {
    let micros =
        |index: usize| -> rusqlite::Result<Option<Micros>> { Ok(row.get::<_, Option<i64>>(index)?.map(Micros)) };
    let status: String = row.get(9)?;
    let sub_status: String = row.get(10)?;
    let status = match (status.as_str(), SubStatus::parse(&sub_status)) {
        ("pending", _) => Status::Pending,
        ("starting", _) => Status::Starting,
        ("running", _) => Status::Running,
        ("finished", Some(sub)) => Status::Finished(sub),
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                9,
                rusqlite::types::Type::Text,
                format!("unknown status {status}:{sub_status}").into(),
            ))
        }
    };
    Ok(RawRun {
        run: Run {
            submitted: RunSubmitted {
                run_id: RunId::from_sql(row.get(0)?),
                fab_id: row.get(1)?,
                fab_version: row.get(2)?,
                fab_hash: row.get(3)?,
                federation: row.get(4)?,
                override_config: Default::default(),
                federation_options: Default::default(),
                seed: row.get::<_, i64>(7)? as u64,
                build: row.get(8)?,
            },
            status,
            details: row.get(11)?,
            pending_at: Micros(row.get(12)?),
            starting_at: micros(13)?,
            running_at: micros(14)?,
            finished_at: micros(15)?,
            stop_requested_at: micros(16)?,
            events: row.get::<_, i64>(17)? as u64,
            simulation_events: row.get::<_, i64>(18)? as u64,
            log_bytes: row.get::<_, i64>(19)? as u64,
            round: row.get::<_, i64>(20)? as u64,
            simulation_finished: row.get(21)?,
            usage: usage(row)?,
        },
        override_config: row.get(5)?,
        federation_options: row.get(6)?,
    })
}

/// The `usage` columns of a `runs` row: all set, or all NULL.
fn usage(row: &Row) -> rusqlite::Result<Option<Usage>> {
    let sent: Option<i64> = row.get(22)?;
    let recv: Option<i64> = row.get(23)?;
    let runtime: Option<f64> = row.get(24)?;
    Ok(match (sent, recv, runtime) {
        (Some(sent), Some(recv), Some(runtime)) => Some(Usage {
            bytes_sent: sent as u64,
            bytes_recv: recv as u64,
            clientapp_runtime: runtime,
        }),
        _ => None,
    })
}

/// Which runs a query returns.
#[derive(Clone, Copy, Debug)]
pub enum RunFilter {
    All,
    One(RunId),
    /// The newest `n` by pending time.
    Newest(u64),
}

/// The rows of `sql` with `params`, each mapped by `map`: the one place that
/// prepares, binds and collects (callers decode what the rows hold).
fn collect_rows<T>(
    connection: &Connection,
    path: &Path,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    map: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let sqlite = sqlite_at(path);
    let mut statement = connection.prepare_cached(sql).map_err(sqlite)?;
    let rows = statement.query_map(params, map).map_err(sqlite)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sqlite)
}

/// Like [`collect_rows`], but stops before the row that would take the
/// rows' total `size` beyond `max_bytes` (the first row is always taken):
/// a page that never holds more than it must, however many rows match.
fn collect_rows_within<T>(
    connection: &Connection,
    path: &Path,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    mut map: impl FnMut(&Row) -> rusqlite::Result<T>,
    size: impl Fn(&T) -> usize,
    max_bytes: usize,
) -> Result<Vec<T>> {
    let sqlite = sqlite_at(path);
    let mut statement = connection.prepare_cached(sql).map_err(sqlite)?;
    let mut rows = statement.query(params).map_err(sqlite)?;
    let (mut page, mut total) = (Vec::new(), 0usize);
    while let Some(row) = rows.next().map_err(sqlite)? {
        let item = map(row).map_err(sqlite)?;
        total = total.saturating_add(size(&item));
        if !page.is_empty() && total > max_bytes {
            break;
        }
        page.push(item);
    }
    Ok(page)
}

fn query_runs(connection: &Connection, path: &Path, filter: RunFilter) -> Result<Vec<Run>> {
    let ordered = format!("SELECT {RUN_COLUMNS} FROM {RUNS} ORDER BY pending_at_us DESC, run_id");
    let raws = match filter {
        RunFilter::All => collect_rows(connection, path, &ordered, &[], raw_run)?,
        RunFilter::One(run_id) => collect_rows(
            connection,
            path,
            &format!("SELECT {RUN_COLUMNS} FROM {RUNS} WHERE run_id = ?1"),
            &[&run_id.to_sql()],
            raw_run,
        )?,
        RunFilter::Newest(n) => collect_rows(
            connection,
            path,
            &format!("{ordered} LIMIT ?1"),
            &[&(n.min(i64::MAX as u64) as i64)],
            raw_run,
        )?,
    };
    let codec_error = |source| Error::Codec {
        path: path.to_path_buf(),
        source,
    };
    raws.into_iter()
        .map(|raw| {
            let mut run = raw.run;
            run.submitted.override_config =
                codec::decode_value("override_config", &raw.override_config).map_err(codec_error)?;
            run.submitted.federation_options =
                codec::decode_value("federation_options", &raw.federation_options).map_err(codec_error)?;
            Ok(run)
        })
        .collect()
}

fn query_events(connection: &Connection, path: &Path, run_id: Option<RunId>) -> Result<Vec<StoredEvent>> {
    let select = format!("SELECT seq, run_id, kind, version, payload, recorded_at_us FROM {EVENTS}");
    let map = |row: &Row| -> rusqlite::Result<(i64, i64, String, u32, Vec<u8>, i64)> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    };
    let rows = match run_id {
        None => collect_rows(connection, path, &format!("{select} ORDER BY seq"), &[], map)?,
        Some(run_id) => collect_rows(
            connection,
            path,
            &format!("{select} WHERE run_id = ?1 ORDER BY seq"),
            &[&run_id.to_sql()],
            map,
        )?,
    };
    rows.into_iter()
        .map(|(seq, run_id, kind, version, payload, at)| {
            let event = codec::decode(&kind, version, &payload).map_err(|source| Error::Codec {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(StoredEvent {
                seq: Seq(seq as u64),
                run_id: RunId::from_sql(run_id),
                at: Micros(at),
                event,
            })
        })
        .collect()
}

pub use crate::codec::RawEvent;

/// Up to `limit` events of a run after sequence number `after`, undecoded,
/// of at most `max_bytes` of payload (or one event).
fn query_raw_events(
    connection: &Connection,
    path: &Path,
    run_id: RunId,
    after: Seq,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<RawEvent>> {
    collect_rows_within(
        connection,
        path,
        &format!(
            "SELECT seq, kind, version, payload, recorded_at_us FROM {EVENTS} \
             WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ),
        &[&run_id.to_sql(), &(after.0 as i64), &(limit as i64)],
        |row| {
            Ok(RawEvent {
                seq: Seq(row.get::<_, i64>(0)? as u64),
                kind: row.get(1)?,
                version: row.get(2)?,
                payload: row.get(3)?,
                at: Micros(row.get(4)?),
            })
        },
        |event| event.payload.len() + event.kind.len(),
        max_bytes,
    )
}

/// Log rows of every run, or of one run after `after` and of at most
/// `max_bytes` of text (or one row).
fn query_logs(
    connection: &Connection,
    path: &Path,
    run_id: Option<RunId>,
    after: Micros,
    max_bytes: usize,
) -> Result<Vec<LogChunk>> {
    let select = format!("SELECT seq, run_id, recorded_at_us, text FROM {RUN_LOGS}");
    let map = |row: &Row| -> rusqlite::Result<LogChunk> {
        Ok(LogChunk {
            seq: Seq(row.get::<_, i64>(0)? as u64),
            run_id: RunId::from_sql(row.get(1)?),
            at: Micros(row.get(2)?),
            text: row.get(3)?,
        })
    };
    match run_id {
        None => collect_rows(connection, path, &format!("{select} ORDER BY seq"), &[], map),
        Some(run_id) => collect_rows_within(
            connection,
            path,
            &format!("{select} WHERE run_id = ?1 AND recorded_at_us > ?2 ORDER BY recorded_at_us"),
            &[&run_id.to_sql(), &after.0],
            map,
            |chunk| chunk.text.len(),
            max_bytes,
        ),
    }
}

fn query_rounds(connection: &Connection, path: &Path, run_id: Option<RunId>) -> Result<Vec<RoundMetrics>> {
    let select = format!("SELECT run_id, round, source, results, failures, metrics, arrays FROM {ROUND_METRICS}");
    type RawRound = (i64, i64, String, i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);
    let map = |row: &Row| -> rusqlite::Result<RawRound> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
        ))
    };
    let rows = match run_id {
        None => collect_rows(connection, path, &select, &[], map)?,
        Some(run_id) => collect_rows(
            connection,
            path,
            &format!("{select} WHERE run_id = ?1 ORDER BY round, source"),
            &[&run_id.to_sql()],
            map,
        )?,
    };
    let corrupt = |what: &str| Error::ProjectionMismatch {
        path: path.to_path_buf(),
        detail: format!("round_metrics holds {what}"),
    };
    rows.into_iter()
        .map(|(run_id, round, source, results, failures, metrics, arrays)| {
            let metrics: Option<MetricRecord> = metrics
                .map(|bytes| codec::decode_value("round metrics", &bytes))
                .transpose()
                .map_err(|source| Error::Codec {
                    path: path.to_path_buf(),
                    source,
                })?;
            let arrays = arrays
                .map(|bytes| bytes.try_into().map(Digest))
                .transpose()
                .map_err(|_| corrupt("a digest that is not 32 bytes"))?;
            Ok(RoundMetrics {
                run_id: RunId::from_sql(run_id),
                round: round as u64,
                source: MetricSource::parse(&source).ok_or_else(|| corrupt("an unknown source"))?,
                results: results as u64,
                failures: failures as u64,
                metrics,
                arrays,
            })
        })
        .collect()
}

fn load_projections(connection: &Connection, path: &Path) -> Result<Projections> {
    let runs = query_runs(connection, path, RunFilter::All)?;
    let rounds = query_rounds(connection, path, None)?;
    Ok(Projections {
        state: State {
            runs: runs.into_iter().map(|run| (run.run_id(), run)).collect(),
        },
        logs: query_logs(connection, path, None, Micros(0), usize::MAX)?,
        rounds: rounds.into_iter().map(|r| ((r.run_id, r.round, r.source), r)).collect(),
        nodes: query_nodes(connection, path)?,
    })
}

/// Queries over a borrowed connection.
pub struct ReadView<'a> {
    connection: &'a Connection,
    path: &'a Path,
}

impl ReadView<'_> {
    pub fn runs(&self, filter: RunFilter) -> Result<Vec<Run>> {
        query_runs(self.connection, self.path, filter)
    }

    /// Log chunks of a run recorded strictly after `after`, in order, of at
    /// most `max_bytes` of text (at least one chunk when there is one).
    pub fn logs_after(&self, run_id: RunId, after: Micros, max_bytes: usize) -> Result<Vec<LogChunk>> {
        query_logs(self.connection, self.path, Some(run_id), after, max_bytes)
    }

    /// When the last log chunk of a run was recorded, if it has one.
    pub(crate) fn last_log_at(&self, run_id: RunId) -> Result<Option<Micros>> {
        self.connection
            .query_row(
                &format!("SELECT MAX(recorded_at_us) FROM {RUN_LOGS} WHERE run_id = ?1"),
                [run_id.to_sql()],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|at| at.map(Micros))
            .map_err(sqlite_at(self.path))
    }

    /// A page of a run's events after `after`, undecoded (what replay
    /// compares): at most `limit` of them and `max_bytes` of payload (at
    /// least one event when there is one).
    pub(crate) fn raw_events(
        &self,
        run_id: RunId,
        after: Seq,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<RawEvent>> {
        query_raw_events(self.connection, self.path, run_id, after, limit, max_bytes)
    }

    pub fn run_events(&self, run_id: RunId) -> Result<Vec<StoredEvent>> {
        query_events(self.connection, self.path, Some(run_id))
    }

    pub fn count_events(&self) -> Result<u64> {
        self.connection
            .query_row(&format!("SELECT COUNT(*) FROM {EVENTS}"), [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sqlite_at(self.path))
    }
}

/// What [`Reader::audit`] found in one snapshot.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// The number of events.
    pub events: u64,
    /// The newest event's sequence number (0: none).
    pub last_seq: u64,
    /// How many runs had their projections compared with their fold.
    pub runs_checked: usize,
    /// Every run of the `runs` table and its status.
    pub runs: BTreeMap<RunId, Status>,
    /// What is wrong: empty when the snapshot is consistent.
    pub violations: Vec<String>,
}

/// A read-only connection of its own, for queries beside the writer.
pub struct Reader {
    connection: Connection,
    path: PathBuf,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let sqlite = sqlite_at(path);
        let connection =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(sqlite)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        Ok(Reader {
            connection,
            path: path.to_path_buf(),
        })
    }

    pub fn view(&self) -> ReadView<'_> {
        ReadView {
            connection: &self.connection,
            path: &self.path,
        }
    }

    /// Audits one read snapshot of the database, writing nothing (beside a
    /// live SuperLink, or after it was killed): the event sequence must be
    /// gapless (1, 2, ..., n), and for every run with an event after `after`
    /// (every run for `Seq(0)`) the projection rows (`runs`, `run_logs`,
    /// `round_metrics`) must equal the fold of the run's events. A run's
    /// projections depend on its own events only, so auditing the runs
    /// touched since the previous audit keeps the whole file checked. What
    /// differs is reported in [`Audit::violations`]; `Err` is a failed read.
    pub fn audit(&self, after: Seq) -> Result<Audit> {
        let sqlite = sqlite_at(&self.path);
        // One deferred read transaction: every query sees the same snapshot.
        let snapshot = self.connection.unchecked_transaction().map_err(sqlite)?;
        let (count, first, last): (i64, i64, i64) = snapshot
            .query_row(
                &format!("SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM {EVENTS}"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(sqlite)?;
        let mut audit = Audit {
            events: count as u64,
            last_seq: last as u64,
            ..Audit::default()
        };
        if count != last || (count > 0 && first != 1) {
            audit.violations.push(format!(
                "the event sequence has gaps: {count} events numbered {first}..={last}"
            ));
        }
        let touched: Vec<i64> = collect_rows(
            &snapshot,
            &self.path,
            &format!("SELECT DISTINCT run_id FROM {EVENTS} WHERE seq > ?1"),
            &[&(after.0 as i64)],
            |row| row.get(0),
        )?;
        for run_id in touched.into_iter().map(RunId::from_sql) {
            let folded = Projections::fold(&query_events(&snapshot, &self.path, Some(run_id))?);
            let row = query_runs(&snapshot, &self.path, RunFilter::One(run_id))?
                .into_iter()
                .next();
            if row.as_ref() != folded.state.runs.get(&run_id) {
                audit.violations.push(format!(
                    "run {run_id}: the runs table has {row:?}, the fold of its events {:?}",
                    folded.state.runs.get(&run_id)
                ));
            }
            let logs = query_logs(&snapshot, &self.path, Some(run_id), Micros(0), usize::MAX)?;
            if logs != folded.logs {
                audit.violations.push(format!(
                    "run {run_id}: run_logs has {} chunks, the fold of its events {}",
                    logs.len(),
                    folded.logs.len()
                ));
            }
            let rounds: BTreeMap<_, _> = query_rounds(&snapshot, &self.path, Some(run_id))?
                .into_iter()
                .map(|r| ((r.run_id, r.round, r.source), r))
                .collect();
            if rounds != folded.rounds {
                audit.violations.push(format!(
                    "run {run_id}: round_metrics has {} rows, the fold of its events {}",
                    rounds.len(),
                    folded.rounds.len()
                ));
            }
            if run_id == crate::domain::event::NODE_EVENTS_RUN_ID {
                let nodes = query_nodes(&snapshot, &self.path)?;
                if nodes != folded.nodes {
                    audit
                        .violations
                        .push(format!("nodes: {}", first_node_difference(&folded.nodes, &nodes)));
                }
            }
            audit.runs_checked += 1;
        }
        audit.runs = query_runs(&snapshot, &self.path, RunFilter::All)?
            .into_iter()
            .map(|run| (run.run_id(), run.status))
            .collect();
        Ok(audit)
    }
}
