//! Chat options: JSON text from TypeScript → a serde derive (unknown names refused) → one
//! [`ChatOptions::validate`] → [`ChatOptions`].

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ranges::{range_of, MAX_CANDIDATES, REASONING_EFFORTS};
use crate::error::{Error, Result};

/// `max_generated_tokens` when the caller sets no `maxTokens` (orchard-py's default).
pub const DEFAULT_MAX_TOKENS: u64 = 8192;
/// The seed a deterministic request uses when the caller gives none.
pub const DETERMINISTIC_SEED: u64 = 11;
/// The repetition penalty's window when neither the caller nor the profile sets one. The
/// reference clients send 60 (`client-api.md` §2.1–2.2); the wire's 0 is only what the engine
/// assumes when a frame leaves the field out.
pub const DEFAULT_REPETITION_CONTEXT_SIZE: i64 = 60;

/// The options object exactly as the caller wrote it (camelCase; `null` is "not set").
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Input {
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    seed: Option<u64>,
    deterministic: Option<bool>,
    stop: Option<Stop>,
    n: Option<u64>,
    best_of: Option<u64>,
    top_logprobs: Option<u64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    repetition_context_size: Option<i64>,
    logit_bias: Option<Map<String, Value>>,
    reasoning: Option<Value>,
    tools: Option<Vec<Value>>,
    prefix_cache: Option<bool>,
    final_candidates: Option<u64>,
    active_tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    min_tool_calls: Option<u64>,
    max_tool_calls: Option<u64>,
    response_format: Option<Value>,
    instructions: Option<String>,
    task: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a string or an array of strings")]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Validated chat options. `None` means "the profile's default", never a sentinel value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatOptions {
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub seed: Option<u64>,
    pub deterministic: bool,
    pub stop: Option<Vec<String>>,
    pub n: u32,
    pub best_of: Option<u32>,
    pub top_logprobs: u32,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub repetition_context_size: Option<i64>,
    pub logit_bias: Vec<(i64, f64)>,
    pub reasoning: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub prefix_cache: bool,
    /// Candidates the engine keeps and the result returns (default `n`).
    pub final_candidates: Option<u32>,
    /// Tools that drive constrained decoding (default: `tools`).
    pub active_tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required`, or a named function as its JSON text.
    pub tool_choice: Option<String>,
    pub min_tool_calls: Option<u64>,
    pub max_tool_calls: Option<u64>,
    /// The response format as JSON text, passed through as given.
    pub response_format: Option<String>,
    /// Becomes a system message ahead of the conversation.
    pub instructions: Option<String>,
    pub task: Option<String>,
}

/// Builds errors that name a field under one path (`options`, `options[1]`, ...).
struct At<'a>(&'a str);

impl At<'_> {
    fn fail(&self, field: &str, what: impl std::fmt::Display) -> Error {
        Error::invalid(format!("{}.{field}: {what}", self.0))
    }

    /// `v` when it lies in `option`'s chat range.
    fn ranged(&self, option: &str, v: Option<f64>) -> Result<Option<f64>> {
        let r = range_of(option);
        match v {
            Some(x) if !r.chat.contains(x) => Err(self.fail(
                option,
                format!("{x} is out of range; {}", r.chat.hint(r.integer)),
            )),
            _ => Ok(v),
        }
    }

    fn ranged_int(&self, option: &str, v: Option<i64>) -> Result<Option<i64>> {
        self.ranged(option, v.map(|x| x as f64)).map(|_| v)
    }

    fn ranged_uint(&self, option: &str, v: Option<u64>) -> Result<Option<u64>> {
        self.ranged(option, v.map(|x| x as f64)).map(|_| v)
    }
}

/// serde's "invalid type: map, expected u64" in the words of a JavaScript caller:
/// "expected a non-negative integer, got an object".
fn plain_words(serde_message: &str) -> String {
    let body = serde_message
        .strip_prefix("invalid type: ")
        .or_else(|| serde_message.strip_prefix("invalid value: "));
    let Some((got, expected)) = body.and_then(|b| b.split_once(", expected ")) else {
        return serde_message.to_string();
    };
    let expected = match expected {
        "u64" | "u32" => "a non-negative integer",
        "i64" | "i32" => "an integer",
        "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "an object",
        other => other,
    };
    let got = match got {
        "map" => "an object".to_string(),
        "sequence" => "an array".to_string(),
        "null" | "unit value" => "null".to_string(),
        other => other
            .rsplit_once(' ')
            .map_or(other, |(_, v)| v)
            .trim_matches('`')
            .to_string(),
    };
    format!("expected {expected}, got {got}")
}

/// A deserialization error at `field` (serde_path_to_error's path, `.` for the root) in the
/// words of a JavaScript caller, under `path`.
fn field_error(path: &str, field: &str, inner: &str) -> Error {
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected
            .trim_start_matches(", expected one of ")
            .replace('`', "");
        return Error::invalid(format!(
            "{path}.{name}: unknown option; use one of {expected}"
        ));
    }
    if field == "." {
        Error::invalid(format!("{path}: {}", plain_words(inner)))
    } else {
        Error::invalid(format!("{path}.{field}: {}", plain_words(inner)))
    }
}

/// The options object into [`Input`], with errors at the offending field.
fn deserialize(v: &Value, path: &str) -> Result<Input> {
    serde_path_to_error::deserialize(v)
        .map_err(|e| field_error(path, &e.path().to_string(), &e.into_inner().to_string()))
}

/// [`deserialize`] straight from JSON text: no JSON tree is built for the options.
fn deserialize_text(text: &str, path: &str) -> Result<Input> {
    let not_json = |e: serde_json::Error| Error::not_json(path, e);
    let mut de = serde_json::Deserializer::from_str(text);
    let input = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return not_json(inner);
        }
        // The text's position adds nothing to the field's path.
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        let message = inner.to_string();
        field_error(
            path,
            &field,
            message.strip_suffix(&position).unwrap_or(&message),
        )
    })?;
    de.end().map_err(not_json)?;
    Ok(input)
}

impl ChatOptions {
    /// Parse the options object (JSON from TypeScript). Unknown keys, wrong types and
    /// out-of-range values are `InvalidRequest` errors naming the key.
    pub fn parse(v: &Value) -> Result<ChatOptions> {
        Self::parse_at(v, "options")
    }

    /// [`ChatOptions::parse`] from the options' JSON text (from TypeScript), without building
    /// a JSON tree for an object; `path` names the options in errors.
    pub fn parse_text(text: &str, path: &str) -> Result<ChatOptions> {
        if !text.trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(text).map_err(|e| Error::not_json(path, e))?;
            return Self::parse_at(&v, path);
        }
        Self::validate(deserialize_text(text, path)?, path)
    }

    /// [`ChatOptions::parse`] for the options found at `path` (named in errors).
    pub fn parse_at(v: &Value, path: &str) -> Result<ChatOptions> {
        let input = match v {
            Value::Null => Input::default(),
            Value::Object(_) => deserialize(v, path)?,
            _ => {
                return Err(Error::invalid(format!(
                    "{path}: expected an object of chat options"
                )))
            }
        };
        Self::validate(input, path)
    }

    /// Every check that spans more than one field's type: ranges, relations, known names.
    fn validate(i: Input, path: &str) -> Result<ChatOptions> {
        let at = At(path);
        let stop = match i.stop {
            None => None,
            Some(Stop::One(s)) => Some(vec![s]),
            Some(Stop::Many(v)) => Some(v),
        };
        if stop
            .as_ref()
            .is_some_and(|s| s.iter().any(String::is_empty))
        {
            return Err(at.fail(
                "stop",
                "stop sequences must not be empty strings; remove the empty entry",
            ));
        }
        let n = at.ranged_uint("n", Some(i.n.unwrap_or(1)))?.unwrap_or(1);
        if let Some(b) = i.best_of {
            if b < n || b as f64 > MAX_CANDIDATES {
                return Err(at.fail(
                    "bestOf",
                    format!("{b} is out of range; use n ({n}) to {MAX_CANDIDATES}"),
                ));
            }
        }
        if let Some(f) = i.final_candidates {
            let fan_out = i.best_of.unwrap_or(n);
            if f < n || f > fan_out {
                return Err(at.fail(
                    "finalCandidates",
                    format!("{f} is out of range; use n ({n}) to bestOf ({fan_out})"),
                ));
            }
        }
        let mut logit_bias = Vec::new();
        for (key, value) in i.logit_bias.iter().flatten() {
            let field = format!("logitBias.{key}");
            let token: i64 = key.parse().map_err(|_| {
                at.fail(
                    &field,
                    "keys must be token ids (integers), e.g. {\"1234\": -100}",
                )
            })?;
            let bias = match value {
                Value::Null => 0.0,
                Value::Number(x) => x.as_f64().unwrap_or(f64::NAN),
                other => return Err(at.fail(&field, format!("{other} is not a number"))),
            };
            let r = range_of("logitBias");
            if !r.chat.contains(bias) {
                return Err(at.fail(
                    &field,
                    format!("{bias} is out of range; {}", r.chat.hint(false)),
                ));
            }
            logit_bias.push((token, bias));
        }
        let reasoning = match i.reasoning {
            None => None,
            Some(v @ Value::Bool(_)) => Some(v),
            Some(Value::String(s)) if REASONING_EFFORTS.contains(&s.as_str()) => {
                Some(Value::String(s))
            }
            Some(other) => {
                return Err(at.fail(
                    "reasoning",
                    format!(
                        "{other} is not valid; use true, false, {}",
                        quoted_list(&REASONING_EFFORTS)
                    ),
                ))
            }
        };
        let tool_choice = tool_choice(&at, i.tool_choice, i.tools.as_deref())?;
        let min_tool_calls = i.min_tool_calls;
        if min_tool_calls == Some(0) {
            return Err(at.fail(
                "minToolCalls",
                "must be at least 1 (it applies once the model calls tools; toolChoice decides whether it must)",
            ));
        }
        if let (Some(lo), Some(hi)) = (min_tool_calls, i.max_tool_calls) {
            if hi > 0 && lo > hi {
                return Err(at.fail(
                    "minToolCalls",
                    format!(
                        "{lo} is more than maxToolCalls ({hi}); lower it or raise maxToolCalls"
                    ),
                ));
            }
        }
        Ok(ChatOptions {
            max_tokens: at.ranged_uint("maxTokens", i.max_tokens)?,
            temperature: at.ranged("temperature", i.temperature)?,
            top_p: at.ranged("topP", i.top_p)?,
            top_k: at.ranged_int("topK", i.top_k)?,
            min_p: at.ranged("minP", i.min_p)?,
            seed: at.ranged_uint("seed", i.seed)?,
            deterministic: i.deterministic.unwrap_or(false),
            stop,
            n: n as u32,
            best_of: i.best_of.map(|b| b as u32),
            top_logprobs: at.ranged_uint("topLogprobs", i.top_logprobs)?.unwrap_or(0) as u32,
            frequency_penalty: at.ranged("frequencyPenalty", i.frequency_penalty)?,
            presence_penalty: at.ranged("presencePenalty", i.presence_penalty)?,
            repetition_penalty: at.ranged("repetitionPenalty", i.repetition_penalty)?,
            repetition_context_size: i.repetition_context_size,
            logit_bias,
            reasoning,
            tools: i.tools,
            prefix_cache: i.prefix_cache.unwrap_or(true),
            final_candidates: i.final_candidates.map(|f| f as u32),
            active_tools: i.active_tools,
            tool_choice,
            min_tool_calls,
            max_tool_calls: at.ranged_uint("maxToolCalls", i.max_tool_calls)?,
            response_format: response_format(&at, i.response_format)?,
            instructions: i.instructions,
            task: i.task.filter(|t| !t.is_empty()),
        })
    }
}

fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// `toolChoice`: `"auto" | "none" | "required"`, or a named function
/// (`{type: "function", name}` or `{type: "function", function: {name}}`) that must be one of
/// `tools`. Returned in its wire form (objects as JSON text).
fn tool_choice(at: &At, v: Option<Value>, tools: Option<&[Value]>) -> Result<Option<String>> {
    let named = |name: &str| -> Result<Option<String>> {
        let known = tools.unwrap_or(&[]).iter().any(|t| {
            t.get("name").and_then(Value::as_str) == Some(name)
                || t.pointer("/function/name").and_then(Value::as_str) == Some(name)
        });
        if !known {
            return Err(at.fail(
                "toolChoice",
                format!("names the function '{name}', which is not in tools; add it to tools or name another"),
            ));
        }
        let mut choice = Map::new();
        choice.insert("type".into(), "function".into());
        choice.insert("name".into(), name.into());
        Ok(Some(Value::Object(choice).to_string()))
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ["auto", "none", "required"].contains(&s.as_str()) => {
            if s == "required" && tools.is_none_or(|t| t.is_empty()) {
                return Err(at.fail("toolChoice", "'required' needs at least one tool in tools"));
            }
            Ok(Some(s))
        }
        Some(Value::Object(m)) if m.get("type").and_then(Value::as_str) == Some("function") => {
            let name = m
                .get("name")
                .or_else(|| m.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str);
            match name {
                Some(n) if !n.is_empty() => named(n),
                _ => Err(at.fail("toolChoice", "a named choice needs the function's name")),
            }
        }
        Some(other) => Err(at.fail(
            "toolChoice",
            format!(
                "{other} is not valid; use 'auto', 'none', 'required' or {{ type: 'function', name }}"
            ),
        )),
    }
}

/// `responseFormat`: `{type: "text"}`, `{type: "json_object"}` or
/// `{type: "json_schema", json_schema: {name, schema, strict?}}`; sent as JSON text.
fn response_format(at: &At, v: Option<Value>) -> Result<Option<String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::Object(f) = &v else {
        return Err(at.fail("responseFormat", "expected an object with a type"));
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(v.to_string())),
        Some("json_schema") => {
            let Some(spec) = f.get("json_schema") else {
                return Err(at.fail(
                    "responseFormat.json_schema",
                    "missing; expected { name, schema, strict? }",
                ));
            };
            let Value::Object(spec) = spec else {
                return Err(at.fail(
                    "responseFormat.json_schema",
                    "expected an object { name, schema, strict? }",
                ));
            };
            if !matches!(spec.get("schema"), Some(Value::Object(_) | Value::Bool(_))) {
                return Err(at.fail(
                    "responseFormat.json_schema.schema",
                    "expected a JSON Schema object",
                ));
            }
            if spec.get("name").is_some_and(|n| !n.is_string()) {
                return Err(at.fail("responseFormat.json_schema.name", "expected a string"));
            }
            Ok(Some(v.to_string()))
        }
        _ => Err(at.fail(
            "responseFormat.type",
            "expected 'text', 'json_object' or 'json_schema'",
        )),
    }
}

/// Options for a batch: one object for every conversation, or an array with one entry per
/// conversation (an array of one applies to all).
pub fn parse_batch_options(v: &Value, conversations: usize) -> Result<Vec<ChatOptions>> {
    match v {
        Value::Array(items) => {
            if items.len() != 1 && items.len() != conversations {
                return Err(Error::invalid(format!(
                    "options: {} entries for {conversations} conversations; give one options object, or one per conversation",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| ChatOptions::parse_at(item, &format!("options[{i}]")))
                .collect()
        }
        other => Ok(vec![ChatOptions::parse(other)?]),
    }
}
