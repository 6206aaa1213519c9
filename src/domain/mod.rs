//! The functional core: ids, the event vocabulary, the run and node state
//! machines and the projections.
//!
//! **Architecture invariant:** nothing under `domain` does I/O, reads a clock,
//! draws random numbers, or iterates a `HashMap`. Time and ids arrive as
//! arguments; the tidy test enforces it.
//!
//! It never encodes events (that is `codec`).

pub mod event;
pub mod ids;
pub mod node;
pub mod run;
pub mod views;
