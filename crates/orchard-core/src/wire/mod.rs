//! The PIE wire protocol: request frames (PUSH), deltas and events (SUB).

pub mod delta;
pub(crate) mod json;
mod layout;
pub mod request;
pub mod tree;
pub mod vocab;

pub use delta::{
    decode_message, Delta, DeltaRouting, EngineEvent, Incoming, RoutingFacts, StateEvent,
    TopLogprob,
};
pub use json::Obj;
pub use layout::{LayoutSegment, SegmentKind};
pub use request::{
    decode as decode_request, encode as encode_request, CapabilityInput, PromptPayload, Request,
    RequestType, ThinkingTokens, ToolCallFormat, ToolCallingTokens,
};
pub use tree::Node;
