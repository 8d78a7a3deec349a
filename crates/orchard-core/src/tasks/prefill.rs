//! Prefill tasks: one `request_type: prefill_task` request for a batch of texts (one prompt
//! per text, `max_generated_tokens` 0, the task in every prompt's `task_name`), and the
//! collector that groups the answer's deltas by prompt (modal requests use it too).
//!
//! The privacy filter is the prefill task `privacy_filter` of the model
//! [`PRIVACY_FILTER_MODEL`]; its inputs are limited to [`PRIVACY_FILTER_MAX_INPUT_BYTES`]
//! each, and its result is the JSON in the `modal_bytes_b64` of the first delta whose
//! `modal_decoder_id` is `privacy_filter`.

use serde_json::Value;

use crate::chat::Target;
use crate::error::{Error, ErrorCode, Result};
use crate::wire::json::type_name;
use crate::wire::{Delta, Request, RequestType};

pub const PRIVACY_FILTER_TASK: &str = "privacy_filter";
/// The model id the reference clients use for the privacy filter.
pub const PRIVACY_FILTER_MODEL: &str = "openai/privacy-filter";
/// The largest text (UTF-8 bytes) the privacy filter takes; longer text must be chunked.
pub const PRIVACY_FILTER_MAX_INPUT_BYTES: usize = 16 * 1024;

/// A task name: non-empty letters, digits, `_`, `-` and `.`.
pub fn check_task(task: &str) -> Result<()> {
    let ok = !task.is_empty()
        && task.len() <= 128
        && task
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "task: expected a task name such as '{PRIVACY_FILTER_TASK}', got {task:?}"
        )))
    }
}

/// The texts of a prefill call: one string (field `text`) or a non-empty array of strings
/// (`texts[i]`). Empty texts are allowed (the engine reads nothing). For the privacy filter
/// every text must fit [`PRIVACY_FILTER_MAX_INPUT_BYTES`].
pub fn parse_texts(v: Value, task: &str) -> Result<Vec<String>> {
    check_task(task)?;
    let named: Vec<(String, String)> = match v {
        Value::String(s) => vec![("text".to_string(), s)],
        Value::Array(items) if items.is_empty() => {
            return Err(Error::invalid(
                "texts: expected at least one text (the array is empty)",
            ))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, t)| match t {
                Value::String(s) => Ok((format!("texts[{i}]"), s)),
                other => Err(Error::invalid(format!(
                    "texts[{i}]: expected a string, got {}",
                    type_name(&other)
                ))),
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(Error::invalid(format!(
                "texts: expected a string or an array of strings, got {}",
                type_name(&other)
            )))
        }
    };
    if task == PRIVACY_FILTER_TASK {
        if let Some((field, s)) = named
            .iter()
            .find(|(_, s)| s.len() > PRIVACY_FILTER_MAX_INPUT_BYTES)
        {
            return Err(Error::invalid(format!(
                "{field}: {} UTF-8 bytes is over the privacy filter's limit of {PRIVACY_FILTER_MAX_INPUT_BYTES} bytes per text; callers must chunk longer text",
                s.len()
            )));
        }
    }
    Ok(named.into_iter().map(|(_, s)| s).collect())
}

/// One prefill request: the prompts of an embedding request (one per text, nothing
/// generated), as `prefill_task` with `task_name` set.
pub fn build_request(texts: &[String], task: &str, target: &Target) -> Result<Request> {
    check_task(task)?;
    let mut req = crate::embed::build_request(texts, target)?;
    req.request_type = RequestType::PrefillTask;
    for p in &mut req.prompts {
        p.task_name = Some(task.to_string());
    }
    Ok(req)
}

/// Collects the deltas of a task request (prefill, modal) by `prompt_index`.
pub struct TaskCollector {
    prompts: Vec<Vec<Delta>>,
    finished: Vec<bool>,
}

impl TaskCollector {
    pub fn new(count: usize) -> TaskCollector {
        TaskCollector {
            prompts: vec![Vec::new(); count],
            finished: vec![false; count],
        }
    }

    /// Take one delta; an error delta fails the request with the engine's message.
    pub fn add(&mut self, d: &Delta) -> Result<()> {
        if d.is_error() || d.error_message.is_some() {
            return Err(Error::new(ErrorCode::Engine, d.error_text()));
        }
        let index = d.prompt_index.unwrap_or(0) as usize;
        let count = self.prompts.len();
        let (Some(deltas), Some(finished)) =
            (self.prompts.get_mut(index), self.finished.get_mut(index))
        else {
            return Err(Error::protocol(format!(
                "a delta for prompt_index {index}, but the request has {count} prompt(s)"
            )));
        };
        if *finished {
            return Err(Error::protocol(format!(
                "a delta for prompt_index {index} after its final delta"
            )));
        }
        *finished = d.is_final_delta;
        deltas.push(d.clone());
        Ok(())
    }

    /// Every prompt's deltas, in input order, once each has its final delta.
    pub fn finish(self) -> Result<Vec<Vec<Delta>>> {
        if let Some(i) = self.finished.iter().position(|f| !f) {
            return Err(Error::new(
                ErrorCode::DeltasLost,
                format!("the request ended without a final delta for prompt {i}"),
            ));
        }
        Ok(self.prompts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target<'static> {
        Target {
            request_id: 3,
            model_id: "m",
            model_path: "/models/m",
            response_channel_id: 9,
        }
    }

    #[test]
    fn texts_and_task_names_are_checked() {
        assert_eq!(parse_texts(json!("hi"), "x").unwrap(), vec!["hi"]);
        assert_eq!(parse_texts(json!(["a", ""]), "x").unwrap(), vec!["a", ""]);
        for (v, task, field) in [
            (json!([]), "x", "texts:"),
            (json!(3), "x", "texts:"),
            (json!(["a", 1]), "x", "texts[1]:"),
            (json!("a"), "", "task:"),
            (json!("a"), "bad task", "task:"),
        ] {
            let e = parse_texts(v.clone(), task).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{v}");
            assert!(e.message.starts_with(field), "{v}: {}", e.message);
        }
    }

    #[test]
    fn the_privacy_filter_takes_at_most_16_kib_per_text() {
        let max = "é".repeat(PRIVACY_FILTER_MAX_INPUT_BYTES / 2);
        assert!(parse_texts(json!([max.clone()]), PRIVACY_FILTER_TASK).is_ok());
        let over = format!("{max}a");
        let e = parse_texts(json!(["ok", over]), PRIVACY_FILTER_TASK).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(
            e.message.starts_with("texts[1]: 16385 UTF-8 bytes"),
            "{}",
            e.message
        );
        assert!(e.message.contains("chunk"), "{}", e.message);
        let e = parse_texts(json!(format!("{max}a")), PRIVACY_FILTER_TASK).unwrap_err();
        assert!(e.message.starts_with("text: "), "{}", e.message);
        // Other tasks have no such limit.
        assert!(parse_texts(json!(format!("{max}a")), "other").is_ok());
    }

    #[test]
    fn one_prefill_request_with_the_task_in_every_prompt() {
        let texts = vec!["a".to_string(), "b c".to_string()];
        let req = build_request(&texts, PRIVACY_FILTER_TASK, &target()).unwrap();
        assert_eq!(req.request_type, RequestType::PrefillTask);
        assert_eq!(req.prompts.len(), 2);
        assert_eq!(req.expected_finals(), 2);
        for (p, t) in req.prompts.iter().zip(&texts) {
            assert_eq!(p.text, t.as_bytes());
            assert_eq!(p.max_generated_tokens, 0);
            assert_eq!(p.task_name.as_deref(), Some(PRIVACY_FILTER_TASK));
        }
        let frame = crate::wire::encode_request(&req).unwrap();
        let back = crate::wire::decode_request(&frame).unwrap();
        assert_eq!(back.request_type, RequestType::PrefillTask);
        assert_eq!(
            back.prompts[1].task_name.as_deref(),
            Some(PRIVACY_FILTER_TASK)
        );
        assert!(build_request(&texts, "", &target()).is_err());
    }

    fn delta(body: Value) -> Delta {
        Delta::from_json(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn collects_deltas_by_prompt() {
        let mut c = TaskCollector::new(2);
        c.add(&delta(json!({"request_id": 3, "prompt_index": 1, "is_final_delta": true, "modal_decoder_id": "privacy_filter"}))).unwrap();
        c.add(&delta(
            json!({"request_id": 3, "prompt_index": 0, "is_final_delta": false, "content": "x"}),
        ))
        .unwrap();
        c.add(&delta(
            json!({"request_id": 3, "prompt_index": 0, "is_final_delta": true}),
        ))
        .unwrap();
        let prompts = c.finish().unwrap();
        assert_eq!(prompts[0].len(), 2);
        assert_eq!(
            prompts[1][0].modal_decoder_id.as_deref(),
            Some("privacy_filter")
        );

        let mut c = TaskCollector::new(2);
        c.add(&delta(
            json!({"request_id": 3, "prompt_index": 0, "is_final_delta": true}),
        ))
        .unwrap();
        let e = c
            .add(&delta(
                json!({"request_id": 3, "prompt_index": 0, "is_final_delta": true}),
            ))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Protocol);
        let e = c
            .add(&delta(
                json!({"request_id": 3, "prompt_index": 2, "is_final_delta": true}),
            ))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Protocol);
        assert_eq!(c.finish().unwrap_err().code, ErrorCode::DeltasLost);

        let e = TaskCollector::new(1)
            .add(&delta(json!({"request_id": 3, "prompt_index": 0, "is_final_delta": true, "finish_reason": "error", "error_message": "unknown prefill task"})))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Engine);
        assert_eq!(e.message, "unknown prefill task");
    }
}
