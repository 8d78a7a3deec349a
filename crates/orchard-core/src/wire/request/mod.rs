//! Request frames (protocol.md §3): `u32 LE metadata length | compact JSON | aligned blobs`.
//!
//! [`Request`] is the typed form ([`types`]). [`encode`] writes the frame byte-for-byte as the
//! reference serializer does; [`decode`] reads one back (the emulator's side), validating
//! every offset.

mod decode;
mod encode;
mod meta;
mod types;

pub(in crate::wire) use decode::read_common;
pub use decode::{decode, split_frame};
pub use encode::encode;
pub use types::{
    CapabilityInput, PromptPayload, Request, RequestType, ThinkingTokens, ToolCallFormat,
    ToolCallingTokens,
};

/// Blobs are placed at offsets (relative to the payload start) rounded up to this.
pub const BLOB_ALIGNMENT: usize = 16;
/// A frame larger than this is refused by the decoder (the engine accepts anything; this is a
/// sanity bound against a corrupt length prefix).
pub const MAX_FRAME_BYTES: usize = 1 << 31;
