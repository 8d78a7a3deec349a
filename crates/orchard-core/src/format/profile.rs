//! One model family's profile: control tokens, capabilities, sampling lanes and the compiled
//! chat template, and the render pipeline (messages → template → layout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::Environment;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::wire::LayoutSegment;

use super::jinja;
use super::layout::{self, Media, Placeholders};
use super::messages::{self, CapabilityInput};

/// The main template of a family, compiled at load time.
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";

/// Role tags of one logical role (`system`, `agent`, `user`, `tool`).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct RoleTags {
    pub role_name: String,
    pub role_start_tag: String,
    pub role_end_tag: String,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Roles {
    pub system: Option<RoleTags>,
    pub agent: Option<RoleTags>,
    pub user: Option<RoleTags>,
    pub tool: Option<RoleTags>,
}

/// `control_tokens.json`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ControlTokens {
    /// Informational only (the template variant is chosen by the model's `template_type`).
    #[serde(default)]
    pub template_type: Option<String>,
    /// Other `model_type` values that select this family.
    #[serde(default)]
    pub model_types: Vec<String>,
    pub begin_of_text: String,
    pub end_of_message: String,
    pub end_of_sequence: String,
    #[serde(default)]
    pub start_image_token: Option<String>,
    #[serde(default)]
    pub end_image_token: Option<String>,
    pub roles: Roles,
    /// Stop strings used when the caller gives none; default `[end_of_sequence]`.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Extra template variables (defaults the caller cannot see, e.g. llama3's `date_string`).
    #[serde(default)]
    pub template_vars: Map<String, Json>,
}

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
    /// Effort sent to the engine when reasoning ("medium" unless the caller chose one).
    pub reasoning_effort: Option<String>,
    pub images: Vec<Vec<u8>>,
    /// Little-endian f32 samples, one buffer per audio part.
    pub audio: Vec<Vec<u8>>,
    pub capabilities: Vec<CapabilityInput>,
}

/// Sampling values from one lane of `generation.yaml`; `None` where the lane is silent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingDefaults {
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub repetition_context_size: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub max_new_tokens: Option<i64>,
}

/// Generated-reasoning delimiters for the engine (`thinking_tokens` in the request).
pub use crate::wire::ThinkingTokens;

pub struct Profile {
    family: String,
    dir: PathBuf,
    control: ControlTokens,
    capabilities: Json,
    generation: Json,
    placeholders: Placeholders,
    env: Environment<'static>,
    /// Template variables that do not depend on the request (control tokens, roles,
    /// capabilities, `template_vars`), converted to template values once at load.
    statics: Arc<Vec<(String, Value)>>,
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
        let key = key.as_str()?;
        if let Some(i) = DYNAMIC_VARS.iter().position(|k| *k == key) {
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
fn static_vars(control: &ControlTokens, capabilities: &Json) -> Vec<(String, Value)> {
    let mut vars: Vec<(String, Value)> = Vec::new();
    let mut set = |k: &str, v: Value| match vars.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => vars.push((k.to_string(), v)),
    };
    for (k, v) in &control.template_vars {
        set(k, Value::from_serialize(v));
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
    set("roles", Value::from_serialize(&c.roles));
    set("capabilities", Value::from_serialize(capabilities));
    // Per-request names are answered by the render context; drop any shadowed default.
    vars.retain(|(k, _)| !DYNAMIC_VARS.contains(&k.as_str()));
    vars
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("family", &self.family)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn read_text(path: &Path, family: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::template(format!(
            "model family '{family}': cannot read {}: {e}",
            path.display()
        ))
    })
}

/// Parse a YAML profile file into JSON values (an empty file is an empty mapping).
fn read_yaml(path: &Path, family: &str) -> Result<Json> {
    let text = read_text(path, family)?;
    if text.trim().is_empty() {
        return Ok(Json::Object(Map::new()));
    }
    let value: Json = serde_norway::from_str(&text).map_err(|e| {
        Error::template(format!("model family '{family}': {}: {e}", path.display()))
    })?;
    match value {
        Json::Null => Ok(Json::Object(Map::new())),
        Json::Object(_) => Ok(value),
        _ => Err(Error::template(format!(
            "model family '{family}': {}: expected a mapping at the top level",
            path.display()
        ))),
    }
}

/// Describe a minijinja error with the family, the template file and the line.
pub(crate) fn template_error(family: &str, err: &minijinja::Error) -> Error {
    let mut msg = format!("model family '{family}': template error");
    match (err.name(), err.line()) {
        (Some(name), Some(line)) => msg.push_str(&format!(" in {name} line {line}")),
        (Some(name), None) => msg.push_str(&format!(" in {name}")),
        (None, Some(line)) => msg.push_str(&format!(" at line {line}")),
        (None, None) => {}
    }
    msg.push_str(": ");
    match err.detail() {
        Some(detail) => msg.push_str(detail),
        None => msg.push_str(&err.kind().to_string()),
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        msg.push_str(&format!(" (caused by: {inner})"));
        source = inner.source();
    }
    Error::template(msg)
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

fn f64_of(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn i64_of(v: &Json) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

impl Profile {
    /// Load the family in `dir` (its folder name is the family name). `shared_dir` holds
    /// templates shared by several families (the model-specs root).
    pub fn load(family: &str, dir: &Path, shared_dir: &Path) -> Result<Profile> {
        let control_path = dir.join("control_tokens.json");
        let control: ControlTokens = serde_json::from_str(&read_text(&control_path, family)?)
            .map_err(|e| {
                Error::template(format!(
                    "model family '{family}': {}: {e}",
                    control_path.display()
                ))
            })?;
        let capabilities = read_yaml(&dir.join("capabilities.yaml"), family)?;
        let generation = read_yaml(&dir.join("generation.yaml"), family)?;
        let placeholders =
            Placeholders::from_capabilities(&capabilities, control.start_image_token.as_deref());

        let env = jinja::environment(family, dir.to_path_buf(), shared_dir.to_path_buf());
        if !dir.join(CHAT_TEMPLATE).is_file() {
            return Err(Error::template(format!(
                "model family '{family}': missing {}",
                dir.join(CHAT_TEMPLATE).display()
            )));
        }
        // Compile now so that syntax errors surface when the profile loads.
        env.get_template(CHAT_TEMPLATE)
            .map_err(|e| template_error(family, &e))?;

        let statics = Arc::new(static_vars(&control, &capabilities));
        Ok(Profile {
            family: family.to_string(),
            dir: dir.to_path_buf(),
            control,
            capabilities,
            generation,
            placeholders,
            env,
            statics,
        })
    }

    pub fn family(&self) -> &str {
        &self.family
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn control_tokens(&self) -> &ControlTokens {
        &self.control
    }

    /// `capabilities.yaml` as JSON.
    pub fn capabilities(&self) -> &Json {
        &self.capabilities
    }

    /// `generation.yaml` as JSON.
    pub fn generation(&self) -> &Json {
        &self.generation
    }

    /// `capabilities.thinking.native`.
    pub fn supports_native_thinking(&self) -> bool {
        self.capabilities
            .pointer("/thinking/native")
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }

    /// Stop strings to use when the user gives none.
    pub fn default_stop_sequences(&self) -> Vec<String> {
        match &self.control.stop_sequences {
            Some(list) => list.clone(),
            None if self.control.end_of_sequence.is_empty() => Vec::new(),
            None => vec![self.control.end_of_sequence.clone()],
        }
    }

    /// One named lane of `generation.yaml` (`default`, `recommended`, `deterministic`, ...),
    /// falling back to `default` when the lane is absent.
    pub fn sampling_lane(&self, lane: &str) -> SamplingDefaults {
        let values = self
            .generation
            .get(lane)
            .filter(|v| v.is_object())
            .or_else(|| self.generation.get("default"))
            .and_then(Json::as_object);
        let Some(values) = values else {
            return SamplingDefaults::default();
        };
        let f = |k: &str| values.get(k).and_then(f64_of);
        let i = |k: &str| values.get(k).and_then(i64_of);
        SamplingDefaults {
            do_sample: values.get("do_sample").and_then(Json::as_bool),
            temperature: f("temperature"),
            top_p: f("top_p"),
            top_k: i("top_k"),
            min_p: f("min_p"),
            repetition_penalty: f("repetition_penalty"),
            repetition_context_size: i("repetition_context_size"),
            presence_penalty: f("presence_penalty"),
            frequency_penalty: f("frequency_penalty"),
            max_new_tokens: i("max_new_tokens"),
        }
    }

    /// Sampling defaults: the `default` lane, or the `recommended` lane when the request is
    /// deterministic (what the reference client does).
    pub fn sampling_defaults(&self, deterministic: bool) -> SamplingDefaults {
        self.sampling_lane(if deterministic {
            "recommended"
        } else {
            "default"
        })
    }

    /// `thinking_tokens` for the engine: the profile's delimiters for native-thinking families,
    /// empty strings otherwise.
    pub fn thinking_tokens(&self) -> ThinkingTokens {
        if !self.supports_native_thinking() {
            return ThinkingTokens::default();
        }
        let s = |p: &str| {
            self.capabilities
                .pointer(p)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ThinkingTokens {
            start: s("/thinking/tokens/start"),
            end: s("/thinking/tokens/end"),
            required: self
                .capabilities
                .pointer("/thinking/required")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        }
    }

    /// `tool_calling_tokens` for the engine, flattened from `capabilities.tool_calling.formats`.
    pub fn tool_calling_tokens(&self) -> Json {
        let formats = self
            .capabilities
            .pointer("/tool_calling/formats")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let token = |fmt: &Json, key: &str| -> Json {
            Json::String(
                fmt.get("tokens")
                    .and_then(|t| t.get(key))
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        let mut out_formats = Vec::with_capacity(formats.len());
        for fmt in &formats {
            let mut m = Map::new();
            m.insert(
                "name".into(),
                Json::String(
                    fmt.get("name")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                ),
            );
            for (out_key, key) in [
                ("call_start", "start"),
                ("inline_start", "inline_start"),
                ("channel", "channel"),
                ("recipient_prefix", "recipient_prefix"),
                ("constraint_prefix", "constraint_prefix"),
                ("constraint", "constraint"),
                ("message", "message"),
                ("call_end", "end"),
            ] {
                m.insert(out_key.into(), token(fmt, key));
            }
            out_formats.push(Json::Object(m));
        }
        let first = formats.first().cloned().unwrap_or(Json::Null);
        let mut out = Map::new();
        out.insert("formats".into(), Json::Array(out_formats));
        out.insert("section_start".into(), token(&first, "section_start"));
        out.insert("section_end".into(), token(&first, "section_end"));
        Json::Object(out)
    }

    /// `output_frame_tokens` for the engine: `marker.<name>` and `channel.<name>` entries of
    /// `capabilities.output_framing`.
    pub fn output_frame_tokens(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (section, prefix) in [("markers", "marker"), ("channels", "channel")] {
            let Some(map) = self
                .capabilities
                .pointer(&format!("/output_framing/{section}"))
                .and_then(Json::as_object)
            else {
                continue;
            };
            for (name, value) in map {
                let text = match value {
                    Json::String(s) if !s.is_empty() => s.clone(),
                    Json::Number(n) => n.to_string(),
                    Json::Bool(true) => "True".into(),
                    _ => continue,
                };
                out.insert(format!("{prefix}.{name}"), text);
            }
        }
        out
    }

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
        let reasoning_effort = reasoning.then(|| effort.unwrap_or_else(|| "medium".into()));

        // 2. Messages and tools.
        let prepared = messages::prepare(messages)?;
        let tools = match tools {
            Some(tools) => Value::from_serialize(sorted_tool_refs(tools)?),
            None => Value::from(()),
        };

        // 3. Template.
        let messages = Value::from(prepared.messages);
        let model_config = if config.is_object() {
            Value::from_serialize(config)
        } else {
            Value::from_iter([("model_type", Value::from(self.family.as_str()))])
        };
        let ctx = RenderContext {
            dynamic: [
                messages.clone(),
                messages,
                Value::from(reasoning),
                Value::from(reasoning_effort.as_deref().unwrap_or("medium")),
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
    fn template_name(&self, config: &Json) -> Result<String> {
        match config.get("template_type").and_then(Json::as_str) {
            None | Some("") | Some("default") => Ok(CHAT_TEMPLATE.to_string()),
            Some(kind) => {
                let name = format!("templates/{kind}.jinja");
                let valid = kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    && !kind.starts_with('.');
                if valid && self.dir.join(&name).is_file() {
                    Ok(name)
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
