//! The one integration-test binary (ripgrep's shape: one link step, shared
//! helpers). Modules and what they cover:
//!
//! - `tidy`: architecture invariants (module docs, SQL only in the store, a pure
//!   core, protobuf only at the boundary).
//! - `support`: temporary directories, snapshot settings, process helpers.
//! - `cli_output`: snapshots of `flwr ls`'s table, detail view and JSON.
//! - `disk_full`: a full state database is reported plainly and the SuperLink
//!   recovers by itself when space returns.
//! - `e2e`: the real binaries end to end: run/list/log/stop, the managed
//!   SuperLink's life, errors.
//! - `fab_fixtures`: FABs byte-identical to real `flwr build` 1.27.
//! - `interop`: the real Flower 1.27 (PyPI) CLI against our SuperLink, and our
//!   CLI and app process against its SuperLink.
//! - `replay`: live runs followed by replays are identical; divergences are pinned.
//! - `sim`: determinism of the simulation engine, learning, failures, stops.
//! - `strategies`: every strategy and DP wrapper learns on digits and replays.
//! - `traffic`: message weights equal Flower 1.27's own count; runs report
//!   their traffic and ClientApp time.
//! - `store`: the event-sourcing laws over random command sequences (proptest),
//!   schema refusal with exit code 105, and crash safety under SIGKILL.

mod cli_output;
mod disk_full;
mod e2e;
mod fab_fixtures;
mod interop;
mod replay;
mod sim;
mod store;
mod strategies;
mod support;
mod tidy;
mod traffic;
