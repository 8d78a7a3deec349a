//! Deltas as JavaScript sees them: the public `ChatDelta` shape (camelCase, absent fields
//! omitted), written as JSON text. A batch crosses into JavaScript as one string that
//! `JSON.parse` turns into objects: far cheaper than setting dozens of properties per delta
//! through N-API.

use serde::Serialize;
use serde_json::Value;

use orchard_core::wire::{Delta, StateEvent, TopLogprob};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsTopLogprob<'a> {
    token: &'a str,
    logprob: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<&'a [u8]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsStateEvent<'a> {
    event_type: &'a str,
    item_type: &'a str,
    output_index: u32,
    identifier: &'a str,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsDelta<'a> {
    request_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    tokens: &'a [i64],
    top_logprobs: Vec<JsTopLogprob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cumulative_logprob: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<String>,
    is_final: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_stop_token_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_stop_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_token_count: Option<u64>,
    state_events: Vec<JsStateEvent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modal_decoder_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modal_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modal_event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modal_mime_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modal_metadata_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modal_bytes_b64: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<Vec<f32>>,
}

fn top(t: &TopLogprob) -> JsTopLogprob<'_> {
    JsTopLogprob {
        token: &t.token,
        logprob: t.logprob,
        bytes: t.bytes.as_deref(),
    }
}

fn state(e: &StateEvent) -> JsStateEvent<'_> {
    JsStateEvent {
        event_type: &e.event_type,
        item_type: &e.item_type,
        output_index: e.output_index,
        identifier: &e.identifier,
        delta: &e.delta,
        value: e.value.as_ref(),
    }
}

impl<'a> From<&'a Delta> for JsDelta<'a> {
    fn from(d: &'a Delta) -> Self {
        JsDelta {
            request_id: d.request_id,
            sequence_id: d.sequence_id,
            prompt_index: d.prompt_index,
            candidate_index: d.candidate_index,
            content: d.content.as_deref(),
            tokens: &d.tokens,
            top_logprobs: d.top_logprobs.iter().map(top).collect(),
            cumulative_logprob: d.cumulative_logprob,
            finish_reason: d.finish_reason_normalized(),
            is_final: d.is_final_delta,
            matched_stop_token_id: d.matched_stop_token_id,
            matched_stop_token: d.matched_stop_token.as_deref(),
            error_message: if d.is_error() {
                Some(d.error_text())
            } else {
                d.error_message.clone()
            },
            prompt_token_count: d.prompt_token_count,
            generation_len: d.generation_len,
            reasoning_tokens: d.reasoning_tokens,
            cached_token_count: d.cached_token_count,
            state_events: d.state_events.iter().map(state).collect(),
            modal_decoder_id: d.modal_decoder_id.as_deref(),
            modal_type: d.modal_type.as_deref(),
            modal_event: d.modal_event.as_deref(),
            modal_mime_type: d.modal_mime_type.as_deref(),
            modal_metadata_json: d.modal_metadata_json.as_deref(),
            modal_bytes_b64: d.modal_bytes_b64.as_deref(),
            embedding: d.embedding(),
        }
    }
}

/// `[delta, delta, ...]` as JSON text.
pub fn batch_json(deltas: &[Delta]) -> String {
    let views: Vec<JsDelta> = deltas.iter().map(JsDelta::from).collect();
    serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_string())
}

/// One delta as JSON text.
pub fn delta_json(delta: &Delta) -> String {
    serde_json::to_string(&JsDelta::from(delta)).unwrap_or_else(|_| "null".to_string())
}
