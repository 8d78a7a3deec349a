//! Moondream 3 in the emulator: a model whose `config.json` says `model_type` `moondream3`
//! (or `moondream`) answers every generation request with a scripted vision task, chosen by
//! the prompt's `task_name` and decided by a hash of the image and the prompt:
//!
//! - `caption_short|normal|long`: caption text, one word a delta;
//! - `point`: 1–3 points, each two `moondream3.coord` deltas (x, then y: one LE f32 each);
//! - `detect`: 1–2 boxes, each a centre (two coord deltas) and a `moondream3.size` delta
//!   (width and height, two LE f32);
//! - `detect_gaze`: the gaze point for the eye given as a `coord` capability input;
//! - no task (a query): with reasoning (the prompt ends with the thinking start token),
//!   reasoning text with one grounded span (the question's last word between the
//!   `start_ground` and `end_ground` tokens, with two points), the `answer` token, then the
//!   answer; without, only the answer.
//!
//! Token ids are the reference clients' fallbacks (the emulator reports no capabilities):
//! answer 3, coord 5, size 6, start_ground 7, placeholder 8, end_ground 9. Text tokens get
//! ids from [`TEXT_TOKEN_BASE`] up, clear of those. Coordinates are multiples of 1/1024, so
//! they are exact in f32 and f64.

use std::path::Path;

use orchard_core::wire::request::PromptPayload;
use orchard_core::wire::Delta;
use serde_json::Value;

use super::{final_delta, fnv, modal_delta, text_delta};
use crate::lm::Model;
use crate::sequence::{error_delta, SeqIds, Sequence, SequenceSpec};

pub const ANSWER: i64 = 3;
pub const COORD: i64 = 5;
pub const SIZE: i64 = 6;
pub const START_GROUND: i64 = 7;
pub const END_GROUND: i64 = 9;
pub const TEXT_TOKEN_BASE: i64 = 1000;
pub const COORD_DECODER: &str = "moondream3.coord";
pub const SIZE_DECODER: &str = "moondream3.size";
/// The thinking start token: a query prompt ending with it asks for reasoning.
const THINK: &str = "<|md_reserved_3|>";
const USER_OPEN: &str = "<|md_reserved_0|>";
const USER_CLOSE: &str = "<|md_reserved_1|>";
const ANSWER_OPEN: &str = "<|md_reserved_2|>";

/// Whether the model at `model_path` is a Moondream model (its `config.json` `model_type`).
pub fn serves(model_path: Option<&str>) -> bool {
    let Some(path) = model_path else {
        return false;
    };
    std::fs::read(Path::new(path).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| {
            c.get("model_type")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .is_some_and(|t| t == "moondream3" || t == "moondream")
}

/// The scripted sequence of one prompt (an error delta when the task cannot run).
pub fn sequence(spec: SequenceSpec, lm: &Model, p: &PromptPayload, text: &str) -> Sequence {
    let script = match script(&spec.ids, p, text) {
        Ok(deltas) => finish(&spec, p, deltas),
        Err(msg) => vec![error_delta(&spec.ids, &msg)],
    };
    Sequence::prefilled(spec, lm, script)
}

/// The deltas before the final one, cut to `max_generated_tokens`; the final delta closes
/// them with the token count.
fn finish(spec: &SequenceSpec, p: &PromptPayload, mut deltas: Vec<Delta>) -> Vec<Delta> {
    let max = p.max_generated_tokens;
    let mut tokens = 0u64;
    let mut keep = deltas.len();
    for (i, d) in deltas.iter().enumerate() {
        let n = d.tokens.len() as u64;
        if max > 0 && tokens + n > max {
            keep = i;
            break;
        }
        tokens += n;
    }
    let reason = if keep < deltas.len() {
        "length"
    } else {
        "stop"
    };
    deltas.truncate(keep);
    let last = match deltas.pop() {
        Some(d) => d,
        None => spec.ids.head(),
    };
    deltas.push(final_delta(
        &spec.ids,
        spec.prompt_tokens,
        tokens,
        reason,
        last,
    ));
    deltas
}

/// A coordinate in [lo, lo + span) from hash bits, a multiple of 1/1024.
fn coord(h: u64, shift: u32, lo: f32, span: f32) -> f32 {
    let steps = (span * 1024.0) as u64;
    lo + ((h >> shift) % steps.max(1)) as f32 / 1024.0
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Text deltas, one per word (with its leading space) or per character of `text`.
fn words(ids: &SeqIds, text: &str, per_char: bool) -> Vec<Delta> {
    let mut pieces: Vec<String> = Vec::new();
    if per_char {
        pieces.extend(text.chars().map(String::from));
    } else {
        for (i, w) in text.split(' ').enumerate() {
            pieces.push(if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            });
        }
    }
    pieces
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            let token = TEXT_TOKEN_BASE + (fnv(&[p.as_bytes()]) % 30_000) as i64;
            text_delta(ids, &p, token)
        })
        .collect()
}

/// The deltas of `n` hash-chosen instances, each from its own hash.
fn instances<const K: usize>(h: u64, n: u64, each: impl Fn(u64) -> [Delta; K]) -> Vec<Delta> {
    (0..n)
        .flat_map(|i| each(fnv(&[&h.to_le_bytes(), &[i as u8]])))
        .collect()
}

fn point_deltas(ids: &SeqIds, x: f32, y: f32) -> [Delta; 2] {
    [
        modal_delta(ids, Some(COORD), COORD_DECODER, &f32s(&[x])),
        modal_delta(ids, Some(COORD), COORD_DECODER, &f32s(&[y])),
    ]
}

/// The text between `open` and `close` in the prompt (after the last `open`).
fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.rfind(open).map_or(0, |i| i + open.len());
    let rest = &text[start..];
    rest.find(close).map_or(rest, |i| &rest[..i])
}

fn script(ids: &SeqIds, p: &PromptPayload, text: &str) -> Result<Vec<Delta>, String> {
    let image = p.images.first();
    let h = fnv(&[image.map_or(&[][..], Vec::as_slice), text.as_bytes()]);
    let task = p.task_name.as_deref().unwrap_or("");
    let needs_image = |task: &str| {
        image
            .map(|_| ())
            .ok_or_else(|| format!("moondream task '{task}' needs an image in the prompt"))
    };
    match task {
        "caption_short" | "caption_normal" | "caption_long" => {
            needs_image(task)?;
            let colour = ["red", "green", "golden"][(h % 3) as usize];
            let short = format!("Ripe {colour} apples on a branch.");
            let normal = format!(
                "A branch of ripe {colour} apples hangs in an orchard, with green leaves around the fruit."
            );
            let caption = match task {
                "caption_short" => short,
                "caption_normal" => normal,
                _ => format!("{normal} Sunlight falls through the trees, and a wooden ladder leans against a trunk in the background."),
            };
            Ok(words(ids, &caption, false))
        }
        "point" => {
            needs_image(task)?;
            Ok(instances(h, 1 + h % 3, |g| {
                point_deltas(ids, coord(g, 0, 0.0625, 0.875), coord(g, 16, 0.0625, 0.875))
            }))
        }
        "detect" => {
            needs_image(task)?;
            Ok(instances(h, 1 + h % 2, |g| {
                let [x, y] = point_deltas(ids, coord(g, 0, 0.25, 0.5), coord(g, 16, 0.25, 0.5));
                let size = [coord(g, 32, 0.0625, 0.4375), coord(g, 48, 0.0625, 0.4375)];
                [x, y, modal_delta(ids, Some(SIZE), SIZE_DECODER, &f32s(&size))]
            }))
        }
        "detect_gaze" => {
            needs_image(task)?;
            let eye = p
                .capabilities
                .iter()
                .find(|c| c.name == "coord" && c.payload.len() == 8)
                .ok_or("moondream task 'detect_gaze' needs the eye position as a coord capability input (x, y)")?;
            let at = |i: usize| f32::from_le_bytes(eye.payload[i..i + 4].try_into().unwrap());
            // Look across the image from the eye, by a hash-chosen amount.
            let gx = (1.0 - at(0)).clamp(0.0, 1.0);
            let gy = (at(4) + coord(h, 0, 0.0, 0.25)).clamp(0.0, 1.0);
            let q = |v: f32| (v * 1024.0).round() / 1024.0;
            Ok(point_deltas(ids, q(gx), q(gy)).into())
        }
        "" => Ok(query(ids, p, text, h)),
        other => Err(format!(
            "unknown moondream task '{other}'; expected caption_short, caption_normal, caption_long, point, detect or detect_gaze"
        )),
    }
}

/// A query: optional grounded reasoning about the question's last word, then the answer.
fn query(ids: &SeqIds, p: &PromptPayload, text: &str, h: u64) -> Vec<Delta> {
    let reasoning = text.ends_with(THINK);
    let question = between(text, &format!("{USER_OPEN}query{USER_CLOSE}"), THINK);
    let question = question.strip_suffix(ANSWER_OPEN).unwrap_or(question);
    let subject = question
        .split_whitespace()
        .last()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .filter(|w| !w.is_empty())
        .unwrap_or("the scene");
    let refs: Vec<String> = p
        .capabilities
        .iter()
        .filter(|c| c.name == "coord" && c.payload.len() == 8)
        .map(|c| {
            let v = |i: usize| f32::from_le_bytes(c.payload[i..i + 4].try_into().unwrap());
            format!("({:.2}, {:.2})", v(0), v(4))
        })
        .collect();
    let mut out = Vec::new();
    if reasoning {
        out.extend(words(ids, "Looking at the image for ", false));
        out.push(text_delta(ids, "", START_GROUND));
        out.extend(words(ids, subject, true));
        out.extend(instances(h, 2, |g| {
            point_deltas(ids, coord(g, 0, 0.125, 0.75), coord(g, 16, 0.125, 0.75))
        }));
        out.push(text_delta(ids, "", END_GROUND));
        out.extend(words(ids, ", I find it in two places.", false));
        out.push(text_delta(ids, "", ANSWER));
    }
    let answer = match (refs.first(), p.images.is_empty()) {
        (Some(at), _) => format!("At {at} there is an apple, near {subject}."),
        (None, false) => format!("The image shows {subject} among apple trees."),
        (None, true) => format!("You asked about {subject}."),
    };
    out.extend(words(ids, &answer, false));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_core::wire::request::CapabilityInput;

    use crate::tasks::test_ids as ids;

    fn prompt(task: Option<&str>, image: bool) -> PromptPayload {
        PromptPayload {
            task_name: task.map(str::to_string),
            images: if image {
                vec![vec![0x89, b'P', b'N', b'G']]
            } else {
                vec![]
            },
            ..PromptPayload::default()
        }
    }

    fn coords(deltas: &[Delta], decoder: &str) -> Vec<f32> {
        use base64::Engine as _;
        deltas
            .iter()
            .filter(|d| d.modal_decoder_id.as_deref() == Some(decoder))
            .flat_map(|d| {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(d.modal_bytes_b64.as_ref().unwrap())
                    .unwrap();
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn text(deltas: &[Delta]) -> String {
        deltas.iter().filter_map(|d| d.content.clone()).collect()
    }

    #[test]
    fn captions_points_and_boxes_are_deterministic() {
        for length in ["caption_short", "caption_normal", "caption_long"] {
            let d = script(&ids(), &prompt(Some(length), true), "x").unwrap();
            assert!(text(&d).contains("apples"), "{}", text(&d));
            assert_eq!(d, script(&ids(), &prompt(Some(length), true), "x").unwrap());
        }
        let d = script(&ids(), &prompt(Some("point"), true), "eyes").unwrap();
        let xy = coords(&d, COORD_DECODER);
        assert!(!xy.is_empty() && xy.len() % 2 == 0);
        assert!(xy
            .iter()
            .all(|v| (0.0..=1.0).contains(v) && (v * 1024.0).fract() == 0.0));
        let d = script(&ids(), &prompt(Some("detect"), true), "apple").unwrap();
        let centres = coords(&d, COORD_DECODER);
        let sizes = coords(&d, SIZE_DECODER);
        assert_eq!(centres.len(), sizes.len());
        assert!(d.iter().all(|x| !x.is_final_delta));
    }

    #[test]
    fn gaze_needs_an_eye_and_tasks_need_an_image() {
        let mut p = prompt(Some("detect_gaze"), true);
        assert!(script(&ids(), &p, "x")
            .unwrap_err()
            .contains("eye position"));
        p.capabilities.push(CapabilityInput {
            name: "coord".into(),
            position: 0,
            payload: f32s(&[0.25, 0.5]),
        });
        let xy = coords(&script(&ids(), &p, "x").unwrap(), COORD_DECODER);
        assert_eq!(xy.len(), 2);
        assert_eq!(xy[0], 0.75);
        assert!((0.5..=0.75).contains(&xy[1]), "{}", xy[1]);
        let e = script(&ids(), &prompt(Some("point"), false), "x").unwrap_err();
        assert!(e.contains("needs an image"), "{e}");
        let e = script(&ids(), &prompt(Some("paint"), true), "x").unwrap_err();
        assert!(e.contains("unknown moondream task 'paint'"), "{e}");
    }

    #[test]
    fn a_reasoning_query_grounds_the_last_word_of_the_question() {
        let prompt_text =
            format!("<|endoftext|>{USER_OPEN}query{USER_CLOSE}Where is the 🍎苹果?{THINK}");
        let d = script(&ids(), &prompt(None, true), &prompt_text).unwrap();
        let start = d.iter().position(|x| x.tokens == [START_GROUND]).unwrap();
        let end = d.iter().position(|x| x.tokens == [END_GROUND]).unwrap();
        let answer = d.iter().position(|x| x.tokens == [ANSWER]).unwrap();
        assert!(start < end && end < answer);
        assert_eq!(text(&d[start..end]), "🍎苹果");
        assert_eq!(coords(&d[start..end], COORD_DECODER).len(), 4);
        assert!(text(&d[answer..]).contains("🍎苹果"));
        // Without reasoning: only the answer.
        let plain = format!("{USER_OPEN}query{USER_CLOSE}What is this?{ANSWER_OPEN}");
        let d = script(&ids(), &prompt(None, false), &plain).unwrap();
        assert_eq!(text(&d), "You asked about this.");
        assert!(d
            .iter()
            .all(|x| x.tokens.iter().all(|&t| t >= TEXT_TOKEN_BASE)));
    }

    #[test]
    fn a_long_script_is_cut_to_max_tokens() {
        let spec_ids = ids();
        let mut p = prompt(Some("caption_long"), true);
        p.max_generated_tokens = 3;
        let spec = SequenceSpec {
            ids: spec_ids.clone(),
            model: "m".into(),
            params: crate::sampler::SamplingParams::default(),
            seed: 1,
            max_tokens: 1,
            stops: Default::default(),
            boosted: Default::default(),
            prompt_tokens: 4,
            flood: false,
            plan: std::sync::Arc::new(crate::structured::Plan::plain_text()),
        };
        let d = finish(&spec, &p, script(&spec_ids, &p, "x").unwrap());
        assert_eq!(d.len(), 3);
        let last = d.last().unwrap();
        assert!(last.is_final_delta);
        assert_eq!(last.finish_reason.as_deref(), Some("length"));
        assert_eq!(last.generation_len, Some(3));
    }
}
