//! Engine tasks the emulator serves besides chat and embeddings: prefill tasks
//! (`request_type: prefill_task`, the privacy filter) and Moondream's vision tasks. Each
//! prompt becomes a [`Sequence::prefilled`]: it reads its prompt like an embedding, then
//! sends deltas prepared here, one a scheduler step, the last one final.

mod files;
pub mod modal;
pub mod moondream;
mod privacy;

use base64::Engine as _;
use orchard_core::wire::request::{PromptPayload, Request};
use orchard_core::wire::Delta;

use crate::lm::Model;
use crate::sequence::{error_delta, SeqIds, Sequence, SequenceSpec};

pub use privacy::privacy_filter;

/// The prefill tasks the emulator serves.
pub const PREFILL_TASKS: [&str; 1] = [PRIVACY_FILTER];
pub const PRIVACY_FILTER: &str = "privacy_filter";

/// Every prompt must name a task the emulator knows; otherwise the request fails as a whole.
pub fn check_prefill(req: &Request) -> Result<(), String> {
    for (i, p) in req.prompts.iter().enumerate() {
        match p.task_name.as_deref() {
            Some(t) if PREFILL_TASKS.contains(&t) => {}
            Some(t) => {
                return Err(format!(
                    "unknown prefill task '{t}' in prompt {i}; this engine serves: {}",
                    PREFILL_TASKS.join(", ")
                ))
            }
            None => {
                return Err(format!(
                    "prompt {i} of a prefill_task request has no task_name"
                ))
            }
        }
    }
    Ok(())
}

/// The sequence of one prompt of a checked prefill request: one final delta carrying the
/// privacy filter's JSON.
pub fn prefill(spec: SequenceSpec, lm: &Model, _p: &PromptPayload, text: &str) -> Sequence {
    let payload = privacy_filter(text).to_string();
    let body = Delta {
        modal_type: Some("json".to_string()),
        modal_mime_type: Some("application/json".to_string()),
        ..modal_delta(&spec.ids, None, PRIVACY_FILTER, payload.as_bytes())
    };
    let last = final_delta(&spec.ids, spec.prompt_tokens, 0, "stop", body);
    Sequence::prefilled(spec, lm, vec![last])
}

/// A non-final delta of generated text: `text` decoded from one token.
pub fn text_delta(ids: &SeqIds, text: &str, token: i64) -> Delta {
    Delta {
        content: Some(text.to_string()),
        tokens: vec![token],
        num_tokens_in_delta: Some(1),
        ..ids.head()
    }
}

/// A non-final delta with a modal payload (base64 in `modal_bytes_b64`), optionally with the
/// token that produced it.
pub fn modal_delta(ids: &SeqIds, token: Option<i64>, decoder: &str, bytes: &[u8]) -> Delta {
    Delta {
        content: Some(String::new()),
        tokens: token.into_iter().collect(),
        num_tokens_in_delta: Some(u32::from(token.is_some())),
        modal_decoder_id: Some(decoder.to_string()),
        modal_bytes_b64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ..ids.head()
    }
}

/// `body` made the final delta of its sequence: `generated` tokens in all, ended for `reason`.
pub fn final_delta(
    ids: &SeqIds,
    prompt_tokens: u64,
    generated: u64,
    reason: &str,
    body: Delta,
) -> Delta {
    let base = error_delta(ids, "");
    Delta {
        is_final_delta: true,
        finish_reason: Some(reason.to_string()),
        prompt_token_count: Some(prompt_tokens.max(1)),
        generation_len: Some(generated),
        reasoning_tokens: base.reasoning_tokens,
        cached_token_count: base.cached_token_count,
        content: body.content.or(base.content),
        num_tokens_in_delta: body.num_tokens_in_delta.or(base.num_tokens_in_delta),
        ..body
    }
}

pub use crate::lm::fnv1a_parts as fnv;

/// Sequence ids for unit tests.
#[cfg(test)]
pub fn test_ids() -> SeqIds {
    SeqIds {
        channel: 1,
        request_id: 2,
        sequence_id: 3,
        prompt_index: 0,
        candidate_index: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_core::wire::request::RequestType;

    fn request(tasks: &[Option<&str>]) -> Request {
        Request {
            request_id: 1,
            model_id: "m".into(),
            model_path: "/m".into(),
            request_type: RequestType::PrefillTask,
            request_channel_id: 0,
            response_channel_id: 2,
            prompts: tasks
                .iter()
                .map(|t| PromptPayload {
                    task_name: t.map(str::to_string),
                    ..PromptPayload::default()
                })
                .collect(),
        }
    }

    #[test]
    fn every_prompt_must_name_a_known_task() {
        assert!(check_prefill(&request(&[Some("privacy_filter"); 2])).is_ok());
        let e = check_prefill(&request(&[Some("privacy_filter"), Some("summarise")])).unwrap_err();
        assert!(
            e.contains("unknown prefill task 'summarise' in prompt 1"),
            "{e}"
        );
        let e = check_prefill(&request(&[None])).unwrap_err();
        assert!(e.contains("no task_name"), "{e}");
    }

    #[test]
    fn final_deltas_keep_their_payload() {
        let ids = SeqIds {
            prompt_index: 4,
            ..test_ids()
        };
        let d = final_delta(
            &ids,
            9,
            2,
            "stop",
            modal_delta(&ids, Some(5), "x.coord", &[1, 2, 3, 4]),
        );
        assert!(d.is_final_delta);
        assert_eq!(d.finish_reason.as_deref(), Some("stop"));
        assert_eq!((d.prompt_token_count, d.generation_len), (Some(9), Some(2)));
        assert_eq!(d.tokens, vec![5]);
        assert_eq!(d.modal_bytes_b64.as_deref(), Some("AQIDBA=="));
        assert_eq!(d.error_message, None);
        assert_eq!(d.prompt_index, Some(4));
        let bare = final_delta(&ids, 0, 0, "length", ids.head());
        assert_eq!(bare.content.as_deref(), Some(""));
        assert_eq!(bare.num_tokens_in_delta, Some(0));
        assert_eq!(bare.prompt_token_count, Some(1));
    }
}
