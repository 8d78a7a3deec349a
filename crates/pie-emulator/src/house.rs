//! The housekeeping thread: telemetry heartbeats, reaping clients that died without
//! deregistering, and timed jobs (model load completion, the delayed exit).

use std::time::{Duration, Instant};

use orchard_core::engine::process::pid_alive;
use serde_json::json;

use crate::registry::LoadState;
use crate::state::{launcher_exited, lock, Ctx, Job};

/// For this long after startup, heartbeats come every [`STARTUP_INTERVAL`].
const STARTUP_WINDOW: Duration = Duration::from_secs(2);
const STARTUP_INTERVAL: Duration = Duration::from_millis(50);

pub fn run(ctx: &Ctx) {
    let mut next_telemetry = Instant::now();
    let mut next_reap = Instant::now() + ctx.config.reap_interval;
    loop {
        if ctx.exit.is_set() {
            return;
        }
        let now = Instant::now();
        for job in ctx.timers.take_due(now) {
            run_job(ctx, job);
        }
        if now >= next_telemetry {
            crate::telemetry::publish(ctx);
            // Right after startup a launching client is waiting for its first heartbeat on a
            // SUB socket that may not have been connected for the first one: beat faster.
            let interval = if ctx.started.elapsed() < STARTUP_WINDOW {
                ctx.config.telemetry_interval.min(STARTUP_INTERVAL)
            } else {
                ctx.config.telemetry_interval
            };
            next_telemetry += interval;
            if next_telemetry <= now {
                next_telemetry = now + interval;
            }
        }
        if now >= next_reap {
            reap(ctx);
            next_reap = now + ctx.config.reap_interval;
        }
        ctx.timers.wait_until(next_telemetry.min(next_reap));
    }
}

fn run_job(ctx: &Ctx, job: Job) {
    match job {
        Job::LoadDone { canonical_id } => {
            let loaded = {
                let mut registry = lock(&ctx.registry);
                registry.get_mut(&canonical_id).map(|e| {
                    e.state = LoadState::Ready;
                    e.minimum_memory_bytes
                })
            };
            // A load cancelled or unloaded in the meantime publishes nothing more.
            if let Some(minimum_memory_bytes) = loaded {
                crate::info!("model '{canonical_id}' loaded");
                ctx.publisher.event(
                    "model_loaded",
                    &json!({
                        "event": "model_loaded",
                        "model_id": canonical_id,
                        "capabilities": {},
                        "minimum_memory_bytes": minimum_memory_bytes,
                    }),
                );
            }
        }
        Job::LoadFailed {
            canonical_id,
            error,
        } => {
            ctx.publisher.event(
                "model_load_failed",
                &json!({
                    "event": "model_load_failed",
                    "model_id": canonical_id,
                    "error": error,
                }),
            );
        }
        Job::Exit { reason } => ctx.exit.trigger(reason),
    }
}

/// Forget registered clients whose process is gone; if that empties the set, shut down.
/// Before the first registration, the launching process stands in for the clients.
fn reap(ctx: &Ctx) {
    let launcher = *lock(&ctx.launcher);
    if let Some(parent) = launcher {
        if launcher_exited(parent) {
            *lock(&ctx.launcher) = None;
            if lock(&ctx.clients).is_empty() {
                ctx.clients_gone(&format!(
                    "the process that launched the engine (pid {parent}) exited before any client registered"
                ));
            }
        }
    }
    let dead: Vec<u32> = lock(&ctx.clients)
        .iter()
        .copied()
        .filter(|p| !pid_alive(*p))
        .collect();
    if dead.is_empty() {
        return;
    }
    let emptied = {
        let mut clients = lock(&ctx.clients);
        let before = clients.len();
        for p in &dead {
            clients.remove(p);
        }
        crate::info!(
            "client(s) {dead:?} exited without deregistering ({} client(s) left)",
            clients.len()
        );
        before > 0 && clients.is_empty()
    };
    if emptied {
        ctx.clients_gone("the last registered client exited");
    }
}
