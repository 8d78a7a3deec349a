//! Request frames (protocol.md §3): `u32 LE metadata length | compact JSON | aligned blobs`.
//!
//! [`Request`] is the typed form. [`encode`] writes the frame byte-for-byte as the reference
//! serializer does; [`decode`] reads one back (the emulator's side), validating every offset.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::json::Obj;
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

/// Blob offsets of one prompt inside the payload region.
struct Placed {
    text_offset: usize,
    text_size: usize,
    image_data_offset: usize,
    image_data_size: usize,
    image_sizes_offset: usize,
    audio_data_offset: usize,
    audio_data_size: usize,
    audio_sizes_offset: usize,
    capability_data_offset: usize,
    capability_data_size: usize,
    layout_offset: usize,
    layout_count: usize,
}

/// A list serialised from an iterator, without collecting it.
struct SeqOf<F>(F);

impl<I, F> Serialize for SeqOf<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// A finite float as a JSON float (`1.0`), anything else as `null` (as [`json::float`]).
struct Float(f64);

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_unit()
        }
    }
}

struct ToolCallingMeta<'a>(&'a ToolCallingTokens);

impl Serialize for ToolCallingMeta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Format<'a>(&'a ToolCallFormat);
        impl Serialize for Format<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(ToolCallFormat::KEYS.len()))?;
                for (k, v) in ToolCallFormat::KEYS.iter().zip(self.0.fields()) {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let t = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("formats", &SeqOf(|| t.formats.iter().map(Format)))?;
        m.serialize_entry("section_start", &t.section_start)?;
        m.serialize_entry("section_end", &t.section_end)?;
        m.end()
    }
}

/// One prompt's metadata object, keys in the reference serializer's order.
struct PromptMeta<'a> {
    index: usize,
    p: &'a PromptPayload,
    at: Placed,
}

impl Serialize for PromptMeta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Capability<'a>(&'a CapabilityInput);
        impl Serialize for Capability<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("name", &self.0.name)?;
                m.serialize_entry("position", &self.0.position)?;
                m.serialize_entry("payload_size", &self.0.payload.len())?;
                m.end()
            }
        }
        struct Bias(i64, f64);
        impl Serialize for Bias {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("token", &self.0)?;
                m.serialize_entry("bias", &Float(self.1))?;
                m.end()
            }
        }
        struct Thinking<'a>(&'a ThinkingTokens);
        impl Serialize for Thinking<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("start", &self.0.start)?;
                m.serialize_entry("end", &self.0.end)?;
                m.serialize_entry("required", &self.0.required)?;
                m.end()
            }
        }
        struct Frames<'a>(&'a [(String, String)]);
        impl Serialize for Frames<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                // A JSON object keeps the last value of a repeated key, in the first key's place.
                let mut m = s.serialize_map(None)?;
                for (i, (k, _)) in self.0.iter().enumerate() {
                    if self.0[..i].iter().any(|(seen, _)| seen == k) {
                        continue;
                    }
                    let last = self
                        .0
                        .iter()
                        .rev()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v);
                    m.serialize_entry(k, &last)?;
                }
                m.end()
            }
        }

        let (p, at) = (self.p, &self.at);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("prompt_index", &self.index)?;
        m.serialize_entry("num_candidates", &p.num_candidates.max(1))?;
        m.serialize_entry("best_of", &p.best_of)?;
        m.serialize_entry("final_candidates", &p.final_candidates)?;
        m.serialize_entry("max_generated_tokens", &p.max_generated_tokens)?;
        m.serialize_entry("text_offset", &at.text_offset)?;
        m.serialize_entry("text_size", &at.text_size)?;
        m.serialize_entry("image_data_offset", &at.image_data_offset)?;
        m.serialize_entry("image_data_size", &at.image_data_size)?;
        m.serialize_entry("image_sizes_offset", &at.image_sizes_offset)?;
        m.serialize_entry("image_count", &p.images.len())?;
        m.serialize_entry("audio_data_offset", &at.audio_data_offset)?;
        m.serialize_entry("audio_data_size", &at.audio_data_size)?;
        m.serialize_entry("audio_sizes_offset", &at.audio_sizes_offset)?;
        m.serialize_entry("audio_count", &p.audio.len())?;
        m.serialize_entry("capability_data_offset", &at.capability_data_offset)?;
        m.serialize_entry("capability_data_size", &at.capability_data_size)?;
        m.serialize_entry(
            "capabilities",
            &SeqOf(|| p.capabilities.iter().map(Capability)),
        )?;
        m.serialize_entry("layout_offset", &at.layout_offset)?;
        m.serialize_entry("layout_count", &at.layout_count)?;
        m.serialize_entry("temperature", &Float(p.temperature))?;
        m.serialize_entry("top_p", &Float(p.top_p))?;
        m.serialize_entry("top_k", &p.top_k)?;
        m.serialize_entry("min_p", &Float(p.min_p))?;
        if let Some(seed) = p.rng_seed {
            m.serialize_entry("rng_seed", &(seed & 0xFFFF_FFFF))?;
        }
        m.serialize_entry("deterministic", &p.deterministic)?;
        m.serialize_entry("top_logprobs", &p.top_logprobs)?;
        m.serialize_entry("frequency_penalty", &Float(p.frequency_penalty))?;
        m.serialize_entry("presence_penalty", &Float(p.presence_penalty))?;
        m.serialize_entry("repetition_context_size", &p.repetition_context_size)?;
        m.serialize_entry("repetition_penalty", &Float(p.repetition_penalty))?;
        m.serialize_entry("stop_sequences", &p.stop_sequences)?;
        m.serialize_entry("tool_schemas_json", &p.tool_schemas_json)?;
        let active = if p.active_tool_schemas_json.is_empty() {
            &p.tool_schemas_json
        } else {
            &p.active_tool_schemas_json
        };
        m.serialize_entry("active_tool_schemas_json", active)?;
        m.serialize_entry(
            "tool_calling_tokens",
            &ToolCallingMeta(&p.tool_calling_tokens),
        )?;
        m.serialize_entry("output_frame_tokens", &Frames(&p.output_frame_tokens))?;
        m.serialize_entry("thinking_tokens", &Thinking(&p.thinking_tokens))?;
        m.serialize_entry("tool_choice", &p.tool_choice)?;
        m.serialize_entry("min_tool_calls", &p.min_tool_calls)?;
        m.serialize_entry("max_tool_calls", &p.max_tool_calls)?;
        m.serialize_entry("response_format_json", &p.response_format_json)?;
        m.serialize_entry("modal_options_json", &p.modal_options_json)?;
        m.serialize_entry(
            "logit_bias",
            &SeqOf(|| p.logit_bias.iter().map(|(t, b)| Bias(*t, *b))),
        )?;
        m.serialize_entry("task_name", &p.task_name)?;
        m.serialize_entry("reasoning_effort", &p.reasoning_effort)?;
        m.serialize_entry("prefix_cache", &p.prefix_cache)?;
        m.end()
    }
}

/// The request's metadata object.
struct RequestMeta<'a> {
    req: &'a Request,
    prompts: Vec<PromptMeta<'a>>,
}

impl Serialize for RequestMeta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = self.req;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("request_id", &r.request_id)?;
        m.serialize_entry("model_id", &r.model_id)?;
        m.serialize_entry("model_path", &r.model_path)?;
        m.serialize_entry("request_type", &r.request_type.code())?;
        m.serialize_entry("request_channel_id", &r.request_channel_id)?;
        m.serialize_entry("response_channel_id", &r.response_channel_id)?;
        m.serialize_entry("prompts", &self.prompts)?;
        m.end()
    }
}

/// Place a list of buffers back to back (no copy for a single buffer).
fn reserve_all(payload: &mut Payload, items: &[Vec<u8>]) -> (usize, usize) {
    match items {
        [] => (0, 0),
        [one] => payload.reserve(one),
        many => payload.reserve(&many.concat()),
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
        p.validate(index)?;
        let (text_offset, text_size) = payload.reserve(&p.text);
        let (image_sizes_offset, _) = payload.reserve(&spans(&p.images));
        let (image_data_offset, image_data_size) = reserve_all(&mut payload, &p.images);
        let (audio_sizes_offset, _) = payload.reserve(&spans(&p.audio));
        let (audio_data_offset, audio_data_size) = reserve_all(&mut payload, &p.audio);
        let cap_data: Vec<u8> = p
            .capabilities
            .iter()
            .flat_map(|c| c.payload.iter().copied())
            .collect();
        let (capability_data_offset, capability_data_size) = payload.reserve(&cap_data);
        let layout = p.effective_layout();
        let (layout_offset, _) = payload.reserve(&layout_bytes(&layout));
        prompts.push(PromptMeta {
            index,
            p,
            at: Placed {
                text_offset,
                text_size,
                image_data_offset,
                image_data_size,
                image_sizes_offset,
                audio_data_offset,
                audio_data_size,
                audio_sizes_offset,
                capability_data_offset,
                capability_data_size,
                layout_offset,
                layout_count: layout.len(),
            },
        });
    }

    let mut frame = Vec::with_capacity(4 + 2048 + payload.bytes.len());
    frame.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut frame, &RequestMeta { req, prompts })
        .map_err(|e| Error::invalid(format!("request metadata: {e}")))?;
    let meta_len = u32::try_from(frame.len() - 4)
        .map_err(|_| Error::invalid("request metadata exceeds the 4 GiB a frame can describe"))?;
    frame[..4].copy_from_slice(&meta_len.to_le_bytes());
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
