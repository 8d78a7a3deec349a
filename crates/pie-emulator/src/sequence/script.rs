//! Script planning: reasoning, tool calls and structured output are generated when the
//! sequence is created, as a queue of tokens with their state events, then streamed one
//! token per step.

use orchard_core::wire::{Delta, StateEvent};
use serde_json::{json, Value};

use super::deltas::{alternative, state_event};
use super::{Sequence, PROMPT_WORD_BOOST};
use crate::lm::Model;
use crate::sampler::{adjust_logits, choose, Choice, Rng, SamplingParams};
use crate::schema::{self, JsonTok, Sampled, Words};
use crate::structured::{Body, Plan, Tool};

/// Tokens that are not word-pieces of the model (thinking and tool-call markers, JSON
/// punctuation, schema keys, enum members, numbers) carry a wire id in
/// `SYNTHETIC_ID_BASE..SYNTHETIC_ID_BASE + SYNTHETIC_ID_SPAN` derived from their text.
pub const SYNTHETIC_ID_BASE: i64 = 200_000;
pub const SYNTHETIC_ID_SPAN: u64 = 100_000;

pub fn synthetic_id(text: &str) -> i64 {
    SYNTHETIC_ID_BASE + (crate::lm::fnv1a(text.as_bytes()) % SYNTHETIC_ID_SPAN) as i64
}

/// One precomputed token: markers, reasoning, tool calls and structured output are
/// generated when the sequence is created and then streamed one token per step.
#[derive(Clone, Debug)]
pub(super) struct ScriptTok {
    text: String,
    wire: i64,
    logprob: f64,
    top: Vec<(i64, f64)>,
    events: Vec<StateEvent>,
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
    let event = |event_type: &str, identifier: &str, delta: &str, value: Option<Value>| {
        state_event(event_type, "tool_call", index, identifier, delta, value)
    };
    for (i, t) in toks.iter().enumerate() {
        let mut tok = ScriptTok::from_json(t, lm);
        if i == 0 {
            tok.events.push(event("item_started", &item_id, "", None));
        }
        if let Some((field, d)) = &t.field_delta {
            tok.events.push(event("content_delta", field, d, None));
        }
        if let Some((field, v)) = &t.field_done {
            tok.events
                .push(event("item_completed", field, "", Some(v.clone())));
        }
        tok.events
            .push(event("content_delta", "arguments", &t.text, None));
        tok.item = Some(("tool_call", index));
        if i + 1 == n {
            tok.events.push(event(
                "item_completed",
                "arguments",
                "",
                Some(raw.clone().into()),
            ));
            let call = json!({"name": name, "arguments": args.clone()});
            tok.events
                .push(event("item_completed", &item_id, "", Some(call)));
            tok.item = None;
        }
        out.push(tok);
    }
    out
}

impl Sequence {
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
    pub(super) fn build_script(&mut self, plan: &Plan, lm: &Model) {
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

    /// Stream the next precomputed token.
    pub(super) fn script_step(&mut self) -> Delta {
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
                vec![alternative(tok.wire, 0.0)]
            } else {
                tok.top
                    .iter()
                    .take(wanted)
                    .map(|(t, lp)| alternative(*t, *lp))
                    .collect()
            }
        };
        let mut d = self.token_delta(tok.text, tok.wire, top, events);
        if let Some(reason) = finish {
            if !self.then_text || reason == "length" {
                self.script.clear();
            }
            self.finish(&mut d, reason);
        }
        d
    }
}
