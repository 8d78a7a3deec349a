//! State shared by the emulator's threads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::lm::Model;
use crate::publisher::Publisher;
use crate::registry::Registry;
use crate::scheduler::Scheduler;
use crate::telemetry::TelemetryState;

/// Lock a mutex even if a panicking thread poisoned it: every structure behind these locks
/// stays consistent between statements, and one failed request must not stop the engine.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Work the housekeeping thread does at a given time.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    /// A `load_model` finished: mark the model ready and publish `model_loaded`.
    LoadDone { canonical_id: String },
    /// A `load_model` failed: publish `model_load_failed`.
    LoadFailed { canonical_id: String, error: String },
    /// Stop the process.
    Exit { reason: String },
}

#[derive(Default)]
pub struct Timers {
    jobs: Mutex<Vec<(Instant, Job)>>,
    cv: Condvar,
}

impl Timers {
    pub fn schedule(&self, after: Duration, job: Job) {
        lock(&self.jobs).push((Instant::now() + after, job));
        self.cv.notify_all();
    }

    /// Remove and return the jobs that are due, in due order.
    pub fn take_due(&self, now: Instant) -> Vec<Job> {
        let mut jobs = lock(&self.jobs);
        jobs.sort_by_key(|(at, _)| *at);
        let due = jobs.iter().take_while(|(at, _)| *at <= now).count();
        jobs.drain(..due).map(|(_, j)| j).collect()
    }

    /// Sleep until `deadline`, the next job, or a wake-up, whichever comes first.
    pub fn wait_until(&self, deadline: Instant) {
        let jobs = lock(&self.jobs);
        let next = jobs
            .iter()
            .map(|(at, _)| *at)
            .min()
            .map_or(deadline, |j| j.min(deadline));
        let now = Instant::now();
        if next > now {
            let _ = self.cv.wait_timeout(jobs, next - now);
        }
    }

    pub fn wake(&self) {
        self.cv.notify_all();
    }
}

/// Set once; the main thread waits on it and then shuts the process down.
#[derive(Default)]
pub struct ExitSignal {
    reason: Mutex<Option<String>>,
    cv: Condvar,
}

impl ExitSignal {
    pub fn trigger(&self, reason: impl Into<String>) {
        let mut r = lock(&self.reason);
        if r.is_none() {
            *r = Some(reason.into());
        }
        self.cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        lock(&self.reason).is_some()
    }

    pub fn wait(&self) -> String {
        let mut r = lock(&self.reason);
        loop {
            if let Some(reason) = r.clone() {
                return reason;
            }
            r = self.cv.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The parent process, unless it is init (a daemon's parent is no client).
pub fn launcher_pid() -> Option<u32> {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    u32::try_from(ppid).ok().filter(|p| *p > 1)
}

/// True when the process that started us is gone (we have been re-parented).
pub fn launcher_exited(launcher: u32) -> bool {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    u32::try_from(ppid).ok() != Some(launcher)
}

pub struct Ctx {
    pub config: Config,
    pub lm: Model,
    pub publisher: Publisher,
    pub scheduler: Scheduler,
    pub registry: Mutex<Registry>,
    pub clients: Mutex<BTreeSet<u32>>,
    /// The process that started the engine, while no client has registered yet (`None` once
    /// one has, or when the parent is init). It counts as a provisional client: if it exits
    /// before anyone registers, nobody is left to ever deregister, so the engine leaves.
    pub launcher: Mutex<Option<u32>>,
    pub shutting_down: AtomicBool,
    pub timers: Timers,
    pub exit: ExitSignal,
    pub telemetry: Mutex<TelemetryState>,
    /// A fault armed by `emulator_fault` for the next generation request.
    pub armed_fault: Mutex<Option<crate::fault::Fault>>,
    next_sequence_id: AtomicU64,
    pub started: Instant,
    pub pid: u32,
}

impl Ctx {
    pub fn new(config: Config, lm: Model, publisher: Publisher, launcher: Option<u32>) -> Ctx {
        Ctx {
            config,
            lm,
            publisher,
            scheduler: Scheduler::default(),
            registry: Mutex::new(Registry::default()),
            clients: Mutex::new(BTreeSet::new()),
            launcher: Mutex::new(launcher),
            shutting_down: AtomicBool::new(false),
            timers: Timers::default(),
            exit: ExitSignal::default(),
            telemetry: Mutex::new(TelemetryState::default()),
            armed_fault: Mutex::new(None),
            next_sequence_id: AtomicU64::new(1),
            started: Instant::now(),
            pid: std::process::id(),
        }
    }

    /// A new engine-wide sequence id.
    pub fn sequence_id(&self) -> u64 {
        self.next_sequence_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// No clients are left: refuse new registrations, tell everyone (telemetry with
    /// `shutting_down: true`), and exit after the grace period — unless lingering.
    pub fn clients_gone(&self, why: &str) {
        if self.config.linger {
            crate::info!("{why}; no clients remain, staying up (PIE_EMULATOR_LINGER=1)");
            return;
        }
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        crate::info!(
            "{why}; no clients remain, shutting down in {} ms",
            self.config.exit_grace.as_millis()
        );
        crate::telemetry::publish(self);
        self.timers.schedule(
            self.config.exit_grace,
            Job::Exit {
                reason: format!("{why}; no clients remain"),
            },
        );
    }
}
