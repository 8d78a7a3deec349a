//! What a generation request asks for beyond free text: reasoning, tool calls, structured
//! output. Read once per prompt and shared by its candidates.

use orchard_core::wire::PromptPayload;
use serde_json::{json, Value};

/// Reasoning tokens per effort level (the reasoning item's length, markers excluded).
pub const REASONING_MINIMAL: usize = 4;
pub const REASONING_LOW: usize = 8;
pub const REASONING_MEDIUM: usize = 16;
pub const REASONING_HIGH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct Reasoning {
    pub start: String,
    pub end: String,
    /// Reasoning word-pieces between the markers.
    pub budget: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// How tool calls are framed on the wire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Framing {
    pub call_start: String,
    pub call_end: String,
    pub section_start: String,
    pub section_end: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// Free text from the language model.
    Text,
    /// One call per entry, in order.
    Calls(Vec<Tool>, Framing),
    /// A JSON message valid against this schema (root for `$ref`).
    Json(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub reasoning: Option<Reasoning>,
    pub body: Body,
}

impl Plan {
    /// Nothing planned: no reasoning, no tools, no format.
    pub fn plain_text() -> Plan {
        Plan {
            reasoning: None,
            body: Body::Text,
        }
    }

    /// A plain text reply: no reasoning, no tools, no format.
    #[cfg(test)]
    pub fn text() -> Plan {
        Plan {
            reasoning: None,
            body: Body::Text,
        }
    }

    pub fn for_prompt(p: &PromptPayload, prompt_text: &str) -> Plan {
        let reasoning = reasoning(p, prompt_text);
        let calls = tool_calls(p, prompt_text);
        let body = if !calls.is_empty() {
            let first = p.tool_calling_tokens.formats.first();
            Body::Calls(
                calls,
                Framing {
                    call_start: first.map(|f| f.call_start.clone()).unwrap_or_default(),
                    call_end: first.map(|f| f.call_end.clone()).unwrap_or_default(),
                    section_start: p.tool_calling_tokens.section_start.clone(),
                    section_end: p.tool_calling_tokens.section_end.clone(),
                },
            )
        } else if let Some(schema) = response_schema(&p.response_format_json) {
            Body::Json(schema)
        } else {
            Body::Text
        };
        Plan { reasoning, body }
    }
}

/// Reasoning happens when the model has thinking markers (`thinking_tokens.start` or `.end`
/// non-empty) and the request gives a `reasoning_effort`, or when `thinking_tokens.required`
/// is set (effort defaults to medium then). A required thinker asked not to reason (no
/// effort: the client's `reasoning: false`) still thinks on a user turn, but answers a
/// tool result directly, with no reasoning, as real lfm2_5 does.
pub fn reasoning(p: &PromptPayload, prompt_text: &str) -> Option<Reasoning> {
    let t = &p.thinking_tokens;
    if t.start.is_empty() && t.end.is_empty() {
        return None;
    }
    let effort = p
        .reasoning_effort
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty());
    let budget = match effort.as_deref() {
        Some("minimal") => Some(REASONING_MINIMAL),
        Some("low") => Some(REASONING_LOW),
        Some("medium") => Some(REASONING_MEDIUM),
        Some("high") | Some("xhigh") | Some("max") => Some(REASONING_HIGH),
        Some("none") | Some("off") | Some("false") => None,
        Some(_) => Some(REASONING_MEDIUM),
        None => None,
    };
    let budget = match (budget, t.required) {
        (Some(b), _) => b,
        (None, true) if effort.is_some() => REASONING_MINIMAL,
        (None, true) if ends_with_tool_result(prompt_text) => return None,
        (None, true) => REASONING_MEDIUM,
        (None, false) => return None,
    };
    Some(Reasoning {
        start: t.start.clone(),
        end: t.end.clone(),
        budget,
    })
}

/// Read one tool definition in any of the shapes clients send: `{name, parameters}`,
/// OpenAI's `{type: "function", function: {name, parameters}}`, or the Responses grammar
/// wrapper `{name, type: "object", properties: {name: {const}, arguments: <parameters>}}`.
fn read_tool(v: &Value) -> Option<Tool> {
    let v = match v.get("function") {
        Some(f) if f.is_object() => f,
        _ => v,
    };
    let props = v.get("properties");
    let wrapped_name = props
        .and_then(|p| p.get("name"))
        .and_then(|n| n.get("const"))
        .and_then(Value::as_str);
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .or(wrapped_name)?
        .to_string();
    let parameters = match (wrapped_name, props.and_then(|p| p.get("arguments"))) {
        (Some(_), Some(args)) => args.clone(),
        _ => v
            .get("parameters")
            .or_else(|| v.get("input_schema"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    };
    Some(Tool { name, parameters })
}

/// The tools that drive constrained decoding: `active_tool_schemas_json`, or
/// `tool_schemas_json` when that is empty.
pub fn active_tools(p: &PromptPayload) -> Vec<Tool> {
    let text = if p.active_tool_schemas_json.trim().is_empty() {
        &p.tool_schemas_json
    } else {
        &p.active_tool_schemas_json
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items.iter().filter_map(read_tool).collect(),
        Ok(v @ Value::Object(_)) => read_tool(&v).into_iter().collect(),
        _ => Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    Auto,
    None,
    Required,
    Named(String),
}

pub fn tool_choice(raw: &str) -> Choice {
    let t = raw.trim();
    match t.to_ascii_lowercase().as_str() {
        "" | "auto" => return Choice::Auto,
        "none" => return Choice::None,
        "required" | "any" => return Choice::Required,
        _ => {}
    }
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        match &v {
            Value::String(s) => return tool_choice(s),
            Value::Object(_) => {
                let name = v
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| v.get("name"))
                    .and_then(Value::as_str);
                if let Some(n) = name {
                    return Choice::Named(n.to_string());
                }
                if let Some(mode) = v.get("mode").and_then(Value::as_str) {
                    return tool_choice(mode);
                }
            }
            _ => {}
        }
    }
    Choice::Auto
}

/// Which tools this prompt calls, in order (empty: answer with text instead).
pub fn tool_calls(p: &PromptPayload, prompt_text: &str) -> Vec<Tool> {
    let tools = active_tools(p);
    if tools.is_empty() {
        return Vec::new();
    }
    let mentioned = || -> Vec<Tool> {
        let Some(turn) = last_user_turn(prompt_text) else {
            return Vec::new();
        };
        let mut found: Vec<(usize, &Tool)> = tools
            .iter()
            .filter_map(|t| find_name(turn, &t.name).map(|at| (at, t)))
            .collect();
        found.sort_by_key(|(at, _)| *at);
        found.into_iter().map(|(_, t)| t.clone()).collect()
    };
    let min = usize::try_from(p.min_tool_calls.max(1)).unwrap_or(1);
    let mut calls = match tool_choice(&p.tool_choice) {
        Choice::None => return Vec::new(),
        Choice::Auto => mentioned(),
        Choice::Required => {
            let m = mentioned();
            if m.is_empty() {
                vec![tools[0].clone()]
            } else {
                m
            }
        }
        Choice::Named(name) => {
            let tool = tools
                .iter()
                .find(|t| t.name == name)
                .cloned()
                .unwrap_or(Tool {
                    name,
                    parameters: json!({"type": "object", "properties": {}}),
                });
            vec![tool]
        }
    };
    if calls.is_empty() {
        return calls;
    }
    // Reach min_tool_calls by cycling through the chosen tools.
    let chosen = calls.clone();
    let mut i = 0;
    while calls.len() < min.min(64) {
        calls.push(chosen[i % chosen.len()].clone());
        i += 1;
    }
    if p.max_tool_calls > 0 {
        calls.truncate(usize::try_from(p.max_tool_calls).unwrap_or(usize::MAX));
    }
    calls
}

/// Byte offset of the first whole-word, case-insensitive occurrence of `name` in `text`.
fn find_name(text: &str, name: &str) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    let hay = text.to_ascii_lowercase();
    let needle = name.to_ascii_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(p) = hay[from..].find(&needle) {
        let at = from + p;
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        if !word(before) && !word(after) {
            return Some(at);
        }
        from = at + needle.len().max(1);
        while from < hay.len() && !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    None
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "model",
    "agent",
    "tool",
    "ipython",
    "function",
];

/// Role headers of a chat-templated prompt: `(start, end, role)`. A role word counts when it
/// follows the start of the text or the end of a special token (`>` or `|`) and is
/// followed by `<`, `|`, a newline or `:`; or when it starts a line and is followed by `:`
/// (plain `User: ...` transcripts).
fn role_headers(text: &str) -> Vec<(usize, usize, &'static str)> {
    // ASCII lower-casing keeps byte offsets, so they index `text` too.
    let hay = text.to_ascii_lowercase();
    let mut out = Vec::new();
    for role in ROLES {
        let mut from = 0;
        while let Some(p) = hay[from..].find(role) {
            let at = from + p;
            let end = at + role.len();
            let before = hay[..at].chars().next_back();
            let after = hay[end..].chars().next();
            let tag_before = matches!(before, None | Some('>') | Some('|'));
            let tag_after = matches!(after, None | Some('<') | Some('|') | Some('\n') | Some(':'));
            let line_before = matches!(before, None | Some('\n'));
            if (tag_before && tag_after) || (line_before && after == Some(':')) {
                out.push((at, end, *role));
            }
            from = end;
        }
    }
    out.sort_by_key(|h| h.0);
    out
}

/// Text with special tokens (`<|...|>`, `<...>`) removed and trimmed.
fn visible(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        match rest[open..].find('>') {
            Some(close) if close <= 64 => rest = &rest[open + close + 1..],
            _ => {
                out.push('<');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// The text of the conversation's last turn when that turn is the user's (the trailing,
/// empty assistant header of the generation prompt is ignored). `None` when the last turn
/// is a tool result or an assistant message. A prompt without role headers counts as one
/// user turn.
pub fn last_user_turn(text: &str) -> Option<&str> {
    let headers = role_headers(text);
    if headers.is_empty() {
        return Some(text);
    }
    match last_turn(text, &headers) {
        Some(("user", body)) if !is_tool_result(body) => Some(body),
        _ => None,
    }
}

/// Whether the conversation's last turn (the trailing, empty assistant header ignored) is a
/// tool result: a `tool`/`ipython`/`function` turn, or a user turn that wraps a result.
pub fn ends_with_tool_result(text: &str) -> bool {
    match last_turn(text, &role_headers(text)) {
        Some((role, body)) => {
            matches!(role, "tool" | "ipython" | "function")
                || (role == "user" && is_tool_result(body))
        }
        None => false,
    }
}

/// The last turn `(role, body)` of a chat-templated prompt, after dropping trailing empty
/// assistant turns (the generation prompt). `None` without role headers.
fn last_turn<'a>(
    text: &'a str,
    headers: &[(usize, usize, &'static str)],
) -> Option<(&'static str, &'a str)> {
    let mut turns: Vec<(&'static str, &'a str)> = headers
        .iter()
        .enumerate()
        .map(|(i, &(_, end, role))| {
            let stop = headers.get(i + 1).map_or(text.len(), |h| h.0);
            (role, &text[end.min(stop)..stop])
        })
        .collect();
    while let Some(&(role, body)) = turns.last() {
        let assistant = matches!(role, "assistant" | "model" | "agent");
        if assistant && visible(body.trim_start_matches(':')).is_empty() {
            turns.pop();
        } else {
            break;
        }
    }
    turns.last().copied()
}

/// Tool results that templates put inside a user turn (Qwen and Hermes style).
const TOOL_RESULT_WRAPPERS: &[&str] = &["<tool_response>", "<|tool_response|>"];

fn is_tool_result(body: &str) -> bool {
    let body = body.trim_start_matches(|c: char| c == ':' || c.is_whitespace());
    TOOL_RESULT_WRAPPERS.iter().any(|w| body.starts_with(w))
}

/// The schema the message must satisfy, from `response_format_json`:
/// `{type: "json_schema", json_schema | schema: <schema>}` (flat) or OpenAI's
/// `{type: "json_schema", json_schema: {name, schema, strict}}`; `json_object` gives a
/// generic object schema. `None` for text, empty or unreadable formats.
pub fn response_schema(raw: &str) -> Option<Value> {
    if raw.trim().is_empty() {
        return None;
    }
    let v: Value = serde_json::from_str(raw).ok()?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "json_object" => Some(json!({
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": false
        })),
        "json_schema" => {
            let inner = v.get("json_schema").or_else(|| v.get("schema"))?;
            let nested = inner
                .get("schema")
                .filter(|s| s.is_object())
                .filter(|_| inner.get("properties").is_none() && inner.get("type").is_none());
            let schema = nested.unwrap_or(inner);
            schema.is_object().then(|| schema.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama(turns: &[(&str, &str)], generation_prompt: bool) -> String {
        let mut s = String::from("<|begin_of_text|>");
        for (role, text) in turns {
            s.push_str(&format!(
                "<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"
            ));
        }
        if generation_prompt {
            s.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
        }
        s
    }

    #[test]
    fn last_user_turn_is_found_in_common_templates() {
        let p = llama(
            &[
                ("system", "Tools: get_weather, get_time"),
                ("user", "Use get_time please"),
            ],
            true,
        );
        assert!(last_user_turn(&p).unwrap().contains("Use get_time please"));
        assert!(!last_user_turn(&p).unwrap().contains("get_weather"));
        let chatml = "<|im_start|>system\nx<|im_end|>\n<|im_start|>user\nhello get_weather<|im_end|>\n<|im_start|>assistant\n";
        assert!(last_user_turn(chatml)
            .unwrap()
            .trim()
            .starts_with("hello get_weather<|im_end|>"));
        let tool_after = llama(
            &[
                ("user", "call get_weather"),
                ("assistant", "{...}"),
                ("ipython", "sunny"),
            ],
            true,
        );
        assert_eq!(last_user_turn(&tool_after), None);
        // A tool result inside a user turn (Qwen's template) is a tool result too.
        let qwen = "<|im_start|>user\nUse get_weather<|im_end|>\n<|im_start|>assistant\n<tool_call>x</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nSunny. Next call get_time.\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(last_user_turn(qwen), None);
        assert_eq!(last_user_turn("just text"), Some("just text"));
        assert!(last_user_turn("User: hi get_time\nAssistant:")
            .unwrap()
            .contains("get_time"));
    }

    #[test]
    fn tool_choice_forms() {
        assert_eq!(tool_choice(""), Choice::Auto);
        assert_eq!(tool_choice("required"), Choice::Required);
        assert_eq!(tool_choice("none"), Choice::None);
        assert_eq!(
            tool_choice(r#"{"type": "function", "name": "f"}"#),
            Choice::Named("f".into())
        );
        assert_eq!(
            tool_choice(r#"{"type":"function","function":{"name":"g"}}"#),
            Choice::Named("g".into())
        );
    }

    #[test]
    fn tools_are_read_in_every_shape() {
        let p = PromptPayload {
            tool_schemas_json: json!([
                {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}},
                {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}},
                {"name": "c", "type": "object", "properties": {"name": {"const": "c"},
                  "arguments": {"type": "object", "properties": {"y": {"type": "integer"}}}},
                 "required": ["name", "arguments"]}
            ])
            .to_string(),
            ..PromptPayload::default()
        };
        let tools = active_tools(&p);
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(tools[2].parameters["properties"]["y"]["type"], "integer");
    }

    #[test]
    fn response_formats() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let flat = json!({"type": "json_schema", "name": "n", "json_schema": s, "strict": true});
        let nested = json!({"type": "json_schema", "json_schema": {"name": "n", "schema": s, "strict": true}});
        let resp = json!({"type": "json_schema", "name": "n", "schema": s});
        for f in [flat, nested, resp] {
            assert_eq!(response_schema(&f.to_string()), Some(s.clone()), "{f}");
        }
        assert!(response_schema(r#"{"type":"json_object"}"#).is_some());
        assert_eq!(response_schema(r#"{"type":"text"}"#), None);
        assert_eq!(response_schema(""), None);
    }

    #[test]
    fn reasoning_needs_markers_and_an_effort_or_required() {
        let mut p = PromptPayload {
            reasoning_effort: Some("high".into()),
            ..PromptPayload::default()
        };
        assert_eq!(reasoning(&p, ""), None);
        p.thinking_tokens.start = "<think>".into();
        p.thinking_tokens.end = "</think>".into();
        assert_eq!(reasoning(&p, "").unwrap().budget, REASONING_HIGH);
        p.reasoning_effort = None;
        assert_eq!(reasoning(&p, ""), None);
        p.thinking_tokens.required = true;
        assert_eq!(reasoning(&p, "").unwrap().budget, REASONING_MEDIUM);
        let budgets: Vec<usize> = ["minimal", "low", "medium", "high"]
            .iter()
            .map(|e| {
                p.reasoning_effort = Some(e.to_string());
                reasoning(&p, "").unwrap().budget
            })
            .collect();
        assert!(budgets.windows(2).all(|w| w[0] < w[1]), "{budgets:?}");
    }

    #[test]
    fn a_required_thinker_told_not_to_reason_answers_tool_results_directly() {
        let mut p = PromptPayload::default();
        p.thinking_tokens.start = "<think>".into();
        p.thinking_tokens.end = "</think>".into();
        p.thinking_tokens.required = true;
        let user = "<|startoftext|><|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n";
        let tool = "<|startoftext|><|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n\
            <|tool_call_start|>[get_weather(city='Paris')]<|tool_call_end|><|im_end|>\n\
            <|im_start|>tool\n{\"temp\": 20}<|im_end|>\n<|im_start|>assistant\n";
        let wrapped = "<|im_start|>user\n<tool_response>\n20\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
        assert!(!ends_with_tool_result(user));
        assert!(ends_with_tool_result(tool));
        assert!(ends_with_tool_result(wrapped));
        assert!(!ends_with_tool_result("plain text"));
        // reasoning: false (no effort): it still thinks on a user turn, not on a tool result.
        assert_eq!(reasoning(&p, user).unwrap().budget, REASONING_MEDIUM);
        assert_eq!(reasoning(&p, tool), None);
        assert_eq!(reasoning(&p, wrapped), None);
        // reasoning: true (an effort) reasons on both.
        p.reasoning_effort = Some("medium".into());
        assert_eq!(reasoning(&p, tool).unwrap().budget, REASONING_MEDIUM);
        // A thinker that is not required never reasons without an effort.
        p.reasoning_effort = None;
        p.thinking_tokens.required = false;
        assert_eq!(reasoning(&p, user), None);
        assert_eq!(reasoning(&p, tool), None);
    }
}
