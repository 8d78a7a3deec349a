//! The calls the napi binding exposes, as plain Rust: JSON text and optional numbers in,
//! typed results out. Input checks, defaults and result shapes live here, so the binding
//! only converts types and the same calls can be tested with `cargo test`.

mod chat;
mod codec;
mod models;
mod tasks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::engine::StartOptions;
use crate::error::{Error, Result};
use crate::models::LoadRequest;
use crate::session::{self, Session};
pub use crate::wire::vocab::SideBytes;

pub use chat::{chat, chat_batch, next_batch_json, render_prompt, SentChat};
pub use codec::{
    build_chat_frame, decode_message, decode_request, encode_request, encode_request_with,
    render_chat, segment_name, Message,
};
pub use models::{
    acquire_lock, cancel_load, engine_home, find_engine_binary, installed_binary, model_status,
    ModelStatus, ENGINE_BINARY_NAME,
};
pub use tasks::{embed, modal_task, prefill_task, task_limits_json, task_result_json, SentTask};

/// How long `loadModel` waits for the engine to load a model.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a management command waits for the engine's reply.
pub const DEFAULT_MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stopEngine` gives each signal (SIGINT, then SIGTERM) before the next.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// `ms` milliseconds, or `default` when not given.
fn millis_or(ms: Option<u32>, default: Duration) -> Duration {
    ms.map_or(default, |ms| Duration::from_millis(u64::from(ms)))
}

/// JSON text from JavaScript; `what` names the argument in the error.
pub fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::not_json(what, e))
}

/// Attach to (or launch) the engine and take a lease on it; absent timeouts take
/// [`StartOptions::default`]'s.
pub fn start(
    binary: Option<String>,
    home: Option<String>,
    cache_root: Option<String>,
    startup_timeout_ms: Option<u32>,
    lock_timeout_ms: Option<u32>,
    model_specs_dir: &str,
) -> Result<Arc<Session>> {
    let defaults = StartOptions::default();
    let opts = StartOptions {
        binary: binary.map(PathBuf::from),
        home: home.map(PathBuf::from),
        cache_root: cache_root.map(PathBuf::from),
        startup_timeout: millis_or(startup_timeout_ms, defaults.startup_timeout),
        lock_timeout: millis_or(lock_timeout_ms, defaults.lock_timeout),
    };
    session::acquire(&opts, Path::new(model_specs_dir))
}

/// A loaded model, as `loadModel` returns it.
pub struct ModelInfo {
    pub requested_id: String,
    pub canonical_id: String,
    pub model_path: String,
    pub family: String,
}

/// Load a model (default deadline [`DEFAULT_LOAD_TIMEOUT`]). `requested_id` is the caller's
/// id (an alias of a model loaded under another id keeps it); `model_path` is the path the
/// session loaded the model from (canonicalised).
pub fn load_model(
    session: &Session,
    request: &LoadRequest,
    timeout_ms: Option<u32>,
) -> Result<ModelInfo> {
    let m = session.load_model(request, millis_or(timeout_ms, DEFAULT_LOAD_TIMEOUT))?;
    Ok(ModelInfo {
        requested_id: request.requested_id.clone(),
        canonical_id: m.canonical_id.clone(),
        model_path: m.model_path.to_string_lossy().into_owned(),
        family: m.profile.family().to_string(),
    })
}

/// One management command (a JSON object with a `type`); the engine's reply as JSON text.
pub fn management_command(
    session: &Session,
    command_json: &str,
    timeout_ms: Option<u32>,
) -> Result<String> {
    let command = parse_json(command_json, "command")?;
    check_command(&command)?;
    let timeout = millis_or(timeout_ms, DEFAULT_MANAGEMENT_TIMEOUT);
    Ok(session.transport.management(&command, timeout)?.to_string())
}

/// A management command must be an object naming the command in a non-empty `type`.
fn check_command(command: &Value) -> Result<()> {
    match command.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Ok(()),
        _ => Err(Error::invalid(
            "command.type: expected the command name as a non-empty string, e.g. {\"type\": \"ping\"}",
        )),
    }
}

/// The texts of an embedding call from their JSON text (a string or an array of strings).
pub fn embed_inputs(inputs_json: &str) -> Result<Vec<String>> {
    crate::embed::parse_inputs(parse_json(inputs_json, "input")?)
}

/// A cache root and the engine running for it, if any.
pub struct EngineStatus {
    pub cache_root: String,
    /// The pid in `engine.pid` when that process is alive and really the engine binary.
    pub pid: Option<u32>,
}

/// Which engine runs for a cache root (default: the environment's), without attaching.
pub fn engine_status(cache_root: Option<&str>) -> Result<EngineStatus> {
    let root = crate::paths::Roots::resolve(cache_root.map(Path::new))?.cache;
    let pid = crate::engine::read_pid_file(&root).filter(|p| crate::engine::pid_is_engine(*p));
    Ok(EngineStatus {
        cache_root: root.to_string_lossy().into_owned(),
        pid,
    })
}

/// Stop the engine of a cache root (default grace per signal: [`DEFAULT_STOP_GRACE`]).
pub fn stop_engine(grace_ms: Option<u32>, cache_root: Option<&str>) -> Result<Option<u32>> {
    session::stop_engine(
        millis_or(grace_ms, DEFAULT_STOP_GRACE),
        cache_root.map(Path::new),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_only_when_absent() {
        assert_eq!(
            millis_or(None, DEFAULT_LOAD_TIMEOUT),
            Duration::from_secs(600)
        );
        assert_eq!(
            millis_or(Some(250), DEFAULT_LOAD_TIMEOUT),
            Duration::from_millis(250)
        );
        assert_eq!(millis_or(Some(0), DEFAULT_STOP_GRACE), Duration::ZERO);
    }

    #[test]
    fn bad_json_and_bad_inputs_name_the_argument() {
        let e = parse_json("{", "command").unwrap_err();
        assert!(e.message.starts_with("command: not valid JSON"), "{e}");
        let e = embed_inputs("[\"a\", 3]").unwrap_err();
        assert!(e.message.starts_with("input[1]"), "{e}");
    }

    #[test]
    fn a_command_needs_a_non_empty_type() {
        assert!(check_command(&serde_json::json!({"type": "ping"})).is_ok());
        for bad in [
            serde_json::json!({"type": ""}),
            serde_json::json!({"type": 3}),
            serde_json::json!({}),
            serde_json::json!(null),
            serde_json::json!("ping"),
        ] {
            let e = check_command(&bad).unwrap_err();
            assert!(e.message.starts_with("command.type:"), "{bad}: {e}");
        }
    }
}
