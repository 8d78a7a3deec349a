//! Modal requests in the emulator: text to speech (`request_type: audio`, task
//! `text_to_speech`), speech to text (`omni`: one float32 PCM buffer) and image generation
//! and editing (`image`, tasks `text_to_image` / `image_to_image`).
//!
//! Artifacts are small but valid files, deterministic for the input: 16-bit mono WAVs
//! (`audio/wav`, decoder `tts`) and RGB PNGs (`image/png`, decoder `flux` for generation,
//! `qwen_image_edit` for edits), each in its own delta with `modal_metadata_json` describing
//! it, one a scheduler step (so a cancel can land between two), before the final delta. Speech
//! comes one WAV per sentence (see [`segments`]); an image request of many steps sends small
//! previews first (see [`preview_steps`]). Every artifact but the last is `artifact.delta`,
//! the last `artifact.done`. A transcript is plain text deltas.

use orchard_core::wire::request::{PromptPayload, RequestType};
use orchard_core::wire::Delta;
use serde_json::{json, Value};

use super::files::{png, wav};
use super::{final_delta, fnv, modal_delta, text_delta};
use crate::lm::Model;
use crate::sequence::{error_delta, SeqIds, Sequence, SequenceSpec};

/// Largest side of a generated PNG; larger requests are scaled down (the metadata says so).
pub const MAX_IMAGE_SIDE: u64 = 64;
/// Largest side of an image preview.
pub const PREVIEW_SIDE: u64 = 16;
/// An image request of more steps than this sends a preview every this many steps.
pub const PREVIEW_EVERY: u64 = 64;
/// At most this many previews, however many steps are asked for.
pub const MAX_PREVIEWS: usize = 8;
/// Milliseconds of speech per word of text.
const MS_PER_WORD: u64 = 20;
/// Words a speech segment holds at most (a longer sentence is cut).
const WORDS_PER_SEGMENT: usize = 16;

/// The scripted sequence of one modal prompt (an error delta when it cannot run).
pub fn sequence(
    kind: RequestType,
    spec: SequenceSpec,
    lm: &Model,
    p: &PromptPayload,
    text: &str,
) -> Sequence {
    let script = match script(kind, &spec.ids, p, text) {
        Ok(mut deltas) => {
            let generated = deltas.iter().map(|d| d.tokens.len() as u64).sum();
            let last = final_delta(
                &spec.ids,
                spec.prompt_tokens,
                generated,
                "stop",
                spec.ids.head(),
            );
            deltas.push(last);
            deltas
        }
        Err(msg) => vec![error_delta(&spec.ids, &msg)],
    };
    Sequence::prefilled(spec, lm, script)
}

fn options(p: &PromptPayload) -> Result<Value, String> {
    if p.modal_options_json.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str::<Value>(&p.modal_options_json)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| "modal_options_json is not a JSON object".to_string())
}

fn script(
    kind: RequestType,
    ids: &SeqIds,
    p: &PromptPayload,
    text: &str,
) -> Result<Vec<Delta>, String> {
    let task = p.task_name.as_deref().unwrap_or("");
    match (kind, task) {
        (RequestType::Audio, "text_to_speech") => {
            let opts = options(p)?;
            let rate = opts
                .get("sample_rate")
                .and_then(Value::as_u64)
                .unwrap_or(24_000);
            if !(8_000..=96_000).contains(&rate) {
                return Err(format!(
                    "sample_rate {rate} is out of range (8000 to 96000)"
                ));
            }
            Ok(speech(ids, text, rate, !p.audio.is_empty()))
        }
        (RequestType::Image, "text_to_image" | "image_to_image") => {
            let opts = options(p)?;
            let edit = task == "image_to_image";
            let source = p.images.first();
            if edit && source.is_none() {
                return Err("image_to_image needs the image to edit".to_string());
            }
            let side = |key: &str| opts.get(key).and_then(Value::as_u64).unwrap_or(1024);
            let (w, h) = (side("width"), side("height"));
            if w == 0 || h == 0 {
                return Err(format!("image size {w}x{h} is empty"));
            }
            let steps = opts.get("num_steps").and_then(Value::as_u64).unwrap_or(0);
            // The request's seed picks the image too, so `n` images of one prompt differ.
            let rng_seed = p.rng_seed.unwrap_or(0).to_le_bytes();
            let seed = fnv(&[
                text.as_bytes(),
                source.map_or(&[][..], Vec::as_slice),
                &rng_seed,
            ]);
            let decoder = if edit { "qwen_image_edit" } else { "flux" };
            let mut out: Vec<Delta> = preview_steps(steps)
                .map(|step| {
                    let (pw, ph) = fit(w, h, PREVIEW_SIDE);
                    let png = png(pw, ph, fnv(&[&seed.to_le_bytes(), &step.to_le_bytes()]));
                    let meta = json!({"width": pw, "height": ph, "step": step, "num_steps": steps});
                    artifact(ids, "image", "image/png", decoder, &png, &meta, false)
                })
                .collect();
            let (pw, ph) = fit(w, h, MAX_IMAGE_SIDE);
            let png = png(pw, ph, seed);
            let meta =
                json!({"width": pw, "height": ph, "requested_width": w, "requested_height": h});
            out.push(artifact(
                ids,
                "image",
                "image/png",
                decoder,
                &png,
                &meta,
                true,
            ));
            Ok(out)
        }
        (RequestType::Omni, _) => {
            let samples: usize = p.audio.iter().map(|a| a.len() / 4).sum();
            if samples == 0 {
                return Ok(Vec::new());
            }
            let ms = samples as u64 * 1000 / 16_000;
            let heard = format!("I heard {ms} milliseconds of audio about apples.");
            Ok(heard
                .split(' ')
                .enumerate()
                .map(|(i, w)| {
                    let piece = if i == 0 {
                        w.to_string()
                    } else {
                        format!(" {w}")
                    };
                    text_delta(
                        ids,
                        &piece,
                        1000 + (fnv(&[piece.as_bytes()]) % 30_000) as i64,
                    )
                })
                .collect())
        }
        (k, t) => Err(format!(
            "the emulator has no '{t}' task for request type '{}'",
            RequestType::name(k)
        )),
    }
}

/// Speech for `text`: one WAV a segment, the last one `artifact.done`, the others
/// `artifact.delta`, in the order spoken.
fn speech(ids: &SeqIds, text: &str, rate: u64, reference_audio: bool) -> Vec<Delta> {
    let parts = segments(text);
    let voice = fnv(&[text.as_bytes()]);
    let mut start_ms = 0;
    parts
        .iter()
        .enumerate()
        .map(|(i, words)| {
            let samples = rate * MS_PER_WORD * (*words).max(1) as u64 / 1000;
            let duration_ms = samples * 1000 / rate;
            let wav = wav(
                rate as u32,
                samples as usize,
                fnv(&[&voice.to_le_bytes(), &(i as u64).to_le_bytes()]),
            );
            let meta = json!({"sample_rate": rate, "channels": 1, "duration_ms": duration_ms,
                "start_ms": start_ms, "segment": i, "reference_audio": reference_audio});
            start_ms += duration_ms;
            artifact(
                ids,
                "audio",
                "audio/wav",
                "tts",
                &wav,
                &meta,
                i + 1 == parts.len(),
            )
        })
        .collect()
}

/// The word counts of the segments `text` is spoken in: one a sentence (ended by `.`, `!`
/// or `?`), a longer sentence cut every [`WORDS_PER_SEGMENT`] words. Text without words is one
/// empty segment.
fn segments(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut words = 0;
    for word in text.split_whitespace() {
        words += 1;
        let ends = word
            .trim_end_matches(['"', '\'', ')', ']'])
            .ends_with(['.', '!', '?']);
        if ends || words == WORDS_PER_SEGMENT {
            out.push(words);
            words = 0;
        }
    }
    if words > 0 || out.is_empty() {
        out.push(words);
    }
    out
}

/// The denoising steps after which an image of `steps` steps sends a preview: every
/// [`PREVIEW_EVERY`] steps, the last step excluded (it is the final image), at most
/// [`MAX_PREVIEWS`] of them.
fn preview_steps(steps: u64) -> impl Iterator<Item = u64> {
    (1..steps.saturating_sub(1) / PREVIEW_EVERY + 1)
        .map(|k| k * PREVIEW_EVERY)
        .take(MAX_PREVIEWS)
}

/// `w`x`h` scaled down to at most `max` pixels a side, keeping the aspect.
fn fit(w: u64, h: u64, max: u64) -> (u32, u32) {
    let scale = w.max(h).div_ceil(max).max(1);
    ((w / scale).max(1) as u32, (h / scale).max(1) as u32)
}

fn artifact(
    ids: &SeqIds,
    kind: &str,
    mime: &str,
    decoder: &str,
    bytes: &[u8],
    meta: &Value,
    done: bool,
) -> Delta {
    let event = if done {
        "artifact.done"
    } else {
        "artifact.delta"
    };
    Delta {
        modal_type: Some(kind.to_string()),
        modal_event: Some(event.to_string()),
        modal_mime_type: Some(mime.to_string()),
        modal_metadata_json: Some(meta.to_string()),
        ..modal_delta(ids, None, decoder, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tasks::test_ids as ids;

    #[test]
    fn speech_images_and_transcripts() {
        let mut p = PromptPayload {
            task_name: Some("text_to_speech".into()),
            modal_options_json: r#"{"sample_rate":16000}"#.into(),
            ..PromptPayload::default()
        };
        let d = script(RequestType::Audio, &ids(), &p, "hello there").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].modal_mime_type.as_deref(), Some("audio/wav"));
        assert_eq!(d[0].modal_event.as_deref(), Some("artifact.done"));
        let meta: Value = serde_json::from_str(d[0].modal_metadata_json.as_ref().unwrap()).unwrap();
        assert_eq!(meta["sample_rate"], 16_000);
        assert_eq!(meta["duration_ms"], 40);
        assert_eq!(meta["segment"], 0);
        p.modal_options_json = r#"{"sample_rate":1}"#.into();
        assert!(script(RequestType::Audio, &ids(), &p, "x")
            .unwrap_err()
            .contains("sample_rate"));

        p.task_name = Some("image_to_image".into());
        p.modal_options_json = r#"{"width":512,"height":256}"#.into();
        assert!(script(RequestType::Image, &ids(), &p, "x")
            .unwrap_err()
            .contains("needs the image"));
        p.images.push(png(1, 1, 0));
        let d = script(RequestType::Image, &ids(), &p, "swap colours").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].modal_decoder_id.as_deref(), Some("qwen_image_edit"));
        let meta: Value = serde_json::from_str(d[0].modal_metadata_json.as_ref().unwrap()).unwrap();
        assert_eq!(
            (meta["width"].as_u64(), meta["height"].as_u64()),
            (Some(64), Some(32))
        );

        let stt = PromptPayload {
            audio: vec![vec![0; 4 * 16_000]],
            ..PromptPayload::default()
        };
        let d = script(RequestType::Omni, &ids(), &stt, "").unwrap();
        let text: String = d.iter().filter_map(|x| x.content.clone()).collect();
        assert_eq!(text, "I heard 1000 milliseconds of audio about apples.");
        assert!(
            script(RequestType::Omni, &ids(), &PromptPayload::default(), "")
                .unwrap()
                .is_empty()
        );
        let e = script(RequestType::Audio, &ids(), &PromptPayload::default(), "x").unwrap_err();
        assert!(e.contains("no '' task for request type 'audio'"), "{e}");
    }

    fn meta(d: &Delta) -> Value {
        serde_json::from_str(d.modal_metadata_json.as_ref().unwrap()).unwrap()
    }

    fn bytes(d: &Delta) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(d.modal_bytes_b64.as_ref().unwrap())
            .unwrap()
    }

    fn events(d: &[Delta]) -> Vec<&str> {
        d.iter().filter_map(|x| x.modal_event.as_deref()).collect()
    }

    #[test]
    fn speech_is_cut_at_sentences_and_long_runs_of_words() {
        assert_eq!(segments("Apples are ripe in the orchard"), vec![6]);
        assert_eq!(segments("  "), vec![0]);
        assert_eq!(segments("One. Two! Three? four"), vec![1, 1, 1, 1]);
        assert_eq!(segments("He said \"ripe.\" Then (left.) x"), vec![3, 2, 1]);
        let long = "word ".repeat(2 * WORDS_PER_SEGMENT + 3) + "end.";
        assert_eq!(
            segments(&long),
            vec![WORDS_PER_SEGMENT, WORDS_PER_SEGMENT, 4]
        );
    }

    #[test]
    fn speech_streams_one_valid_wav_a_segment_the_last_done() {
        let p = PromptPayload {
            task_name: Some("text_to_speech".into()),
            ..PromptPayload::default()
        };
        let text = "Apples are ripe. Pears are not! Plums?";
        let d = script(RequestType::Audio, &ids(), &p, text).unwrap();
        assert_eq!(
            events(&d),
            ["artifact.delta", "artifact.delta", "artifact.done"]
        );
        let mut start = 0;
        for (i, (x, words)) in d.iter().zip([3u64, 3, 1]).enumerate() {
            assert!(!x.is_final_delta);
            assert_eq!(x.modal_mime_type.as_deref(), Some("audio/wav"));
            assert_eq!(x.modal_decoder_id.as_deref(), Some("tts"));
            let w = bytes(x);
            assert_eq!((&w[..4], &w[8..16]), (&b"RIFF"[..], &b"WAVEfmt "[..]));
            assert_eq!(u32::from_le_bytes(w[24..28].try_into().unwrap()), 24_000);
            let data = u32::from_le_bytes(w[40..44].try_into().unwrap()) as u64;
            assert_eq!(data, 2 * 24 * MS_PER_WORD * words);
            assert_eq!(w.len() as u64, 44 + data);
            let m = meta(x);
            assert_eq!(m["segment"], i);
            assert_eq!(m["start_ms"], start);
            assert_eq!(m["duration_ms"], MS_PER_WORD * words);
            start += MS_PER_WORD * words;
        }
        // Each segment is its own tone; the same text speaks the same way again.
        assert_ne!(bytes(&d[0]), bytes(&d[1]));
        let again = script(RequestType::Audio, &ids(), &p, text).unwrap();
        assert_eq!(
            again.iter().map(bytes).collect::<Vec<_>>(),
            d.iter().map(bytes).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_request_seed_picks_the_image() {
        let image = |seed: u64| {
            let p = PromptPayload {
                task_name: Some("text_to_image".into()),
                modal_options_json: r#"{"width":64,"height":64}"#.into(),
                rng_seed: Some(seed),
                ..PromptPayload::default()
            };
            script(RequestType::Image, &ids(), &p, "an apple").unwrap()[0]
                .modal_bytes_b64
                .clone()
        };
        assert_eq!(image(1), image(1));
        assert_ne!(image(1), image(2));
    }

    #[test]
    fn many_step_images_send_previews_first() {
        assert_eq!(preview_steps(0).count(), 0);
        assert_eq!(preview_steps(PREVIEW_EVERY).count(), 0);
        assert_eq!(
            preview_steps(PREVIEW_EVERY + 1).collect::<Vec<_>>(),
            [PREVIEW_EVERY]
        );
        assert_eq!(
            preview_steps(3 * PREVIEW_EVERY).collect::<Vec<_>>(),
            [PREVIEW_EVERY, 2 * PREVIEW_EVERY]
        );
        // However many steps are asked for, a bounded number of previews.
        assert_eq!(preview_steps(u64::MAX).count(), MAX_PREVIEWS);
        let mut p = PromptPayload {
            task_name: Some("text_to_image".into()),
            modal_options_json: format!(r#"{{"width":512,"height":256,"num_steps":{}}}"#, 48),
            ..PromptPayload::default()
        };
        let plain = script(RequestType::Image, &ids(), &p, "an apple").unwrap();
        assert_eq!(events(&plain), ["artifact.done"]);
        p.modal_options_json = format!(
            r#"{{"width":512,"height":256,"num_steps":{}}}"#,
            3 * PREVIEW_EVERY
        );
        let d = script(RequestType::Image, &ids(), &p, "an apple").unwrap();
        assert_eq!(
            events(&d),
            ["artifact.delta", "artifact.delta", "artifact.done"]
        );
        for (x, step) in d.iter().zip([PREVIEW_EVERY, 2 * PREVIEW_EVERY]) {
            let png = bytes(x);
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(&png[12..16], b"IHDR");
            let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
            assert_eq!((size(16), size(20)), (16, 8));
            assert_eq!(crate::tasks::files::crc32(&png[12..29]), size(29));
            assert_eq!(
                meta(x),
                json!({"width": 16, "height": 8, "step": step, "num_steps": 3 * PREVIEW_EVERY})
            );
            assert_eq!(x.modal_decoder_id.as_deref(), Some("flux"));
        }
        assert_ne!(bytes(&d[0]), bytes(&d[1]));
        // The final image does not depend on the previews before it.
        assert_eq!(bytes(&d[2]), bytes(&plain[0]));
        assert_eq!(meta(&d[2]), meta(&plain[0]));
    }

    #[test]
    fn every_artifact_takes_its_own_step_then_the_final_delta() {
        use crate::sampler::SamplingParams;
        use crate::structured::Plan;
        use std::sync::Arc;
        let lm = Model::builtin();
        let spec = SequenceSpec {
            ids: ids(),
            model: "m".into(),
            params: SamplingParams::default(),
            seed: 0,
            max_tokens: 8,
            stops: Arc::new(Vec::new()),
            boosted: Arc::new(Vec::new()),
            prompt_tokens: 3,
            flood: false,
            plan: Arc::new(Plan::text()),
        };
        let p = PromptPayload {
            task_name: Some("text_to_speech".into()),
            ..PromptPayload::default()
        };
        let mut seq = sequence(RequestType::Audio, spec, &lm, &p, "One. Two. Three.");
        let mut steps = Vec::new();
        while !seq.done {
            steps.push(seq.advance(&lm).expect("a delta every step"));
        }
        assert_eq!(
            events(&steps),
            ["artifact.delta", "artifact.delta", "artifact.done"]
        );
        assert_eq!(steps.len(), 4);
        assert!(steps[..3]
            .iter()
            .all(|d| !d.is_final_delta && d.modal_bytes_b64.is_some()));
        let last = &steps[3];
        assert!(last.is_final_delta && last.modal_bytes_b64.is_none());
        assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    }
}
