//! Chat options (camelCase, validated) → one prompt of a generation request.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::{sorted_tool_refs, Profile};
use crate::wire::{Obj, PromptPayload, Request, RequestType, ThinkingTokens, ToolCallingTokens};

/// `max_generated_tokens` when the caller sets no `maxTokens` (orchard-py's default).
pub const DEFAULT_MAX_TOKENS: u64 = 8192;
/// The seed a deterministic request uses when the caller gives none.
pub const DETERMINISTIC_SEED: u64 = 11;

const OPTION_KEYS: &[&str] = &[
    "maxTokens",
    "temperature",
    "topP",
    "topK",
    "minP",
    "seed",
    "deterministic",
    "stop",
    "n",
    "bestOf",
    "topLogprobs",
    "frequencyPenalty",
    "presencePenalty",
    "repetitionPenalty",
    "repetitionContextSize",
    "logitBias",
    "reasoning",
    "tools",
    "prefixCache",
    "finalCandidates",
    "activeTools",
    "toolChoice",
    "minToolCalls",
    "maxToolCalls",
    "responseFormat",
    "instructions",
    "task",
];

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

fn range(o: &Obj, key: &str, v: Option<f64>, lo: f64, hi: f64, hint: &str) -> Result<Option<f64>> {
    match v {
        Some(x) if !(x.is_finite() && x >= lo && x <= hi) => {
            Err(o.fail(key, format!("{x} is out of range; {hint}")))
        }
        _ => Ok(v),
    }
}

impl ChatOptions {
    /// Parse the options object (JSON text from TypeScript). Unknown keys, wrong types and
    /// out-of-range values are `InvalidRequest` errors naming the key.
    pub fn parse(v: &Value) -> Result<ChatOptions> {
        Self::parse_at(v, "options")
    }

    /// [`ChatOptions::parse`] for the options found at `path` (named in errors).
    pub fn parse_at(v: &Value, path: &str) -> Result<ChatOptions> {
        if v.is_null() {
            return Ok(ChatOptions {
                n: 1,
                prefix_cache: true,
                ..Default::default()
            });
        }
        let o = Obj::new(v, path.to_string(), Error::invalid)?;
        o.deny_unknown(OPTION_KEYS)?;
        let stop = match o.get("stop") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(_)) => Some(o.strings("stop")?),
            Some(_) => return Err(o.fail("stop", "expected a string or an array of strings")),
        };
        if stop
            .as_ref()
            .is_some_and(|s| s.iter().any(String::is_empty))
        {
            return Err(o.fail("stop", "stop sequences must not be empty strings"));
        }
        let n = o.u64_or("n", 1)?;
        if !(1..=64).contains(&n) {
            return Err(o.fail("n", format!("{n} is out of range; use 1 to 64")));
        }
        let best_of = o.u64_opt("bestOf")?;
        if let Some(b) = best_of {
            if b < n || b > 64 {
                return Err(o.fail("bestOf", format!("{b} is out of range; use n ({n}) to 64")));
            }
        }
        let top_k = o.i64_opt("topK")?;
        if let Some(k) = top_k {
            if k < -1 || k == 0 {
                return Err(o.fail(
                    "topK",
                    format!("{k} is out of range; use -1 (off) or a positive integer"),
                ));
            }
        }
        let top_logprobs = o.u64_or("topLogprobs", 0)?;
        if top_logprobs > 20 {
            return Err(o.fail(
                "topLogprobs",
                format!("{top_logprobs} is out of range; use 0 to 20"),
            ));
        }
        let max_tokens = o.u64_opt("maxTokens")?;
        if max_tokens == Some(0) {
            return Err(o.fail("maxTokens", "must be at least 1"));
        }
        let mut logit_bias = Vec::new();
        if let Some(b) = o.get("logitBias").filter(|v| !v.is_null()) {
            let bias = Obj::new(b, o.at("logitBias"), Error::invalid)?;
            for key in bias.keys() {
                let token: i64 = key
                    .parse()
                    .map_err(|_| bias.fail(key, "keys must be token ids (integers)"))?;
                let value = range(
                    &bias,
                    key,
                    bias.f64_opt(key)?,
                    -100.0,
                    100.0,
                    "use -100 to 100",
                )?;
                logit_bias.push((token, value.unwrap_or(0.0)));
            }
        }
        let tools = match o.get("tools") {
            None | Some(Value::Null) => None,
            Some(Value::Array(t)) => Some(t.clone()),
            Some(_) => return Err(o.fail("tools", "expected an array of tool definitions")),
        };
        let reasoning = match o.get("reasoning") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Bool(_)) => Some(v.clone()),
            Some(Value::String(s))
                if ["minimal", "low", "medium", "high"].contains(&s.as_str()) =>
            {
                Some(Value::String(s.clone()))
            }
            Some(other) => {
                return Err(o.fail(
                    "reasoning",
                    format!(
                    "{other} is not valid; use true, false, 'minimal', 'low', 'medium' or 'high'"
                ),
                ))
            }
        };
        let final_candidates = o.u64_opt("finalCandidates")?;
        if let Some(f) = final_candidates {
            let fan_out = best_of.unwrap_or(n);
            if f < n || f > fan_out {
                return Err(o.fail(
                    "finalCandidates",
                    format!("{f} is out of range; use n ({n}) to bestOf ({fan_out})"),
                ));
            }
        }
        let active_tools = match o.get("activeTools") {
            None | Some(Value::Null) => None,
            Some(Value::Array(t)) => Some(t.clone()),
            Some(_) => return Err(o.fail("activeTools", "expected an array of tool definitions")),
        };
        let tool_choice = parse_tool_choice(&o, tools.as_deref())?;
        let min_tool_calls = o.u64_opt("minToolCalls")?;
        if min_tool_calls == Some(0) {
            return Err(o.fail(
                "minToolCalls",
                "must be at least 1 (it applies once the model calls tools; toolChoice decides whether it must)",
            ));
        }
        let max_tool_calls = o.u64_opt("maxToolCalls")?;
        if let (Some(lo), Some(hi)) = (min_tool_calls, max_tool_calls) {
            if hi > 0 && lo > hi {
                return Err(o.fail(
                    "minToolCalls",
                    format!("{lo} is more than maxToolCalls ({hi})"),
                ));
            }
        }
        let response_format = parse_response_format(&o)?;
        let instructions = o.opt_string("instructions")?;
        let task = o.opt_string("task")?.filter(|t| !t.is_empty());
        Ok(ChatOptions {
            final_candidates: final_candidates.map(|f| f as u32),
            active_tools,
            tool_choice,
            min_tool_calls,
            max_tool_calls,
            response_format,
            instructions,
            task,
            max_tokens,
            temperature: range(
                &o,
                "temperature",
                o.f64_opt("temperature")?,
                0.0,
                100.0,
                "use 0 or more",
            )?,
            top_p: range(
                &o,
                "topP",
                o.f64_opt("topP")?,
                f64::MIN_POSITIVE,
                1.0,
                "use a value in (0, 1]",
            )?,
            top_k,
            min_p: range(
                &o,
                "minP",
                o.f64_opt("minP")?,
                0.0,
                1.0,
                "use a value in [0, 1]",
            )?,
            seed: o.u64_opt("seed")?,
            deterministic: o.bool_or("deterministic", false)?,
            stop,
            n: n as u32,
            best_of: best_of.map(|b| b as u32),
            top_logprobs: top_logprobs as u32,
            frequency_penalty: range(
                &o,
                "frequencyPenalty",
                o.f64_opt("frequencyPenalty")?,
                -2.0,
                2.0,
                "use -2 to 2",
            )?,
            presence_penalty: range(
                &o,
                "presencePenalty",
                o.f64_opt("presencePenalty")?,
                -2.0,
                2.0,
                "use -2 to 2",
            )?,
            repetition_penalty: range(
                &o,
                "repetitionPenalty",
                o.f64_opt("repetitionPenalty")?,
                f64::MIN_POSITIVE,
                10.0,
                "use a value in (0, 10]",
            )?,
            repetition_context_size: o.i64_opt("repetitionContextSize")?,
            logit_bias,
            reasoning,
            tools,
            prefix_cache: o.bool_or("prefixCache", true)?,
        })
    }
}

/// `toolChoice`: `"auto" | "none" | "required"`, or a named function
/// (`{type: "function", name}` or `{type: "function", function: {name}}`) that must be one of
/// `tools`. Returned in its wire form (objects as JSON text).
fn parse_tool_choice(o: &Obj, tools: Option<&[Value]>) -> Result<Option<String>> {
    let named = |name: &str| -> Result<Option<String>> {
        let known = tools.unwrap_or(&[]).iter().any(|t| {
            t.get("name").and_then(Value::as_str) == Some(name)
                || t.pointer("/function/name").and_then(Value::as_str) == Some(name)
        });
        if !known {
            return Err(o.fail(
                "toolChoice",
                format!("names the function '{name}', which is not in tools"),
            ));
        }
        Ok(Some(
            serde_json::json!({"type": "function", "name": name}).to_string(),
        ))
    };
    match o.get("toolChoice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ["auto", "none", "required"].contains(&s.as_str()) => {
            if s == "required" && tools.is_none_or(|t| t.is_empty()) {
                return Err(o.fail("toolChoice", "'required' needs at least one tool in tools"));
            }
            Ok(Some(s.clone()))
        }
        Some(Value::Object(m)) if m.get("type").and_then(Value::as_str) == Some("function") => {
            let name = m
                .get("name")
                .or_else(|| m.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str);
            match name {
                Some(n) if !n.is_empty() => named(n),
                _ => Err(o.fail("toolChoice", "a named choice needs the function's name")),
            }
        }
        Some(other) => Err(o.fail(
            "toolChoice",
            format!(
                "{other} is not valid; use 'auto', 'none', 'required' or {{ type: 'function', name }}"
            ),
        )),
    }
}

/// `responseFormat`: `{type: "text"}`, `{type: "json_object"}` or
/// `{type: "json_schema", json_schema: {name, schema, strict?}}`; sent as JSON text.
fn parse_response_format(o: &Obj) -> Result<Option<String>> {
    let Some(v) = o.get("responseFormat").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let f = Obj::new(v, o.at("responseFormat"), Error::invalid)?;
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(v.to_string())),
        Some("json_schema") => {
            let spec = f.get("json_schema").ok_or_else(|| {
                f.fail("json_schema", "missing; expected { name, schema, strict? }")
            })?;
            let spec_obj = Obj::new(spec, f.at("json_schema"), Error::invalid)?;
            match spec_obj.get("schema") {
                Some(Value::Object(_)) => {}
                Some(Value::Bool(_)) => {}
                _ => return Err(spec_obj.fail("schema", "expected a JSON Schema object")),
            }
            if let Some(name) = spec_obj.get("name") {
                if !name.is_string() {
                    return Err(spec_obj.fail("name", "expected a string"));
                }
            }
            Ok(Some(v.to_string()))
        }
        _ => Err(f.fail("type", "expected 'text', 'json_object' or 'json_schema'")),
    }
}

/// The profile's `tool_calling_tokens` JSON in its wire form.
fn tool_calling_tokens(profile: &Profile) -> Result<ToolCallingTokens> {
    let json = profile.tool_calling_tokens();
    let o = Obj::new(
        &json,
        format!("{}/capabilities.yaml tool_calling", profile.family()),
        Error::template,
    )?;
    ToolCallingTokens::from_obj(&o, false)
}

/// Render `messages` with `profile` (the model's `config.json` visible to the template) and
/// fill one prompt payload from `opts`: explicit values win, then the profile's sampling
/// lane, then the wire defaults.
pub fn build_prompt(
    profile: &Profile,
    config: &Value,
    messages: Vec<Value>,
    opts: &ChatOptions,
) -> Result<PromptPayload> {
    let mut messages = messages;
    if let Some(instructions) = &opts.instructions {
        messages.insert(
            0,
            serde_json::json!({"role": "system", "content": instructions}),
        );
    }
    let rendered = profile.render_parts(
        &messages,
        opts.tools.as_deref(),
        opts.reasoning.as_ref(),
        opts.task.as_deref(),
        config,
    )?;
    let tools_json = |tools: &Option<Vec<Value>>| -> Result<String> {
        match tools {
            Some(t) if !t.is_empty() => serde_json::to_string(&sorted_tool_refs(t)?)
                .map_err(|e| Error::invalid(format!("tools: {e}"))),
            _ => Ok(String::new()),
        }
    };
    let tool_schemas_json = tools_json(&opts.tools)?;
    let active_tool_schemas_json = match &opts.active_tools {
        Some(_) => tools_json(&opts.active_tools)?,
        None => tool_schemas_json.clone(),
    };
    let lane = profile.sampling_defaults(opts.deterministic);
    let wire = PromptPayload::default();
    let seed = match (opts.seed, opts.deterministic) {
        (Some(s), _) => s,
        (None, true) => DETERMINISTIC_SEED,
        (None, false) => u64::from(rand::random::<u32>()),
    };
    let thinking = profile.thinking_tokens();
    let best_of = opts.best_of.unwrap_or(opts.n).max(opts.n);
    Ok(PromptPayload {
        text: rendered.prompt.into_bytes(),
        images: rendered.images,
        audio: rendered.audio,
        capabilities: rendered.capabilities,
        layout: Some(rendered.layout),
        num_candidates: best_of,
        best_of,
        final_candidates: opts.final_candidates.unwrap_or(opts.n),
        max_generated_tokens: opts.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        temperature: opts
            .temperature
            .or(lane.temperature)
            .unwrap_or(wire.temperature),
        top_p: opts.top_p.or(lane.top_p).unwrap_or(wire.top_p),
        top_k: opts.top_k.or(lane.top_k).unwrap_or(wire.top_k),
        min_p: opts.min_p.or(lane.min_p).unwrap_or(wire.min_p),
        rng_seed: Some(seed & 0xFFFF_FFFF),
        deterministic: opts.deterministic,
        top_logprobs: opts.top_logprobs,
        frequency_penalty: opts
            .frequency_penalty
            .or(lane.frequency_penalty)
            .unwrap_or(0.0),
        presence_penalty: opts
            .presence_penalty
            .or(lane.presence_penalty)
            .unwrap_or(0.0),
        repetition_context_size: opts
            .repetition_context_size
            .or(lane.repetition_context_size)
            .unwrap_or(60),
        repetition_penalty: opts
            .repetition_penalty
            .or(lane.repetition_penalty)
            .unwrap_or(1.0),
        stop_sequences: opts
            .stop
            .clone()
            .unwrap_or_else(|| profile.default_stop_sequences()),
        thinking_tokens: ThinkingTokens {
            start: thinking.start,
            end: thinking.end,
            required: thinking.required,
        },
        tool_calling_tokens: tool_calling_tokens(profile)?,
        output_frame_tokens: profile.output_frame_tokens().into_iter().collect(),
        logit_bias: opts.logit_bias.clone(),
        reasoning_effort: rendered.reasoning_effort,
        prefix_cache: opts.prefix_cache,
        tool_schemas_json,
        active_tool_schemas_json,
        tool_choice: opts.tool_choice.clone().unwrap_or(wire.tool_choice),
        min_tool_calls: opts
            .min_tool_calls
            .map_or(wire.min_tool_calls, |m| m as i64),
        max_tool_calls: opts
            .max_tool_calls
            .map_or(wire.max_tool_calls, |m| m as i64),
        response_format_json: opts.response_format.clone().unwrap_or_default(),
        task_name: opts.task.clone(),
        ..wire
    })
}

/// Where a request goes: the engine's ids for the model and the reply channel.
pub struct Target<'a> {
    pub request_id: u64,
    pub model_id: &'a str,
    pub model_path: &'a str,
    pub response_channel_id: u64,
}

/// A complete one-conversation generation request.
pub fn build_request(
    profile: &Profile,
    config: &Value,
    messages: Vec<Value>,
    opts: &ChatOptions,
    target: &Target,
) -> Result<Request> {
    Ok(Request {
        prompts: vec![build_prompt(profile, config, messages, opts)?],
        ..empty_request(target)
    })
}

/// One generation request holding several conversations, each with its own options; the
/// engine answers with `prompt_index` = the conversation's position. Errors name the index.
pub fn build_batch_request(
    profile: &Profile,
    config: &Value,
    conversations: Vec<Vec<Value>>,
    opts: &[ChatOptions],
    target: &Target,
) -> Result<Request> {
    if conversations.is_empty() {
        return Err(Error::invalid(
            "conversations: expected at least one conversation",
        ));
    }
    let prompts = conversations
        .into_iter()
        .enumerate()
        .map(|(i, messages)| {
            let o = &opts[i.min(opts.len() - 1)];
            build_prompt(profile, config, messages, o).map_err(|mut e| {
                e.message = format!("conversations[{i}]: {}", e.message);
                e
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Request {
        prompts,
        ..empty_request(target)
    })
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

fn empty_request(target: &Target) -> Request {
    Request {
        request_id: target.request_id,
        model_id: target.model_id.to_string(),
        model_path: target.model_path.to_string(),
        request_type: RequestType::Generation,
        request_channel_id: 0,
        response_channel_id: target.response_channel_id,
        prompts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_options_name_the_key() {
        for (v, key) in [
            (json!({"temprature": 1}), "temprature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"temperature": -1}), "temperature"),
            (json!({"topP": 0}), "topP"),
            (json!({"topK": 0}), "topK"),
            (json!({"maxTokens": 0}), "maxTokens"),
            (json!({"maxTokens": 1.5}), "maxTokens"),
            (json!({"n": 2, "bestOf": 1}), "bestOf"),
            (json!({"stop": [1]}), "stop"),
            (json!({"reasoning": "extreme"}), "reasoning"),
            (json!({"logitBias": {"abc": 1}}), "logitBias"),
            (
                json!({"n": 2, "bestOf": 4, "finalCandidates": 5}),
                "finalCandidates",
            ),
            (json!({"n": 2, "finalCandidates": 1}), "finalCandidates"),
            (json!({"toolChoice": "sometimes"}), "toolChoice"),
            (json!({"toolChoice": "required"}), "toolChoice"),
            (
                json!({"tools": [{"name": "a"}], "toolChoice": {"type": "function", "name": "b"}}),
                "toolChoice",
            ),
            (json!({"activeTools": {}}), "activeTools"),
            (json!({"minToolCalls": 0}), "minToolCalls"),
            (
                json!({"minToolCalls": 3, "maxToolCalls": 2}),
                "minToolCalls",
            ),
            (
                json!({"responseFormat": {"type": "xml"}}),
                "responseFormat.type",
            ),
            (
                json!({"responseFormat": {"type": "json_schema"}}),
                "responseFormat.json_schema",
            ),
            (
                json!({"responseFormat": {"type": "json_schema", "json_schema": {"schema": 3}}}),
                "responseFormat.json_schema.schema",
            ),
            (json!({"instructions": 5}), "instructions"),
            (json!({"task": ["x"]}), "task"),
        ] {
            let err = ChatOptions::parse(&v).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidRequest);
            assert!(err.message.contains(key), "{v}: {err}");
        }
    }

    fn llama3() -> std::sync::Arc<Profile> {
        let specs = crate::format::ModelSpecs::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model-specs"),
        );
        specs.profile("llama3").unwrap()
    }

    #[test]
    fn tool_and_format_options_reach_the_wire() {
        let tools = json!([
            {"name": "zeta", "description": "z", "parameters": {"type": "object"}},
            {"name": "alpha", "description": "a", "parameters": {"type": "object"}}
        ]);
        let opts = ChatOptions::parse(&json!({
            "tools": tools,
            "activeTools": [tools[0].clone()],
            "toolChoice": {"type": "function", "function": {"name": "zeta"}},
            "minToolCalls": 1,
            "maxToolCalls": 2,
            "responseFormat": {"type": "json_object"},
            "n": 2,
            "bestOf": 4,
            "finalCandidates": 3,
            "task": "caption_normal",
            "instructions": "Be brief."
        }))
        .unwrap();
        let cfg = json!({"model_type": "llama"});
        let p = build_prompt(
            &llama3(),
            &cfg,
            vec![json!({"role": "user", "content": "hi"})],
            &opts,
        )
        .unwrap();
        let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&p.tool_schemas_json)
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["alpha", "zeta"], "tools are sorted by name");
        assert!(p.active_tool_schemas_json.contains("zeta"));
        assert!(!p.active_tool_schemas_json.contains("alpha"));
        assert_eq!(p.tool_choice, r#"{"type":"function","name":"zeta"}"#);
        assert_eq!((p.min_tool_calls, p.max_tool_calls), (1, 2));
        assert_eq!(p.response_format_json, r#"{"type":"json_object"}"#);
        assert_eq!((p.num_candidates, p.best_of, p.final_candidates), (4, 4, 3));
        assert_eq!(p.task_name.as_deref(), Some("caption_normal"));
        let prompt = String::from_utf8(p.text).unwrap();
        assert!(prompt.contains("Be brief."), "{prompt}");

        let plain = build_prompt(
            &llama3(),
            &cfg,
            vec![json!({"role": "user", "content": "hi"})],
            &ChatOptions::parse(&json!({})).unwrap(),
        )
        .unwrap();
        assert_eq!(plain.tool_schemas_json, "");
        assert_eq!(plain.tool_choice, "auto");
        assert_eq!(plain.min_tool_calls, 1);
        assert_eq!(plain.response_format_json, "");
        assert_eq!(plain.task_name, None);
    }

    #[test]
    fn absent_means_default_and_explicit_zero_is_kept() {
        let d = ChatOptions::parse(&json!({})).unwrap();
        assert_eq!(d.temperature, None);
        assert_eq!(d.n, 1);
        let z = ChatOptions::parse(&json!({"temperature": 0, "stop": "END"})).unwrap();
        assert_eq!(z.temperature, Some(0.0));
        assert_eq!(z.stop, Some(vec!["END".to_string()]));
    }
}
