//! Engine tasks: `NativeEngine.prefillTask` sends one request for a batch of texts (the
//! privacy filter among them), `modalTask` one speech, transcription or image request;
//! `result()` hands back each prompt's deltas. Also [`Sent`], a one-shot request in flight
//! polled here and fed to a core collector (the core decides each step), shared with
//! embeddings.

use std::future::poll_fn;
use std::sync::Mutex;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use orchard_core::api::{self, SentTask};
use orchard_core::session::Session;
use orchard_core::tasks::{Collector, TaskCollector};

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};

/// A one-shot request (embeddings, prefill and modal tasks) the engine is working on.
pub(crate) struct Sent(SentTask);

impl NativeEngine {
    /// Validate and send on the blocking pool.
    pub(crate) async fn send_task(
        &self,
        send: impl FnOnce(&Session) -> orchard_core::Result<SentTask> + Send + 'static,
    ) -> napi::Result<Sent> {
        let session = self.open_session()?;
        Ok(Sent(blocking(move || send(&session)).await?))
    }
}

impl Sent {
    pub(crate) fn request_id(&self) -> i64 {
        self.0.request_id as i64
    }

    pub(crate) fn count(&self) -> usize {
        self.0.count
    }

    /// Wait for each batch of the request and hand it to the core's step until the request
    /// has ended (or failed).
    pub(crate) async fn drain(&self, collector: &mut impl Collector) -> napi::Result<()> {
        loop {
            let batch = poll_fn(|cx| self.0.poll_batch(cx.waker())).await;
            if guarded(|| self.0.step(collector, batch))? {
                return Ok(());
            }
        }
    }

    /// End the request now (`drain` fails with ABORTED).
    pub(crate) fn cancel(&self) -> napi::Result<()> {
        guarded(|| self.0.cancel())
    }
}

/// The tasks' fixed names and input limits, as JSON text: `{privacyFilterModel,
/// privacyFilterTask, privacyFilterMaxInputBytes}`.
#[napi]
pub fn task_limits() -> napi::Result<String> {
    guarded(|| Ok(api::task_limits_json()))
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
        Ok(NativeTask::new(sent))
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
        Ok(NativeTask::new(sent))
    }
}

/// One task request (prefill, modal) in flight.
#[napi]
pub struct NativeTask {
    sent: Sent,
    /// What `next()` has taken so far (the core checks each batch against it).
    streamed: Mutex<TaskCollector>,
}

impl NativeTask {
    fn new(sent: Sent) -> Self {
        let streamed = Mutex::new(TaskCollector::new(sent.count()));
        NativeTask { sent, streamed }
    }
}

#[napi]
impl NativeTask {
    #[napi(getter)]
    pub fn request_id(&self) -> i64 {
        self.sent.request_id()
    }

    /// Wait for every text's final delta. One JSON array of deltas per text, in input order.
    /// Call once.
    #[napi]
    pub async fn result(&self) -> napi::Result<Vec<String>> {
        let mut collector = TaskCollector::new(self.sent.count());
        self.sent.drain(&mut collector).await?;
        guarded(move || api::task_result_json(collector))
    }

    /// Every delta queued so far (waiting for at least one) as a JSON array, or null once the
    /// request has ended. The streamed alternative to `result()`: use one or the other.
    #[napi(ts_return_type = "Promise<string | null>")]
    pub async fn next(&self) -> napi::Result<Option<String>> {
        let batch = poll_fn(|cx| self.sent.0.poll_batch(cx.waker())).await;
        let mut streamed = self.streamed.lock().unwrap_or_else(|p| p.into_inner());
        guarded(|| self.sent.0.stream_step(&mut streamed, batch))
    }

    #[napi]
    pub fn cancel(&self) -> napi::Result<()> {
        self.sent.cancel()
    }
}
