//! Requests outside chat as the binding calls them: JSON text in, a request in flight out;
//! then each batch of its deltas into a collector (the binding polls, [`SentTask::step`]
//! decides), and the collected task results as JSON text.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Poll, Waker};

use serde_json::json;

use crate::delta_view::batch_json;
use crate::error::{Error, Result};
use crate::logprobs::LogprobContext;
use crate::session::Session;
use crate::tasks::modal::{self, ModalKind};
use crate::tasks::prefill::{
    self, PRIVACY_FILTER_MAX_INPUT_BYTES, PRIVACY_FILTER_MODEL, PRIVACY_FILTER_TASK,
};
use crate::tasks::{Collector, TaskCollector};
use crate::transport::{Batch, RequestSlot, Transport};

use super::parse_json;

/// A one-shot request (embeddings, prefill and modal tasks) the engine is working on: one
/// final delta per prompt expected.
pub struct SentTask {
    pub request_id: u64,
    /// How many prompts it carries.
    pub count: usize,
    slot: Arc<RequestSlot>,
    transport: Arc<Transport>,
}

impl SentTask {
    fn new(session: &Session, (request_id, slot): (u64, Arc<RequestSlot>), count: usize) -> Self {
        SentTask {
            request_id,
            count,
            slot,
            transport: session.transport.clone(),
        }
    }

    /// The next batch of the request's slot; `waker` is woken when one arrives.
    pub fn poll_batch(&self, waker: &Waker) -> Poll<Batch> {
        self.slot.poll_batch(waker)
    }

    /// Feed one batch to `collector`: `Ok(true)` once the request has ended. On a failure
    /// (an error delta, a bad answer, a failed request, a panic) the engine is told to stop
    /// the request when it is still running, and the error is returned.
    pub fn step(&self, collector: &mut impl Collector, batch: Batch) -> Result<bool> {
        let outcome = catch_unwind(AssertUnwindSafe(|| match batch {
            Batch::Deltas(deltas) => deltas
                .iter()
                .try_for_each(|d| collector.add(d))
                .map(|()| false),
            Batch::Finished => Ok(true),
            Batch::Failed(e) => Err(e),
        }))
        .unwrap_or_else(|p| Err(Error::from_panic(p.as_ref())));
        if outcome.is_err() && !self.slot.is_done() {
            let _ = self.transport.cancel(self.request_id);
        }
        outcome
    }

    /// The streamed form of [`SentTask::step`]: the batch's deltas as one JSON array (each
    /// also checked and kept by `collector`, so an engine error delta fails here), or `None`
    /// once the request has ended with every prompt's final delta.
    pub fn stream_step(
        &self,
        collector: &mut TaskCollector,
        batch: Batch,
    ) -> Result<Option<String>> {
        let json = match &batch {
            Batch::Deltas(deltas) => Some(batch_json(deltas, &mut LogprobContext::new(None))),
            _ => None,
        };
        if self.step(collector, batch)? {
            std::mem::replace(collector, TaskCollector::new(0)).finish()?;
        }
        Ok(json)
    }

    /// End the request now (the waiting side fails with `Aborted`); `cancel_request` goes to
    /// the engine in the background. Nothing to do once the request is done.
    pub fn cancel(&self) -> Result<()> {
        if self.slot.is_done() {
            return Ok(());
        }
        self.transport.cancel(self.request_id)
    }
}

/// Embed texts (`inputs_json`: a JSON string or array of strings) with one request.
pub fn embed(session: &Session, model: &str, inputs_json: &str) -> Result<SentTask> {
    let texts = super::embed_inputs(inputs_json)?;
    let sent = session.embed(model, &texts)?;
    Ok(SentTask::new(session, sent, texts.len()))
}

/// Run prefill task `task` over texts (`texts_json`: a JSON string or array of strings; the
/// task's input limits are checked) with one request.
pub fn prefill_task(
    session: &Session,
    model: &str,
    texts_json: &str,
    task: &str,
) -> Result<SentTask> {
    let texts = prefill::parse_texts(parse_json(texts_json, "texts")?, task)?;
    let sent = session.send(model, |_, target| {
        prefill::build_request(&texts, task, target)
    })?;
    Ok(SentTask::new(session, sent, texts.len()))
}

/// A modal call (`kind`: speech, transcribe, image_generate, image_edit); `input_json` is
/// `{ text, options }`, `media` the reference audio, PCM samples or image to edit.
pub fn modal_task(
    session: &Session,
    model: &str,
    kind: &str,
    input_json: &str,
    media: Option<Vec<u8>>,
) -> Result<SentTask> {
    let kind = ModalKind::parse(kind)?;
    let input = parse_json(input_json, "input")?;
    let sent = session.send(model, |_, target| {
        modal::build_request(kind, &input, media, target)
    })?;
    Ok(SentTask::new(session, sent, 1))
}

/// The result of a task request once every prompt has its final delta: one JSON array of
/// deltas per prompt, in input order.
pub fn task_result_json(collector: TaskCollector) -> Result<Vec<String>> {
    Ok(collector
        .finish()?
        .iter()
        .map(|deltas| batch_json(deltas, &mut LogprobContext::new(None)))
        .collect())
}

/// The tasks' fixed names and input limits, as JSON text: `{privacyFilterModel,
/// privacyFilterTask, privacyFilterMaxInputBytes}`.
pub fn task_limits_json() -> String {
    json!({
        "privacyFilterModel": PRIVACY_FILTER_MODEL,
        "privacyFilterTask": PRIVACY_FILTER_TASK,
        "privacyFilterMaxInputBytes": PRIVACY_FILTER_MAX_INPUT_BYTES,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_limits_come_from_the_prefill_constants() {
        let v: serde_json::Value = serde_json::from_str(&task_limits_json()).unwrap();
        assert_eq!(v["privacyFilterModel"], PRIVACY_FILTER_MODEL);
        assert_eq!(v["privacyFilterTask"], PRIVACY_FILTER_TASK);
        assert_eq!(v["privacyFilterMaxInputBytes"], 16 * 1024);
    }
}
