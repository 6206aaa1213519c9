//! The ClientApp boundary: a message and the node's context in, a reply out.
//!
//! This is Flower's `ClientApp` contract (`(Message, Context) -> Message`).
//! The built-in Rust workloads implement it, mods wrap it, and a future
//! Python bridge would implement it too, without touching the runtime.
//!
//! What the runtime adds for determinism is [`ClientEnv`]: a random stream
//! derived from `(seed, round, node)` and a logger whose lines are appended
//! to the run's log in canonical order. A ClientApp must take all its
//! randomness from `env.prng`; anything else (clocks, thread ids, global
//! RNGs) makes its runs non-replayable, and `flwr replay` will say where.
//!
//! The runtime never calls a ClientApp for two messages of one node at once.

use crate::flwr_log::Logger;
use crate::prng::Prng;
use crate::records::{Context, Error, Message, RecordDict};

/// What the runtime lends a ClientApp for one call.
pub struct ClientEnv<'a> {
    /// The call's own random stream: `(seed, [CLIENT, round, node_id])`.
    pub prng: Prng,
    /// Lines logged here end up in the run's log after the round's replies.
    pub log: &'a mut Logger,
}

/// A ClientApp: answers `train`, `evaluate` and `query` messages.
///
/// `Ok(content)` becomes the reply's content; `Err(error)` an error reply
/// (Flower's code 2, `CLIENT_APP_RAISED_EXCEPTION`, for app failures). A panic
/// is caught by the runtime and also becomes an error reply.
pub trait ClientApp: Send + Sync {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error>;
}

impl<T: ClientApp + ?Sized> ClientApp for std::sync::Arc<T> {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        (**self).handle(message, context, env)
    }
}

/// A client-side mod (Flower's `mod(msg, context, call_next)`): it may look at
/// or change the message, call the next layer (or not), and look at or change
/// the reply.
pub trait Mod: Send + Sync {
    fn handle(
        &self,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
        next: &dyn Fn(&Message, &mut Context, &mut ClientEnv<'_>) -> Result<RecordDict, Error>,
    ) -> Result<RecordDict, Error>;
}

/// A ClientApp wrapped in mods; `mods[0]` is the outermost, as in Flower.
pub struct WithMods<A> {
    pub app: A,
    pub mods: Vec<Box<dyn Mod>>,
}

impl<A: ClientApp> WithMods<A> {
    fn call(
        &self,
        depth: usize,
        message: &Message,
        context: &mut Context,
        env: &mut ClientEnv<'_>,
    ) -> Result<RecordDict, Error> {
        match self.mods.get(depth) {
            None => self.app.handle(message, context, env),
            Some(layer) => layer.handle(message, context, env, &|m, c, e| self.call(depth + 1, m, c, e)),
        }
    }
}

impl<A: ClientApp> ClientApp for WithMods<A> {
    fn handle(&self, message: &Message, context: &mut Context, env: &mut ClientEnv<'_>) -> Result<RecordDict, Error> {
        self.call(0, message, context, env)
    }
}
