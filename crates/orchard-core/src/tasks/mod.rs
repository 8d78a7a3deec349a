//! Engine tasks beyond chat and embeddings. [`prefill`]: `request_type: prefill_task`
//! requests (the engine reads each text and answers with a task result, nothing generated),
//! among them the OpenAI privacy filter.

pub mod prefill;
