//! Messages on the SUB socket (protocol.md §2.3, §4, §6):
//! `resp:<hex channel>:<json delta>` and `__PIE_EVENT__:<name>\0<json>`.
//!
//! Decoding is lenient where the references disagree: `error_message` or `error`,
//! `probability` or `logprob`, token ids as strings or numbers, `embedding_bytes` as base64
//! or as an array of bytes, and `null` where a list or flag is expected.
//!
//! Encoding (the emulator's side) writes what PIE writes: keys in [`Delta`]'s field order,
//! absent values and empty optional lists omitted (never `null`), `top_logprobs` entries as
//! `{"token", "probability"}`, `embedding_bytes` as base64.

use base64::Engine as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

pub const DELTA_PREFIX: &[u8] = b"resp:";
pub const EVENT_PREFIX: &[u8] = b"__PIE_EVENT__:";

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TokenId {
    Text(String),
    Int(i64),
    Float(f64),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteField {
    Base64(String),
    Bytes(Vec<u8>),
}

fn base64_bytes<S: Serializer>(
    bytes: &Option<Vec<u8>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
        None => s.serialize_none(),
    }
}

fn byte_field<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<u8>>, D::Error> {
    match Option::<ByteField>::deserialize(d)? {
        None => Ok(None),
        Some(ByteField::Bytes(b)) => Ok(Some(b)),
        Some(ByteField::Base64(s)) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct RawTopLogprob {
    token: Option<TokenId>,
    #[serde(default)]
    logprob: Option<f64>,
    #[serde(default)]
    probability: Option<f64>,
    #[serde(default, deserialize_with = "byte_field")]
    bytes: Option<Vec<u8>>,
}

/// One alternative for a sampled token. `token` is the engine's token id as text.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Option<Vec<u8>>,
}

impl Serialize for TopLogprob {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("token", &self.token)?;
        m.serialize_entry("probability", &self.logprob)?;
        if let Some(b) = &self.bytes {
            m.serialize_entry(
                "bytes",
                &base64::engine::general_purpose::STANDARD.encode(b),
            )?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for TopLogprob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawTopLogprob::deserialize(d)?;
        let token = match raw.token {
            Some(TokenId::Text(s)) => s,
            Some(TokenId::Int(i)) => i.to_string(),
            Some(TokenId::Float(f)) => f.to_string(),
            None => String::new(),
        };
        let logprob = raw.logprob.or(raw.probability).ok_or_else(|| {
            serde::de::Error::custom("top_logprobs entry has neither logprob nor probability")
        })?;
        Ok(TopLogprob {
            token,
            logprob,
            bytes: raw.bytes,
        })
    }
}

/// A structured-stream event (message, reasoning and tool-call items).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateEvent {
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub item_type: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub identifier: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub delta: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// An error delta: `finish_reason` "error" (any case), or a final delta with error text.
fn is_error_delta(finish_reason: Option<&str>, is_final: bool, has_error_text: bool) -> bool {
    finish_reason.is_some_and(|r| r.eq_ignore_ascii_case("error")) || (is_final && has_error_text)
}

/// One delta of one sequence. Serialised in this field order (the emulator's wire form).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default)]
    pub request_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tokens: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_tokens_in_delta: Option<u32>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub top_logprobs: Vec<TopLogprob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cumulative_logprob: Option<f64>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub state_events: Vec<StateEvent>,
    #[serde(default, deserialize_with = "null_as_default", alias = "is_final")]
    pub is_final_delta: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The engine's error text (`error_message`, or `error` from older producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The legacy `error` key; [`Delta::from_json`] moves it into `error_message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        default,
        deserialize_with = "byte_field",
        serialize_with = "base64_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub embedding_bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_stop_token_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_stop_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modal_decoder_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modal_event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modal_mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modal_metadata_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modal_bytes_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

impl Delta {
    /// The JSON body of this delta, as the engine writes it.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    /// Append this delta's JSON body to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("a delta always serialises");
    }

    /// Parse one delta's JSON body.
    pub fn from_json(body: &[u8]) -> Result<Delta> {
        let mut d: Delta = serde_json::from_slice(body)
            .map_err(|e| Error::protocol(format!("delta is not a valid PIE delta: {e}")))?;
        if d.error_message.is_none() {
            d.error_message = d.error.take();
        }
        Ok(d)
    }

    /// An error delta: `finish_reason` "error" (any case), or a final delta with error text.
    pub fn is_error(&self) -> bool {
        is_error_delta(
            self.finish_reason.as_deref(),
            self.is_final_delta,
            self.error_message.is_some(),
        )
    }

    /// The error text of an error delta, falling back to `content` as the references do.
    pub fn error_text(&self) -> String {
        self.error_message
            .clone()
            .or_else(|| self.content.clone().filter(|c| !c.is_empty()))
            .unwrap_or_else(|| "the engine reported an error without a message".to_string())
    }

    /// `finish_reason` normalised: lower case, and `None` for the non-final marker "DELTA".
    pub fn finish_reason_normalized(&self) -> Option<String> {
        self.finish_reason
            .as_deref()
            .filter(|r| !r.eq_ignore_ascii_case("delta") && !r.is_empty())
            .map(|r| r.to_ascii_lowercase())
    }

    /// The embedding as float32 values, when the delta carries one.
    pub fn embedding(&self) -> Option<Vec<f32>> {
        self.embedding_bytes.as_ref().map(|b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

/// What routing and completion counting need of a delta, read without decoding the rest
/// (no allocation for the fields it skips).
#[derive(Debug, Default, Deserialize)]
pub struct DeltaRouting<'a> {
    #[serde(default)]
    pub request_id: u64,
    #[serde(default)]
    pub prompt_index: Option<u32>,
    #[serde(default)]
    pub candidate_index: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default", alias = "is_final")]
    pub is_final_delta: bool,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    error_message: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

impl DeltaRouting<'_> {
    pub fn from_json(body: &[u8]) -> Result<DeltaRouting<'_>> {
        serde_json::from_slice(body)
            .map_err(|e| Error::protocol(format!("delta is not a valid PIE delta: {e}")))
    }

    /// The same rule as [`Delta::is_error`].
    pub fn is_error(&self) -> bool {
        is_error_delta(
            self.finish_reason.as_deref(),
            self.is_final_delta,
            self.error_message.is_some() || self.error.is_some(),
        )
    }

    /// A final error delta that names no sequence ends the whole request.
    pub fn ends_request(&self) -> bool {
        self.is_final_delta
            && self.is_error()
            && (self.prompt_index.is_none() || self.candidate_index.is_none())
    }

    /// The routing facts as owned values.
    pub fn facts(&self) -> RoutingFacts {
        RoutingFacts {
            request_id: self.request_id,
            is_final: self.is_final_delta,
            ends_request: self.ends_request(),
        }
    }
}

/// What completion counting needs to know of one delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingFacts {
    pub request_id: u64,
    pub is_final: bool,
    pub ends_request: bool,
}

/// A broadcast engine event (`telemetry`, `model_loaded`, `model_load_failed`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineEvent {
    pub name: String,
    pub payload: Value,
}

impl EngineEvent {
    /// `health.pid` of a telemetry heartbeat (a positive JSON integer), if any.
    pub fn telemetry_pid(&self) -> Option<u32> {
        if self.name != "telemetry" {
            return None;
        }
        self.payload
            .get("health")?
            .get("pid")?
            .as_u64()
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok())
    }

    /// The `model_id` an activation event refers to.
    pub fn model_id(&self) -> Option<&str> {
        self.payload.get("model_id")?.as_str()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Delta { channel: u64, delta: Box<Delta> },
    Event(EngineEvent),
}

/// Split `resp:<hex>:` from a delta message: the channel id and the JSON body.
pub fn split_delta_topic(msg: &[u8]) -> Result<(u64, &[u8])> {
    let rest = msg
        .strip_prefix(DELTA_PREFIX)
        .ok_or_else(|| Error::protocol("delta message does not start with 'resp:'"))?;
    let colon = rest
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| Error::protocol("delta topic 'resp:<hex>' lacks its closing ':'"))?;
    let hex = std::str::from_utf8(&rest[..colon])
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 16)
        .ok_or_else(|| Error::protocol("delta topic channel is not 1-16 hex digits"))?;
    let channel = u64::from_str_radix(hex, 16)
        .map_err(|_| Error::protocol(format!("delta topic channel '{hex}' is not hexadecimal")))?;
    Ok((channel, &rest[colon + 1..]))
}

/// Decode one SUB message.
pub fn decode_message(msg: &[u8]) -> Result<Incoming> {
    if msg.starts_with(DELTA_PREFIX) {
        let (channel, body) = split_delta_topic(msg)?;
        let delta = Delta::from_json(body)?;
        return Ok(Incoming::Delta {
            channel,
            delta: Box::new(delta),
        });
    }
    if let Some(rest) = msg.strip_prefix(EVENT_PREFIX) {
        let nul = rest.iter().position(|b| *b == 0).ok_or_else(|| {
            Error::protocol("event message lacks the NUL byte between its name and body")
        })?;
        let name = std::str::from_utf8(&rest[..nul])
            .map_err(|_| Error::protocol("event name is not UTF-8"))?
            .to_string();
        let payload: Value = serde_json::from_slice(&rest[nul + 1..])
            .map_err(|e| Error::protocol(format!("event '{name}' body is not valid JSON: {e}")))?;
        return Ok(Incoming::Event(EngineEvent { name, payload }));
    }
    let head = String::from_utf8_lossy(&msg[..msg.len().min(24)]).into_owned();
    Err(Error::protocol(format!(
        "message with unknown topic (starts with {head:?}); expected 'resp:' or '__PIE_EVENT__:'"
    )))
}

/// The topic prefix a client subscribes to for its channel.
pub fn channel_topic(channel: u64) -> String {
    format!("resp:{channel:x}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_reference_delta_examples() {
        let m = br#"resp:1f9a7c3e0b21:{"request_id":12,"sequence_id":90001,"prompt_index":0,"candidate_index":0,"content":"Hel","tokens":[9906],"num_tokens_in_delta":1,"is_final_delta":false,"finish_reason":"DELTA","top_logprobs":[{"token":"9906","probability":-0.01},{"token":"13347","probability":-4.7}]}"#;
        let Incoming::Delta { channel, delta } = decode_message(m).unwrap() else {
            panic!("expected a delta")
        };
        assert_eq!(channel, 0x1f9a7c3e0b21);
        assert_eq!(delta.request_id, 12);
        assert_eq!(delta.content.as_deref(), Some("Hel"));
        assert_eq!(delta.top_logprobs[1].token, "13347");
        assert_eq!(delta.top_logprobs[1].logprob, -4.7);
        assert_eq!(delta.finish_reason_normalized(), None);
        assert!(!delta.is_error());
    }

    #[test]
    fn error_key_variants_and_nulls() {
        let a = Delta::from_json(br#"{"request_id":13,"is_final_delta":true,"finish_reason":"error","error_message":"Model 'x' is not loaded"}"#).unwrap();
        assert!(a.is_error());
        assert_eq!(a.error_text(), "Model 'x' is not loaded");
        let b = Delta::from_json(br#"{"request_id":1,"is_final_delta":true,"finish_reason":"error","content":"Engine process disconnected.","error":"Engine process disconnected.","tokens":null,"state_events":null}"#).unwrap();
        assert_eq!(
            b.error_message.as_deref(),
            Some("Engine process disconnected.")
        );
        assert!(b.tokens.is_empty());
    }

    #[test]
    fn encodes_the_reference_shapes() {
        let d = Delta {
            request_id: 12,
            sequence_id: Some(90001),
            prompt_index: Some(0),
            candidate_index: Some(0),
            content: Some("Hel".into()),
            tokens: vec![9906],
            num_tokens_in_delta: Some(1),
            top_logprobs: vec![TopLogprob {
                token: "9906".into(),
                logprob: -0.01,
                bytes: None,
            }],
            finish_reason: Some("DELTA".into()),
            ..Delta::default()
        };
        assert_eq!(
            String::from_utf8(d.to_json()).unwrap(),
            r#"{"request_id":12,"sequence_id":90001,"prompt_index":0,"candidate_index":0,"content":"Hel","tokens":[9906],"num_tokens_in_delta":1,"top_logprobs":[{"token":"9906","probability":-0.01}],"is_final_delta":false,"finish_reason":"DELTA"}"#
        );
        assert_eq!(Delta::from_json(&d.to_json()).unwrap(), d);
        let e = Delta {
            request_id: 1,
            is_final_delta: true,
            embedding_bytes: Some(vec![0, 0, 0, 63]),
            state_events: vec![StateEvent {
                event_type: "item_started".into(),
                item_type: "message".into(),
                output_index: 0,
                identifier: String::new(),
                delta: String::new(),
                value: None,
            }],
            ..Delta::default()
        };
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"request_id":1,"tokens":[],"state_events":[{"event_type":"item_started","item_type":"message","output_index":0,"identifier":"","delta":""}],"is_final_delta":true,"embedding_bytes":"AAAAPw=="}"#
        );
        assert_eq!(Delta::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn embedding_bytes_base64_or_array() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let a =
            Delta::from_json(format!(r#"{{"request_id":1,"embedding_bytes":"{b64}"}}"#).as_bytes())
                .unwrap();
        let b = Delta::from_json(
            format!(r#"{{"request_id":1,"embedding_bytes":{:?}}}"#, bytes).as_bytes(),
        )
        .unwrap();
        assert_eq!(a.embedding(), Some(vec![1.5, -2.0]));
        assert_eq!(a.embedding_bytes, b.embedding_bytes);
    }

    #[test]
    fn events_and_bad_messages() {
        let mut m = b"__PIE_EVENT__:telemetry\0".to_vec();
        m.extend_from_slice(br#"{"version":1,"health":{"pid":31337}}"#);
        let Incoming::Event(e) = decode_message(&m).unwrap() else {
            panic!("expected an event")
        };
        assert_eq!(e.telemetry_pid(), Some(31337));
        for bad in [
            &b"resp:zz:{}"[..],
            b"resp:12{}",
            b"resp:12:{not json",
            b"__PIE_EVENT__:telemetry{}",
            b"hello",
            b"resp:12:{\"request_id\":\"x\"}",
        ] {
            let err = decode_message(bad).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::Protocol, "{bad:?}");
        }
    }
}
