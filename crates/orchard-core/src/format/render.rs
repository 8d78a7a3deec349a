//! The render pipeline of a profile: reasoning flag, messages and tools, the template context,
//! the template, then the layout (messages → template → layout).

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::wire::LayoutSegment;

use super::layout::{self, Media};
use super::messages::{self, CapabilityInput};
use super::profile::{template_error, ControlTokens, Profile, CHAT_TEMPLATE};
use super::value::json_value;

/// A request to render one conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderRequest {
    /// OpenAI-style messages (role, content as a string or a list of parts).
    pub messages: Vec<Json>,
    /// Tool definitions rendered into the prompt (any shape the template understands).
    pub tools: Option<Vec<Json>>,
    /// `null`/absent: the family default; `true`/`false`; or an effort string ("low", "high").
    pub reasoning: Option<Json>,
    /// Task name for task templates (moondream3) and adapters (granite_switch).
    pub task: Option<String>,
}

/// A rendered prompt, ready for the request frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderedPrompt {
    pub prompt: String,
    pub layout: Vec<LayoutSegment>,
    /// Whether the model was asked to reason (only native-thinking families say yes).
    pub reasoning: bool,
    /// Effort sent to the engine when reasoning ([`super::DEFAULT_REASONING_EFFORT`] unless the caller chose one).
    pub reasoning_effort: Option<String>,
    pub images: Vec<Vec<u8>>,
    /// Little-endian f32 samples, one buffer per audio part.
    pub audio: Vec<Vec<u8>>,
    pub capabilities: Vec<CapabilityInput>,
}

/// Names of the per-request template variables, in the order the reference client builds its
/// context (after `template_vars`, which they override).
const DYNAMIC_VARS: [&str; 8] = [
    "messages",
    "interactions",
    "reasoning",
    "reasoning_effort",
    "task",
    "prefill",
    "tools",
    "model_config",
];

/// The root context of one render: the request's variables, then the profile's statics.
/// Built without copying the static values or hashing every key into a fresh map.
#[derive(Debug)]
struct RenderContext {
    /// Values of [`DYNAMIC_VARS`], in that order.
    dynamic: [Value; 8],
    statics: Arc<Vec<(String, Value)>>,
}

impl Object for RenderContext {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        // A match compiles to a length switch, cheaper than scanning the names: templates look
        // up root variables like `messages` and `roles` thousands of times per render.
        let dynamic = match key {
            "messages" => Some(0),
            "interactions" => Some(1),
            "reasoning" => Some(2),
            "reasoning_effort" => Some(3),
            "task" => Some(4),
            "prefill" => Some(5),
            "tools" => Some(6),
            "model_config" => Some(7),
            _ => None,
        };
        if let Some(i) = dynamic {
            debug_assert_eq!(DYNAMIC_VARS[i], key);
            return Some(self.dynamic[i].clone());
        }
        self.statics
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = self
            .statics
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !DYNAMIC_VARS.contains(k))
            .map(Value::from)
            .collect();
        keys.extend(DYNAMIC_VARS.iter().map(|k| Value::from(*k)));
        Enumerator::Values(keys)
    }
}

/// The static template variables of a profile, later keys overriding earlier ones.
pub(super) fn static_vars(control: &ControlTokens, capabilities: &Json) -> Vec<(String, Value)> {
    let mut vars: Vec<(String, Value)> = Vec::new();
    let mut set = |k: &str, v: Value| match vars.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => vars.push((k.to_string(), v)),
    };
    for (k, v) in &control.template_vars {
        set(k, json_value(v));
    }
    let opt = |s: &Option<String>| match s {
        Some(s) => Value::from(s.as_str()),
        None => Value::from(()),
    };
    let c = control;
    set("add_generation_prompt", Value::from(true));
    set("begin_of_text", Value::from(c.begin_of_text.as_str()));
    set("end_of_message", Value::from(c.end_of_message.as_str()));
    set("end_of_sequence", Value::from(c.end_of_sequence.as_str()));
    set("bos_token", Value::from(c.begin_of_text.as_str()));
    set("eos_token", Value::from(c.end_of_sequence.as_str()));
    set("start_image_token", opt(&c.start_image_token));
    set("end_image_token", opt(&c.end_image_token));
    // A struct of strings: converting it to JSON cannot fail.
    set(
        "roles",
        json_value(&serde_json::to_value(&c.roles).unwrap_or_default()),
    );
    set("capabilities", json_value(capabilities));
    // Per-request names are answered by the render context; drop any shadowed default.
    vars.retain(|(k, _)| !DYNAMIC_VARS.contains(&k.as_str()));
    vars
}

/// The name a tool is sorted by: `function.name` or `name`.
fn tool_name(tool: &Json) -> Option<&str> {
    let obj = tool.as_object()?;
    match obj.get("function") {
        Some(Json::Object(f)) => f.get("name").and_then(Json::as_str),
        _ => obj.get("name").and_then(Json::as_str),
    }
    .filter(|n| !n.is_empty())
}

/// Validate the tools and sort them by name (stable), as the reference client does.
#[cfg(test)]
pub(crate) fn sorted_tools(tools: &[Json]) -> Result<Vec<Json>> {
    Ok(sorted_tool_refs(tools)?.into_iter().cloned().collect())
}

/// [`sorted_tools`] without copying the tools.
pub(crate) fn sorted_tool_refs(tools: &[Json]) -> Result<Vec<&Json>> {
    let mut named = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if !tool.is_object() {
            return Err(Error::template(format!("tools[{i}]: expected an object")));
        }
        let name = tool_name(tool).ok_or_else(|| {
            Error::template(format!(
                "tools[{i}]: missing name; expected a non-empty 'name' or 'function.name'"
            ))
        })?;
        named.push((name, tool));
    }
    named.sort_by(|a, b| a.0.cmp(b.0));
    Ok(named.into_iter().map(|(_, t)| t).collect())
}

/// `reasoning` from the request → (requested on/off, requested effort).
fn parse_reasoning(reasoning: Option<&Json>) -> Result<(Option<bool>, Option<String>)> {
    match reasoning {
        None | Some(Json::Null) => Ok((None, None)),
        Some(Json::Bool(b)) => Ok((Some(*b), None)),
        Some(Json::String(s)) if s.is_empty() => Ok((None, None)),
        Some(Json::String(s)) => Ok((None, Some(s.clone()))),
        Some(Json::Object(o)) => match o.get("effort") {
            None | Some(Json::Null) => Ok((None, None)),
            Some(Json::String(s)) => Ok((None, Some(s.clone()))),
            Some(_) => Err(Error::invalid("reasoning.effort: expected a string")),
        },
        Some(_) => Err(Error::invalid(
            "reasoning: expected null, a boolean, an effort string or {\"effort\": ...}",
        )),
    }
}

impl Profile {
    /// Render a conversation with the family's default template.
    pub fn render(&self, req: &RenderRequest) -> Result<RenderedPrompt> {
        self.render_with_config(req, &Json::Null)
    }

    /// Render with the model's `config.json` at hand: it is passed to the template as
    /// `model_config`, and its `template_type` picks `templates/<type>.jinja`.
    pub fn render_with_config(&self, req: &RenderRequest, config: &Json) -> Result<RenderedPrompt> {
        self.render_parts(
            &req.messages,
            req.tools.as_deref(),
            req.reasoning.as_ref(),
            req.task.as_deref(),
            config,
        )
    }

    /// [`render_with_config`](Self::render_with_config) from borrowed parts (no copies of the
    /// messages or tools).
    pub fn render_parts(
        &self,
        messages: &[Json],
        tools: Option<&[Json]>,
        reasoning: Option<&Json>,
        task: Option<&str>,
        config: &Json,
    ) -> Result<RenderedPrompt> {
        let template_name = self.template_name(config)?;

        // 1. Reasoning flag: native families reason unless told not to.
        let (requested, effort) = parse_reasoning(reasoning)?;
        let native = self.supports_native_thinking();
        let reasoning = native
            && requested != Some(false)
            && (requested == Some(true)
                || effort.is_some()
                || (requested.is_none() && effort.is_none()));
        let reasoning_effort =
            reasoning.then(|| effort.unwrap_or_else(|| super::DEFAULT_REASONING_EFFORT.into()));

        // 2. Messages and tools.
        let prepared = messages::prepare(messages)?;
        let tools = match tools {
            Some(tools) => Value::from(
                sorted_tool_refs(tools)?
                    .into_iter()
                    .map(json_value)
                    .collect::<Vec<_>>(),
            ),
            None => Value::from(()),
        };

        // 3. Template.
        let messages = Value::from(prepared.messages);
        let model_config = if config.is_object() {
            json_value(config)
        } else {
            Value::from_iter([("model_type", Value::from(self.family.as_str()))])
        };
        let ctx = RenderContext {
            dynamic: [
                messages.clone(),
                messages,
                Value::from(reasoning),
                Value::from(
                    reasoning_effort
                        .as_deref()
                        .unwrap_or(super::DEFAULT_REASONING_EFFORT),
                ),
                match task {
                    Some(s) => Value::from(s),
                    None => Value::from(()),
                },
                Value::from(()),
                tools,
                model_config,
            ],
            statics: Arc::clone(&self.statics),
        };
        let template = self
            .env
            .get_template(&template_name)
            .map_err(|e| template_error(&self.family, &e))?;
        let rendered = template
            .render(Value::from_object(ctx))
            .map_err(|e| template_error(&self.family, &e))?;

        // 4. Layout on the rendered text, then drop the synthetic placeholders.
        let media = Media {
            images: &prepared.images,
            audio: &prepared.audio,
            capabilities: &prepared.capabilities,
            order: &prepared.content_order,
        };
        let layout = layout::build(&rendered, &media, &self.placeholders).map_err(|e| {
            Error::new(
                e.code,
                format!("model family '{}': {}", self.family, e.message),
            )
        })?;
        let prompt = self.placeholders.strip(rendered);

        Ok(RenderedPrompt {
            prompt,
            layout,
            reasoning,
            reasoning_effort,
            images: prepared.images,
            audio: prepared.audio,
            capabilities: prepared.capabilities,
        })
    }

    /// `template_type` from the model config → template file name.
    fn template_name(&self, config: &Json) -> Result<Cow<'static, str>> {
        match config.get("template_type").and_then(Json::as_str) {
            None | Some("") | Some("default") => Ok(Cow::Borrowed(CHAT_TEMPLATE)),
            Some(kind) => {
                let name = format!("templates/{kind}.jinja");
                let valid = kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    && !kind.starts_with('.');
                if valid && self.dir.join(&name).is_file() {
                    Ok(Cow::Owned(name))
                } else {
                    Err(Error::template(format!(
                        "model family '{}': config.template_type '{kind}' has no {name}",
                        self.family
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasoning_flag_parsing() {
        assert_eq!(parse_reasoning(None).unwrap(), (None, None));
        assert_eq!(
            parse_reasoning(Some(&json!(false))).unwrap(),
            (Some(false), None)
        );
        assert_eq!(
            parse_reasoning(Some(&json!("high"))).unwrap(),
            (None, Some("high".into()))
        );
        assert_eq!(
            parse_reasoning(Some(&json!({"effort": "low"}))).unwrap(),
            (None, Some("low".into()))
        );
        assert!(parse_reasoning(Some(&json!(3))).is_err());
    }

    #[test]
    fn tools_need_a_name_and_are_sorted() {
        let tools = [
            json!({"type": "function", "function": {"name": "b"}}),
            json!({"name": "a"}),
        ];
        let sorted = sorted_tools(&tools).unwrap();
        assert_eq!(sorted[0]["name"], "a");
        let err = sorted_tools(&[json!({"name": "a"}), json!({"description": "x"})]).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::Template);
        assert_eq!(
            err.message,
            "tools[1]: missing name; expected a non-empty 'name' or 'function.name'"
        );
        let err =
            sorted_tools(&[json!({"type": "function", "function": {"name": ""}})]).unwrap_err();
        assert!(
            err.message.starts_with("tools[0]: missing name"),
            "{}",
            err.message
        );
        assert!(sorted_tools(&[json!("f")]).is_err());
    }
}
