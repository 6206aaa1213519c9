//! A readable rendering of event timelines: one line per event, rounds
//! grouped under a header. Used by `flwr replay --events` and by snapshot
//! tests (which leave the times out, so that the snapshots are stable).
//!
//! Pure formatting; no I/O.

use crate::domain::event::{Delivered, Event, Outcome, Reply};
use crate::domain::views::StoredEvent;
use crate::flwr_log::strip_ansi;
use crate::records::{Scalar, UserConfig};
use crate::strategy::start::metrics_repr;

fn config_text(config: &UserConfig) -> String {
    config
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => crate::pyfmt::float_repr(*f),
                Scalar::Str(s) => format!("{s:?}"),
            };
            format!("{k}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an event says, without its kind.
pub fn describe(event: &Event) -> String {
    match event {
        Event::RunSubmitted(s) => {
            let mut text = format!(
                "{}=={} fab {} seed {} federation {} build {:?}",
                s.fab_id,
                s.fab_version,
                s.fab_hash.chars().take(8).collect::<String>(),
                s.seed,
                s.federation,
                s.build
            );
            if !s.override_config.is_empty() {
                text.push_str(&format!(" overrides {}", config_text(&s.override_config)));
            }
            text
        }
        Event::RunStarting | Event::RunRunning | Event::RunStopRequested => String::new(),
        Event::RunFinished(f) if f.details.is_empty() => f.sub_status.as_str().to_string(),
        Event::RunFinished(f) => format!("{}: {}", f.sub_status.as_str(), f.details),
        Event::LogAppended(log) => {
            let text = strip_ansi(&log.text);
            let first = text.lines().next().unwrap_or("").trim_end();
            let first: String = first.chars().take(60).collect();
            format!("{} lines, {} bytes: {first:?}", text.lines().count(), log.text.len())
        }
        Event::AppProcessStarted(p) => format!(
            "{} on {} {} ({}), features {}",
            p.build.build,
            p.platform.arch,
            p.platform.os,
            p.platform.libc,
            p.platform.cpu_features.join(",")
        ),
        Event::UsageRecorded(u) => format!(
            "{} bytes sent, {} bytes received, ClientApp {:.3}s",
            u.bytes_sent, u.bytes_recv, u.clientapp_runtime
        ),
        Event::NodeRegistered(n) => format!("node {}, public key of {} bytes", n.node_id, n.public_key.len()),
        Event::NodeActivated(n) => format!("node {}, heartbeat every {}s", n.node_id, n.heartbeat_interval),
        Event::NodeDeactivated(n) => format!("node {}", n.node_id),
        Event::NodeUnregistered(n) => format!("node {}", n.node_id),
        Event::NodeWentOffline(n) => format!("node {}", n.node_id),
        Event::MessageRouted(m) => {
            let error = m.error_code.map(|code| format!(", error {code}")).unwrap_or_default();
            let answers = if m.reply_to.is_empty() {
                String::new()
            } else {
                format!(" answering {}", short_id(&m.reply_to))
            };
            format!(
                "{} {} {} node {} -> node {}, group {}, {} bytes{error}{answers}",
                m.hop.as_str(),
                m.message_type,
                short_id(&m.message_id),
                m.src_node_id,
                m.dst_node_id,
                m.group_id,
                m.bytes
            )
        }
        Event::SimulationStarted(s) => format!(
            "{} supernodes, {} + {}, {}, {} rounds; config {}",
            s.num_supernodes,
            s.server_app,
            s.client_app,
            s.strategy,
            s.num_rounds,
            config_text(&s.run_config)
        ),
        Event::NodesRegistered(n) => {
            let shown: Vec<String> = n.node_ids.iter().take(4).map(|id| id.to_string()).collect();
            let more = if n.node_ids.len() > 4 { ", ..." } else { "" };
            format!("{} nodes: {}{more}", n.node_ids.len(), shown.join(", "))
        }
        Event::RoundStarted(r) => format!("round {}", r.round),
        Event::NodeSampled(s) => format!("{} -> node {}", s.phase.as_str(), s.node_id),
        Event::ReplyReceived(r) => match &r.reply {
            Reply::Content { metrics, arrays } => {
                let arrays = arrays.map(|d| format!(" arrays {}", d.short())).unwrap_or_default();
                format!(
                    "{} <- node {}: {}{arrays}",
                    r.phase.as_str(),
                    r.node_id,
                    metrics_repr(metrics.as_ref())
                )
            }
            Reply::Error { code, reason, injected } => format!(
                "{} <- node {}: error {code}{}: {reason}",
                r.phase.as_str(),
                r.node_id,
                if *injected { " (injected)" } else { "" }
            ),
        },
        Event::Aggregated(a) => {
            let arrays = a.arrays.map(|d| format!(" arrays {}", d.short())).unwrap_or_default();
            format!(
                "{}: {} results, {} failures, {}{arrays}",
                a.phase.as_str(),
                a.results,
                a.failures,
                metrics_repr(a.metrics.as_ref())
            )
        }
        Event::CentralEvaluated(c) => format!("round {}: {}", c.round, metrics_repr(c.metrics.as_ref())),
        Event::SimulationStopped(s) => format!("in round {} before {}", s.round, s.before),
        Event::SimulationFinished(f) => {
            let outcome = match &f.outcome {
                Outcome::Completed => "completed".to_string(),
                Outcome::Stopped => "stopped".to_string(),
                Outcome::Failed { reason } => format!("failed: {reason}"),
            };
            let arrays = f.arrays.map(|d| format!(", arrays {}", d.short())).unwrap_or_default();
            format!("{outcome} after {} rounds{arrays}", f.rounds_completed)
        }
        Event::PythonStarted(p) => {
            let libraries = if p.libraries.is_empty() {
                String::new()
            } else {
                format!(" {}", p.libraries.join(" "))
            };
            format!(
                "{} (Python {}, flwr {}{libraries}), {} workers, ServerApp {}",
                p.interpreter, p.python, p.flwr, p.workers, p.server_api
            )
        }
        Event::MessageSent(m) => format!(
            "step {}: {} -> node {} content {}",
            m.step,
            m.message_type,
            m.node_id,
            m.content.short()
        ),
        Event::ReplyDelivered(r) => match &r.reply {
            Delivered::Content { metrics, content } => format!(
                "step {}: <- node {}: {} content {}",
                r.step,
                r.node_id,
                metrics_repr(metrics.as_ref()),
                content.short()
            ),
            Delivered::Error { code, reason, injected } => format!(
                "step {}: <- node {}: error {code}{}: {reason}",
                r.step,
                r.node_id,
                if *injected { " (outside input)" } else { "" }
            ),
            Delivered::TimedOut => format!("step {}: <- node {}: timed out", r.step, r.node_id),
        },
    }
}

/// One line per event, `#seq [+time] Kind  description`, with a header line
/// before each round. Times are relative to the first event.
pub fn render(events: &[StoredEvent], show_times: bool) -> String {
    let mut out = String::new();
    let mut renderer = Renderer::new(show_times);
    for stored in events {
        renderer.push(stored, &mut out);
    }
    out
}

/// [`render`], one event at a time (for a record read in pages).
pub(crate) struct Renderer {
    show_times: bool,
    /// Time of the first event.
    start: Option<i64>,
}

impl Renderer {
    pub fn new(show_times: bool) -> Renderer {
        Renderer {
            show_times,
            start: None,
        }
    }

    /// Appends the lines of the next event to `out`.
    pub fn push(&mut self, stored: &StoredEvent, out: &mut String) {
        let start = *self.start.get_or_insert(stored.at.0);
        if let Event::RoundStarted(r) = &stored.event {
            out.push_str(&format!("-- round {} --\n", r.round));
        }
        let time = if self.show_times {
            format!(" {:>9.3}s", (stored.at.0 - start) as f64 / 1e6)
        } else {
            String::new()
        };
        let line = format!(
            "#{:<5}{time} {:<18} {}",
            stored.seq.0,
            stored.event.kind(),
            describe(&stored.event)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The first 12 hex digits of a message id.
fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}
