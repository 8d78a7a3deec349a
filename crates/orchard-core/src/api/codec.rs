//! Calls that need no engine: the wire codec and offline rendering (tools, tests, benches).

use std::sync::{Arc, Mutex};

use super::chat::chat_input;
use super::parse_json;
use crate::chat::{build_request, Target};
use crate::delta_view;
use crate::error::Result;
use crate::format::{ModelSpecs, RenderedPrompt};
use crate::wire::vocab::SideBytes;
use crate::wire::{self, Incoming, SegmentKind};

/// Encode a request frame from the reference serializer's vocabulary (JSON text with byte
/// fields as base64).
pub fn encode_request(input_json: &str) -> Result<Vec<u8>> {
    encode_request_with(input_json, &[])
}

/// [`encode_request`] with each prompt's `prompt_bytes` given beside the JSON text (`None`:
/// in the JSON, if anywhere), so the bulk of a request is neither escaped nor parsed as JSON.
pub fn encode_request_with(
    input_json: &str,
    prompt_bytes: &[Option<SideBytes>],
) -> Result<Vec<u8>> {
    let req = wire::vocab::parse_request_text(input_json, prompt_bytes)?;
    wire::encode_request(&req)
}

/// A request frame in the reference vocabulary, as JSON text. Damaged frames are PROTOCOL
/// errors.
pub fn decode_request(frame: &[u8]) -> Result<String> {
    Ok(wire::vocab::to_vocab(&wire::decode_request(frame)?).to_string())
}

/// One SUB message, decoded.
pub enum Message {
    /// The delta as `ChatDelta` JSON text (no tokenizer: alternatives keep their ids).
    Delta {
        channel: u64,
        delta_json: String,
    },
    Event {
        name: String,
        payload_json: String,
    },
}

/// Decode one SUB message (`resp:<hex>:<json>` or `__PIE_EVENT__:<name>\0<json>`).
pub fn decode_message(message: &[u8]) -> Result<Message> {
    Ok(match wire::decode_message(message)? {
        Incoming::Delta { channel, delta } => Message::Delta {
            channel,
            delta_json: delta_view::delta_json(&delta),
        },
        Incoming::Event(ev) => Message::Event {
            name: ev.name,
            payload_json: ev.payload.to_string(),
        },
    })
}

/// One profile cache per model-specs folder, kept for the life of the process.
fn specs_for(dir: &str) -> Arc<ModelSpecs> {
    static CACHE: Mutex<Vec<(String, Arc<ModelSpecs>)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = cache.iter().find(|(d, _)| d == dir) {
        return s.clone();
    }
    let specs = Arc::new(ModelSpecs::new(dir));
    cache.push((dir.to_string(), specs.clone()));
    specs
}

/// The frame `client.chat` would send for one conversation, without an engine: render with
/// the profile `config` selects, apply the options, encode.
pub fn build_chat_frame(
    config_json: &str,
    messages_json: &str,
    options_json: &str,
    model_specs_dir: &str,
) -> Result<Vec<u8>> {
    let config = parse_json(config_json, "config")?;
    let (messages, opts) = chat_input(messages_json, options_json)?;
    let profile = specs_for(model_specs_dir).profile_for_config(&config)?;
    let target = Target {
        request_id: 1,
        model_id: "model",
        model_path: "",
        response_channel_id: 1,
    };
    let req = build_request(&profile, &config, messages, &opts, &target)?;
    wire::encode_request(&req)
}

/// Render a prompt without an engine. `input_json`: `{config, messages, tools, reasoning, task}`.
pub fn render_chat(input_json: &str, model_specs_dir: &str) -> Result<RenderedPrompt> {
    crate::format::render_case(
        &specs_for(model_specs_dir),
        &parse_json(input_json, "input")?,
    )
}

/// A layout segment's type as JavaScript names it.
pub fn segment_name(kind: SegmentKind) -> &'static str {
    match kind {
        SegmentKind::Text => "text",
        SegmentKind::Image => "image",
        SegmentKind::Audio => "audio",
        SegmentKind::Capability => "capability",
    }
}
