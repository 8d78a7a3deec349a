//! Engine tasks: `NativeEngine.prefillTask` sends one request for a batch of texts (the
//! privacy filter among them), `modalTask` one speech, transcription or image request;
//! `result()` hands back each prompt's deltas. Also [`Sent`], a one-shot request in flight
//! and the loop that drains it into a collector, shared with embeddings.

use std::future::poll_fn;
use std::sync::Arc;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use orchard_core::api::{self, SentTask};
use orchard_core::delta_view::batch_json;
use orchard_core::logprobs::LogprobContext;
use orchard_core::session::Session;
use orchard_core::tasks::TaskCollector;
use orchard_core::transport::{Batch, RequestSlot, Transport};
use orchard_core::wire::Delta;

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};

/// A one-shot request (embeddings, prefill and modal tasks) the engine is working on: one
/// final delta per prompt expected.
pub(crate) struct Sent {
    pub request_id: u64,
    slot: Arc<RequestSlot>,
    pub count: usize,
    transport: Arc<Transport>,
}

impl NativeEngine {
    /// Validate and send on the blocking pool; `send` returns the request id, its slot and
    /// how many prompts it carries.
    pub(crate) async fn send_task(
        &self,
        send: impl FnOnce(&Session) -> orchard_core::Result<SentTask> + Send + 'static,
    ) -> napi::Result<Sent> {
        let session = self.open_session()?;
        let (request_id, slot, count) = blocking(move || send(&session)).await?;
        Ok(Sent {
            request_id,
            slot,
            count,
            transport: self.session.transport.clone(),
        })
    }
}

impl Sent {
    /// Feed every delta to `add` until the request is finished. On a failure the engine is
    /// told to stop the request (when it is still running).
    pub(crate) async fn drain(
        &self,
        mut add: impl FnMut(&Delta) -> orchard_core::Result<()>,
    ) -> napi::Result<()> {
        loop {
            let batch = poll_fn(|cx| self.slot.poll_batch(cx.waker())).await;
            let step = guarded(|| match batch {
                Batch::Deltas(deltas) => deltas.iter().try_for_each(&mut add).map(|()| false),
                Batch::Finished => Ok(true),
                Batch::Failed(e) => Err(e),
            });
            match step {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    if !self.slot.is_done() {
                        let _ = self.transport.cancel(self.request_id);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// End the request now (`drain` fails with ABORTED); `cancel_request` goes to the engine
    /// in the background.
    pub(crate) fn cancel(&self) -> napi::Result<()> {
        if self.slot.is_done() {
            return Ok(());
        }
        guarded(|| self.transport.cancel(self.request_id))
    }
}

#[napi]
impl NativeEngine {
    /// Run a prefill task over texts with one request. `texts_json`: a JSON string or array
    /// of strings (the core validates it, and the task's input limits).
    #[napi]
    pub async fn prefill_task(
        &self,
        model: String,
        texts_json: String,
        task: String,
    ) -> napi::Result<NativeTask> {
        let sent = self
            .send_task(move |session| api::prefill_task(session, &model, &texts_json, &task))
            .await?;
        Ok(NativeTask { sent })
    }

    /// A modal call (`kind`: speech, transcribe, image_generate, image_edit) with one
    /// request. `input_json`: `{ text, options }` (the core validates it); `media`: the
    /// reference audio, the PCM samples or the image to edit.
    #[napi]
    pub async fn modal_task(
        &self,
        model: String,
        kind: String,
        input_json: String,
        media: Option<Buffer>,
    ) -> napi::Result<NativeTask> {
        let media = media.map(|b| b.to_vec());
        let sent = self
            .send_task(move |session| api::modal_task(session, &model, &kind, &input_json, media))
            .await?;
        Ok(NativeTask { sent })
    }
}

/// One task request (prefill, modal) in flight.
#[napi]
pub struct NativeTask {
    sent: Sent,
}

#[napi]
impl NativeTask {
    #[napi(getter)]
    pub fn request_id(&self) -> i64 {
        self.sent.request_id as i64
    }

    /// Wait for every text's final delta. One JSON array of deltas per text, in input order.
    /// Call once.
    #[napi]
    pub async fn result(&self) -> napi::Result<Vec<String>> {
        let mut collector = TaskCollector::new(self.sent.count);
        self.sent.drain(|d| collector.add(d)).await?;
        let prompts = guarded(move || collector.finish())?;
        Ok(prompts
            .iter()
            .map(|deltas| batch_json(deltas, &mut LogprobContext::new(None)))
            .collect())
    }

    #[napi]
    pub fn cancel(&self) -> napi::Result<()> {
        self.sent.cancel()
    }
}
