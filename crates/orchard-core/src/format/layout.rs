//! Layout of a rendered prompt: where text, image, audio and capability inputs sit, in UTF-8
//! bytes of the final prompt text, and removal of the synthetic placeholders from that text.

use crate::error::{Error, Result};
use crate::wire::{LayoutSegment, SegmentKind};

use super::messages::{CapabilityInput, MediaKind};

/// Placeholder strings of a profile (from `capabilities.yaml`), resolved once at load.
#[derive(Clone, Debug, Default)]
pub struct Placeholders {
    /// Text the template emits where an image goes.
    pub image: String,
    /// Whether `image` is synthetic (removed from the prompt) or a real token (kept).
    pub clip_image: bool,
    pub audio: Option<String>,
    /// Placeholder that positions capability inputs (e.g. `<|coord|>`).
    pub capability: String,
    /// Every placeholder declared under some `<capability>.placeholders`; all but a kept image
    /// placeholder are removed from the final prompt.
    pub declared: Vec<String>,
}

const DEFAULT_IMAGE_PLACEHOLDER: &str = "<|image|>";
const DEFAULT_CAPABILITY_PLACEHOLDER: &str = "<|coord|>";

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

impl Placeholders {
    pub fn from_capabilities(caps: &serde_json::Value, start_image_token: Option<&str>) -> Self {
        let explicit = str_at(caps, &["vision", "placeholders", "image"])
            .or_else(|| str_at(caps, &["vision", "tokens", "placeholder"]));
        let vision_start = str_at(caps, &["vision", "tokens", "start"]);
        let start_image_token = start_image_token.filter(|s| !s.is_empty());
        let image = explicit
            .or(vision_start)
            .or(start_image_token)
            .unwrap_or(DEFAULT_IMAGE_PLACEHOLDER)
            .to_string();
        let clip_image =
            explicit.is_some() || (vision_start.is_none() && start_image_token.is_none());
        let audio = str_at(caps, &["audio", "placeholders", "audio"])
            .or_else(|| str_at(caps, &["audio", "tokens", "placeholder"]))
            .map(str::to_string);
        let capability = ["pointing", "gaze_detection"]
            .iter()
            .find_map(|cap| str_at(caps, &[cap, "placeholders", "coord"]))
            .unwrap_or(DEFAULT_CAPABILITY_PLACEHOLDER)
            .to_string();
        let mut declared: Vec<String> = Vec::new();
        if let Some(map) = caps.as_object() {
            for cap in map.values() {
                if let Some(placeholders) = cap.get("placeholders").and_then(|p| p.as_object()) {
                    for p in placeholders.values().filter_map(|p| p.as_str()) {
                        if !p.is_empty() && !declared.iter().any(|d| d == p) {
                            declared.push(p.to_string());
                        }
                    }
                }
            }
        }
        Placeholders {
            image,
            clip_image,
            audio,
            capability,
            declared,
        }
    }

    /// Remove synthetic placeholders from the rendered text.
    pub fn strip(&self, prompt: String) -> String {
        let mut out = prompt;
        let mut remove = |p: &str| {
            if !p.is_empty() && out.contains(p) {
                out = out.replace(p, "");
            }
        };
        if self.clip_image {
            remove(&self.image);
        }
        for p in &self.declared {
            if *p != self.image {
                remove(p);
            }
        }
        out
    }
}

/// Media pulled out of the messages, in the order the layout needs them.
pub struct Media<'a> {
    pub images: &'a [Vec<u8>],
    pub audio: &'a [Vec<u8>],
    pub capabilities: &'a [CapabilityInput],
    pub order: &'a [MediaKind],
}

fn find_all(text: &str, needle: &str) -> Vec<(usize, usize)> {
    if needle.is_empty() {
        return Vec::new();
    }
    text.match_indices(needle)
        .map(|(at, m)| (at, at + m.len()))
        .collect()
}

fn push_text(layout: &mut Vec<LayoutSegment>, bytes: usize) {
    if bytes > 0 {
        layout.push(LayoutSegment::new(SegmentKind::Text, bytes as u64));
    }
}

fn no_content() -> Error {
    Error::invalid("the rendered prompt is empty: a request needs at least one content segment")
}

/// Build the layout of `prompt` (the text as rendered, placeholders still in it).
pub fn build(prompt: &str, media: &Media<'_>, ph: &Placeholders) -> Result<Vec<LayoutSegment>> {
    if media.images.is_empty() && media.audio.is_empty() && media.capabilities.is_empty() {
        if prompt.is_empty() {
            return Err(no_content());
        }
        return Ok(vec![LayoutSegment::new(
            SegmentKind::Text,
            prompt.len() as u64,
        )]);
    }

    let image_at = if media.images.is_empty() {
        Vec::new()
    } else {
        find_all(prompt, &ph.image)
    };
    if image_at.len() != media.images.len() {
        return Err(Error::template(format!(
            "the template emitted {} image placeholder(s) '{}' for {} image part(s); \
             does this family take images (capabilities.yaml vision)?",
            image_at.len(),
            ph.image,
            media.images.len()
        )));
    }
    let audio_at = match (&ph.audio, media.audio.is_empty()) {
        (Some(p), false) => find_all(prompt, p),
        _ => Vec::new(),
    };
    if audio_at.len() != media.audio.len() {
        return Err(Error::template(format!(
            "the template emitted {} audio placeholder(s) for {} audio part(s){}",
            audio_at.len(),
            media.audio.len(),
            if ph.audio.is_none() {
                " (this family declares no audio placeholder)"
            } else {
                ""
            }
        )));
    }
    let cap_at = if media.capabilities.is_empty() {
        Vec::new()
    } else {
        find_all(prompt, &ph.capability)
    };

    // The text before a kept image placeholder includes the placeholder itself.
    let image_text_end = |(start, end): (usize, usize)| if ph.clip_image { start } else { end };
    let mut layout = Vec::new();
    let mut cursor = 0usize;

    if !audio_at.is_empty() || !cap_at.is_empty() {
        if cap_at.len() != media.capabilities.len() {
            return Err(Error::template(format!(
                "the template emitted {} capability placeholder(s) '{}' for {} capability part(s)",
                cap_at.len(),
                ph.capability,
                media.capabilities.len()
            )));
        }
        let mut all: Vec<(usize, usize, SegmentKind, u64)> = Vec::new();
        for (i, &m) in image_at.iter().enumerate() {
            all.push((m.0, m.1, SegmentKind::Image, media.images[i].len() as u64));
        }
        for (i, &m) in audio_at.iter().enumerate() {
            all.push((m.0, m.1, SegmentKind::Audio, media.audio[i].len() as u64));
        }
        for (i, &m) in cap_at.iter().enumerate() {
            let len = media.capabilities[i].payload.len() as u64;
            all.push((m.0, m.1, SegmentKind::Capability, len));
        }
        all.sort_by_key(|p| p.0);
        for (start, end, kind, len) in all {
            let text_end = if kind == SegmentKind::Image {
                image_text_end((start, end))
            } else {
                start
            };
            push_text(&mut layout, text_end.saturating_sub(cursor));
            layout.push(LayoutSegment::new(kind, len));
            cursor = end;
        }
    } else {
        let (mut img, mut aud, mut cap) = (0usize, 0usize, 0usize);
        for kind in media.order {
            match kind {
                MediaKind::Image => {
                    let m = image_at[img];
                    push_text(&mut layout, image_text_end(m).saturating_sub(cursor));
                    layout.push(LayoutSegment::new(
                        SegmentKind::Image,
                        media.images[img].len() as u64,
                    ));
                    cursor = m.1;
                    img += 1;
                }
                MediaKind::Audio => {
                    let len = media.audio.get(aud).map_or(0, |a| a.len());
                    layout.push(LayoutSegment::new(SegmentKind::Audio, len as u64));
                    aud += 1;
                }
                MediaKind::Capability => {
                    let len = media.capabilities.get(cap).map_or(0, |c| c.payload.len());
                    layout.push(LayoutSegment::new(SegmentKind::Capability, len as u64));
                    cap += 1;
                }
            }
        }
    }
    push_text(&mut layout, prompt.len().saturating_sub(cursor));
    if layout.is_empty() {
        return Err(no_content());
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seg(kind: SegmentKind, n: u64) -> LayoutSegment {
        LayoutSegment::new(kind, n)
    }

    #[test]
    fn text_only_is_one_segment_in_bytes() {
        let ph = Placeholders::from_capabilities(&json!({}), None);
        let media = Media {
            images: &[],
            audio: &[],
            capabilities: &[],
            order: &[],
        };
        assert_eq!(
            build("été", &media, &ph).unwrap(),
            [seg(SegmentKind::Text, 5)]
        );
        assert!(build("", &media, &ph).is_err());
    }

    #[test]
    fn clipped_and_kept_image_placeholders() {
        let images = vec![vec![0u8; 8]];
        let media = Media {
            images: &images,
            audio: &[],
            capabilities: &[],
            order: &[MediaKind::Image],
        };
        // Synthetic placeholder: excluded from the text and stripped.
        let ph = Placeholders::from_capabilities(
            &json!({"vision": {"placeholders": {"image": "<|image|>"}}}),
            None,
        );
        let prompt = "ab<|image|>cd";
        assert_eq!(
            build(prompt, &media, &ph).unwrap(),
            [
                seg(SegmentKind::Text, 2),
                seg(SegmentKind::Image, 8),
                seg(SegmentKind::Text, 2)
            ]
        );
        assert_eq!(ph.strip(prompt.to_string()), "abcd");
        // Real token: stays in the preceding text segment and in the prompt.
        let ph = Placeholders::from_capabilities(
            &json!({"vision": {"tokens": {"start": "<img>"}}}),
            None,
        );
        let prompt = "ab<img>cd";
        assert_eq!(
            build(prompt, &media, &ph).unwrap(),
            [
                seg(SegmentKind::Text, 7),
                seg(SegmentKind::Image, 8),
                seg(SegmentKind::Text, 2)
            ]
        );
        assert_eq!(ph.strip(prompt.to_string()), prompt);
        // Count mismatch is an error.
        assert!(build("no placeholder", &media, &ph).is_err());
    }
}
