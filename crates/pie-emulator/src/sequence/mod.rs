//! One generated sequence (a prompt x candidate) and the deltas it produces.
//!
//! Every call to [`Sequence::step`] samples exactly one token and yields exactly one delta;
//! the step that ends the sequence yields its final delta (which carries that last token).
//! Stop strings are matched on the decoded text: text that could still turn out to be the
//! beginning of a stop string is held back, so nothing past a stop string is ever streamed.

mod deltas;
mod script;
mod text;

use std::collections::VecDeque;
use std::sync::Arc;

use orchard_core::wire::Delta;

use crate::lm::Model;
use crate::sampler::{adjust_logits, choose, Rng, SamplingParams};
use crate::structured::{Body, Plan};

use deltas::{alternative, embedding_delta, state_event};
pub use deltas::{error_delta, SeqIds};
use script::ScriptTok;

/// Logit added to tokens whose word appears in the prompt.
pub const PROMPT_WORD_BOOST: f64 = 1.2;
/// A reply says at least this many tokens before it may end on its own: the end-of-turn
/// logit is lowered by [`EARLY_EOT_PENALTY`] until then (a `logit_bias` can still force it).
/// Without this a bigram model ends replies like "Harvest time." far too often.
pub const MIN_REPLY_TOKENS: usize = 12;
pub const EARLY_EOT_PENALTY: f64 = 20.0;
/// Greedy decoding would never pick end-of-turn from the bigram table, so a greedy reply ends
/// as a real model's does: at the first sentence end after [`MIN_REPLY_TOKENS`], and at the
/// latest after this many tokens.
pub const GREEDY_MAX_REPLY_TOKENS: usize = 4 * MIN_REPLY_TOKENS;

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
    /// Reasoning, tool calls or structured output (shared by the prompt's candidates).
    pub plan: Arc<Plan>,
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
    /// Bytes of a character whose last byte token has not been generated yet.
    partial: Vec<u8>,
    cumulative_logprob: f64,
    logits: Vec<f64>,
    flood: bool,
    /// Tokens generated so far (every kind), i.e. `generation_len`.
    count: usize,
    /// Tokens of the reasoning item (its content and closing marker).
    reasoning_count: usize,
    /// Precomputed tokens still to stream, before any free text.
    script: VecDeque<ScriptTok>,
    /// Free text (a message item) follows the script.
    then_text: bool,
    /// `count` when the free text started.
    text_start: usize,
    /// `output_index` of the free-text message item, and whether it has started.
    message_index: u32,
    message_started: bool,
    /// The item left open by the last script token, and its text so far.
    open_item: Option<(&'static str, u32)>,
    open_text: String,
    /// Set once the final delta has been produced.
    pub done: bool,
    /// A fault to inject into this sequence's deltas (tests), and how many it has produced.
    pub fault: Option<crate::fault::Fault>,
    pub produced: u64,
    /// An embedding or engine-task sequence: prepared deltas, the last one final (see
    /// [`Sequence::prefilled`]).
    embedding: Option<Box<EmbeddingWork>>,
}

/// Prompt tokens an embedding sequence reads per scheduler step (its "prefill").
pub const EMBED_TOKENS_PER_STEP: u64 = 64;

/// What is left of an embedding or engine-task sequence: the steps its prompt still takes,
/// then its deltas, one a step.
struct EmbeddingWork {
    script: VecDeque<Delta>,
    steps_left: u64,
}

impl Sequence {
    pub fn new(spec: SequenceSpec, lm: &Model) -> Sequence {
        let plan = spec.plan.clone();
        let mut seq = Sequence::bare(spec, lm);
        if !seq.flood && (plan.reasoning.is_some() || plan.body != Body::Text) {
            seq.build_script(&plan, lm);
        }
        seq
    }

    fn bare(spec: SequenceSpec, lm: &Model) -> Sequence {
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
            partial: Vec::new(),
            cumulative_logprob: 0.0,
            logits: Vec::with_capacity(lm.vocab_size()),
            flood: spec.flood,
            count: 0,
            reasoning_count: 0,
            script: VecDeque::new(),
            then_text: true,
            text_start: 0,
            message_index: 0,
            message_started: false,
            open_item: None,
            open_text: String::new(),
            done: false,
            fault: None,
            produced: 0,
            embedding: None,
        }
    }

    /// An embedding sequence: it reads its prompt [`EMBED_TOKENS_PER_STEP`] tokens per
    /// scheduler step, publishing nothing, then sends one final delta carrying `vector`.
    /// It takes part in scheduling, counters and cancellation like any other sequence.
    pub fn embedding(spec: SequenceSpec, lm: &Model, vector: Vec<f32>) -> Sequence {
        let last = embedding_delta(&spec.ids, &vector, spec.prompt_tokens.max(1));
        Sequence::prefilled(spec, lm, vec![last])
    }

    /// A sequence that reads its prompt like an embedding, then sends `script` one delta a
    /// step: deltas built for `spec.ids`, the last one final (an engine task's output).
    pub fn prefilled(spec: SequenceSpec, lm: &Model, script: Vec<Delta>) -> Sequence {
        let steps_left = spec.prompt_tokens.div_ceil(EMBED_TOKENS_PER_STEP).max(1);
        let mut seq = Sequence::bare(spec, lm);
        let script = script.into();
        seq.embedding = Some(Box::new(EmbeddingWork { script, steps_left }));
        seq
    }

    /// One scheduler step: a generated token's delta, or, for an embedding or task sequence,
    /// nothing until its prompt has been read and then its next prepared delta.
    pub fn advance(&mut self, lm: &Model) -> Option<Delta> {
        let Some(work) = self.embedding.as_mut() else {
            return Some(self.step(lm));
        };
        if work.steps_left > 1 {
            work.steps_left -= 1;
            return None;
        }
        work.steps_left = 0;
        let next = work.script.pop_front();
        self.count += next.as_ref().map_or(0, |d| d.tokens.len());
        self.done = work.script.is_empty();
        next
    }

    /// Flood mode only: the next step produces this sequence's final delta.
    pub fn flood_final_next(&self) -> bool {
        self.flood && self.count as u64 + 1 >= self.max_tokens
    }

    pub fn generated_len(&self) -> usize {
        self.count
    }

    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    /// Sample one token and produce its delta.
    pub fn step(&mut self, lm: &Model) -> Delta {
        if self.flood {
            return self.flood_step();
        }
        if !self.script.is_empty() {
            return self.script_step();
        }
        if !self.message_started {
            self.text_start = self.count;
            self.context = lm.bos();
        }
        self.logits.clear();
        self.logits.extend_from_slice(lm.row(self.context));
        for &t in self.boosted.iter() {
            self.logits[t] += PROMPT_WORD_BOOST;
        }
        let reply_len = self.count - self.text_start;
        if reply_len < MIN_REPLY_TOKENS {
            self.logits[lm.eot()] -= EARLY_EOT_PENALTY;
        } else if self.params.is_greedy()
            && (self.text.trim_end().ends_with(['.', '!', '?'])
                || reply_len >= GREEDY_MAX_REPLY_TOKENS)
        {
            // Before the request's own adjustments, so a logit_bias can still ban the end.
            let top = self.logits.iter().copied().fold(f64::MIN, f64::max);
            self.logits[lm.eot()] = top + 1.0;
        }
        adjust_logits(&mut self.logits, &self.generated, &self.params);
        self.mask_orphan_bytes(lm);
        let choice = choose(&self.logits, &self.params, &mut self.rng);
        let token = choice.token;
        self.generated.push(token);
        self.count += 1;
        self.context = token;
        self.cumulative_logprob += choice.logprob;

        let mut finish = None;
        let mut end = self.text.len();
        if token == lm.eot() {
            finish = Some(Finish::EndOfTurn);
        } else {
            let old_len = self.text.len();
            self.push_bytes(lm.bytes(token));
            if let Some(p) = self.find_stop(old_len) {
                finish = Some(Finish::StopString);
                end = p.max(self.emitted);
            } else if self.count as u64 >= self.max_tokens {
                finish = Some(Finish::Length);
                // Cut inside a character: its bytes so far become U+FFFD, as a byte-level
                // detokenizer prints them.
                if !self.partial.is_empty() {
                    let rest = String::from_utf8_lossy(&self.partial).into_owned();
                    self.text.push_str(&rest);
                    self.partial.clear();
                }
                end = self.text.len();
            } else {
                end = (self.text.len() - self.held_back()).max(self.emitted);
            }
        }
        let content = self.text[self.emitted..end].to_string();
        self.emitted = end;

        let idx = self.message_index;
        let mut events = Vec::new();
        if !self.message_started {
            self.message_started = true;
            events.push(state_event("item_started", "message", idx, "", "", None));
        }
        if !content.is_empty() {
            events.push(state_event(
                "content_delta",
                "message",
                idx,
                "",
                &content,
                None,
            ));
        }
        if finish.is_some() {
            let full = self.text[..self.emitted].to_string();
            events.push(state_event(
                "item_completed",
                "message",
                idx,
                "",
                "",
                Some(full.into()),
            ));
        }

        let top = || {
            choice
                .top
                .iter()
                .map(|(t, lp)| alternative(lm.wire_id(*t), *lp))
                .collect()
        };
        let mut d = self.token_delta(content, lm.wire_id(token), top, events);
        if let Some(f) = finish {
            let reason = if f == Finish::Length {
                "length"
            } else {
                "stop"
            };
            self.finish(&mut d, reason);
            if f == Finish::EndOfTurn {
                d.matched_stop_token_id = Some(lm.wire_id(token));
                d.matched_stop_token = Some(lm.text(token).to_string());
            }
        }
        d
    }
}

#[cfg(test)]
mod tests;
