//! Chat: options (camelCase, parsed by a serde derive and validated once) → one prompt of a
//! generation request. The ranges live in one table ([`ranges`]) shared with Responses.

mod build;
mod options;
pub mod ranges;
#[cfg(test)]
mod tests;

pub use build::{build_batch_request, build_prompt, build_request, Target};
pub use options::{
    parse_batch_options, ChatOptions, DEFAULT_MAX_TOKENS, DEFAULT_REPETITION_CONTEXT_SIZE,
    DETERMINISTIC_SEED,
};
