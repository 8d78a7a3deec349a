//! Reading a frame back into a [`Request`] (the emulator's side), validating every offset.
//! Absent per-prompt keys take the protocol defaults.

use super::super::json::Obj;
use super::super::layout::{LayoutSegment, SegmentKind};
use super::super::tree::{self, Node};
use super::types::{
    CapabilityInput, PromptPayload, Request, RequestType, ThinkingTokens, ToolCallingTokens,
};
use super::MAX_FRAME_BYTES;
use crate::error::{Error, Result};

/// Split a frame into its metadata JSON (a tree borrowing from the frame) and its payload
/// region.
pub fn split_frame(frame: &[u8]) -> Result<(Node<'_>, &[u8])> {
    if frame.len() < 4 {
        return Err(Error::protocol(format!(
            "request frame is {} bytes; it needs at least the 4-byte metadata length",
            frame.len()
        )));
    }
    if frame.len() > MAX_FRAME_BYTES {
        return Err(Error::protocol(format!(
            "request frame of {} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
            frame.len()
        )));
    }
    let meta_len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let rest = &frame[4..];
    if meta_len > rest.len() {
        return Err(Error::protocol(format!(
            "request frame truncated: metadata length says {meta_len} bytes but only {} follow",
            rest.len()
        )));
    }
    let meta = tree::parse_slice(&rest[..meta_len])
        .map_err(|e| Error::protocol(format!("request metadata is not valid JSON: {e}")))?;
    if !matches!(meta, Node::Object(_)) {
        return Err(Error::protocol("request metadata must be a JSON object"));
    }
    Ok((meta, &rest[meta_len..]))
}

/// The `size` bytes at `offset`; `what` names them in the error.
fn blob(payload: &[u8], offset: u64, size: u64, what: impl FnOnce() -> String) -> Result<&[u8]> {
    if size == 0 {
        return Ok(&[]);
    }
    let end = offset
        .checked_add(size)
        .filter(|e| *e <= payload.len() as u64)
        .ok_or_else(|| {
            Error::protocol(format!(
                "{}: bytes {offset}..{} lie outside the {}-byte payload",
                what(),
                offset.saturating_add(size),
                payload.len()
            ))
        })?;
    Ok(&payload[offset as usize..end as usize])
}

/// The next `len` bytes of `data` after `cursor` (advanced past them), if there are that many.
fn take(data: &[u8], cursor: &mut usize, len: usize) -> Option<Vec<u8>> {
    let end = cursor.checked_add(len).filter(|e| *e <= data.len())?;
    let out = data[*cursor..end].to_vec();
    *cursor = end;
    Some(out)
}

fn split_spans(spans: &[u8], data: &[u8], what: impl Fn() -> String) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(spans.len() / 8);
    let mut cursor = 0usize;
    for chunk in spans.chunks_exact(8) {
        let len = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8)")) as usize;
        out.push(take(data, &mut cursor, len).ok_or_else(|| {
            Error::protocol(format!(
                "{}: spans add up to more than the {} data bytes",
                what(),
                data.len()
            ))
        })?);
    }
    if cursor != data.len() {
        return Err(Error::protocol(format!(
            "{}: spans cover {cursor} of {} data bytes",
            what(),
            data.len()
        )));
    }
    Ok(out)
}

/// The prompt fields every reader takes from the same keys alike, with the defaults of
/// [`PromptPayload::default`]: sampling values from `sp`, logits values from `lp` (both are
/// the prompt object itself in a frame), the rest from the prompt object `o`.
pub(in crate::wire) fn read_common(
    o: &Obj,
    sp: &Obj,
    lp: &Obj,
    strict_tools: bool,
) -> Result<PromptPayload> {
    let d = PromptPayload::default();
    Ok(PromptPayload {
        max_generated_tokens: o.u64_or("max_generated_tokens", d.max_generated_tokens)?,
        temperature: sp.f64_or("temperature", d.temperature)?,
        top_p: sp.f64_or("top_p", d.top_p)?,
        top_k: sp.i64_or("top_k", d.top_k)?,
        min_p: sp.f64_or("min_p", d.min_p)?,
        deterministic: sp.bool_or("deterministic", d.deterministic)?,
        frequency_penalty: lp.f64_or("frequency_penalty", d.frequency_penalty)?,
        presence_penalty: lp.f64_or("presence_penalty", d.presence_penalty)?,
        repetition_context_size: lp.i64_or("repetition_context_size", d.repetition_context_size)?,
        repetition_penalty: lp.f64_or("repetition_penalty", d.repetition_penalty)?,
        stop_sequences: o.strings("stop_sequences")?,
        tool_schemas_json: o.string_or("tool_schemas_json", &d.tool_schemas_json)?,
        active_tool_schemas_json: o
            .string_or("active_tool_schemas_json", &d.active_tool_schemas_json)?,
        tool_calling_tokens: ToolCallingTokens::from_obj(
            &o.object_or_empty("tool_calling_tokens")?,
            strict_tools,
        )?,
        thinking_tokens: ThinkingTokens::from_obj(&o.object_or_empty("thinking_tokens")?)?,
        max_tool_calls: o.i64_or("max_tool_calls", d.max_tool_calls)?,
        response_format_json: o.string_or("response_format_json", &d.response_format_json)?,
        modal_options_json: o.string_or("modal_options_json", &d.modal_options_json)?,
        task_name: o.opt_string("task_name")?,
        reasoning_effort: o.opt_string("reasoning_effort")?,
        prefix_cache: o.bool_or("prefix_cache", d.prefix_cache)?,
        ..d
    })
}

/// A blob sized by a key: its name (for messages) and the keys of its offset and size.
struct SizedBlob {
    name: &'static str,
    offset: &'static str,
    size: &'static str,
}

/// The `size` bytes at `offset_key`; `name` names the blob in an error.
fn blob_at<'a>(
    o: &Obj,
    payload: &'a [u8],
    name: &str,
    offset_key: &str,
    size: u64,
) -> Result<&'a [u8]> {
    let offset = o.u64_or(offset_key, 0)?;
    blob(payload, offset, size, || o.at(name))
}

fn sized_blob<'a>(o: &Obj, payload: &'a [u8], keys: &SizedBlob) -> Result<&'a [u8]> {
    let size = o.u64_or(keys.size, 0)?;
    blob_at(o, payload, keys.name, keys.offset, size)
}

const TEXT: SizedBlob = SizedBlob {
    name: "text",
    offset: "text_offset",
    size: "text_size",
};
const CAPABILITY_DATA: SizedBlob = SizedBlob {
    name: "capability_data",
    offset: "capability_data_offset",
    size: "capability_data_size",
};

/// Media items of one kind: `count` u64 spans at `sizes_offset` over the `data` blob.
struct Media {
    label: &'static str,
    count: &'static str,
    sizes_name: &'static str,
    sizes_offset: &'static str,
    data: SizedBlob,
}

const IMAGES: Media = Media {
    label: "images",
    count: "image_count",
    sizes_name: "image_sizes",
    sizes_offset: "image_sizes_offset",
    data: SizedBlob {
        name: "image_data",
        offset: "image_data_offset",
        size: "image_data_size",
    },
};
const AUDIO: Media = Media {
    label: "audio",
    count: "audio_count",
    sizes_name: "audio_sizes",
    sizes_offset: "audio_sizes_offset",
    data: SizedBlob {
        name: "audio_data",
        offset: "audio_data_offset",
        size: "audio_data_size",
    },
};

fn media(o: &Obj, payload: &[u8], m: &Media) -> Result<Vec<Vec<u8>>> {
    let count = o.u64_or(m.count, 0)?;
    let spans = blob_at(
        o,
        payload,
        m.sizes_name,
        m.sizes_offset,
        count.saturating_mul(8),
    )?;
    let data = sized_blob(o, payload, &m.data)?;
    split_spans(spans, data, || o.at(m.label))
}

fn decode_prompt(o: &Obj, payload: &[u8]) -> Result<PromptPayload> {
    let d = PromptPayload::default();
    let text = sized_blob(o, payload, &TEXT)?.to_vec();
    let images = media(o, payload, &IMAGES)?;
    let audio = media(o, payload, &AUDIO)?;
    let cap_data = sized_blob(o, payload, &CAPABILITY_DATA)?;
    let mut capabilities = Vec::new();
    let mut cursor = 0usize;
    for (i, c) in o.objects("capabilities")?.iter().enumerate() {
        let size = c.u64_or("payload_size", 0)? as usize;
        let payload = take(cap_data, &mut cursor, size).ok_or_else(|| {
            Error::protocol(format!(
                "{}: payload_size {size} runs past the capability data",
                o.at(&format!("capabilities[{i}]"))
            ))
        })?;
        capabilities.push(CapabilityInput {
            name: c.string_or("name", "")?,
            position: c.i64_or("position", 0)?,
            payload,
        });
    }

    let layout_count = o.u64_or("layout_count", 0)?;
    let layout_raw = blob_at(
        o,
        payload,
        "layout",
        "layout_offset",
        layout_count.saturating_mul(16),
    )?;
    let mut layout = Vec::with_capacity(layout_count as usize);
    let mut cap_index = 0usize;
    for seg in layout_raw.chunks_exact(16) {
        let kind = SegmentKind::from_wire_code(seg[0]).ok_or_else(|| {
            Error::protocol(format!(
                "{}: unknown segment type {}",
                o.at("layout"),
                seg[0]
            ))
        })?;
        let mut length = u64::from_le_bytes(seg[8..16].try_into().expect("16-byte segment"));
        if kind == SegmentKind::Capability {
            length = capabilities
                .get(cap_index)
                .map(|c| c.payload.len() as u64)
                .unwrap_or(0);
            cap_index += 1;
        }
        layout.push(LayoutSegment::new(kind, length));
    }

    let mut logit_bias = Vec::new();
    for e in o.objects("logit_bias")? {
        logit_bias.push((e.i64_or("token", 0)?, e.f64_or("bias", 0.0)?));
    }
    let output_frame_tokens = match o.get("output_frame_tokens") {
        Some(Node::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.to_string(),
                    v.as_str()
                        .ok_or_else(|| {
                            Error::protocol(format!(
                                "{}: values must be strings",
                                o.at("output_frame_tokens")
                            ))
                        })?
                        .to_string(),
                ))
            })
            .collect::<Result<Vec<_>>>()?,
        None | Some(Node::Null) => Vec::new(),
        Some(_) => {
            return Err(Error::protocol(format!(
                "{}: expected an object",
                o.at("output_frame_tokens")
            )))
        }
    };
    let num_candidates = o.u64_or("num_candidates", d.num_candidates.into())?.max(1) as u32;
    let best_of = o.u64_or("best_of", u64::from(num_candidates))? as u32;
    Ok(PromptPayload {
        text,
        images,
        audio,
        capabilities,
        layout: Some(layout),
        num_candidates,
        best_of,
        final_candidates: o.u64_or("final_candidates", u64::from(best_of))? as u32,
        rng_seed: match o.get("rng_seed") {
            None => None,
            Some(Node::Null) => Some(0),
            Some(_) => Some(o.u64_or("rng_seed", 0)?),
        },
        top_logprobs: o.u64_or("top_logprobs", d.top_logprobs.into())? as u32,
        output_frame_tokens,
        tool_choice: o.string_or("tool_choice", &d.tool_choice)?,
        min_tool_calls: o.i64_or("min_tool_calls", d.min_tool_calls)?,
        logit_bias,
        ..read_common(o, o, o, false)?
    })
}

/// Read a frame back into a [`Request`]. Absent per-prompt keys take the protocol defaults
/// (older engines and clients omit some); wrong types and out-of-range offsets are errors.
pub fn decode(frame: &[u8]) -> Result<Request> {
    let (meta, payload) = split_frame(frame)?;
    let top = Obj::new(&meta, "request", Error::protocol)?;
    let code = top.u64_req("request_type")?;
    let request_type = RequestType::from_code(code)
        .ok_or_else(|| Error::protocol(format!("request.request_type: unknown code {code}")))?;
    let prompts = top
        .objects("prompts")?
        .iter()
        .map(|p| decode_prompt(p, payload))
        .collect::<Result<Vec<_>>>()?;
    if prompts.is_empty() {
        return Err(Error::protocol("request.prompts: empty"));
    }
    Ok(Request {
        request_id: top.u64_req("request_id")?,
        model_id: top.string_or("model_id", "")?,
        model_path: top.string_or("model_path", "")?,
        request_type,
        request_channel_id: top.u64_or("request_channel_id", 0)?,
        response_channel_id: top.u64_req("response_channel_id")?,
        prompts,
    })
}
