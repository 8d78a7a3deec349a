//! Engine tasks beyond chat and embeddings. [`prefill`]: `request_type: prefill_task`
//! requests (the engine reads each text and answers with a task result, nothing generated),
//! among them the OpenAI privacy filter. [`modal`]: speech, transcription and images.

pub mod modal;
pub mod prefill;

pub use prefill::TaskCollector;

use crate::error::Result;
use crate::wire::Delta;

/// What the deltas of a one-shot request (embeddings, prefill and modal tasks) are gathered
/// into, one delta at a time; [`crate::api::SentTask::step`] feeds it.
pub trait Collector {
    /// Take one delta; an error fails the request.
    fn add(&mut self, d: &Delta) -> Result<()>;
}

impl Collector for TaskCollector {
    fn add(&mut self, d: &Delta) -> Result<()> {
        TaskCollector::add(self, d)
    }
}

impl Collector for crate::embed::EmbeddingCollector {
    fn add(&mut self, d: &Delta) -> Result<()> {
        crate::embed::EmbeddingCollector::add(self, d)
    }
}
