//! The typed request: [`Request`] and its prompts.

use serde::Serialize;

use super::super::json::Obj;
use super::super::layout::{LayoutSegment, SegmentKind};
use crate::error::Result;

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

/// Every request type with its wire code (protocol.md §3.5) and its name.
const REQUEST_TYPES: [(RequestType, u64, &str); 10] = [
    (RequestType::Generation, 0, "generation"),
    (RequestType::Embedding, 1, "embedding"),
    (RequestType::Query, 2, "query"),
    (RequestType::Point, 3, "point"),
    (RequestType::Detect, 4, "detect"),
    (RequestType::Agent, 5, "agent"),
    (RequestType::Omni, 6, "omni"),
    (RequestType::PrefillTask, 7, "prefill_task"),
    (RequestType::Audio, 8, "audio"),
    (RequestType::Image, 9, "image"),
];

impl RequestType {
    fn entry(self) -> &'static (RequestType, u64, &'static str) {
        REQUEST_TYPES
            .iter()
            .find(|(t, _, _)| *t == self)
            .expect("every request type is in REQUEST_TYPES")
    }

    pub fn name(self) -> &'static str {
        self.entry().2
    }

    pub fn code(self) -> u64 {
        self.entry().1
    }

    pub fn from_code(code: u64) -> Option<Self> {
        REQUEST_TYPES
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(t, _, _)| *t)
    }

    /// A name in any case; `image_generation` is another name for `image`.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        if name == "image_generation" {
            return Some(RequestType::Image);
        }
        REQUEST_TYPES
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(t, _, _)| *t)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CapabilityInput {
    pub name: String,
    pub position: i64,
    pub payload: Vec<u8>,
}

/// One format of `tool_calling_tokens.formats` (all strings; empty when unused).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

    /// The values, in the order of [`Self::KEYS`].
    pub fn fields(&self) -> [&str; 9] {
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

/// Generated-reasoning delimiters (`thinking_tokens`): empty strings when the model has no
/// native thinking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

/// The protocol's per-prompt defaults (protocol.md §3.3), the one set every reader uses for
/// a key the caller or an older frame leaves out.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame writer and the readers go by `KEYS`, `decodeRequest` by the derived
    /// serialization: they name the same fields in the same order.
    #[test]
    fn tool_call_format_keys_follow_the_struct() {
        let mut format = ToolCallFormat::default();
        for (key, slot) in ToolCallFormat::KEYS.iter().zip(format.fields_mut()) {
            *slot = format!("{key}!");
        }
        let json = serde_json::to_value(&format).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ToolCallFormat::KEYS);
        for (key, value) in ToolCallFormat::KEYS.iter().zip(format.fields()) {
            assert_eq!(json[key], value, "{key}");
        }
    }
}
