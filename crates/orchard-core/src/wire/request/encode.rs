//! Writing a [`Request`] as a frame, byte for byte as the reference serializer does.

use serde::Serialize;
use serde_json::{Map, Value};

use super::super::layout::{LayoutSegment, SegmentKind};
use super::types::{PromptPayload, Request, ThinkingTokens, ToolCallingTokens};
use super::BLOB_ALIGNMENT;
use crate::error::{Error, Result};

fn align(v: usize) -> usize {
    v.div_ceil(BLOB_ALIGNMENT) * BLOB_ALIGNMENT
}

/// Accumulates aligned blobs; offsets are relative to the payload start.
struct Payload {
    bytes: Vec<u8>,
}

impl Payload {
    /// Place a blob, or report (0, 0) for an empty one (it takes no room).
    fn reserve(&mut self, data: &[u8]) -> (usize, usize) {
        if data.is_empty() {
            return (0, 0);
        }
        let offset = align(self.bytes.len());
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(data);
        (offset, data.len())
    }

    /// Place a list of buffers back to back (no copy for a single buffer).
    fn reserve_all(&mut self, items: &[Vec<u8>]) -> (usize, usize) {
        match items {
            [] => (0, 0),
            [one] => self.reserve(one),
            many => self.reserve(&many.concat()),
        }
    }
}

fn spans(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 8);
    for i in items {
        out.extend_from_slice(&(i.len() as u64).to_le_bytes());
    }
    out
}

fn layout_bytes(layout: &[LayoutSegment]) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout.len() * 16);
    for seg in layout {
        out.push(seg.kind.wire_code());
        out.extend_from_slice(&[0u8; 7]);
        // Capability segments carry length 0: the engine reads capabilities[i].payload_size.
        let len = if seg.kind == SegmentKind::Capability {
            0
        } else {
            seg.length
        };
        out.extend_from_slice(&len.to_le_bytes());
    }
    out
}

#[derive(Serialize)]
struct CapabilityMeta<'a> {
    name: &'a str,
    position: i64,
    payload_size: usize,
}

#[derive(Serialize)]
struct BiasMeta {
    token: i64,
    bias: f64,
}

/// One prompt's metadata object, keys in the reference serializer's order. Floats that are
/// not finite would be written as `null`; [`validate`] refuses them first.
#[derive(Serialize)]
struct PromptMeta<'a> {
    prompt_index: usize,
    num_candidates: u32,
    best_of: u32,
    final_candidates: u32,
    max_generated_tokens: u64,
    text_offset: usize,
    text_size: usize,
    image_data_offset: usize,
    image_data_size: usize,
    image_sizes_offset: usize,
    image_count: usize,
    audio_data_offset: usize,
    audio_data_size: usize,
    audio_sizes_offset: usize,
    audio_count: usize,
    capability_data_offset: usize,
    capability_data_size: usize,
    capabilities: Vec<CapabilityMeta<'a>>,
    layout_offset: usize,
    layout_count: usize,
    temperature: f64,
    top_p: f64,
    top_k: i64,
    min_p: f64,
    /// Absent, not `null`: the engine's default seed applies only to a missing key.
    #[serde(skip_serializing_if = "Option::is_none")]
    rng_seed: Option<u64>,
    deterministic: bool,
    top_logprobs: u32,
    frequency_penalty: f64,
    presence_penalty: f64,
    repetition_context_size: i64,
    repetition_penalty: f64,
    stop_sequences: &'a [String],
    tool_schemas_json: &'a str,
    active_tool_schemas_json: &'a str,
    tool_calling_tokens: &'a ToolCallingTokens,
    /// A JSON object keeps the last value of a repeated key, in the first key's place
    /// (as `Map::insert` does with `preserve_order`).
    output_frame_tokens: Map<String, Value>,
    thinking_tokens: &'a ThinkingTokens,
    tool_choice: &'a str,
    min_tool_calls: i64,
    max_tool_calls: i64,
    response_format_json: &'a str,
    modal_options_json: &'a str,
    logit_bias: Vec<BiasMeta>,
    task_name: &'a Option<String>,
    reasoning_effort: &'a Option<String>,
    prefix_cache: bool,
}

/// The request's metadata object.
#[derive(Serialize)]
struct RequestMeta<'a> {
    request_id: u64,
    model_id: &'a str,
    model_path: &'a str,
    request_type: u64,
    request_channel_id: u64,
    response_channel_id: u64,
    prompts: Vec<PromptMeta<'a>>,
}

/// Refuse what the engine could not read back: non-finite numbers and a layout that does
/// not add up to the prompt's blobs.
fn validate(p: &PromptPayload, index: usize) -> Result<()> {
    let at = |field: &str| format!("prompts[{index}].{field}");
    for (name, v) in [
        ("temperature", p.temperature),
        ("top_p", p.top_p),
        ("min_p", p.min_p),
        ("frequency_penalty", p.frequency_penalty),
        ("presence_penalty", p.presence_penalty),
        ("repetition_penalty", p.repetition_penalty),
    ] {
        if !v.is_finite() {
            return Err(Error::invalid(format!(
                "{}: {v} is not a finite number",
                at(name)
            )));
        }
    }
    if let Some((token, bias)) = p.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
        return Err(Error::invalid(format!(
            "{}: bias {bias} for token {token} is not a finite number",
            at("logit_bias")
        )));
    }
    let layout = p.effective_layout();
    let sum = |kind: SegmentKind| -> u64 {
        layout
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.length)
            .sum()
    };
    let checks = [
        (SegmentKind::Text, p.text.len() as u64, "text"),
        (
            SegmentKind::Image,
            p.images.iter().map(|i| i.len() as u64).sum(),
            "image",
        ),
        (
            SegmentKind::Audio,
            p.audio.iter().map(|a| a.len() as u64).sum(),
            "audio",
        ),
    ];
    for (kind, expected, what) in checks {
        let got = sum(kind);
        if got != expected {
            return Err(Error::invalid(format!(
                "{}: {what} segments add up to {got} bytes but the prompt has {expected} {what} bytes",
                at("layout")
            )));
        }
    }
    let caps = layout
        .iter()
        .filter(|s| s.kind == SegmentKind::Capability)
        .count();
    if caps != p.capabilities.len() && p.layout.is_some() {
        return Err(Error::invalid(format!(
            "{}: {caps} capability segments for {} capability inputs",
            at("layout"),
            p.capabilities.len()
        )));
    }
    Ok(())
}

/// Place one prompt's blobs in `payload` and describe them.
fn place<'a>(index: usize, p: &'a PromptPayload, payload: &mut Payload) -> PromptMeta<'a> {
    let (text_offset, text_size) = payload.reserve(&p.text);
    let (image_sizes_offset, _) = payload.reserve(&spans(&p.images));
    let (image_data_offset, image_data_size) = payload.reserve_all(&p.images);
    let (audio_sizes_offset, _) = payload.reserve(&spans(&p.audio));
    let (audio_data_offset, audio_data_size) = payload.reserve_all(&p.audio);
    let cap_data: Vec<u8> = p
        .capabilities
        .iter()
        .flat_map(|c| c.payload.iter().copied())
        .collect();
    let (capability_data_offset, capability_data_size) = payload.reserve(&cap_data);
    let layout = p.effective_layout();
    let (layout_offset, _) = payload.reserve(&layout_bytes(&layout));
    PromptMeta {
        prompt_index: index,
        num_candidates: p.num_candidates.max(1),
        best_of: p.best_of,
        final_candidates: p.final_candidates,
        max_generated_tokens: p.max_generated_tokens,
        text_offset,
        text_size,
        image_data_offset,
        image_data_size,
        image_sizes_offset,
        image_count: p.images.len(),
        audio_data_offset,
        audio_data_size,
        audio_sizes_offset,
        audio_count: p.audio.len(),
        capability_data_offset,
        capability_data_size,
        capabilities: p
            .capabilities
            .iter()
            .map(|c| CapabilityMeta {
                name: &c.name,
                position: c.position,
                payload_size: c.payload.len(),
            })
            .collect(),
        layout_offset,
        layout_count: layout.len(),
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        min_p: p.min_p,
        rng_seed: p.rng_seed.map(|seed| seed & 0xFFFF_FFFF),
        deterministic: p.deterministic,
        top_logprobs: p.top_logprobs,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        repetition_context_size: p.repetition_context_size,
        repetition_penalty: p.repetition_penalty,
        stop_sequences: &p.stop_sequences,
        tool_schemas_json: &p.tool_schemas_json,
        active_tool_schemas_json: if p.active_tool_schemas_json.is_empty() {
            &p.tool_schemas_json
        } else {
            &p.active_tool_schemas_json
        },
        tool_calling_tokens: &p.tool_calling_tokens,
        output_frame_tokens: p
            .output_frame_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        thinking_tokens: &p.thinking_tokens,
        tool_choice: &p.tool_choice,
        min_tool_calls: p.min_tool_calls,
        max_tool_calls: p.max_tool_calls,
        response_format_json: &p.response_format_json,
        modal_options_json: &p.modal_options_json,
        logit_bias: p
            .logit_bias
            .iter()
            .map(|&(token, bias)| BiasMeta { token, bias })
            .collect(),
        task_name: &p.task_name,
        reasoning_effort: &p.reasoning_effort,
        prefix_cache: p.prefix_cache,
    }
}

/// Write the frame for `req`: the metadata is serialised straight into the frame buffer
/// (no intermediate JSON tree), then the payload is appended.
pub fn encode(req: &Request) -> Result<Vec<u8>> {
    if req.prompts.is_empty() {
        return Err(Error::invalid(
            "prompts: a request needs at least one prompt",
        ));
    }
    let blobs: usize = req
        .prompts
        .iter()
        .map(|p| {
            p.text.len()
                + p.images.iter().map(Vec::len).sum::<usize>()
                + p.audio.iter().map(Vec::len).sum::<usize>()
                + 256
        })
        .sum();
    let mut payload = Payload {
        bytes: Vec::with_capacity(blobs),
    };
    let mut prompts = Vec::with_capacity(req.prompts.len());
    for (index, p) in req.prompts.iter().enumerate() {
        validate(p, index)?;
        prompts.push(place(index, p, &mut payload));
    }
    let meta = RequestMeta {
        request_id: req.request_id,
        model_id: &req.model_id,
        model_path: &req.model_path,
        request_type: req.request_type.code(),
        request_channel_id: req.request_channel_id,
        response_channel_id: req.response_channel_id,
        prompts,
    };

    let mut frame = Vec::with_capacity(4 + 2048 + payload.bytes.len());
    frame.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut frame, &meta)
        .map_err(|e| Error::invalid(format!("request metadata: {e}")))?;
    let meta_len = u32::try_from(frame.len() - 4)
        .map_err(|_| Error::invalid("request metadata exceeds the 4 GiB a frame can describe"))?;
    frame[..4].copy_from_slice(&meta_len.to_le_bytes());
    frame.extend_from_slice(&payload.bytes);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;
    use crate::wire::RequestType;

    fn request(p: PromptPayload) -> Request {
        Request {
            request_id: 1,
            model_id: "m".into(),
            model_path: String::new(),
            request_type: RequestType::Generation,
            request_channel_id: 0,
            response_channel_id: 2,
            prompts: vec![p],
        }
    }

    fn meta(frame: &[u8]) -> String {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        String::from_utf8(frame[4..4 + len].to_vec()).unwrap()
    }

    #[test]
    fn an_unset_seed_is_left_out_and_a_repeated_frame_key_keeps_its_last_value() {
        let p = PromptPayload {
            rng_seed: None,
            output_frame_tokens: vec![
                ("marker.a".into(), "1".into()),
                ("channel.b".into(), "2".into()),
                ("marker.a".into(), "3".into()),
            ],
            ..PromptPayload::default()
        };
        let frame = encode(&request(p)).unwrap();
        let m = meta(&frame);
        assert!(!m.contains("rng_seed"), "{m}");
        assert!(
            m.contains(r#""output_frame_tokens":{"marker.a":"3","channel.b":"2"}"#),
            "{m}"
        );
        assert_eq!(decode(&frame).unwrap().prompts[0].rng_seed, None);
    }

    #[test]
    fn numbers_that_are_not_finite_are_refused_by_name() {
        let p = PromptPayload {
            top_p: f64::NAN,
            ..PromptPayload::default()
        };
        let err = encode(&request(p)).unwrap_err();
        assert!(err.message.contains("prompts[0].top_p"), "{err}");
        let p = PromptPayload {
            logit_bias: vec![(5, f64::INFINITY)],
            ..PromptPayload::default()
        };
        let err = encode(&request(p)).unwrap_err();
        assert!(err.message.contains("prompts[0].logit_bias"), "{err}");
    }
}
