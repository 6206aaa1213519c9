//! The one integration-test binary (ripgrep's shape: one link step, shared
//! helpers). Modules and what they cover:
//!
//! - `tidy`: architecture invariants (module docs, SQL only in the store, a pure
//!   core, protobuf only at the boundary, every named fixture generator exists).
//! - `support`: temporary directories, snapshot settings, process helpers.
//! - `bad_input`: bad values refused with one clear line by the CLI and the
//!   SuperLink (run config, federation options, StartRun), the seed page's
//!   `flwr run` output, and every README command run as shown.
//! - `chaos`: the chaos program (tools/chaos.rs) in a small configuration:
//!   SIGKILLs of the SuperLink and its app processes under concurrent clients,
//!   zero invariant violations.
//! - `cli_output`: snapshots of `flwr ls`'s table, detail view and JSON.
//! - `deployment`: deployment mode: real `flower-supernode` 1.27 processes
//!   connect to our SuperLink's Fleet API, go offline when killed, leave when
//!   stopped and reconnect after a restart; the Fleet API's error answers.
//! - `disk_full`: a full state database is reported plainly and the SuperLink
//!   recovers by itself when space returns.
//! - `e2e`: the real binaries end to end: run/list/log/stop, the managed
//!   SuperLink's life, errors.
//! - `fab_fixtures`: FABs byte-identical to real `flwr build` 1.27.
//! - `interop`: the real Flower 1.27 (PyPI) CLI against our SuperLink, and our
//!   CLI and app process against its SuperLink.
//! - `objects`: Flower 1.27's inflatable objects (the Fleet API's message
//!   encoding) equal the real Flower's byte for byte, and inflate both ways.
//! - `python`: users' Python Flower Apps through the Python bridge, with the
//!   real `flwr` 1.27 and 1.42: Flower's results, replay, determinism, faults,
//!   stops, load errors, the built-in ServerApp with a Python ClientApp.
//! - `python_apps`: the reference results of the Python Flower Apps in
//!   `examples/` match those examples and show them learning.
//! - `replay`: live runs followed by replays are identical; divergences are pinned.
//! - `replay_cli`: replays through the binaries under masked CPU features, seeds
//!   ≥ 2^63 passed back, runs in progress.
//! - `serverapp`: deployment runs: floret's `flwr-serverapp` drives real
//!   Flower 1.27 SuperNodes through Flower's own SuperLink, with the results
//!   of a simulation of the same app.
//! - `sim`: determinism of the simulation engine, learning, failures, stops.
//! - `strategies`: every strategy and DP wrapper learns on digits and replays.
//! - `traffic`: message weights equal Flower 1.27's own count; runs report
//!   their traffic and ClientApp time.
//! - `store`: the event-sourcing laws over random command sequences (proptest),
//!   schema refusal with exit code 105, and crash safety under SIGKILL.
//! - `trust`: local processes that are not the owner: tokens on app writes,
//!   runs nobody else can take, the Local API secret, private files, bounded
//!   messages and logs.

mod bad_input;
mod chaos;
mod cli_output;
mod deployment;
mod disk_full;
mod e2e;
mod fab_fixtures;
mod interop;
mod objects;
mod python;
mod python_apps;
mod replay;
mod replay_cli;
mod serverapp;
mod sim;
mod store;
mod strategies;
mod support;
mod tidy;
mod traffic;
mod trust;
