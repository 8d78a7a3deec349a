//! The PULL side: decode request frames and turn them into sequences, embeddings or error
//! deltas.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use orchard_core::nng::Socket;
use orchard_core::wire::decode_request;
use orchard_core::wire::request::{split_frame, PromptPayload, Request, RequestType};
use orchard_core::wire::Node;
use serde_json::Value;

use crate::lm::{embed, prompt_token_count};
use crate::sampler::SamplingParams;
use crate::sequence::{error_delta, SeqIds, Sequence, SequenceSpec};
use crate::state::{lock, Ctx};
use crate::structured::Plan;

/// Dimensions of the emulator's embeddings when the model's config names none.
pub const EMBEDDING_DIMS: usize = 16;
/// The largest `hidden_size` the emulator honours for embeddings.
pub const MAX_EMBEDDING_DIMS: usize = 8192;

/// A model's embedding size: `hidden_size` (or `text_config.hidden_size`, or `d_model`) from
/// the `config.json` in its directory, between 1 and [`MAX_EMBEDDING_DIMS`]; otherwise
/// [`EMBEDDING_DIMS`].
pub fn embedding_dims(model_path: &str) -> usize {
    let config = std::fs::read(std::path::Path::new(model_path).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(config) = config else {
        return EMBEDDING_DIMS;
    };
    ["/hidden_size", "/text_config/hidden_size", "/d_model"]
        .iter()
        .find_map(|k| config.pointer(k).and_then(Value::as_u64))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_EMBEDDING_DIMS).contains(n))
        .unwrap_or(EMBEDDING_DIMS)
}
/// Seed used when a prompt carries no `rng_seed` (protocol default).
pub const DEFAULT_SEED: u64 = 11;
/// More sequences than this in one request are refused (one error delta per prompt).
pub const MAX_SEQUENCES_PER_REQUEST: u64 = 65_536;

pub fn serve(pull: &Socket, ctx: &Ctx) {
    loop {
        match pull.recv() {
            Ok(frame) => {
                let outcome = catch_unwind(AssertUnwindSafe(|| handle_frame(&frame, ctx)));
                if outcome.is_err() {
                    crate::warn!(
                        "internal error while handling a {}-byte request frame; dropped",
                        frame.len()
                    );
                }
            }
            Err(e) if e.is_closed() => return,
            Err(e) => {
                crate::warn!("request socket: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

pub fn handle_frame(frame: &[u8], ctx: &Ctx) {
    match decode_request(frame) {
        Ok(req) => handle_request(req, ctx),
        Err(err) => reject_malformed(frame, &err.message, ctx),
    }
}

/// A frame that does not decode: answer with error deltas when its header says where to,
/// otherwise log and drop it.
fn reject_malformed(frame: &[u8], why: &str, ctx: &Ctx) {
    let Ok((meta, _)) = split_frame(frame) else {
        crate::warn!(
            "dropped an unreadable {}-byte request frame: {why}",
            frame.len()
        );
        return;
    };
    let request_id = meta.get("request_id").and_then(Node::as_u64);
    let channel = meta.get("response_channel_id").and_then(Node::as_u64);
    let (Some(request_id), Some(channel)) = (request_id, channel) else {
        crate::warn!("dropped a request frame without request_id/response_channel_id: {why}");
        return;
    };
    crate::warn!("request {request_id} on channel {channel:x} is malformed: {why}");
    let mut shape: Vec<u64> = match meta.get("prompts") {
        Some(Node::Array(prompts)) => prompts
            .iter()
            .map(|p| {
                let n = |k: &str| p.get(k).and_then(Node::as_u64).unwrap_or(1);
                n("num_candidates").max(n("best_of")).max(1)
            })
            .collect(),
        _ => Vec::new(),
    };
    if shape.is_empty() {
        shape.push(1);
    }
    publish_errors(
        ctx,
        channel,
        request_id,
        &shape,
        &format!("malformed request: {why}"),
    );
}

/// One final error delta per sequence of a request of the given shape (sequences per
/// prompt). Absurdly large requests get one error delta per prompt instead.
fn publish_errors(ctx: &Ctx, channel: u64, request_id: u64, shape: &[u64], message: &str) {
    let total: u64 = shape.iter().fold(0u64, |a, n| a.saturating_add(*n));
    for (prompt_index, &n) in shape.iter().enumerate() {
        let n = if total > MAX_SEQUENCES_PER_REQUEST {
            1
        } else {
            n
        };
        for candidate_index in 0..n {
            let ids = SeqIds {
                channel,
                request_id,
                sequence_id: ctx.sequence_id(),
                prompt_index: prompt_index as u32,
                candidate_index: candidate_index as u32,
            };
            ctx.publisher.delta(channel, &error_delta(&ids, message));
        }
    }
}

fn sampling_params(p: &PromptPayload, ctx: &Ctx) -> SamplingParams {
    SamplingParams {
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        min_p: p.min_p,
        top_logprobs: (p.top_logprobs as usize).min(ctx.lm.vocab_size()),
        logit_bias: p
            .logit_bias
            .iter()
            .filter_map(|(id, bias)| ctx.lm.token_of_wire_id(*id).map(|t| (t, *bias)))
            .collect(),
        repetition_penalty: p.repetition_penalty,
        repetition_context: usize::try_from(p.repetition_context_size.max(0)).unwrap_or(0),
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
    }
}

fn handle_request(req: Request, ctx: &Ctx) {
    let shape: Vec<u64> = req
        .prompts
        .iter()
        .map(|p| u64::from(p.sequence_count()))
        .collect();
    let total: u64 = shape.iter().sum();
    let channel = req.response_channel_id;
    let kind = RequestType::name(req.request_type);
    let (model, model_path) = {
        let registry = lock(&ctx.registry);
        let path = registry.get(&req.model_id).map(|e| e.model_path.clone());
        (registry.ready(&req.model_id), path)
    };
    let Some(model) = model else {
        crate::info!(
            "request {} ({kind}) on channel {channel:x}: model '{}' is not loaded",
            req.request_id,
            req.model_id
        );
        let msg = format!("model '{}' is not loaded; load it first", req.model_id);
        publish_errors(ctx, channel, req.request_id, &shape, &msg);
        return;
    };
    if total > MAX_SEQUENCES_PER_REQUEST {
        let msg = format!(
            "request asks for {total} sequences; the emulator accepts at most {MAX_SEQUENCES_PER_REQUEST}"
        );
        publish_errors(ctx, channel, req.request_id, &shape, &msg);
        return;
    }
    crate::info!(
        "request {} ({kind}) on channel {channel:x}: model '{model}', {} prompt(s), {total} sequence(s)",
        req.request_id,
        req.prompts.len()
    );
    let ids = |prompt_index: usize, candidate_index: u32| SeqIds {
        channel,
        request_id: req.request_id,
        sequence_id: ctx.sequence_id(),
        prompt_index: prompt_index as u32,
        candidate_index,
    };
    if req.request_type == RequestType::Generation {
        // Every generation request reaches the scheduler, so its entry finishes and ages out.
        let layouts = req.prompts.iter().map(|p| p.effective_layout()).collect();
        ctx.scheduler.note_layouts(req.request_id, layouts);
    }
    match req.request_type {
        RequestType::Generation if crate::tasks::moondream::serves(model_path.as_deref()) => {
            let make = |spec, p: &PromptPayload, text: &str| {
                crate::tasks::moondream::sequence(spec, &ctx.lm, p, text)
            };
            ctx.scheduler
                .submit(tokenless_sequences(&req, ctx, &model, ids, make));
        }
        RequestType::Generation => {
            let mut sequences = Vec::with_capacity(total as usize);
            let mut fault = lock(&ctx.armed_fault).take();
            for (prompt_index, p) in req.prompts.iter().enumerate() {
                let text = String::from_utf8_lossy(&p.text);
                let boosted = Arc::new(ctx.lm.prompt_words(&text));
                let stops = Arc::new(p.stop_sequences.clone());
                let params = sampling_params(p, ctx);
                let prompt_tokens = prompt_token_count(&text);
                let max_tokens = if p.max_generated_tokens == 0 {
                    ctx.config.default_max_tokens
                } else {
                    p.max_generated_tokens
                };
                let seed = p.rng_seed.map_or(DEFAULT_SEED, |s| s & 0xFFFF_FFFF);
                let plan = Arc::new(Plan::for_prompt(p, &text));
                for candidate_index in 0..p.sequence_count() {
                    let spec = SequenceSpec {
                        ids: ids(prompt_index, candidate_index),
                        model: model.clone(),
                        params: params.clone(),
                        seed,
                        max_tokens,
                        stops: stops.clone(),
                        boosted: boosted.clone(),
                        prompt_tokens,
                        flood: ctx.config.flood.is_some(),
                        plan: plan.clone(),
                    };
                    let mut seq = Sequence::new(spec, &ctx.lm);
                    seq.fault = fault.take();
                    sequences.push(seq);
                }
            }
            ctx.scheduler.submit(sequences);
        }
        RequestType::Embedding => {
            let dims = model_path.as_deref().map_or(EMBEDDING_DIMS, embedding_dims);
            let make = |spec, _: &PromptPayload, text: &str| {
                Sequence::embedding(spec, &ctx.lm, embed(text, dims))
            };
            ctx.scheduler
                .submit(tokenless_sequences(&req, ctx, &model, ids, make));
        }
        kind @ (RequestType::Audio | RequestType::Image | RequestType::Omni) => {
            let make = |spec, p: &PromptPayload, text: &str| {
                crate::tasks::modal::sequence(kind, spec, &ctx.lm, p, text)
            };
            ctx.scheduler
                .submit(tokenless_sequences(&req, ctx, &model, ids, make));
        }
        RequestType::PrefillTask => match crate::tasks::check_prefill(&req) {
            Ok(()) => {
                let make = |spec, p: &PromptPayload, text: &str| {
                    crate::tasks::prefill(spec, &ctx.lm, p, text)
                };
                ctx.scheduler
                    .submit(tokenless_sequences(&req, ctx, &model, ids, make));
            }
            Err(msg) => publish_errors(ctx, channel, req.request_id, &shape, &msg),
        },
        other => {
            let msg = format!(
                "the PIE emulator does not implement request type '{}' (request_type {})",
                RequestType::name(other),
                other.code()
            );
            publish_errors(ctx, channel, req.request_id, &shape, &msg);
        }
    }
}

/// The sequences of a request that generates nothing (embeddings, prefill tasks): each reads
/// its prompt and then sends the one final delta `make` prepares.
fn tokenless_sequences(
    req: &Request,
    ctx: &Ctx,
    model: &str,
    ids: impl Fn(usize, u32) -> SeqIds,
    make: impl Fn(SequenceSpec, &PromptPayload, &str) -> Sequence,
) -> Vec<Sequence> {
    let mut sequences = Vec::new();
    for (prompt_index, p) in req.prompts.iter().enumerate() {
        let text = String::from_utf8_lossy(&p.text);
        let prompt_tokens = prompt_token_count(&text);
        for candidate_index in 0..p.sequence_count() {
            let spec = SequenceSpec {
                ids: ids(prompt_index, candidate_index),
                model: model.to_string(),
                params: sampling_params(p, ctx),
                seed: DEFAULT_SEED,
                max_tokens: 1,
                stops: Arc::new(Vec::new()),
                boosted: Arc::new(Vec::new()),
                prompt_tokens,
                flood: false,
                plan: Arc::new(Plan::plain_text()),
            };
            sequences.push(make(spec, p, &text));
        }
    }
    sequences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_size_comes_from_the_config() {
        let dir = std::env::temp_dir().join(format!("pie-embed-dims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.to_str().unwrap();
        assert_eq!(embedding_dims(path), EMBEDDING_DIMS);
        for (config, dims) in [
            (r#"{"hidden_size": 48}"#, 48),
            (r#"{"text_config": {"hidden_size": 24}}"#, 24),
            (r#"{"d_model": 8}"#, 8),
            (r#"{"hidden_size": 0}"#, EMBEDDING_DIMS),
            (r#"{"hidden_size": 100000}"#, EMBEDDING_DIMS),
            (r#"{"model_type": "llama"}"#, EMBEDDING_DIMS),
            ("not json", EMBEDDING_DIMS),
        ] {
            std::fs::write(dir.join("config.json"), config).unwrap();
            assert_eq!(embedding_dims(path), dims, "{config}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
