//! Engine-free calls: the wire codec and offline rendering.

use napi::bindgen_prelude::{BigInt, Buffer};
use napi_derive::napi;
use orchard_core::api::{self, Message};

use crate::errors::guarded;

/// Encode a request frame from the reference serializer's vocabulary (JSON text with byte
/// fields as base64).
#[napi]
pub fn encode_request(input_json: String) -> napi::Result<Buffer> {
    guarded(|| api::encode_request(&input_json)).map(Buffer::from)
}

/// Decode a request frame into the reference vocabulary, as JSON text (the inverse of
/// `encode_request`). Damaged frames are PROTOCOL errors.
#[napi]
pub fn decode_request(frame: Buffer) -> napi::Result<String> {
    guarded(|| api::decode_request(&frame))
}

#[napi(object)]
pub struct NativeIncoming {
    pub kind: String,
    pub channel: Option<BigInt>,
    /// The delta as `ChatDelta` JSON text.
    pub delta_json: Option<String>,
    pub event_name: Option<String>,
    pub payload_json: Option<String>,
}

/// Decode one SUB message (`resp:<hex>:<json>` or `__PIE_EVENT__:<name>\0<json>`).
#[napi]
pub fn decode_message(message: Buffer) -> napi::Result<NativeIncoming> {
    Ok(match guarded(|| api::decode_message(&message))? {
        Message::Delta {
            channel,
            delta_json,
        } => NativeIncoming {
            kind: "delta".into(),
            channel: Some(BigInt::from(channel)),
            delta_json: Some(delta_json),
            event_name: None,
            payload_json: None,
        },
        Message::Event { name, payload_json } => NativeIncoming {
            kind: "event".into(),
            channel: None,
            delta_json: None,
            event_name: Some(name),
            payload_json: Some(payload_json),
        },
    })
}

#[napi(object)]
pub struct NativeSegment {
    #[napi(js_name = "type")]
    pub kind: String,
    pub length: f64,
}

#[napi(object)]
pub struct NativeRendered {
    pub prompt: String,
    pub layout: Vec<NativeSegment>,
    pub reasoning: bool,
}

/// The frame `client.chat` would send for one conversation, without an engine: render with
/// the profile `config` selects, apply the options, encode. (For tools and benchmarks.)
#[napi]
pub fn build_chat_frame(
    config_json: String,
    messages_json: String,
    options_json: String,
    model_specs_dir: String,
) -> napi::Result<Buffer> {
    guarded(|| {
        api::build_chat_frame(
            &config_json,
            &messages_json,
            &options_json,
            &model_specs_dir,
        )
    })
    .map(Buffer::from)
}

/// Render a prompt without an engine. `input_json`: `{config, messages, tools, reasoning, task}`.
#[napi]
pub fn render_chat(input_json: String, model_specs_dir: String) -> napi::Result<NativeRendered> {
    let r = guarded(|| api::render_chat(&input_json, &model_specs_dir))?;
    Ok(NativeRendered {
        prompt: r.prompt,
        layout: r
            .layout
            .iter()
            .map(|s| NativeSegment {
                kind: api::segment_name(s.kind).to_string(),
                length: s.length as f64,
            })
            .collect(),
        reasoning: r.reasoning,
    })
}
