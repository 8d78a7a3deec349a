//! Embeddings: `NativeEngine.embed` sends one request for a batch of texts and returns a
//! handle; `result()` collects the final deltas (no thread is held while waiting: the slot's
//! waker drives the future) and hands back every vector in one `Float32Array`.

use napi::bindgen_prelude::Float32Array;
use napi_derive::napi;
use orchard_core::api;
use orchard_core::embed::EmbeddingCollector;

use crate::engine::NativeEngine;
use crate::errors::guarded;
use crate::tasks::Sent;

#[napi]
impl NativeEngine {
    /// Embed texts with one request. `inputs_json`: a JSON string or array of strings (the
    /// core validates it and names the bad element).
    #[napi]
    pub async fn embed(&self, model: String, inputs_json: String) -> napi::Result<NativeEmbedding> {
        let sent = self
            .send_task(move |session| api::embed(session, &model, &inputs_json))
            .await?;
        Ok(NativeEmbedding { sent })
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
    sent: Sent,
}

#[napi]
impl NativeEmbedding {
    #[napi(getter)]
    pub fn request_id(&self) -> i64 {
        self.sent.request_id()
    }

    /// Wait for every text's vector. Call once.
    #[napi]
    pub async fn result(&self) -> napi::Result<NativeEmbeddings> {
        let mut collector = EmbeddingCollector::new(self.sent.count());
        self.sent.drain(&mut collector).await?;
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
        self.sent.cancel()
    }
}
