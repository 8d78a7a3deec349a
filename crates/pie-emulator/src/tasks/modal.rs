//! Modal requests in the emulator: text to speech (`request_type: audio`, task
//! `text_to_speech`), speech to text (`omni`: one float32 PCM buffer) and image generation
//! and editing (`image`, tasks `text_to_image` / `image_to_image`).
//!
//! Artifacts are small but valid files, deterministic for the input: a 16-bit mono WAV
//! (`audio/wav`, decoder `tts`) and an RGB PNG (`image/png`, decoder `flux` for generation,
//! `qwen_image_edit` for edits). Each comes as one `artifact.done` delta with
//! `modal_metadata_json` describing it, before the final delta. A transcript is plain text
//! deltas.

use orchard_core::wire::request::{PromptPayload, RequestType};
use orchard_core::wire::Delta;
use serde_json::{json, Value};

use super::{final_delta, fnv, modal_delta, text_delta};
use crate::lm::Model;
use crate::sequence::{error_delta, SeqIds, Sequence, SequenceSpec};

/// Largest side of a generated PNG; larger requests are scaled down (the metadata says so).
pub const MAX_IMAGE_SIDE: u64 = 64;
/// Milliseconds of speech per word of text.
const MS_PER_WORD: u64 = 20;

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
            let words = text.split_whitespace().count().max(1) as u64;
            let samples = rate * MS_PER_WORD * words / 1000;
            let wav = wav(rate as u32, samples as usize, fnv(&[text.as_bytes()]));
            let meta = json!({"sample_rate": rate, "channels": 1, "duration_ms": samples * 1000 / rate,
                "reference_audio": !p.audio.is_empty()});
            Ok(vec![artifact(
                ids,
                "audio",
                "audio/wav",
                "tts",
                &wav,
                &meta,
            )])
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
            let scale = w.max(h).div_ceil(MAX_IMAGE_SIDE).max(1);
            let (pw, ph) = ((w / scale).max(1), (h / scale).max(1));
            let seed = fnv(&[text.as_bytes(), source.map_or(&[][..], Vec::as_slice)]);
            let png = png(pw as u32, ph as u32, seed);
            let decoder = if edit { "qwen_image_edit" } else { "flux" };
            let meta =
                json!({"width": pw, "height": ph, "requested_width": w, "requested_height": h});
            Ok(vec![artifact(
                ids,
                "image",
                "image/png",
                decoder,
                &png,
                &meta,
            )])
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

fn artifact(
    ids: &SeqIds,
    kind: &str,
    mime: &str,
    decoder: &str,
    bytes: &[u8],
    meta: &Value,
) -> Delta {
    Delta {
        modal_type: Some(kind.to_string()),
        modal_event: Some("artifact.done".to_string()),
        modal_mime_type: Some(mime.to_string()),
        modal_metadata_json: Some(meta.to_string()),
        ..modal_delta(ids, None, decoder, bytes)
    }
}

/// A mono 16-bit PCM WAV: a quiet tone whose pitch depends on `seed`.
pub fn wav(rate: u32, samples: usize, seed: u64) -> Vec<u8> {
    let pitch = 220.0 + (seed % 440) as f64;
    let data: Vec<u8> = (0..samples)
        .flat_map(|i| {
            {
                let t = i as f64 / f64::from(rate);
                ((t * pitch * std::f64::consts::TAU).sin() * 8000.0) as i16
            }
            .to_le_bytes()
        })
        .collect();
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
        c
    })
}

fn adler32(bytes: &[u8]) -> u32 {
    let (a, b) = bytes.iter().fold((1u32, 0u32), |(a, b), &x| {
        let a = (a + u32::from(x)) % 65_521;
        (a, (b + a) % 65_521)
    });
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An 8-bit RGB PNG with a gradient whose colours depend on `seed` (stored, uncompressed
/// deflate blocks: valid for any reader, small at these sizes).
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let [r0, g0, b0, ..] = seed.to_le_bytes();
    let mut raw = Vec::with_capacity((height * (1 + 3 * width)) as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let fx = (x * 255 / width.max(1)) as u8;
            let fy = (y * 255 / height.max(1)) as u8;
            raw.extend_from_slice(&[r0 ^ fx, g0 ^ fy, b0]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tasks::test_ids as ids;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn wav_and_png_headers_are_well_formed() {
        let w = wav(24_000, 480, 7);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes(w[4..8].try_into().unwrap()) as usize,
            w.len() - 8
        );
        assert_eq!(u32::from_le_bytes(w[40..44].try_into().unwrap()), 960);
        let p = png(3, 2, 9);
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(p[16..20].try_into().unwrap()), 3);
        assert_eq!(&p[p.len() - 8..p.len() - 4], b"IEND");
        assert_eq!(png(3, 2, 9), p);
        assert_ne!(png(3, 2, 10), p);
    }

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
}
