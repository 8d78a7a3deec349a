//! The process-wide session: one engine lease, one transport, the loaded models.
//!
//! Every `Engine` object in a process shares one session (like orchard-py's global
//! context). The engine sees one `client_register` per process and one `client_deregister`
//! when the last lease is released.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::chat::{build_batch_request, build_request, ChatOptions, Target};
use crate::engine::process::ExitWatch;
use crate::engine::{self, RunningEngine, StartOptions};
use crate::error::{Error, ErrorCode, Result};
use crate::format::ModelSpecs;
use crate::models::{canonical_id as canonical_id_of, Begin, Loads, ModelTable};
pub use crate::models::{LoadRequest, LoadedModel};
pub use crate::models::{LoadState, LoadStatus};
use crate::paths::Roots;
use crate::transport::{block_on_timeout, RequestSlot, Transport};
use crate::wire::EngineEvent;
use crate::wire::Request;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The engine reads a weights file's header to inspect it (the reference allows 30 s).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Session {
    pub engine: RunningEngine,
    pub transport: Arc<Transport>,
    exit_watch: Option<Arc<ExitWatch>>,
    specs: ModelSpecs,
    leases: Mutex<usize>,
    models: Mutex<ModelTable>,
    /// Load state of each model asked for on this connection.
    loads: Loads,
}

/// The live session of each cache root (one engine connection per engine).
static SESSIONS: Mutex<Vec<Arc<Session>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn status_of(reply: &Value) -> &str {
    reply.get("status").and_then(Value::as_str).unwrap_or("")
}

fn message_of(reply: &Value) -> String {
    reply
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_string()
}

fn register(transport: &Transport) -> Result<()> {
    let reply = transport.management(
        &json!({"type": "client_register", "client_pid": std::process::id()}),
        REGISTER_TIMEOUT,
    )?;
    match status_of(&reply) {
        "ok" | "accepted" => Ok(()),
        _ => Err(Error::new(
            ErrorCode::Engine,
            format!("engine refused client_register: {}", message_of(&reply)),
        )),
    }
}

/// Fail everything in flight as soon as the engine process exits (no polling: a pidfd or
/// kqueue wakes a thread that otherwise sleeps).
fn watch_engine(engine: &RunningEngine, transport: &Arc<Transport>) -> Option<Arc<ExitWatch>> {
    let watch = Arc::new(ExitWatch::new(engine.pid).ok()?);
    let (w, t) = (watch.clone(), Arc::downgrade(transport));
    let pid = engine.pid;
    let log = engine.cache_root.join(engine::LOG_FILE);
    std::thread::Builder::new()
        .name("orchard-engine-watch".into())
        .spawn(move || {
            if w.wait() {
                if let Some(t) = t.upgrade() {
                    t.fail(Error::new(
                        ErrorCode::EngineDied,
                        format!(
                            "the engine process (pid {pid}) exited; call Engine.start() to launch a new one (its log: {})",
                            log.display()
                        ),
                    ));
                }
            }
        })
        .ok()?;
    Some(watch)
}

/// How many engines that were shutting down (or stopped answering) one start replaces
/// before it gives up: under churn another process may launch and leave one in between.
const MAX_REPLACEMENTS: u32 = 8;

fn connect(opts: &StartOptions, specs_root: &Path) -> Result<Session> {
    let mut replaced = 0;
    loop {
        let (engine, lock) = engine::attach_or_launch(opts)?;
        let attempt = Transport::connect(engine.endpoints.clone(), CONNECT_TIMEOUT)
            .and_then(|t| register(&t).map(|_| t));
        match attempt {
            Ok(transport) => {
                drop(lock);
                let exit_watch = watch_engine(&engine, &transport);
                return Ok(Session {
                    engine,
                    transport,
                    exit_watch,
                    specs: ModelSpecs::new(specs_root),
                    leases: Mutex::new(0),
                    models: Mutex::new(ModelTable::default()),
                    loads: Loads::default(),
                });
            }
            // An engine that just accepted its last deregistration is shutting down:
            // replace it (still under the lock, so nobody attaches to it meanwhile).
            Err(e) if !engine.launched && replaced < MAX_REPLACEMENTS => {
                replaced += 1;
                if engine::read_pid_file(&engine.cache_root) == Some(engine.pid) {
                    engine::stop_pid(engine.pid, Duration::from_secs(2));
                    engine::remove_pid_file(&engine.cache_root);
                }
                if std::env::var_os("ORCHARD_DEBUG").is_some() {
                    eprintln!("orchard: replacing engine {} after: {e}", engine.pid);
                }
                drop(lock);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Take a lease on the engine, starting or attaching on the first one.
pub fn acquire(opts: &StartOptions, specs_root: &Path) -> Result<Arc<Session>> {
    let roots = Roots::resolve(opts.cache_root.as_deref())?;
    let mut sessions = lock(&SESSIONS);
    if let Some(i) = sessions
        .iter()
        .position(|s| s.engine.cache_root == roots.cache)
    {
        let s = &sessions[i];
        if !s.transport.is_closed() && engine::pid_alive(s.engine.pid) {
            *lock(&s.leases) += 1;
            return Ok(s.clone());
        }
        s.transport.close();
        sessions.swap_remove(i);
    }
    let opts = StartOptions {
        cache_root: Some(roots.cache),
        ..opts.clone()
    };
    let session = Arc::new(connect(&opts, specs_root)?);
    *lock(&session.leases) = 1;
    sessions.push(session.clone());
    Ok(session)
}

impl Session {
    /// Give back one lease; the last one deregisters and closes the connection. The engine
    /// itself is never signalled here.
    pub fn release(self: &Arc<Self>) {
        let last = {
            let mut leases = lock(&self.leases);
            *leases = leases.saturating_sub(1);
            *leases == 0
        };
        if !last {
            return;
        }
        lock(&SESSIONS).retain(|s| !Arc::ptr_eq(s, self));
        self.disconnect(REGISTER_TIMEOUT);
    }

    fn disconnect(&self, timeout: Duration) {
        if let Some(w) = &self.exit_watch {
            w.stop();
        }
        if !self.transport.is_closed() && engine::pid_alive(self.engine.pid) {
            let _ = self.transport.management(
                &json!({"type": "client_deregister", "client_pid": std::process::id()}),
                timeout,
            );
        }
        self.transport.close();
    }

    /// The loaded model known as `id`: any id it was requested under (any casing), its
    /// canonical id, or its path.
    pub fn model(&self, id: &str) -> Option<Arc<LoadedModel>> {
        lock(&self.models).get(id)
    }

    /// Activate a model in the engine (`load_model`, then the `model_loaded` event) under
    /// the canonical id the reference client uses: the repo id of a Hub model, the
    /// config's name or the directory name of a local one (see [`crate::models`]), what the
    /// engine's inspection says for a source without `config.json`. A model already loaded
    /// under another id (or at the same path) gains `req.requested_id` as an alias.
    /// Concurrent loads of one model share one activation (see [`Loads`]).
    pub fn load_model(&self, req: &LoadRequest, timeout: Duration) -> Result<Arc<LoadedModel>> {
        let id = req.requested_id.as_str();
        if let Some(m) = self.model(id) {
            return Ok(m);
        }
        match self.loads.begin(id, timeout) {
            Begin::Shared(outcome) => outcome.and_then(|()| self.loaded(id)),
            Begin::Lead(attempt) => {
                let loaded = self.load_as_lead(req, attempt, timeout);
                let outcome = self.loads.finish(
                    attempt,
                    id,
                    loaded.as_ref().map(|_| ()).map_err(Clone::clone),
                );
                outcome.and(loaded)
            }
        }
    }

    /// The status of the model known as `id` on this connection, if it was asked for. A
    /// model that answers to `id` is ready, whatever an attempt under that id last said.
    pub fn model_status(&self, id: &str) -> Option<LoadStatus> {
        match self.model(id) {
            Some(m) => Some(LoadStatus {
                state: LoadState::Ready,
                error: None,
                canonical_id: Some(m.canonical_id.clone()),
                model_path: Some(m.model_path.to_string_lossy().into_owned()),
            }),
            None => self.loads.status(id),
        }
    }

    fn load_as_lead(
        &self,
        req: &LoadRequest,
        attempt: u64,
        timeout: Duration,
    ) -> Result<Arc<LoadedModel>> {
        let id = req.requested_id.as_str();
        let dir = req.path();
        let config_path = dir.join("config.json");
        if !dir.exists() {
            return Err(Error::new(
                ErrorCode::ModelNotLoaded,
                format!(
                    "cannot resolve model '{id}': no config.json at {}; pass a model directory \
                     that has one, a weights file, or a Hugging Face id (org/name) through \
                     Engine.loadModel",
                    config_path.display()
                ),
            ));
        }
        let model_path = dir
            .canonicalize()
            .map_err(|e| Error::io(&format!("cannot resolve {}", dir.display()), e))?;
        let path_key = model_path.to_string_lossy().into_owned();
        if let Some(m) = self.model(&path_key) {
            lock(&self.models).insert(&m, &[id]);
            return Ok(m);
        }
        let (config, canonical_id) = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| Error::io(&format!("cannot read {}", config_path.display()), e))?;
            let config: Value = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(format!("{}: not valid JSON: {e}", config_path.display()))
            })?;
            let canonical = req
                .canonical_id
                .clone()
                .unwrap_or_else(|| canonical_id_of(&config, &model_path));
            (config, canonical)
        } else {
            self.inspect_source(id, &model_path)?
        };
        let family = self.specs.family_for_config(&config)?;
        let profile = self.specs.profile(&family)?;
        if !self.loads.identify(attempt, &canonical_id, &path_key) {
            return Err(Error::new(
                ErrorCode::Aborted,
                format!("loading '{id}' was cancelled"),
            ));
        }
        self.activate(id, &canonical_id, &model_path, timeout)?;
        let model = Arc::new(LoadedModel {
            requested_id: id.to_string(),
            canonical_id,
            model_path,
            config,
            profile,
            tokens: OnceLock::new(),
        });
        lock(&self.models).insert(&model, &[id, &model.canonical_id, &path_key]);
        Ok(model)
    }

    /// Cancel the activation of `id` (any id it was asked for or is known by): it fails at
    /// once with `Aborted` for every caller, and the engine is told (`cancel_model_load`, sent
    /// from a thread of its own). False when no activation of it was under way.
    pub fn cancel_load(self: &Arc<Self>, id: &str) -> bool {
        let Some((requested, canonical)) = self.loads.cancel(id) else {
            return false;
        };
        if let Some(c) = &canonical {
            // Wake the activation's wait for the engine's event now.
            self.transport.events().dispatch(EngineEvent {
                name: "model_load_failed".into(),
                payload: json!({"event": "model_load_failed", "model_id": c, "error": "Cancelled"}),
            });
        }
        let session = self.clone();
        let canonical = canonical.unwrap_or_else(|| requested.clone());
        let _ = std::thread::Builder::new()
            .name("orchard-cancel-load".into())
            .spawn(move || session.send_cancel_load(&requested, &canonical));
        true
    }

    fn send_cancel_load(&self, requested: &str, canonical: &str) {
        let _ = self.transport.management(
            &json!({"type": "cancel_model_load", "requested_id": requested, "canonical_id": canonical}),
            crate::transport::CANCEL_TIMEOUT,
        );
    }

    /// `load_model` in the engine, then wait for its `model_loaded` (or failure) event.
    fn activate(
        &self,
        id: &str,
        canonical_id: &str,
        model_path: &Path,
        timeout: Duration,
    ) -> Result<()> {
        let wanted = canonical_id.to_string();
        let activation = self.transport.events().wait_for(move |ev| {
            (ev.name == "model_loaded" || ev.name == "model_load_failed")
                && ev.model_id() == Some(wanted.as_str())
        });
        let reply = self.transport.management(
            &json!({
                "type": "load_model",
                "requested_id": id,
                "canonical_id": canonical_id,
                "model_path": model_path.to_string_lossy(),
                "wait_for_completion": false,
            }),
            REGISTER_TIMEOUT,
        )?;
        match status_of(&reply) {
            "ok" => Ok(()),
            "accepted" => match block_on_timeout(activation, timeout) {
                Some(Ok(ev)) if ev.name == "model_loaded" => Ok(()),
                Some(Ok(ev)) => {
                    let why = ev
                        .payload
                        .get("error")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("Model '{canonical_id}' failed to load."));
                    Err(Error::new(
                        ErrorCode::ModelNotLoaded,
                        format!("model '{id}' failed to load: {why}"),
                    ))
                }
                Some(Err(e)) => Err(e),
                None => {
                    self.send_cancel_load(id, canonical_id);
                    Err(Error::new(
                        ErrorCode::Timeout,
                        format!("model '{id}' did not finish loading within {timeout:?}"),
                    ))
                }
            },
            _ => Err(Error::new(
                ErrorCode::ModelNotLoaded,
                format!(
                    "engine rejected load_model for '{id}': {}",
                    message_of(&reply)
                ),
            )),
        }
    }

    /// A model source without a `config.json` (a weights file, or a directory of them): the
    /// engine inspects it (`inspect_model_source`) and says which format it is and under
    /// which canonical id it loads it. Returns (formatter config, canonical id).
    fn inspect_source(&self, id: &str, model_path: &Path) -> Result<(Value, String)> {
        let reply = self.transport.management(
            &json!({
                "type": "inspect_model_source",
                "requested_id": id,
                "model_path": model_path.to_string_lossy(),
            }),
            INSPECT_TIMEOUT,
        )?;
        let data = reply.pointer("/data/inspect_model_source");
        let config = data.and_then(|d| d.get("formatter_config"));
        match (status_of(&reply), config) {
            ("ok", Some(config)) if config.get("model_type").is_some_and(Value::is_string) => {
                let canonical_id = data
                    .and_then(|d| d.get("canonical_id"))
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                    .unwrap_or(id)
                    .to_string();
                Ok((config.clone(), canonical_id))
            }
            ("ok", _) => Err(Error::new(
                ErrorCode::ModelNotLoaded,
                format!(
                    "the engine inspected '{id}' but named no model_type for it; pass a model \
                     directory with a config.json instead"
                ),
            )),
            _ => Err(Error::new(
                ErrorCode::ModelNotLoaded,
                format!(
                    "model '{id}' has no config.json and the engine could not read it as a \
                     model source: {}",
                    message_of(&reply)
                ),
            )),
        }
    }

    /// The prompt payload `chat` would send, without sending it.
    pub fn render(
        &self,
        model_id: &str,
        messages: Vec<Value>,
        opts: &ChatOptions,
    ) -> Result<crate::wire::PromptPayload> {
        let model = self.loaded(model_id)?;
        crate::chat::build_prompt(&model.profile, &model.config, messages, opts)
    }

    pub fn loaded(&self, model_id: &str) -> Result<Arc<LoadedModel>> {
        self.model(model_id).ok_or_else(|| {
            Error::new(
                ErrorCode::ModelNotLoaded,
                format!("model '{model_id}' is not loaded; call `await engine.loadModel('{model_id}')` first"),
            )
        })
    }

    /// Render and send one chat request. `messages` is the JSON array of messages.
    pub fn chat(
        &self,
        model_id: &str,
        messages: Vec<Value>,
        opts: &ChatOptions,
    ) -> Result<(u64, Arc<RequestSlot>)> {
        self.send(model_id, |model, target| {
            build_request(&model.profile, &model.config, messages, opts, target)
        })
    }

    /// Several conversations in one request (`opts`: one for all, or one each).
    pub fn chat_batch(
        &self,
        model_id: &str,
        conversations: Vec<Vec<Value>>,
        opts: &[ChatOptions],
    ) -> Result<(u64, Arc<RequestSlot>)> {
        self.send(model_id, |model, target| {
            build_batch_request(&model.profile, &model.config, conversations, opts, target)
        })
    }

    /// Embed `texts` with one request (one prompt per text, `request_type: embedding`);
    /// collect the answer with [`crate::embed::EmbeddingCollector`].
    pub fn embed(&self, model_id: &str, texts: &[String]) -> Result<(u64, Arc<RequestSlot>)> {
        self.send(model_id, |_, target| {
            crate::embed::build_request(texts, target)
        })
    }

    /// Build a request for a loaded model under a fresh request id and submit it.
    pub fn send(
        &self,
        model_id: &str,
        build: impl FnOnce(&LoadedModel, &Target) -> Result<Request>,
    ) -> Result<(u64, Arc<RequestSlot>)> {
        let model = self.loaded(model_id)?;
        let request_id = self.transport.next_request_id();
        let model_path = model.model_path.to_string_lossy();
        let target = Target {
            request_id,
            model_id: &model.canonical_id,
            model_path: &model_path,
            response_channel_id: self.transport.channel_id(),
        };
        let request = build(&model, &target)?;
        let slot = self.transport.submit(request)?;
        Ok((request_id, slot))
    }
}

/// At process exit: deregister quickly and close, whatever leases are still open.
pub fn shutdown_for_exit() {
    let sessions = std::mem::take(&mut *lock(&SESSIONS));
    for s in sessions {
        s.disconnect(Duration::from_millis(500));
    }
}

/// Stop the engine of a cache root (default: the environment's; administrative: other
/// clients lose it too). This process's connection to it closes first.
pub fn stop_engine(grace: Duration, cache_root: Option<&Path>) -> Result<Option<u32>> {
    let roots = Roots::resolve(cache_root)?;
    let ours: Vec<_> = {
        let mut sessions = lock(&SESSIONS);
        let (ours, others) = std::mem::take(&mut *sessions)
            .into_iter()
            .partition(|s| s.engine.cache_root == roots.cache);
        *sessions = others;
        ours
    };
    for s in ours {
        s.disconnect(Duration::from_millis(500));
    }
    engine::stop_engine(grace, Duration::from_secs(30), &roots.cache)
}
