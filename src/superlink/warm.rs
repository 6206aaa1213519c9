//! Warm Python interpreters the SuperLink keeps between runs, so that a
//! Python run does not pay for starting Python and importing `flwr`.
//!
//! The first Python run of an interpreter starts one zygote of it (flwr
//! imported, no app loaded), which then stays alive in the SuperLink's
//! process tree. For that run and every later run of that interpreter the
//! launcher asks it to fork a zygote for the run and hands that fork's
//! socket to the run's `flwr-simulation` ([`crate::bridge::HANDED_VARIABLE`]),
//! which loads the app in it exactly as in an interpreter it started itself:
//! the run's events are the same bytes either way (nothing here is
//! recorded). The first run waits for the warm zygote rather than starting
//! its own next to it: two interpreters importing flwr at once on a small
//! machine take longer than one.
//!
//! A warm zygote is dropped and replaced when its environment changed since
//! it started (its site-packages directory was modified: a `pip install` or
//! upgrade), when it died, or when it fails to fork. At most
//! [`WARM_MAX`] interpreters are kept. `FLORET_WARM_PYTHON=0` turns this off.
//!
//! It never loads an app and never decides what a run computes; a run whose
//! interpreter cannot be started warm simply starts its own.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::bridge::process::Settings;
use crate::bridge::Zygote;

/// Interpreters kept warm at once (each costs the RSS of an interpreter
/// with flwr imported, ~60–100 MB).
pub(crate) const WARM_MAX: usize = 2;
/// The environment variable that turns warm interpreters off (`0`).
pub(crate) const WARM_VARIABLE: &str = "FLORET_WARM_PYTHON";

/// Which warm zygote suits a run: its interpreter and the BLAS/OpenMP
/// threads its numpy was started with.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub interpreter: PathBuf,
    pub threads: usize,
}

impl Key {
    /// The key of a run of `app`, when it has a Python component and its
    /// interpreter can be named.
    pub(crate) fn for_app(app: &crate::app::AppConfig, options: &crate::records::ConfigRecord) -> Option<Key> {
        use crate::bridge::{is_python, run};
        if !(is_python(&app.serverapp) || is_python(&app.clientapp)) {
            return None;
        }
        Some(Key {
            interpreter: run::interpreter_for(options).ok()?,
            threads: run::threads_per_client(options).max(1),
        })
    }

    /// The value of [`crate::bridge::HANDED_VARIABLE`] for a zygote forked
    /// for this key whose socket is descriptor `fd`.
    pub(crate) fn handed_value(&self, fd: i32, pid: i32) -> std::ffi::OsString {
        let mut value = std::ffi::OsString::from(format!("{fd}:{pid}:{}:", self.threads));
        value.push(self.interpreter.as_os_str());
        value
    }
}

struct Warm {
    zygote: Zygote,
    /// The interpreter's site-packages and its modification time when the
    /// zygote started.
    site: Option<(PathBuf, SystemTime)>,
    /// When it was last used, for eviction.
    used: u64,
}

impl Warm {
    fn is_stale(&self) -> bool {
        match &self.site {
            Some((path, then)) => modified(path).is_none_or(|now| now != *then),
            None => false,
        }
    }
}

/// A zygote forked for one run: the socket the run's process takes over and
/// the process id.
pub(crate) struct Handed {
    pub stream: UnixStream,
    pub pid: i32,
}

pub(crate) struct WarmPython {
    zygotes: Mutex<(HashMap<Key, Warm>, u64)>,
    /// Requests to the thread that starts interpreters (their death signal
    /// is tied to the thread that spawns them: it lives as long as this).
    starter: Mutex<mpsc::Sender<Key>>,
    /// Keys being started, so that a burst of runs starts one each.
    starting: Mutex<Vec<Key>>,
    /// Notified when a start ends (ready or failed).
    started: Condvar,
}

impl WarmPython {
    /// The pool, or `None` when [`WARM_VARIABLE`] is `0`.
    pub(crate) fn from_env() -> Option<Arc<WarmPython>> {
        if std::env::var(WARM_VARIABLE).is_ok_and(|v| v.trim() == "0") {
            return None;
        }
        let (starter, requests) = mpsc::channel::<Key>();
        let pool = Arc::new(WarmPython {
            zygotes: Mutex::new((HashMap::new(), 0)),
            starter: Mutex::new(starter),
            starting: Mutex::new(Vec::new()),
            started: Condvar::new(),
        });
        let weak = Arc::downgrade(&pool);
        std::thread::Builder::new()
            .name("warm-python".into())
            .spawn(move || {
                for key in requests {
                    let Some(pool) = weak.upgrade() else { return };
                    pool.start(key);
                }
            })
            .expect("a thread for warm interpreters");
        Some(pool)
    }

    /// A zygote for a run of `key`, forked from the warm one; `None` when
    /// there is none yet (one is started for the next run).
    pub(crate) fn fork_for(&self, key: &Key) -> Option<Handed> {
        let mut zygotes = self.zygotes.lock().expect("warm lock");
        let (map, clock) = &mut *zygotes;
        *clock += 1;
        let now = *clock;
        let forked = match map.get_mut(key) {
            Some(warm) if warm.zygote.is_alive() && !warm.is_stale() => {
                warm.used = now;
                warm.zygote.fork_zygote()
            }
            Some(_) => {
                tracing::info!(interpreter = %key.interpreter.display(), "the warm Python interpreter is stale; replacing it");
                map.remove(key);
                drop(zygotes);
                self.request(key);
                return None;
            }
            None => {
                drop(zygotes);
                self.request(key);
                return None;
            }
        };
        match forked {
            Ok((stream, pid)) => Some(Handed { stream, pid }),
            Err(error) => {
                tracing::warn!(%error, interpreter = %key.interpreter.display(), "the warm Python interpreter did not fork; replacing it");
                map.remove(key);
                drop(zygotes);
                self.request(key);
                None
            }
        }
    }

    /// A zygote for a run of `key`, forked from the warm one; when there is
    /// none yet, one is started and waited for (up to `wait`). `None` when it
    /// cannot start (the run then starts its own interpreter, and reports
    /// what is wrong with it).
    pub(crate) fn fork_for_waiting(&self, key: &Key, wait: Duration) -> Option<Handed> {
        if let Some(handed) = self.fork_for(key) {
            return Some(handed);
        }
        let deadline = Instant::now() + wait;
        let mut starting = self.starting.lock().expect("starting lock");
        while starting.contains(key) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            starting = self.started.wait_timeout(starting, left).expect("starting lock").0;
        }
        drop(starting);
        if self.is_fresh(key) {
            self.fork_for(key)
        } else {
            None
        }
    }

    /// Starts a warm zygote for `key` in the background, unless one is
    /// being started.
    pub fn request(&self, key: &Key) {
        let mut starting = self.starting.lock().expect("starting lock");
        if starting.contains(key) {
            return;
        }
        starting.push(key.clone());
        let _ = self.starter.lock().expect("starter lock").send(key.clone());
    }

    fn start(&self, key: Key) {
        let settings = Settings {
            threads_per_client: key.threads,
            env: Vec::new(),
            cwd: None,
        };
        let started = Zygote::spawn(&key.interpreter, &settings);
        let zygote = match started {
            Ok(zygote) => zygote,
            Err(error) => {
                // The run itself reports what is wrong with the interpreter.
                tracing::info!(%error, interpreter = %key.interpreter.display(), "no warm Python interpreter");
                self.done_starting(&key);
                return;
            }
        };
        let site = zygote
            .hello
            .get("site")
            .and_then(serde_json::Value::as_str)
            .map(PathBuf::from)
            .and_then(|path| modified(&path).map(|at| (path, at)));
        tracing::info!(interpreter = %key.interpreter.display(), pid = zygote.pid(), "a warm Python interpreter is ready");
        let mut zygotes = self.zygotes.lock().expect("warm lock");
        let (map, clock) = &mut *zygotes;
        while map.len() >= WARM_MAX {
            let Some(oldest) = map.iter().min_by_key(|(_, w)| w.used).map(|(k, _)| k.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            key.clone(),
            Warm {
                zygote,
                site,
                used: *clock,
            },
        );
        drop(zygotes);
        self.done_starting(&key);
    }

    /// Ends the start of `key` and wakes those waiting for it.
    fn done_starting(&self, key: &Key) {
        self.starting.lock().expect("starting lock").retain(|k| k != key);
        self.started.notify_all();
    }

    /// Whether a warm zygote for `key` is alive and not stale: its
    /// interpreter exists and has imported a usable flwr.
    pub(crate) fn is_fresh(&self, key: &Key) -> bool {
        let zygotes = self.zygotes.lock().expect("warm lock");
        zygotes
            .0
            .get(key)
            .is_some_and(|warm| warm.zygote.is_alive() && !warm.is_stale())
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
