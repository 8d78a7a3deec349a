//! Requests outside chat as the binding calls them: JSON text in, a request in flight out.

use std::sync::Arc;

use crate::error::Result;
use crate::session::Session;
use crate::tasks::modal::{self, ModalKind};
use crate::tasks::prefill;
use crate::transport::RequestSlot;

use super::parse_json;

/// A one-shot request the engine is working on: its id, its slot, how many prompts it carries.
pub type SentTask = (u64, Arc<RequestSlot>, usize);

/// Embed texts (`inputs_json`: a JSON string or array of strings) with one request.
pub fn embed(session: &Session, model: &str, inputs_json: &str) -> Result<SentTask> {
    let texts = super::embed_inputs(inputs_json)?;
    let (id, slot) = session.embed(model, &texts)?;
    Ok((id, slot, texts.len()))
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
    let (id, slot) = session.send(model, |_, target| {
        prefill::build_request(&texts, task, target)
    })?;
    Ok((id, slot, texts.len()))
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
    let (id, slot) = session.send(model, |_, target| {
        modal::build_request(kind, &input, media, target)
    })?;
    Ok((id, slot, 1))
}
