//! The process-wide connection to the engine: one PUSH (requests), one SUB (deltas and
//! events, routed on NNG's receiving thread as they arrive; see `receive.rs`), one REQ
//! (management), and, once needed, a REQ for cancels (`cancel.rs`) and the lost-final
//! watchdog (`watchdog.rs`).

mod block_on;
mod cancel;
mod events;
mod receive;
mod slot;
mod watchdog;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use block_on::block_on_timeout;
pub use cancel::CANCEL_TIMEOUT;
pub use events::{EventHub, EventWait};
pub use slot::{Batch, RequestSlot};

use crate::error::{Error, ErrorCode, Result};
use crate::nng::{Protocol, Receiver, Socket};
use crate::paths::Endpoints;
use crate::wire::{self, delta::channel_topic, Request};

use cancel::Canceller;
use receive::Router;
use watchdog::{Watchdog, Watched};

/// NNG's largest receive queue: what arrives while no receive is waiting (before routing
/// starts, or between a completion and the next receive).
const SUB_RECV_BUFFER: i32 = 8192;
const PUSH_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest message accepted from the engine (`ORCHARD_MAX_MESSAGE_BYTES`): a delta, an
/// event or a management reply. Larger messages are dropped by NNG, and the loss is then
/// detected like any other.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const TELEMETRY_TOPIC: &[u8] = b"__PIE_EVENT__:telemetry";
/// The engine events a client acts on (model activation).
const ACTIVATION_TOPICS: [&[u8]; 2] = [
    b"__PIE_EVENT__:model_loaded\0",
    b"__PIE_EVENT__:model_load_failed\0",
];

/// The largest message accepted from the engine: `ORCHARD_MAX_MESSAGE_BYTES`, default 64 MiB.
pub fn max_message_bytes() -> usize {
    std::env::var("ORCHARD_MAX_MESSAGE_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1024)
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

/// The first request id of a connection: a random 32-bit offset, so two processes (or two
/// clients of one engine) practically never use the same id at the same time —
/// `cancel_request` names only the id.
fn first_request_id() -> u64 {
    u64::from(rand::random::<u32>()) + 1
}

/// Request ids stay below 2^53, so JavaScript numbers hold them exactly.
const MAX_REQUEST_ID: u64 = 1 << 53;

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
    canceller: Canceller,
    watchdog: Watchdog,
    slots: SlotMap,
    events: Arc<EventHub>,
    /// Routes what the SUB socket receives; set once connected.
    receiver: Mutex<Option<Receiver>>,
    next_request_id: AtomicU64,
    closed: Arc<AtomicBool>,
    /// Why the connection ended, when it was ended on purpose (e.g. the engine died).
    end_reason: Arc<Mutex<Option<Error>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        let max_message = max_message_bytes();
        let sub = Socket::open(Protocol::Sub)?;
        sub.set_recv_max_size(max_message)?;
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
        management.set_recv_max_size(max_message)?;
        // Never re-send a management command: a slow reply must not become a duplicate
        // load or cancel, and an idle REQ socket then keeps no retry timer ticking.
        management.set_req_resend_time(None)?;
        management
            .dial(&endpoints.management, true)
            .map_err(|e| no_engine(e, &endpoints.management))?;

        let transport = Arc::new(Transport {
            canceller: Canceller::new(&endpoints.management),
            watchdog: Watchdog::new(),
            endpoints,
            channel_id,
            push,
            sub: Arc::new(sub),
            management: Mutex::new(management),
            slots: Arc::new(Mutex::new(HashMap::new())),
            events: Arc::new(EventHub::default()),
            receiver: Mutex::new(None),
            next_request_id: AtomicU64::new(first_request_id()),
            closed: Arc::new(AtomicBool::new(false)),
            end_reason: Arc::new(Mutex::new(None)),
        });
        let first_event = transport.events.wait_for(|_| true);
        let router = Router {
            channel_id,
            slots: transport.slots.clone(),
            events: transport.events.clone(),
        };
        let router = Arc::new(router);
        let receiver = {
            let (closed, end_reason) = (transport.closed.clone(), transport.end_reason.clone());
            let ending = router.clone();
            Receiver::start(
                &transport.sub,
                move |msg| router.route(msg),
                move |e| ending.end(e, &closed, &end_reason),
            )?
        };
        *lock(&transport.receiver) = Some(receiver);
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
        if id >= MAX_REQUEST_ID {
            self.next_request_id
                .store(first_request_id(), Ordering::Relaxed);
            return self.next_request_id();
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
        self.watchdog.submitted(|| Watched {
            slots: self.slots.clone(),
            sub: self.sub.clone(),
            events: self.events.clone(),
        });
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

    /// Stop routing deltas of `request_id` (its stream ends at once) and ask the engine, in
    /// the background, to stop its work. Never waits for the engine.
    pub fn cancel(&self, request_id: u64) -> Result<()> {
        let slot = lock(&self.slots).remove(&request_id);
        let Some(slot) = slot else {
            return Ok(()); // already finished
        };
        slot.abort("the request was cancelled");
        if self.is_closed() {
            return Ok(());
        }
        self.canceller.cancel(request_id)
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

    /// Close the sockets, end the SUB receive and fail whatever is still in flight.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.sub.close();
        self.push.close();
        self.canceller.close();
        self.watchdog.stop();
        lock(&self.management).close();
        // The closed socket ends receiving (requests in flight fail); wait until it has.
        if let Some(receiver) = lock(&self.receiver).as_ref() {
            receiver.stop();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.close();
    }
}
