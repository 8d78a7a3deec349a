//! The reference serializer's input vocabulary (`__test__/fixtures/wire-vectors.json`):
//! `{ request: {...}, prompts: [{ prompt_bytes, sampling_params: {...}, logits_params: {...}, ... }] }`
//! turned into a typed [`Request`]. Byte fields are base64 strings. Unknown keys and wrong
//! types are refused with an error naming the field.

use base64::Engine as _;
use serde_json::Value;

use super::json::Obj;
use super::layout::{LayoutSegment, SegmentKind};
use super::request::{read_common, CapabilityInput, PromptPayload, Request, RequestType};
use super::tree::{self, Node};
use crate::error::{Error, Result};

const REQUEST_KEYS: &[&str] = &[
    "request_id",
    "model_id",
    "model_path",
    "request_type",
    "request_channel_id",
    "response_channel_id",
];

const PROMPT_KEYS: &[&str] = &[
    "prompt_bytes",
    "prompt",
    "image_buffers",
    "audio_buffers",
    "capabilities",
    "layout",
    "max_generated_tokens",
    "num_candidates",
    "best_of",
    "final_candidates",
    "stop_sequences",
    "sampling_params",
    "logits_params",
    "tool_schemas_json",
    "active_tool_schemas_json",
    "tool_calling_tokens",
    "output_frame_tokens",
    "thinking_tokens",
    "tool_choice",
    "min_tool_calls",
    "max_tool_calls",
    "response_format_json",
    "modal_options_json",
    "task_name",
    "reasoning_effort",
    "prefix_cache",
];

const SAMPLING_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "rng_seed",
    "deterministic",
];

const LOGITS_KEYS: &[&str] = &[
    "top_logprobs",
    "frequency_penalty",
    "presence_penalty",
    "repetition_context_size",
    "repetition_penalty",
    "logit_bias",
];

/// A prompt's bytes given beside the JSON text, so the largest field of a request skips JSON:
/// base64 text, or the bytes themselves.
#[derive(Clone, Copy, Debug)]
pub enum SideBytes<'a> {
    Base64(&'a str),
    Raw(&'a [u8]),
}

/// Decoded with SIMD; on failure `base64` says what is wrong (both accept exactly the same
/// text: padded, canonical, no whitespace).
fn base64_field(o: &Obj, key: &str, s: &str) -> Result<Vec<u8>> {
    base64_simd::STANDARD.decode_to_vec(s).or_else(|_| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| o.fail(key, format!("not valid base64: {e}")))
    })
}

fn bytes_field(o: &Obj, key: &str, v: &Node) -> Result<Vec<u8>> {
    match v {
        Node::Str(s) => base64_field(o, key, s),
        Node::Null => Ok(Vec::new()),
        other => Err(o.fail(
            key,
            format!(
                "expected base64 text or a Buffer, got {}",
                other.type_name()
            ),
        )),
    }
}

fn byte_list(o: &Obj, key: &str) -> Result<Vec<Vec<u8>>> {
    o.array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| bytes_field(o, &format!("{key}[{i}]"), v))
        .collect()
}

/// `logit_bias` as a `{token_id: bias}` map (the reference form), or as a list of
/// `[token, bias]` pairs or `{token, bias}` entries when the order must survive a
/// JavaScript object (which sorts integer-like keys).
fn parse_logit_bias(lp: &Obj) -> Result<Vec<(i64, f64)>> {
    let mut out = Vec::new();
    match lp.get("logit_bias") {
        None | Some(Node::Null) => {}
        Some(Node::Array(items)) => {
            out.reserve(items.len());
            for (i, item) in items.iter().enumerate() {
                let pair = match item {
                    Node::Array(p) if p.len() == 2 => (p[0].as_i64(), p[1].as_f64()),
                    m @ Node::Object(_) => (
                        m.get("token").and_then(Node::as_i64),
                        m.get("bias").and_then(Node::as_f64),
                    ),
                    _ => (None, None),
                };
                match pair {
                    (Some(t), Some(b)) => out.push((t, b)),
                    _ => {
                        return Err(lp.fail(
                            &format!("logit_bias[{i}]"),
                            "expected [token, bias] or {token, bias}",
                        ))
                    }
                }
            }
        }
        Some(_) => {
            let bias = lp.object_or_empty("logit_bias")?;
            // Entry by entry: a map can hold thousands of ids.
            for (key, v) in bias.entries() {
                let token: i64 = key
                    .trim()
                    .parse()
                    .map_err(|_| bias.fail(key, "keys must be token ids (integers)"))?;
                out.push((token, bias.f64_of(key, Some(v))?.unwrap_or(0.0)));
            }
        }
    }
    Ok(out)
}

fn parse_prompt(o: &Obj, side: Option<SideBytes>) -> Result<PromptPayload> {
    o.deny_unknown(PROMPT_KEYS)?;
    let text = match (side, o.get("prompt_bytes"), o.get("prompt")) {
        (Some(_), Some(v), _) if !v.is_null() => {
            return Err(o.fail("prompt_bytes", "given both in the JSON and beside it"))
        }
        (Some(SideBytes::Base64(s)), _, _) => base64_field(o, "prompt_bytes", s)?,
        (Some(SideBytes::Raw(b)), _, _) => b.to_vec(),
        (None, Some(v), _) if !v.is_null() => bytes_field(o, "prompt_bytes", v)?,
        (_, _, Some(Node::Str(s))) => s.as_bytes().to_vec(),
        (_, _, Some(Node::Null)) | (_, _, None) => Vec::new(),
        (_, _, Some(other)) => {
            return Err(o.fail(
                "prompt",
                format!("expected a string, got {}", other.type_name()),
            ))
        }
    };

    let mut capabilities = Vec::new();
    for c in o.objects("capabilities")? {
        c.deny_unknown(&["name", "position", "payload"])?;
        capabilities.push(CapabilityInput {
            name: c.string_or("name", "")?,
            position: c.i64_or("position", 0)?,
            payload: match c.get("payload") {
                Some(v) => bytes_field(&c, "payload", v)?,
                None => Vec::new(),
            },
        });
    }

    let layout = match o.get("layout") {
        None | Some(Node::Null) => None,
        Some(_) => {
            let mut segs = Vec::new();
            for s in o.objects("layout")? {
                s.deny_unknown(&["type", "length"])?;
                let kind = match s.string_or("type", "text")?.to_ascii_lowercase().as_str() {
                    "text" => SegmentKind::Text,
                    "image" => SegmentKind::Image,
                    "audio" => SegmentKind::Audio,
                    "capability" => SegmentKind::Capability,
                    other => {
                        return Err(s.fail(
                            "type",
                            format!("unknown segment type '{other}'; expected text, image, audio or capability"),
                        ))
                    }
                };
                segs.push(LayoutSegment::new(kind, s.u64_or("length", 0)?));
            }
            // An empty list means "use the default layout", as in the reference.
            (!segs.is_empty()).then_some(segs)
        }
    };

    let sp = o.object_or_empty("sampling_params")?;
    sp.deny_unknown(SAMPLING_KEYS)?;
    let lp = o.object_or_empty("logits_params")?;
    lp.deny_unknown(LOGITS_KEYS)?;

    let logit_bias = parse_logit_bias(&lp)?;

    let output_frame_tokens = {
        let oft = o.object_or_empty("output_frame_tokens")?;
        oft.entries()
            .map(|(k, v)| {
                Ok((
                    k.to_string(),
                    oft.string_of(k, Some(v))?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>>>()?
    };

    let tool_choice = match o.get("tool_choice") {
        None | Some(Node::Null) => PromptPayload::default().tool_choice,
        Some(Node::Str(s)) => s.to_string(),
        Some(v @ Node::Object(_)) => crate::format::python_json(&v.to_value(), true),
        Some(other) => {
            return Err(o.fail(
                "tool_choice",
                format!("expected a string or an object, got {}", other.type_name()),
            ))
        }
    };

    let d = PromptPayload::default();
    let num_candidates = o.u64_or("num_candidates", d.num_candidates.into())?.max(1);
    let best_of = o.u64_or("best_of", num_candidates)?;
    let final_candidates = o.u64_or("final_candidates", best_of)?;
    let to_u32 = |key: &str, v: u64| -> Result<u32> {
        u32::try_from(v).map_err(|_| o.fail(key, format!("{v} is too large")))
    };
    Ok(PromptPayload {
        text,
        images: byte_list(o, "image_buffers")?,
        audio: byte_list(o, "audio_buffers")?,
        capabilities,
        layout,
        num_candidates: to_u32("num_candidates", num_candidates)?,
        best_of: to_u32("best_of", best_of)?,
        final_candidates: to_u32("final_candidates", final_candidates)?,
        // Always present, as from the reference serializer: 0 when the caller gave none.
        rng_seed: Some(sp.u64_or("rng_seed", 0)? & 0xFFFF_FFFF),
        top_logprobs: to_u32(
            "top_logprobs",
            lp.u64_or("top_logprobs", d.top_logprobs.into())?,
        )?,
        output_frame_tokens,
        tool_choice,
        // The reference's `x or 1`: a 0 counts as unset.
        min_tool_calls: match o.i64_or("min_tool_calls", 0)? {
            0 => d.min_tool_calls,
            n => n,
        },
        logit_bias,
        ..read_common(o, &sp, &lp, true)?
    })
}

/// Parse `{ request, prompts }` in the reference vocabulary.
pub fn parse_request(input: &Value) -> Result<Request> {
    parse_request_with(&Node::from_value(input), &[])
}

/// [`parse_request_with`] of JSON text; text that is not JSON is an error about `input`.
pub fn parse_request_text(input: &str, prompt_bytes: &[Option<SideBytes>]) -> Result<Request> {
    let tree = tree::parse(input).map_err(|e| Error::not_json("input", e))?;
    parse_request_with(&tree, prompt_bytes)
}

/// [`parse_request`] with the `prompt_bytes` of each prompt given beside the JSON (`None`:
/// read from the JSON, if there).
pub fn parse_request_with(input: &Node, prompt_bytes: &[Option<SideBytes>]) -> Result<Request> {
    let root = Obj::new(input, "", Error::invalid)?;
    root.deny_unknown(&["request", "prompts"])?;
    let r = Obj::new(
        root.get("request")
            .ok_or_else(|| Error::invalid("request: required"))?,
        "request",
        Error::invalid,
    )?;
    r.deny_unknown(REQUEST_KEYS)?;
    let request_type = match r.get("request_type") {
        Some(Node::Str(s)) => RequestType::from_name(s).ok_or_else(|| {
            r.fail(
                "request_type",
                format!("unknown type '{s}'; expected generation, embedding, query, point, detect, agent, omni, prefill_task, audio or image"),
            )
        })?,
        Some(Node::U64(_) | Node::I64(_) | Node::F64(_)) => {
            let code = r.u64_req("request_type")?;
            RequestType::from_code(code)
                .ok_or_else(|| r.fail("request_type", format!("unknown code {code}; expected 0..=9")))?
        }
        None | Some(Node::Null) => RequestType::Generation,
        Some(other) => {
            return Err(r.fail(
                "request_type",
                format!("expected a name or a code, got {}", other.type_name()),
            ))
        }
    };
    let prompts = root.array("prompts")?;
    if prompt_bytes.len() > prompts.len() {
        return Err(Error::invalid(format!(
            "prompts: prompt_bytes given for {} prompts, but there are {}",
            prompt_bytes.len(),
            prompts.len()
        )));
    }
    let prompts = root
        .items("prompts")?
        .enumerate()
        .map(|(i, o)| parse_prompt(&o?, prompt_bytes.get(i).copied().flatten()))
        .collect::<Result<Vec<_>>>()?;
    if prompts.is_empty() {
        return Err(Error::invalid(
            "prompts: a request needs at least one prompt",
        ));
    }
    Ok(Request {
        request_id: r.u64_req("request_id")?,
        model_id: r
            .opt_string("model_id")?
            .ok_or_else(|| r.fail("model_id", "required"))?,
        model_path: r.string_or("model_path", "")?,
        request_type,
        request_channel_id: r.u64_or("request_channel_id", 0)?,
        response_channel_id: r.u64_req("response_channel_id")?,
        prompts,
    })
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64_simd::STANDARD.encode_to_string(bytes))
}

/// The inverse of [`parse_request`]: a request in the reference vocabulary, bytes as base64
/// and logit biases as ordered `[token, bias]` pairs (ids above 2^53 as decimal text).
pub fn to_vocab(req: &Request) -> Value {
    use serde_json::json;
    let id = |v: u64| -> Value {
        if v < (1 << 53) {
            v.into()
        } else {
            Value::String(v.to_string())
        }
    };
    let prompts: Vec<Value> = req
        .prompts
        .iter()
        .map(|p| {
            let layout: Vec<Value> = p
                .effective_layout()
                .iter()
                .map(|s| json!({"type": s.kind, "length": s.length}))
                .collect();
            let mut sampling = json!({
                "temperature": p.temperature,
                "top_p": p.top_p,
                "top_k": p.top_k,
                "min_p": p.min_p,
                "deterministic": p.deterministic,
            });
            if let Some(seed) = p.rng_seed {
                sampling["rng_seed"] = seed.into();
            }
            json!({
                "prompt_bytes": b64(&p.text),
                "image_buffers": p.images.iter().map(|i| b64(i)).collect::<Vec<_>>(),
                "audio_buffers": p.audio.iter().map(|a| b64(a)).collect::<Vec<_>>(),
                "capabilities": p.capabilities.iter().map(|c| json!({"name": c.name, "position": c.position, "payload": b64(&c.payload)})).collect::<Vec<_>>(),
                "layout": layout,
                "max_generated_tokens": p.max_generated_tokens,
                "num_candidates": p.num_candidates,
                "best_of": p.best_of,
                "final_candidates": p.final_candidates,
                "stop_sequences": p.stop_sequences,
                "sampling_params": sampling,
                "logits_params": {
                    "top_logprobs": p.top_logprobs,
                    "frequency_penalty": p.frequency_penalty,
                    "presence_penalty": p.presence_penalty,
                    "repetition_context_size": p.repetition_context_size,
                    "repetition_penalty": p.repetition_penalty,
                    "logit_bias": p.logit_bias.iter().map(|(t, b)| json!([t, b])).collect::<Vec<_>>(),
                },
                "tool_schemas_json": p.tool_schemas_json,
                "active_tool_schemas_json": p.active_tool_schemas_json,
                "tool_calling_tokens": p.tool_calling_tokens,
                "output_frame_tokens": p.output_frame_tokens.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "thinking_tokens": p.thinking_tokens,
                "tool_choice": p.tool_choice,
                "min_tool_calls": p.min_tool_calls,
                "max_tool_calls": p.max_tool_calls,
                "response_format_json": p.response_format_json,
                "modal_options_json": p.modal_options_json,
                "task_name": p.task_name,
                "reasoning_effort": p.reasoning_effort,
                "prefix_cache": p.prefix_cache,
            })
        })
        .collect();
    json!({
        "request": {
            "request_id": id(req.request_id),
            "model_id": req.model_id,
            "model_path": req.model_path,
            "request_type": req.request_type.name(),
            "request_channel_id": id(req.request_channel_id),
            "response_channel_id": id(req.response_channel_id),
        },
        "prompts": prompts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(prompt: Value) -> Value {
        json!({"request": {"request_id": 1, "model_id": "m", "response_channel_id": 2}, "prompts": [prompt]})
    }

    #[test]
    fn prompt_bytes_beside_the_json_read_as_in_it() {
        let inline = parse_request(&request(
            json!({"prompt_bytes": "aGk=", "max_generated_tokens": 3}),
        ));
        let inline = inline.unwrap();
        assert_eq!(inline.prompts[0].text, b"hi");
        let rest = request(json!({"max_generated_tokens": 3}));
        for side in [SideBytes::Base64("aGk="), SideBytes::Raw(b"hi")] {
            let rest = Node::from_value(&rest);
            assert_eq!(parse_request_with(&rest, &[Some(side)]).unwrap(), inline);
        }
        assert_eq!(
            parse_request_with(
                &Node::from_value(&request(json!({"prompt": "hi", "max_generated_tokens": 3}))),
                &[None]
            )
            .unwrap(),
            inline
        );
    }

    #[test]
    fn prompt_bytes_beside_the_json_are_checked() {
        let msg = |prompt: Value, side: &[Option<SideBytes>]| {
            parse_request_with(&Node::from_value(&request(prompt)), side)
                .unwrap_err()
                .message
        };
        assert!(msg(json!({}), &[Some(SideBytes::Base64("***"))])
            .starts_with("prompts[0].prompt_bytes: not valid base64"),);
        assert_eq!(
            msg(
                json!({"prompt_bytes": "aGk="}),
                &[Some(SideBytes::Raw(b"hi"))]
            ),
            "prompts[0].prompt_bytes: given both in the JSON and beside it"
        );
        assert_eq!(
            msg(json!({}), &[None, Some(SideBytes::Raw(b"hi"))]),
            "prompts: prompt_bytes given for 2 prompts, but there are 1"
        );
    }

    #[test]
    fn text_input_keeps_the_last_of_a_repeated_key_and_reads_big_bias_maps_in_order() {
        let mut bias = String::new();
        for t in 0..5000 {
            bias.push_str(&format!("\"{t}\":{}.5,", t % 7));
        }
        bias.push_str("\"3\":-1");
        let text = format!(
            r#"{{"request":{{"request_id":1,"model_id":"m","response_channel_id":2}},"prompts":[{{"output_frame_tokens":{{"a":"1","b":"2","a":"3"}},"logits_params":{{"logit_bias":{{{bias}}}}}}}]}}"#
        );
        let req = parse_request_text(&text, &[]).unwrap();
        let p = &req.prompts[0];
        assert_eq!(
            p.output_frame_tokens,
            [("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(p.logit_bias.len(), 5000);
        assert_eq!(p.logit_bias[3], (3, -1.0));
        assert_eq!(p.logit_bias[4999], (4999, 1.5));
        assert_eq!(
            parse_request_text("{", &[]).unwrap_err().message,
            "input: not valid JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn the_simd_decoder_accepts_what_base64_accepts() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next() as usize;
                    // Mostly the alphabet, sometimes padding, URL-safe symbols or whitespace.
                    alphabet[if r % 9 == 0 { 64 + r / 9 % 5 } else { r % 64 }]
                })
                .collect();
            let simd = base64_simd::STANDARD.decode_to_vec(&text).ok();
            let reference = base64::engine::general_purpose::STANDARD.decode(&text).ok();
            assert_eq!(simd, reference, "{}", String::from_utf8_lossy(&text));
            accepted += usize::from(simd.is_some());
        }
        assert!(accepted > 1000, "{accepted}");
        // Long enough for the vector paths: valid encodings, and each with one symbol changed.
        for _ in 0..4_000 {
            let len = (next() % 300) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut text = base64::engine::general_purpose::STANDARD
                .encode(&data)
                .into_bytes();
            for round in 0..2 {
                let simd = base64_simd::STANDARD.decode_to_vec(&text).ok();
                let reference = base64::engine::general_purpose::STANDARD.decode(&text).ok();
                assert_eq!(simd, reference, "{}", String::from_utf8_lossy(&text));
                if round == 0 && !text.is_empty() {
                    let at = (next() as usize) % text.len();
                    text[at] = alphabet[(next() as usize) % alphabet.len()];
                }
            }
        }
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(
            base64_simd::STANDARD.encode_to_string(&bytes),
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
    }
}
