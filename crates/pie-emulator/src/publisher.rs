//! The PUB side: deltas (`resp:<hex>:<json>`) and events (`__PIE_EVENT__:<name>\0<json>`).

use orchard_core::nng::Socket;
use orchard_core::wire::delta::{channel_topic, EVENT_PREFIX};
use orchard_core::wire::Delta;
use serde_json::Value;

pub struct Publisher {
    socket: Socket,
}

impl Publisher {
    pub fn new(socket: Socket) -> Publisher {
        Publisher { socket }
    }

    fn send(&self, msg: &[u8]) {
        if let Err(e) = self.socket.send(msg) {
            if !e.is_closed() {
                crate::warn!("publish failed: {e}");
            }
        }
    }

    pub fn delta(&self, channel: u64, delta: &Delta) {
        let mut msg = channel_topic(channel).into_bytes();
        delta.write_json(&mut msg);
        self.send(&msg);
    }

    /// A delta frame with `body` as it is (fault injection: bodies that are not JSON).
    pub fn raw_delta(&self, channel: u64, body: &[u8]) {
        let mut msg = channel_topic(channel).into_bytes();
        msg.extend_from_slice(body);
        self.send(&msg);
    }

    pub fn event(&self, name: &str, body: &Value) {
        let mut msg = Vec::with_capacity(256);
        msg.extend_from_slice(EVENT_PREFIX);
        msg.extend_from_slice(name.as_bytes());
        msg.push(0);
        if serde_json::to_writer(&mut msg, body).is_ok() {
            self.send(&msg);
        }
    }

    pub fn close(&self) {
        self.socket.close();
    }
}
