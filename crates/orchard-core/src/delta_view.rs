//! Deltas as JavaScript sees them: the public `ChatDelta` shape (camelCase, absent fields
//! omitted), written as JSON text. A batch crosses into JavaScript as one string that
//! `JSON.parse` turns into objects: far cheaper than setting dozens of properties per delta
//! through N-API.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::logprobs::{chosen, top, LogprobContext, TokenLogprobView, TopLogprobView};
use crate::tokenizer::TokenDecoder;
use crate::wire::{Delta, StateEvent};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateEventView<'a> {
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
pub struct DeltaView<'a> {
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
    top_logprobs: Vec<TopLogprobView<'a>>,
    /// Each generated token with its text and log-probability (when alternatives were asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logprobs: Vec<TokenLogprobView<'a>>,
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
    state_events: Vec<StateEventView<'a>>,
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

fn state(e: &StateEvent) -> StateEventView<'_> {
    StateEventView {
        event_type: &e.event_type,
        item_type: &e.item_type,
        output_index: e.output_index,
        identifier: &e.identifier,
        delta: &e.delta,
        value: e.value.as_ref(),
    }
}

impl<'a> DeltaView<'a> {
    fn new(
        d: &'a Delta,
        decoder: Option<&'a TokenDecoder>,
        last_cumulative: &mut HashMap<(u32, u32), f64>,
    ) -> Self {
        DeltaView {
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

/// A batch with no deltas (the caller asks again).
pub const EMPTY_BATCH_JSON: &str = "[]";

/// `[delta, delta, ...]` as JSON text.
pub fn batch_json(deltas: &[Delta], ctx: &mut LogprobContext) -> String {
    let decoder = ctx.decoder.as_deref();
    let views: Vec<DeltaView> = deltas
        .iter()
        .map(|d| DeltaView::new(d, decoder, &mut ctx.last_cumulative))
        .collect();
    serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_string())
}

/// One delta as JSON text (no tokenizer: alternatives keep the engine's token ids).
pub fn delta_json(delta: &Delta) -> String {
    let view = DeltaView::new(delta, None, &mut HashMap::new());
    serde_json::to_string(&view).unwrap_or_else(|_| "null".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TopLogprob;
    use serde_json::json;

    fn delta(tokens: Vec<i64>, cumulative: f64, top: &[(&str, f64)]) -> Delta {
        Delta {
            request_id: 3,
            content: Some("x".into()),
            tokens,
            cumulative_logprob: Some(cumulative),
            top_logprobs: top
                .iter()
                .map(|(t, l)| TopLogprob {
                    token: t.to_string(),
                    logprob: *l,
                    bytes: None,
                })
                .collect(),
            ..Delta::default()
        }
    }

    #[test]
    fn chosen_logprobs_come_from_the_alternatives_or_the_cumulative_change() {
        let mut ctx = LogprobContext::new(None);
        let batch = [
            delta(vec![7], -0.5, &[("7", -0.5), ("9", -1.0)]),
            // 8 is not among the alternatives: -1.75 - (-0.5).
            delta(vec![8], -1.75, &[("7", -0.25)]),
        ];
        let v: Value = serde_json::from_str(&batch_json(&batch, &mut ctx)).unwrap();
        assert_eq!(v[0]["logprobs"][0]["logprob"], json!(-0.5));
        assert_eq!(v[0]["logprobs"][0]["token"], json!("x"));
        assert_eq!(v[1]["logprobs"][0]["logprob"], json!(-1.25));
        assert_eq!(
            v[1]["topLogprobs"][0],
            json!({"tokenId": 7, "token": "7", "logprob": -0.25})
        );
        assert_eq!(v[0]["requestId"], json!(3));
        assert!(
            v[0].get("finishReason").is_none(),
            "absent fields are omitted"
        );
    }

    #[test]
    fn without_alternatives_there_are_no_chosen_logprobs() {
        let d = delta(vec![7], -0.5, &[]);
        let v: Value = serde_json::from_str(&delta_json(&d)).unwrap();
        assert!(v.get("logprobs").is_none());
        assert_eq!(v["topLogprobs"], json!([]));
    }
}
