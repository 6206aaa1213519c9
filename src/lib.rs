//! floret: Flower's managed local SuperLink in Rust, event-sourced,
//! deterministic and replayable.
//!
//! # Layout
//!
//! - [`domain`]: the functional core: events, the run state machine,
//!   projections. No I/O.
//! - `store` (this and the other unlinked modules are in the feature
//!   `server`): `state.db`, the event table and its projections. The only
//!   module with SQL.
//! - `superlink`: the SuperLink: Flower's Control and SimulationIo gRPC
//!   APIs over a single-writer engine, and the launcher of app processes.
//! - [`sim`]: the deterministic simulation engine; [`strategy`] (Flower's
//!   strategies and `Strategy.start()`, the server side), [`clientapp`] and
//!   [`mods`] (the ClientApp boundary, the client side), [`kernels`] (the
//!   numerical kernels both sides share), [`builtin`] and [`workload`] (the
//!   Rust-native apps).
//! - `bridge`: users' Python Flower Apps, run unmodified in their own
//!   Python, driven by the engine.
//! - `simulation`: the `flwr-simulation` app process around the engine.
//! - `replay`: re-execution of a recorded run and the comparison.
//! - `cli`: the `flwr` command line.
//! - [`records`], [`pyfmt`], [`flwr_log`], [`timeline`], [`app`], [`fab`], [`federation`],
//!   `proto`, `objects` (Flower's inflatable objects, the Fleet API's message
//!   encoding), [`traffic`]: values, formatting and formats shared by the above;
//!   [`math`]: the pinned transcendental functions of the recorded path;
//!   [`provenance`]: this build's identity and the platform it runs on;
//!   [`owner_only`]: files and directories private to their owner.
//!
//! # Features
//!
//! `server` (default) adds the SuperLink, the app process, the store, replay,
//! the Python bridge and the CLI, with tokio, tonic, SQLite and clap. Without
//! it (`default-features = false`) the crate is a library of records,
//! strategies, mods and the deterministic engine, with no async runtime, no
//! network and no database.
//!
//! See docs/ARCHITECTURE.md for the map and its invariants.

// Without the server, the crate-private helpers only the server uses are
// unused; the default build is where dead code is caught.
#![cfg_attr(not(feature = "server"), allow(dead_code))]
// Module docs link the crate-private items they describe (see them with
// `cargo doc --document-private-items`).
#![allow(rustdoc::private_intra_doc_links)]

pub mod app;
#[cfg(feature = "server")]
pub mod bridge;
pub mod builtin;
#[cfg(feature = "server")]
pub mod cli;
pub mod clientapp;
pub mod codec;
pub mod domain;
pub mod fab;
pub mod federation;
pub mod flwr_log;
pub mod host;
pub mod kernels;
pub mod logfile;
pub mod math;
pub mod mods;
#[cfg(test)]
mod mutation;
#[cfg(feature = "server")]
pub mod objects;
pub mod owner_only;
pub mod params;
pub mod prng;
#[cfg(feature = "server")]
pub mod proto;
pub mod provenance;
pub mod pyfmt;
pub mod records;
#[cfg(feature = "server")]
pub mod replay;
#[cfg(feature = "server")]
pub mod serverapp;
pub mod sim;
#[cfg(feature = "server")]
pub mod simulation;
#[cfg(feature = "server")]
pub mod store;
pub mod strategy;
#[cfg(feature = "server")]
pub mod superlink;
pub mod timeline;
pub mod traffic;
#[cfg(feature = "server")]
pub mod wire;
pub mod workload;

/// The product name reported by the Local API.
pub const PRODUCT: &str = "floret";
/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// This build, as recorded in every run's first event: version, git commit
/// (`-dirty` with uncommitted changes) and a hash of the sources
/// ([`provenance`] has the details).
pub const BUILD: &str = concat!("floret ", env!("CARGO_PKG_VERSION"), " (", env!("FLORET_BUILD_ID"), ")");
/// What `--version` prints after the program name.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (floret, Flower 1.27 compatible; ",
    env!("FLORET_BUILD_ID"),
    ")"
);
