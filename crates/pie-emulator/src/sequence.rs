//! One generated sequence (a prompt x candidate) and the deltas it produces.
//!
//! Every call to [`Sequence::step`] samples exactly one token and yields exactly one delta;
//! the step that ends the sequence yields its final delta (which carries that last token).
//! Stop strings are matched on the decoded text: text that could still turn out to be the
//! beginning of a stop string is held back, so nothing past a stop string is ever streamed.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::lm::Model;
use crate::sampler::{adjust_logits, choose, Rng, SamplingParams};

/// Logit added to tokens whose word appears in the prompt.
pub const PROMPT_WORD_BOOST: f64 = 1.2;
/// A reply says at least this many tokens before it may end on its own: the end-of-turn
/// logit is lowered by [`EARLY_EOT_PENALTY`] until then (a `logit_bias` can still force it).
/// Without this a bigram model ends replies like "Harvest time." far too often.
pub const MIN_REPLY_TOKENS: usize = 12;
pub const EARLY_EOT_PENALTY: f64 = 20.0;

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
    fn head(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("request_id".into(), self.request_id.into());
        m.insert("sequence_id".into(), self.sequence_id.into());
        m.insert("prompt_index".into(), self.prompt_index.into());
        m.insert("candidate_index".into(), self.candidate_index.into());
        m
    }
}

/// A JSON number that is never `null` (serde_json writes non-finite floats as null).
pub fn finite(x: f64) -> Value {
    let x = if x.is_nan() {
        0.0
    } else {
        x.clamp(f64::MIN, f64::MAX)
    };
    json!(x)
}

/// The one final delta of a sequence that failed before generating anything.
pub fn error_delta(ids: &SeqIds, message: &str) -> Value {
    let mut m = ids.head();
    m.insert("content".into(), "".into());
    m.insert("tokens".into(), json!([]));
    m.insert("num_tokens_in_delta".into(), 0.into());
    m.insert("is_final_delta".into(), true.into());
    m.insert("finish_reason".into(), "error".into());
    m.insert("error_message".into(), message.into());
    m.insert("generation_len".into(), 0.into());
    m.insert("reasoning_tokens".into(), 0.into());
    m.insert("cached_token_count".into(), 0.into());
    Value::Object(m)
}

/// The one final delta of an embedding sequence.
pub fn embedding_delta(ids: &SeqIds, vector: &[f32], prompt_tokens: u64) -> Value {
    use base64::Engine as _;
    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut m = ids.head();
    m.insert("content".into(), "".into());
    m.insert("tokens".into(), json!([]));
    m.insert("num_tokens_in_delta".into(), 0.into());
    m.insert("is_final_delta".into(), true.into());
    m.insert("finish_reason".into(), "stop".into());
    m.insert(
        "embedding_bytes".into(),
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into(),
    );
    m.insert("prompt_token_count".into(), prompt_tokens.into());
    m.insert("generation_len".into(), 0.into());
    m.insert("reasoning_tokens".into(), 0.into());
    m.insert("cached_token_count".into(), 0.into());
    Value::Object(m)
}

/// Everything a sequence needs from its request.
#[derive(Clone, Debug)]
pub struct SequenceSpec {
    pub ids: SeqIds,
    pub model: String,
    pub params: SamplingParams,
    pub seed: u64,
    pub max_tokens: u64,
    pub stops: Arc<Vec<String>>,
    pub boosted: Arc<Vec<usize>>,
    pub prompt_tokens: u64,
    /// Flood mode (benchmarks): no language model, timestamps as content.
    pub flood: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    Length,
    StopString,
    EndOfTurn,
}

pub struct Sequence {
    pub ids: SeqIds,
    /// Canonical id of the model, for telemetry.
    pub model: String,
    params: SamplingParams,
    rng: Rng,
    boosted: Arc<Vec<usize>>,
    stops: Arc<Vec<String>>,
    max_tokens: u64,
    prompt_tokens: u64,
    context: usize,
    generated: Vec<usize>,
    text: String,
    emitted: usize,
    cumulative_logprob: f64,
    logits: Vec<f64>,
    flood: bool,
    /// Set once the final delta has been produced.
    pub done: bool,
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
    pub fn new(spec: SequenceSpec, lm: &Model) -> Sequence {
        Sequence {
            rng: Rng::for_candidate(spec.seed, spec.ids.candidate_index),
            ids: spec.ids,
            model: spec.model,
            params: spec.params,
            boosted: spec.boosted,
            stops: spec.stops,
            max_tokens: spec.max_tokens.max(1),
            prompt_tokens: spec.prompt_tokens.max(1),
            context: lm.bos(),
            generated: Vec::new(),
            text: String::new(),
            emitted: 0,
            cumulative_logprob: 0.0,
            logits: Vec::with_capacity(lm.vocab_size()),
            flood: spec.flood,
            done: false,
        }
    }

    /// Flood mode only: the next step produces this sequence's final delta.
    pub fn flood_final_next(&self) -> bool {
        self.flood && self.generated.len() as u64 + 1 >= self.max_tokens
    }

    pub fn generated_len(&self) -> usize {
        self.generated.len()
    }

    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    /// Earliest byte offset at which a stop string occurs, looking only at matches that
    /// could involve text appended after byte `old_len`.
    fn find_stop(&self, old_len: usize) -> Option<usize> {
        self.stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let mut from = old_len.saturating_sub(s.len().saturating_sub(1));
                while !self.text.is_char_boundary(from) {
                    from -= 1;
                }
                self.text[from..].find(s.as_str()).map(|p| from + p)
            })
            .min()
    }

    /// Bytes at the end of the text that might begin a stop string.
    fn held_back(&self) -> usize {
        let mut hold = 0;
        for s in self.stops.iter() {
            for k in (1..s.len()).rev() {
                if k <= hold {
                    break;
                }
                if s.is_char_boundary(k) && self.text.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }

    /// Flood mode: one delta whose content is the publish time; no sampling.
    fn flood_step(&mut self) -> Value {
        const FLOOD_TOKEN: usize = 1;
        self.generated.push(FLOOD_TOKEN);
        let mut m = self.ids.head();
        m.insert("content".into(), format!("{} ", monotonic_ns()).into());
        m.insert("tokens".into(), json!([FLOOD_TOKEN]));
        m.insert("num_tokens_in_delta".into(), 1.into());
        m.insert("cumulative_logprob".into(), 0.0.into());
        if self.generated.len() as u64 >= self.max_tokens {
            self.finish_fields(&mut m, "length");
        } else {
            m.insert("is_final_delta".into(), false.into());
            m.insert("finish_reason".into(), "DELTA".into());
        }
        Value::Object(m)
    }

    /// Sample one token and produce its delta.
    pub fn step(&mut self, lm: &Model) -> Value {
        if self.flood {
            return self.flood_step();
        }
        self.logits.clear();
        self.logits.extend_from_slice(lm.row(self.context));
        for &t in self.boosted.iter() {
            self.logits[t] += PROMPT_WORD_BOOST;
        }
        if self.generated.len() < MIN_REPLY_TOKENS {
            self.logits[lm.eot()] -= EARLY_EOT_PENALTY;
        }
        adjust_logits(&mut self.logits, &self.generated, &self.params);
        let choice = choose(&self.logits, &self.params, &mut self.rng);
        let token = choice.token;
        self.generated.push(token);
        self.context = token;
        self.cumulative_logprob += choice.logprob;

        let mut finish = None;
        let mut end = self.text.len();
        if token == lm.eot() {
            finish = Some(Finish::EndOfTurn);
        } else {
            let old_len = self.text.len();
            self.text.push_str(lm.text(token));
            if let Some(p) = self.find_stop(old_len) {
                finish = Some(Finish::StopString);
                end = p.max(self.emitted);
            } else if self.generated.len() as u64 >= self.max_tokens {
                finish = Some(Finish::Length);
                end = self.text.len();
            } else {
                end = (self.text.len() - self.held_back()).max(self.emitted);
            }
        }
        let content = self.text[self.emitted..end].to_string();
        self.emitted = end;

        let mut m = self.ids.head();
        m.insert("content".into(), content.into());
        m.insert("tokens".into(), json!([lm.wire_id(token)]));
        m.insert("num_tokens_in_delta".into(), 1.into());
        if self.params.top_logprobs > 0 {
            let top: Vec<Value> = choice
                .top
                .iter()
                .map(|(t, lp)| json!({"token": lm.wire_id(*t).to_string(), "probability": finite(*lp)}))
                .collect();
            m.insert("top_logprobs".into(), Value::Array(top));
        }
        m.insert("cumulative_logprob".into(), finite(self.cumulative_logprob));
        match finish {
            None => {
                m.insert("is_final_delta".into(), false.into());
                m.insert("finish_reason".into(), "DELTA".into());
            }
            Some(f) => {
                self.finish_fields(
                    &mut m,
                    if f == Finish::Length {
                        "length"
                    } else {
                        "stop"
                    },
                );
                if f == Finish::EndOfTurn {
                    m.insert("matched_stop_token_id".into(), lm.wire_id(token).into());
                    m.insert("matched_stop_token".into(), lm.text(token).into());
                }
            }
        }
        Value::Object(m)
    }

    fn finish_fields(&mut self, m: &mut Map<String, Value>, reason: &str) {
        self.done = true;
        m.insert("is_final_delta".into(), true.into());
        m.insert("finish_reason".into(), reason.into());
        m.insert("prompt_token_count".into(), self.prompt_tokens.into());
        m.insert("generation_len".into(), self.generated.len().into());
        m.insert("reasoning_tokens".into(), 0.into());
        m.insert("cached_token_count".into(), 0.into());
    }

    /// The final delta of a cancelled sequence: no new token, any held-back text released.
    pub fn cancel(&mut self) -> Value {
        let content = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        let mut m = self.ids.head();
        m.insert("content".into(), content.into());
        m.insert("tokens".into(), json!([]));
        m.insert("num_tokens_in_delta".into(), 0.into());
        m.insert("cumulative_logprob".into(), finite(self.cumulative_logprob));
        self.finish_fields(&mut m, "cancelled");
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    fn run(spec: SequenceSpec) -> (String, Vec<Value>) {
        let lm = Model::builtin();
        let mut s = Sequence::new(spec, &lm);
        let mut deltas = Vec::new();
        while !s.done {
            deltas.push(s.step(&lm));
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

    #[test]
    fn cancel_releases_held_text() {
        let lm = Model::builtin();
        let mut s = Sequence::new(spec(&["zzz-never"], 100, 1.0), &lm);
        s.step(&lm);
        let c = s.cancel();
        assert_eq!(c["finish_reason"], "cancelled");
        assert_eq!(c["generation_len"], 1);
        assert_eq!(c["tokens"], json!([]));
        assert!(s.done);
    }

    #[test]
    fn error_and_embedding_deltas_are_final() {
        let ids = spec(&[], 1, 1.0).ids;
        let e = error_delta(&ids, "boom");
        assert_eq!(e["finish_reason"], "error");
        assert_eq!(e["error_message"], "boom");
        let m = embedding_delta(&ids, &[1.0, 2.0], 4);
        assert_eq!(m["is_final_delta"], true);
        assert_eq!(m["embedding_bytes"].as_str().unwrap().len(), 12);
        assert_eq!(finite(f64::NEG_INFINITY), json!(f64::MIN));
    }

    #[test]
    fn flood_mode_emits_timestamps_and_one_final() {
        let lm = Model::builtin();
        let mut sp = spec(&[], 3, 1.0);
        sp.flood = true;
        let mut seq = Sequence::new(sp, &lm);
        let before = monotonic_ns();
        let deltas: Vec<Value> = (0..3).map(|_| seq.step(&lm)).collect();
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
}
