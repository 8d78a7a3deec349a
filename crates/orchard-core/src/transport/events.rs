//! Broadcast engine events (telemetry, model_loaded, ...) and waiting for a matching one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::wire::EngineEvent;

type Predicate = Box<dyn Fn(&EngineEvent) -> bool + Send + Sync>;

struct WaiterState {
    outcome: Option<Result<EngineEvent, Error>>,
    waker: Option<Waker>,
}

pub struct EventWaiter {
    predicate: Predicate,
    state: Mutex<WaiterState>,
}

impl EventWaiter {
    fn settle(&self, outcome: Result<EngineEvent, Error>) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.outcome.is_some() {
            return false;
        }
        s.outcome = Some(outcome);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        true
    }
}

/// A future resolving to the first event that matched, or to the hub's failure.
pub struct EventWait {
    waiter: Arc<EventWaiter>,
}

impl Future for EventWait {
    type Output = Result<EngineEvent, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.waiter.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(outcome) = s.outcome.clone() {
            return Poll::Ready(outcome);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[derive(Default)]
pub struct EventHub {
    waiters: Mutex<Vec<Arc<EventWaiter>>>,
    failure: Mutex<Option<Error>>,
}

impl EventHub {
    /// Register interest *before* triggering the event (e.g. before sending load_model).
    pub fn wait_for(
        &self,
        predicate: impl Fn(&EngineEvent) -> bool + Send + Sync + 'static,
    ) -> EventWait {
        let waiter = Arc::new(EventWaiter {
            predicate: Box::new(predicate),
            state: Mutex::new(WaiterState {
                outcome: None,
                waker: None,
            }),
        });
        if let Some(e) = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            waiter.settle(Err(e));
        } else {
            self.waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(waiter.clone());
        }
        EventWait { waiter }
    }

    pub fn dispatch(&self, event: EngineEvent) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.retain(|w| {
            if Arc::strong_count(w) == 1 {
                return false; // nobody is waiting on it any more
            }
            !((w.predicate)(&event) && w.settle(Ok(event.clone())))
        });
    }

    /// Settle every waiter (now and later) with `error`.
    pub fn fail_all(&self, error: Error) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        for w in self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            w.settle(Err(error.clone()));
        }
    }
}
