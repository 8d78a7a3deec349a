//! Embeddings: `NativeEngine.embed` sends one request for a batch of texts and returns a
//! handle; `result()` collects the final deltas (no thread is held while waiting: the slot's
//! waker drives the future) and hands back every vector in one `Float32Array`.

use std::future::poll_fn;
use std::sync::Arc;

use napi::bindgen_prelude::Float32Array;
use napi_derive::napi;
use orchard_core::api;
use orchard_core::embed::EmbeddingCollector;
use orchard_core::transport::{RequestSlot, Transport};

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};

#[napi]
impl NativeEngine {
    /// Embed texts with one request. `inputs_json`: a JSON string or array of strings (the
    /// core validates it and names the bad element).
    #[napi]
    pub async fn embed(&self, model: String, inputs_json: String) -> napi::Result<NativeEmbedding> {
        let session = self.open_session()?;
        let (request_id, slot, count) = blocking(move || {
            let texts = api::embed_inputs(&inputs_json)?;
            let (id, slot) = session.embed(&model, &texts)?;
            Ok((id, slot, texts.len()))
        })
        .await?;
        Ok(NativeEmbedding {
            request_id,
            slot,
            count,
            transport: self.session.transport.clone(),
        })
    }
}

/// The vectors of one embedding request, back to back in input order.
#[napi(object)]
pub struct NativeEmbeddings {
    /// `count * dimensions` values: text i is `[i * dimensions, (i + 1) * dimensions)`.
    pub vectors: Float32Array,
    pub dimensions: u32,
    pub count: u32,
    pub prompt_tokens: f64,
}

/// One embedding request in flight.
#[napi]
pub struct NativeEmbedding {
    request_id: u64,
    slot: Arc<RequestSlot>,
    count: usize,
    transport: Arc<Transport>,
}

#[napi]
impl NativeEmbedding {
    #[napi(getter)]
    pub fn request_id(&self) -> i64 {
        self.request_id as i64
    }

    /// Wait for every text's vector. Call once.
    #[napi]
    pub async fn result(&self) -> napi::Result<NativeEmbeddings> {
        let slot = self.slot.clone();
        let mut collector = EmbeddingCollector::new(self.count);
        loop {
            let batch = poll_fn(|cx| slot.poll_batch(cx.waker())).await;
            match guarded(|| collector.add_batch(batch)) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    // A bad answer ends the request here; the engine can stop its work.
                    self.stop();
                    return Err(e);
                }
            }
        }
        let e = guarded(move || collector.finish())?;
        Ok(NativeEmbeddings {
            vectors: Float32Array::new(e.vectors),
            dimensions: e.dimensions as u32,
            count: e.count as u32,
            prompt_tokens: e.prompt_tokens as f64,
        })
    }

    /// End the request now (`result()` rejects with ABORTED); `cancel_request` goes to the
    /// engine in the background.
    #[napi]
    pub fn cancel(&self) -> napi::Result<()> {
        if self.slot.is_done() {
            return Ok(());
        }
        guarded(|| self.transport.cancel(self.request_id))
    }

    fn stop(&self) {
        if !self.slot.is_done() {
            let _ = self.transport.cancel(self.request_id);
        }
    }
}
