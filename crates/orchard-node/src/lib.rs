//! napi-rs binding of orchard-core. Thin by design: argument conversion, error codes and
//! handles. Errors reach JavaScript as `[ORCHARD:<CODE>] message`, which the TypeScript
//! layer turns into typed error classes. No Rust panic crosses into Node: every export runs
//! inside `catch_unwind`.

#![deny(clippy::all)]

mod alloc;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

use napi::bindgen_prelude::{BigInt, Buffer};
use napi::{Env, Status};
use napi_derive::napi;
use orchard_core::chat::ChatOptions;
use orchard_core::engine::StartOptions;
use orchard_core::format::ModelSpecs;
use orchard_core::session::{self, Session};
use orchard_core::transport::{Batch, RequestSlot, Transport};
use orchard_core::wire::{self, Incoming};

mod delta;
mod embed;
pub mod models;
mod tasks;
use orchard_core::{Error, ErrorCode};
use serde_json::Value;

fn to_napi(e: Error) -> napi::Error {
    napi::Error::new(
        Status::GenericFailure,
        format!("[ORCHARD:{}] {}", e.code.as_str(), e.message),
    )
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> Error {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    Error::new(
        ErrorCode::Internal,
        format!("internal error in orchard's native core (please report it): {what}"),
    )
}

/// Run `f`, turning a core error or a panic into a JavaScript error.
fn guarded<T>(f: impl FnOnce() -> orchard_core::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_napi),
        Err(p) => Err(to_napi(panic_message(p))),
    }
}

/// Run blocking core work on the blocking pool (never on the JS thread).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> orchard_core::Result<T> + Send + 'static,
) -> napi::Result<T> {
    match tokio::task::spawn_blocking(move || guarded(f)).await {
        Ok(r) => r,
        Err(e) => Err(to_napi(Error::new(
            ErrorCode::Internal,
            format!("native task failed: {e}"),
        ))),
    }
}

fn parse_json(text: &str, what: &str) -> orchard_core::Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::invalid(format!("{what}: not valid JSON: {e}")))
}

/// The messages array and validated options of a chat call, from their JSON text.
fn parse_chat_input(
    messages_json: &str,
    options_json: &str,
) -> orchard_core::Result<(Vec<Value>, ChatOptions)> {
    let messages = match parse_json(messages_json, "messages")? {
        Value::Array(m) => m,
        _ => return Err(Error::invalid("messages: expected an array of messages")),
    };
    let opts = ChatOptions::parse(&parse_json(options_json, "options")?)?;
    Ok((messages, opts))
}

/// A submitted request: its id, its delta slot and the decoder for log-probabilities.
type SentChat = (
    u64,
    Arc<RequestSlot>,
    Option<Arc<orchard_core::tokenizer::TokenDecoder>>,
);

/// The model's token decoder when any of `opts` asks for log-probabilities.
fn wants_logprobs<'a>(
    session: &Session,
    model: &str,
    opts: impl IntoIterator<Item = &'a ChatOptions>,
) -> orchard_core::Result<Option<Arc<orchard_core::tokenizer::TokenDecoder>>> {
    if opts.into_iter().any(|o| o.top_logprobs > 0) {
        Ok(session.loaded(model)?.token_decoder())
    } else {
        Ok(None)
    }
}

/// Node environments (the main thread and workers) that loaded the addon and are alive.
static LIVE_ENVS: AtomicUsize = AtomicUsize::new(0);

/// Register this environment's cleanup. When the last environment that loaded the addon
/// goes away (process exit), deregister from the engine, close the sockets and join the
/// listener. Called once per environment by the TypeScript layer when it loads.
#[napi]
pub fn install_exit_hook(env: Env) -> napi::Result<()> {
    LIVE_ENVS.fetch_add(1, Ordering::SeqCst);
    env.add_env_cleanup_hook((), |_| {
        if LIVE_ENVS.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = catch_unwind(session::shutdown_for_exit);
        }
    })
    .map(|_| ())
}

#[napi(object)]
pub struct NativeStartOptions {
    pub binary: Option<String>,
    pub home: Option<String>,
    pub cache_root: Option<String>,
    pub startup_timeout_ms: Option<u32>,
    pub lock_timeout_ms: Option<u32>,
    pub model_specs_dir: String,
}

#[napi(object)]
pub struct NativeModelInfo {
    pub requested_id: String,
    pub canonical_id: String,
    pub model_path: String,
    pub family: String,
}

/// A lease on the engine. Several in one process share one connection.
#[napi]
pub struct NativeEngine {
    session: Arc<Session>,
    closed: AtomicBool,
}

#[napi]
impl NativeEngine {
    #[napi(factory)]
    pub async fn start(options: NativeStartOptions) -> napi::Result<NativeEngine> {
        let mut opts = StartOptions {
            binary: options.binary.map(PathBuf::from),
            home: options.home.map(PathBuf::from),
            cache_root: options.cache_root.map(PathBuf::from),
            ..StartOptions::default()
        };
        if let Some(ms) = options.startup_timeout_ms {
            opts.startup_timeout = Duration::from_millis(u64::from(ms));
        }
        if let Some(ms) = options.lock_timeout_ms {
            opts.lock_timeout = Duration::from_millis(u64::from(ms));
        }
        let specs = PathBuf::from(options.model_specs_dir);
        let session = blocking(move || session::acquire(&opts, &specs)).await?;
        Ok(NativeEngine {
            session,
            closed: AtomicBool::new(false),
        })
    }

    #[napi(getter)]
    pub fn pid(&self) -> u32 {
        self.session.engine.pid
    }

    #[napi(getter)]
    pub fn launched(&self) -> bool {
        self.session.engine.launched
    }

    #[napi(getter)]
    pub fn cache_root(&self) -> String {
        self.session
            .engine
            .cache_root
            .to_string_lossy()
            .into_owned()
    }

    #[napi(getter)]
    pub fn channel_id(&self) -> BigInt {
        BigInt::from(self.session.transport.channel_id())
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Release this lease. Idempotent; never stops the engine.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let session = self.session.clone();
        blocking(move || {
            session.release();
            Ok(())
        })
        .await
    }

    fn ensure_open(&self) -> napi::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(to_napi(Error::new(
                ErrorCode::EngineDied,
                "this Engine was closed; call Engine.start() for a new one",
            )));
        }
        Ok(())
    }

    #[napi]
    pub async fn load_model(
        &self,
        id: String,
        timeout_ms: Option<u32>,
        model_path: Option<String>,
        canonical_id: Option<String>,
    ) -> napi::Result<NativeModelInfo> {
        self.ensure_open()?;
        let session = self.session.clone();
        let timeout = Duration::from_millis(u64::from(timeout_ms.unwrap_or(600_000)));
        let req = session::LoadRequest {
            requested_id: id,
            model_path: model_path.map(PathBuf::from),
            canonical_id,
        };
        let m = blocking(move || session.load_model(&req, timeout)).await?;
        Ok(NativeModelInfo {
            requested_id: m.requested_id.clone(),
            canonical_id: m.canonical_id.clone(),
            model_path: m.model_path.to_string_lossy().into_owned(),
            family: m.profile.family().to_string(),
        })
    }

    /// Send one management command (a JSON object with a `type`) and return the engine's
    /// reply as JSON text. Low level: the typed methods cover the protocol's commands.
    #[napi]
    pub async fn management_command(
        &self,
        command_json: String,
        timeout_ms: Option<u32>,
    ) -> napi::Result<String> {
        self.ensure_open()?;
        let session = self.session.clone();
        let timeout = Duration::from_millis(u64::from(timeout_ms.unwrap_or(30_000)));
        blocking(move || {
            let command = parse_json(&command_json, "command")?;
            if !command.get("type").is_some_and(Value::is_string) {
                return Err(Error::invalid(
                    "command.type: expected the command name as a string, e.g. {\"type\": \"ping\"}",
                ));
            }
            Ok(session.transport.management(&command, timeout)?.to_string())
        })
        .await
    }

    /// What `chat` would send, without sending: JSON `{prompt, layout, sampling, ...}`.
    #[napi]
    pub async fn render_prompt(
        &self,
        model: String,
        messages_json: String,
        options_json: String,
    ) -> napi::Result<String> {
        self.ensure_open()?;
        let session = self.session.clone();
        blocking(move || {
            let (messages, opts) = parse_chat_input(&messages_json, &options_json)?;
            Ok(rendered_json(&session.render(&model, messages, &opts)?))
        })
        .await
    }

    /// Render and send a chat request; `messages_json` is a JSON array, `options_json` a
    /// JSON object of chat options (or "null").
    #[napi]
    pub async fn chat(
        &self,
        model: String,
        messages_json: String,
        options_json: String,
    ) -> napi::Result<NativeChat> {
        self.ensure_open()?;
        let session = self.session.clone();
        let sent = blocking(move || {
            let (messages, opts) = parse_chat_input(&messages_json, &options_json)?;
            let decoder = wants_logprobs(&session, &model, [&opts])?;
            let (id, slot) = session.chat(&model, messages, &opts)?;
            Ok((id, slot, decoder))
        })
        .await?;
        Ok(self.stream(sent))
    }

    fn stream(&self, (request_id, slot, decoder): SentChat) -> NativeChat {
        NativeChat {
            request_id,
            slot,
            transport: self.session.transport.clone(),
            logprobs: Arc::new(Mutex::new(delta::LogprobContext::new(decoder))),
        }
    }

    /// Send several conversations as one request. `options_json` is one options object or
    /// an array with one per conversation.
    #[napi]
    pub async fn chat_batch(
        &self,
        model: String,
        conversations_json: String,
        options_json: String,
    ) -> napi::Result<NativeChat> {
        self.ensure_open()?;
        let session = self.session.clone();
        let sent = blocking(move || {
            let conversations = match parse_json(&conversations_json, "conversations")? {
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| match c {
                        Value::Array(m) if !m.is_empty() => Ok(m),
                        _ => Err(Error::invalid(format!(
                            "conversations[{i}]: expected a non-empty array of messages"
                        ))),
                    })
                    .collect::<orchard_core::Result<Vec<_>>>()?,
                _ => {
                    return Err(Error::invalid(
                        "conversations: expected an array of conversations",
                    ))
                }
            };
            let opts = orchard_core::chat::parse_batch_options(
                &parse_json(&options_json, "options")?,
                conversations.len(),
            )?;
            let decoder = wants_logprobs(&session, &model, &opts)?;
            let (id, slot) = session.chat_batch(&model, conversations, &opts)?;
            Ok((id, slot, decoder))
        })
        .await?;
        Ok(self.stream(sent))
    }
}

/// What `chat` would send for one conversation: the rendered prompt and the sampling values
/// resolved against the model's profile, as JSON text.
fn rendered_json(p: &orchard_core::wire::PromptPayload) -> String {
    let layout: Vec<Value> = p
        .effective_layout()
        .iter()
        .map(|s| serde_json::json!({"type": s.kind, "length": s.length}))
        .collect();
    serde_json::json!({
        "prompt": String::from_utf8_lossy(&p.text),
        "layout": layout,
        // The renderer sets an effort exactly when reasoning is on.
        "reasoning": p.reasoning_effort.is_some(),
        "reasoningEffort": p.reasoning_effort,
        "sampling": {
            "maxTokens": p.max_generated_tokens,
            "temperature": p.temperature,
            "topP": p.top_p,
            "topK": p.top_k,
            "minP": p.min_p,
            "seed": p.rng_seed,
            "deterministic": p.deterministic,
            "stop": p.stop_sequences,
            "n": p.final_candidates,
            "bestOf": p.best_of,
            "topLogprobs": p.top_logprobs,
            "frequencyPenalty": p.frequency_penalty,
            "presencePenalty": p.presence_penalty,
            "repetitionPenalty": p.repetition_penalty,
            "repetitionContextSize": p.repetition_context_size,
            "logitBias": p.logit_bias,
            "prefixCache": p.prefix_cache,
        },
    })
    .to_string()
}

/// One in-flight request: pull batches of deltas until it ends.
#[napi]
pub struct NativeChat {
    request_id: u64,
    slot: Arc<RequestSlot>,
    transport: Arc<Transport>,
    logprobs: Arc<Mutex<delta::LogprobContext>>,
}

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<Option<String>> + Send>;

/// A `next()` promise waiting for deltas; the slot wakes it from the listener thread.
struct PendingNext {
    slot: Arc<RequestSlot>,
    logprobs: Arc<Mutex<delta::LogprobContext>>,
    deferred: Mutex<Option<napi::JsDeferred<Option<String>, Resolver>>>,
}

impl PendingNext {
    /// Resolve the promise once (later calls do nothing).
    fn settle(&self, resolver: Resolver) {
        let deferred = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(d) = deferred {
            d.resolve(resolver);
        }
    }
}

impl Wake for PendingNext {
    fn wake(self: Arc<Self>) {
        let (slot, logprobs) = (self.slot.clone(), self.logprobs.clone());
        // Runs on the JavaScript thread: take everything queued by then.
        self.settle(Box::new(move |_| {
            match slot.poll_batch(Waker::noop()) {
                Poll::Ready(batch) => batch_result(batch, &logprobs),
                // Already taken by another call: an empty batch, and the caller asks again.
                Poll::Pending => Ok(Some("[]".to_string())),
            }
        }));
    }
}

fn batch_result(
    batch: Batch,
    logprobs: &Mutex<delta::LogprobContext>,
) -> napi::Result<Option<String>> {
    guarded(|| match batch {
        Batch::Deltas(d) => {
            let mut ctx = logprobs.lock().unwrap_or_else(|p| p.into_inner());
            Ok(Some(delta::batch_json(&d, &mut ctx)))
        }
        Batch::Finished => Ok(None),
        Batch::Failed(e) => Err(e),
    })
}

#[napi]
impl NativeChat {
    #[napi(getter)]
    pub fn request_id(&self) -> i64 {
        self.request_id as i64
    }

    /// Every delta queued so far (waiting for at least one) as a JSON array of `ChatDelta`
    /// objects, or null once the request ended.
    ///
    /// No runtime thread in between: the SUB listener's wake-up resolves the promise straight
    /// onto the JavaScript thread, which then takes and encodes the whole backlog.
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn next<'env>(&self, env: &'env Env) -> napi::Result<napi::bindgen_prelude::Object<'env>> {
        let (deferred, promise) = env.create_deferred::<Option<String>, Resolver>()?;
        let pending = Arc::new(PendingNext {
            slot: self.slot.clone(),
            logprobs: self.logprobs.clone(),
            deferred: Mutex::new(Some(deferred)),
        });
        if let Poll::Ready(batch) = self.slot.poll_batch(&Waker::from(pending.clone())) {
            let result = batch_result(batch, &self.logprobs);
            pending.settle(Box::new(move |_| result));
        }
        Ok(promise)
    }

    /// End this request's stream now; `cancel_request` goes to the engine in the background.
    #[napi]
    pub fn cancel(&self) -> napi::Result<()> {
        if self.slot.is_done() {
            return Ok(());
        }
        guarded(|| self.transport.cancel(self.request_id))
    }
}

/// The current cache root and the engine running for it, if any.
#[napi(object)]
pub struct NativeEngineStatus {
    pub cache_root: String,
    /// The pid in `engine.pid` when that process is alive and really the engine binary.
    pub pid: Option<u32>,
}

/// Which engine runs for a cache root (default: the environment's; the attach rules,
/// without attaching).
#[napi]
pub fn engine_status(cache_root: Option<String>) -> napi::Result<NativeEngineStatus> {
    guarded(|| {
        let root =
            orchard_core::paths::Roots::resolve(cache_root.map(PathBuf::from).as_deref())?.cache;
        let pid = orchard_core::engine::read_pid_file(&root)
            .filter(|p| orchard_core::engine::pid_is_engine(*p));
        Ok(NativeEngineStatus {
            cache_root: root.to_string_lossy().into_owned(),
            pid,
        })
    })
}

/// Stop the engine of a cache root (default: the environment's; SIGINT, SIGTERM, SIGKILL
/// with identity checks).
#[napi]
pub async fn stop_engine(
    grace_ms: Option<u32>,
    cache_root: Option<String>,
) -> napi::Result<Option<u32>> {
    let grace = Duration::from_millis(u64::from(grace_ms.unwrap_or(5_000)));
    let root = cache_root.map(PathBuf::from);
    blocking(move || session::stop_engine(grace, root.as_deref())).await
}

/// Encode a request frame from the reference serializer's vocabulary (JSON text with byte
/// fields as base64).
#[napi]
pub fn encode_request(input_json: String) -> napi::Result<Buffer> {
    guarded(|| {
        let input = parse_json(&input_json, "input")?;
        let req = wire::vocab::parse_request(&input)?;
        Ok(Buffer::from(wire::encode_request(&req)?))
    })
}

/// Decode a request frame into the reference vocabulary, as JSON text (the inverse of
/// `encode_request`). Damaged frames are PROTOCOL errors.
#[napi]
pub fn decode_request(frame: Buffer) -> napi::Result<String> {
    guarded(|| {
        let req = wire::decode_request(&frame)?;
        Ok(wire::vocab::to_vocab(&req).to_string())
    })
}

#[napi(object)]
pub struct NativeIncoming {
    pub kind: String,
    pub channel: Option<BigInt>,
    /// The delta as `ChatDelta` JSON text.
    pub delta_json: Option<String>,
    pub event_name: Option<String>,
    pub payload_json: Option<String>,
}

/// Decode one SUB message (`resp:<hex>:<json>` or `__PIE_EVENT__:<name>\0<json>`).
#[napi]
pub fn decode_message(message: Buffer) -> napi::Result<NativeIncoming> {
    guarded(|| {
        Ok(match wire::decode_message(&message)? {
            Incoming::Delta { channel, delta } => NativeIncoming {
                kind: "delta".into(),
                channel: Some(BigInt::from(channel)),
                delta_json: Some(delta::delta_json(&delta)),
                event_name: None,
                payload_json: None,
            },
            Incoming::Event(ev) => NativeIncoming {
                kind: "event".into(),
                channel: None,
                delta_json: None,
                event_name: Some(ev.name),
                payload_json: Some(ev.payload.to_string()),
            },
        })
    })
}

#[napi(object)]
pub struct NativeSegment {
    #[napi(js_name = "type")]
    pub kind: String,
    pub length: f64,
}

#[napi(object)]
pub struct NativeRendered {
    pub prompt: String,
    pub layout: Vec<NativeSegment>,
    pub reasoning: bool,
}

/// The frame `client.chat` would send for one conversation, without an engine: render with
/// the profile `config` selects, apply the options, encode. (For tools and benchmarks.)
#[napi]
pub fn build_chat_frame(
    config_json: String,
    messages_json: String,
    options_json: String,
    model_specs_dir: String,
) -> napi::Result<Buffer> {
    guarded(|| {
        let config = parse_json(&config_json, "config")?;
        let (messages, opts) = parse_chat_input(&messages_json, &options_json)?;
        let specs = specs_for(model_specs_dir);
        let profile = specs.profile_for_config(&config)?;
        let req = orchard_core::chat::build_request(
            &profile,
            &config,
            messages,
            &opts,
            &orchard_core::chat::Target {
                request_id: 1,
                model_id: "model",
                model_path: "",
                response_channel_id: 1,
            },
        )?;
        Ok(Buffer::from(wire::encode_request(&req)?))
    })
}

/// One profile cache per model-specs folder, kept for the life of the process.
fn specs_for(dir: String) -> Arc<ModelSpecs> {
    static CACHE: Mutex<Vec<(String, Arc<ModelSpecs>)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = cache.iter().find(|(d, _)| *d == dir) {
        return s.clone();
    }
    let specs = Arc::new(ModelSpecs::new(dir.clone()));
    cache.push((dir, specs.clone()));
    specs
}

/// Render a prompt without an engine. `input_json`: `{config, messages, tools, reasoning, task}`.
#[napi]
pub fn render_chat(input_json: String, model_specs_dir: String) -> napi::Result<NativeRendered> {
    guarded(|| {
        let input = parse_json(&input_json, "input")?;
        let r = orchard_core::format::render_case(&specs_for(model_specs_dir), &input)?;
        Ok(NativeRendered {
            prompt: r.prompt,
            layout: r
                .layout
                .iter()
                .map(|s| NativeSegment {
                    kind: serde_json::to_value(s.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    length: s.length as f64,
                })
                .collect(),
            reasoning: r.reasoning,
        })
    })
}
