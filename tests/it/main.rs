//! The one integration-test binary (ripgrep's shape: one link step, shared
//! helpers). Modules and what they cover:
//!
//! - `support`: temporary directories, snapshot settings, process helpers.
//! - `store`: the event-sourcing laws over random command sequences (proptest),
//!   schema refusal with exit code 105, and crash safety under SIGKILL.

mod fab_fixtures;
mod store;
mod support;
