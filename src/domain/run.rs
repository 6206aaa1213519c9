//! The run state machine: `decide` validates a command into events, `apply`
//! folds an event into the state.
//!
//! Flower 1.27's statuses and transition rules (reference §3):
//! pending → starting → running → finished:{completed, failed, stopped};
//! pending and starting may finish, but not as completed; finished is
//! terminal. A command that would break a rule is rejected as a value
//! ([`Rejection`]) with the reason; nothing is applied and nothing panics.
//!
//! Both functions are pure: no I/O, no clock (the time of an event is an
//! argument of `apply`), no randomness (ids and seeds arrive inside commands).

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::event::{Event, LogAppended, MessageRouted, RunFinished, RunSubmitted, SubStatus, Usage};
use crate::domain::ids::{Micros, RunId};

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pending,
    Starting,
    Running,
    Finished(SubStatus),
}

impl Status {
    /// Flower's `RunStatus.status` string.
    pub(crate) fn status_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Finished(_) => "finished",
        }
    }

    /// Flower's `RunStatus.sub_status` string ("" unless finished).
    pub(crate) fn sub_status_str(self) -> &'static str {
        match self {
            Status::Finished(sub) => sub.as_str(),
            _ => "",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Status::Finished(_))
    }

    /// Active runs have (or are about to have) an app process.
    pub(crate) fn is_active(self) -> bool {
        matches!(self, Status::Starting | Status::Running)
    }
}

impl fmt::Display for Status {
    /// The CLI's status text: `status` or `status:sub_status`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Finished(sub) => write!(f, "finished:{}", sub.as_str()),
            other => f.write_str(other.status_str()),
        }
    }
}

/// The state of one run: its submission, status and the times it changed.
/// This is also the row of the `runs` projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub submitted: RunSubmitted,
    pub status: Status,
    /// Why the run failed or stopped; empty otherwise.
    pub details: String,
    pub pending_at: Micros,
    pub starting_at: Option<Micros>,
    pub running_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub stop_requested_at: Option<Micros>,
    /// Number of events of the run, all kinds.
    pub events: u64,
    /// Number of simulation events of the run.
    pub simulation_events: u64,
    /// Total bytes of log text.
    pub log_bytes: u64,
    /// The last round the simulation started (0 before the first).
    pub round: u64,
    /// Whether the simulation engine recorded its final event.
    pub simulation_finished: bool,
    /// The latest traffic and ClientApp time the app process measured;
    /// `None` when it never reported any (runs recorded before floret
    /// measured them, runs that never ran).
    pub usage: Option<Usage>,
}

impl Run {
    pub fn run_id(&self) -> RunId {
        self.submitted.run_id
    }
}

/// All runs, by id. The engine holds one; projections are built from one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub runs: BTreeMap<RunId, Run>,
}

/// What callers ask of a run. Each is validated by [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// StartRun accepted a FAB: create the run, pending.
    Submit(RunSubmitted),
    /// An app process asks for the run's token (pending → starting).
    Claim,
    /// The app process pulled its inputs (starting → running).
    Activate,
    /// Flower's `UpdateRunStatus` to a finished status.
    Finish(RunFinished),
    /// Flower's `StopRun`.
    RequestStop,
    /// Flower's `PushLogs`.
    AppendLog(String),
    /// Events produced by the simulation engine, in order.
    AppendSimulation(Vec<Event>),
    /// The app process's measured totals of traffic and ClientApp time.
    RecordUsage(Usage),
    /// Messages of a deployment run passed through the SuperLink.
    RouteMessages(Vec<MessageRouted>),
    /// The SuperLink found the run abandoned (no heartbeat, its process
    /// exited, the SuperLink restarted): finish it as failed unless finished.
    Abandon { reason: String },
}

/// Why a command was refused. The run is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Run ID not found")]
    UnknownRun(RunId),
    #[error("Run ID {0} already exists")]
    DuplicateRun(RunId),
    #[error("Run ID {0} is already finished")]
    AlreadyFinished(RunId),
    #[error("Invalid status transition: from \"{from}\" to \"{to}\"")]
    InvalidTransition { from: Status, to: Status },
    /// Simulation events were sent for a run that is not running, or after
    /// the simulation's final event, or are not simulation events.
    #[error("run {run_id} does not accept simulation events: {reason}")]
    UnexpectedSimulationEvent { run_id: RunId, reason: String },
    /// Usage was reported for a run that is not running, or is not a usage.
    #[error("run {run_id} does not accept a usage report: {reason}")]
    UnexpectedUsage { run_id: RunId, reason: String },
    /// Messages for a run that is not running.
    #[error("Run {run_id} is {status}: it sends and receives no messages")]
    NotRunning { run_id: RunId, status: Status },
}

/// The details recorded when a user stops a run.
pub(crate) const STOPPED_BY_USER: &str = "Task stopped by user.";

/// The most log text a run stores (docs/CLI.md). What the app process
/// pushes beyond it is dropped, after [`LOG_LIMIT_NOTICE`].
pub(crate) const RUN_LOG_MAX: usize = 16 * 1024 * 1024;
/// The largest text of one `LogAppended` event: a push is stored as events
/// of at most this size, so that a page of log rows stays small.
pub(crate) const LOG_EVENT_MAX: usize = 256 * 1024;
/// The line that ends the stored log of a run that reached [`RUN_LOG_MAX`].
const LOG_LIMIT_NOTICE: &str = "\nWARNING :   This run's log reached its limit of 16 MiB; the rest of the run's \
                                    output was not stored.\n";

/// Validates `command` for run `run_id` against `state`, returning the events
/// to append (possibly none) or why it is refused.
pub fn decide(state: &State, run_id: RunId, command: &Command) -> Result<Vec<Event>, Rejection> {
    let run = state.runs.get(&run_id);
    if let Command::Submit(submitted) = command {
        return match run {
            Some(_) => Err(Rejection::DuplicateRun(run_id)),
            None => {
                assert_eq!(submitted.run_id, run_id, "command addressed to another run");
                Ok(vec![Event::RunSubmitted(submitted.clone())])
            }
        };
    }
    let run = run.ok_or(Rejection::UnknownRun(run_id))?;
    let status = run.status;
    match command {
        Command::Submit(_) => unreachable!("handled above"),
        Command::Claim => transition(status, Status::Starting).map(|()| vec![Event::RunStarting]),
        Command::Activate => transition(status, Status::Running).map(|()| vec![Event::RunRunning]),
        Command::Finish(finished) => {
            transition(status, Status::Finished(finished.sub_status))?;
            Ok(vec![Event::RunFinished(finished.clone())])
        }
        Command::RequestStop => match status {
            Status::Finished(_) => Err(Rejection::AlreadyFinished(run_id)),
            // A run without a process is stopped on the spot.
            Status::Pending | Status::Starting => Ok(vec![
                Event::RunStopRequested,
                Event::RunFinished(RunFinished {
                    sub_status: SubStatus::Stopped,
                    details: STOPPED_BY_USER.to_string(),
                }),
            ]),
            // A running simulation stops itself at its next step and
            // reports; asking twice changes nothing.
            Status::Running if run.stop_requested_at.is_some() => Ok(vec![]),
            Status::Running => Ok(vec![Event::RunStopRequested]),
        },
        Command::AppendLog(text) => match status {
            Status::Finished(_) => Err(Rejection::AlreadyFinished(run_id)),
            _ => Ok(log_events(run.log_bytes, text)),
        },
        Command::AppendSimulation(events) => {
            let refuse = |reason: &str| {
                Err(Rejection::UnexpectedSimulationEvent {
                    run_id,
                    reason: reason.to_string(),
                })
            };
            if status != Status::Running {
                return refuse(&format!("its status is {status}"));
            }
            if run.simulation_finished {
                return refuse("the simulation already recorded its final event");
            }
            // The app process names itself once, before the simulation starts.
            let identified =
                usize::from(run.simulation_events == 0 && matches!(events.first(), Some(Event::AppProcessStarted(_))));
            if let Some(position) = events.iter().skip(identified).position(|e| !e.is_simulation()) {
                let position = position + identified;
                return refuse(&format!("{} is not a simulation event", events[position].kind()));
            }
            if let Some(last) = events.iter().position(|e| matches!(e, Event::SimulationFinished(_))) {
                if last + 1 != events.len() {
                    return refuse("events follow SimulationFinished");
                }
            }
            Ok(events.clone())
        }
        Command::RecordUsage(usage) => {
            let refuse = |reason: String| Err(Rejection::UnexpectedUsage { run_id, reason });
            if status != Status::Running {
                return refuse(format!("its status is {status}"));
            }
            if !(usage.clientapp_runtime.is_finite() && usage.clientapp_runtime >= 0.0) {
                return refuse(format!("ClientApp time {} is not a duration", usage.clientapp_runtime));
            }
            if run.usage.as_ref() == Some(usage) {
                return Ok(vec![]);
            }
            Ok(vec![Event::UsageRecorded(usage.clone())])
        }
        Command::RouteMessages(routed) => match status {
            Status::Running => Ok(routed.iter().cloned().map(Event::MessageRouted).collect()),
            status => Err(Rejection::NotRunning { run_id, status }),
        },
        Command::Abandon { reason } => match status {
            Status::Finished(_) => Ok(vec![]),
            _ => Ok(vec![Event::RunFinished(RunFinished {
                sub_status: SubStatus::Failed,
                details: reason.clone(),
            })]),
        },
    }
}

/// `text` appended to a log of `stored` bytes, as events of at most
/// [`LOG_EVENT_MAX`] bytes, cut at [`RUN_LOG_MAX`] with the notice (once).
fn log_events(stored: u64, text: &str) -> Vec<Event> {
    let stored = usize::try_from(stored).unwrap_or(usize::MAX);
    if stored >= RUN_LOG_MAX {
        return Vec::new();
    }
    let room = RUN_LOG_MAX - stored;
    let (kept, truncated) = if text.len() < room {
        (text, false)
    } else {
        (&text[..floor_char_boundary(text, room)], true)
    };
    let mut events = Vec::new();
    let mut rest = kept;
    while !rest.is_empty() {
        // A char is at most 4 bytes: every cut takes something.
        let (piece, tail) = rest.split_at(floor_char_boundary(rest, LOG_EVENT_MAX));
        events.push(Event::LogAppended(LogAppended {
            text: piece.to_string(),
        }));
        rest = tail;
    }
    if truncated {
        events.push(Event::LogAppended(LogAppended {
            text: LOG_LIMIT_NOTICE.to_string(),
        }));
    }
    events
}

/// The largest index `<= at` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0)
}

/// Flower 1.27's transition table (`is_valid_transition`).
fn transition(from: Status, to: Status) -> Result<(), Rejection> {
    let valid = match (from, to) {
        (Status::Pending, Status::Starting) => true,
        (Status::Starting, Status::Running) => true,
        (Status::Pending | Status::Starting, Status::Finished(sub)) => sub != SubStatus::Completed,
        (Status::Running, Status::Finished(_)) => true,
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Rejection::InvalidTransition { from, to })
    }
}

/// Folds one event, recorded at `at`, into the state. Total over every event
/// [`decide`] can emit for the current state.
pub fn apply(state: &mut State, run_id: RunId, event: &Event, at: Micros) {
    if crate::domain::node::is_node_event(event) {
        // Folded by `domain::node::apply`.
        return;
    }
    if let Event::RunSubmitted(submitted) = event {
        state.runs.insert(
            run_id,
            Run {
                submitted: submitted.clone(),
                status: Status::Pending,
                details: String::new(),
                pending_at: at,
                starting_at: None,
                running_at: None,
                finished_at: None,
                stop_requested_at: None,
                events: 1,
                simulation_events: 0,
                log_bytes: 0,
                round: 0,
                simulation_finished: false,
                usage: None,
            },
        );
        return;
    }
    let Some(run) = state.runs.get_mut(&run_id) else {
        // Only `decide` produces events, and it refuses unknown runs; an
        // event for an unknown run means the log itself is inconsistent.
        panic!(
            "event {} for unknown run {run_id}: the event log is corrupt",
            event.kind()
        );
    };
    run.events += 1;
    if event.is_simulation() {
        run.simulation_events += 1;
    }
    match event {
        Event::RunSubmitted(_) => unreachable!("handled above"),
        Event::RunStarting => {
            run.status = Status::Starting;
            run.starting_at = Some(at);
        }
        Event::RunRunning => {
            run.status = Status::Running;
            run.running_at = Some(at);
        }
        Event::RunStopRequested => run.stop_requested_at = Some(at),
        Event::RunFinished(finished) => {
            run.status = Status::Finished(finished.sub_status);
            run.details = finished.details.clone();
            run.finished_at = Some(at);
        }
        Event::LogAppended(log) => run.log_bytes += log.text.len() as u64,
        Event::AppProcessStarted(_) => {}
        Event::UsageRecorded(usage) => run.usage = Some(usage.clone()),
        Event::RoundStarted(started) => run.round = started.round,
        Event::SimulationFinished(_) => run.simulation_finished = true,
        Event::NodeRegistered(_)
        | Event::NodeActivated(_)
        | Event::NodeDeactivated(_)
        | Event::NodeUnregistered(_)
        | Event::NodeWentOffline(_) => unreachable!("node events belong to no run"),
        Event::SimulationStarted(_)
        | Event::NodesRegistered(_)
        | Event::NodeSampled(_)
        | Event::ReplyReceived(_)
        | Event::Aggregated(_)
        | Event::CentralEvaluated(_)
        | Event::SimulationStopped(_)
        | Event::PythonStarted(_)
        | Event::MessageSent(_)
        | Event::ReplyDelivered(_)
        | Event::MessageRouted(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ConfigRecord;

    fn submitted(run_id: u64) -> RunSubmitted {
        RunSubmitted {
            run_id: RunId(run_id),
            fab_id: "flwrlabs/app".into(),
            fab_version: "1.0.0".into(),
            fab_hash: "00".repeat(32),
            override_config: Default::default(),
            federation: "@none/default".into(),
            federation_options: ConfigRecord::new(),
            seed: 7,
            build: "floret test".into(),
        }
    }

    /// Runs `commands` against a fresh state, recording each outcome.
    fn script(commands: &[Command]) -> (State, Vec<String>) {
        let mut state = State::default();
        let mut outcomes = Vec::new();
        let run_id = RunId(1);
        let mut at = 0;
        for command in commands {
            match decide(&state, run_id, command) {
                Ok(events) => {
                    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
                    outcomes.push(format!("ok {}", kinds.join(" ")));
                    for event in &events {
                        at += 1;
                        apply(&mut state, run_id, event, Micros(at));
                    }
                }
                Err(rejection) => outcomes.push(format!("rejected: {rejection}")),
            }
        }
        (state, outcomes)
    }

    fn finish(sub_status: SubStatus) -> Command {
        Command::Finish(RunFinished {
            sub_status,
            details: String::new(),
        })
    }

    #[test]
    fn follows_flower_transition_table() {
        let (state, outcomes) = script(&[
            Command::Activate,
            Command::Submit(submitted(1)),
            Command::Submit(submitted(1)),
            Command::Activate,
            finish(SubStatus::Completed),
            Command::Claim,
            Command::Claim,
            Command::Activate,
            finish(SubStatus::Completed),
            finish(SubStatus::Failed),
            Command::RequestStop,
            Command::Abandon { reason: "late".into() },
        ]);
        insta::assert_snapshot!(outcomes.join("\n"), @r#"
        rejected: Run ID not found
        ok RunSubmitted
        rejected: Run ID 1 already exists
        rejected: Invalid status transition: from "pending" to "running"
        rejected: Invalid status transition: from "pending" to "finished:completed"
        ok RunStarting
        rejected: Invalid status transition: from "starting" to "starting"
        ok RunRunning
        ok RunFinished
        rejected: Invalid status transition: from "finished:completed" to "finished:failed"
        rejected: Run ID 1 is already finished
        ok
        "#);
        let run = &state.runs[&RunId(1)];
        assert_eq!(run.status, Status::Finished(SubStatus::Completed));
        assert_eq!(
            (run.pending_at, run.starting_at, run.running_at, run.finished_at),
            (Micros(1), Some(Micros(2)), Some(Micros(3)), Some(Micros(4)))
        );
    }

    #[test]
    fn stop_of_pending_run_finishes_it_and_running_run_waits_for_engine() {
        let (state, outcomes) = script(&[Command::Submit(submitted(1)), Command::RequestStop]);
        assert_eq!(outcomes[1], "ok RunStopRequested RunFinished");
        assert_eq!(state.runs[&RunId(1)].details, STOPPED_BY_USER);

        let (state, outcomes) = script(&[
            Command::Submit(submitted(1)),
            Command::Claim,
            Command::Activate,
            Command::RequestStop,
            Command::RequestStop,
        ]);
        assert_eq!(outcomes[3..], ["ok RunStopRequested", "ok "]);
        assert_eq!(state.runs[&RunId(1)].status, Status::Running);
    }

    #[test]
    fn usage_only_while_running_and_only_when_it_changed() {
        let usage = |bytes_sent: u64, clientapp_runtime: f64| {
            Command::RecordUsage(Usage {
                bytes_sent,
                bytes_recv: 1,
                clientapp_runtime,
            })
        };
        let (state, outcomes) = script(&[
            Command::Submit(submitted(1)),
            usage(10, 0.5),
            Command::Claim,
            Command::Activate,
            usage(10, 0.5),
            usage(10, 0.5),
            usage(20, f64::NAN),
            usage(20, 0.75),
            finish(SubStatus::Completed),
            usage(30, 1.0),
        ]);
        let lines: Vec<&str> = outcomes[1..].iter().map(|o| o.trim_end()).collect();
        insta::assert_snapshot!(lines.join("\n"), @r#"
        rejected: run 1 does not accept a usage report: its status is pending
        ok RunStarting
        ok RunRunning
        ok UsageRecorded
        ok
        rejected: run 1 does not accept a usage report: ClientApp time NaN is not a duration
        ok UsageRecorded
        ok RunFinished
        rejected: run 1 does not accept a usage report: its status is finished:completed
        "#);
        let recorded = state.runs[&RunId(1)].usage.clone().unwrap();
        assert_eq!((recorded.bytes_sent, recorded.clientapp_runtime), (20, 0.75));
    }

    #[test]
    fn simulation_events_only_while_running() {
        let round = Event::RoundStarted(crate::domain::event::RoundStarted { round: 1 });
        let (_, outcomes) = script(&[
            Command::Submit(submitted(1)),
            Command::AppendSimulation(vec![round.clone()]),
            Command::Claim,
            Command::Activate,
            Command::AppendSimulation(vec![round.clone()]),
            Command::AppendSimulation(vec![Event::RunStarting]),
        ]);
        assert_eq!(
            outcomes[1],
            "rejected: run 1 does not accept simulation events: its status is pending"
        );
        assert_eq!(outcomes[4], "ok RoundStarted");
        assert_eq!(
            outcomes[5],
            "rejected: run 1 does not accept simulation events: RunStarting is not a simulation event"
        );
    }

    #[test]
    fn a_runs_log_is_stored_in_small_events_up_to_its_cap_then_dropped() {
        let setup = [Command::Submit(submitted(1)), Command::Claim, Command::Activate];
        let big = "é".repeat(LOG_EVENT_MAX); // 2 bytes per char
        let mut commands = setup.to_vec();
        commands.extend((0..9).map(|_| Command::AppendLog(big.clone())));
        commands.push(Command::AppendLog("later\n".into()));
        let (state, outcomes) = script(&commands);
        // A push of 512 KiB is stored as two events ...
        assert_eq!(outcomes[3], "ok LogAppended LogAppended");
        let run = &state.runs[&RunId(1)];
        assert_eq!(run.log_bytes, 9 * 2 * LOG_EVENT_MAX as u64 + "later\n".len() as u64);

        // ... and a push past the cap is cut, at a char boundary, with the notice.
        let mut commands = setup.to_vec();
        let filler = "x".repeat(LOG_EVENT_MAX);
        commands.extend((0..RUN_LOG_MAX / LOG_EVENT_MAX - 1).map(|_| Command::AppendLog(filler.clone())));
        commands.push(Command::AppendLog(format!("y{big}")));
        commands.push(Command::AppendLog("later\n".into()));
        let (state, outcomes) = script(&commands);
        let run = &state.runs[&RunId(1)];
        assert_eq!(outcomes[outcomes.len() - 2], "ok LogAppended LogAppended");
        assert_eq!(outcomes[outcomes.len() - 1], "ok ");
        assert_eq!(
            run.log_bytes as usize,
            RUN_LOG_MAX - 1 + LOG_LIMIT_NOTICE.len(),
            "the cut falls before a 2-byte char"
        );

        // A finished run takes no output.
        let mut commands = setup.to_vec();
        commands.push(finish(SubStatus::Completed));
        commands.push(Command::AppendLog("late\n".into()));
        let (_, outcomes) = script(&commands);
        assert_eq!(outcomes[4], "rejected: Run ID 1 is already finished");
    }
}
