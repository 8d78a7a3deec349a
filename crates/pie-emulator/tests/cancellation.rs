//! End-to-end tests of the emulator binary: cancelling requests and the request counters.

mod common;

use std::time::Duration;

use common::*;
use orchard_core::wire::RequestType;
use serde_json::{json, Value};

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
