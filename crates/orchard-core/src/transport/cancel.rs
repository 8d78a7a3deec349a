//! `cancel_request` commands, sent in the background on a REQ socket of their own: a stream
//! ends the moment its caller cancels, and neither a slow engine nor another management
//! command can make a cancel wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::nng::{Protocol, Socket};

use super::lock;

/// How long the engine may take to acknowledge one cancel before the next is sent.
pub const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

struct Running {
    ids: Sender<u64>,
    socket: Arc<Socket>,
    thread: JoinHandle<()>,
}

/// Started on the first cancel, so an idle connection keeps no extra socket or thread.
pub struct Canceller {
    url: String,
    running: Mutex<Option<Running>>,
    stopped: AtomicBool,
}

impl Canceller {
    pub fn new(management_url: &str) -> Canceller {
        Canceller {
            url: management_url.to_string(),
            running: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    /// Queue `cancel_request` for `request_id`; returns at once.
    pub fn cancel(&self, request_id: u64) -> Result<()> {
        let mut running = lock(&self.running);
        // Checked under the lock `close` takes after setting it: no thread starts after close.
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        if running.is_none() {
            *running = Some(self.start()?);
        }
        let r = running.as_ref().expect("started above");
        // A send fails only once the thread has gone, i.e. the connection is closing.
        let _ = r.ids.send(request_id);
        Ok(())
    }

    fn start(&self) -> Result<Running> {
        let socket = Socket::open(Protocol::Req)?;
        socket.set_req_resend_time(None)?;
        socket.set_recv_max_size(64 * 1024)?;
        socket.set_send_timeout(Some(CANCEL_TIMEOUT))?;
        socket.set_recv_timeout(Some(CANCEL_TIMEOUT))?;
        socket.dial(&self.url, false)?;
        let socket = Arc::new(socket);
        let (ids, queue) = channel();
        let sock = socket.clone();
        let thread = std::thread::Builder::new()
            .name("orchard-cancel".into())
            .spawn(move || send_cancels(&sock, queue))
            .map_err(|e| Error::io("cannot start the cancel thread", e))?;
        Ok(Running {
            ids,
            socket,
            thread,
        })
    }

    /// Stop sending: close the socket (which wakes a send or receive in progress) and join.
    pub fn close(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(r) = lock(&self.running).take() {
            drop(r.ids);
            r.socket.close();
            if r.thread.thread().id() != std::thread::current().id() {
                let _ = r.thread.join();
            }
        }
    }
}

/// Tries to hand one cancel to the engine; once handed over, a missing reply is not a reason
/// to send it again (the engine reads it when it can).
const SEND_ATTEMPTS: u32 = 3;

fn send_cancels(socket: &Socket, queue: Receiver<u64>) {
    while let Ok(id) = queue.recv() {
        let body = json!({"type": "cancel_request", "request_id": id}).to_string();
        let mut sent = socket.send(body.as_bytes());
        for _ in 1..SEND_ATTEMPTS {
            match &sent {
                Err(e) if !e.is_closed() => sent = socket.send(body.as_bytes()),
                _ => break,
            }
        }
        let outcome = sent
            .and_then(|_| socket.recv())
            .map(|reply| serde_json::from_slice::<Value>(&reply).ok());
        match outcome {
            Err(e) if e.is_closed() => return,
            Err(e) => debug(&format!("cancel_request {id}: {e}")),
            Ok(reply) => {
                let status = reply
                    .as_ref()
                    .and_then(|r| r.get("status")?.as_str().map(str::to_string));
                if !matches!(status.as_deref(), Some("ok" | "accepted")) {
                    debug(&format!("engine rejected cancel_request {id}: {reply:?}"));
                }
            }
        }
    }
}

fn debug(message: &str) {
    if std::env::var_os("ORCHARD_DEBUG").is_some() {
        eprintln!("orchard: {message}");
    }
}
