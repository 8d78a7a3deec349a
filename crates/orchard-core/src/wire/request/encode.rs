//! Writing a [`Request`] as a frame, byte for byte as the reference serializer does.

use super::super::layout::{LayoutSegment, SegmentKind};
use super::meta::{write_meta, Placed};
use super::types::{PromptPayload, Request};
use super::BLOB_ALIGNMENT;
use crate::error::{Error, Result};

fn align(v: usize) -> usize {
    v.div_ceil(BLOB_ALIGNMENT) * BLOB_ALIGNMENT
}

/// Accumulates aligned blobs; offsets are relative to the payload start.
struct Payload {
    bytes: Vec<u8>,
}

impl Payload {
    /// Place a blob, or report (0, 0) for an empty one (it takes no room).
    fn reserve(&mut self, data: &[u8]) -> (usize, usize) {
        if data.is_empty() {
            return (0, 0);
        }
        let offset = align(self.bytes.len());
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(data);
        (offset, data.len())
    }

    /// Place a list of buffers back to back (no copy for a single buffer).
    fn reserve_all(&mut self, items: &[Vec<u8>]) -> (usize, usize) {
        match items {
            [] => (0, 0),
            [one] => self.reserve(one),
            many => self.reserve(&many.concat()),
        }
    }
}

fn spans(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 8);
    for i in items {
        out.extend_from_slice(&(i.len() as u64).to_le_bytes());
    }
    out
}

fn layout_bytes(layout: &[LayoutSegment]) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout.len() * 16);
    for seg in layout {
        out.push(seg.kind.wire_code());
        out.extend_from_slice(&[0u8; 7]);
        // Capability segments carry length 0: the engine reads capabilities[i].payload_size.
        let len = if seg.kind == SegmentKind::Capability {
            0
        } else {
            seg.length
        };
        out.extend_from_slice(&len.to_le_bytes());
    }
    out
}

/// Refuse what the engine could not read back: non-finite numbers and a layout that does
/// not add up to the prompt's blobs.
fn validate(p: &PromptPayload, index: usize) -> Result<()> {
    let at = |field: &str| format!("prompts[{index}].{field}");
    for (name, v) in [
        ("temperature", p.temperature),
        ("top_p", p.top_p),
        ("min_p", p.min_p),
        ("frequency_penalty", p.frequency_penalty),
        ("presence_penalty", p.presence_penalty),
        ("repetition_penalty", p.repetition_penalty),
    ] {
        if !v.is_finite() {
            return Err(Error::invalid(format!(
                "{}: {v} is not a finite number",
                at(name)
            )));
        }
    }
    if let Some((token, bias)) = p.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
        return Err(Error::invalid(format!(
            "{}: bias {bias} for token {token} is not a finite number",
            at("logit_bias")
        )));
    }
    let layout = p.effective_layout();
    let sum = |kind: SegmentKind| -> u64 {
        layout
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.length)
            .sum()
    };
    let checks = [
        (SegmentKind::Text, p.text.len() as u64, "text"),
        (
            SegmentKind::Image,
            p.images.iter().map(|i| i.len() as u64).sum(),
            "image",
        ),
        (
            SegmentKind::Audio,
            p.audio.iter().map(|a| a.len() as u64).sum(),
            "audio",
        ),
    ];
    for (kind, expected, what) in checks {
        let got = sum(kind);
        if got != expected {
            return Err(Error::invalid(format!(
                "{}: {what} segments add up to {got} bytes but the prompt has {expected} {what} bytes",
                at("layout")
            )));
        }
    }
    let caps = layout
        .iter()
        .filter(|s| s.kind == SegmentKind::Capability)
        .count();
    if caps != p.capabilities.len() && p.layout.is_some() {
        return Err(Error::invalid(format!(
            "{}: {caps} capability segments for {} capability inputs",
            at("layout"),
            p.capabilities.len()
        )));
    }
    Ok(())
}

/// Place one prompt's blobs in `payload` and say where they went.
fn place(p: &PromptPayload, payload: &mut Payload) -> Placed {
    let text = payload.reserve(&p.text);
    let (image_sizes_offset, _) = payload.reserve(&spans(&p.images));
    let image_data = payload.reserve_all(&p.images);
    let (audio_sizes_offset, _) = payload.reserve(&spans(&p.audio));
    let audio_data = payload.reserve_all(&p.audio);
    let cap_data: Vec<u8> = p
        .capabilities
        .iter()
        .flat_map(|c| c.payload.iter().copied())
        .collect();
    let capability_data = payload.reserve(&cap_data);
    let layout = p.effective_layout();
    let (layout_offset, _) = payload.reserve(&layout_bytes(&layout));
    Placed {
        text,
        image_data,
        image_sizes_offset,
        audio_data,
        audio_sizes_offset,
        capability_data,
        layout_offset,
        layout_count: layout.len(),
    }
}

/// Write the frame for `req`: the metadata is serialised straight into the frame buffer
/// (no intermediate JSON tree), then the payload is appended.
pub fn encode(req: &Request) -> Result<Vec<u8>> {
    if req.prompts.is_empty() {
        return Err(Error::invalid(
            "prompts: a request needs at least one prompt",
        ));
    }
    let blobs: usize = req
        .prompts
        .iter()
        .map(|p| {
            p.text.len()
                + p.images.iter().map(Vec::len).sum::<usize>()
                + p.audio.iter().map(Vec::len).sum::<usize>()
                + 256
        })
        .sum();
    let mut payload = Payload {
        bytes: Vec::with_capacity(blobs),
    };
    let mut placed = Vec::with_capacity(req.prompts.len());
    for (index, p) in req.prompts.iter().enumerate() {
        validate(p, index)?;
        placed.push(place(p, &mut payload));
    }
    let mut frame = Vec::with_capacity(4 + 2048 + payload.bytes.len());
    frame.extend_from_slice(&[0u8; 4]);
    write_meta(&mut frame, req, &placed);
    let meta_len = u32::try_from(frame.len() - 4)
        .map_err(|_| Error::invalid("request metadata exceeds the 4 GiB a frame can describe"))?;
    frame[..4].copy_from_slice(&meta_len.to_le_bytes());
    frame.extend_from_slice(&payload.bytes);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;
    use crate::wire::RequestType;

    fn request(p: PromptPayload) -> Request {
        Request {
            request_id: 1,
            model_id: "m".into(),
            model_path: String::new(),
            request_type: RequestType::Generation,
            request_channel_id: 0,
            response_channel_id: 2,
            prompts: vec![p],
        }
    }

    fn meta(frame: &[u8]) -> String {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        String::from_utf8(frame[4..4 + len].to_vec()).unwrap()
    }

    #[test]
    fn an_unset_seed_is_left_out_and_a_repeated_frame_key_keeps_its_last_value() {
        let p = PromptPayload {
            rng_seed: None,
            output_frame_tokens: vec![
                ("marker.a".into(), "1".into()),
                ("channel.b".into(), "2".into()),
                ("marker.a".into(), "3".into()),
            ],
            ..PromptPayload::default()
        };
        let frame = encode(&request(p)).unwrap();
        let m = meta(&frame);
        assert!(!m.contains("rng_seed"), "{m}");
        assert!(
            m.contains(r#""output_frame_tokens":{"marker.a":"3","channel.b":"2"}"#),
            "{m}"
        );
        assert_eq!(decode(&frame).unwrap().prompts[0].rng_seed, None);
    }

    #[test]
    fn numbers_that_are_not_finite_are_refused_by_name() {
        let p = PromptPayload {
            top_p: f64::NAN,
            ..PromptPayload::default()
        };
        let err = encode(&request(p)).unwrap_err();
        assert!(err.message.contains("prompts[0].top_p"), "{err}");
        let p = PromptPayload {
            logit_bias: vec![(5, f64::INFINITY)],
            ..PromptPayload::default()
        };
        let err = encode(&request(p)).unwrap_err();
        assert!(err.message.contains("prompts[0].logit_bias"), "{err}");
    }
}
