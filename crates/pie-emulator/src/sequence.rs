//! One generated sequence (a prompt x candidate) and the deltas it produces.
//!
//! Every call to [`Sequence::step`] samples exactly one token and yields exactly one delta;
//! the step that ends the sequence yields its final delta (which carries that last token).
//! Stop strings are matched on the decoded text: text that could still turn out to be the
//! beginning of a stop string is held back, so nothing past a stop string is ever streamed.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::lm::Model;
use crate::sampler::{adjust_logits, choose, Choice, Rng, SamplingParams};
use crate::schema::{self, JsonTok, Sampled, Words};
use crate::structured::{Body, Plan, Tool};

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

/// Tokens that are not word-pieces of the model (thinking and tool-call markers, JSON
/// punctuation, schema keys, enum members, numbers) carry a wire id in
/// `SYNTHETIC_ID_BASE..SYNTHETIC_ID_BASE + SYNTHETIC_ID_SPAN` derived from their text.
pub const SYNTHETIC_ID_BASE: i64 = 200_000;
pub const SYNTHETIC_ID_SPAN: u64 = 100_000;

pub fn synthetic_id(text: &str) -> i64 {
    SYNTHETIC_ID_BASE + (crate::lm::fnv1a(text.as_bytes()) % SYNTHETIC_ID_SPAN) as i64
}

/// One entry of a delta's `state_events`.
pub fn state_event(
    event_type: &str,
    item_type: &str,
    output_index: u32,
    identifier: &str,
    delta: &str,
    value: Option<Value>,
) -> Value {
    let mut m = Map::new();
    m.insert("event_type".into(), event_type.into());
    m.insert("item_type".into(), item_type.into());
    m.insert("output_index".into(), output_index.into());
    m.insert("identifier".into(), identifier.into());
    m.insert("delta".into(), delta.into());
    if let Some(v) = value {
        m.insert("value".into(), v);
    }
    Value::Object(m)
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
    /// Reasoning, tool calls or structured output (shared by the prompt's candidates).
    pub plan: Arc<Plan>,
}

/// One precomputed token: markers, reasoning, tool calls and structured output are
/// generated when the sequence is created and then streamed one token per step.
#[derive(Clone, Debug)]
struct ScriptTok {
    text: String,
    wire: i64,
    logprob: f64,
    top: Vec<(i64, f64)>,
    events: Vec<Value>,
    reasoning: bool,
    /// The item this token leaves open (to close it if generation is cut short here).
    item: Option<(&'static str, u32)>,
    /// Text this token adds to that item.
    item_text: String,
}

impl ScriptTok {
    fn marker(text: &str) -> ScriptTok {
        ScriptTok {
            text: text.to_string(),
            wire: synthetic_id(text),
            logprob: 0.0,
            top: Vec::new(),
            events: Vec::new(),
            reasoning: false,
            item: None,
            item_text: String::new(),
        }
    }

    fn from_json(t: &JsonTok, lm: &Model) -> ScriptTok {
        match &t.sampled {
            Some(s) => ScriptTok {
                text: t.text.clone(),
                wire: lm.wire_id(s.token),
                logprob: s.logprob,
                top: s.top.iter().map(|(t, lp)| (lm.wire_id(*t), *lp)).collect(),
                ..ScriptTok::marker("")
            },
            None => ScriptTok {
                text: t.text.clone(),
                wire: synthetic_id(&t.text),
                ..ScriptTok::marker("")
            },
        }
    }
}

/// Samples word-pieces from the model for reasoning text and JSON strings.
struct LmWords<'a> {
    lm: &'a Model,
    params: &'a SamplingParams,
    boosted: &'a [usize],
    rng: &'a mut Rng,
    history: &'a mut Vec<usize>,
    logits: &'a mut Vec<f64>,
}

impl LmWords<'_> {
    fn sample(&mut self, context: usize, ban: &dyn Fn(usize) -> bool) -> Choice {
        self.logits.clear();
        self.logits.extend_from_slice(self.lm.row(context));
        for &t in self.boosted {
            self.logits[t] += PROMPT_WORD_BOOST;
        }
        // Scripted text is built from whole pieces: a byte token never stands alone there.
        for (t, l) in self.logits.iter_mut().enumerate() {
            if ban(t) || self.lm.is_byte(t) {
                *l = f64::NEG_INFINITY;
            }
        }
        adjust_logits(self.logits, self.history, self.params);
        let choice = choose(self.logits, self.params, self.rng);
        self.history.push(choice.token);
        choice
    }

    /// `n` pieces of running text (never end-of-turn), starting a fresh reply.
    fn run(&mut self, n: usize, ban: &dyn Fn(usize) -> bool) -> Vec<Sampled> {
        let mut context = self.lm.bos();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let c = self.sample(context, ban);
            context = c.token;
            out.push(Sampled {
                token: c.token,
                text: self.lm.text(c.token).to_string(),
                logprob: c.logprob,
                top: c.top,
            });
        }
        out
    }
}

impl Words for LmWords<'_> {
    fn words(&mut self, n: usize) -> Vec<Sampled> {
        let lm = self.lm;
        let eot = lm.eot();
        // Inside a JSON string: no end-of-turn, no line breaks or bare whitespace.
        let ban =
            move |t: usize| t == eot || lm.text(t).contains('\n') || lm.text(t).trim().is_empty();
        self.run(n, &ban)
    }

    fn rng(&mut self) -> &mut Rng {
        self.rng
    }
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
    /// An embedding sequence: no tokens, one final delta with the vector (see
    /// [`Sequence::embedding`]).
    embedding: Option<Box<EmbeddingWork>>,
}

/// Prompt tokens an embedding sequence reads per scheduler step (its "prefill").
pub const EMBED_TOKENS_PER_STEP: u64 = 64;

/// What is left of an embedding sequence: the steps its prompt still takes, then the vector.
struct EmbeddingWork {
    vector: Vec<f32>,
    steps_left: u64,
}

/// The streamed form of one tool call: `item_started` on its first token, per-argument
/// `content_delta`/`item_completed` (identifier = argument name), the raw text as
/// `content_delta` with identifier `arguments`, and on the last token the completed
/// `arguments` text and the completed call `{name, arguments}`.
fn tool_call_script(
    name: &str,
    args: Value,
    index: u32,
    toks: &[JsonTok],
    lm: &Model,
) -> Vec<ScriptTok> {
    let item_id = format!("tool_call:{name}");
    let raw: String = toks.iter().map(|t| t.text.as_str()).collect();
    let n = toks.len();
    let mut out = Vec::with_capacity(n);
    for (i, t) in toks.iter().enumerate() {
        let mut tok = ScriptTok::from_json(t, lm);
        if i == 0 {
            tok.events.push(state_event(
                "item_started",
                "tool_call",
                index,
                &item_id,
                "",
                None,
            ));
        }
        if let Some((field, d)) = &t.field_delta {
            tok.events.push(state_event(
                "content_delta",
                "tool_call",
                index,
                field,
                d,
                None,
            ));
        }
        if let Some((field, v)) = &t.field_done {
            tok.events.push(state_event(
                "item_completed",
                "tool_call",
                index,
                field,
                "",
                Some(v.clone()),
            ));
        }
        tok.events.push(state_event(
            "content_delta",
            "tool_call",
            index,
            "arguments",
            &t.text,
            None,
        ));
        tok.item = Some(("tool_call", index));
        if i + 1 == n {
            tok.events.push(state_event(
                "item_completed",
                "tool_call",
                index,
                "arguments",
                "",
                Some(raw.clone().into()),
            ));
            tok.events.push(state_event(
                "item_completed",
                "tool_call",
                index,
                &item_id,
                "",
                Some(json!({"name": name, "arguments": args.clone()})),
            ));
            tok.item = None;
        }
        out.push(tok);
    }
    out
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
        let steps_left = spec.prompt_tokens.div_ceil(EMBED_TOKENS_PER_STEP).max(1);
        let mut seq = Sequence::bare(spec, lm);
        seq.embedding = Some(Box::new(EmbeddingWork { vector, steps_left }));
        seq
    }

    /// One scheduler step: a generated token's delta, or, for an embedding sequence, nothing
    /// until its prompt has been read and then its final delta.
    pub fn advance(&mut self, lm: &Model) -> Option<Value> {
        let Some(work) = self.embedding.as_mut() else {
            return Some(self.step(lm));
        };
        work.steps_left = work.steps_left.saturating_sub(1);
        if work.steps_left > 0 {
            return None;
        }
        self.done = true;
        Some(embedding_delta(&self.ids, &work.vector, self.prompt_tokens))
    }

    fn words<'a>(&'a mut self, lm: &'a Model) -> LmWords<'a> {
        LmWords {
            lm,
            params: &self.params,
            boosted: &self.boosted,
            rng: &mut self.rng,
            history: &mut self.generated,
            logits: &mut self.logits,
        }
    }

    /// Precompute the reasoning item, tool calls or structured message of this sequence.
    fn build_script(&mut self, plan: &Plan, lm: &Model) {
        let mut script = Vec::new();
        let mut index = 0u32;
        if let Some(r) = &plan.reasoning {
            if !r.start.is_empty() {
                // The think-open marker ships without state events, ahead of item_started.
                script.push(ScriptTok::marker(&r.start));
            }
            let eot = lm.eot();
            let pieces = self.words(lm).run(r.budget.max(1), &move |t| t == eot);
            let mut full = String::new();
            for (i, p) in pieces.iter().enumerate() {
                full.push_str(&p.text);
                let mut events = Vec::new();
                if i == 0 {
                    events.push(state_event(
                        "item_started",
                        "reasoning",
                        0,
                        "reasoning",
                        "",
                        None,
                    ));
                }
                events.push(state_event(
                    "content_delta",
                    "reasoning",
                    0,
                    "reasoning",
                    &p.text,
                    None,
                ));
                script.push(ScriptTok {
                    events,
                    reasoning: true,
                    item: Some(("reasoning", 0)),
                    item_text: p.text.clone(),
                    ..ScriptTok::from_json(
                        &JsonTok {
                            sampled: Some(p.clone()),
                            ..JsonTok::forced(p.text.clone())
                        },
                        lm,
                    )
                });
            }
            let done = state_event(
                "item_completed",
                "reasoning",
                0,
                "reasoning",
                "",
                Some(full.into()),
            );
            if r.end.is_empty() {
                let last = script.last_mut().expect("reasoning has tokens");
                last.events.push(done);
                last.item = None;
            } else {
                script.push(ScriptTok {
                    events: vec![done],
                    reasoning: true,
                    ..ScriptTok::marker(&r.end)
                });
            }
            index = 1;
        }
        match &plan.body {
            Body::Text => {
                self.then_text = true;
                self.message_index = index;
            }
            Body::Json(schema) => {
                self.then_text = false;
                let mut toks = Vec::new();
                schema::generate(schema, schema, &mut self.words(lm), &mut toks);
                let mut full = String::new();
                let n = toks.len();
                for (i, t) in toks.iter().enumerate() {
                    full.push_str(&t.text);
                    let mut tok = ScriptTok::from_json(t, lm);
                    if i == 0 {
                        tok.events.push(state_event(
                            "item_started",
                            "message",
                            index,
                            "",
                            "",
                            None,
                        ));
                    }
                    tok.events.push(state_event(
                        "content_delta",
                        "message",
                        index,
                        "",
                        &t.text,
                        None,
                    ));
                    tok.item = Some(("message", index));
                    tok.item_text = t.text.clone();
                    if i + 1 == n {
                        tok.events.push(state_event(
                            "item_completed",
                            "message",
                            index,
                            "",
                            "",
                            Some(full.clone().into()),
                        ));
                        tok.item = None;
                    }
                    script.push(tok);
                }
            }
            Body::Calls(tools, framing) => {
                self.then_text = false;
                if !framing.section_start.is_empty() {
                    script.push(ScriptTok::marker(&framing.section_start));
                }
                for (k, tool) in tools.iter().enumerate() {
                    let idx = index + k as u32;
                    let (toks, args) =
                        self.tool_call_tokens(tool, &framing.call_start, &framing.call_end, lm);
                    script.extend(tool_call_script(&tool.name, args, idx, &toks, lm));
                }
                if !framing.section_end.is_empty() {
                    script.push(ScriptTok::marker(&framing.section_end));
                }
            }
        }
        self.script = script.into();
    }

    /// The raw tokens of one call: `call_start {"name": "<name>", "arguments": {...}} call_end`.
    fn tool_call_tokens(
        &mut self,
        tool: &Tool,
        call_start: &str,
        call_end: &str,
        lm: &Model,
    ) -> (Vec<JsonTok>, Value) {
        let mut toks = Vec::new();
        if !call_start.is_empty() {
            toks.push(JsonTok::forced(call_start));
        }
        for t in [
            "{".to_string(),
            "\"name\"".to_string(),
            ": ".to_string(),
            Value::String(tool.name.clone()).to_string(),
            ", ".to_string(),
            "\"arguments\"".to_string(),
            ": ".to_string(),
        ] {
            toks.push(JsonTok::forced(t));
        }
        let args = schema::gen_object_for_fields(&tool.parameters, &mut self.words(lm), &mut toks);
        toks.push(JsonTok::forced("}"));
        if !call_end.is_empty() {
            toks.push(JsonTok::forced(call_end));
        }
        (toks, args)
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

    /// Only tokens that keep the text valid UTF-8 may come next: a byte token must start a
    /// character or continue the one in progress, and nothing else may interrupt that one.
    /// Left alone when the vocabulary has no way on (then the character is cut, as at
    /// `max_tokens`).
    fn mask_orphan_bytes(&mut self, lm: &Model) {
        let mut next = [0u8; 4];
        let held = self.partial.len().min(3);
        next[..held].copy_from_slice(&self.partial[..held]);
        let fits = |t: usize| match lm.byte_of(t) {
            Some(b) => {
                let mut next = next;
                next[held] = b;
                match std::str::from_utf8(&next[..=held]) {
                    Ok(_) => true,
                    Err(e) => e.error_len().is_none(),
                }
            }
            None => self.partial.is_empty(),
        };
        let allowed: Vec<bool> = (0..self.logits.len()).map(fits).collect();
        if !allowed
            .iter()
            .zip(&self.logits)
            .any(|(ok, l)| *ok && l.is_finite())
        {
            return;
        }
        for (logit, ok) in self.logits.iter_mut().zip(allowed) {
            if !ok {
                *logit = f64::NEG_INFINITY;
            }
        }
    }

    /// Add a token's bytes; text grows only by whole characters.
    fn push_bytes(&mut self, bytes: &[u8]) {
        if self.partial.is_empty() {
            if let Ok(t) = std::str::from_utf8(bytes) {
                self.text.push_str(t);
                return;
            }
        }
        self.partial.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.partial) {
            Ok(_) => self.partial.len(),
            Err(e) if e.error_len().is_some() => {
                // Not a character and never going to be one.
                let bad = String::from_utf8_lossy(&self.partial).into_owned();
                self.text.push_str(&bad);
                self.partial.clear();
                return;
            }
            Err(e) => e.valid_up_to(),
        };
        let done: Vec<u8> = self.partial.drain(..complete).collect();
        self.text
            .push_str(std::str::from_utf8(&done).expect("a checked UTF-8 prefix"));
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
        self.count += 1;
        let mut m = self.ids.head();
        m.insert("content".into(), format!("{} ", monotonic_ns()).into());
        m.insert("tokens".into(), json!([FLOOD_TOKEN]));
        m.insert("num_tokens_in_delta".into(), 1.into());
        m.insert("cumulative_logprob".into(), 0.0.into());
        if self.count as u64 >= self.max_tokens {
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
                .map(|(t, lp)| json!({"token": lm.wire_id(*t).to_string(), "probability": finite(*lp)}))
                .collect()
        };
        let mut m = self.token_delta(content, lm.wire_id(token), top, events);
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

    /// The fields of every token delta: the routing head, the token and its text, the
    /// alternatives (when asked for), the running log-probability and any state events.
    fn token_delta(
        &self,
        content: String,
        wire: i64,
        top: impl FnOnce() -> Vec<Value>,
        events: Vec<Value>,
    ) -> serde_json::Map<String, Value> {
        let mut m = self.ids.head();
        m.insert("content".into(), content.into());
        m.insert("tokens".into(), json!([wire]));
        m.insert("num_tokens_in_delta".into(), 1.into());
        if self.params.top_logprobs > 0 {
            m.insert("top_logprobs".into(), Value::Array(top()));
        }
        m.insert("cumulative_logprob".into(), finite(self.cumulative_logprob));
        if !events.is_empty() {
            m.insert("state_events".into(), Value::Array(events));
        }
        m
    }

    /// Stream the next precomputed token.
    fn script_step(&mut self) -> Value {
        let tok = self.script.pop_front().expect("script has a token");
        self.count += 1;
        if tok.reasoning {
            self.reasoning_count += 1;
        }
        self.cumulative_logprob += tok.logprob;
        match tok.item {
            Some(item) => {
                if self.open_item != Some(item) {
                    self.open_item = Some(item);
                    self.open_text.clear();
                }
                self.open_text.push_str(&tok.item_text);
            }
            None => {
                self.open_item = None;
                self.open_text.clear();
            }
        }
        let mut events = tok.events;
        let natural_end = self.script.is_empty() && !self.then_text;
        let finish = if natural_end {
            Some("stop")
        } else if self.count as u64 >= self.max_tokens {
            // Cut short: close an open message or reasoning item with its text so far (a
            // tool call with half its arguments is left open).
            if let Some((kind, index)) = self.open_item {
                if kind != "tool_call" {
                    let identifier = if kind == "reasoning" { "reasoning" } else { "" };
                    events.push(state_event(
                        "item_completed",
                        kind,
                        index,
                        identifier,
                        "",
                        Some(self.open_text.clone().into()),
                    ));
                }
            }
            Some("length")
        } else {
            None
        };
        let wanted = self.params.top_logprobs;
        let top = || {
            if tok.top.is_empty() {
                // A forced token: the constraint left no alternative.
                vec![json!({"token": tok.wire.to_string(), "probability": 0.0})]
            } else {
                tok.top
                    .iter()
                    .take(wanted)
                    .map(|(t, lp)| json!({"token": t.to_string(), "probability": finite(*lp)}))
                    .collect()
            }
        };
        let mut m = self.token_delta(tok.text, tok.wire, top, events);
        match finish {
            None => {
                m.insert("is_final_delta".into(), false.into());
                m.insert("finish_reason".into(), "DELTA".into());
            }
            Some(reason) => {
                if !self.then_text || reason == "length" {
                    self.script.clear();
                }
                self.finish_fields(&mut m, reason);
            }
        }
        Value::Object(m)
    }

    fn finish_fields(&mut self, m: &mut Map<String, Value>, reason: &str) {
        self.done = true;
        m.insert("is_final_delta".into(), true.into());
        m.insert("finish_reason".into(), reason.into());
        m.insert("prompt_token_count".into(), self.prompt_tokens.into());
        m.insert("generation_len".into(), self.count.into());
        m.insert("reasoning_tokens".into(), self.reasoning_count.into());
        m.insert("cached_token_count".into(), 0.into());
    }

    /// The final delta of a cancelled sequence: no new token, any held-back text released.
    pub fn cancel(&mut self) -> Value {
        let content = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        let mut m = self.ids.head();
        if self.message_started && !content.is_empty() {
            let e = state_event(
                "content_delta",
                "message",
                self.message_index,
                "",
                &content,
                None,
            );
            m.insert("state_events".into(), json!([e]));
        }
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
            plan: Arc::new(Plan::text()),
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
            serde_json::from_str(&raw["<tool_call>".len()..raw.len() - "</tool_call>".len()])
                .unwrap();
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
        let last = s.advance(&lm).expect("the third step ends it");
        assert!(s.done);
        assert_eq!(last["is_final_delta"], true);
        assert_eq!(last["prompt_token_count"], 2 * EMBED_TOKENS_PER_STEP + 1);
        assert_eq!(last["embedding_bytes"], "AAAAPwAAgL8=");
        // Cancelled before it is read: a final delta without a vector.
        let mut s = Sequence::embedding(spec(&[], 1, 1.0), &lm, vec![1.0]);
        let c = s.cancel();
        assert_eq!(c["finish_reason"], "cancelled");
        assert!(c.get("embedding_bytes").is_none());
    }
}
