//! The SUB side: every message is routed as NNG hands it over, on NNG's receiving thread
//! ([`crate::nng::Receiver`]), with no thread of ours in between: deltas into their requests'
//! slots, events to the hub. PUB/SUB has no flow control — what cannot be queued is dropped
//! without a trace — and SUB reads the pipe again only when routing returns, so routing only
//! reads a delta's routing fields and queues its bytes (decoding waits for the consumer),
//! takes short locks and never blocks. (A receiving thread would let NNG read on meanwhile,
//! but its wake-up per delta costs about as much CPU as NNG's own work, and in a burst the
//! engine's PUB queue overflows first either way: docs/architecture.md.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorCode};
use crate::nng::{Message, NngError};
use crate::wire::{self, Incoming};

use super::{lock, EventHub, SlotMap};

/// Where received messages go.
pub struct Router {
    pub channel_id: u64,
    pub slots: SlotMap,
    pub events: Arc<EventHub>,
}

impl Router {
    pub fn route(&self, msg: Message) {
        if msg.starts_with(wire::delta::DELTA_PREFIX) {
            route_delta(&msg, self.channel_id, &self.slots);
        } else if let Ok(Incoming::Event(event)) = wire::decode_message(&msg) {
            self.events.dispatch(event);
        }
    }

    /// Receiving stopped: every request still in flight fails, with the reason the connection
    /// was ended for when it was ended on purpose.
    pub fn end(&self, error: NngError, closed: &AtomicBool, end_reason: &Mutex<Option<Error>>) {
        // `close()` closes the socket, then stops the receiver: either may reach it first.
        let reason = if error.is_closed() || error.is_canceled() {
            Error::new(
                ErrorCode::EngineDied,
                "the engine connection was closed while the request was in flight",
            )
        } else {
            Error::new(ErrorCode::Transport, format!("SUB receive: {error}"))
        };
        closed.store(true, Ordering::SeqCst);
        let reason = lock(end_reason).clone().unwrap_or(reason);
        for (_, slot) in lock(&self.slots).drain() {
            slot.fail(reason.clone());
        }
        self.events.fail_all(reason);
    }
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
