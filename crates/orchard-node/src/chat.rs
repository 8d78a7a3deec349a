//! Chat: `NativeEngine.chat`/`chatBatch`/`renderPrompt` and `NativeChat`, the handle that
//! pulls a request's deltas as JSON batches.

use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};

use napi::Env;
use napi_derive::napi;
use orchard_core::api::{self, SentChat};
use orchard_core::delta_view;
use orchard_core::logprobs::LogprobContext;
use orchard_core::transport::{Batch, RequestSlot, Transport};

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};

#[napi]
impl NativeEngine {
    /// What `chat` would send, without sending: JSON `{prompt, layout, sampling, ...}`.
    #[napi]
    pub async fn render_prompt(
        &self,
        model: String,
        messages_json: String,
        options_json: String,
    ) -> napi::Result<String> {
        let session = self.open_session()?;
        blocking(move || api::render_prompt(&session, &model, &messages_json, &options_json)).await
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
        let session = self.open_session()?;
        let sent =
            blocking(move || api::chat(&session, &model, &messages_json, &options_json)).await?;
        Ok(self.stream(sent))
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
        let session = self.open_session()?;
        let sent =
            blocking(move || api::chat_batch(&session, &model, &conversations_json, &options_json))
                .await?;
        Ok(self.stream(sent))
    }

    fn stream(&self, sent: SentChat) -> NativeChat {
        NativeChat {
            request_id: sent.request_id,
            slot: sent.slot,
            transport: self.session.transport.clone(),
            logprobs: Arc::new(Mutex::new(sent.logprobs)),
        }
    }
}

/// One in-flight request: pull batches of deltas until it ends.
#[napi]
pub struct NativeChat {
    request_id: u64,
    slot: Arc<RequestSlot>,
    transport: Arc<Transport>,
    logprobs: Arc<Mutex<LogprobContext>>,
}

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<Option<String>> + Send>;

/// A `next()` promise waiting for deltas; the slot wakes it from the listener thread.
struct PendingNext {
    slot: Arc<RequestSlot>,
    logprobs: Arc<Mutex<LogprobContext>>,
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
                Poll::Pending => Ok(Some(delta_view::EMPTY_BATCH_JSON.to_string())),
            }
        }));
    }
}

fn batch_result(batch: Batch, logprobs: &Mutex<LogprobContext>) -> napi::Result<Option<String>> {
    guarded(|| api::next_batch_json(batch, logprobs))
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

/// The option ranges and reasoning efforts, as JSON text: `{ranges: [{option, responsesName,
/// integer, chat: {min, max, minExclusive, off}, responses}], reasoningEfforts,
/// defaultReasoningEffort}`. One table in the core, read by chat and Responses alike.
#[napi]
pub fn chat_option_limits() -> napi::Result<String> {
    guarded(|| Ok(orchard_core::chat::ranges::limits_json()))
}

/// Check one numeric field of a Responses request against its row of the same table
/// (`name` as the caller wrote it, `value_json` its JSON text); throws naming the field.
#[napi]
pub fn check_responses_option(name: String, value_json: String) -> napi::Result<()> {
    guarded(|| orchard_core::chat::ranges::check_responses(&name, &value_json))
}
