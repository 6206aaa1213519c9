//! The Python processes of a run: one zygote interpreter that imports `flwr`
//! and loads the app's components once, and the ServerApp process and
//! ClientApp workers it forks on request.
//!
//! The zygote is spawned with `PR_SET_PDEATHSIG` (it dies with the thread
//! that spawned it: keep that thread alive for the run) in a process group of
//! its own; its forks set the same signal against the zygote. Dropping a
//! [`Zygote`] kills the whole group, so no Python process outlives its run.
//! Each fork gets its own socket, passed through the zygote's socket with
//! SCM_RIGHTS; the zygote reports every exit of a fork (EXITED).
//!
//! This module owns process life cycles and the zygote's socket; it never
//! decides what a process computes.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::frame::{self, kind, Frame, Reader};

/// The bridge script, embedded in the binary and handed to the interpreter
/// on its standard input.
const SCRIPT: &str = include_str!("floret_bridge.py");
/// What the interpreter runs: read the script from stdin and execute it as
/// `__main__` (its tracebacks name `floret_bridge.py`).
const BOOTSTRAP: &str = "import sys;exec(compile(sys.stdin.read(),'floret_bridge.py','exec'))";

/// How long the zygote may take to import flwr and the app, and a fork to
/// answer (generous: a loaded CI machine imports flwr in seconds).
const START_TIMEOUT: Duration = Duration::from_secs(120);
const FORK_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of the interpreter's own stderr kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// Why a Python process could not be started or answered badly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the Python interpreter {path}: {source}")]
    Spawn { path: String, source: std::io::Error },
    #[error("the Python interpreter {path} cannot run floret's bridge: {reason}")]
    Bridge { path: String, reason: String },
    #[error("the Python bridge process exited{detail}")]
    Exited { detail: String },
    #[error("the Python bridge did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Frame(#[from] frame::Error),
}

/// How to start the interpreter.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// Threads a ClientApp may use (BLAS/OpenMP), unless the user set them.
    pub threads_per_client: usize,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

/// Output that did not come through a call's LOG frames: prints while the
/// app was imported, and anything written straight to file descriptors 1
/// and 2 (C extensions, subprocesses), in arrival order.
#[derive(Default)]
struct Shared {
    output: Mutex<String>,
    stderr_tail: Mutex<String>,
    exited: Mutex<BTreeMap<i32, String>>,
    dead: AtomicBool,
    /// Our own write ends of the zygote's stdout and stderr pipes, to write
    /// flush markers behind whatever its processes wrote
    /// ([`Zygote::flush_output`]); dropped with the zygote.
    writers: Mutex<Vec<std::fs::File>>,
    /// How many flush markers the pipe readers have seen.
    flushed: Mutex<u64>,
    flushed_changed: std::sync::Condvar,
}

/// Written into the zygote's output pipes by [`Zygote::flush_output`] and
/// taken out again by the readers: everything before it has been read.
const FLUSH_MARKER: &str = "\u{0}floret-flush\u{0}";

/// The zygote interpreter: spawned here, or forked by a warm zygote the
/// SuperLink keeps and handed to this process ([`Zygote::adopt`]).
pub(crate) struct Zygote {
    /// The interpreter process, when this process spawned it.
    process: Option<Child>,
    pid: i32,
    /// What the zygote said about itself (versions, `site`).
    pub hello: Value,
    control: UnixStream,
    replies: Mutex<Mailbox>,
    shared: Arc<Shared>,
    forked: Mutex<Vec<i32>>,
    next_id: Mutex<u64>,
}

/// A forked process: its pid and its socket.
pub(crate) struct Forked {
    pub pid: i32,
    pub reader: Reader,
    pub writer: UnixStream,
}

impl Forked {
    pub fn send(&self, frame: &Frame) -> Result<(), frame::Error> {
        frame::write(&self.writer, frame)
    }

    pub fn kill(&self) {
        kill(self.pid);
    }
}

/// SIGKILL, ignoring a process that is already gone.
pub(crate) fn kill(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn kill_group(pgid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

impl Zygote {
    /// Starts the interpreter and waits for its HELLO (flwr imported).
    pub fn spawn(path: &Path, settings: &Settings) -> Result<Zygote, Error> {
        let (ours, theirs) = UnixStream::pair().map_err(|source| Error::Spawn {
            path: path.display().to_string(),
            source,
        })?;
        let spawn_error = |source| Error::Spawn {
            path: path.display().to_string(),
            source,
        };
        let (stdout_read, stdout_write) = pipe().map_err(spawn_error)?;
        let (stderr_read, stderr_write) = pipe().map_err(spawn_error)?;
        let mut command = Command::new(path);
        command
            .args(["-u", "-c", BOOTSTRAP])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout_write.try_clone().map_err(spawn_error)?))
            .stderr(Stdio::from(stderr_write.try_clone().map_err(spawn_error)?))
            .env("FLORET_BRIDGE_FD", theirs.as_raw_fd().to_string())
            .env("PYTHONHASHSEED", "0")
            .env("FLWR_TELEMETRY_ENABLED", "0");
        let threads = settings.threads_per_client.max(1).to_string();
        for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
            if std::env::var_os(var).is_none() {
                command.env(var, &threads);
            }
        }
        for (key, value) in &settings.env {
            command.env(key, value);
        }
        if let Some(cwd) = &settings.cwd {
            command.current_dir(cwd);
        }
        let fd = theirs.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls: fcntl,
        // prctl and setpgid.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setpgid(0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut process = command.spawn().map_err(|source| Error::Spawn {
            path: path.display().to_string(),
            source,
        })?;
        drop(theirs);
        // The command holds the child's copies of the write ends.
        drop(command);
        let shared = Arc::new(Shared::default());
        *shared.writers.lock().expect("writers lock") = vec![stdout_write, stderr_write];
        if let Some(mut stdin) = process.stdin.take() {
            // The script is ~30 KB: the pipe takes it, then EOF.
            let _ = stdin.write_all(SCRIPT.as_bytes());
        }
        spawn_pipe_reader(stdout_read, Arc::clone(&shared), false);
        spawn_pipe_reader(stderr_read, Arc::clone(&shared), true);
        let pid = process.id() as i32;
        Zygote::handshake(path, ours, Some(process), pid, shared)
    }

    /// Takes over a zygote a warm one forked for this run (`stream` is its
    /// socket, `pid` its process): its file-level output is sent to pipes of
    /// this process, then it says HELLO as a spawned one does.
    pub(crate) fn adopt(path: &Path, stream: UnixStream, pid: i32) -> Result<Zygote, Error> {
        let shared = Arc::new(Shared::default());
        let (stdout_read, stdout_write) = pipe().map_err(frame::Error::Io)?;
        let (stderr_read, stderr_write) = pipe().map_err(frame::Error::Io)?;
        spawn_pipe_reader(stdout_read, Arc::clone(&shared), false);
        spawn_pipe_reader(stderr_read, Arc::clone(&shared), true);
        let stdio = Frame::new(kind::STDIO, 0, json!({}));
        frame::write_with_fds(&stream, &stdio, &[stdout_write.as_fd(), stderr_write.as_fd()])?;
        *shared.writers.lock().expect("writers lock") = vec![stdout_write, stderr_write];
        Zygote::handshake(path, stream, None, pid, shared)
    }

    /// Reads the zygote's HELLO (flwr imported) and starts reading its
    /// socket.
    fn handshake(
        path: &Path,
        ours: UnixStream,
        mut process: Option<Child>,
        pid: i32,
        shared: Arc<Shared>,
    ) -> Result<Zygote, Error> {
        let mut reader = Reader::new(ours.try_clone().map_err(frame::Error::Io)?);
        let hello = match reader.read(Some(START_TIMEOUT)) {
            Ok(Some(frame)) if frame.kind == kind::HELLO => frame,
            Ok(Some(frame)) => {
                kill_group(pid);
                kill(pid);
                return Err(Error::Bridge {
                    path: path.display().to_string(),
                    reason: format!("unexpected first frame of kind {}", frame.kind),
                });
            }
            Ok(None) => {
                kill_group(pid);
                kill(pid);
                return Err(Error::Timeout(START_TIMEOUT));
            }
            Err(_) => {
                let status = process.as_mut().and_then(|p| p.wait().ok());
                let detail = exit_detail(status, &shared);
                return Err(Error::Bridge {
                    path: path.display().to_string(),
                    reason: format!("it exited before it was ready{detail}"),
                });
            }
        };
        if let Some(error) = hello.header.get("error").and_then(Value::as_str) {
            if let Some(process) = process.as_mut() {
                let _ = process.wait();
            }
            return Err(Error::Bridge {
                path: path.display().to_string(),
                reason: format!("importing flwr failed: {error}"),
            });
        }
        let (replies_tx, replies_rx) = mpsc::channel();
        spawn_control_reader(reader, replies_tx, Arc::clone(&shared));
        Ok(Zygote {
            process,
            pid,
            hello: hello.header,
            control: ours,
            replies: Mutex::new(Mailbox::new(replies_rx)),
            shared,
            forked: Mutex::new(Vec::new()),
            next_id: Mutex::new(1),
        })
    }

    fn next_id(&self) -> u64 {
        let mut next = self.next_id.lock().expect("id lock");
        *next += 1;
        *next
    }

    /// Waits for the reply (of kind `kind`) to request `id`.
    fn reply(&self, id: u64, kind: u8, timeout: Duration) -> Result<Frame, Error> {
        let mut replies = self.replies.lock().expect("replies lock");
        replies.wait(id, kind, timeout).map_err(|gone| match gone {
            Gone::Timeout => Error::Timeout(timeout),
            Gone::Disconnected => Error::Exited {
                detail: exit_detail(None, &self.shared),
            },
        })
    }

    /// Loads the app (LOAD → LOADED); the answer's header as the script
    /// wrote it.
    pub fn load(&self, spec: Value) -> Result<Frame, Error> {
        let id = self.next_id();
        frame::write(&self.control, &Frame::new(kind::LOAD, id, spec))?;
        self.reply(id, kind::LOADED, START_TIMEOUT)
    }

    /// Forks a ServerApp process (`role` "server") or a ClientApp worker
    /// ("client").
    pub(crate) fn fork(&self, role: &str, index: usize) -> Result<Forked, Error> {
        let (ours, theirs) = UnixStream::pair().map_err(frame::Error::Io)?;
        let id = self.next_id();
        let request = Frame::new(kind::SPAWN, id, json!({"role": role, "index": index}));
        frame::write_with_fds(&self.control, &request, &[theirs.as_fd()])?;
        let answer = self.reply(id, kind::FORKED, FORK_TIMEOUT)?;
        drop(theirs);
        let pid = answer.header.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32;
        self.forked.lock().expect("forked lock").push(pid);
        Ok(Forked {
            pid,
            reader: Reader::new(ours.try_clone().map_err(frame::Error::Io)?),
            writer: ours,
        })
    }

    /// Forks a zygote for one run from this (warm) one: its socket and pid,
    /// for [`Zygote::adopt`] in the run's process.
    pub(crate) fn fork_zygote(&self) -> Result<(UnixStream, i32), Error> {
        let (ours, theirs) = UnixStream::pair().map_err(frame::Error::Io)?;
        let id = self.next_id();
        let request = Frame::new(kind::SPAWN, id, json!({"role": "zygote", "index": 0}));
        frame::write_with_fds(&self.control, &request, &[theirs.as_fd()])?;
        let answer = self.reply(id, kind::FORKED, FORK_TIMEOUT)?;
        drop(theirs);
        let pid = answer.header.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32;
        Ok((ours, pid))
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.shared.dead.load(Ordering::Relaxed)
    }

    /// Forked processes the zygote has not reported ended.
    pub(crate) fn forked_pids(&self) -> Vec<i32> {
        let exited = self.shared.exited.lock().expect("exited lock");
        self.forked
            .lock()
            .expect("forked lock")
            .iter()
            .copied()
            .filter(|pid| !exited.contains_key(pid))
            .collect()
    }

    /// How a forked process ended, once the zygote reported it.
    pub(crate) fn exit_of(&self, pid: i32) -> Option<String> {
        self.shared.exited.lock().expect("exited lock").get(&pid).cloned()
    }

    /// Waits (bounded) for the zygote's report of `pid`'s end.
    pub(crate) fn wait_exit(&self, pid: i32, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_of(pid) {
                return Some(status);
            }
            if Instant::now() >= deadline || self.shared.dead.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits (at most `timeout`) until the pipe readers have read
    /// everything the zygote's processes wrote to their stdout and stderr
    /// before now: a marker written behind it comes out of each pipe.
    pub(crate) fn flush_output(&self, timeout: Duration) {
        let target = {
            let writers = self.shared.writers.lock().expect("writers lock");
            let seen = *self.shared.flushed.lock().expect("flushed lock");
            let mut written = 0;
            for mut writer in writers.iter() {
                if writer.write_all(FLUSH_MARKER.as_bytes()).is_ok() {
                    written += 1;
                }
            }
            seen + written
        };
        let flushed = self.shared.flushed.lock().expect("flushed lock");
        let _ = self
            .shared
            .flushed_changed
            .wait_timeout_while(flushed, timeout, |seen| *seen < target);
    }

    /// Output that arrived outside calls (imports, fd-level writes).
    pub(crate) fn take_output(&self) -> String {
        std::mem::take(&mut *self.shared.output.lock().expect("output lock"))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.shared.writers.lock().expect("writers lock").clear();
        let _ = frame::write(&self.control, &Frame::new(kind::SHUTDOWN, 0, json!({})));
        for pid in self.forked_pids() {
            kill(pid);
        }
        match self.process.as_mut() {
            Some(process) => {
                // A spawned zygote leads its own process group.
                kill_group(self.pid);
                let _ = process.kill();
                let _ = process.wait();
            }
            // One forked from a warm zygote leads a group of its own; the
            // warm one reaps it.
            None => {
                kill_group(self.pid);
                kill(self.pid);
            }
        }
    }
}

/// The zygote's answers, matched to their requests: several threads may wait
/// at once (workers forked in parallel), and an answer that arrives for a
/// request other than the waiter's is kept for its owner, never dropped.
struct Mailbox {
    incoming: mpsc::Receiver<Frame>,
    kept: VecDeque<Frame>,
}

/// At most this many answers are kept that nobody has asked for yet (those
/// of a timed-out request are never asked for).
const KEPT_MAX: usize = 1024;

/// Why no answer came.
#[derive(Debug, PartialEq)]
enum Gone {
    Timeout,
    Disconnected,
}

impl Mailbox {
    fn new(incoming: mpsc::Receiver<Frame>) -> Mailbox {
        Mailbox {
            incoming,
            kept: VecDeque::new(),
        }
    }

    fn wait(&mut self, id: u64, kind: u8, timeout: Duration) -> Result<Frame, Gone> {
        if let Some(at) = self.kept.iter().position(|f| f.id == id && f.kind == kind) {
            return Ok(self.kept.remove(at).expect("position is in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(frame) if frame.id == id && frame.kind == kind => return Ok(frame),
                Ok(frame) => {
                    if self.kept.len() == KEPT_MAX {
                        self.kept.pop_front();
                    }
                    self.kept.push_back(frame);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(Gone::Timeout),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Gone::Disconnected),
            }
        }
    }
}

/// "(exit code 3: <last stderr line>)", or "" when nothing is known.
fn exit_detail(status: Option<std::process::ExitStatus>, shared: &Shared) -> String {
    use std::os::unix::process::ExitStatusExt;
    let mut parts = Vec::new();
    if let Some(status) = status {
        match (status.code(), status.signal()) {
            (Some(code), _) => parts.push(format!("exit code {code}")),
            (None, Some(signal)) => parts.push(format!("killed by signal {signal}")),
            _ => {}
        }
    }
    let tail = shared.stderr_tail.lock().expect("stderr lock");
    let last: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    if !last.is_empty() {
        let from = last.len().saturating_sub(3);
        parts.push(last[from..].join(" | "));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(": "))
    }
}

/// A pipe whose ends are closed on exec (`std::io::pipe` is newer than our
/// MSRV).
fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing
    // else.
    unsafe { Ok((std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1]))) }
}

fn spawn_pipe_reader(mut pipe: impl Read + Send + 'static, shared: Arc<Shared>, is_stderr: bool) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        // Bytes held back: an unfinished UTF-8 character or the start of a
        // flush marker cut by the read.
        let mut carry: Vec<u8> = Vec::new();
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    carry.extend_from_slice(&chunk[..n]);
                    let markers = count_and_strip(&mut carry, FLUSH_MARKER.as_bytes());
                    let keep = held_back(&carry, FLUSH_MARKER.as_bytes());
                    let ready: Vec<u8> = carry.drain(..carry.len() - keep).collect();
                    let text = String::from_utf8_lossy(&ready);
                    if !text.is_empty() {
                        shared.output.lock().expect("output lock").push_str(&text);
                    }
                    if is_stderr && !text.is_empty() {
                        let mut tail = shared.stderr_tail.lock().expect("stderr lock");
                        tail.push_str(&text);
                        if tail.len() > STDERR_TAIL {
                            let cut = tail.len() - STDERR_TAIL;
                            let cut = (cut..tail.len()).find(|&i| tail.is_char_boundary(i)).unwrap_or(0);
                            tail.drain(..cut);
                        }
                    }
                    if markers > 0 {
                        *shared.flushed.lock().expect("flushed lock") += markers;
                        shared.flushed_changed.notify_all();
                    }
                }
            }
        }
    });
}

/// Removes every whole `marker` from `bytes`; how many there were.
fn count_and_strip(bytes: &mut Vec<u8>, marker: &[u8]) -> u64 {
    let mut count = 0;
    while let Some(at) = bytes.windows(marker.len()).position(|w| w == marker) {
        bytes.drain(at..at + marker.len());
        count += 1;
    }
    count
}

/// How many bytes at the end of `bytes` to keep for the next read: a
/// prefix of `marker`, or an unfinished UTF-8 character.
fn held_back(bytes: &[u8], marker: &[u8]) -> usize {
    let prefix = (1..marker.len().min(bytes.len() + 1))
        .rev()
        .find(|&k| bytes.ends_with(&marker[..k]))
        .unwrap_or(0);
    let utf8 = match std::str::from_utf8(bytes) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => bytes.len() - e.valid_up_to(),
        Err(_) => 0,
    };
    prefix.max(utf8)
}

/// Reads the zygote's socket: replies to the requester, exits into the
/// shared table, output into the shared buffer.
fn spawn_control_reader(mut reader: Reader, replies: mpsc::Sender<Frame>, shared: Arc<Shared>) {
    std::thread::spawn(move || loop {
        match reader.read(None) {
            Ok(Some(frame)) => match frame.kind {
                kind::EXITED => {
                    let pid = frame.header.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32;
                    let status = match (frame.header.get("code"), frame.header.get("signal")) {
                        (Some(code), _) => format!("exit code {code}"),
                        (None, Some(signal)) => format!("killed by signal {signal}"),
                        _ => "ended".to_string(),
                    };
                    shared.exited.lock().expect("exited lock").insert(pid, status);
                }
                kind::LOG => {
                    let text = String::from_utf8_lossy(&frame.field(0)).into_owned();
                    shared.output.lock().expect("output lock").push_str(&text);
                }
                _ => {
                    if replies.send(frame).is_err() {
                        return;
                    }
                }
            },
            Ok(None) => {}
            Err(_) => {
                shared.dead.store(true, Ordering::Relaxed);
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two workers forked from two threads: the second requester's wait
    /// may see the first one's answer first. Before the fix that answer was
    /// dropped and the first requester timed out ("no worker process could
    /// be started: the Python bridge did not answer within 60s").
    #[test]
    fn flush_markers_are_counted_and_taken_out_even_when_a_read_cuts_them() {
        let marker = FLUSH_MARKER.as_bytes();
        let mut bytes = [b"out\n".as_slice(), marker, b"more", &marker[..5]].concat();
        assert_eq!(count_and_strip(&mut bytes, marker), 1);
        assert_eq!(held_back(&bytes, marker), 5);
        let kept = bytes.split_off(bytes.len() - 5);
        assert_eq!(bytes, b"out\nmore");
        let mut next = [kept.as_slice(), &marker[5..], "é".as_bytes()].concat();
        assert_eq!(count_and_strip(&mut next, marker), 1);
        assert_eq!(next, "é".as_bytes());
        // An unfinished UTF-8 character waits for its last byte.
        assert_eq!(held_back(&"é".as_bytes()[..1], marker), 1);
        assert_eq!(held_back(b"plain", marker), 0);
    }

    #[test]
    fn an_answer_to_another_request_is_kept_for_it() {
        let (tx, rx) = mpsc::channel();
        let mut mailbox = Mailbox::new(rx);
        tx.send(Frame::new(kind::FORKED, 2, json!({"pid": 20}))).unwrap();
        tx.send(Frame::new(kind::FORKED, 3, json!({"pid": 30}))).unwrap();
        let second = mailbox.wait(3, kind::FORKED, Duration::from_secs(5)).unwrap();
        assert_eq!(second.header["pid"], 30);
        let first = mailbox.wait(2, kind::FORKED, Duration::from_millis(10)).unwrap();
        assert_eq!(first.header["pid"], 20);
        assert_eq!(
            mailbox.wait(4, kind::FORKED, Duration::from_millis(10)).unwrap_err(),
            Gone::Timeout
        );
        drop(tx);
        assert_eq!(
            mailbox.wait(4, kind::FORKED, Duration::from_millis(10)).unwrap_err(),
            Gone::Disconnected
        );
    }
}
