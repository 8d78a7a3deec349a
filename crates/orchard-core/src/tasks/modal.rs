//! Modal requests: text to speech (`request_type: audio`, task `text_to_speech`), speech to
//! text (`omni`: one float32 PCM buffer, layout `[TEXT 0, AUDIO n]`) and image generation and
//! editing (`image`, tasks `text_to_image` / `image_to_image`), one prompt each.
//!
//! The call's options arrive as the public (camelCase) JSON and are checked here, naming the
//! field. Modal options go to the engine as `modal_options_json` with sorted keys and no
//! nulls, as the Python reference sends them; sampling options go into the prompt as well.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::chat::Target;
use crate::error::{Error, Result};
use crate::wire::{LayoutSegment, Node, Obj, PromptPayload, Request, RequestType, SegmentKind};

/// Which modal call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModalKind {
    Speech,
    Transcribe,
    ImageGenerate,
    ImageEdit,
}

impl ModalKind {
    pub fn parse(name: &str) -> Result<ModalKind> {
        Ok(match name {
            "speech" => ModalKind::Speech,
            "transcribe" => ModalKind::Transcribe,
            "image_generate" => ModalKind::ImageGenerate,
            "image_edit" => ModalKind::ImageEdit,
            other => {
                return Err(Error::invalid(format!(
                    "kind: unknown modal call {other:?}; expected speech, transcribe, image_generate or image_edit"
                )))
            }
        })
    }

    /// Options the call takes besides the sampling ones (camelCase, as the caller writes them).
    fn own_options(self) -> &'static [&'static str] {
        match self {
            ModalKind::Speech => &["language", "speaker", "sampleRate", "maxOutputTokens"],
            ModalKind::Transcribe => &[],
            ModalKind::ImageGenerate => &["height", "width", "numSteps", "guidanceScale"],
            ModalKind::ImageEdit => &[
                "height",
                "width",
                "numSteps",
                "trueCfgScale",
                "negativePrompt",
            ],
        }
    }

    /// The defaults the reference sends for this call's modal options.
    fn defaults(self) -> Vec<(&'static str, Value)> {
        match self {
            ModalKind::Speech => vec![("sample_rate", 24_000.into())],
            ModalKind::Transcribe => vec![],
            ModalKind::ImageGenerate => vec![
                ("height", 1024.into()),
                ("width", 1024.into()),
                ("num_steps", 48.into()),
                ("guidance_scale", 7.0.into()),
            ],
            ModalKind::ImageEdit => vec![
                ("num_steps", 50.into()),
                ("true_cfg_scale", 4.0.into()),
                ("negative_prompt", " ".into()),
            ],
        }
    }
}

/// The sampling options speech and image calls take (sent in the prompt and as modal options).
const SAMPLING: &str = "temperature topP topK minP seed deterministic";

/// `sampleRate` → `sample_rate`.
fn snake(key: &str) -> String {
    key.chars().fold(String::new(), |mut s, c| {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
        s
    })
}

/// One modal call: `input` is `{ text, options }` (text: the speech text or image prompt),
/// `media` the reference audio (speech), PCM float32 LE (transcribe) or the image to edit.
pub fn build_request(
    kind: ModalKind,
    input: &Value,
    media: Option<Vec<u8>>,
    target: &Target,
) -> Result<Request> {
    let input = Node::from_value(input);
    let call = Obj::new(&input, "", Error::invalid)?;
    call.deny_unknown(&["text", "options"])?;
    let text = call.string_or("text", "")?;
    let opts = call.object_or_empty("options")?;
    let mut allowed: Vec<&str> = kind.own_options().to_vec();
    if kind != ModalKind::Transcribe {
        allowed.extend(SAMPLING.split(' '));
        allowed.push("modalOptions");
    }
    opts.deny_unknown(&allowed)?;

    let mut p = PromptPayload {
        max_generated_tokens: 0,
        ..PromptPayload::default()
    };
    let mut modal: BTreeMap<String, Value> = kind
        .defaults()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for key in kind
        .own_options()
        .iter()
        .copied()
        .chain(SAMPLING.split(' '))
    {
        if let Some(v) = opts.get(key).filter(|v| !v.is_null()) {
            modal.insert(snake(key), v.to_value());
        }
    }
    let extra = opts.object_or_empty("modalOptions")?;
    for (k, v) in extra.entries().filter(|(_, v)| !v.is_null()) {
        modal.insert(k.to_string(), v.to_value());
    }
    // Checked here so a bad value names the caller's field, not the engine's.
    for key in [
        "sampleRate",
        "maxOutputTokens",
        "height",
        "width",
        "numSteps",
    ] {
        if let Some(0) = opts.u64_opt(key)? {
            return Err(opts.fail(key, "expected a positive integer"));
        }
    }
    for key in ["guidanceScale", "trueCfgScale"] {
        opts.f64_opt(key)?;
    }
    for key in ["language", "speaker", "negativePrompt"] {
        opts.opt_string(key)?;
    }
    if kind != ModalKind::Transcribe {
        let d = PromptPayload::default();
        p.temperature = opts.f64_or("temperature", d.temperature)?;
        p.top_p = opts.f64_or("topP", d.top_p)?;
        p.top_k = opts.i64_or("topK", d.top_k)?;
        p.min_p = opts.f64_or("minP", d.min_p)?;
        p.deterministic = opts.bool_or("deterministic", false)?;
        // The Python reference sends seed 0 when the caller gives none.
        p.rng_seed = Some(opts.u64_or("seed", 0)? & 0xFFFF_FFFF);
        p.modal_options_json = Value::Object(modal.into_iter().collect()).to_string();
    }

    let (request_type, task) = match kind {
        ModalKind::Speech => {
            p.max_generated_tokens = opts.u64_or("maxOutputTokens", 8192)?;
            p.audio = media.into_iter().filter(|m| !m.is_empty()).collect();
            (RequestType::Audio, Some("text_to_speech"))
        }
        ModalKind::Transcribe => {
            let pcm = media.unwrap_or_default();
            if pcm.len() % 4 != 0 {
                return Err(Error::invalid(format!(
                    "pcm: {} bytes is not a whole number of float32 samples",
                    pcm.len()
                )));
            }
            p.layout = Some(vec![
                LayoutSegment::new(SegmentKind::Text, 0),
                LayoutSegment::new(SegmentKind::Audio, pcm.len() as u64),
            ]);
            p.audio = vec![pcm];
            (RequestType::Omni, None)
        }
        ModalKind::ImageGenerate | ModalKind::ImageEdit => {
            if kind == ModalKind::ImageEdit {
                let image = media
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| Error::invalid("image: the image to edit is missing"))?;
                p.images = vec![image];
            }
            let mut layout = Vec::new();
            if !text.is_empty() || p.images.is_empty() {
                layout.push(LayoutSegment::new(SegmentKind::Text, text.len() as u64));
            }
            layout.extend(
                p.images
                    .iter()
                    .map(|i| LayoutSegment::new(SegmentKind::Image, i.len() as u64)),
            );
            p.layout = Some(layout);
            let task = if kind == ModalKind::ImageEdit {
                "image_to_image"
            } else {
                "text_to_image"
            };
            (RequestType::Image, Some(task))
        }
    };
    if kind != ModalKind::Transcribe && text.trim().is_empty() {
        let field = if kind == ModalKind::Speech {
            "text"
        } else {
            "prompt"
        };
        return Err(Error::invalid(format!(
            "{field}: expected a non-empty string"
        )));
    }
    p.text = text.into_bytes();
    p.task_name = task.map(str::to_string);
    Ok(Request {
        request_id: target.request_id,
        model_id: target.model_id.to_string(),
        model_path: target.model_path.to_string(),
        request_type,
        request_channel_id: 0,
        response_channel_id: target.response_channel_id,
        prompts: vec![p],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn target() -> Target<'static> {
        Target {
            request_id: 5,
            model_id: "m",
            model_path: "/m",
            response_channel_id: 8,
        }
    }

    fn build(kind: ModalKind, input: Value, media: Option<Vec<u8>>) -> Result<Request> {
        build_request(kind, &input, media, &target())
    }

    #[test]
    fn speech_sends_sorted_modal_options_and_sampling() {
        let req = build(
            ModalKind::Speech,
            json!({"text": "Hello", "options": {"speaker": "ana", "language": null, "temperature": 0.5, "seed": 7,
                "modalOptions": {"zeta": 1, "alpha": null}}}),
            Some(vec![1, 2, 3, 4]),
        )
        .unwrap();
        assert_eq!(req.request_type, RequestType::Audio);
        let p = &req.prompts[0];
        assert_eq!(p.task_name.as_deref(), Some("text_to_speech"));
        assert_eq!(
            p.modal_options_json,
            r#"{"sample_rate":24000,"seed":7,"speaker":"ana","temperature":0.5,"zeta":1}"#
        );
        assert_eq!(
            (p.temperature, p.rng_seed, p.max_generated_tokens),
            (0.5, Some(7), 8192)
        );
        assert_eq!(p.audio, vec![vec![1, 2, 3, 4]]);
        let frame = crate::wire::encode_request(&req).unwrap();
        assert_eq!(
            crate::wire::decode_request(&frame).unwrap().prompts[0].modal_options_json,
            p.modal_options_json
        );
    }

    #[test]
    fn transcription_is_omni_with_one_audio_segment() {
        let req = build(ModalKind::Transcribe, json!({}), Some(vec![0; 8])).unwrap();
        assert_eq!(req.request_type, RequestType::Omni);
        let p = &req.prompts[0];
        assert!(p.text.is_empty() && p.task_name.is_none() && p.modal_options_json.is_empty());
        assert_eq!(
            p.layout.as_ref().unwrap()[1],
            LayoutSegment::new(SegmentKind::Audio, 8)
        );
        crate::wire::encode_request(&req).unwrap();
        let e = build(ModalKind::Transcribe, json!({}), Some(vec![0; 6])).unwrap_err();
        assert!(e.message.starts_with("pcm: 6 bytes"), "{}", e.message);
    }

    #[test]
    fn images_generate_and_edit() {
        let req = build(
            ModalKind::ImageGenerate,
            json!({"text": "an apple", "options": {"width": 512}}),
            None,
        )
        .unwrap();
        let p = &req.prompts[0];
        assert_eq!(req.request_type, RequestType::Image);
        assert_eq!(p.task_name.as_deref(), Some("text_to_image"));
        assert_eq!(
            p.modal_options_json,
            r#"{"guidance_scale":7.0,"height":1024,"num_steps":48,"width":512}"#
        );
        assert_eq!(p.rng_seed, Some(0));
        let req = build(
            ModalKind::ImageEdit,
            json!({"text": "swap colours"}),
            Some(vec![9; 3]),
        )
        .unwrap();
        let p = &req.prompts[0];
        assert_eq!(p.task_name.as_deref(), Some("image_to_image"));
        assert_eq!(p.images, vec![vec![9; 3]]);
        assert_eq!(p.layout.as_ref().unwrap().len(), 2);
        crate::wire::encode_request(&req).unwrap();
        assert!(build(ModalKind::ImageEdit, json!({"text": "x"}), None)
            .unwrap_err()
            .message
            .starts_with("image: "));
    }

    #[test]
    fn bad_input_names_the_field() {
        for (kind, input, field) in [
            (ModalKind::Speech, json!({"text": ""}), "text:"),
            (ModalKind::ImageGenerate, json!({"text": " "}), "prompt:"),
            (
                ModalKind::Speech,
                json!({"text": "a", "options": {"sampleRate": 0}}),
                "options.sampleRate:",
            ),
            (
                ModalKind::Speech,
                json!({"text": "a", "options": {"sampleRate": "fast"}}),
                "options.sampleRate:",
            ),
            (
                ModalKind::Speech,
                json!({"text": "a", "options": {"volume": 3}}),
                "options.volume:",
            ),
            (
                ModalKind::ImageGenerate,
                json!({"text": "a", "options": {"guidanceScale": "x"}}),
                "options.guidanceScale:",
            ),
            (
                ModalKind::ImageGenerate,
                json!({"text": "a", "options": {"modalOptions": 3}}),
                "options.modalOptions:",
            ),
            (
                ModalKind::Transcribe,
                json!({"options": {"temperature": 1}}),
                "options.temperature:",
            ),
        ] {
            let e = build(kind, input.clone(), None).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e.message.starts_with(field), "{input}: {}", e.message);
        }
        assert!(ModalKind::parse("paint").is_err());
    }
}
