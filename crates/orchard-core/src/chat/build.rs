//! Chat options + a rendered conversation → the prompt payload and request on the wire.

use serde_json::Value;

use super::options::{
    ChatOptions, DEFAULT_MAX_TOKENS, DEFAULT_REPETITION_CONTEXT_SIZE, DETERMINISTIC_SEED,
};
use crate::error::{Error, Result};
use crate::format::{sorted_tool_refs, Profile};
use crate::wire::{PromptPayload, Request, RequestType, ThinkingTokens};

/// Render `messages` with `profile` (the model's `config.json` visible to the template) and
/// fill one prompt payload from `opts`: explicit values win, then the profile's sampling
/// lane, then the wire defaults.
pub fn build_prompt(
    profile: &Profile,
    config: &Value,
    messages: Vec<Value>,
    opts: &ChatOptions,
) -> Result<PromptPayload> {
    let mut messages = messages;
    if let Some(instructions) = &opts.instructions {
        messages.insert(
            0,
            serde_json::json!({"role": "system", "content": instructions}),
        );
    }
    let rendered = profile.render_parts(
        &messages,
        opts.tools.as_deref(),
        opts.reasoning.as_ref(),
        opts.task.as_deref(),
        config,
    )?;
    let tools_json = |tools: &Option<Vec<Value>>| -> Result<String> {
        match tools {
            Some(t) if !t.is_empty() => serde_json::to_string(&sorted_tool_refs(t)?)
                .map_err(|e| Error::invalid(format!("tools: {e}"))),
            _ => Ok(String::new()),
        }
    };
    let tool_schemas_json = tools_json(&opts.tools)?;
    let active_tool_schemas_json = match &opts.active_tools {
        Some(_) => tools_json(&opts.active_tools)?,
        None => tool_schemas_json.clone(),
    };
    let lane = profile.sampling_defaults(opts.deterministic);
    let wire = PromptPayload::default();
    let seed = match (opts.seed, opts.deterministic) {
        (Some(s), _) => s,
        (None, true) => DETERMINISTIC_SEED,
        (None, false) => u64::from(rand::random::<u32>()),
    };
    let thinking = profile.thinking_tokens();
    let best_of = opts.best_of.unwrap_or(opts.n).max(opts.n);
    Ok(PromptPayload {
        text: rendered.prompt.into_bytes(),
        images: rendered.images,
        audio: rendered.audio,
        capabilities: rendered.capabilities,
        layout: Some(rendered.layout),
        num_candidates: best_of,
        best_of,
        final_candidates: opts.final_candidates.unwrap_or(opts.n),
        max_generated_tokens: opts.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        temperature: opts
            .temperature
            .or(lane.temperature)
            .unwrap_or(wire.temperature),
        top_p: opts.top_p.or(lane.top_p).unwrap_or(wire.top_p),
        top_k: opts.top_k.or(lane.top_k).unwrap_or(wire.top_k),
        min_p: opts.min_p.or(lane.min_p).unwrap_or(wire.min_p),
        rng_seed: Some(seed & 0xFFFF_FFFF),
        deterministic: opts.deterministic,
        top_logprobs: opts.top_logprobs,
        frequency_penalty: opts
            .frequency_penalty
            .or(lane.frequency_penalty)
            .unwrap_or(wire.frequency_penalty),
        presence_penalty: opts
            .presence_penalty
            .or(lane.presence_penalty)
            .unwrap_or(wire.presence_penalty),
        repetition_context_size: opts
            .repetition_context_size
            .or(lane.repetition_context_size)
            .unwrap_or(DEFAULT_REPETITION_CONTEXT_SIZE),
        repetition_penalty: opts
            .repetition_penalty
            .or(lane.repetition_penalty)
            .unwrap_or(wire.repetition_penalty),
        stop_sequences: opts
            .stop
            .clone()
            .unwrap_or_else(|| profile.default_stop_sequences()),
        thinking_tokens: ThinkingTokens {
            start: thinking.start,
            end: thinking.end,
            required: thinking.required,
        },
        tool_calling_tokens: profile.wire_tool_calling_tokens()?,
        output_frame_tokens: profile
            .output_frame_tokens()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        logit_bias: opts.logit_bias.clone(),
        reasoning_effort: rendered.reasoning_effort,
        prefix_cache: opts.prefix_cache,
        tool_schemas_json,
        active_tool_schemas_json,
        tool_choice: opts.tool_choice.clone().unwrap_or(wire.tool_choice),
        min_tool_calls: opts
            .min_tool_calls
            .map_or(wire.min_tool_calls, |m| m as i64),
        max_tool_calls: opts
            .max_tool_calls
            .map_or(wire.max_tool_calls, |m| m as i64),
        response_format_json: opts.response_format.clone().unwrap_or_default(),
        task_name: opts.task.clone(),
        ..wire
    })
}

/// Where a request goes: the engine's ids for the model and the reply channel.
pub struct Target<'a> {
    pub request_id: u64,
    pub model_id: &'a str,
    pub model_path: &'a str,
    pub response_channel_id: u64,
}

/// A complete one-conversation generation request.
pub fn build_request(
    profile: &Profile,
    config: &Value,
    messages: Vec<Value>,
    opts: &ChatOptions,
    target: &Target,
) -> Result<Request> {
    Ok(Request {
        prompts: vec![build_prompt(profile, config, messages, opts)?],
        ..empty_request(target)
    })
}

/// One generation request holding several conversations, each with its own options; the
/// engine answers with `prompt_index` = the conversation's position. Errors name the index.
pub fn build_batch_request(
    profile: &Profile,
    config: &Value,
    conversations: Vec<Vec<Value>>,
    opts: &[ChatOptions],
    target: &Target,
) -> Result<Request> {
    if conversations.is_empty() {
        return Err(Error::invalid(
            "conversations: expected at least one conversation",
        ));
    }
    let prompts = conversations
        .into_iter()
        .enumerate()
        .map(|(i, messages)| {
            let o = &opts[i.min(opts.len() - 1)];
            build_prompt(profile, config, messages, o).map_err(|mut e| {
                e.message = format!("conversations[{i}]: {}", e.message);
                e
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Request {
        prompts,
        ..empty_request(target)
    })
}

fn empty_request(target: &Target) -> Request {
    Request {
        request_id: target.request_id,
        model_id: target.model_id.to_string(),
        model_path: target.model_path.to_string(),
        request_type: RequestType::Generation,
        request_channel_id: 0,
        response_channel_id: target.response_channel_id,
        prompts: Vec::new(),
    }
}
