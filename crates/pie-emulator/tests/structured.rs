//! End-to-end tests of the emulator binary: state events, reasoning, tool calls and structured
//! output.

mod common;

use common::*;
use orchard_core::wire::{PromptPayload, RequestType};
use serde_json::json;

fn spans(ds: &[orchard_core::wire::Delta], item_type: &str, identifier: &str) -> String {
    ds.iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.item_type == item_type && e.event_type == "content_delta")
        .filter(|e| e.identifier == identifier)
        .map(|e| e.delta.clone())
        .collect()
}

fn completed(
    ds: &[orchard_core::wire::Delta],
    item_type: &str,
    identifier: &str,
) -> Vec<(u32, serde_json::Value)> {
    ds.iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.item_type == item_type && e.event_type == "item_completed")
        .filter(|e| e.identifier == identifier)
        .map(|e| (e.output_index, e.value.clone().unwrap()))
        .collect()
}

fn with_thinking(mut p: PromptPayload, effort: &str) -> PromptPayload {
    p.thinking_tokens.start = "<think>\n".into();
    p.thinking_tokens.end = "\n</think>".into();
    p.reasoning_effort = Some(effort.into());
    p
}

fn with_tools(mut p: PromptPayload, choice: &str) -> PromptPayload {
    p.tool_schemas_json = json!([
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
            "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}},
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"location": {"type": "string"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location", "unit"], "additionalProperties": false}}}
    ])
    .to_string();
    p.tool_choice = choice.into();
    p.tool_calling_tokens = orchard_core::wire::request::ToolCallingTokens {
        formats: vec![orchard_core::wire::request::ToolCallFormat {
            name: "json".into(),
            call_start: "<|python_tag|>".into(),
            call_end: "<|eom_id|>".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    p
}

const LLAMA_USER: &str = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n";
const LLAMA_ASSISTANT: &str = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

#[test]
fn plain_generation_streams_a_message_item_that_mirrors_content() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    c.send(&request(
        &c,
        1,
        "m",
        RequestType::Generation,
        vec![prompt("apples", 20)],
    ));
    let ds = c.collect(1, 1);
    let text = text_of(&ds);
    assert_eq!(spans(&ds, "message", ""), text);
    assert_eq!(ds[0].state_events[0].event_type, "item_started");
    assert_eq!(completed(&ds, "message", ""), vec![(0, json!(text))]);
    assert_eq!(ds.last().unwrap().reasoning_tokens, Some(0));
}

#[test]
fn reasoning_precedes_the_message_and_scales_with_effort() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let mut lens = Vec::new();
    for (i, effort) in ["minimal", "low", "medium", "high"].iter().enumerate() {
        let p = with_thinking(prompt("Tell me about apples", 300), effort);
        let id = 10 + i as u64;
        c.send(&request(&c, id, "m", RequestType::Generation, vec![p]));
        let ds = c.collect(id, 1);
        check_sequences(&ds);
        assert_eq!(ds[0].content.as_deref(), Some("<think>\n"));
        assert!(ds[0].state_events.is_empty());
        let reasoning = spans(&ds, "reasoning", "reasoning");
        assert_eq!(
            completed(&ds, "reasoning", "reasoning"),
            vec![(0, json!(reasoning))]
        );
        let message = spans(&ds, "message", "");
        assert_eq!(completed(&ds, "message", ""), vec![(1, json!(message))]);
        assert_eq!(
            text_of(&ds),
            format!("<think>\n{reasoning}\n</think>{message}")
        );
        let last = ds.last().unwrap();
        let rt = last.reasoning_tokens.unwrap();
        assert!(rt > 0);
        assert_eq!(last.generation_len, Some(tokens_of(&ds).len() as u64));
        lens.push(rt);
    }
    assert!(lens.windows(2).all(|w| w[0] < w[1]), "{lens:?}");

    // No markers, no reasoning; `required` forces it without an effort.
    let mut p = prompt("apples", 40);
    p.reasoning_effort = Some("high".into());
    c.send(&request(&c, 20, "m", RequestType::Generation, vec![p]));
    assert_eq!(c.collect(20, 1).last().unwrap().reasoning_tokens, Some(0));
    let mut p = with_thinking(prompt("apples", 100), "");
    p.reasoning_effort = None;
    p.thinking_tokens.required = true;
    c.send(&request(&c, 21, "m", RequestType::Generation, vec![p]));
    assert!(c.collect(21, 1).last().unwrap().reasoning_tokens.unwrap() > 0);
}

#[test]
fn tool_calls_follow_tool_choice_and_stream_their_arguments() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let text = format!("{LLAMA_USER}Check get_weather and get_time for Paris{LLAMA_ASSISTANT}");
    let p = with_tools(prompt(&text, 400), "auto");
    c.send(&request(
        &c,
        1,
        "m",
        RequestType::Generation,
        vec![p.clone()],
    ));
    let ds = c.collect(1, 1);
    check_sequences(&ds);
    let calls: Vec<(u32, serde_json::Value)> = ds
        .iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.event_type == "item_completed" && e.identifier.starts_with("tool_call:"))
        .map(|e| (e.output_index, e.value.clone().unwrap()))
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, 0);
    assert_eq!(calls[0].1["name"], "get_weather");
    assert_eq!(calls[1].0, 1);
    assert_eq!(calls[1].1["name"], "get_time");
    let unit = calls[0].1["arguments"]["unit"].as_str().unwrap();
    assert!(["celsius", "fahrenheit"].contains(&unit));
    assert_eq!(
        calls[0].1["arguments"].as_object().unwrap().len(),
        2,
        "{calls:?}"
    );
    // The raw text: framed calls, mirrored by the `arguments` spans.
    let raw = text_of(&ds);
    assert!(
        raw.starts_with("<|python_tag|>{\"name\": \"get_weather\""),
        "{raw}"
    );
    assert!(raw.ends_with("<|eom_id|>"), "{raw}");
    let args_spans: String = ds
        .iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.identifier == "arguments" && e.event_type == "content_delta")
        .map(|e| e.delta.clone())
        .collect();
    assert_eq!(args_spans, raw);
    let location = spans(&ds, "tool_call", "location");
    assert_eq!(json!(location), calls[0].1["arguments"]["location"]);
    let last = ds.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    assert!(last.matched_stop_token_id.is_none());
    // Same seed, same request: the same deltas.
    c.send(&request(&c, 2, "m", RequestType::Generation, vec![p]));
    let again = c.collect(2, 1);
    assert_eq!(text_of(&again), raw);
    assert_eq!(tokens_of(&again), tokens_of(&ds));

    // max_tool_calls, "none", "required", a named choice, and auto without a mention.
    let count_calls = |id: u64, p: PromptPayload| -> Vec<String> {
        c.send(&request(&c, id, "m", RequestType::Generation, vec![p]));
        c.collect(id, 1)
            .iter()
            .flat_map(|d| d.state_events.clone())
            .filter(|e| e.event_type == "item_started")
            .map(|e| e.identifier)
            .collect()
    };
    let mut p = with_tools(prompt(&text, 400), "auto");
    p.max_tool_calls = 1;
    assert_eq!(count_calls(3, p), ["tool_call:get_weather"]);
    assert_eq!(count_calls(4, with_tools(prompt(&text, 60), "none")), [""]);
    let hello = format!("{LLAMA_USER}Hello!{LLAMA_ASSISTANT}");
    assert_eq!(count_calls(5, with_tools(prompt(&hello, 60), "auto")), [""]);
    assert_eq!(
        count_calls(6, with_tools(prompt(&hello, 400), "required")),
        ["tool_call:get_time"]
    );
    let named = r#"{"type": "function", "name": "get_weather"}"#;
    assert_eq!(
        count_calls(7, with_tools(prompt(&hello, 400), named)),
        ["tool_call:get_weather"]
    );
    // A tool result after the user's turn: auto answers with text.
    let after = format!(
        "{LLAMA_USER}Use get_weather{}<|python_tag|>{{}}<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\nsunny{LLAMA_ASSISTANT}",
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(count_calls(8, with_tools(prompt(&after, 60), "auto")), [""]);
}

#[test]
fn structured_output_matches_the_schema_in_both_shapes() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let schema = json!({"type": "object", "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
        "coastal": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "mayor": {"type": "object", "properties": {"name": {"type": "string"}},
                  "required": ["name"], "additionalProperties": false}},
        "required": ["city", "population", "coastal", "mayor"],
        "additionalProperties": false});
    let flat = json!({"type": "json_schema", "name": "c", "json_schema": schema, "strict": true});
    let nested = json!({"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": true}});
    for (id, fmt) in [(1u64, flat), (2, nested)] {
        let mut p = with_thinking(prompt("A city please", 400), "minimal");
        p.response_format_json = fmt.to_string();
        c.send(&request(&c, id, "m", RequestType::Generation, vec![p]));
        let ds = c.collect(id, 1);
        let msg = spans(&ds, "message", "");
        let v: serde_json::Value =
            serde_json::from_str(&msg).unwrap_or_else(|e| panic!("{msg}: {e}"));
        let o = v.as_object().unwrap();
        for k in ["city", "population", "coastal", "mayor"] {
            assert!(o.contains_key(k), "{msg}");
        }
        assert!(o.keys().all(|k| schema["properties"].get(k).is_some()));
        assert!(v["population"].as_i64().unwrap() >= 0);
        assert!(v["coastal"].is_boolean());
        assert!(v["mayor"]["name"].is_string());
        assert_eq!(completed(&ds, "message", ""), vec![(1, json!(msg))]);
        assert!(ds.last().unwrap().reasoning_tokens.unwrap() > 0);
        assert_eq!(ds.last().unwrap().finish_reason.as_deref(), Some("stop"));
    }
    // json_object, and a cut at max_generated_tokens.
    let mut p = prompt("x", 400);
    p.response_format_json = r#"{"type":"json_object"}"#.into();
    c.send(&request(
        &c,
        3,
        "m",
        RequestType::Generation,
        vec![p.clone()],
    ));
    let msg = spans(&c.collect(3, 1), "message", "");
    assert!(serde_json::from_str::<serde_json::Value>(&msg)
        .unwrap()
        .is_object());
    p.max_generated_tokens = 3;
    c.send(&request(&c, 4, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(4, 1);
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.last().unwrap().finish_reason.as_deref(), Some("length"));
}
