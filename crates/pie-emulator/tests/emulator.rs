//! End-to-end tests of the `proxy_inference_engine` emulator binary.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use orchard_core::wire::{PromptPayload, RequestType};
use serde_json::{json, Value};

#[test]
fn heartbeat_carries_pid_and_full_schema_and_pid_file_is_written() {
    let emu = Emu::start();
    let c = emu.client();
    let t = &c.first_telemetry;
    assert_eq!(t.telemetry_pid(), Some(emu.pid()));
    let p = &t.payload;
    assert_eq!(p["version"], 1);
    for key in [
        "snapshot_version",
        "uptime_ns",
        "monotonic_timestamp_ns",
        "pid",
        "active_runtimes",
        "active_requests",
        "cpu_usage_percent",
        "system_wattage",
        "system_temperature",
        "shutting_down",
        "health_message",
    ] {
        assert!(p["health"].get(key).is_some(), "health.{key} missing");
    }
    for key in [
        "request_slots_used",
        "request_slots_capacity",
        "response_slots_used",
        "response_slots_capacity",
        "raw_request_queue_depth",
        "processed_sequence_queue_depth",
        "postprocessor_backlog",
        "pending_management_commands",
    ] {
        assert!(p["queues"].get(key).is_some(), "queues.{key} missing");
    }
    for key in [
        "gpu_total_bytes",
        "gpu_reserved_bytes",
        "kv_cache_pages_total",
        "kv_cache_pages_used",
        "prompt_cache_pages",
        "prompt_cache_evictions",
    ] {
        assert!(p["memory"].get(key).is_some(), "memory.{key} missing");
    }
    assert_eq!(p["health"]["shutting_down"], false);
    assert_eq!(p["models"], json!([]));
    let pid_file = std::fs::read_to_string(emu.root.join("engine.pid")).unwrap();
    assert_eq!(pid_file.trim(), emu.pid().to_string());

    // Heartbeats keep coming, and list loaded models with their running sequences.
    c.load(&emu, "org/tiny");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = c.event("telemetry", WAIT);
        let models = e.payload["models"].as_array().unwrap().clone();
        if models.len() == 1 {
            let m = &models[0];
            assert_eq!(m["canonical_id"], "org/tiny");
            assert_eq!(m["requested_id"], "org/tiny");
            assert_eq!(m["load_state"], "ready");
            for key in [
                "runtime_active",
                "waiting_sequences",
                "running_sequences",
                "overflow_buffer",
                "tokens_per_second",
                "avg_step_latency_ms",
            ] {
                assert!(m.get(key).is_some(), "models[0].{key} missing");
            }
            assert!(e.payload["memory"]["gpu_reserved_bytes"].as_u64().unwrap() > 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "model never listed");
    }
}

#[test]
fn management_commands_answer_and_never_crash() {
    let emu = Emu::start();
    let c = emu.client();
    assert_eq!(c.mgmt(json!({"type": "ping"})), json!({"status": "ok"}));
    assert_eq!(
        c.mgmt(json!({"type": "frobnicate"})),
        json!({"status": "error", "message": "unknown command 'frobnicate'"})
    );
    let bad = c.req_raw(b"{not json").unwrap();
    assert_eq!(bad["status"], "error");
    assert!(bad["message"].as_str().unwrap().contains("JSON"), "{bad}");
    assert_eq!(c.mgmt(json!([1, 2]))["status"], "error");
    assert_eq!(c.mgmt(json!({"kind": "ping"}))["status"], "error");
    assert_eq!(c.req_raw(&[0xff, 0xfe, 0x00]).unwrap()["status"], "error");
    assert_eq!(
        c.mgmt(json!({"type": "client_register", "client_pid": "x"}))["status"],
        "error"
    );
    assert_eq!(c.mgmt(json!({"type": "cancel_request"}))["status"], "error");
    assert_eq!(
        c.mgmt(json!({"type": "cancel_request", "request_id": 999}))["status"],
        "ok"
    );
    assert_eq!(
        c.mgmt(json!({"type": "cancel_model_load", "requested_id": "nope"}))["status"],
        "ok"
    );
    assert_eq!(
        c.mgmt(json!({"type": "unload_model", "requested_id": "nope"}))["status"],
        "ok"
    );
    let vocab = c.mgmt(json!({"type": "emulator_vocab"}));
    assert_eq!(
        vocab["data"]["emulator_vocab"]["eot_token_id"],
        EOT_TOKEN_ID
    );
    assert!(
        vocab["data"]["emulator_vocab"]["tokens"]
            .as_array()
            .unwrap()
            .len()
            > 100
    );
    let inspect = c.mgmt(json!({"type": "inspect_model_source", "requested_id": "x",
                                "model_path": emu.model_dir("src")}));
    assert_eq!(
        inspect["data"]["inspect_model_source"]["formatter_config"]["model_type"],
        "llama"
    );
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
}

#[test]
fn load_model_is_accepted_then_announced_and_bad_paths_fail() {
    let emu = Emu::start();
    let c = emu.client();
    let path = emu.model_dir("m1");
    let reply = c.mgmt(json!({"type": "load_model", "requested_id": "m1",
                              "canonical_id": "org/m1", "model_path": path,
                              "wait_for_completion": false}));
    assert_eq!(reply, json!({"status": "accepted"}));
    let e = c.activation_event("org/m1");
    assert_eq!(e.name, "model_loaded");
    assert_eq!(e.payload["event"], "model_loaded");
    assert_eq!(e.payload["capabilities"], json!({}));
    let mem = e.payload["minimum_memory_bytes"].as_u64().unwrap();
    assert!(mem > 0);

    // Loaded already: ok with the load data, for the canonical and the requested id.
    for id in ["org/m1", "m1"] {
        let again = c.mgmt(json!({"type": "load_model", "requested_id": id,
                                  "canonical_id": "org/m1", "model_path": path}));
        assert_eq!(again["status"], "ok", "{again}");
        assert_eq!(
            again["data"]["load_model"],
            json!({"capabilities": {}, "minimum_memory_bytes": mem})
        );
    }
    let list = c.mgmt(json!({"type": "list_models"}));
    let models = list["data"]["list_models"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["canonical_id"], "org/m1");
    assert_eq!(models[0]["requested_id"], "m1");
    assert_eq!(models[0]["load_state"], "ready");

    // Requests may name the model by its requested id too.
    c.send(&request(
        &c,
        1,
        "m1",
        RequestType::Generation,
        vec![prompt("hi", 3)],
    ));
    let ds = c.collect(1, 1);
    assert!(!ds.last().unwrap().is_error(), "{ds:?}");

    // A missing directory and a directory without config.json.
    let missing = emu.root.join("models").join("absent");
    let missing = missing.to_string_lossy().into_owned();
    let reply = c.mgmt(json!({"type": "load_model", "requested_id": "gone",
                              "canonical_id": "org/gone", "model_path": missing}));
    assert_eq!(reply["status"], "accepted");
    let e = c.activation_event("org/gone");
    assert_eq!(e.name, "model_load_failed");
    let err = e.payload["error"].as_str().unwrap();
    assert!(
        err.contains(&missing) && err.contains("does not exist"),
        "{err}"
    );

    let empty = emu.root.join("models").join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_string_lossy().into_owned();
    c.mgmt(
        json!({"type": "load_model", "requested_id": "e", "canonical_id": "org/empty",
                  "model_path": empty}),
    );
    let e = c.activation_event("org/empty");
    assert_eq!(e.name, "model_load_failed");
    let err = e.payload["error"].as_str().unwrap();
    assert!(err.contains(&empty) && err.contains("config.json"), "{err}");

    // Unloading forgets the model.
    assert_eq!(
        c.mgmt(json!({"type": "unload_model", "requested_id": "org/m1"}))["status"],
        "ok"
    );
    c.send(&request(
        &c,
        2,
        "org/m1",
        RequestType::Generation,
        vec![prompt("hi", 3)],
    ));
    assert!(c.collect(2, 1)[0].is_error());
}

#[test]
fn cancel_model_load_reports_cancelled() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_LOAD_DELAY_MS", "3000")]);
    let c = emu.client();
    let path = emu.model_dir("slow");
    let reply = c.mgmt(json!({"type": "load_model", "requested_id": "slow",
                              "canonical_id": "org/slow", "model_path": path}));
    assert_eq!(reply["status"], "accepted");
    let reply = c.mgmt(json!({"type": "cancel_model_load", "requested_id": "slow",
                              "canonical_id": "org/slow"}));
    assert_eq!(reply["status"], "ok");
    let e = c.activation_event("org/slow");
    assert_eq!(e.name, "model_load_failed");
    assert_eq!(e.payload["error"], "Cancelled");
}

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
fn cancel_mid_stream_ends_with_cancelled_and_nothing_after() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_TOKEN_DELAY_MS", "10")]);
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("A long story about engines", 5000);
    p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    p.num_candidates = 2;
    c.send(&request(&c, 21, "m", RequestType::Generation, vec![p]));
    // Another request on the same channel that must not be affected.
    let mut other = prompt("unrelated", 5000);
    other.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    c.send(&request(&c, 22, "m", RequestType::Generation, vec![other]));

    let mut got = 0;
    while got < 6 {
        if let Some(orchard_core::wire::Incoming::Delta { delta, .. }) = c.next(WAIT) {
            if delta.request_id == 21 {
                assert!(!delta.is_final_delta);
                got += 1;
            }
        }
    }
    assert_eq!(
        c.mgmt(json!({"type": "cancel_request", "request_id": 21}))["status"],
        "ok"
    );
    let ds = c.collect(21, 2);
    let finals: Vec<_> = ds.iter().filter(|d| d.is_final_delta).collect();
    assert_eq!(finals.len(), 2);
    for f in &finals {
        assert_eq!(f.finish_reason.as_deref(), Some("cancelled"));
        assert!(f.generation_len.unwrap() >= 1);
        assert!(f.generation_len.unwrap() < 5000);
    }
    check_sequences(&ds);
    // Nothing more for request 21, while request 22 keeps streaming.
    let later = c.drain_for(21, Duration::from_millis(300));
    assert!(later.is_empty(), "deltas after cancel: {later:?}");
    let still = c.drain_for(22, Duration::from_millis(300));
    assert!(!still.is_empty());
    assert!(still.iter().all(|d| !d.is_final_delta));
    assert_eq!(
        c.mgmt(json!({"type": "cancel_request", "request_id": 22}))["status"],
        "ok"
    );
    let end = c.collect(22, 1);
    assert_eq!(
        end.last().unwrap().finish_reason.as_deref(),
        Some("cancelled")
    );
}

fn request_stats(c: &Client, id: u64) -> Value {
    let reply = c.mgmt(json!({"type": "emulator_request_stats", "request_id": id}));
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["data"]["emulator_request_stats"].clone()
}

/// The counters once the request has no active sequence (they trail the published deltas
/// by at most one scheduler step).
fn settled_stats(c: &Client, id: u64) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = request_stats(c, id);
        if s["known"] == true && s["active_sequences"] == 0 {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request {id} still active: {s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_cancel_that_arrives_before_its_request_ends_it_on_arrival() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_TOKEN_DELAY_MS", "10")]);
    let c = emu.client();
    c.load(&emu, "m");
    assert_eq!(request_stats(&c, 31)["known"], false);
    assert_eq!(
        c.mgmt(json!({"type": "cancel_request", "request_id": 31}))["status"],
        "ok"
    );
    // Let the scheduler take the cancel on its own first (it wakes at once), so the request
    // meets a tombstone rather than a cancel in the same batch.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(request_stats(&c, 31)["known"], false);
    let mut p = prompt("A long story about engines", 5000);
    p.num_candidates = 2;
    c.send(&request(&c, 31, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(31, 2);
    assert_eq!(ds.len(), 2, "only the two cancelled finals: {ds:?}");
    for d in &ds {
        assert!(d.is_final_delta);
        assert_eq!(d.finish_reason.as_deref(), Some("cancelled"));
    }
    let stats = settled_stats(&c, 31);
    assert_eq!(stats["published_deltas"], 2);
    assert_eq!(stats["active_sequences"], 0);
    assert_eq!(stats["cancelled"], true);
    // The tombstone is spent: the same id again generates normally.
    c.send(&request(
        &c,
        31,
        "m",
        RequestType::Generation,
        vec![prompt("Hi", 4)],
    ));
    let again = c.collect(31, 1);
    assert_eq!(
        again.last().unwrap().finish_reason.as_deref(),
        Some("length")
    );
}

#[test]
fn request_stats_show_a_cancelled_request_stopped() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_TOKEN_DELAY_MS", "5")]);
    let c = emu.client();
    c.load(&emu, "m");
    let mut p = prompt("A long story about engines", 5000);
    p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
    c.send(&request(&c, 41, "m", RequestType::Generation, vec![p]));
    let mut got = 0;
    while got < 5 {
        match c.next(WAIT) {
            Some(orchard_core::wire::Incoming::Delta { delta, .. }) if delta.request_id == 41 => {
                got += 1;
            }
            Some(_) => {}
            None => panic!("no delta for request 41 within {WAIT:?}"),
        }
    }
    let running = request_stats(&c, 41);
    assert_eq!(running["active_sequences"], 1);
    // Counters are updated right after each step publishes, so they may trail by one step.
    assert!(
        running["published_deltas"].as_u64().unwrap() >= 4,
        "{running}"
    );
    c.mgmt(json!({"type": "cancel_request", "request_id": 41}));
    c.collect(41, 1);
    let after = settled_stats(&c, 41);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(request_stats(&c, 41), after);
    assert_eq!(after["active_sequences"], 0);
    assert_eq!(after["cancelled"], true);
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
    c.send(&request(&c, 9, "m", RequestType::Audio, vec![p]));
    let ds = c.collect(9, 2);
    for d in &ds {
        assert!(d.is_error());
        let msg = d.error_message.as_deref().unwrap();
        assert!(
            msg.contains("does not implement") && msg.contains("audio"),
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
fn last_deregistration_refuses_new_clients_and_exits() {
    let mut emu = Emu::start_with(&[("PIE_EMULATOR_EXIT_GRACE_MS", "4000")]);
    let c = emu.client();
    let me = std::process::id();
    // Our own pid plus pid 1 (always alive): a set, so registering twice counts once.
    for pid in [me, me, 1] {
        assert_eq!(
            c.mgmt(json!({"type": "client_register", "client_pid": pid}))["status"],
            "ok"
        );
    }
    assert_eq!(
        c.mgmt(json!({"type": "client_deregister", "client_pid": me}))["status"],
        "ok"
    );
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
    assert!(emu.is_running());
    assert_eq!(
        c.mgmt(json!({"type": "client_deregister", "client_pid": 1}))["status"],
        "ok"
    );
    let refused = c.mgmt(json!({"type": "client_register", "client_pid": me}));
    assert_eq!(
        refused,
        json!({"status": "error", "message": "engine shutting down"})
    );
    let status = emu
        .wait_exit(WAIT)
        .expect("emulator did not exit after its last client left");
    assert!(status.success(), "{status:?}");
    assert!(!emu.root.join("engine.pid").exists());
    assert!(!emu.root.join("ipc").join("pie_requests.ipc").exists());
}

#[test]
fn shutting_down_is_announced_in_telemetry() {
    let mut emu = Emu::start_with(&[
        ("PIE_EMULATOR_EXIT_GRACE_MS", "1500"),
        ("PIE_EMULATOR_TELEMETRY_MS", "100"),
    ]);
    let c = emu.client();
    let me = std::process::id();
    c.mgmt(json!({"type": "client_register", "client_pid": me}));
    c.mgmt(json!({"type": "client_deregister", "client_pid": me}));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = c.event("telemetry", WAIT);
        if e.payload["health"]["shutting_down"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
    }
    assert!(emu.wait_exit(WAIT).is_some_and(|s| s.success()));
}

#[test]
fn linger_keeps_the_engine_after_the_last_client() {
    let mut emu = Emu::start_with(&[
        ("PIE_EMULATOR_LINGER", "1"),
        ("PIE_EMULATOR_EXIT_GRACE_MS", "0"),
    ]);
    let c = emu.client();
    let me = std::process::id();
    c.mgmt(json!({"type": "client_register", "client_pid": me}));
    c.mgmt(json!({"type": "client_deregister", "client_pid": me}));
    // A later command still gets answered, and registration is still open.
    assert_eq!(
        c.mgmt(json!({"type": "client_register", "client_pid": me}))["status"],
        "ok"
    );
    assert!(emu.is_running());
}

#[test]
fn clients_that_die_without_deregistering_are_reaped() {
    let mut emu = Emu::start_with(&[("PIE_EMULATOR_REAP_MS", "100")]);
    let c = emu.client();
    let mut short = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = short.id();
    short.wait().unwrap();
    assert_eq!(
        c.mgmt(json!({"type": "client_register", "client_pid": dead_pid}))["status"],
        "ok"
    );
    let status = emu
        .wait_exit(WAIT)
        .expect("the dead client was never reaped");
    assert!(status.success());
}

#[test]
fn sigterm_and_sigint_exit_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut emu = Emu::start_with(&[("PIE_EMULATOR_TOKEN_DELAY_MS", "5")]);
        let c = emu.client();
        c.load(&emu, "m");
        // Mid-generation, so the scheduler is busy when the signal arrives.
        let mut p = prompt("keep going", 100_000);
        p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
        c.send(&request(&c, 1, "m", RequestType::Generation, vec![p]));
        let deadline = std::time::Instant::now() + WAIT;
        while !matches!(
            c.next(WAIT),
            Some(orchard_core::wire::Incoming::Delta { .. })
        ) {
            assert!(std::time::Instant::now() < deadline, "no deltas");
        }
        emu.signal(sig);
        let status = emu.wait_exit(WAIT).expect("no exit after the signal");
        assert_eq!(status.code(), Some(0), "signal {sig}: {status:?}");
        assert!(!emu.root.join("engine.pid").exists());
        assert!(emu.log().contains("shutting down"));
    }
}

#[test]
fn pid_file_of_another_process_is_left_alone() {
    let mut emu = Emu::start();
    let c = emu.client();
    drop(c);
    std::fs::write(emu.root.join("engine.pid"), "1\n").unwrap();
    emu.signal(libc::SIGTERM);
    assert!(emu.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert_eq!(
        std::fs::read_to_string(emu.root.join("engine.pid")).unwrap(),
        "1\n"
    );
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

#[test]
fn ipc_root_override_is_honoured() {
    let ipc = format!("/tmp/pe-ipc-{}", std::process::id());
    let _ = std::fs::create_dir_all(&ipc);
    let mut emu = Emu::start_with(&[("ORCHARD_IPC_ROOT", ipc.as_str())]);
    emu.endpoints = orchard_core::paths::Endpoints::under(std::path::Path::new(&ipc)).unwrap();
    let c = emu.client();
    assert_eq!(c.first_telemetry.telemetry_pid(), Some(emu.pid()));
    assert!(std::path::Path::new(&ipc)
        .join("pie_management.ipc")
        .exists());
    drop(c);
    emu.signal(libc::SIGTERM);
    assert!(emu.wait_exit(WAIT).is_some());
    let _ = std::fs::remove_dir_all(&ipc);
}

#[test]
fn an_engine_whose_launcher_dies_before_any_registration_exits() {
    let root = format!("/tmp/pe-orphan-{}", std::process::id());
    std::fs::create_dir_all(&root).unwrap();
    // The shell starts the emulator in the background and exits once it is up (it has
    // written engine.pid), like a client that crashes between launching the engine and
    // registering with it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "\"$0\" >\"$1/engine.log\" 2>&1 & echo $!; \
             while [ ! -f \"$1/engine.pid\" ]; do sleep 0.02; done",
        )
        .arg(env!("CARGO_BIN_EXE_proxy_inference_engine"))
        .arg(&root)
        .env("ORCHARD_CACHE_ROOT", &root)
        .env_remove("ORCHARD_IPC_ROOT")
        .env_remove("PIE_EMULATOR_LINGER")
        .env("PIE_EMULATOR_REAP_MS", "100")
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while orchard_core::engine::process::pid_alive(pid) {
        if std::time::Instant::now() > deadline {
            // SAFETY: killing the emulator this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("orphaned emulator {pid} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(format!("{root}/engine.log")).unwrap_or_default();
    assert!(log.contains("before any client registered"), "{log}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_second_engine_on_the_same_root_refuses_and_leaves_the_first_alone() {
    let first = Emu::start();
    let c = first.client();
    let mut second = Emu::start_in(first.root.clone(), "second.log", &[]);
    second.owns_root = false;
    let status = second
        .wait_exit(WAIT)
        .expect("the second engine kept running");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(first.root.join("second.log")).unwrap();
    assert!(log.contains("cannot listen"), "{log}");
    // The first one still serves, on its own socket files, and still owns the pid file.
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
    assert!(first.root.join("ipc").join("pie_requests.ipc").exists());
    let pid_file = std::fs::read_to_string(first.root.join("engine.pid")).unwrap();
    assert_eq!(pid_file.trim(), first.pid().to_string());
    let fresh = first.client();
    assert_eq!(fresh.first_telemetry.telemetry_pid(), Some(first.pid()));
}

fn spans(ds: &[orchard_core::wire::Delta], item_type: &str, identifier: &str) -> String {
    ds.iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.item_type == item_type && e.event_type == "content_delta")
        .filter(|e| e.identifier == identifier)
        .map(|e| e.delta.clone())
        .collect()
}

fn completed(
    ds: &[orchard_core::wire::Delta],
    item_type: &str,
    identifier: &str,
) -> Vec<(u32, serde_json::Value)> {
    ds.iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.item_type == item_type && e.event_type == "item_completed")
        .filter(|e| e.identifier == identifier)
        .map(|e| (e.output_index, e.value.clone().unwrap()))
        .collect()
}

fn with_thinking(mut p: PromptPayload, effort: &str) -> PromptPayload {
    p.thinking_tokens.start = "<think>\n".into();
    p.thinking_tokens.end = "\n</think>".into();
    p.reasoning_effort = Some(effort.into());
    p
}

fn with_tools(mut p: PromptPayload, choice: &str) -> PromptPayload {
    p.tool_schemas_json = json!([
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
            "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}},
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"location": {"type": "string"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location", "unit"], "additionalProperties": false}}}
    ])
    .to_string();
    p.tool_choice = choice.into();
    p.tool_calling_tokens = orchard_core::wire::request::ToolCallingTokens {
        formats: vec![orchard_core::wire::request::ToolCallFormat {
            name: "json".into(),
            call_start: "<|python_tag|>".into(),
            call_end: "<|eom_id|>".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    p
}

const LLAMA_USER: &str = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n";
const LLAMA_ASSISTANT: &str = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

#[test]
fn plain_generation_streams_a_message_item_that_mirrors_content() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    c.send(&request(
        &c,
        1,
        "m",
        RequestType::Generation,
        vec![prompt("apples", 20)],
    ));
    let ds = c.collect(1, 1);
    let text = text_of(&ds);
    assert_eq!(spans(&ds, "message", ""), text);
    assert_eq!(ds[0].state_events[0].event_type, "item_started");
    assert_eq!(completed(&ds, "message", ""), vec![(0, json!(text))]);
    assert_eq!(ds.last().unwrap().reasoning_tokens, Some(0));
}

#[test]
fn reasoning_precedes_the_message_and_scales_with_effort() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let mut lens = Vec::new();
    for (i, effort) in ["minimal", "low", "medium", "high"].iter().enumerate() {
        let p = with_thinking(prompt("Tell me about apples", 300), effort);
        let id = 10 + i as u64;
        c.send(&request(&c, id, "m", RequestType::Generation, vec![p]));
        let ds = c.collect(id, 1);
        check_sequences(&ds);
        assert_eq!(ds[0].content.as_deref(), Some("<think>\n"));
        assert!(ds[0].state_events.is_empty());
        let reasoning = spans(&ds, "reasoning", "reasoning");
        assert_eq!(
            completed(&ds, "reasoning", "reasoning"),
            vec![(0, json!(reasoning))]
        );
        let message = spans(&ds, "message", "");
        assert_eq!(completed(&ds, "message", ""), vec![(1, json!(message))]);
        assert_eq!(
            text_of(&ds),
            format!("<think>\n{reasoning}\n</think>{message}")
        );
        let last = ds.last().unwrap();
        let rt = last.reasoning_tokens.unwrap();
        assert!(rt > 0);
        assert_eq!(last.generation_len, Some(tokens_of(&ds).len() as u64));
        lens.push(rt);
    }
    assert!(lens.windows(2).all(|w| w[0] < w[1]), "{lens:?}");

    // No markers, no reasoning; `required` forces it without an effort.
    let mut p = prompt("apples", 40);
    p.reasoning_effort = Some("high".into());
    c.send(&request(&c, 20, "m", RequestType::Generation, vec![p]));
    assert_eq!(c.collect(20, 1).last().unwrap().reasoning_tokens, Some(0));
    let mut p = with_thinking(prompt("apples", 100), "");
    p.reasoning_effort = None;
    p.thinking_tokens.required = true;
    c.send(&request(&c, 21, "m", RequestType::Generation, vec![p]));
    assert!(c.collect(21, 1).last().unwrap().reasoning_tokens.unwrap() > 0);
}

#[test]
fn tool_calls_follow_tool_choice_and_stream_their_arguments() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let text = format!("{LLAMA_USER}Check get_weather and get_time for Paris{LLAMA_ASSISTANT}");
    let p = with_tools(prompt(&text, 400), "auto");
    c.send(&request(
        &c,
        1,
        "m",
        RequestType::Generation,
        vec![p.clone()],
    ));
    let ds = c.collect(1, 1);
    check_sequences(&ds);
    let calls: Vec<(u32, serde_json::Value)> = ds
        .iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.event_type == "item_completed" && e.identifier.starts_with("tool_call:"))
        .map(|e| (e.output_index, e.value.clone().unwrap()))
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, 0);
    assert_eq!(calls[0].1["name"], "get_weather");
    assert_eq!(calls[1].0, 1);
    assert_eq!(calls[1].1["name"], "get_time");
    let unit = calls[0].1["arguments"]["unit"].as_str().unwrap();
    assert!(["celsius", "fahrenheit"].contains(&unit));
    assert_eq!(
        calls[0].1["arguments"].as_object().unwrap().len(),
        2,
        "{calls:?}"
    );
    // The raw text: framed calls, mirrored by the `arguments` spans.
    let raw = text_of(&ds);
    assert!(
        raw.starts_with("<|python_tag|>{\"name\": \"get_weather\""),
        "{raw}"
    );
    assert!(raw.ends_with("<|eom_id|>"), "{raw}");
    let args_spans: String = ds
        .iter()
        .flat_map(|d| d.state_events.iter())
        .filter(|e| e.identifier == "arguments" && e.event_type == "content_delta")
        .map(|e| e.delta.clone())
        .collect();
    assert_eq!(args_spans, raw);
    let location = spans(&ds, "tool_call", "location");
    assert_eq!(json!(location), calls[0].1["arguments"]["location"]);
    let last = ds.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    assert!(last.matched_stop_token_id.is_none());
    // Same seed, same request: the same deltas.
    c.send(&request(&c, 2, "m", RequestType::Generation, vec![p]));
    let again = c.collect(2, 1);
    assert_eq!(text_of(&again), raw);
    assert_eq!(tokens_of(&again), tokens_of(&ds));

    // max_tool_calls, "none", "required", a named choice, and auto without a mention.
    let count_calls = |id: u64, p: PromptPayload| -> Vec<String> {
        c.send(&request(&c, id, "m", RequestType::Generation, vec![p]));
        c.collect(id, 1)
            .iter()
            .flat_map(|d| d.state_events.clone())
            .filter(|e| e.event_type == "item_started")
            .map(|e| e.identifier)
            .collect()
    };
    let mut p = with_tools(prompt(&text, 400), "auto");
    p.max_tool_calls = 1;
    assert_eq!(count_calls(3, p), ["tool_call:get_weather"]);
    assert_eq!(count_calls(4, with_tools(prompt(&text, 60), "none")), [""]);
    let hello = format!("{LLAMA_USER}Hello!{LLAMA_ASSISTANT}");
    assert_eq!(count_calls(5, with_tools(prompt(&hello, 60), "auto")), [""]);
    assert_eq!(
        count_calls(6, with_tools(prompt(&hello, 400), "required")),
        ["tool_call:get_time"]
    );
    let named = r#"{"type": "function", "name": "get_weather"}"#;
    assert_eq!(
        count_calls(7, with_tools(prompt(&hello, 400), named)),
        ["tool_call:get_weather"]
    );
    // A tool result after the user's turn: auto answers with text.
    let after = format!(
        "{LLAMA_USER}Use get_weather{}<|python_tag|>{{}}<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\nsunny{LLAMA_ASSISTANT}",
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(count_calls(8, with_tools(prompt(&after, 60), "auto")), [""]);
}

#[test]
fn structured_output_matches_the_schema_in_both_shapes() {
    let emu = Emu::start();
    let c = emu.client();
    c.load(&emu, "m");
    let schema = json!({"type": "object", "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
        "coastal": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "mayor": {"type": "object", "properties": {"name": {"type": "string"}},
                  "required": ["name"], "additionalProperties": false}},
        "required": ["city", "population", "coastal", "mayor"],
        "additionalProperties": false});
    let flat = json!({"type": "json_schema", "name": "c", "json_schema": schema, "strict": true});
    let nested = json!({"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": true}});
    for (id, fmt) in [(1u64, flat), (2, nested)] {
        let mut p = with_thinking(prompt("A city please", 400), "minimal");
        p.response_format_json = fmt.to_string();
        c.send(&request(&c, id, "m", RequestType::Generation, vec![p]));
        let ds = c.collect(id, 1);
        let msg = spans(&ds, "message", "");
        let v: serde_json::Value =
            serde_json::from_str(&msg).unwrap_or_else(|e| panic!("{msg}: {e}"));
        let o = v.as_object().unwrap();
        for k in ["city", "population", "coastal", "mayor"] {
            assert!(o.contains_key(k), "{msg}");
        }
        assert!(o.keys().all(|k| schema["properties"].get(k).is_some()));
        assert!(v["population"].as_i64().unwrap() >= 0);
        assert!(v["coastal"].is_boolean());
        assert!(v["mayor"]["name"].is_string());
        assert_eq!(completed(&ds, "message", ""), vec![(1, json!(msg))]);
        assert!(ds.last().unwrap().reasoning_tokens.unwrap() > 0);
        assert_eq!(ds.last().unwrap().finish_reason.as_deref(), Some("stop"));
    }
    // json_object, and a cut at max_generated_tokens.
    let mut p = prompt("x", 400);
    p.response_format_json = r#"{"type":"json_object"}"#.into();
    c.send(&request(
        &c,
        3,
        "m",
        RequestType::Generation,
        vec![p.clone()],
    ));
    let msg = spans(&c.collect(3, 1), "message", "");
    assert!(serde_json::from_str::<serde_json::Value>(&msg)
        .unwrap()
        .is_object());
    p.max_generated_tokens = 3;
    c.send(&request(&c, 4, "m", RequestType::Generation, vec![p]));
    let ds = c.collect(4, 1);
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.last().unwrap().finish_reason.as_deref(), Some("length"));
}
