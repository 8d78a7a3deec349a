//! Chat messages → template messages.
//!
//! Input is the OpenAI-style list (`role`, `content` as a string or a list of parts,
//! optional `tool_calls` / `tool_call_id`). Output is what templates see:
//! - roles lower-cased and aliased to the logical role keys of `control_tokens.json`
//!   (assistant/model → `agent`, developer → `system`, missing → `user`);
//! - content kept as a string, or turned into a list of [`ContentPart`] objects;
//!   media parts are decoded into byte buffers and print as nothing;
//! - `tool_calls[].function.arguments` given as JSON text parsed into a mapping;
//! - every other key kept, in its original order.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};

use super::value::{json_value, JsonMap};

/// One part of a list-valued message content, as templates see it.
///
/// It prints as its text (media parts print as ""), and answers `part.type` / `part['type']`
/// and, for text, `part.text`, like the reference client's renderable parts.
#[derive(Clone, Debug, PartialEq)]
pub enum ContentPart {
    Text(String),
    Image,
    Audio,
    Capability(String),
}

impl ContentPart {
    pub fn kind(&self) -> &'static str {
        match self {
            ContentPart::Text(_) => "text",
            ContentPart::Image => "image",
            ContentPart::Audio => "audio",
            ContentPart::Capability(_) => "capability",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            ContentPart::Text(t) => t,
            _ => "",
        }
    }

    fn field(&self, key: &str) -> Option<Value> {
        match (key, self) {
            ("type", _) => Some(Value::from(self.kind())),
            ("text", ContentPart::Text(t)) => Some(Value::from(t.as_str())),
            ("name", ContentPart::Capability(n)) => Some(Value::from(n.as_str())),
            _ => None,
        }
    }

    /// The part as a plain mapping (used by `tojson` and `.get()`).
    pub fn as_mapping(&self) -> Value {
        let keys: &[&str] = match self {
            ContentPart::Text(_) => &["type", "text"],
            ContentPart::Capability(_) => &["type", "name"],
            _ => &["type"],
        };
        keys.iter()
            .filter_map(|k| self.field(k).map(|v| (*k, v)))
            .collect()
    }

    /// `part.get(key[, default])`, as templates written for Python dict-like parts call it.
    pub fn get(&self, key: &str, default: Value) -> Value {
        self.field(key).unwrap_or(default)
    }
}

impl Object for ContentPart {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.field(key.as_str()?)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// A capability input (e.g. a coordinate) carried next to the prompt as little-endian f32s:
/// the wire's own type, sent as prepared.
pub use crate::wire::CapabilityInput;

/// Which media kind came in which order across the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Audio,
    Capability,
}

/// `obj[key]`. A message has a handful of keys: comparing them is cheaper than hashing the
/// key (the map hashes with SipHash).
fn field<'a>(obj: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    if obj.len() > 8 {
        return obj.get(key);
    }
    obj.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The conversation ready for the template, plus the media pulled out of it.
#[derive(Default)]
pub struct PreparedMessages {
    pub messages: Vec<Value>,
    pub images: Vec<Vec<u8>>,
    pub audio: Vec<Vec<u8>>,
    pub capabilities: Vec<CapabilityInput>,
    pub content_order: Vec<MediaKind>,
}

/// Input roles accepted, with the logical role key each one maps to.
const ROLE_ALIASES: &[(&str, &str)] = &[
    ("system", "system"),
    ("developer", "system"),
    ("user", "user"),
    ("assistant", "agent"),
    ("model", "agent"),
    ("agent", "agent"),
    ("tool", "tool"),
];

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn normalize_role(index: usize, role: Option<&Json>) -> Result<&'static str> {
    let raw = match role {
        None | Some(Json::Null) => return Ok("user"),
        Some(Json::String(s)) if s.is_empty() => return Ok("user"),
        Some(Json::String(s)) => s,
        Some(other) => {
            return Err(Error::template(format!(
                "messages[{index}].role: expected a string, got {}",
                json_type(other)
            )))
        }
    };
    let lower = raw.to_lowercase();
    ROLE_ALIASES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, key)| *key)
        .ok_or_else(|| {
            Error::template(format!(
                "messages[{index}].role: unknown role '{raw}'; expected one of system, user, assistant, tool"
            ))
        })
}

fn decode_data_url(url: &str) -> std::result::Result<Vec<u8>, String> {
    let rest = url.strip_prefix("data:").ok_or(
        "expected a base64 data URL (data:<mime>;base64,<data>); remote URLs are not supported",
    )?;
    let (mime, data) = rest
        .split_once(";base64,")
        .ok_or("expected a base64 data URL (data:<mime>;base64,<data>)")?;
    let mime_ok = !mime.is_empty()
        && mime
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || matches!(c, '-' | '/' | '+' | '.'));
    if !mime_ok {
        return Err(format!("invalid media type '{mime}' in data URL"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("invalid base64 image data: {e}"))
}

fn f32_payload(values: &[Json], at: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for (i, v) in values.iter().enumerate() {
        let x = v
            .as_f64()
            .ok_or_else(|| Error::template(format!("{at}[{i}]: expected a number")))?;
        out.extend_from_slice(&(x as f32).to_le_bytes());
    }
    Ok(out)
}

fn convert_part(part: &Json, at: &str, prepared: &mut PreparedMessages) -> Result<ContentPart> {
    let obj = part.as_object().ok_or_else(|| {
        Error::template(format!("{at}: expected an object, got {}", json_type(part)))
    })?;
    let kind = match obj.get("type") {
        Some(Json::String(t)) => t.to_lowercase(),
        _ => {
            return Err(Error::template(format!(
                "{at}.type: missing or not a string"
            )))
        }
    };
    match kind.as_str() {
        "text" | "input_text" => match obj.get("text") {
            Some(Json::String(t)) => Ok(ContentPart::Text(t.clone())),
            Some(Json::Number(n)) => Ok(ContentPart::Text(n.to_string())),
            Some(Json::Bool(b)) => Ok(ContentPart::Text(if *b { "True" } else { "False" }.into())),
            _ => Err(Error::template(format!("{at}.text: missing or not a string"))),
        },
        "image" | "image_url" | "input_image" => {
            let url = match obj.get("image_url") {
                Some(Json::String(s)) => Some(s.as_str()),
                Some(Json::Object(o)) => o
                    .get("url")
                    .and_then(Json::as_str)
                    .filter(|s| !s.is_empty())
                    .or_else(|| o.get("data").and_then(Json::as_str)),
                _ => None,
            };
            let url = url
                .ok_or_else(|| Error::template(format!("{at}.image_url: missing or not a string")))?;
            let bytes =
                decode_data_url(url).map_err(|e| Error::template(format!("{at}.image_url: {e}")))?;
            prepared.content_order.push(MediaKind::Image);
            prepared.images.push(bytes);
            Ok(ContentPart::Image)
        }
        "audio" | "input_audio" => {
            let data = match obj.get("data") {
                Some(Json::Object(o)) => o.get("samples").or_else(|| o.get("data")),
                other => other,
            };
            let samples = match data {
                Some(Json::Array(a)) if !a.is_empty() => a,
                _ => {
                    return Err(Error::template(format!(
                        "{at}.data: expected a non-empty list of float32 samples"
                    )))
                }
            };
            let payload = f32_payload(samples, &format!("{at}.data"))?;
            prepared.content_order.push(MediaKind::Audio);
            prepared.audio.push(payload);
            Ok(ContentPart::Audio)
        }
        "capability" => {
            let name = match obj.get("name") {
                Some(Json::String(n)) if !n.is_empty() => n.clone(),
                _ => return Err(Error::template(format!("{at}.name: missing or not a string"))),
            };
            let values = match obj.get("data") {
                Some(Json::Array(a)) if !a.is_empty() => a,
                _ => {
                    return Err(Error::template(format!(
                        "{at}.data: expected a non-empty list of numbers"
                    )))
                }
            };
            let payload = f32_payload(values, &format!("{at}.data"))?;
            prepared.content_order.push(MediaKind::Capability);
            prepared.capabilities.push(CapabilityInput {
                name: name.clone(),
                // Both reference clients always send 0.
                position: 0,
                payload,
            });
            Ok(ContentPart::Capability(name))
        }
        other => Err(Error::template(format!(
            "{at}.type: unsupported content type '{other}'; expected text, input_text, image, image_url, input_image, audio, input_audio or capability"
        ))),
    }
}

/// Parse string-form `function.arguments` into a value and check the call's shape.
fn normalize_tool_calls(calls: &Json, at: &str) -> Result<Json> {
    let list = match calls {
        Json::Array(list) => list,
        other => {
            return Err(Error::template(format!(
                "{at}: expected a list, got {}",
                json_type(other)
            )))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, call) in list.iter().enumerate() {
        let call_at = format!("{at}[{j}]");
        let obj = call.as_object().ok_or_else(|| {
            Error::template(format!(
                "{call_at}: expected an object, got {}",
                json_type(call)
            ))
        })?;
        let function = match obj.get("function") {
            Some(Json::Object(f)) => f,
            _ => {
                return Err(Error::template(format!(
                    "{call_at}.function: missing or not an object"
                )))
            }
        };
        match function.get("name") {
            Some(Json::String(n)) if !n.is_empty() => {}
            _ => {
                return Err(Error::template(format!(
                    "{call_at}.function.name: missing or not a string"
                )))
            }
        }
        let mut function = function.clone();
        if let Some(Json::String(text)) = function.get("arguments") {
            if !text.is_empty() {
                let parsed: Json = serde_json::from_str(text).map_err(|e| {
                    Error::template(format!("{call_at}.function.arguments: invalid JSON ({e})"))
                })?;
                function.insert("arguments".into(), parsed);
            }
        }
        let mut call = obj.clone();
        call.insert("function".into(), Json::Object(function));
        out.push(Json::Object(call));
    }
    Ok(Json::Array(out))
}

/// Build the template messages and collect media buffers.
pub fn prepare(messages: &[Json]) -> Result<PreparedMessages> {
    if messages.is_empty() {
        return Err(Error::template(
            "messages: at least one message is required",
        ));
    }
    let mut prepared = PreparedMessages::default();
    for (index, message) in messages.iter().enumerate() {
        let obj: &Map<String, Json> = message.as_object().ok_or_else(|| {
            Error::template(format!(
                "messages[{index}]: expected an object, got {}",
                json_type(message)
            ))
        })?;
        let role = normalize_role(index, field(obj, "role"))?;

        let has_tool_calls =
            matches!(field(obj, "tool_calls"), Some(Json::Array(a)) if !a.is_empty());
        let content = match field(obj, "content") {
            Some(Json::String(s)) => Value::from(s.as_str()),
            Some(Json::Array(parts)) => {
                let mut converted = Vec::with_capacity(parts.len());
                for (p, part) in parts.iter().enumerate() {
                    let at = format!("messages[{index}].content[{p}]");
                    let part = convert_part(part, &at, &mut prepared)?;
                    converted.push(Value::from_object(part));
                }
                Value::from(converted)
            }
            // An assistant turn that only calls tools may leave content out (OpenAI sends null).
            None | Some(Json::Null) if has_tool_calls => Value::from(""),
            Some(other) => {
                return Err(Error::template(format!(
                "messages[{index}].content: expected a string or a list of content parts, got {}",
                json_type(other)
            )))
            }
            None => {
                return Err(Error::template(format!(
                "messages[{index}].content: missing; expected a string or a list of content parts"
            )))
            }
        };

        let mut entries: Vec<(Value, Value)> = Vec::with_capacity(obj.len() + 2);
        let mut saw_role = false;
        let mut saw_content = false;
        for (key, value) in obj {
            let value = match key.as_str() {
                "role" => {
                    saw_role = true;
                    Value::from(role)
                }
                "content" => {
                    saw_content = true;
                    content.clone()
                }
                "tool_calls" if !value.is_null() => json_value(&normalize_tool_calls(
                    value,
                    &format!("messages[{index}].tool_calls"),
                )?),
                _ => json_value(value),
            };
            entries.push((Value::from(key.as_str()), value));
        }
        if !saw_role {
            entries.push((Value::from("role"), Value::from(role)));
        }
        if !saw_content {
            entries.push((Value::from("content"), content));
        }
        prepared.messages.push(JsonMap::value(entries));
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_of(messages: Json) -> Error {
        let list = messages.as_array().cloned().unwrap_or_default();
        match prepare(&list) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn unknown_role_names_index_and_field() {
        let e = err_of(json!([
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "robot", "content": "c"}
        ]));
        assert_eq!(e.code, crate::error::ErrorCode::Template);
        assert_eq!(
            e.message,
            "messages[2].role: unknown role 'robot'; expected one of system, user, assistant, tool"
        );
    }

    #[test]
    fn roles_are_aliased() {
        let p = prepare(&[
            json!({"role": "Developer", "content": "d"}),
            json!({"role": "assistant", "content": "a"}),
            json!({"role": "model", "content": "m"}),
            json!({"content": "u"}),
        ])
        .unwrap();
        let roles: Vec<String> = p
            .messages
            .iter()
            .map(|m| m.get_attr("role").unwrap().to_string())
            .collect();
        assert_eq!(roles, ["system", "agent", "agent", "user"]);
    }

    #[test]
    fn bad_content_and_parts_are_errors() {
        let e = err_of(json!([{"role": "user", "content": 3}]));
        assert!(
            e.message.starts_with("messages[0].content:"),
            "{}",
            e.message
        );
        let e = err_of(json!([{"role": "user"}]));
        assert!(
            e.message.starts_with("messages[0].content: missing"),
            "{}",
            e.message
        );
        let e = err_of(json!([{"role": "user", "content": [{"type": "video"}]}]));
        assert!(
            e.message
                .starts_with("messages[0].content[0].type: unsupported"),
            "{}",
            e.message
        );
        let e = err_of(json!([{"role": "user", "content": [{"type": "text"}]}]));
        assert_eq!(
            e.message,
            "messages[0].content[0].text: missing or not a string"
        );
        let e = err_of(json!([{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}
        ]}]));
        assert!(
            e.message.starts_with("messages[0].content[0].image_url:"),
            "{}",
            e.message
        );
        let e = err_of(json!([]));
        assert!(e.message.starts_with("messages:"), "{}", e.message);
        let e = err_of(json!(["hello"]));
        assert!(
            e.message.starts_with("messages[0]: expected an object"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tool_call_arguments_are_parsed_or_rejected() {
        let p = prepare(&[json!({
            "role": "assistant", "content": null,
            "tool_calls": [{"function": {"name": "f", "arguments": "{\"b\": 1, \"a\": [2]}"}}]
        })])
        .unwrap();
        let args = p.messages[0]
            .get_attr("tool_calls")
            .and_then(|c| c.get_item_by_index(0))
            .and_then(|c| c.get_attr("function"))
            .and_then(|f| f.get_attr("arguments"))
            .unwrap();
        let keys: Vec<String> = args.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(
            p.messages[0].get_attr("content").unwrap().as_str(),
            Some("")
        );

        let e = err_of(json!([{"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "f", "arguments": "{oops"}}
        ]}]));
        assert!(
            e.message
                .starts_with("messages[0].tool_calls[0].function.arguments: invalid JSON"),
            "{}",
            e.message
        );
        let e = err_of(json!([{"role": "assistant", "content": "", "tool_calls": [
            {"function": {"arguments": "{}"}}
        ]}]));
        assert_eq!(
            e.message,
            "messages[0].tool_calls[0].function.name: missing or not a string"
        );
    }

    #[test]
    fn media_parts_are_decoded() {
        let p = prepare(&[json!({"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,iVBOR2Zha2U="},
            {"type": "input_audio", "data": [0.5, -1.0]},
            {"type": "capability", "name": "coord", "data": [1.0]},
            {"type": "input_text", "text": "hi"}
        ]})])
        .unwrap();
        assert_eq!(p.images, vec![b"\x89PNGfake".to_vec()]);
        assert_eq!(p.audio[0].len(), 8);
        assert_eq!(p.capabilities[0].name, "coord");
        assert_eq!(
            p.content_order,
            [MediaKind::Image, MediaKind::Audio, MediaKind::Capability]
        );
        let content = p.messages[0].get_attr("content").unwrap();
        let printed: String = content.try_iter().unwrap().map(|v| v.to_string()).collect();
        assert_eq!(printed, "hi");
    }
}
