//! Chat calls: messages and options from JSON text, the request sent, deltas back as JSON.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use super::parse_json;
use crate::chat::{parse_batch_options, ChatOptions};
use crate::delta_view;
use crate::error::{Error, Result};
use crate::logprobs::LogprobContext;
use crate::session::Session;
use crate::transport::{Batch, RequestSlot};
use crate::wire::{LayoutSegment, PromptPayload};

/// The messages array and validated options of a chat call, from their JSON text.
pub(super) fn chat_input(
    messages_json: &str,
    options_json: &str,
) -> Result<(Vec<Value>, ChatOptions)> {
    let messages = match parse_json(messages_json, "messages")? {
        Value::Array(m) => m,
        _ => return Err(Error::invalid("messages: expected an array of messages")),
    };
    let opts = ChatOptions::parse_text(options_json, "options")?;
    Ok((messages, opts))
}

/// The conversations of a batch: an array of non-empty message arrays.
fn conversations(json: &str) -> Result<Vec<Vec<Value>>> {
    match parse_json(json, "conversations")? {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                Value::Array(m) if !m.is_empty() => Ok(m),
                _ => Err(Error::invalid(format!(
                    "conversations[{i}]: expected a non-empty array of messages"
                ))),
            })
            .collect(),
        _ => Err(Error::invalid(
            "conversations: expected an array of conversations",
        )),
    }
}

/// A submitted request: its id, its delta slot and what log-probabilities need.
pub struct SentChat {
    pub request_id: u64,
    pub slot: Arc<RequestSlot>,
    pub logprobs: LogprobContext,
}

/// The model's token decoder when any of `opts` asks for log-probabilities.
fn logprob_context<'a>(
    session: &Session,
    model: &str,
    opts: impl IntoIterator<Item = &'a ChatOptions>,
) -> Result<LogprobContext> {
    let decoder = if opts.into_iter().any(|o| o.top_logprobs > 0) {
        session.loaded(model)?.token_decoder()
    } else {
        None
    };
    Ok(LogprobContext::new(decoder))
}

/// Render and send one chat request.
pub fn chat(
    session: &Session,
    model: &str,
    messages_json: &str,
    options_json: &str,
) -> Result<SentChat> {
    let (messages, opts) = chat_input(messages_json, options_json)?;
    let logprobs = logprob_context(session, model, [&opts])?;
    let (request_id, slot) = session.chat(model, messages, &opts)?;
    Ok(SentChat {
        request_id,
        slot,
        logprobs,
    })
}

/// Send several conversations as one request; `options_json` is one options object or an
/// array with one per conversation.
pub fn chat_batch(
    session: &Session,
    model: &str,
    conversations_json: &str,
    options_json: &str,
) -> Result<SentChat> {
    let conversations = conversations(conversations_json)?;
    let opts = parse_batch_options(&parse_json(options_json, "options")?, conversations.len())?;
    let logprobs = logprob_context(session, model, &opts)?;
    let (request_id, slot) = session.chat_batch(model, conversations, &opts)?;
    Ok(SentChat {
        request_id,
        slot,
        logprobs,
    })
}

/// One batch of a stream for JavaScript: the deltas as a JSON array, `None` at the end.
pub fn next_batch_json(batch: Batch, logprobs: &Mutex<LogprobContext>) -> Result<Option<String>> {
    match batch {
        Batch::Deltas(d) => {
            let mut ctx = logprobs.lock().unwrap_or_else(|p| p.into_inner());
            Ok(Some(delta_view::batch_json(&d, &mut ctx)))
        }
        Batch::Finished => Ok(None),
        Batch::Failed(e) => Err(e),
    }
}

/// What `renderPrompt` returns: the prompt and the sampling values resolved against the
/// model's profile.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RenderedRequest<'a> {
    prompt: Cow<'a, str>,
    layout: Vec<LayoutSegment>,
    reasoning: bool,
    reasoning_effort: Option<&'a str>,
    sampling: Sampling<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sampling<'a> {
    max_tokens: u64,
    temperature: f64,
    top_p: f64,
    top_k: i64,
    min_p: f64,
    seed: Option<u64>,
    deterministic: bool,
    stop: &'a [String],
    n: u32,
    best_of: u32,
    top_logprobs: u32,
    frequency_penalty: f64,
    presence_penalty: f64,
    repetition_penalty: f64,
    repetition_context_size: i64,
    logit_bias: &'a [(i64, f64)],
    prefix_cache: bool,
}

fn rendered(p: &PromptPayload) -> RenderedRequest<'_> {
    RenderedRequest {
        prompt: String::from_utf8_lossy(&p.text),
        layout: p.effective_layout(),
        // The renderer sets an effort exactly when reasoning is on.
        reasoning: p.reasoning_effort.is_some(),
        reasoning_effort: p.reasoning_effort.as_deref(),
        sampling: Sampling {
            max_tokens: p.max_generated_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            min_p: p.min_p,
            seed: p.rng_seed,
            deterministic: p.deterministic,
            stop: &p.stop_sequences,
            n: p.final_candidates,
            best_of: p.best_of,
            top_logprobs: p.top_logprobs,
            frequency_penalty: p.frequency_penalty,
            presence_penalty: p.presence_penalty,
            repetition_penalty: p.repetition_penalty,
            repetition_context_size: p.repetition_context_size,
            logit_bias: &p.logit_bias,
            prefix_cache: p.prefix_cache,
        },
    }
}

/// What `chat` would send, without sending, as JSON text.
pub fn render_prompt(
    session: &Session,
    model: &str,
    messages_json: &str,
    options_json: &str,
) -> Result<String> {
    let (messages, opts) = chat_input(messages_json, options_json)?;
    let payload = session.render(model, messages, &opts)?;
    serde_json::to_string(&rendered(&payload))
        .map_err(|e| Error::new(crate::ErrorCode::Internal, format!("renderPrompt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_shapes_are_checked_with_the_index() {
        let e = conversations("[[{\"role\":\"user\",\"content\":\"a\"}], []]").unwrap_err();
        assert!(e.message.starts_with("conversations[1]:"), "{e}");
        assert!(conversations("{}").is_err());
        let e = chat_input("{}", "null").unwrap_err();
        assert!(e.message.starts_with("messages:"), "{e}");
    }

    #[test]
    fn the_rendered_request_keeps_its_shape() {
        let p = PromptPayload {
            text: b"hi".to_vec(),
            reasoning_effort: Some("low".into()),
            stop_sequences: vec!["<eot>".into()],
            logit_bias: vec![(5, -100.0)],
            rng_seed: Some(7),
            ..PromptPayload::default()
        };
        let v = serde_json::to_value(rendered(&p)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "prompt": "hi",
                "layout": [{"type": "text", "length": 2}],
                "reasoning": true,
                "reasoningEffort": "low",
                "sampling": {
                    "maxTokens": 0, "temperature": 1.0, "topP": 1.0, "topK": -1, "minP": 0.0,
                    "seed": 7, "deterministic": false, "stop": ["<eot>"], "n": 1, "bestOf": 1,
                    "topLogprobs": 0, "frequencyPenalty": 0.0, "presencePenalty": 0.0,
                    "repetitionPenalty": 1.0, "repetitionContextSize": 0,
                    "logitBias": [[5, -100.0]], "prefixCache": true
                }
            })
        );
    }
}
