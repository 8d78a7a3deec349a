//! One model family's profile: control tokens, capabilities, sampling lanes and the compiled
//! chat template, loaded once per family. The render pipeline is in [`super::render`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use minijinja::value::Value;
use minijinja::Environment;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::wire::{Node, Obj, ToolCallingTokens};

use super::jinja;
use super::layout::Placeholders;
use super::render::static_vars;

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
    pub(super) family: String,
    pub(super) dir: PathBuf,
    pub(super) control: ControlTokens,
    pub(super) capabilities: Json,
    pub(super) generation: Json,
    pub(super) placeholders: Placeholders,
    pub(super) env: Environment<'static>,
    /// Template variables that do not depend on the request (control tokens, roles,
    /// capabilities, `template_vars`), converted to template values once at load.
    pub(super) statics: Arc<Vec<(String, Value)>>,
    /// [`Profile::tool_calling_tokens`] in its wire form, built on first use.
    wire_tool_tokens: OnceLock<Result<ToolCallingTokens>>,
    /// [`Profile::thinking_tokens`], built on first use (every request carries them).
    thinking: OnceLock<ThinkingTokens>,
    /// [`Profile::output_frame_tokens`], built on first use (every request carries them).
    frame_tokens: OnceLock<BTreeMap<String, String>>,
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
            wire_tool_tokens: OnceLock::new(),
            thinking: OnceLock::new(),
            frame_tokens: OnceLock::new(),
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
        self.thinking
            .get_or_init(|| self.read_thinking_tokens())
            .clone()
    }

    fn read_thinking_tokens(&self) -> ThinkingTokens {
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

    /// [`Self::tool_calling_tokens`] as the wire sends it (checked and converted once).
    pub fn wire_tool_calling_tokens(&self) -> Result<ToolCallingTokens> {
        self.wire_tool_tokens
            .get_or_init(|| {
                let json = self.tool_calling_tokens();
                let at = format!("{}/capabilities.yaml tool_calling", self.family);
                let node = Node::from_value(&json);
                ToolCallingTokens::from_obj(&Obj::new(&node, &at, Error::template)?, false)
            })
            .clone()
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
    pub fn output_frame_tokens(&self) -> &BTreeMap<String, String> {
        self.frame_tokens
            .get_or_init(|| self.read_output_frame_tokens())
    }

    fn read_output_frame_tokens(&self) -> BTreeMap<String, String> {
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
}
