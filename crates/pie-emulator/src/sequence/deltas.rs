//! Building a sequence's deltas as [`Delta`] values (the wire type the client decodes).

use orchard_core::wire::{Delta, StateEvent, TopLogprob};
use serde_json::Value;

use super::Sequence;

/// One entry of a delta's `state_events`.
pub fn state_event(
    event_type: &str,
    item_type: &str,
    output_index: u32,
    identifier: &str,
    delta: &str,
    value: Option<Value>,
) -> StateEvent {
    StateEvent {
        event_type: event_type.to_string(),
        item_type: item_type.to_string(),
        output_index,
        identifier: identifier.to_string(),
        delta: delta.to_string(),
        value,
    }
}

/// Where a sequence's deltas go and how they are labelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqIds {
    pub channel: u64,
    pub request_id: u64,
    pub sequence_id: u64,
    pub prompt_index: u32,
    pub candidate_index: u32,
}

impl SeqIds {
    /// A delta carrying only these ids (every delta names its sequence).
    pub fn head(&self) -> Delta {
        Delta {
            request_id: self.request_id,
            sequence_id: Some(self.sequence_id),
            prompt_index: Some(self.prompt_index),
            candidate_index: Some(self.candidate_index),
            ..Delta::default()
        }
    }

    /// A final delta without a token (error, embedding, cancellation).
    fn tokenless_final(&self, reason: &str) -> Delta {
        Delta {
            content: Some(String::new()),
            num_tokens_in_delta: Some(0),
            is_final_delta: true,
            finish_reason: Some(reason.to_string()),
            ..self.head()
        }
    }
}

/// A float that serde_json never writes as `null`: NaN becomes 0, infinities the extremes.
pub fn finite(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(f64::MIN, f64::MAX)
    }
}

/// A `top_logprobs` entry: the token's wire id as text and its log-probability.
pub fn alternative(wire: i64, logprob: f64) -> TopLogprob {
    TopLogprob {
        token: wire.to_string(),
        logprob: finite(logprob),
        bytes: None,
    }
}

/// The one final delta of a sequence that failed before generating anything.
pub fn error_delta(ids: &SeqIds, message: &str) -> Delta {
    Delta {
        error_message: Some(message.to_string()),
        generation_len: Some(0),
        reasoning_tokens: Some(0),
        cached_token_count: Some(0),
        ..ids.tokenless_final("error")
    }
}

/// The one final delta of an embedding sequence.
pub fn embedding_delta(ids: &SeqIds, vector: &[f32], prompt_tokens: u64) -> Delta {
    Delta {
        embedding_bytes: Some(vector.iter().flat_map(|f| f.to_le_bytes()).collect()),
        prompt_token_count: Some(prompt_tokens),
        generation_len: Some(0),
        reasoning_tokens: Some(0),
        cached_token_count: Some(0),
        ..ids.tokenless_final("stop")
    }
}

/// The monotonic clock in nanoseconds: the same clock as Node's `process.hrtime.bigint()`.
pub fn monotonic_ns() -> u64 {
    #[cfg(target_os = "macos")]
    const CLOCK: libc::clockid_t = libc::CLOCK_UPTIME_RAW;
    #[cfg(not(target_os = "macos"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Sequence {
    /// Flood mode: one delta whose content is the publish time; no sampling.
    pub(super) fn flood_step(&mut self) -> Delta {
        const FLOOD_TOKEN: i64 = 1;
        self.count += 1;
        let mut d = Delta {
            content: Some(format!("{} ", monotonic_ns())),
            tokens: vec![FLOOD_TOKEN],
            num_tokens_in_delta: Some(1),
            cumulative_logprob: Some(0.0),
            ..self.ids.head()
        };
        if self.count as u64 >= self.max_tokens {
            self.finish(&mut d, "length");
        } else {
            d.finish_reason = Some("DELTA".into());
        }
        d
    }

    /// The fields of every token delta: the routing head, the token and its text, the
    /// alternatives (when asked for), the running log-probability and any state events.
    /// It is not final until [`Sequence::finish`] says so.
    pub(super) fn token_delta(
        &self,
        content: String,
        wire: i64,
        top: impl FnOnce() -> Vec<TopLogprob>,
        state_events: Vec<StateEvent>,
    ) -> Delta {
        Delta {
            content: Some(content),
            tokens: vec![wire],
            num_tokens_in_delta: Some(1),
            top_logprobs: if self.params.top_logprobs > 0 {
                top()
            } else {
                Vec::new()
            },
            cumulative_logprob: Some(finite(self.cumulative_logprob)),
            state_events,
            finish_reason: Some("DELTA".into()),
            ..self.ids.head()
        }
    }

    /// Make `d` this sequence's final delta, ended for `reason`.
    pub(super) fn finish(&mut self, d: &mut Delta, reason: &str) {
        self.done = true;
        d.is_final_delta = true;
        d.finish_reason = Some(reason.to_string());
        d.prompt_token_count = Some(self.prompt_tokens);
        d.generation_len = Some(self.count as u64);
        d.reasoning_tokens = Some(self.reasoning_count as u64);
        d.cached_token_count = Some(0);
    }

    /// The final delta of a cancelled sequence: no new token, any held-back text released.
    pub fn cancel(&mut self) -> Delta {
        let content = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        let mut d = self.ids.tokenless_final("cancelled");
        if self.message_started && !content.is_empty() {
            d.state_events.push(state_event(
                "content_delta",
                "message",
                self.message_index,
                "",
                &content,
                None,
            ));
        }
        d.content = Some(content);
        d.cumulative_logprob = Some(finite(self.cumulative_logprob));
        self.finish(&mut d, "cancelled");
        d
    }
}
