//! Embeddings: one `request_type: embedding` request for a batch of texts (one prompt per
//! text), and the collector that turns its final deltas back into vectors in input order.
//!
//! The engine answers each prompt with one final delta carrying `embedding_bytes` (float32
//! little-endian; base64 text or a JSON array of bytes on the wire, both read by
//! [`crate::wire::Delta`]) and `prompt_token_count`.

use serde_json::Value;

use crate::chat::Target;
use crate::error::{Error, ErrorCode, Result};
use crate::wire::json::type_name;
use crate::wire::{Delta, PromptPayload, Request, RequestType};

/// Parse the `input` of an embedding call: one string, or a non-empty array of strings.
/// Every text must be non-empty; errors name the field (`input`, `input[2]`).
pub fn parse_inputs(v: Value) -> Result<Vec<String>> {
    let texts = match v {
        Value::String(s) => {
            if s.is_empty() {
                return Err(Error::invalid(
                    "input: expected a non-empty string (an empty text has no embedding)",
                ));
            }
            return Ok(vec![s]);
        }
        Value::Array(items) => items,
        other => {
            return Err(Error::invalid(format!(
                "input: expected a string or an array of strings, got {}",
                type_name(&other)
            )))
        }
    };
    if texts.is_empty() {
        return Err(Error::invalid(
            "input: expected at least one text (the array is empty)",
        ));
    }
    texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::String(_) => Err(Error::invalid(format!(
                "input[{i}]: expected a non-empty string (an empty text has no embedding)"
            ))),
            other => Err(Error::invalid(format!(
                "input[{i}]: expected a string, got {}",
                type_name(&other)
            ))),
        })
        .collect()
}

/// One embedding request: a prompt per text (its `prompt_index` is the text's position),
/// nothing generated, one sequence each, the plain text layout. No seed is sent: an
/// embedding does not sample, so the engine's deterministic default is as good as any.
pub fn build_request(texts: &[String], target: &Target) -> Result<Request> {
    if texts.is_empty() {
        return Err(Error::invalid("input: expected at least one text"));
    }
    let prompts = texts
        .iter()
        .map(|t| PromptPayload {
            text: t.as_bytes().to_vec(),
            max_generated_tokens: 0,
            num_candidates: 1,
            best_of: 1,
            final_candidates: 1,
            repetition_context_size: 0,
            rng_seed: None,
            ..PromptPayload::default()
        })
        .collect();
    Ok(Request {
        request_id: target.request_id,
        model_id: target.model_id.to_string(),
        model_path: target.model_path.to_string(),
        request_type: RequestType::Embedding,
        request_channel_id: 0,
        response_channel_id: target.response_channel_id,
        prompts,
    })
}

/// Float32 little-endian bytes → values. A length that is not a multiple of 4 is a
/// protocol error (a truncated vector must not pass as a shorter one).
pub fn decode_f32_le(bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return Err(Error::protocol(format!(
            "embedding_bytes: {} bytes is not a whole number of float32 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The vectors of one embedding request, in input order.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// Every vector back to back: `vectors[i * dimensions .. (i + 1) * dimensions]` is text i.
    pub vectors: Vec<f32>,
    pub dimensions: usize,
    pub count: usize,
    /// Prompt tokens over all texts.
    pub prompt_tokens: u64,
}

/// Collects the final deltas of an embedding request by `prompt_index`.
pub struct EmbeddingCollector {
    vectors: Vec<Option<Vec<f32>>>,
    prompt_tokens: u64,
}

impl EmbeddingCollector {
    pub fn new(count: usize) -> EmbeddingCollector {
        EmbeddingCollector {
            vectors: vec![None; count],
            prompt_tokens: 0,
        }
    }

    /// Take one delta. Error deltas fail the request with the engine's message; a delta
    /// without an embedding that is not final is ignored (progress, if an engine sends any).
    pub fn add(&mut self, d: &Delta) -> Result<()> {
        if d.is_error() || d.error_message.is_some() {
            return Err(Error::new(ErrorCode::Engine, d.error_text()));
        }
        let Some(bytes) = &d.embedding_bytes else {
            if d.is_final_delta {
                let why = d
                    .finish_reason_normalized()
                    .map_or(String::new(), |r| format!(" (finish_reason '{r}')"));
                return Err(Error::protocol(format!(
                    "the engine ended prompt {} of an embedding request without an embedding{why}",
                    d.prompt_index.unwrap_or(0)
                )));
            }
            return Ok(());
        };
        let index = d.prompt_index.unwrap_or(0) as usize;
        let count = self.vectors.len();
        let slot = self.vectors.get_mut(index).ok_or_else(|| {
            Error::protocol(format!(
                "embedding delta for prompt_index {index}, but the request has {count} input(s)"
            ))
        })?;
        if slot.is_some() {
            return Err(Error::protocol(format!(
                "two embeddings for prompt_index {index}"
            )));
        }
        *slot = Some(decode_f32_le(bytes)?);
        self.prompt_tokens += d.prompt_token_count.unwrap_or(0);
        Ok(())
    }

    /// The vectors once every prompt has one; they must all have the same (non-zero) length.
    pub fn finish(self) -> Result<Embeddings> {
        let count = self.vectors.len();
        let mut dimensions = None;
        let mut flat = Vec::new();
        for (i, v) in self.vectors.into_iter().enumerate() {
            let v = v.ok_or_else(|| {
                Error::new(
                    ErrorCode::DeltasLost,
                    format!("the embedding request ended without a vector for input[{i}]"),
                )
            })?;
            match dimensions {
                None if v.is_empty() => {
                    return Err(Error::protocol(format!(
                        "the engine sent an empty embedding for input[{i}]"
                    )))
                }
                None => {
                    dimensions = Some(v.len());
                    flat.reserve(v.len() * count);
                }
                Some(n) if n != v.len() => {
                    return Err(Error::protocol(format!(
                        "embeddings of different lengths in one request: {n} values for input[0], {} for input[{i}]",
                        v.len()
                    )))
                }
                Some(_) => {}
            }
            flat.extend_from_slice(&v);
        }
        Ok(Embeddings {
            vectors: flat,
            dimensions: dimensions.unwrap_or(0),
            count,
            prompt_tokens: self.prompt_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn target() -> Target<'static> {
        Target {
            request_id: 7,
            model_id: "m",
            model_path: "/models/m",
            response_channel_id: 99,
        }
    }

    #[test]
    fn inputs_are_a_string_or_non_empty_strings() {
        assert_eq!(parse_inputs(json!("hi")).unwrap(), vec!["hi"]);
        assert_eq!(parse_inputs(json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        for (v, field) in [
            (json!(""), "input:"),
            (json!([]), "input:"),
            (json!(null), "input:"),
            (json!(3), "input:"),
            (json!(["a", 1]), "input[1]:"),
            (json!(["a", "b", ""]), "input[2]:"),
            (json!([null]), "input[0]:"),
        ] {
            let e = parse_inputs(v.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{v}");
            assert!(e.message.starts_with(field), "{v}: {}", e.message);
        }
    }

    #[test]
    fn one_request_with_a_prompt_per_text() {
        let texts = vec!["apples".to_string(), "pears and plums".to_string()];
        let req = build_request(&texts, &target()).unwrap();
        assert_eq!(req.request_type, RequestType::Embedding);
        assert_eq!(req.request_id, 7);
        assert_eq!(req.model_id, "m");
        assert_eq!(req.model_path, "/models/m");
        assert_eq!(req.prompts.len(), 2);
        assert_eq!(req.expected_finals(), 2);
        for (p, t) in req.prompts.iter().zip(&texts) {
            assert_eq!(p.text, t.as_bytes());
            assert_eq!(p.max_generated_tokens, 0);
            assert_eq!((p.num_candidates, p.best_of, p.final_candidates), (1, 1, 1));
            assert_eq!(p.repetition_context_size, 0);
            assert!(p.images.is_empty() && p.audio.is_empty() && p.layout.is_none());
        }
        // It encodes, and decodes back to the same request.
        let frame = crate::wire::encode_request(&req).unwrap();
        let back = crate::wire::decode_request(&frame).unwrap();
        assert_eq!(back.request_type, RequestType::Embedding);
        assert_eq!(back.prompts.len(), 2);
        assert_eq!(back.prompts[1].text, b"pears and plums");
        assert!(build_request(&[], &target()).is_err());
    }

    #[test]
    fn float32_little_endian() {
        let bytes: Vec<u8> = [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(decode_f32_le(&bytes).unwrap(), vec![1.5, -2.0, 0.25]);
        assert_eq!(decode_f32_le(&[]).unwrap(), Vec::<f32>::new());
        let e = decode_f32_le(&bytes[..5]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Protocol);
    }

    fn delta(index: u32, vector: &[f32], as_array: bool, tokens: u64) -> Delta {
        let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
        let field = if as_array {
            json!(bytes)
        } else {
            json!(base64::engine::general_purpose::STANDARD.encode(&bytes))
        };
        let body = json!({"request_id": 7, "prompt_index": index, "is_final_delta": true,
            "finish_reason": "stop", "embedding_bytes": field, "prompt_token_count": tokens});
        Delta::from_json(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn collects_in_input_order_from_base64_or_byte_arrays() {
        let mut c = EmbeddingCollector::new(3);
        c.add(&delta(2, &[5.0, 6.0], false, 4)).unwrap();
        c.add(&delta(0, &[1.0, 2.0], true, 1)).unwrap();
        c.add(&delta(1, &[3.0, 4.0], false, 2)).unwrap();
        let e = c.finish().unwrap();
        assert_eq!(e.vectors, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!((e.dimensions, e.count, e.prompt_tokens), (2, 3, 7));
    }

    #[test]
    fn bad_answers_fail_the_request() {
        // A missing vector.
        let mut c = EmbeddingCollector::new(2);
        c.add(&delta(0, &[1.0], false, 1)).unwrap();
        assert_eq!(c.finish().unwrap_err().code, ErrorCode::DeltasLost);
        // Different lengths.
        let mut c = EmbeddingCollector::new(2);
        c.add(&delta(0, &[1.0], false, 1)).unwrap();
        c.add(&delta(1, &[1.0, 2.0], false, 1)).unwrap();
        assert_eq!(c.finish().unwrap_err().code, ErrorCode::Protocol);
        // An index out of range, and a duplicate.
        let mut c = EmbeddingCollector::new(1);
        assert_eq!(
            c.add(&delta(1, &[1.0], false, 1)).unwrap_err().code,
            ErrorCode::Protocol
        );
        c.add(&delta(0, &[1.0], false, 1)).unwrap();
        assert_eq!(
            c.add(&delta(0, &[1.0], false, 1)).unwrap_err().code,
            ErrorCode::Protocol
        );
        // An error delta carries the engine's message.
        let err = Delta::from_json(
            br#"{"request_id":7,"prompt_index":0,"is_final_delta":true,"finish_reason":"error","error_message":"no such model"}"#,
        )
        .unwrap();
        let e = EmbeddingCollector::new(1).add(&err).unwrap_err();
        assert_eq!(e.code, ErrorCode::Engine);
        assert_eq!(e.message, "no such model");
        // A final delta without a vector (e.g. cancelled).
        let bare = Delta::from_json(
            br#"{"request_id":7,"prompt_index":0,"is_final_delta":true,"finish_reason":"cancelled"}"#,
        )
        .unwrap();
        let e = EmbeddingCollector::new(1).add(&bare).unwrap_err();
        assert!(e.message.contains("cancelled"), "{}", e.message);
    }
}
