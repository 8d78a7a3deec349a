//! Engine tasks beyond chat and embeddings. [`prefill`]: `request_type: prefill_task`
//! requests (the engine reads each text and answers with a task result, nothing generated),
//! among them the OpenAI privacy filter. [`modal`]: speech, transcription and images.

pub mod modal;
pub mod prefill;

pub use prefill::TaskCollector;
