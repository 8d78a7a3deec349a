//! Lost final deltas. PUB/SUB drops what a subscriber cannot queue and PIE has no per-request
//! status command, so a request whose last final delta was dropped would wait forever. When a
//! request in flight has heard nothing for the quiet period (`ORCHARD_LOST_FINAL_CHECK_MS`,
//! default 5000), the watchdog listens to the engine's telemetry: two heartbeats that report
//! no active request and no running or waiting sequence mean the engine has finished all its
//! work, so the quiet requests' finals were lost and they fail with `DELTAS_LOST`. While the
//! engine reports work, quiet requests keep waiting (a long prefill is quiet too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, ErrorCode};
use crate::nng::Socket;

use super::{block_on_timeout, lock, EventHub, SlotMap, TELEMETRY_TOPIC};

const DEFAULT_QUIET: Duration = Duration::from_secs(5);
/// How long to wait for each heartbeat (the engine sends about two a second).
const HEARTBEAT_WAIT: Duration = Duration::from_secs(3);

fn quiet_period() -> Duration {
    std::env::var("ORCHARD_LOST_FINAL_CHECK_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_QUIET, Duration::from_millis)
}

#[derive(Default)]
struct Signal {
    /// A request was submitted since the thread last looked.
    submitted: bool,
    stopped: bool,
}

pub struct Watchdog {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    started: AtomicBool,
}

/// What the watchdog reads: the requests in flight and the engine's telemetry.
pub struct Watched {
    pub slots: SlotMap,
    pub sub: Arc<Socket>,
    pub events: Arc<EventHub>,
}

impl Watchdog {
    pub fn new() -> Watchdog {
        Watchdog {
            signal: Arc::new((Mutex::new(Signal::default()), Condvar::new())),
            thread: Mutex::new(None),
            started: AtomicBool::new(false),
        }
    }

    /// A request was sent: start watching (the thread starts with the first request).
    pub fn submitted(&self, watched: impl FnOnce() -> Watched) {
        if !self.started.swap(true, Ordering::SeqCst) {
            let signal = self.signal.clone();
            let watched = watched();
            let quiet = quiet_period();
            if let Ok(h) = std::thread::Builder::new()
                .name("orchard-watchdog".into())
                .spawn(move || watch(&signal, &watched, quiet))
            {
                *lock(&self.thread) = Some(h);
            }
        }
        let (m, cv) = &*self.signal;
        lock(m).submitted = true;
        cv.notify_one();
    }

    pub fn stop(&self) {
        let (m, cv) = &*self.signal;
        lock(m).stopped = true;
        cv.notify_one();
        if let Some(h) = lock(&self.thread).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

fn watch(signal: &(Mutex<Signal>, Condvar), watched: &Watched, quiet: Duration) {
    let (m, cv) = signal;
    let tick = (quiet / 4).max(Duration::from_millis(50));
    loop {
        {
            let mut s = lock(m);
            // Nothing in flight: sleep until a request is sent (no timer while idle).
            while !s.stopped && !s.submitted && lock(&watched.slots).is_empty() {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stopped {
                return;
            }
            s.submitted = false;
            let (s, _) = cv.wait_timeout(s, tick).unwrap_or_else(|p| p.into_inner());
            if s.stopped {
                return;
            }
        }
        let quiet_now: Vec<_> = lock(&watched.slots)
            .values()
            .filter_map(|slot| {
                let last = slot.last_activity();
                (last.elapsed() >= quiet).then(|| (slot.clone(), last))
            })
            .collect();
        if quiet_now.is_empty() || !engine_idle(&watched.sub, &watched.events) {
            continue;
        }
        let mut slots = lock(&watched.slots);
        for (slot, last) in quiet_now {
            // A delta that arrived meanwhile proves the request alive after all.
            if slot.last_activity() != last || slot.is_done() {
                continue;
            }
            slots.remove(&slot.request_id);
            slot.fail(Error::new(
                ErrorCode::DeltasLost,
                format!(
                    "request {}: nothing arrived for {:.1} s and the engine reports no work in progress, \
                     so its final delta was lost between the engine and this process",
                    slot.request_id,
                    last.elapsed().as_secs_f64()
                ),
            ));
        }
    }
}

/// Two heartbeats, both saying the engine has nothing to do.
fn engine_idle(sub: &Socket, events: &EventHub) -> bool {
    if sub.subscribe(TELEMETRY_TOPIC).is_err() {
        return false;
    }
    let started = Instant::now();
    let idle = (0..2).all(|_| {
        let beat = events.wait_for(|e| e.name == "telemetry");
        matches!(block_on_timeout(beat, HEARTBEAT_WAIT), Some(Ok(e)) if reports_idle(&e.payload))
    });
    let _ = sub.unsubscribe(TELEMETRY_TOPIC);
    idle && started.elapsed() < 2 * HEARTBEAT_WAIT
}

/// `health.active_requests` is 0 and no model has a running or waiting sequence. A snapshot
/// without `active_requests` says nothing, so it is not idle.
fn reports_idle(telemetry: &Value) -> bool {
    let active = telemetry
        .pointer("/health/active_requests")
        .and_then(Value::as_u64);
    let busy_model = telemetry
        .get("models")
        .and_then(Value::as_array)
        .is_some_and(|models| {
            models.iter().any(|m| {
                ["running_sequences", "waiting_sequences"]
                    .iter()
                    .any(|k| m.get(*k).and_then(Value::as_u64).unwrap_or(0) > 0)
            })
        });
    active == Some(0) && !busy_model
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn idle_needs_zero_active_requests_and_no_sequences() {
        assert!(reports_idle(
            &json!({"health": {"active_requests": 0}, "models": [{"running_sequences": 0}]})
        ));
        assert!(!reports_idle(&json!({"health": {"active_requests": 1}})));
        assert!(!reports_idle(
            &json!({"health": {"active_requests": 0}, "models": [{"waiting_sequences": 2}]})
        ));
        assert!(!reports_idle(&json!({"health": {}})), "unknown is not idle");
    }
}
