//! Request frames (protocol.md §3): `u32 LE metadata length | compact JSON | aligned blobs`.
//!
//! [`Request`] is the typed form. [`encode`] writes the frame byte-for-byte as the reference
//! serializer does; [`decode`] reads one back (the emulator's side), validating every offset.

use serde_json::{Map, Value};

use super::json::{self, Obj};
use super::layout::{LayoutSegment, SegmentKind};
use crate::error::{Error, Result};

/// Blobs are placed at offsets (relative to the payload start) rounded up to this.
pub const BLOB_ALIGNMENT: usize = 16;
/// A frame larger than this is refused by the decoder (the engine accepts anything; this is a
/// sanity bound against a corrupt length prefix).
pub const MAX_FRAME_BYTES: usize = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    Generation,
    Embedding,
    Query,
    Point,
    Detect,
    Agent,
    Omni,
    PrefillTask,
    Audio,
    Image,
}

impl RequestType {
    pub fn name(self) -> &'static str {
        match self {
            RequestType::Generation => "generation",
            RequestType::Embedding => "embedding",
            RequestType::Query => "query",
            RequestType::Point => "point",
            RequestType::Detect => "detect",
            RequestType::Agent => "agent",
            RequestType::Omni => "omni",
            RequestType::PrefillTask => "prefill_task",
            RequestType::Audio => "audio",
            RequestType::Image => "image",
        }
    }

    pub fn code(self) -> u64 {
        match self {
            RequestType::Generation => 0,
            RequestType::Embedding => 1,
            RequestType::Query => 2,
            RequestType::Point => 3,
            RequestType::Detect => 4,
            RequestType::Agent => 5,
            RequestType::Omni => 6,
            RequestType::PrefillTask => 7,
            RequestType::Audio => 8,
            RequestType::Image => 9,
        }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => RequestType::Generation,
            1 => RequestType::Embedding,
            2 => RequestType::Query,
            3 => RequestType::Point,
            4 => RequestType::Detect,
            5 => RequestType::Agent,
            6 => RequestType::Omni,
            7 => RequestType::PrefillTask,
            8 => RequestType::Audio,
            9 => RequestType::Image,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "generation" => RequestType::Generation,
            "embedding" => RequestType::Embedding,
            "query" => RequestType::Query,
            "point" => RequestType::Point,
            "detect" => RequestType::Detect,
            "agent" => RequestType::Agent,
            "omni" => RequestType::Omni,
            "prefill_task" => RequestType::PrefillTask,
            "audio" => RequestType::Audio,
            "image" | "image_generation" => RequestType::Image,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CapabilityInput {
    pub name: String,
    pub position: i64,
    pub payload: Vec<u8>,
}

/// One format of `tool_calling_tokens.formats` (all strings; empty when unused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallFormat {
    pub name: String,
    pub call_start: String,
    pub inline_start: String,
    pub channel: String,
    pub recipient_prefix: String,
    pub constraint_prefix: String,
    pub constraint: String,
    pub message: String,
    pub call_end: String,
}

impl ToolCallFormat {
    pub const KEYS: [&'static str; 9] = [
        "name",
        "call_start",
        "inline_start",
        "channel",
        "recipient_prefix",
        "constraint_prefix",
        "constraint",
        "message",
        "call_end",
    ];

    pub fn fields(&self) -> [&String; 9] {
        [
            &self.name,
            &self.call_start,
            &self.inline_start,
            &self.channel,
            &self.recipient_prefix,
            &self.constraint_prefix,
            &self.constraint,
            &self.message,
            &self.call_end,
        ]
    }

    fn fields_mut(&mut self) -> [&mut String; 9] {
        [
            &mut self.name,
            &mut self.call_start,
            &mut self.inline_start,
            &mut self.channel,
            &mut self.recipient_prefix,
            &mut self.constraint_prefix,
            &mut self.constraint,
            &mut self.message,
            &mut self.call_end,
        ]
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallingTokens {
    pub formats: Vec<ToolCallFormat>,
    pub section_start: String,
    pub section_end: String,
}

impl ToolCallingTokens {
    /// Read `{formats: [{name, call_start, ...}], section_start, section_end}`; with
    /// `strict`, a format key outside [`ToolCallFormat::KEYS`] is an error.
    pub fn from_obj(o: &Obj, strict: bool) -> Result<ToolCallingTokens> {
        let mut formats = Vec::new();
        for f in o.objects("formats")? {
            if strict {
                f.deny_unknown(&ToolCallFormat::KEYS)?;
            }
            let mut tf = ToolCallFormat::default();
            for (key, slot) in ToolCallFormat::KEYS.iter().zip(tf.fields_mut()) {
                *slot = f.string_or(key, "")?;
            }
            formats.push(tf);
        }
        Ok(ToolCallingTokens {
            formats,
            section_start: o.string_or("section_start", "")?,
            section_end: o.string_or("section_end", "")?,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThinkingTokens {
    pub start: String,
    pub end: String,
    pub required: bool,
}

impl ThinkingTokens {
    pub fn from_obj(o: &Obj) -> Result<ThinkingTokens> {
        Ok(ThinkingTokens {
            start: o.string_or("start", "")?,
            end: o.string_or("end", "")?,
            required: o.bool_or("required", false)?,
        })
    }
}

/// One prompt of a request: an independent generation sharing the request id.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptPayload {
    pub text: Vec<u8>,
    pub images: Vec<Vec<u8>>,
    pub audio: Vec<Vec<u8>>,
    pub capabilities: Vec<CapabilityInput>,
    /// `None` = the default layout (text, then every image, then every audio).
    pub layout: Option<Vec<LayoutSegment>>,
    pub num_candidates: u32,
    pub best_of: u32,
    pub final_candidates: u32,
    pub max_generated_tokens: u64,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: i64,
    pub min_p: f64,
    /// `None` omits the key: the engine then uses its deterministic default seed (11).
    pub rng_seed: Option<u64>,
    pub deterministic: bool,
    pub top_logprobs: u32,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    pub repetition_context_size: i64,
    pub repetition_penalty: f64,
    pub stop_sequences: Vec<String>,
    pub tool_schemas_json: String,
    pub active_tool_schemas_json: String,
    pub tool_calling_tokens: ToolCallingTokens,
    pub output_frame_tokens: Vec<(String, String)>,
    pub thinking_tokens: ThinkingTokens,
    pub tool_choice: String,
    pub min_tool_calls: i64,
    pub max_tool_calls: i64,
    pub response_format_json: String,
    pub modal_options_json: String,
    pub logit_bias: Vec<(i64, f64)>,
    pub task_name: Option<String>,
    pub reasoning_effort: Option<String>,
    pub prefix_cache: bool,
}

impl Default for PromptPayload {
    fn default() -> Self {
        PromptPayload {
            text: Vec::new(),
            images: Vec::new(),
            audio: Vec::new(),
            capabilities: Vec::new(),
            layout: None,
            num_candidates: 1,
            best_of: 1,
            final_candidates: 1,
            max_generated_tokens: 0,
            temperature: 1.0,
            top_p: 1.0,
            top_k: -1,
            min_p: 0.0,
            rng_seed: Some(0),
            deterministic: false,
            top_logprobs: 0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            repetition_context_size: 0,
            repetition_penalty: 1.0,
            stop_sequences: Vec::new(),
            tool_schemas_json: String::new(),
            active_tool_schemas_json: String::new(),
            tool_calling_tokens: ToolCallingTokens::default(),
            output_frame_tokens: Vec::new(),
            thinking_tokens: ThinkingTokens::default(),
            tool_choice: "auto".to_string(),
            min_tool_calls: 1,
            max_tool_calls: 0,
            response_format_json: String::new(),
            modal_options_json: String::new(),
            logit_bias: Vec::new(),
            task_name: None,
            reasoning_effort: None,
            prefix_cache: true,
        }
    }
}

impl PromptPayload {
    /// Sequences the engine generates for this prompt (one final delta each).
    pub fn sequence_count(&self) -> u32 {
        self.num_candidates.max(self.best_of).max(1)
    }

    /// The layout as it goes on the wire (explicit, or the default one).
    pub fn effective_layout(&self) -> Vec<LayoutSegment> {
        match &self.layout {
            Some(l) => l.clone(),
            None => {
                let mut l = Vec::with_capacity(1 + self.images.len() + self.audio.len());
                l.push(LayoutSegment::new(
                    SegmentKind::Text,
                    self.text.len() as u64,
                ));
                l.extend(
                    self.images
                        .iter()
                        .map(|i| LayoutSegment::new(SegmentKind::Image, i.len() as u64)),
                );
                l.extend(
                    self.audio
                        .iter()
                        .map(|a| LayoutSegment::new(SegmentKind::Audio, a.len() as u64)),
                );
                l
            }
        }
    }

    fn validate(&self, index: usize) -> Result<()> {
        let at = |field: &str| format!("prompts[{index}].{field}");
        for (name, v) in [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
            ("repetition_penalty", self.repetition_penalty),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(format!(
                    "{}: {v} is not a finite number",
                    at(name)
                )));
            }
        }
        if let Some((token, bias)) = self.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
            return Err(Error::invalid(format!(
                "{}: bias {bias} for token {token} is not a finite number",
                at("logit_bias")
            )));
        }
        let layout = self.effective_layout();
        let sum = |kind: SegmentKind| -> u64 {
            layout
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| s.length)
                .sum()
        };
        let checks = [
            (SegmentKind::Text, self.text.len() as u64, "text"),
            (
                SegmentKind::Image,
                self.images.iter().map(|i| i.len() as u64).sum(),
                "image",
            ),
            (
                SegmentKind::Audio,
                self.audio.iter().map(|a| a.len() as u64).sum(),
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
        if caps != self.capabilities.len() && self.layout.is_some() {
            return Err(Error::invalid(format!(
                "{}: {caps} capability segments for {} capability inputs",
                at("layout"),
                self.capabilities.len()
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub request_id: u64,
    pub model_id: String,
    pub model_path: String,
    pub request_type: RequestType,
    pub request_channel_id: u64,
    pub response_channel_id: u64,
    pub prompts: Vec<PromptPayload>,
}

impl Request {
    /// Final deltas the engine sends for this request: one per sequence.
    pub fn expected_finals(&self) -> u64 {
        self.prompts
            .iter()
            .map(|p| u64::from(p.sequence_count()))
            .sum()
    }
}

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

fn tool_calling_json(t: &ToolCallingTokens) -> Value {
    let formats = t
        .formats
        .iter()
        .map(|f| {
            let mut m = Map::new();
            for (k, v) in ToolCallFormat::KEYS.iter().zip(f.fields()) {
                m.insert((*k).to_string(), Value::String(v.clone()));
            }
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("formats".into(), Value::Array(formats));
    m.insert("section_start".into(), t.section_start.clone().into());
    m.insert("section_end".into(), t.section_end.clone().into());
    Value::Object(m)
}

/// Write the frame for `req`.
pub fn encode(req: &Request) -> Result<Vec<u8>> {
    if req.prompts.is_empty() {
        return Err(Error::invalid(
            "prompts: a request needs at least one prompt",
        ));
    }
    let mut payload = Payload { bytes: Vec::new() };
    let mut prompts = Vec::with_capacity(req.prompts.len());
    for (index, p) in req.prompts.iter().enumerate() {
        p.validate(index)?;
        let (text_offset, text_size) = payload.reserve(&p.text);
        let (image_sizes_offset, _) = payload.reserve(&spans(&p.images));
        let image_data: Vec<u8> = p.images.concat();
        let (image_data_offset, image_data_size) = payload.reserve(&image_data);
        let (audio_sizes_offset, _) = payload.reserve(&spans(&p.audio));
        let audio_data: Vec<u8> = p.audio.concat();
        let (audio_data_offset, audio_data_size) = payload.reserve(&audio_data);
        let cap_data: Vec<u8> = p
            .capabilities
            .iter()
            .flat_map(|c| c.payload.iter().copied())
            .collect();
        let (capability_data_offset, capability_data_size) = payload.reserve(&cap_data);
        let layout = p.effective_layout();
        let (layout_offset, _) = payload.reserve(&layout_bytes(&layout));

        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_string(), v);
        };
        put("prompt_index", index.into());
        put("num_candidates", p.num_candidates.max(1).into());
        put("best_of", p.best_of.into());
        put("final_candidates", p.final_candidates.into());
        put("max_generated_tokens", p.max_generated_tokens.into());
        put("text_offset", text_offset.into());
        put("text_size", text_size.into());
        put("image_data_offset", image_data_offset.into());
        put("image_data_size", image_data_size.into());
        put("image_sizes_offset", image_sizes_offset.into());
        put("image_count", p.images.len().into());
        put("audio_data_offset", audio_data_offset.into());
        put("audio_data_size", audio_data_size.into());
        put("audio_sizes_offset", audio_sizes_offset.into());
        put("audio_count", p.audio.len().into());
        put("capability_data_offset", capability_data_offset.into());
        put("capability_data_size", capability_data_size.into());
        put(
            "capabilities",
            Value::Array(
                p.capabilities
                    .iter()
                    .map(|c| {
                        let mut m = Map::new();
                        m.insert("name".into(), c.name.clone().into());
                        m.insert("position".into(), c.position.into());
                        m.insert("payload_size".into(), c.payload.len().into());
                        Value::Object(m)
                    })
                    .collect(),
            ),
        );
        put("layout_offset", layout_offset.into());
        put("layout_count", layout.len().into());
        put("temperature", json::float(p.temperature));
        put("top_p", json::float(p.top_p));
        put("top_k", p.top_k.into());
        put("min_p", json::float(p.min_p));
        if let Some(seed) = p.rng_seed {
            put("rng_seed", (seed & 0xFFFF_FFFF).into());
        }
        put("deterministic", p.deterministic.into());
        put("top_logprobs", p.top_logprobs.into());
        put("frequency_penalty", json::float(p.frequency_penalty));
        put("presence_penalty", json::float(p.presence_penalty));
        put("repetition_context_size", p.repetition_context_size.into());
        put("repetition_penalty", json::float(p.repetition_penalty));
        put(
            "stop_sequences",
            Value::Array(p.stop_sequences.iter().cloned().map(Value::from).collect()),
        );
        put("tool_schemas_json", p.tool_schemas_json.clone().into());
        let active = if p.active_tool_schemas_json.is_empty() {
            &p.tool_schemas_json
        } else {
            &p.active_tool_schemas_json
        };
        put("active_tool_schemas_json", active.clone().into());
        put(
            "tool_calling_tokens",
            tool_calling_json(&p.tool_calling_tokens),
        );
        put(
            "output_frame_tokens",
            Value::Object(
                p.output_frame_tokens
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
        let mut thinking = Map::new();
        thinking.insert("start".into(), p.thinking_tokens.start.clone().into());
        thinking.insert("end".into(), p.thinking_tokens.end.clone().into());
        thinking.insert("required".into(), p.thinking_tokens.required.into());
        put("thinking_tokens", Value::Object(thinking));
        put("tool_choice", p.tool_choice.clone().into());
        put("min_tool_calls", p.min_tool_calls.into());
        put("max_tool_calls", p.max_tool_calls.into());
        put(
            "response_format_json",
            p.response_format_json.clone().into(),
        );
        put("modal_options_json", p.modal_options_json.clone().into());
        put(
            "logit_bias",
            Value::Array(
                p.logit_bias
                    .iter()
                    .map(|(t, b)| {
                        let mut m = Map::new();
                        m.insert("token".into(), (*t).into());
                        m.insert("bias".into(), json::float(*b));
                        Value::Object(m)
                    })
                    .collect(),
            ),
        );
        put("task_name", json::opt_string(&p.task_name));
        put("reasoning_effort", json::opt_string(&p.reasoning_effort));
        put("prefix_cache", p.prefix_cache.into());
        prompts.push(Value::Object(o));
    }

    let mut meta = Map::new();
    meta.insert("request_id".into(), req.request_id.into());
    meta.insert("model_id".into(), req.model_id.clone().into());
    meta.insert("model_path".into(), req.model_path.clone().into());
    meta.insert("request_type".into(), req.request_type.code().into());
    meta.insert("request_channel_id".into(), req.request_channel_id.into());
    meta.insert("response_channel_id".into(), req.response_channel_id.into());
    meta.insert("prompts".into(), Value::Array(prompts));

    let meta_bytes = serde_json::to_vec(&Value::Object(meta))
        .map_err(|e| Error::invalid(format!("request metadata: {e}")))?;
    let meta_len = u32::try_from(meta_bytes.len())
        .map_err(|_| Error::invalid("request metadata exceeds the 4 GiB a frame can describe"))?;
    let mut frame = Vec::with_capacity(4 + meta_bytes.len() + payload.bytes.len());
    frame.extend_from_slice(&meta_len.to_le_bytes());
    frame.extend_from_slice(&meta_bytes);
    frame.extend_from_slice(&payload.bytes);
    Ok(frame)
}

/// Split a frame into its metadata JSON and its payload region.
pub fn split_frame(frame: &[u8]) -> Result<(Value, &[u8])> {
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
    let meta: Value = serde_json::from_slice(&rest[..meta_len])
        .map_err(|e| Error::protocol(format!("request metadata is not valid JSON: {e}")))?;
    if !meta.is_object() {
        return Err(Error::protocol("request metadata must be a JSON object"));
    }
    Ok((meta, &rest[meta_len..]))
}

fn blob<'a>(payload: &'a [u8], offset: u64, size: u64, what: &str) -> Result<&'a [u8]> {
    if size == 0 {
        return Ok(&[]);
    }
    let end = offset
        .checked_add(size)
        .filter(|e| *e <= payload.len() as u64)
        .ok_or_else(|| {
            Error::protocol(format!(
                "{what}: bytes {offset}..{} lie outside the {}-byte payload",
                offset.saturating_add(size),
                payload.len()
            ))
        })?;
    Ok(&payload[offset as usize..end as usize])
}

fn split_spans(spans: &[u8], data: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(spans.len() / 8);
    let mut cursor = 0usize;
    for chunk in spans.chunks_exact(8) {
        let len = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8)")) as usize;
        let end = cursor
            .checked_add(len)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| {
                Error::protocol(format!(
                    "{what}: spans add up to more than the {} data bytes",
                    data.len()
                ))
            })?;
        out.push(data[cursor..end].to_vec());
        cursor = end;
    }
    if cursor != data.len() {
        return Err(Error::protocol(format!(
            "{what}: spans cover {cursor} of {} data bytes",
            data.len()
        )));
    }
    Ok(out)
}

fn decode_prompt(o: &Obj, payload: &[u8]) -> Result<PromptPayload> {
    let d = PromptPayload::default();
    let text = blob(
        payload,
        o.u64_or("text_offset", 0)?,
        o.u64_or("text_size", 0)?,
        &o.at("text"),
    )?
    .to_vec();
    let image_count = o.u64_or("image_count", 0)?;
    let image_spans = blob(
        payload,
        o.u64_or("image_sizes_offset", 0)?,
        image_count * 8,
        &o.at("image_sizes"),
    )?;
    let image_data = blob(
        payload,
        o.u64_or("image_data_offset", 0)?,
        o.u64_or("image_data_size", 0)?,
        &o.at("image_data"),
    )?;
    let images = split_spans(image_spans, image_data, &o.at("images"))?;
    let audio_count = o.u64_or("audio_count", 0)?;
    let audio_spans = blob(
        payload,
        o.u64_or("audio_sizes_offset", 0)?,
        audio_count * 8,
        &o.at("audio_sizes"),
    )?;
    let audio_data = blob(
        payload,
        o.u64_or("audio_data_offset", 0)?,
        o.u64_or("audio_data_size", 0)?,
        &o.at("audio_data"),
    )?;
    let audio = split_spans(audio_spans, audio_data, &o.at("audio"))?;

    let cap_data = blob(
        payload,
        o.u64_or("capability_data_offset", 0)?,
        o.u64_or("capability_data_size", 0)?,
        &o.at("capability_data"),
    )?;
    let mut capabilities = Vec::new();
    let mut cursor = 0usize;
    for (i, c) in o.objects("capabilities")?.iter().enumerate() {
        let size = c.u64_or("payload_size", 0)? as usize;
        let end = cursor
            .checked_add(size)
            .filter(|e| *e <= cap_data.len())
            .ok_or_else(|| {
                Error::protocol(format!(
                    "{}: payload_size {size} runs past the capability data",
                    o.at(&format!("capabilities[{i}]"))
                ))
            })?;
        capabilities.push(CapabilityInput {
            name: c.string_or("name", "")?,
            position: c.i64_or("position", 0)?,
            payload: cap_data[cursor..end].to_vec(),
        });
        cursor = end;
    }

    let layout_count = o.u64_or("layout_count", 0)?;
    let layout_raw = blob(
        payload,
        o.u64_or("layout_offset", 0)?,
        layout_count.saturating_mul(16),
        &o.at("layout"),
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
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
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
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(Error::protocol(format!(
                "{}: expected an object",
                o.at("output_frame_tokens")
            )))
        }
    };
    let num_candidates = o.u64_or("num_candidates", 1)?.max(1) as u32;
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
        max_generated_tokens: o.u64_or("max_generated_tokens", 0)?,
        temperature: o.f64_or("temperature", d.temperature)?,
        top_p: o.f64_or("top_p", d.top_p)?,
        top_k: o.i64_or("top_k", d.top_k)?,
        min_p: o.f64_or("min_p", d.min_p)?,
        rng_seed: match o.get("rng_seed") {
            None => None,
            Some(Value::Null) => Some(0),
            Some(_) => Some(o.u64_or("rng_seed", 0)?),
        },
        deterministic: o.bool_or("deterministic", false)?,
        top_logprobs: o.u64_or("top_logprobs", 0)? as u32,
        frequency_penalty: o.f64_or("frequency_penalty", 0.0)?,
        presence_penalty: o.f64_or("presence_penalty", 0.0)?,
        repetition_context_size: o.i64_or("repetition_context_size", 0)?,
        repetition_penalty: o.f64_or("repetition_penalty", 1.0)?,
        stop_sequences: o.strings("stop_sequences")?,
        tool_schemas_json: o.string_or("tool_schemas_json", "")?,
        active_tool_schemas_json: o.string_or("active_tool_schemas_json", "")?,
        tool_calling_tokens: ToolCallingTokens::from_obj(
            &o.object_or_empty("tool_calling_tokens")?,
            false,
        )?,
        output_frame_tokens,
        thinking_tokens: ThinkingTokens::from_obj(&o.object_or_empty("thinking_tokens")?)?,
        tool_choice: o.string_or("tool_choice", "auto")?,
        min_tool_calls: o.i64_or("min_tool_calls", 1)?,
        max_tool_calls: o.i64_or("max_tool_calls", 0)?,
        response_format_json: o.string_or("response_format_json", "")?,
        modal_options_json: o.string_or("modal_options_json", "")?,
        logit_bias,
        task_name: o.opt_string("task_name")?,
        reasoning_effort: o.opt_string("reasoning_effort")?,
        prefix_cache: o.bool_or("prefix_cache", true)?,
    })
}

/// Read a frame back into a [`Request`]. Absent per-prompt keys take the protocol defaults
/// (older engines and clients omit some); wrong types and out-of-range offsets are errors.
pub fn decode(frame: &[u8]) -> Result<Request> {
    let (meta, payload) = split_frame(frame)?;
    let top = Obj::new(&meta, "request".to_string(), Error::protocol)?;
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
