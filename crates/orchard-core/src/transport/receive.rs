//! The SUB side: one thread that only receives and enqueues, so NNG's bounded receive queue
//! never overflows while deltas are routed, and one thread that routes them into their
//! requests' slots. PUB/SUB has no flow control: what the SUB socket cannot queue is dropped
//! without a trace, so the receiving thread does nothing else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, ErrorCode};
use crate::nng::{Message, Socket};
use crate::wire::{self, Incoming};

use super::{lock, EventHub, SlotMap};

/// Messages received and not yet routed, and why receiving stopped (once it has).
#[derive(Default)]
struct Queue {
    messages: VecDeque<Message>,
    end: Option<Error>,
}

#[derive(Default)]
pub struct Inbox {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Inbox {
    fn push(&self, msg: Message) {
        let mut q = lock(&self.queue);
        q.messages.push_back(msg);
        // The router takes everything at once, so only the first message of a batch has to
        // wake it (it checks the queue under this lock before it sleeps).
        if q.messages.len() == 1 {
            self.ready.notify_one();
        }
    }

    fn end(&self, reason: Error) {
        lock(&self.queue).end.get_or_insert(reason);
        self.ready.notify_one();
    }

    /// Every queued message, waiting for one; `Err` once receiving has stopped and
    /// everything before that was taken.
    fn take(&self) -> Result<VecDeque<Message>, Error> {
        let mut q = lock(&self.queue);
        loop {
            if !q.messages.is_empty() {
                return Ok(std::mem::take(&mut q.messages));
            }
            if let Some(e) = q.end.clone() {
                return Err(e);
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The receiving thread: enqueue every message until the socket closes.
pub fn receive(sub: Arc<Socket>, inbox: Arc<Inbox>) {
    let reason = loop {
        match sub.recv() {
            Ok(msg) => inbox.push(msg),
            Err(e) if e.is_closed() => {
                break Error::new(
                    ErrorCode::EngineDied,
                    "the engine connection was closed while the request was in flight",
                )
            }
            Err(e) => break Error::new(ErrorCode::Transport, format!("SUB receive: {e}")),
        }
    };
    inbox.end(reason);
}

/// The routing thread: deltas to their slots, events to the hub; when receiving stops,
/// every request still in flight fails.
pub fn route(
    inbox: Arc<Inbox>,
    channel_id: u64,
    slots: SlotMap,
    events: Arc<EventHub>,
    closed: Arc<AtomicBool>,
    end_reason: Arc<Mutex<Option<Error>>>,
) {
    let reason = loop {
        match inbox.take() {
            Ok(batch) => {
                for msg in batch {
                    if msg.starts_with(wire::delta::DELTA_PREFIX) {
                        route_delta(&msg, channel_id, &slots);
                    } else if let Ok(Incoming::Event(event)) = wire::decode_message(&msg) {
                        events.dispatch(event);
                    }
                }
            }
            Err(reason) => break reason,
        }
    };
    closed.store(true, Ordering::SeqCst);
    let reason = lock(&end_reason).clone().unwrap_or(reason);
    for (_, slot) in lock(&slots).drain() {
        slot.fail(reason.clone());
    }
    events.fail_all(reason);
}

/// Queue one delta in its request's slot, reading only its routing fields. A frame on this
/// channel that cannot be routed fails the request it names, or every request in flight
/// when it names none: a delta that vanished would leave its stream short or waiting.
fn route_delta(msg: &[u8], channel_id: u64, slots: &SlotMap) {
    let Ok((channel, body)) = wire::delta::split_delta_topic(msg) else {
        return; // not a channel this client subscribed to
    };
    if channel != channel_id {
        return; // another client's channel that shares our hex prefix
    }
    match wire::DeltaRouting::from_json(body) {
        Ok(routing) => {
            let facts = routing.facts();
            let slot = lock(slots).get(&facts.request_id).cloned();
            if let Some(slot) = slot {
                if slot.push(body, facts) {
                    lock(slots).remove(&facts.request_id);
                }
            }
        }
        Err(e) => {
            let error = |id: &str| {
                Error::new(
                    ErrorCode::Protocol,
                    format!("the engine sent an undecodable delta for {id} ({e}); the request cannot be completed"),
                )
            };
            let mut slots = lock(slots);
            match request_id_of(body) {
                Some(id) => {
                    if let Some(slot) = slots.remove(&id) {
                        slot.fail(error(&format!("request {id}")));
                    }
                }
                None => {
                    for (_, slot) in slots.drain() {
                        slot.fail(error("an unknown request on this channel"));
                    }
                }
            }
        }
    }
}

/// The `"request_id": <digits>` of a body that is not valid JSON, if it names one.
fn request_id_of(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"request_id\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)?;
    let rest = &body[at + KEY.len()..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&rest[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_request_id_of_broken_json() {
        assert_eq!(
            request_id_of(br#"{"request_id":42,"content":"ab"#),
            Some(42)
        );
        assert_eq!(request_id_of(br#"{ "request_id" : 7 , "x": NaN}"#), Some(7));
        assert_eq!(request_id_of(br#"{"content":"x"#), None);
        assert_eq!(request_id_of(br#"{"request_id":"x"}"#), None);
    }
}
