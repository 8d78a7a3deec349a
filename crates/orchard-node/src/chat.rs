//! Chat: `NativeEngine.chat`/`chatBatch`/`renderPrompt` and `NativeChat`, the handle that
//! pulls a request's deltas as JSON batches.

use std::sync::{Arc, Mutex};

use napi::Env;
use napi_derive::napi;
use orchard_core::api::{self, SentChat};
use orchard_core::transport::{RequestSlot, Transport};

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};
use crate::wakeup::{Convert, Wakeup, WakeupCell};

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
        let logprobs = Mutex::new(sent.logprobs);
        NativeChat {
            request_id: sent.request_id,
            slot: sent.slot,
            transport: self.session.transport.clone(),
            wakeup: self.wakeup.clone(),
            convert: Arc::new(move |batch| guarded(|| api::next_batch_json(batch, &logprobs))),
        }
    }
}

/// One in-flight request: pull batches of deltas until it ends.
#[napi]
pub struct NativeChat {
    request_id: u64,
    slot: Arc<RequestSlot>,
    transport: Arc<Transport>,
    wakeup: WakeupCell,
    convert: Arc<Convert>,
}

#[napi]
impl NativeChat {
    #[napi(getter)]
    pub fn request_id(&self) -> i64 {
        self.request_id as i64
    }

    /// Every delta queued so far (waiting for at least one) as a JSON array of `ChatDelta`
    /// objects, or null once the request ended. See `wakeup.rs` for how a waiting call is
    /// woken.
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn next<'env>(&self, env: &'env Env) -> napi::Result<napi::bindgen_prelude::Object<'env>> {
        Wakeup::of(&self.wakeup, env)?.next(env, &self.slot, self.convert.clone())
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
