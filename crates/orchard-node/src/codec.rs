//! Engine-free calls: the wire codec and offline rendering.

use napi::bindgen_prelude::{BigInt, Buffer, BufferSlice, Either};
use napi::Env;
use napi_derive::napi;
use orchard_core::api::{self, Message, SideBytes};

use crate::errors::guarded;

/// Encode a request frame from the reference serializer's vocabulary (JSON text with byte
/// fields as base64). `prompt_bytes[i]`, when given, is prompt i's `prompt_bytes` (base64
/// text or the bytes), left out of the JSON.
#[napi(ts_return_type = "Buffer")]
pub fn encode_request<'env>(
    env: &'env Env,
    input_json: String,
    prompt_bytes: Option<Vec<Option<Either<String, BufferSlice<'env>>>>>,
) -> napi::Result<BufferSlice<'env>> {
    let side: Vec<Option<SideBytes>> = prompt_bytes
        .iter()
        .flatten()
        .map(|b| {
            b.as_ref().map(|b| match b {
                Either::A(text) => SideBytes::Base64(text),
                Either::B(bytes) => SideBytes::Raw(bytes),
            })
        })
        .collect();
    guarded(|| api::encode_request_with(&input_json, &side)).and_then(|frame| v8_buffer(env, frame))
}

/// A frame as a Buffer that V8 owns: for a few KB a copy is cheaper than handing over the
/// Vec (an external buffer with a finaliser is freed only by a GC, so its pages churn).
fn v8_buffer(env: &Env, frame: Vec<u8>) -> napi::Result<BufferSlice<'_>> {
    BufferSlice::copy_from(env, &frame)
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
#[napi(ts_return_type = "Buffer")]
pub fn build_chat_frame<'env>(
    env: &'env Env,
    config_json: String,
    messages_json: String,
    options_json: String,
    model_specs_dir: String,
) -> napi::Result<BufferSlice<'env>> {
    guarded(|| {
        api::build_chat_frame(
            &config_json,
            &messages_json,
            &options_json,
            &model_specs_dir,
        )
    })
    .and_then(|frame| v8_buffer(env, frame))
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
