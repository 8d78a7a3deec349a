//! Prompt rendering from model-specs profiles.
//!
//! A model family is a folder of data under `model-specs/<family>/` (see
//! `model-specs/README.md`): `control_tokens.json`, `capabilities.yaml`, `generation.yaml` and
//! `chat_template.jinja`. Nothing here knows a family by name; adding one is adding a folder.
//!
//! Pipeline ([`Profile::render`], in `render.rs`), following the reference Python client:
//! 1. reasoning flag from the request and `capabilities.thinking.native`;
//! 2. messages normalised (role aliases, content parts, media decoded, tool-call arguments
//!    parsed) and tools sorted by name;
//! 3. the chat template rendered with minijinja, configured for Jinja2 parity ([`jinja`]);
//! 4. the layout computed in UTF-8 bytes, then synthetic placeholders removed.

mod jinja;
mod layout;
mod messages;
mod profile;
mod python;
mod render;
mod specs;
mod strftime;
mod value;

pub use layout::Placeholders;
pub use messages::{CapabilityInput, ContentPart};
pub use profile::{
    ControlTokens, Profile, RoleTags, Roles, SamplingDefaults, ThinkingTokens, CHAT_TEMPLATE,
};
pub use python::float_repr;
pub(crate) use render::sorted_tool_refs;
pub use render::{RenderRequest, RenderedPrompt};
pub use specs::ModelSpecs;

/// The effort of reasoning that is on without a chosen effort (boolean `reasoning: true`; the
/// reference's `DEFAULT_BOOLEAN_REASONING_EFFORT`). Chat re-exports it (`chat::ranges`).
pub const DEFAULT_REASONING_EFFORT: &str = "medium";

use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Python's `json.dumps(v, ensure_ascii=...)` with its default separators (`", "`, `": "`).
pub fn python_json(v: &Json, ensure_ascii: bool) -> String {
    let opts = python::JsonOptions {
        ensure_ascii,
        ..python::JsonOptions::default()
    };
    python::json_dumps(&minijinja::Value::from_serialize(v), &opts)
        .unwrap_or_else(|_| v.to_string())
}

/// Render a prompt-parity-shaped case: `{config, messages, tools, reasoning, task}`.
///
/// `config` is the model's `config.json` (at least `model_type`); it picks the family and is
/// visible to the template as `model_config`.
pub fn render_case(specs: &ModelSpecs, input: &Json) -> Result<RenderedPrompt> {
    let obj = input
        .as_object()
        .ok_or_else(|| Error::invalid("render input: expected an object"))?;
    let config = match obj.get("config") {
        Some(c @ Json::Object(_)) => c,
        _ => return Err(Error::invalid("config: missing or not an object")),
    };
    let messages = match obj.get("messages") {
        Some(Json::Array(list)) => list,
        _ => return Err(Error::invalid("messages: missing or not a list")),
    };
    let tools = match obj.get("tools") {
        None | Some(Json::Null) => None,
        Some(Json::Array(list)) => Some(list.as_slice()),
        Some(_) => return Err(Error::invalid("tools: expected a list or null")),
    };
    let task = match obj.get("task") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid("task: expected a string or null")),
    };
    let profile = specs.profile_for_config(config)?;
    profile.render_parts(messages, tools, obj.get("reasoning"), task, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn repo_specs() -> ModelSpecs {
        ModelSpecs::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model-specs"))
    }

    /// A scratch model-specs folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "orchard-format-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// A family folder copied from the repository's llama3, with edits applied.
        fn family_from_llama3(&self, name: &str, edit: impl Fn(&str, String) -> String) {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model-specs/llama3");
            let dst = self.0.join(name);
            std::fs::create_dir_all(&dst).unwrap();
            for file in [
                "control_tokens.json",
                "capabilities.yaml",
                "generation.yaml",
                "chat_template.jinja",
            ] {
                let text = std::fs::read_to_string(src.join(file)).unwrap();
                std::fs::write(dst.join(file), edit(file, text)).unwrap();
            }
            // The macros llama3 imports from the model-specs root.
            let shared = "_python_tools.jinja";
            std::fs::copy(src.join("..").join(shared), self.0.join(shared)).unwrap();
        }

        fn specs(&self) -> ModelSpecs {
            ModelSpecs::new(&self.0)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn case(messages: serde_json::Value) -> serde_json::Value {
        json!({"config": {"model_type": "llama3"}, "messages": messages})
    }

    #[test]
    fn model_type_aliases_and_unknown_types() {
        let specs = repo_specs();
        assert_eq!(
            specs
                .family_for_config(&json!({"model_type": "llama"}))
                .unwrap(),
            "llama3"
        );
        assert_eq!(
            specs
                .family_for_config(&json!({"model_type": "llama3"}))
                .unwrap(),
            "llama3"
        );

        let err = specs
            .family_for_config(&json!({"model_type": "robotron"}))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert!(
            err.message
                .starts_with("unknown model_type 'robotron'; supported families: "),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("llama3 (also llama)"),
            "{}",
            err.message
        );

        let err = specs.family_for_config(&json!({"name": "x"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(
            err.message.starts_with("config.model_type:"),
            "{}",
            err.message
        );

        let err = specs.profile("../llama3").unwrap_err();
        assert!(
            err.message.starts_with("unknown model family '../llama3'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn profiles_are_cached() {
        let specs = repo_specs();
        let a = specs.profile("llama3").unwrap();
        let b = specs.profile("llama3").unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(a.family(), "llama3");
    }

    #[test]
    fn bad_requests_name_the_message_and_field() {
        let specs = repo_specs();
        let err = render_case(
            &specs,
            &case(json!([
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "robot", "content": "r"}
            ])),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert_eq!(
            err.message,
            "messages[2].role: unknown role 'robot'; expected one of system, user, assistant, tool"
        );

        let mut input = case(json!([{"role": "user", "content": "u"}]));
        input["tools"] =
            json!([{"name": "ok"}, {"type": "function", "function": {"description": "no name"}}]);
        let err = render_case(&specs, &input).unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert!(
            err.message.starts_with("tools[1]: missing name"),
            "{}",
            err.message
        );

        let mut input = case(json!([{"role": "user", "content": "u"}]));
        input["reasoning"] = json!(7);
        assert_eq!(
            render_case(&specs, &input).unwrap_err().code,
            ErrorCode::InvalidRequest
        );

        let err = render_case(&specs, &json!({"messages": []})).unwrap_err();
        assert!(err.message.starts_with("config:"), "{}", err.message);
    }

    #[test]
    fn images_are_refused_by_a_text_only_family() {
        let err = render_case(
            &repo_specs(),
            &case(json!([{"role": "user", "content": [
                {"type": "input_image", "image_url": "data:image/png;base64,iVBOR2Zha2U="},
                {"type": "input_text", "text": "what is this?"}
            ]}])),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert!(
            err.message.starts_with("model family 'llama3': "),
            "{}",
            err.message
        );
        assert!(err.message.contains("image"), "{}", err.message);
    }

    #[test]
    fn llama3_profile_data() {
        let p = repo_specs().profile("llama3").unwrap();
        assert_eq!(p.default_stop_sequences(), ["<|eot_id|>"]);
        let d = p.sampling_defaults(false);
        assert_eq!(d.temperature, Some(0.6));
        assert_eq!(d.top_p, Some(0.9));
        assert_eq!(d.top_k, Some(-1));
        assert_eq!(d.min_p, Some(0.0));
        assert_eq!(d.repetition_penalty, None);
        assert_eq!(p.sampling_defaults(true), p.sampling_lane("recommended"));
        assert_eq!(p.sampling_lane("deterministic").temperature, Some(0.0));
        assert_eq!(p.sampling_lane("no-such-lane"), p.sampling_lane("default"));
        assert!(!p.supports_native_thinking());
        assert_eq!(p.thinking_tokens(), ThinkingTokens::default());
        let tc = p.tool_calling_tokens();
        assert_eq!(tc["formats"][0]["name"], "pythonic");
        assert_eq!(tc["formats"][0]["call_start"], "<|python_tag|>");
        assert_eq!(tc["formats"][0]["call_end"], "<|eom_id|>");
        assert_eq!(tc["formats"][1]["call_start"], "```json\n");
        assert_eq!(tc["section_start"], "");
        assert!(p.output_frame_tokens().is_empty());
    }

    #[test]
    fn reasoning_is_never_on_for_llama3() {
        let specs = repo_specs();
        for reasoning in [json!(null), json!(true), json!("high")] {
            let mut input = case(json!([{"role": "user", "content": "hi"}]));
            input["reasoning"] = reasoning;
            let r = render_case(&specs, &input).unwrap();
            assert!(!r.reasoning);
            assert_eq!(r.reasoning_effort, None);
        }
    }

    #[test]
    fn date_falls_back_to_today_without_a_profile_date() {
        let scratch = Scratch::new();
        scratch.family_from_llama3("datefree", |file, text| {
            if file == "control_tokens.json" {
                let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
                v.as_object_mut().unwrap().remove("template_vars");
                v["model_types"] = json!([]);
                v.to_string()
            } else {
                text
            }
        });
        let specs = scratch.specs();
        let before = strftime::DateTime::now().strftime("%d %b %Y");
        let input = json!({"config": {"model_type": "datefree"}, "messages": [{"role": "user", "content": "hi"}]});
        let prompt = render_case(&specs, &input).unwrap().prompt;
        let after = strftime::DateTime::now().strftime("%d %b %Y");
        assert!(
            prompt.contains(&format!("Today Date: {before}\n"))
                || prompt.contains(&format!("Today Date: {after}\n")),
            "{prompt}"
        );
    }

    #[test]
    fn template_errors_name_the_family_and_line() {
        let scratch = Scratch::new();
        scratch.family_from_llama3("broken", |file, text| {
            if file == "chat_template.jinja" {
                "{{- begin_of_text -}}\n{%- if messages -%}\n{{ raise_exception('no messages allowed') }}\n{%- endif -%}\n".into()
            } else {
                text
            }
        });
        scratch.family_from_llama3("syntax", |file, text| {
            if file == "chat_template.jinja" {
                "line one\n{% if %}\n".into()
            } else {
                text
            }
        });
        let specs = scratch.specs();

        let input = json!({"config": {"model_type": "broken"}, "messages": [{"role": "user", "content": "hi"}]});
        let err = render_case(&specs, &input).unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert!(
            err.message.starts_with(
                "model family 'broken': template error in chat_template.jinja line 3:"
            ),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("no messages allowed"),
            "{}",
            err.message
        );

        let err = specs.profile("syntax").unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert!(
            err.message.starts_with(
                "model family 'syntax': template error in chat_template.jinja line 2:"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_profile_files_are_reported() {
        let scratch = Scratch::new();
        scratch.family_from_llama3("partial", |_, text| text);
        std::fs::remove_file(scratch.0.join("partial/generation.yaml")).unwrap();
        let err = scratch.specs().profile("partial").unwrap_err();
        assert_eq!(err.code, ErrorCode::Template);
        assert!(err.message.contains("generation.yaml"), "{}", err.message);
    }

    #[test]
    fn shared_templates_are_found_in_the_root() {
        let scratch = Scratch::new();
        std::fs::write(
            scratch.0.join("shared_macros.jinja"),
            "{% macro shout(x) %}{{ x | upper }}!{% endmacro %}",
        )
        .unwrap();
        scratch.family_from_llama3("importer", |file, text| {
            if file == "chat_template.jinja" {
                "{% import 'shared_macros.jinja' as m %}{{ m.shout(messages[0].content) }}".into()
            } else {
                text
            }
        });
        let input = json!({"config": {"model_type": "importer"}, "messages": [{"role": "user", "content": "hi"}]});
        let r = render_case(&scratch.specs(), &input).unwrap();
        assert_eq!(r.prompt, "HI!");
        // Names that leave the model-specs folder are not loaded.
        scratch.family_from_llama3("escaper", |file, text| {
            if file == "chat_template.jinja" {
                "{% include '../../etc/hostname' %}".into()
            } else {
                text
            }
        });
        let input = json!({"config": {"model_type": "escaper"}, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            render_case(&scratch.specs(), &input).unwrap_err().code,
            ErrorCode::Template
        );
    }
}

#[cfg(test)]
mod python_json_tests {
    use super::python_json;

    #[test]
    fn spacing_escapes_and_float_kinds() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"type":"function","name":"café","n":[1,2.0,null,true,1e-5]}"#)
                .unwrap();
        assert_eq!(
            python_json(&v, true),
            r#"{"type": "function", "name": "caf\u00e9", "n": [1, 2.0, null, true, 1e-05]}"#
        );
        assert!(python_json(&v, false).contains("café"));
    }
}
