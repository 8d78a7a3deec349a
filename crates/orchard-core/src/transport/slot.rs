//! Per-request delta queues and the futures that drain them.
//!
//! The listener thread pushes deltas into a [`RequestSlot`]; a consumer awaits
//! [`RequestSlot::next_batch`], which yields every delta already queued at once (one
//! crossing into JavaScript per batch, not per delta).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, ErrorCode};
use crate::wire::Delta;

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

struct State {
    queue: VecDeque<Delta>,
    remaining_finals: u64,
    finished: bool,
    failure: Option<Error>,
    waker: Option<Waker>,
}

pub struct RequestSlot {
    pub request_id: u64,
    state: Mutex<State>,
}

impl RequestSlot {
    pub fn new(request_id: u64, expected_finals: u64) -> Arc<Self> {
        Arc::new(RequestSlot {
            request_id,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                remaining_finals: expected_finals.max(1),
                finished: false,
                failure: None,
                waker: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-written (every update
        // is a single push or flag store), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a delta. Returns true once the request is complete (every sequence sent its
    /// final delta, or a final error delta without indexes ended it).
    pub fn push(&self, delta: Delta) -> bool {
        let mut s = self.lock();
        if s.finished || s.failure.is_some() {
            return true;
        }
        if delta.is_final_delta {
            let ends_request = delta.is_error()
                && (delta.prompt_index.is_none() || delta.candidate_index.is_none());
            s.remaining_finals = if ends_request {
                0
            } else {
                s.remaining_finals.saturating_sub(1)
            };
        }
        s.queue.push_back(delta);
        if s.remaining_finals == 0 {
            s.finished = true;
        }
        let done = s.finished;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
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
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Abort: drop what is queued and fail with an `Aborted` error.
    pub fn abort(&self, message: &str) {
        let mut s = self.lock();
        if s.failure.is_some() {
            return;
        }
        s.queue.clear();
        s.finished = false;
        s.failure = Some(Error::new(ErrorCode::Aborted, message));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    pub fn is_done(&self) -> bool {
        let s = self.lock();
        s.finished || s.failure.is_some()
    }

    fn poll_batch(&self, cx: &mut Context<'_>) -> Poll<Batch> {
        let mut s = self.lock();
        if !s.queue.is_empty() {
            return Poll::Ready(Batch::Deltas(s.queue.drain(..).collect()));
        }
        if let Some(e) = s.failure.clone() {
            return Poll::Ready(Batch::Failed(e));
        }
        if s.finished {
            return Poll::Ready(Batch::Finished);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Wait for the next batch.
    pub fn next_batch(self: &Arc<Self>) -> NextBatch {
        NextBatch { slot: self.clone() }
    }
}

pub struct NextBatch {
    slot: Arc<RequestSlot>,
}

impl Future for NextBatch {
    type Output = Batch;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Batch> {
        self.slot.poll_batch(cx)
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
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = slot.next_batch();
        Pin::new(&mut fut).poll(&mut cx)
    }

    fn delta(final_: bool, p: u32, c: u32) -> Delta {
        Delta {
            request_id: 1,
            prompt_index: Some(p),
            candidate_index: Some(c),
            is_final_delta: final_,
            ..Delta::default()
        }
    }

    #[test]
    fn batches_then_finishes_after_every_final() {
        let slot = RequestSlot::new(1, 2);
        let flag = Arc::new(Flag(Default::default()));
        assert!(poll(&slot, &flag).is_pending());
        assert!(!slot.push(delta(false, 0, 0)));
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "push wakes the waiter"
        );
        assert!(!slot.push(delta(true, 0, 0)));
        match poll(&slot, &flag) {
            Poll::Ready(Batch::Deltas(d)) => assert_eq!(d.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(slot.push(delta(true, 0, 1)));
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Deltas(_))));
        assert!(matches!(poll(&slot, &flag), Poll::Ready(Batch::Finished)));
    }

    #[test]
    fn error_final_without_indexes_ends_everything() {
        let slot = RequestSlot::new(1, 5);
        let d = Delta {
            request_id: 1,
            is_final_delta: true,
            finish_reason: Some("error".into()),
            error_message: Some("boom".into()),
            ..Delta::default()
        };
        assert!(slot.push(d));
    }

    #[test]
    fn abort_discards_queue_and_fails() {
        let slot = RequestSlot::new(1, 1);
        let flag = Arc::new(Flag(Default::default()));
        slot.push(delta(false, 0, 0));
        slot.abort("cancelled by caller");
        match poll(&slot, &flag) {
            Poll::Ready(Batch::Failed(e)) => assert_eq!(e.code, ErrorCode::Aborted),
            other => panic!("{other:?}"),
        }
    }
}
