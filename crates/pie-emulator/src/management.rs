//! The REP side: JSON commands in, one JSON reply out, always fast (slow work such as model
//! loading is answered `accepted` and completed later with an event).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use orchard_core::nng::Socket;
use serde_json::{json, Map, Value};

use crate::lm::{EOT_TEXT, EOT_TOKEN_ID};
use crate::registry::{inspect_model_dir, LoadState, ModelEntry};
use crate::state::{lock, Ctx, Job};

pub fn serve(rep: &Socket, ctx: &Ctx) {
    loop {
        match rep.recv() {
            Ok(msg) => {
                let reply =
                    catch_unwind(AssertUnwindSafe(|| handle(&msg, ctx))).unwrap_or_else(|_| {
                        error("internal emulator error while handling the command")
                    });
                let bytes = serde_json::to_vec(&reply).unwrap_or_else(|_| {
                    br#"{"status":"error","message":"reply encoding failed"}"#.to_vec()
                });
                if let Err(e) = rep.send(&bytes) {
                    if e.is_closed() {
                        return;
                    }
                    crate::warn!("management reply failed: {e}");
                }
            }
            Err(e) if e.is_closed() => return,
            Err(e) => {
                crate::warn!("management socket: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn ok() -> Value {
    json!({"status": "ok"})
}

fn accepted() -> Value {
    json!({"status": "accepted"})
}

fn error(message: impl Into<String>) -> Value {
    json!({"status": "error", "message": message.into()})
}

fn ok_with(command: &str, data: Value) -> Value {
    let mut d = Map::new();
    d.insert(command.to_string(), data);
    json!({"status": "ok", "data": Value::Object(d)})
}

fn str_field<'a>(cmd: &'a Value, key: &str) -> Option<&'a str> {
    cmd.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Answer one command (bytes as received).
pub fn handle(msg: &[u8], ctx: &Ctx) -> Value {
    let cmd: Value = match serde_json::from_slice(msg) {
        Ok(v) => v,
        Err(e) => {
            crate::warn!("management: unparsable command ({} bytes): {e}", msg.len());
            return error(format!("command is not valid JSON: {e}"));
        }
    };
    if !cmd.is_object() {
        return error("command must be a JSON object with a \"type\"");
    }
    let Some(kind) = cmd.get("type").and_then(Value::as_str) else {
        return error("command has no \"type\" string");
    };
    match kind {
        "ping" => ok(),
        "client_register" => client_register(&cmd, ctx),
        "client_deregister" => client_deregister(&cmd, ctx),
        "load_model" => load_model(&cmd, ctx),
        "unload_model" => unload_model(&cmd, ctx),
        "list_models" => list_models(ctx),
        "inspect_model_source" => inspect_model_source(&cmd),
        "cancel_request" => cancel_request(&cmd, ctx),
        "cancel_model_load" => cancel_model_load(&cmd, ctx),
        "emulator_vocab" => emulator_vocab(ctx),
        "emulator_request_stats" => emulator_request_stats(&cmd, ctx),
        "emulator_fault" => emulator_fault(&cmd, ctx),
        other => {
            crate::warn!("management: unknown command '{other}'");
            error(format!("unknown command '{other}'"))
        }
    }
}

fn client_pid(cmd: &Value) -> Result<u32, Value> {
    cmd.get("client_pid")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= i32::MAX as u64)
        .map(|p| p as u32)
        .ok_or_else(|| error("client_pid must be a positive integer process id"))
}

fn client_register(cmd: &Value, ctx: &Ctx) -> Value {
    if ctx.is_shutting_down() {
        return error("engine shutting down");
    }
    let pid = match client_pid(cmd) {
        Ok(p) => p,
        Err(e) => return e,
    };
    *lock(&ctx.launcher) = None;
    let mut clients = lock(&ctx.clients);
    if clients.insert(pid) {
        crate::info!("client {pid} registered ({} client(s))", clients.len());
    }
    ok()
}

fn client_deregister(cmd: &Value, ctx: &Ctx) -> Value {
    let pid = match client_pid(cmd) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let emptied = {
        let mut clients = lock(&ctx.clients);
        let removed = clients.remove(&pid);
        if removed {
            crate::info!(
                "client {pid} deregistered ({} client(s) left)",
                clients.len()
            );
        }
        removed && clients.is_empty()
    };
    if emptied {
        ctx.clients_gone(&format!("client {pid} deregistered"));
    }
    ok()
}

fn load_data(entry: &ModelEntry) -> Value {
    json!({"capabilities": {}, "minimum_memory_bytes": entry.minimum_memory_bytes})
}

fn load_model(cmd: &Value, ctx: &Ctx) -> Value {
    let requested = str_field(cmd, "requested_id");
    let canonical = str_field(cmd, "canonical_id");
    let (Some(canonical), Some(requested)) = (canonical.or(requested), requested.or(canonical))
    else {
        return error("load_model needs a canonical_id or requested_id");
    };
    let path = cmd.get("model_path").and_then(Value::as_str).unwrap_or("");
    let delay = ctx.config.load_delay;
    let mut registry = lock(&ctx.registry);
    let known = registry
        .key_of(canonical)
        .or_else(|| registry.key_of(requested))
        .or_else(|| registry.key_of_path(path));
    if let Some(key) = known {
        let Some(entry) = registry.get_mut(&key) else {
            return error("internal registry inconsistency");
        };
        entry.add_alias(requested);
        if canonical != entry.canonical_id {
            entry.add_alias(canonical);
        }
        return match entry.state {
            LoadState::Ready => ok_with("load_model", load_data(entry)),
            LoadState::Loading => {
                // Another load is under way; this caller gets its own event after its reply,
                // under the canonical id it sent (clients match the event on exactly that).
                ctx.timers.schedule(
                    delay,
                    Job::LoadDone {
                        canonical_id: canonical.to_string(),
                    },
                );
                accepted()
            }
        };
    }
    match inspect_model_dir(path) {
        Ok(minimum_memory_bytes) => {
            crate::info!("loading model '{canonical}' from {path}");
            registry.insert(ModelEntry {
                canonical_id: canonical.to_string(),
                requested_ids: vec![requested.to_string()],
                model_path: path.to_string(),
                minimum_memory_bytes,
                state: LoadState::Loading,
            });
            ctx.timers.schedule(
                delay,
                Job::LoadDone {
                    canonical_id: canonical.to_string(),
                },
            );
        }
        Err(why) => {
            crate::warn!("cannot load model '{canonical}': {why}");
            ctx.timers.schedule(
                delay,
                Job::LoadFailed {
                    canonical_id: canonical.to_string(),
                    error: why,
                },
            );
        }
    }
    accepted()
}

fn unload_model(cmd: &Value, ctx: &Ctx) -> Value {
    let id = str_field(cmd, "requested_id")
        .or_else(|| str_field(cmd, "canonical_id"))
        .or_else(|| str_field(cmd, "model_id"));
    let Some(id) = id else {
        return error("unload_model needs a requested_id");
    };
    if let Some(e) = lock(&ctx.registry).remove(id) {
        crate::info!("unloaded model '{}'", e.canonical_id);
    }
    ok()
}

fn list_models(ctx: &Ctx) -> Value {
    let models: Vec<Value> = lock(&ctx.registry)
        .entries()
        .map(|e| {
            json!({
                "requested_id": e.requested_ids[0],
                "canonical_id": e.canonical_id,
                "load_state": e.state.as_str(),
                "model_path": e.model_path,
                "requested_ids": e.requested_ids,
            })
        })
        .collect();
    ok_with("list_models", json!({ "models": models }))
}

fn inspect_model_source(cmd: &Value) -> Value {
    let Some(path) = str_field(cmd, "model_path") else {
        return error("inspect_model_source needs a model_path");
    };
    let p = Path::new(path);
    let Ok(meta) = std::fs::metadata(p) else {
        return error(format!("model source '{path}' does not exist"));
    };
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    let format = if meta.is_dir() {
        "directory".to_string()
    } else {
        p.extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_else(|| "unknown".to_string())
    };
    ok_with(
        "inspect_model_source",
        json!({
            "canonical_id": stem,
            "model_path": path,
            "source_format": format,
            "architecture": "LlamaForCausalLM",
            "model_type": "llama",
            "formatter_config": {"model_type": "llama"},
        }),
    )
}

fn cancel_request(cmd: &Value, ctx: &Ctx) -> Value {
    let Some(id) = cmd.get("request_id").and_then(Value::as_u64) else {
        return error("cancel_request needs an integer request_id");
    };
    crate::info!("cancel_request {id}");
    ctx.scheduler.cancel(id);
    ok()
}

fn cancel_model_load(cmd: &Value, ctx: &Ctx) -> Value {
    let ids = [
        str_field(cmd, "canonical_id"),
        str_field(cmd, "requested_id"),
    ];
    let mut registry = lock(&ctx.registry);
    for id in ids.into_iter().flatten() {
        let loading = registry
            .get(id)
            .is_some_and(|e| e.state == LoadState::Loading);
        if loading {
            if let Some(e) = registry.remove(id) {
                crate::info!("cancelled loading model '{}'", e.canonical_id);
                ctx.timers.schedule(
                    Duration::ZERO,
                    Job::LoadFailed {
                        canonical_id: e.canonical_id,
                        error: "Cancelled".to_string(),
                    },
                );
            }
        }
    }
    ok()
}

fn emulator_vocab(ctx: &Ctx) -> Value {
    let lm = &ctx.lm;
    let tokens: Vec<Value> = (0..lm.vocab_size())
        .map(|t| json!({"id": lm.wire_id(t), "text": lm.text(t)}))
        .collect();
    ok_with(
        "emulator_vocab",
        json!({"tokens": tokens, "eot_token_id": EOT_TOKEN_ID, "eot_token": EOT_TEXT}),
    )
}

/// Arm a one-shot fault for the next generation request (see `fault.rs`).
fn emulator_fault(cmd: &Value, ctx: &Ctx) -> Value {
    match crate::fault::Fault::parse(cmd) {
        Ok(fault) => {
            crate::info!("fault armed for the next generation request: {fault:?}");
            *lock(&ctx.armed_fault) = Some(fault);
            ok()
        }
        Err(why) => error(&why),
    }
}

/// What the emulator did for one request: deltas published, sequences still generating,
/// whether a cancel reached it, and each prompt's layout as received. Lets tests see that a
/// cancelled request stopped, and where a client put its media.
fn emulator_request_stats(cmd: &Value, ctx: &Ctx) -> Value {
    let Some(id) = cmd.get("request_id").and_then(Value::as_u64) else {
        return error("emulator_request_stats needs an integer request_id");
    };
    let stats = ctx.scheduler.request_stats(id);
    ok_with(
        "emulator_request_stats",
        match stats {
            Some(s) => json!({"request_id": id, "known": true,
                              "published_deltas": s.published_deltas,
                              "active_sequences": s.active_sequences,
                              "cancelled": s.cancelled,
                              "layouts": s.layouts}),
            None => json!({"request_id": id, "known": false, "published_deltas": 0,
                           "active_sequences": 0, "cancelled": false, "layouts": []}),
        },
    )
}
