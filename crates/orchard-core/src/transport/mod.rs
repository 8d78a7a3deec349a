//! The process-wide connection to the engine: one PUSH (requests), one SUB (deltas and
//! events, read by one listener thread with blocking receives), one REQ (management).

mod block_on;
mod events;
mod slot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

pub use block_on::block_on_timeout;
pub use events::{EventHub, EventWait};
pub use slot::{Batch, RequestSlot};

use crate::error::{Error, ErrorCode, Result};
use crate::nng::{Protocol, Socket};
use crate::paths::Endpoints;
use crate::wire::{self, delta::channel_topic, Incoming, Request};

/// NNG's largest receive queue; a burst of deltas larger than this would be dropped.
const SUB_RECV_BUFFER: i32 = 8192;
const PUSH_SEND_TIMEOUT: Duration = Duration::from_secs(30);
pub const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
const TELEMETRY_TOPIC: &[u8] = b"__PIE_EVENT__:telemetry";
/// The engine events a client acts on (model activation).
const ACTIVATION_TOPICS: [&[u8]; 2] = [
    b"__PIE_EVENT__:model_loaded\0",
    b"__PIE_EVENT__:model_load_failed\0",
];

/// `(pid << 32) | random u32`, never 0 (protocol.md §8.1).
pub fn new_channel_id() -> u64 {
    let pid = u64::from(std::process::id());
    let id = (pid << 32) | u64::from(rand::random::<u32>());
    if id == 0 {
        1
    } else {
        id
    }
}

type SlotMap = Arc<Mutex<HashMap<u64, Arc<RequestSlot>>>>;

pub struct Transport {
    endpoints: Endpoints,
    channel_id: u64,
    push: Socket,
    sub: Arc<Socket>,
    management: Mutex<Socket>,
    slots: SlotMap,
    events: Arc<EventHub>,
    listener: Mutex<Option<JoinHandle<()>>>,
    next_request_id: AtomicU64,
    closed: Arc<AtomicBool>,
    /// Why the connection ended, when it was ended on purpose (e.g. the engine died).
    end_reason: Arc<Mutex<Option<Error>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Transport {
    /// Dial the engine at `endpoints` and wait until the SUB socket is receiving (the first
    /// event arrives: the engine publishes telemetry about twice a second).
    pub fn connect(endpoints: Endpoints, ready_timeout: Duration) -> Result<Arc<Transport>> {
        let no_engine = |e: crate::nng::NngError, url: &str| -> Error {
            if e.is_refused() {
                Error::new(
                    ErrorCode::EngineDied,
                    format!("no engine is listening at {url}; start one with Engine.start()"),
                )
            } else {
                e.into()
            }
        };
        let channel_id = new_channel_id();
        let sub = Socket::open(Protocol::Sub)?;
        sub.set_recv_max_size(0)?;
        sub.set_recv_buffer(SUB_RECV_BUFFER)?;
        sub.subscribe(channel_topic(channel_id).as_bytes())?;
        // Telemetry only until the connection is proven; then only the events we act on,
        // so an idle client is not woken twice a second by heartbeats.
        sub.subscribe(TELEMETRY_TOPIC)?;
        for topic in ACTIVATION_TOPICS {
            sub.subscribe(topic)?;
        }
        sub.dial(&endpoints.responses, true)
            .map_err(|e| no_engine(e, &endpoints.responses))?;
        let push = Socket::open(Protocol::Push)?;
        push.set_send_timeout(Some(PUSH_SEND_TIMEOUT))?;
        push.dial(&endpoints.requests, true)
            .map_err(|e| no_engine(e, &endpoints.requests))?;
        let management = Socket::open(Protocol::Req)?;
        management.set_recv_max_size(0)?;
        // Never re-send a management command: a slow reply must not become a duplicate
        // load or cancel, and an idle REQ socket then keeps no retry timer ticking.
        management.set_req_resend_time(None)?;
        management
            .dial(&endpoints.management, true)
            .map_err(|e| no_engine(e, &endpoints.management))?;

        let transport = Arc::new(Transport {
            endpoints,
            channel_id,
            push,
            sub: Arc::new(sub),
            management: Mutex::new(management),
            slots: Arc::new(Mutex::new(HashMap::new())),
            events: Arc::new(EventHub::default()),
            listener: Mutex::new(None),
            next_request_id: AtomicU64::new(1),
            closed: Arc::new(AtomicBool::new(false)),
            end_reason: Arc::new(Mutex::new(None)),
        });
        let first_event = transport.events.wait_for(|_| true);
        let handle = {
            let sub = transport.sub.clone();
            let slots = transport.slots.clone();
            let events = transport.events.clone();
            let closed = transport.closed.clone();
            let end_reason = transport.end_reason.clone();
            std::thread::Builder::new()
                .name("orchard-sub-listener".into())
                .spawn(move || listen(sub, channel_id, slots, events, closed, end_reason))
                .map_err(|e| Error::io("cannot start the SUB listener thread", e))?
        };
        *lock(&transport.listener) = Some(handle);
        match block_on_timeout(first_event, ready_timeout) {
            Some(Ok(_)) => {
                transport.sub.unsubscribe(TELEMETRY_TOPIC)?;
                Ok(transport)
            }
            Some(Err(e)) => {
                transport.close();
                Err(e)
            }
            None => {
                transport.close();
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "connected to {} but no engine event arrived within {:?}; is the engine healthy? (see engine.log)",
                        transport.endpoints.responses, ready_timeout
                    ),
                ))
            }
        }
    }

    pub fn channel_id(&self) -> u64 {
        self.channel_id
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn events(&self) -> &EventHub {
        &self.events
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn next_request_id(&self) -> u64 {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        if id >= 1 << 62 {
            self.next_request_id.store(2, Ordering::Relaxed);
            return 1;
        }
        id
    }

    fn ensure_open(&self) -> Result<()> {
        if self.is_closed() {
            if let Some(reason) = lock(&self.end_reason).clone() {
                return Err(reason);
            }
            return Err(Error::new(
                ErrorCode::EngineDied,
                "the engine connection is closed; call Engine.start() again",
            ));
        }
        Ok(())
    }

    /// Register a slot for `req` and send its frame. The request's `response_channel_id` is
    /// set to this connection's channel.
    pub fn submit(&self, mut req: Request) -> Result<Arc<RequestSlot>> {
        self.ensure_open()?;
        req.response_channel_id = self.channel_id;
        let frame = wire::encode_request(&req)?;
        let slot = RequestSlot::new(req.request_id, req.expected_finals());
        lock(&self.slots).insert(req.request_id, slot.clone());
        if let Err(e) = self.push.send(&frame) {
            lock(&self.slots).remove(&req.request_id);
            return Err(Error::new(
                if e.is_closed() {
                    ErrorCode::EngineDied
                } else {
                    ErrorCode::Transport
                },
                format!("could not send request {}: {e}", req.request_id),
            ));
        }
        Ok(slot)
    }

    /// Stop routing deltas of `request_id` and ask the engine to stop its work.
    pub fn cancel(&self, request_id: u64) -> Result<()> {
        let slot = lock(&self.slots).remove(&request_id);
        let Some(slot) = slot else {
            return Ok(()); // already finished
        };
        slot.abort("the request was cancelled");
        if self.is_closed() {
            return Ok(());
        }
        let reply = self.management(
            &json!({"type": "cancel_request", "request_id": request_id}),
            CANCEL_TIMEOUT,
        )?;
        match reply.get("status").and_then(Value::as_str) {
            Some("ok") | Some("accepted") => Ok(()),
            _ => Err(Error::new(
                ErrorCode::Engine,
                format!(
                    "engine rejected cancel_request for {request_id}: {}",
                    reply
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                ),
            )),
        }
    }

    /// Send one management command and return the engine's JSON reply.
    pub fn management(&self, command: &Value, timeout: Duration) -> Result<Value> {
        self.ensure_open()?;
        let kind = command
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("command")
            .to_string();
        let body = serde_json::to_vec(command)
            .map_err(|e| Error::invalid(format!("management command: {e}")))?;
        let sock = lock(&self.management);
        sock.set_send_timeout(Some(timeout))?;
        sock.set_recv_timeout(Some(timeout))?;
        let timed_out = |e: crate::nng::NngError| -> Error {
            if e.is_timeout() {
                Error::new(
                    ErrorCode::Timeout,
                    format!("engine did not answer '{kind}' within {timeout:?}"),
                )
            } else {
                e.into()
            }
        };
        sock.send(&body).map_err(timed_out)?;
        let reply = sock.recv().map_err(timed_out)?;
        let value: Value = serde_json::from_slice(&reply)
            .map_err(|e| Error::protocol(format!("engine reply to '{kind}' is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(Error::protocol(format!(
                "engine reply to '{kind}' is not a JSON object"
            )));
        }
        Ok(value)
    }

    /// End the connection because of `reason`: every request in flight fails with it, and
    /// so does every later call.
    pub fn fail(&self, reason: Error) {
        lock(&self.end_reason).get_or_insert(reason);
        self.close();
    }

    /// Close the sockets, stop the listener and fail whatever is still in flight.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.sub.close();
        self.push.close();
        lock(&self.management).close();
        if let Some(h) = lock(&self.listener).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.close();
    }
}

/// Queue one delta message in its request's slot, reading only its routing fields.
fn route_delta(msg: crate::nng::Message, channel_id: u64, slots: &SlotMap) -> Result<()> {
    let (channel, body) = wire::delta::split_delta_topic(&msg)?;
    if channel != channel_id {
        return Ok(()); // another client's channel that shares our hex prefix
    }
    let routing = wire::DeltaRouting::from_json(body)?.facts();
    let id = routing.request_id;
    let slot = lock(slots).get(&id).cloned();
    if let Some(slot) = slot {
        let done = slot.push(body, routing);
        if done {
            lock(slots).remove(&id);
        }
    }
    Ok(())
}

fn listen(
    sub: Arc<Socket>,
    channel_id: u64,
    slots: SlotMap,
    events: Arc<EventHub>,
    closed: Arc<AtomicBool>,
    end_reason: Arc<Mutex<Option<Error>>>,
) {
    let reason = loop {
        let msg = match sub.recv() {
            Ok(m) => m,
            Err(e) if e.is_closed() => {
                break Error::new(
                    ErrorCode::EngineDied,
                    "the engine connection was closed while the request was in flight",
                )
            }
            Err(e) => break Error::new(ErrorCode::Transport, format!("SUB receive: {e}")),
        };
        let outcome = if msg.starts_with(wire::delta::DELTA_PREFIX) {
            route_delta(msg, channel_id, &slots)
        } else {
            wire::decode_message(&msg).map(|incoming| {
                if let Incoming::Event(event) = incoming {
                    events.dispatch(event);
                }
            })
        };
        if let Err(e) = outcome {
            if std::env::var_os("ORCHARD_DEBUG").is_some() {
                eprintln!("orchard: dropped a malformed engine message: {e}");
            }
        }
    };
    closed.store(true, Ordering::SeqCst);
    let reason = lock(&end_reason).clone().unwrap_or(reason);
    for (_, slot) in lock(&slots).drain() {
        slot.fail(reason.clone());
    }
    events.fail_all(reason);
}
