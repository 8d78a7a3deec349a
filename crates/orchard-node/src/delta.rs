//! Deltas as JavaScript sees them: the public `ChatDelta` shape (camelCase, absent fields
//! omitted), written as JSON text. A batch crosses into JavaScript as one string that
//! `JSON.parse` turns into objects: far cheaper than setting dozens of properties per delta
//! through N-API.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use orchard_core::tokenizer::TokenDecoder;
use orchard_core::wire::{Delta, StateEvent, TopLogprob};

/// What a stream needs to turn the engine's token ids into text with log-probabilities.
#[derive(Default)]
pub struct LogprobContext {
    pub decoder: Option<Arc<TokenDecoder>>,
    /// The last cumulative log-probability of each (prompt, candidate) sequence.
    last_cumulative: HashMap<(u32, u32), f64>,
}

impl LogprobContext {
    pub fn new(decoder: Option<Arc<TokenDecoder>>) -> Self {
        LogprobContext {
            decoder,
            last_cumulative: HashMap::new(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsTopLogprob<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<i64>,
    /// The token's text when the model's tokenizer is known, else what the engine sent.
    token: Cow<'a, str>,
    logprob: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<&'a [u8]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsTokenLogprob<'a> {
    token_id: i64,
    token: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<&'a [u8]>,
    /// Unknown when the engine coalesced several tokens into one delta.
    logprob: Option<f64>,
    top_logprobs: Vec<JsTopLogprob<'a>>,
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
    /// Each generated token with its text and log-probability (when alternatives were asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logprobs: Vec<JsTokenLogprob<'a>>,
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

fn text_of<'a>(
    decoder: Option<&'a TokenDecoder>,
    id: Option<i64>,
) -> Option<(Cow<'a, str>, &'a [u8])> {
    let bytes = decoder?.bytes(id?)?;
    Some((String::from_utf8_lossy(bytes), bytes))
}

fn top<'a>(t: &'a TopLogprob, decoder: Option<&'a TokenDecoder>) -> JsTopLogprob<'a> {
    let token_id = t.token.trim().parse::<i64>().ok();
    match text_of(decoder, token_id) {
        Some((token, bytes)) => JsTopLogprob {
            token_id,
            token,
            logprob: t.logprob,
            bytes: Some(bytes),
        },
        None => JsTopLogprob {
            token_id,
            token: Cow::Borrowed(&t.token),
            logprob: t.logprob,
            bytes: t.bytes.as_deref(),
        },
    }
}

/// The chosen tokens of `d` with their log-probabilities: from the alternatives when the
/// token is among them, else from the change in the sequence's cumulative log-probability.
fn chosen<'a>(
    d: &'a Delta,
    decoder: Option<&'a TokenDecoder>,
    last_cumulative: &mut HashMap<(u32, u32), f64>,
) -> Vec<JsTokenLogprob<'a>> {
    let key = (d.prompt_index.unwrap_or(0), d.candidate_index.unwrap_or(0));
    let previous = d
        .cumulative_logprob
        .and_then(|c| last_cumulative.insert(key, c))
        .unwrap_or(0.0);
    if d.top_logprobs.is_empty() || d.tokens.is_empty() {
        return Vec::new();
    }
    let single = d.tokens.len() == 1;
    d.tokens
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let last = i + 1 == d.tokens.len();
            let alternatives: Vec<JsTopLogprob> = if last {
                d.top_logprobs.iter().map(|t| top(t, decoder)).collect()
            } else {
                Vec::new()
            };
            let listed = alternatives
                .iter()
                .find(|t| t.token_id == Some(id))
                .map(|t| t.logprob);
            let logprob = listed.or_else(|| {
                single
                    .then_some(d.cumulative_logprob)
                    .flatten()
                    .map(|c| c - previous)
            });
            let (token, bytes) = match text_of(decoder, Some(id)) {
                Some((t, b)) => (t, Some(b)),
                None if single && d.content.is_some() => {
                    (Cow::Borrowed(d.content.as_deref().unwrap_or("")), None)
                }
                None => (Cow::Owned(id.to_string()), None),
            };
            JsTokenLogprob {
                token_id: id,
                token,
                bytes,
                logprob,
                top_logprobs: alternatives,
            }
        })
        .collect()
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

impl<'a> JsDelta<'a> {
    fn new(
        d: &'a Delta,
        decoder: Option<&'a TokenDecoder>,
        last_cumulative: &mut HashMap<(u32, u32), f64>,
    ) -> Self {
        JsDelta {
            request_id: d.request_id,
            sequence_id: d.sequence_id,
            prompt_index: d.prompt_index,
            candidate_index: d.candidate_index,
            content: d.content.as_deref(),
            tokens: &d.tokens,
            top_logprobs: d.top_logprobs.iter().map(|t| top(t, decoder)).collect(),
            logprobs: chosen(d, decoder, last_cumulative),
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
pub fn batch_json(deltas: &[Delta], ctx: &mut LogprobContext) -> String {
    let decoder = ctx.decoder.as_deref();
    let views: Vec<JsDelta> = deltas
        .iter()
        .map(|d| JsDelta::new(d, decoder, &mut ctx.last_cumulative))
        .collect();
    serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_string())
}

/// One delta as JSON text (no tokenizer: alternatives keep the engine's token ids).
pub fn delta_json(delta: &Delta) -> String {
    let view = JsDelta::new(delta, None, &mut HashMap::new());
    serde_json::to_string(&view).unwrap_or_else(|_| "null".to_string())
}
