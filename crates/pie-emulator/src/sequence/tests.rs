use serde_json::{json, Value};

use super::deltas::{finite, monotonic_ns};
use super::*;

/// A delta as the publisher writes it, read back as JSON.
fn wire(d: Delta) -> Value {
    serde_json::from_slice(&d.to_json()).unwrap()
}

fn spec(stops: &[&str], max_tokens: u64, temperature: f64) -> SequenceSpec {
    let lm = Model::builtin();
    SequenceSpec {
        ids: SeqIds {
            channel: 1,
            request_id: 7,
            sequence_id: 9,
            prompt_index: 0,
            candidate_index: 0,
        },
        model: "m".into(),
        params: SamplingParams {
            temperature,
            top_logprobs: 2,
            logit_bias: vec![(lm.eot(), -100.0)],
            ..SamplingParams::default()
        },
        seed: 11,
        max_tokens,
        stops: Arc::new(stops.iter().map(|s| s.to_string()).collect()),
        boosted: Arc::new(Vec::new()),
        prompt_tokens: 3,
        flood: false,
        plan: Arc::new(Plan::text()),
    }
}

fn run(spec: SequenceSpec) -> (String, Vec<Value>) {
    let lm = Model::builtin();
    let mut s = Sequence::new(spec, &lm);
    let mut deltas = Vec::new();
    while !s.done {
        deltas.push(wire(s.step(&lm)));
        assert!(deltas.len() < 10_000);
    }
    let text = deltas
        .iter()
        .map(|d| d["content"].as_str().unwrap().to_string())
        .collect();
    (text, deltas)
}

#[test]
fn length_finish_counts_every_token() {
    let (text, deltas) = run(spec(&[], 12, 1.0));
    assert_eq!(deltas.len(), 12);
    let last = deltas.last().unwrap();
    assert_eq!(last["finish_reason"], "length");
    assert_eq!(last["generation_len"], 12);
    assert_eq!(last["is_final_delta"], true);
    assert!(deltas[..11].iter().all(|d| d["is_final_delta"] == false));
    assert!(deltas
        .iter()
        .all(|d| d["top_logprobs"].as_array().unwrap().len() == 2));
    assert!(!text.is_empty());
}

#[test]
fn stop_strings_truncate_and_never_leak() {
    let (full, _) = run(spec(&[], 40, 0.0));
    // Stop on a two-word stretch from the middle of the greedy text.
    let words: Vec<&str> = crate::lm::pieces(&full);
    let stop = format!("{}{}", words[5], words[6]);
    let at = full.find(&stop).unwrap();
    let (text, deltas) = run(spec(&[stop.as_str()], 40, 0.0));
    assert_eq!(text, full[..at]);
    let last = deltas.last().unwrap();
    assert_eq!(last["finish_reason"], "stop");
    assert!(last.get("matched_stop_token_id").is_none());
    let streamed: String = deltas[..deltas.len() - 1]
        .iter()
        .map(|d| d["content"].as_str().unwrap())
        .collect();
    assert!(full[..at].starts_with(&streamed));
}

#[test]
fn end_of_turn_stops_with_the_matched_token() {
    let lm = Model::builtin();
    let mut sp = spec(&[], 500, 1.0);
    sp.params.logit_bias = vec![(lm.eot(), 50.0)];
    let (text, deltas) = run(sp);
    assert_eq!(deltas.len(), 1);
    assert_eq!(text, "");
    let d = &deltas[0];
    assert_eq!(d["finish_reason"], "stop");
    assert_eq!(d["matched_stop_token_id"], crate::lm::EOT_TOKEN_ID);
    assert_eq!(d["matched_stop_token"], crate::lm::EOT_TEXT);
    assert_eq!(d["generation_len"], 1);
}

#[test]
fn byte_tokens_always_make_whole_characters() {
    for seed in 0..60 {
        let mut sp = spec(&[], 400, 1.3);
        sp.seed = seed;
        let (text, _) = run(sp);
        // Only a cut at max_tokens may leave a partial character (as U+FFFD at the end).
        let body = text.trim_end_matches('\u{FFFD}');
        assert!(!body.contains('\u{FFFD}'), "seed {seed}: {text}");
    }
}

#[test]
fn greedy_replies_end_their_turn() {
    for max in [200, 500] {
        let mut sp = spec(&[], max, 0.0);
        sp.params.logit_bias.clear();
        let (text, deltas) = run(sp);
        let last = deltas.last().unwrap();
        assert_eq!(last["finish_reason"], "stop", "{text}");
        let len = last["generation_len"].as_u64().unwrap() as usize;
        assert!(
            (MIN_REPLY_TOKENS..=GREEDY_MAX_REPLY_TOKENS + 1).contains(&len),
            "{len}: {text}"
        );
    }
    // A ban on the end of turn (the helper's default) still holds.
    let (_, deltas) = run(spec(&[], 80, 0.0));
    assert_eq!(deltas.last().unwrap()["finish_reason"], "length");
}

#[test]
fn replies_do_not_end_before_the_minimum_length() {
    for seed in 0..100 {
        let mut sp = spec(&[], MIN_REPLY_TOKENS as u64, 1.0);
        sp.params.logit_bias.clear();
        sp.seed = seed;
        let (_, deltas) = run(sp);
        assert_eq!(
            deltas.last().unwrap()["finish_reason"],
            "length",
            "seed {seed}"
        );
    }
}

fn apple_bias(lm: &Model) -> Vec<(usize, f64)> {
    "🍎"
        .bytes()
        .map(|b| (lm.token_of_text(&format!("<0x{b:02X}>")).unwrap(), 100.0))
        .collect()
}

#[test]
fn a_character_split_over_byte_tokens_arrives_whole() {
    let lm = Model::builtin();
    let mut sp = spec(&[], 12, 0.0);
    sp.params.logit_bias = apple_bias(&lm);
    let (text, deltas) = run(sp);
    assert_eq!(text, "🍎🍎🍎");
    let contents: Vec<&str> = deltas
        .iter()
        .map(|d| d["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["", "", "", "🍎", "", "", "", "🍎", "", "", "", "🍎"]
    );
    assert!(deltas
        .iter()
        .all(|d| d["tokens"].as_array().unwrap().len() == 1));
}

#[test]
fn a_reply_cut_inside_a_character_ends_with_a_replacement_character() {
    let lm = Model::builtin();
    let mut sp = spec(&[], 6, 0.0);
    sp.params.logit_bias = apple_bias(&lm);
    let (text, _) = run(sp);
    assert_eq!(text, "🍎\u{FFFD}");
}

#[test]
fn cancel_releases_held_text() {
    let lm = Model::builtin();
    let mut s = Sequence::new(spec(&["zzz-never"], 100, 1.0), &lm);
    s.step(&lm);
    let c = wire(s.cancel());
    assert_eq!(c["finish_reason"], "cancelled");
    assert_eq!(c["generation_len"], 1);
    assert_eq!(c["tokens"], json!([]));
    assert!(s.done);
}

#[test]
fn error_and_embedding_deltas_are_final() {
    let ids = spec(&[], 1, 1.0).ids;
    let e = wire(error_delta(&ids, "boom"));
    assert_eq!(e["finish_reason"], "error");
    assert_eq!(e["error_message"], "boom");
    let m = wire(embedding_delta(&ids, &[1.0, 2.0], 4));
    assert_eq!(m["is_final_delta"], true);
    assert_eq!(m["embedding_bytes"].as_str().unwrap().len(), 12);
    assert_eq!(finite(f64::NEG_INFINITY), f64::MIN);
    assert_eq!(finite(f64::NAN), 0.0);
}

#[test]
fn flood_mode_emits_timestamps_and_one_final() {
    let lm = Model::builtin();
    let mut sp = spec(&[], 3, 1.0);
    sp.flood = true;
    let mut seq = Sequence::new(sp, &lm);
    let before = monotonic_ns();
    let deltas: Vec<Value> = (0..3).map(|_| wire(seq.step(&lm))).collect();
    assert!(seq.done);
    let finals = deltas
        .iter()
        .filter(|d| d["is_final_delta"] == true)
        .count();
    assert_eq!(finals, 1);
    assert_eq!(deltas[2]["finish_reason"], "length");
    assert_eq!(deltas[2]["generation_len"], 3);
    let ns: u64 = deltas[0]["content"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ns >= before);
}

fn planned(p: &orchard_core::wire::PromptPayload, prompt: &str, max_tokens: u64) -> Vec<Value> {
    let mut sp = spec(&[], max_tokens, 1.0);
    sp.params.logit_bias.clear();
    sp.plan = Arc::new(Plan::for_prompt(p, prompt));
    run(sp).1
}

fn events(deltas: &[Value]) -> Vec<Value> {
    deltas
        .iter()
        .filter_map(|d| d.get("state_events"))
        .flat_map(|e| e.as_array().unwrap().clone())
        .collect()
}

fn spans(deltas: &[Value], item_type: &str, identifier: &str) -> String {
    events(deltas)
        .iter()
        .filter(|e| e["item_type"] == item_type && e["event_type"] == "content_delta")
        .filter(|e| e["identifier"] == identifier)
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect()
}

fn thinking() -> orchard_core::wire::PromptPayload {
    let mut p = orchard_core::wire::PromptPayload::default();
    p.thinking_tokens.start = "<think>\n".into();
    p.thinking_tokens.end = "\n</think>".into();
    p.reasoning_effort = Some("low".into());
    p
}

#[test]
fn plain_text_streams_a_message_item() {
    let (text, deltas) = run(spec(&[], 20, 1.0));
    let ev = events(&deltas);
    assert_eq!(ev[0]["event_type"], "item_started");
    assert_eq!(ev[0]["item_type"], "message");
    assert_eq!(spans(&deltas, "message", ""), text);
    let last = ev.last().unwrap();
    assert_eq!(last["event_type"], "item_completed");
    assert_eq!(last["value"], text.as_str());
    for d in &deltas {
        let c = d["content"].as_str().unwrap();
        let s: String = d
            .get("state_events")
            .map(|e| {
                e.as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["event_type"] == "content_delta")
                    .map(|e| e["delta"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(s, c);
    }
}

#[test]
fn reasoning_comes_first_and_is_counted() {
    let p = thinking();
    let deltas = planned(&p, "Tell me about apples", 200);
    assert_eq!(deltas[0]["content"], "<think>\n");
    assert!(deltas[0].get("state_events").is_none());
    let reasoning = spans(&deltas, "reasoning", "reasoning");
    let ev = events(&deltas);
    let done = ev
        .iter()
        .find(|e| e["item_type"] == "reasoning" && e["event_type"] == "item_completed")
        .unwrap();
    assert_eq!(done["value"], reasoning.as_str());
    assert_eq!(done["output_index"], 0);
    let msg_start = ev.iter().position(|e| e["item_type"] == "message").unwrap();
    let reasoning_end = ev
        .iter()
        .rposition(|e| e["item_type"] == "reasoning")
        .unwrap();
    assert!(reasoning_end < msg_start);
    assert_eq!(ev[msg_start]["output_index"], 1);
    let text: String = deltas
        .iter()
        .map(|d| d["content"].as_str().unwrap())
        .collect();
    assert!(
        text.starts_with(&format!("<think>\n{reasoning}\n</think>")),
        "{text}"
    );
    let last = deltas.last().unwrap();
    assert_eq!(
        last["reasoning_tokens"],
        crate::structured::REASONING_LOW + 1
    );
    assert_eq!(last["generation_len"], deltas.len());
    // Deterministic.
    assert_eq!(deltas, planned(&p, "Tell me about apples", 200));
}

fn weather_tools(choice: &str) -> orchard_core::wire::PromptPayload {
    let mut p = orchard_core::wire::PromptPayload {
        tool_choice: choice.into(),
        ..Default::default()
    };
    p.tool_schemas_json = json!([
        {"name": "get_time", "parameters": {"type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"]}},
        {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"location": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["location", "days"], "additionalProperties": false}}
    ])
    .to_string();
    p.tool_calling_tokens
        .formats
        .push(orchard_core::wire::request::ToolCallFormat {
            call_start: "<tool_call>".into(),
            call_end: "</tool_call>".into(),
            ..Default::default()
        });
    p
}

#[test]
fn tool_calls_stream_arguments_and_complete_with_name_and_arguments() {
    let p = weather_tools("auto");
    let deltas = planned(&p, "What is the weather in Paris? Use get_weather.", 500);
    let ev = events(&deltas);
    assert_eq!(ev[0]["event_type"], "item_started");
    assert_eq!(ev[0]["identifier"], "tool_call:get_weather");
    let raw = spans(&deltas, "tool_call", "arguments");
    let content: String = deltas
        .iter()
        .map(|d| d["content"].as_str().unwrap())
        .collect();
    assert_eq!(raw, content);
    assert!(
        raw.starts_with("<tool_call>") && raw.ends_with("</tool_call>"),
        "{raw}"
    );
    let body: Value =
        serde_json::from_str(&raw["<tool_call>".len()..raw.len() - "</tool_call>".len()]).unwrap();
    let done = ev.last().unwrap();
    assert_eq!(done["identifier"], "tool_call:get_weather");
    assert_eq!(done["value"], body);
    assert_eq!(done["value"]["name"], "get_weather");
    let args = &done["value"]["arguments"];
    assert_eq!(
        Value::String(spans(&deltas, "tool_call", "location")),
        args["location"]
    );
    let days = args["days"].as_i64().unwrap();
    assert!((1..=7).contains(&days));
    let last = deltas.last().unwrap();
    assert_eq!(last["finish_reason"], "stop");
    assert!(last.get("matched_stop_token_id").is_none());
    // No message item after the call.
    assert!(ev.iter().all(|e| e["item_type"] == "tool_call"));
}

#[test]
fn tool_choice_rules() {
    let names = |choice: &str, prompt: &str, min: i64, max: i64| -> Vec<String> {
        let mut p = weather_tools(choice);
        p.min_tool_calls = min;
        p.max_tool_calls = max;
        let deltas = planned(&p, prompt, 1000);
        events(&deltas)
            .iter()
            .filter(|e| e["event_type"] == "item_started")
            .map(|e| {
                format!(
                    "{}@{}",
                    e["identifier"].as_str().unwrap(),
                    e["output_index"]
                )
            })
            .collect()
    };
    assert_eq!(names("auto", "Hello there", 1, 0), ["@0"]);
    assert_eq!(
        names("auto", "get_time then get_weather", 1, 0),
        ["tool_call:get_time@0", "tool_call:get_weather@1"]
    );
    assert_eq!(
        names("auto", "get_time then get_weather", 1, 1),
        ["tool_call:get_time@0"]
    );
    assert_eq!(names("none", "use get_time", 1, 0), ["@0"]);
    assert_eq!(names("required", "Hello", 1, 0), ["tool_call:get_time@0"]);
    assert_eq!(
        names(
            r#"{"type":"function","function":{"name":"get_weather"}}"#,
            "get_time",
            2,
            0
        ),
        ["tool_call:get_weather@0", "tool_call:get_weather@1"]
    );
}

#[test]
fn structured_output_is_valid_json_after_reasoning() {
    let mut p = thinking();
    let schema = json!({"type": "object", "properties": {
        "answer": {"type": "integer"}, "label": {"type": "string", "enum": ["x", "y"]},
        "notes": {"type": "array", "items": {"type": "string"}}},
        "required": ["answer", "label"], "additionalProperties": false});
    p.response_format_json =
        json!({"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": true}})
            .to_string();
    let deltas = planned(&p, "Give me JSON", 500);
    let msg = spans(&deltas, "message", "");
    let v: Value = serde_json::from_str(&msg).unwrap_or_else(|e| panic!("{msg}: {e}"));
    assert!(v["answer"].is_i64());
    assert!(v
        .as_object()
        .unwrap()
        .keys()
        .all(|k| ["answer", "label", "notes"].contains(&k.as_str())));
    let ev = events(&deltas);
    let done = ev.last().unwrap();
    assert_eq!(done["event_type"], "item_completed");
    assert_eq!(done["value"], msg.as_str());
    assert_eq!(deltas.last().unwrap()["finish_reason"], "stop");
    let p2 = orchard_core::wire::PromptPayload {
        response_format_json: r#"{"type":"json_object"}"#.into(),
        ..Default::default()
    };
    let msg = spans(&planned(&p2, "x", 500), "message", "");
    assert!(serde_json::from_str::<Value>(&msg).unwrap().is_object());
}

#[test]
fn max_tokens_mid_item_ends_with_length() {
    let p = thinking();
    let deltas = planned(&p, "apples", 5);
    assert_eq!(deltas.len(), 5);
    let last = deltas.last().unwrap();
    assert_eq!(last["finish_reason"], "length");
    let ev = events(&deltas);
    let done = ev.last().unwrap();
    assert_eq!(done["item_type"], "reasoning");
    assert_eq!(done["event_type"], "item_completed");
    assert_eq!(
        done["value"],
        spans(&deltas, "reasoning", "reasoning").as_str()
    );
    let tools = weather_tools("required");
    let deltas = planned(&tools, "x", 6);
    assert_eq!(deltas.last().unwrap()["finish_reason"], "length");
    assert!(events(&deltas)
        .iter()
        .all(|e| e["event_type"] != "item_completed"
            || !e["identifier"].as_str().unwrap().starts_with("tool_call:")));
}

#[test]
fn an_embedding_reads_its_prompt_then_sends_one_final_delta() {
    let lm = Model::builtin();
    let mut sp = spec(&[], 1, 1.0);
    sp.prompt_tokens = 2 * EMBED_TOKENS_PER_STEP + 1;
    let mut s = Sequence::embedding(sp, &lm, vec![0.5, -1.0]);
    assert_eq!(s.advance(&lm), None);
    assert_eq!(s.advance(&lm), None);
    assert!(!s.done);
    let last = wire(s.advance(&lm).expect("the third step ends it"));
    assert!(s.done);
    assert_eq!(last["is_final_delta"], true);
    assert_eq!(last["prompt_token_count"], 2 * EMBED_TOKENS_PER_STEP + 1);
    assert_eq!(last["embedding_bytes"], "AAAAPwAAgL8=");
    // Cancelled before it is read: a final delta without a vector.
    let mut s = Sequence::embedding(spec(&[], 1, 1.0), &lm, vec![1.0]);
    let c = wire(s.cancel());
    assert_eq!(c["finish_reason"], "cancelled");
    assert!(c.get("embedding_bytes").is_none());
}
