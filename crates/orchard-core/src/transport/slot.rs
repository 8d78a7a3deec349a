//! Per-request delta queues and the futures that drain them.
//!
//! The router reads only what routing needs from each delta
//! ([`crate::wire::DeltaRouting`]) and
//! queues the message as received; the consumer decodes a whole batch when it drains the
//! slot, on its own thread. A queued delta therefore costs one buffer, not a decoded struct,
//! and routing stays fast enough to keep the SUB socket's queue from overflowing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::error::{Error, ErrorCode, Result};
use crate::wire::{Delta, RoutingFacts};

/// What a drained slot reports.
#[derive(Debug)]
pub enum Batch {
    /// Deltas in arrival order; more may follow.
    Deltas(Vec<Delta>),
    /// Every expected final delta has arrived and been handed out.
    Finished,
    /// The request ended with an error (engine death, abort, transport failure).
    Failed(Error),
}

/// Queued bodies are kept in blocks of about this many bytes, and a batch is one block. The
/// bound keeps every allocation on this path below glibc's mmap threshold: one large buffer,
/// freed, raises that threshold and leaves later buffers fragmenting the heap (resident memory
/// that never comes back). It also keeps a batch's decoded form, and the JavaScript objects
/// made from it, small when a consumer that fell behind catches up.
const BLOCK_BYTES: usize = 64 * 1024;

/// Queued deltas: JSON bodies back to back; `ends[i]` is where body `i` ends.
#[derive(Default)]
struct Block {
    bodies: Vec<u8>,
    ends: Vec<usize>,
}

struct State {
    blocks: VecDeque<Block>,
    remaining_finals: u64,
    finished: bool,
    failure: Option<Error>,
    /// Whoever waits for the next change (usually one consumer).
    wakers: Vec<Waker>,
    /// When the request was sent or its last delta arrived.
    last_activity: Instant,
}

pub struct RequestSlot {
    pub request_id: u64,
    state: Mutex<State>,
    /// Tokens received per sequence `(prompt, candidate)`, counted as the consumer decodes
    /// them and checked against each final delta's `generation_len`.
    received: Mutex<HashMap<(u32, u32), u64>>,
}

impl State {
    fn wake_all(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
}

impl RequestSlot {
    pub fn new(request_id: u64, expected_finals: u64) -> Arc<Self> {
        Arc::new(RequestSlot {
            request_id,
            state: Mutex::new(State {
                blocks: VecDeque::new(),
                remaining_finals: expected_finals.max(1),
                finished: false,
                failure: None,
                wakers: Vec::new(),
                last_activity: Instant::now(),
            }),
            received: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-written (every update
        // is a single push or flag store), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a delta. Returns true once the request is complete (every sequence sent its
    /// final delta, or a final error delta without indexes ended it).
    pub fn push(&self, body: &[u8], routing: RoutingFacts) -> bool {
        let mut s = self.lock();
        if s.finished || s.failure.is_some() {
            return true;
        }
        s.last_activity = Instant::now();
        if routing.is_final {
            s.remaining_finals = if routing.ends_request {
                0
            } else {
                s.remaining_finals.saturating_sub(1)
            };
        }
        let fits = s
            .blocks
            .back()
            .is_some_and(|b| b.bodies.is_empty() || b.bodies.len() + body.len() <= BLOCK_BYTES);
        if !fits {
            s.blocks.push_back(Block {
                bodies: Vec::with_capacity(BLOCK_BYTES.max(body.len())),
                ends: Vec::new(),
            });
        }
        let block = s.blocks.back_mut().expect("a block was just ensured");
        block.bodies.extend_from_slice(body);
        block.ends.push(block.bodies.len());
        if s.remaining_finals == 0 {
            s.finished = true;
        }
        let done = s.finished;
        s.wake_all();
        done
    }

    /// End the request with `error` unless it already finished. Queued deltas are still
    /// delivered before the error.
    pub fn fail(&self, error: Error) {
        let mut s = self.lock();
        if s.finished || s.failure.is_some() {
            return;
        }
        s.failure = Some(error);
        s.wake_all();
    }

    /// Abort: drop what is queued and fail with an `Aborted` error.
    pub fn abort(&self, message: &str) {
        let mut s = self.lock();
        if s.failure.is_some() {
            return;
        }
        s.blocks = VecDeque::new();
        s.finished = false;
        s.failure = Some(Error::new(ErrorCode::Aborted, message));
        s.wake_all();
    }

    /// When the request was sent or its last delta arrived.
    pub fn last_activity(&self) -> Instant {
        self.lock().last_activity
    }

    pub fn is_done(&self) -> bool {
        let s = self.lock();
        s.finished || s.failure.is_some()
    }

    /// Every queued delta, decoded, or the end of the request; `Pending` (and `waker` is
    /// woken when that changes) while nothing is queued.
    pub fn poll_batch(&self, waker: &Waker) -> Poll<Batch> {
        self.batch(Some(waker))
    }

    /// What [`Self::poll_batch`] would hand out, without waiting: `Pending` registers nothing.
    pub fn try_batch(&self) -> Poll<Batch> {
        self.batch(None)
    }

    fn batch(&self, waker: Option<&Waker>) -> Poll<Batch> {
        let block = {
            let mut s = self.lock();
            let Some(block) = s.blocks.pop_front() else {
                if let Some(e) = s.failure.clone() {
                    return Poll::Ready(Batch::Failed(e));
                }
                if s.finished {
                    return Poll::Ready(Batch::Finished);
                }
                if let Some(waker) = waker {
                    if !s.wakers.iter().any(|w| w.will_wake(waker)) {
                        s.wakers.push(waker.clone());
                    }
                }
                return Poll::Pending;
            };
            block
        };
        // Decode outside the lock, so the router never waits on it. A delta whose routing
        // fields parsed but whose body does not is a protocol error for this request, and so
        // is a sequence that ends with fewer tokens than the engine says it generated.
        let mut deltas = Vec::with_capacity(block.ends.len());
        let mut start = 0;
        for end in block.ends {
            let decoded = Delta::from_json(&block.bodies[start..end]).and_then(|d| {
                self.account(&d)?;
                Ok(d)
            });
            match decoded {
                Ok(d) => deltas.push(d),
                Err(e) => {
                    let mut s = self.lock();
                    s.blocks.clear();
                    s.failure = Some(e.clone());
                    return Poll::Ready(Batch::Failed(e));
                }
            }
            start = end;
        }
        Poll::Ready(Batch::Deltas(deltas))
    }

    /// Count `d`'s tokens for its sequence; at the sequence's final delta, every token the
    /// engine reports generating (`generation_len`) must have arrived.
    fn account(&self, d: &Delta) -> Result<()> {
        let key = (d.prompt_index.unwrap_or(0), d.candidate_index.unwrap_or(0));
        let tokens = if d.tokens.is_empty() {
            u64::from(d.num_tokens_in_delta.unwrap_or(0))
        } else {
            d.tokens.len() as u64
        };
        let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        let total = received.entry(key).or_default();
        *total += tokens;
        match d.generation_len {
            Some(generated) if d.is_final_delta && !d.is_error() && *total < generated => {
                Err(Error::new(
                    ErrorCode::DeltasLost,
                    format!(
                        "request {}: sequence (prompt {}, candidate {}) generated {generated} tokens but \
                         only {} arrived; deltas were lost between the engine and this process",
                        self.request_id, key.0, key.1, *total
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll(slot: &Arc<RequestSlot>, flag: &Arc<Flag>) -> Poll<Batch> {
        slot.poll_batch(&Waker::from(flag.clone()))
    }

    fn push(slot: &RequestSlot, json: &str) -> bool {
        let routing = crate::wire::DeltaRouting::from_json(json.as_bytes())
            .unwrap()
            .facts();
        slot.push(json.as_bytes(), routing)
    }

    fn delta(final_: bool, p: u32, c: u32) -> String {
        format!(
            r#"{{"request_id":1,"prompt_index":{p},"candidate_index":{c},"is_final_delta":{final_},"content":"x"}}"#
        )
    }

    #[test]
    fn batches_then_finishes_after_every_final() {
        let slot = RequestSlot::new(1, 2);
        let flag = Arc::new(Flag(Default::default()));
        assert!(poll(&slot, &flag).is_pending());
        assert!(!push(&slot, &delta(false, 0, 0)));
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "push wakes the waiter"
        );
        assert!(!push(&slot, &delta(true, 0, 0)));
        match poll(&slot, &flag) {
            Poll::Ready(Batch::Deltas(d)) => {
                assert_eq!(d.len(), 2);
                assert_eq!(d[0].content.as_deref(), Some("x"));
                assert!(d[1].is_final_delta);
            }
            other => panic!("{other:?}"),
        }
        assert!(push(&slot, &delta(true, 0, 1)));
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Deltas(_))));
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Finished)));
    }

    #[test]
    fn a_backlog_is_handed_out_in_bounded_batches_in_order() {
        let slot = RequestSlot::new(1, 1);
        let flag = Arc::new(Flag(Default::default()));
        let total = 3000;
        for i in 0..total {
            let body = format!(
                r#"{{"request_id":1,"prompt_index":0,"candidate_index":0,"is_final_delta":{},"content":"{i}"}}"#,
                i + 1 == total
            );
            push(&slot, &body);
        }
        let mut sizes = Vec::new();
        let mut next = 0;
        loop {
            match poll(&slot, &flag) {
                Poll::Ready(Batch::Deltas(d)) => {
                    sizes.push(d.len());
                    for delta in d {
                        assert_eq!(delta.content.as_deref(), Some(next.to_string().as_str()));
                        next += 1;
                    }
                }
                Poll::Ready(Batch::Finished) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(next, total);
        assert!(sizes.len() > 2, "{sizes:?}");
        // ~100-byte bodies: a 64 KiB block holds several hundred of them.
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|&n| n > 300 && n < 1000), "{sizes:?}");
        assert!(*last > 0 && *last < 1000, "{sizes:?}");
    }

    #[test]
    fn a_batch_is_bounded_in_bytes_too() {
        let slot = RequestSlot::new(1, 1);
        let flag = Arc::new(Flag(Default::default()));
        let text = "y".repeat(BLOCK_BYTES / 5);
        for _ in 0..9 {
            push(&slot, &format!(r#"{{"request_id":1,"content":"{text}"}}"#));
        }
        // A body larger than a block still goes out, alone.
        let big = "z".repeat(BLOCK_BYTES * 2);
        push(&slot, &format!(r#"{{"request_id":1,"content":"{big}"}}"#));
        push(&slot, &format!(r#"{{"request_id":1,"content":"{text}"}}"#));
        let mut sizes = Vec::new();
        while let Poll::Ready(Batch::Deltas(d)) = poll(&slot, &flag) {
            sizes.push(d.len());
        }
        assert_eq!(sizes, vec![4, 4, 1, 1, 1]);
    }

    #[test]
    fn error_final_without_indexes_ends_everything() {
        let slot = RequestSlot::new(1, 5);
        assert!(push(
            &slot,
            r#"{"request_id":1,"is_final_delta":true,"finish_reason":"error","error_message":"boom"}"#
        ));
        let slot = RequestSlot::new(1, 5);
        assert!(push(
            &slot,
            r#"{"request_id":1,"is_final_delta":true,"error":"Engine process disconnected."}"#
        ));
        let slot = RequestSlot::new(1, 2);
        assert!(
            !push(
                &slot,
                r#"{"request_id":1,"prompt_index":0,"candidate_index":0,"is_final_delta":true,"finish_reason":"error","error_message":"one sequence failed"}"#
            ),
            "an error final that names its sequence ends only that sequence"
        );
    }

    #[test]
    fn abort_discards_queue_and_fails() {
        let slot = RequestSlot::new(1, 1);
        let flag = Arc::new(Flag(Default::default()));
        push(&slot, &delta(false, 0, 0));
        slot.abort("cancelled by caller");
        match poll(&slot, &flag) {
            Poll::Ready(Batch::Failed(e)) => assert_eq!(e.code, ErrorCode::Aborted),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_that_routes_but_does_not_decode_fails_the_request() {
        let slot = RequestSlot::new(1, 1);
        let flag = Arc::new(Flag(Default::default()));
        push(&slot, r#"{"request_id":1,"tokens":"not a list"}"#);
        match poll(&slot, &flag) {
            Poll::Ready(Batch::Failed(e)) => assert_eq!(e.code, ErrorCode::Protocol),
            other => panic!("{other:?}"),
        }
    }

    fn token_delta(p: u32, token: i64) -> String {
        format!(
            r#"{{"request_id":1,"prompt_index":{p},"candidate_index":0,"tokens":[{token}],"content":"x"}}"#
        )
    }

    fn final_with(p: u32, token: i64, generation_len: u64) -> String {
        format!(
            r#"{{"request_id":1,"prompt_index":{p},"candidate_index":0,"tokens":[{token}],"is_final_delta":true,"finish_reason":"stop","generation_len":{generation_len}}}"#
        )
    }

    #[test]
    fn a_sequence_with_every_token_passes_the_count() {
        let slot = RequestSlot::new(1, 1);
        let flag = Arc::new(Flag(Default::default()));
        push(&slot, &token_delta(0, 5));
        push(&slot, &token_delta(0, 6));
        assert!(push(&slot, &final_with(0, 7, 3)));
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Deltas(d)) if d.len() == 3));
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Finished)));
    }

    #[test]
    fn a_missing_middle_delta_fails_the_request_at_its_final() {
        let slot = RequestSlot::new(1, 2);
        let flag = Arc::new(Flag(Default::default()));
        push(&slot, &token_delta(0, 5));
        // Prompt 1 is complete; prompt 0 lost one of its three tokens.
        push(&slot, &final_with(1, 9, 1));
        push(&slot, &final_with(0, 7, 3));
        match poll(&slot, &flag) {
            Poll::Ready(Batch::Failed(e)) => {
                assert_eq!(e.code, ErrorCode::DeltasLost);
                assert!(
                    e.message.contains("generated 3 tokens but only 2 arrived"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Failed for good: nothing more is handed out.
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Failed(_))));
    }
}
