//! Telemetry heartbeats (protocol.md §6.2): every field of the schema, with values taken
//! from the emulator's own state where one exists and plausible constants elsewhere.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::registry::LoadState;
use crate::state::{lock, Ctx};

pub const TELEMETRY_VERSION: u64 = 1;
pub const SLOT_CAPACITY: u32 = 4096;
pub const KV_PAGES_TOTAL: u64 = 16_384;
pub const KV_PAGE_TOKENS: u64 = 16;

#[derive(Default)]
pub struct TelemetryState {
    snapshot_version: u64,
    last: Option<Sample>,
    cpu_percent: f64,
    tokens_per_second: BTreeMap<String, f64>,
}

struct Sample {
    at: Instant,
    cpu_seconds: f64,
    tokens: BTreeMap<String, u64>,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) != 0 {
            return 0;
        }
        (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
    }
}

fn physical_memory() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        (pages as u64).saturating_mul(size as u64)
    } else {
        16 << 30
    }
}

/// Build the next snapshot (advances the snapshot version and the rate samples).
pub fn snapshot(ctx: &Ctx) -> Value {
    let stats = ctx.scheduler.stats();
    let now = Instant::now();
    let cpu = cpu_seconds();
    let tokens: BTreeMap<String, u64> = stats
        .models
        .iter()
        .map(|(k, m)| (k.clone(), m.tokens_total))
        .collect();
    let version = {
        let mut guard = lock(&ctx.telemetry);
        let t = &mut *guard;
        let fresh = Sample {
            at: now,
            cpu_seconds: cpu,
            tokens,
        };
        match &t.last {
            Some(last) => {
                let dt = now.duration_since(last.at).as_secs_f64();
                if dt >= 0.05 {
                    t.cpu_percent = ((cpu - last.cpu_seconds) / dt * 100.0).max(0.0);
                    t.tokens_per_second = fresh
                        .tokens
                        .iter()
                        .map(|(k, n)| {
                            let before = last.tokens.get(k).copied().unwrap_or(0);
                            (k.clone(), n.saturating_sub(before) as f64 / dt)
                        })
                        .collect();
                    t.last = Some(fresh);
                }
            }
            None => t.last = Some(fresh),
        }
        t.snapshot_version += 1;
        (
            t.snapshot_version,
            t.cpu_percent,
            t.tokens_per_second.clone(),
        )
    };
    let (snapshot_version, cpu_percent, rates) = version;

    let shutting_down = ctx.is_shutting_down();
    let registry = lock(&ctx.registry);
    let mut reserved = 0u64;
    let mut ready = 0u32;
    let models: Vec<Value> = registry
        .entries()
        .map(|e| {
            let running = stats.models.get(&e.canonical_id).map_or(0, |m| m.running);
            if e.state == LoadState::Ready {
                reserved += e.minimum_memory_bytes;
                ready += 1;
            }
            json!({
                "requested_id": e.requested_ids[0],
                "canonical_id": e.canonical_id,
                "load_state": e.state.as_str(),
                "runtime_active": e.state == LoadState::Ready,
                "waiting_sequences": 0,
                "running_sequences": running,
                "overflow_buffer": 0,
                "tokens_per_second": rates.get(&e.canonical_id).copied().unwrap_or(0.0),
                "avg_step_latency_ms": if running > 0 { stats.avg_step_ms } else { 0.0 },
            })
        })
        .collect();
    drop(registry);
    let kv_used = stats
        .tokens_in_flight
        .div_ceil(KV_PAGE_TOKENS)
        .min(KV_PAGES_TOTAL);
    json!({
        "version": TELEMETRY_VERSION,
        "health": {
            "snapshot_version": snapshot_version,
            "uptime_ns": ctx.started.elapsed().as_nanos() as u64,
            "monotonic_timestamp_ns": monotonic_ns(),
            "pid": ctx.pid,
            "active_runtimes": ready,
            "active_requests": stats.active_requests,
            "cpu_usage_percent": cpu_percent,
            "system_wattage": 0.0,
            "system_temperature": 0.0,
            "shutting_down": shutting_down,
            "health_message": if shutting_down { "shutting down" } else { "ok" },
        },
        "queues": {
            "request_slots_used": stats.active_sequences.min(SLOT_CAPACITY),
            "request_slots_capacity": SLOT_CAPACITY,
            "response_slots_used": 0,
            "response_slots_capacity": SLOT_CAPACITY,
            "raw_request_queue_depth": 0,
            "processed_sequence_queue_depth": stats.active_sequences,
            "postprocessor_backlog": 0,
            "pending_management_commands": 0,
        },
        "memory": {
            "gpu_total_bytes": physical_memory(),
            "gpu_reserved_bytes": reserved,
            "kv_cache_pages_total": KV_PAGES_TOTAL,
            "kv_cache_pages_used": kv_used,
            "prompt_cache_pages": 0,
            "prompt_cache_evictions": 0,
        },
        "models": models,
    })
}

pub fn publish(ctx: &Ctx) {
    let snap = snapshot(ctx);
    ctx.publisher.event("telemetry", &snap);
}
