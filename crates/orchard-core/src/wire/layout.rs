//! Layout segments: how text, image, audio and capability inputs interleave in one prompt.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    Text,
    Image,
    Audio,
    Capability,
}

impl SegmentKind {
    /// The segment type byte on the wire (matches PIE's SerializedSegmentType).
    pub fn wire_code(self) -> u8 {
        match self {
            SegmentKind::Text => 0,
            SegmentKind::Image => 1,
            SegmentKind::Audio => 2,
            SegmentKind::Capability => 3,
        }
    }

    pub fn from_wire_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SegmentKind::Text),
            1 => Some(SegmentKind::Image),
            2 => Some(SegmentKind::Audio),
            3 => Some(SegmentKind::Capability),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutSegment {
    #[serde(rename = "type")]
    pub kind: SegmentKind,
    pub length: u64,
}

impl LayoutSegment {
    pub fn new(kind: SegmentKind, length: u64) -> Self {
        LayoutSegment { kind, length }
    }
}
