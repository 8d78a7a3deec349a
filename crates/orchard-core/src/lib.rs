//! orchard-core: the Rust core of orchard-ts. No napi here; everything is testable with cargo test.

pub mod api;
pub mod chat;
pub mod delta_view;
pub mod embed;
pub mod engine;
pub mod error;
pub mod format;
pub mod lock;
pub mod logprobs;
pub mod models;
pub mod nng;
pub mod paths;
pub mod session;
pub mod tasks;
pub mod tokenizer;
pub mod transport;
pub mod wire;

pub use error::{Error, ErrorCode, Result};
