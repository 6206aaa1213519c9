//! The schema of `state.db`, as an append-only list of migrations.
//!
//! The number of migrations applied is kept in `PRAGMA user_version`; the
//! file is marked as ours with `PRAGMA application_id`. Rules, as in cargo's
//! SQLite code: **never edit, remove or reorder an entry**; a schema change
//! is a new entry at the end. A database whose `user_version` is beyond this
//! list was written by a newer build and is refused (exit code 105), never
//! altered.

use rusqlite::Connection;

/// `PRAGMA application_id` of a floret state database: "flrt".
pub(crate) const APPLICATION_ID: i32 = 0x666c_7274;

/// Table names, used by every query.
pub(crate) const EVENTS: &str = "events";
pub(crate) const RUNS: &str = "runs";
pub(crate) const RUN_LOGS: &str = "run_logs";
pub(crate) const ROUND_METRICS: &str = "round_metrics";
pub(crate) const NODES: &str = "nodes";

/// Be sure never to change the order or the entries here.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the event table (ground truth) and its three projections.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        version INTEGER NOT NULL,
        payload BLOB NOT NULL,
        recorded_at_us INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX events_by_run ON events (run_id, seq);
    CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY,
        fab_id TEXT NOT NULL,
        fab_version TEXT NOT NULL,
        fab_hash TEXT NOT NULL,
        federation TEXT NOT NULL,
        override_config BLOB NOT NULL,
        federation_options BLOB NOT NULL,
        seed INTEGER NOT NULL,
        build TEXT NOT NULL,
        status TEXT NOT NULL,
        sub_status TEXT NOT NULL,
        details TEXT NOT NULL,
        pending_at_us INTEGER NOT NULL,
        starting_at_us INTEGER,
        running_at_us INTEGER,
        finished_at_us INTEGER,
        stop_requested_at_us INTEGER,
        events INTEGER NOT NULL,
        simulation_events INTEGER NOT NULL,
        log_bytes INTEGER NOT NULL,
        round INTEGER NOT NULL,
        simulation_finished INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX runs_by_pending_at ON runs (pending_at_us);
    CREATE TABLE run_logs (
        seq INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        recorded_at_us INTEGER NOT NULL,
        text TEXT NOT NULL
    ) STRICT;
    CREATE INDEX run_logs_by_run ON run_logs (run_id, recorded_at_us);
    CREATE TABLE round_metrics (
        run_id INTEGER NOT NULL,
        round INTEGER NOT NULL,
        source TEXT NOT NULL,
        results INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        metrics BLOB,
        arrays BLOB,
        PRIMARY KEY (run_id, round, source)
    ) STRICT;",
    // 2: the latest usage of each run (`UsageRecorded`); NULL when none.
    "ALTER TABLE runs ADD COLUMN bytes_sent INTEGER;
    ALTER TABLE runs ADD COLUMN bytes_recv INTEGER;
    ALTER TABLE runs ADD COLUMN clientapp_runtime REAL;",
    // 3: the SuperNodes of a deployment (node events, stored under run id 0).
    "CREATE TABLE nodes (
        node_id INTEGER PRIMARY KEY,
        public_key BLOB NOT NULL,
        status TEXT NOT NULL,
        registered_at_us INTEGER NOT NULL,
        last_activated_at_us INTEGER,
        last_deactivated_at_us INTEGER,
        unregistered_at_us INTEGER,
        heartbeat_interval REAL NOT NULL
    ) STRICT;",
];

/// Applies the migrations this database has not seen, in one exclusive
/// transaction. The caller has checked that the file is ours (or empty) and
/// not newer than this build.
pub(crate) fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let applied: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = applied as usize;
    for migration in MIGRATIONS.iter().skip(applied) {
        transaction.execute_batch(migration)?;
    }
    transaction.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
        MIGRATIONS.len()
    ))?;
    transaction.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_is_a_no_op() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        migrate(&mut connection).unwrap();
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }
}
