//! Options parsing and request building, against the llama3 profile.

use serde_json::{json, Value};

use super::*;
use crate::format::Profile;

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

#[test]
fn errors_name_the_field_as_written_and_say_the_fix() {
    let msg = |v: Value| ChatOptions::parse(&v).unwrap_err().message;
    assert_eq!(
        msg(json!({"temperature": "hot"})),
        r#"options.temperature: expected a number, got "hot""#
    );
    assert_eq!(
        msg(json!({"maxTokens": 2.5})),
        "options.maxTokens: expected a non-negative integer, got 2.5"
    );
    assert_eq!(
        msg(json!({"topK": 0})),
        "options.topK: 0 is out of range; use -1 (off) or 1 or more"
    );
    assert_eq!(
        msg(json!({"tools": {}})),
        "options.tools: expected an array, got an object"
    );
    assert_eq!(
        msg(json!({"stop": 5})),
        "options.stop: expected a string or an array of strings"
    );
    assert_eq!(
        msg(json!({"logitBias": {"5": 101}})),
        "options.logitBias.5: 101 is out of range; use -100 to 100"
    );
    let unknown = msg(json!({"temprature": 1}));
    assert!(
        unknown
            .starts_with("options.temprature: unknown option; use one of maxTokens, temperature,"),
        "{unknown}"
    );
    let batch = parse_batch_options(&json!([{}, {"topP": 0}]), 2).unwrap_err();
    assert!(
        batch
            .message
            .starts_with("options[1].topP: 0 is out of range"),
        "{batch}"
    );
}

#[test]
fn nulls_are_unset_and_defaults_have_one_definition() {
    let o = ChatOptions::parse(&json!({"temperature": null, "stop": null, "n": null})).unwrap();
    assert_eq!(o, ChatOptions::parse(&Value::Null).unwrap());
    let p = build_prompt(
        &llama3(),
        &json!({"model_type": "llama"}),
        vec![json!({"role": "user", "content": "hi"})],
        &o,
    )
    .unwrap();
    assert_eq!(p.max_generated_tokens, DEFAULT_MAX_TOKENS);
    assert_eq!(p.repetition_context_size, DEFAULT_REPETITION_CONTEXT_SIZE);
}

#[test]
fn options_from_text_match_options_from_a_tree() {
    for v in [
        json!(null),
        json!({}),
        json!({"temperature": 0, "stop": "END", "maxTokens": 256, "tools": [{"name": "f"}]}),
        json!({"temperature": "hot"}),
        json!({"maxTokens": 2.5}),
        json!({"topK": 0}),
        json!({"tools": {}}),
        json!({"stop": 5}),
        json!({"logitBias": {"5": 101}}),
        json!({"logitBias": {"5": -3, "x": 1}}),
        json!({"temprature": 1}),
        json!({"reasoning": {"effort": "high"}}),
        json!({"responseFormat": {"type": "json_schema"}}),
        json!(3),
        json!([]),
    ] {
        let from_tree = ChatOptions::parse(&v).map_err(|e| e.message);
        let from_text = ChatOptions::parse_text(&v.to_string(), "options").map_err(|e| e.message);
        assert_eq!(from_text, from_tree, "{v}");
    }
    for bad in ["{", "{\"n\": 1} x", "{\"n\": }", ""] {
        let e = ChatOptions::parse_text(bad, "options").unwrap_err();
        assert!(
            e.message.starts_with("options: not valid JSON: "),
            "{bad}: {e}"
        );
    }
}
