//! Log-probabilities as callers see them: each token's text (from the model's tokenizer)
//! and, for the chosen tokens, a log-probability even when the engine listed it only through
//! the sequence's cumulative log-probability.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::tokenizer::TokenDecoder;
use crate::wire::{Delta, TopLogprob};

/// What a stream needs to turn the engine's token ids into text with log-probabilities.
#[derive(Default)]
pub struct LogprobContext {
    pub decoder: Option<Arc<TokenDecoder>>,
    /// The last cumulative log-probability of each (prompt, candidate) sequence.
    pub(crate) last_cumulative: HashMap<(u32, u32), f64>,
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
pub struct TopLogprobView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_id: Option<i64>,
    /// The token's text when the model's tokenizer is known, else what the engine sent.
    token: Cow<'a, str>,
    pub(crate) logprob: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<&'a [u8]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenLogprobView<'a> {
    token_id: i64,
    token: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<&'a [u8]>,
    /// Unknown when the engine coalesced several tokens into one delta.
    logprob: Option<f64>,
    top_logprobs: Vec<TopLogprobView<'a>>,
}

fn text_of<'a>(
    decoder: Option<&'a TokenDecoder>,
    id: Option<i64>,
) -> Option<(Cow<'a, str>, &'a [u8])> {
    let bytes = decoder?.bytes(id?)?;
    Some((String::from_utf8_lossy(bytes), bytes))
}

pub(crate) fn top<'a>(t: &'a TopLogprob, decoder: Option<&'a TokenDecoder>) -> TopLogprobView<'a> {
    let token_id = t.token.trim().parse::<i64>().ok();
    match text_of(decoder, token_id) {
        Some((token, bytes)) => TopLogprobView {
            token_id,
            token,
            logprob: t.logprob,
            bytes: Some(bytes),
        },
        None => TopLogprobView {
            token_id,
            token: Cow::Borrowed(&t.token),
            logprob: t.logprob,
            bytes: t.bytes.as_deref(),
        },
    }
}

/// The chosen tokens of `d` with their log-probabilities: from the alternatives when the
/// token is among them, else from the change in the sequence's cumulative log-probability.
pub(crate) fn chosen<'a>(
    d: &'a Delta,
    decoder: Option<&'a TokenDecoder>,
    last_cumulative: &mut HashMap<(u32, u32), f64>,
) -> Vec<TokenLogprobView<'a>> {
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
            let alternatives: Vec<TopLogprobView> = if last {
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
            TokenLogprobView {
                token_id: id,
                token,
                bytes,
                logprob,
                top_logprobs: alternatives,
            }
        })
        .collect()
}
