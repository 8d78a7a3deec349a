//! The frame's metadata JSON, written straight into the frame buffer: keys in the reference
//! serializer's order, compact, strings escaped and numbers printed exactly as `serde_json`
//! does (`tests/wire_vectors.rs` holds it to the reference bytes).

use super::super::tree::{merge_repeated_keys, repeated_keys};
use super::types::{PromptPayload, Request, ToolCallFormat};

/// Where one prompt's blobs went in the payload (offsets relative to its start).
pub(super) struct Placed {
    pub text: (usize, usize),
    pub image_data: (usize, usize),
    pub image_sizes_offset: usize,
    pub audio_data: (usize, usize),
    pub audio_sizes_offset: usize,
    pub capability_data: (usize, usize),
    pub layout_offset: usize,
    pub layout_count: usize,
}

/// serde_json's escapes: `"`, `\` and control characters (short forms where JSON has them,
/// `u` for `\u00XX`); 0 for a byte written as it is.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let plain = bytes
        .iter()
        .position(|&b| ESCAPE[usize::from(b)] != 0)
        .unwrap_or(bytes.len());
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(&bytes[..plain]);
    // Byte by byte from the first escape: escapes come often in JSON text (every quote), and
    // a copy call per short run costs more than the pushes.
    for &b in &bytes[plain..] {
        match ESCAPE[usize::from(b)] {
            0 => out.push(b),
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            short => out.extend_from_slice(&[b'\\', short]),
        }
    }
    out.push(b'"');
}

/// A number as serde_json prints it (a float that is not finite would be `null`; the encoder
/// refuses those first).
fn write_number<N: serde::Serialize>(out: &mut Vec<u8>, n: N) {
    serde_json::to_writer(out, &n).expect("a number always serializes into a Vec");
}

/// One JSON object being written: `key` writes the separator and the key.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// A key that needs no escaping (one of ours).
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn any_key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn num<N: serde::Serialize>(&mut self, key: &str, n: N) {
        write_number(self.key(key), n);
    }

    fn str(&mut self, key: &str, s: &str) {
        write_str(self.key(key), s);
    }

    fn opt_str(&mut self, key: &str, s: Option<&str>) {
        match s {
            Some(s) => self.str(key, s),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    fn bool(&mut self, key: &str, b: bool) {
        let text: &[u8] = if b { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// `[item, item, ...]`, each written by `write`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

fn write_format(out: &mut Vec<u8>, f: &ToolCallFormat) {
    let mut o = Object::open(out);
    for (key, value) in ToolCallFormat::KEYS.iter().zip(f.fields()) {
        o.str(key, value);
    }
    o.close();
}

fn write_prompt(out: &mut Vec<u8>, index: usize, p: &PromptPayload, at: &Placed) {
    let mut o = Object::open(out);
    o.num("prompt_index", index);
    o.num("num_candidates", p.num_candidates.max(1));
    o.num("best_of", p.best_of);
    o.num("final_candidates", p.final_candidates);
    o.num("max_generated_tokens", p.max_generated_tokens);
    o.num("text_offset", at.text.0);
    o.num("text_size", at.text.1);
    o.num("image_data_offset", at.image_data.0);
    o.num("image_data_size", at.image_data.1);
    o.num("image_sizes_offset", at.image_sizes_offset);
    o.num("image_count", p.images.len());
    o.num("audio_data_offset", at.audio_data.0);
    o.num("audio_data_size", at.audio_data.1);
    o.num("audio_sizes_offset", at.audio_sizes_offset);
    o.num("audio_count", p.audio.len());
    o.num("capability_data_offset", at.capability_data.0);
    o.num("capability_data_size", at.capability_data.1);
    write_array(o.key("capabilities"), &p.capabilities, |out, c| {
        let mut o = Object::open(out);
        o.str("name", &c.name);
        o.num("position", c.position);
        o.num("payload_size", c.payload.len());
        o.close();
    });
    o.num("layout_offset", at.layout_offset);
    o.num("layout_count", at.layout_count);
    o.num("temperature", p.temperature);
    o.num("top_p", p.top_p);
    o.num("top_k", p.top_k);
    o.num("min_p", p.min_p);
    // Absent, not `null`: the engine's default seed applies only to a missing key.
    if let Some(seed) = p.rng_seed {
        o.num("rng_seed", seed & 0xFFFF_FFFF);
    }
    o.bool("deterministic", p.deterministic);
    o.num("top_logprobs", p.top_logprobs);
    o.num("frequency_penalty", p.frequency_penalty);
    o.num("presence_penalty", p.presence_penalty);
    o.num("repetition_context_size", p.repetition_context_size);
    o.num("repetition_penalty", p.repetition_penalty);
    write_array(o.key("stop_sequences"), &p.stop_sequences, |out, s| {
        write_str(out, s)
    });
    o.str("tool_schemas_json", &p.tool_schemas_json);
    o.str(
        "active_tool_schemas_json",
        if p.active_tool_schemas_json.is_empty() {
            &p.tool_schemas_json
        } else {
            &p.active_tool_schemas_json
        },
    );
    {
        let tools = &p.tool_calling_tokens;
        let mut t = Object::open(o.key("tool_calling_tokens"));
        write_array(t.key("formats"), &tools.formats, write_format);
        t.str("section_start", &tools.section_start);
        t.str("section_end", &tools.section_end);
        t.close();
    }
    {
        let mut f = Object::open(o.key("output_frame_tokens"));
        // A payload built in Rust may repeat a key: write what the JSON object means by it.
        let tokens = &p.output_frame_tokens;
        let merged;
        let tokens = if repeated_keys(tokens).is_empty() {
            tokens
        } else {
            merged = {
                let mut owned = tokens.clone();
                merge_repeated_keys(&mut owned);
                owned
            };
            &merged
        };
        for (key, value) in tokens {
            write_str(f.any_key(key), value);
        }
        f.close();
    }
    {
        let thinking = &p.thinking_tokens;
        let mut t = Object::open(o.key("thinking_tokens"));
        t.str("start", &thinking.start);
        t.str("end", &thinking.end);
        t.bool("required", thinking.required);
        t.close();
    }
    o.str("tool_choice", &p.tool_choice);
    o.num("min_tool_calls", p.min_tool_calls);
    o.num("max_tool_calls", p.max_tool_calls);
    o.str("response_format_json", &p.response_format_json);
    o.str("modal_options_json", &p.modal_options_json);
    write_array(o.key("logit_bias"), &p.logit_bias, |out, &(token, bias)| {
        let mut o = Object::open(out);
        o.num("token", token);
        o.num("bias", bias);
        o.close();
    });
    o.opt_str("task_name", p.task_name.as_deref());
    o.opt_str("reasoning_effort", p.reasoning_effort.as_deref());
    o.bool("prefix_cache", p.prefix_cache);
    o.close();
}

/// Append the request's metadata object to `out`; `placed[i]` is where prompt i's blobs are.
pub(super) fn write_meta(out: &mut Vec<u8>, req: &Request, placed: &[Placed]) {
    let mut o = Object::open(out);
    o.num("request_id", req.request_id);
    o.str("model_id", &req.model_id);
    o.str("model_path", &req.model_path);
    o.num("request_type", req.request_type.code());
    o.num("request_channel_id", req.request_channel_id);
    o.num("response_channel_id", req.response_channel_id);
    let out = o.key("prompts");
    out.push(b'[');
    for (i, (p, at)) in req.prompts.iter().zip(placed).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_prompt(out, i, p, at);
    }
    out.push(b']');
    o.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let all: String = (0u8..0x80).map(char::from).chain("é€😀".chars()).collect();
        for s in [all.as_str(), "", "plain", "a\"b\\c", "\u{7f}\u{1f}\u{0}"] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn output_frame_tokens_keep_the_last_value_of_a_key_in_its_first_place() {
        let p = PromptPayload {
            output_frame_tokens: vec![
                ("a".into(), "1".into()),
                ("b\"".into(), "2".into()),
                ("a".into(), "3".into()),
            ],
            ..PromptPayload::default()
        };
        let mut out = Vec::new();
        let at = Placed {
            text: (0, 0),
            image_data: (0, 0),
            image_sizes_offset: 0,
            audio_data: (0, 0),
            audio_sizes_offset: 0,
            capability_data: (0, 0),
            layout_offset: 0,
            layout_count: 0,
        };
        write_prompt(&mut out, 0, &p, &at);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""output_frame_tokens":{"a":"3","b\"":"2"}"#),
            "{text}"
        );
    }

    /// Whatever the content, the metadata is what serde_json writes for the same JSON.
    #[test]
    fn the_metadata_reads_back_and_prints_as_serde_json_prints_it() {
        use super::super::types::{CapabilityInput, ThinkingTokens, ToolCallingTokens};
        let odd = "q\"uote\\ \n\t\u{1} \u{7f} é 😀";
        let p = PromptPayload {
            capabilities: vec![CapabilityInput {
                name: odd.into(),
                position: -3,
                payload: vec![1, 2],
            }],
            temperature: 0.1,
            top_p: 1e-7,
            min_p: -0.0,
            frequency_penalty: 1e21,
            presence_penalty: 123456.789,
            top_k: i64::MIN,
            max_generated_tokens: u64::MAX,
            rng_seed: Some(u64::MAX),
            stop_sequences: vec![odd.into(), String::new()],
            tool_schemas_json: r#"[{"a":"b\n"}]"#.into(),
            tool_calling_tokens: ToolCallingTokens {
                formats: vec![ToolCallFormat {
                    name: odd.into(),
                    ..ToolCallFormat::default()
                }],
                section_start: "<s>".into(),
                section_end: odd.into(),
            },
            output_frame_tokens: vec![(odd.into(), odd.into())],
            thinking_tokens: ThinkingTokens {
                start: "<think>".into(),
                end: "</think>".into(),
                required: true,
            },
            logit_bias: vec![(7, -100.0), (-1, 0.5)],
            task_name: Some(odd.into()),
            reasoning_effort: None,
            ..PromptPayload::default()
        };
        let req = Request {
            request_id: u64::MAX,
            model_id: odd.into(),
            model_path: String::new(),
            request_type: super::super::RequestType::Embedding,
            request_channel_id: 0,
            response_channel_id: 1 << 60,
            prompts: vec![p.clone(), PromptPayload::default()],
        };
        let frame = super::super::encode(&req).unwrap();
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        let meta = &frame[4..4 + len];
        let value: serde_json::Value = serde_json::from_slice(meta).unwrap();
        assert_eq!(serde_json::to_vec(&value).unwrap(), meta);
        assert_eq!(value["prompts"][0]["task_name"], odd);
        assert_eq!(value["prompts"][0]["min_p"].to_string(), "-0.0");
        assert_eq!(value["prompts"][1]["task_name"], serde_json::Value::Null);
    }
}
