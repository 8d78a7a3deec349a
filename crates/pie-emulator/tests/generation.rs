//! End-to-end tests of the emulator binary: generation, sampling, stop rules, fan-out,
//! embeddings and malformed requests.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use orchard_core::wire::{PromptPayload, RequestType};
use serde_json::json;

#[test]
fn generation_honours_max_tokens_exactly() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("Tell me about apple orchards.", 7);
    p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    p.top_logprobs = 3;
    c.send(&request(&c, 11, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(11, 1);
    check_sequences(&ds);
    assert_eq!(tokens_of(&ds).len(), 7, "{ds:?}");
    assert!(ds
        .iter()
        .all(|d| d.num_tokens_in_delta == Some(d.tokens.len() as u32)));
    let last = ds.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("length"));
    assert_eq!(last.generation_len, Some(7));
    assert_eq!(last.reasoning_tokens, Some(0));
    assert_eq!(last.cached_token_count, Some(0));
    assert!(last.prompt_token_count.unwrap() > 0);
    assert!(last.cumulative_logprob.unwrap() < 0.0);
    assert!(!text_of(&ds).is_empty());
    for d in &ds {
        assert_eq!(d.top_logprobs.len(), 3);
        assert!(d
            .top_logprobs
            .windows(2)
            .all(|w| w[0].logprob >= w[1].logprob));
        assert!(d.top_logprobs.iter().all(|t| t.logprob <= 0.0));
        assert!(d
            .top_logprobs
            .iter()
            .all(|t| t.token.parse::<i64>().is_ok()));
    }
    // Every delta of the sequence shares the sequence id and indexes.
    let ids: HashSet<_> = ds.iter().map(|d| d.sequence_id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ds[0].prompt_index, Some(0));
    assert_eq!(ds[0].candidate_index, Some(0));
}

#[test]
fn zero_max_tokens_uses_the_default_cap() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_DEFAULT_MAX_TOKENS", "9")]);
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("hello", 0);
    p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    c.send(&request(&c, 1, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(1, 1);
    assert_eq!(ds.last().unwrap().generation_len, Some(9));
}

fn generate(c: &Client, id: u64, p: PromptPayload) -> (String, Vec<i64>) {
    c.send(&request(c, id, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(id, 1);
    check_sequences(&ds);
    (text_of(&ds), tokens_of(&ds))
}

#[test]
fn same_seed_same_text_different_seed_different_text() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let with_seed = |seed: Option<u64>| {
        let mut p = prompt("Write about the engine and the orchard.", 24);
        p.rng_seed = seed;
        p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
        p
    };
    let a = generate(&c, 1, with_seed(Some(42)));
    let b = generate(&c, 2, with_seed(Some(42)));
    assert_eq!(a, b);
    assert_eq!(a.1.len(), 24);
    // Seeds are u32 on the wire: bits above 32 do not matter.
    let high = generate(&c, 3, with_seed(Some(42 + (1 << 40))));
    assert_eq!(a, high);
    // An absent seed means the protocol default, 11.
    assert_eq!(
        generate(&c, 4, with_seed(None)),
        generate(&c, 5, with_seed(Some(11)))
    );
    let others: Vec<_> = (100..104)
        .map(|s| generate(&c, 10 + s, with_seed(Some(s))).1)
        .collect();
    assert!(
        others.iter().any(|t| *t != a.1),
        "four other seeds all reproduced seed 42"
    );
}

#[test]
fn greedy_decoding_ignores_the_seed() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let greedy = |seed: u64| {
        let mut p = prompt("orchard", 12);
        p.temperature = 0.0;
        p.rng_seed = Some(seed);
        p
    };
    assert_eq!(generate(&c, 1, greedy(1)), generate(&c, 2, greedy(999)));
}

#[test]
fn stop_sequences_truncate_the_text() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let base = || {
        let mut p = prompt("Tell me about apples", 30);
        p.rng_seed = Some(3);
        p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
        p
    };
    let (full, tokens) = generate(&c, 1, base());
    assert_eq!(tokens.len(), 30);
    // Stop at the fourth word of the unconstrained text.
    let words: Vec<&str> = full.split_inclusive(' ').collect();
    assert!(words.len() > 5, "{full:?}");
    let stop = words[3].trim_end();
    let cut = full.find(stop).unwrap();
    let mut p = base();
    p.stop_sequences = vec!["zzz-never".to_string(), stop.to_string()];
    c.send(&request(&c, 2, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(2, 1);
    check_sequences(&ds);
    let text = text_of(&ds);
    assert_eq!(text, full[..cut], "stop {stop:?}");
    assert!(!text.contains(stop));
    let last = ds.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    assert_eq!(last.generation_len, Some(tokens_of(&ds).len() as u64));
}

#[test]
fn end_of_turn_token_stops_generation() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("bye", 50);
    p.logit_bias = vec![(EOT_TOKEN_ID, 100.0)];
    c.send(&request(&c, 1, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(1, 1);
    let last = ds.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    assert_eq!(last.matched_stop_token_id, Some(EOT_TOKEN_ID));
    assert_eq!(last.matched_stop_token.as_deref(), Some("<|eot_id|>"));
    assert!(!text_of(&ds).contains("<|eot_id|>"));
}

#[test]
fn unknown_model_gives_one_error_final_per_sequence() {
    let emu = Emu::start();
    let c = emu.client();
    let mut p0 = prompt("a", 5);
    p0.num_candidates = 2;
    p0.best_of = 2;
    let p1 = prompt("b", 5);
    c.send(&request(
        &c,
        5,
        "ghost",
        RequestType::Generation,
        vec![p0, p1],
    ));
    let ds = c.collect(5, 3);
    let mut seen = HashSet::new();
    for d in &ds {
        assert!(d.is_final_delta);
        assert_eq!(d.finish_reason.as_deref(), Some("error"));
        assert_eq!(
            d.error_message.as_deref(),
            Some("model 'ghost' is not loaded; load it first")
        );
        seen.insert((d.prompt_index.unwrap(), d.candidate_index.unwrap()));
    }
    assert_eq!(seen, HashSet::from([(0, 0), (0, 1), (1, 0)]));
    assert!(c.drain_for(5, Duration::from_millis(200)).is_empty());
}

#[test]
fn best_of_fans_out_into_separate_sequences() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("Tell me a story", 10);
    p.num_candidates = 2;
    p.best_of = 3;
    p.final_candidates = 2;
    p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    let mut q = prompt("Another prompt", 4);
    q.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    c.send(&request(&c, 8, "m", RequestType::Generation, vec![p, q]));
    let ds = c.collect(8, 4);
    let texts = check_sequences(&ds);
    assert_eq!(texts.len(), 4);
    let seqs = by_sequence(&ds);
    let mut indexes = HashSet::new();
    let mut candidate_texts = HashMap::new();
    for ds in seqs.values() {
        let key = (ds[0].prompt_index.unwrap(), ds[0].candidate_index.unwrap());
        indexes.insert(key);
        candidate_texts.insert(key, text_of(ds));
        let want = if key.0 == 0 { 10 } else { 4 };
        assert_eq!(ds.last().unwrap().generation_len, Some(want));
    }
    assert_eq!(indexes, HashSet::from([(0, 0), (0, 1), (0, 2), (1, 0)]));
    let distinct: HashSet<_> = (0..3).map(|i| candidate_texts[&(0, i)].clone()).collect();
    assert!(
        distinct.len() > 1,
        "all candidates identical: {candidate_texts:?}"
    );
}

#[test]
fn embeddings_are_deterministic_float32_vectors() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let prompts = vec![prompt("apples and pears", 0), prompt("engines", 0)];
    c.send(&request(
        &c,
        3,
        "m",
        RequestType::Embedding,
        prompts.clone(),
    ));
    let ds = c.collect(3, 2);
    c.send(&request(&c, 4, "m", RequestType::Embedding, prompts));
    let again = c.collect(4, 2);
    let vec_of = |ds: &[orchard_core::wire::Delta], i: u32| {
        let d = ds.iter().find(|d| d.prompt_index == Some(i)).unwrap();
        assert_eq!(d.finish_reason.as_deref(), Some("stop"));
        assert!(d.prompt_token_count.unwrap() > 0);
        d.embedding().unwrap()
    };
    let a = vec_of(&ds, 0);
    assert_eq!(a.len(), 16);
    let norm: f32 = a.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-3);
    assert_eq!(a, vec_of(&again, 0));
    assert_ne!(a, vec_of(&ds, 1));
}

#[test]
fn unimplemented_request_types_fail_per_sequence() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("speak", 10);
    p.num_candidates = 2;
    c.send(&request(&c, 9, "m", RequestType::Query, vec![p]));
    let ds = c.collect(9, 2);
    for d in &ds {
        assert!(d.is_error());
        let msg = d.error_message.as_deref().unwrap();
        assert!(
            msg.contains("does not implement") && msg.contains("query"),
            "{msg}"
        );
    }
}

#[test]
fn malformed_frames_are_answered_or_dropped_without_harm() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    // Unparsable: dropped.
    c.send_raw(b"");
    c.send_raw(b"\xff\xff\xff\xff garbage");
    c.send_raw(b"\x05\x00\x00\x00{bad}");
    // Parsable header, payload offsets out of range: error deltas per sequence.
    let meta = json!({
        "request_id": 77, "model_id": "m", "model_path": "", "request_type": 0,
        "request_channel_id": 0, "response_channel_id": c.channel,
        "prompts": [{"prompt_index": 0, "num_candidates": 2, "best_of": 2,
                     "text_offset": 1000, "text_size": 50}]
    });
    let meta = serde_json::to_vec(&meta).unwrap();
    let mut frame = (meta.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&meta);
    frame.extend_from_slice(b"short payload");
    c.send_raw(&frame);
    let ds = c.collect(77, 2);
    for d in &ds {
        assert!(d.is_error());
        assert!(d.error_message.as_deref().unwrap().contains("malformed"));
    }
    // Still serving.
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
    c.send(&request(
        &c,
        78,
        "m",
        RequestType::Generation,
        vec![prompt("ok", 2)],
    ));
    assert!(!c.collect(78, 1).last().unwrap().is_error());
}

#[test]
fn a_thousand_concurrent_sequences_share_one_scheduler() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_TOKEN_DELAY_MS", "5")]);
    let c = emu.client();
    c.load(&emu, "m");
    // 10 requests x 10 prompts x 10 candidates = 1000 sequences, all in flight together.
    for r in 0..10u64 {
        let prompts = (0..10)
            .map(|i| {
                let mut p = prompt(&format!("prompt {r} {i} about apples"), 6);
                p.num_candidates = 10;
                p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
                p
            })
            .collect();
        c.send(&request(&c, 100 + r, "m", RequestType::Generation, prompts));
    }
    let mut max_threads = 0;
    for r in 0..10u64 {
        let ds = c.collect(100 + r, 100);
        let texts = check_sequences(&ds);
        assert_eq!(texts.len(), 100);
        for seq in by_sequence(&ds).values() {
            assert_eq!(seq.last().unwrap().generation_len, Some(6));
        }
        if let Some(t) = emu.threads() {
            max_threads = max_threads.max(t);
        }
    }
    assert!(max_threads < 64, "the emulator used {max_threads} threads");
}
