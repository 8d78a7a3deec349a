//! Every request frame of `__test__/fixtures/wire-vectors.json` (the reference serializer's
//! output), reproduced byte for byte.

use base64::Engine as _;
use orchard_core::wire::{self, vocab};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../__test__/fixtures/wire-vectors.json"
    );
    let text = std::fs::read_to_string(path)
        .expect("__test__/fixtures/wire-vectors.json in the repository");
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

#[test]
fn every_vector_encodes_byte_exact() {
    let vs = vectors();
    assert!(vs.len() >= 9);
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let input = serde_json::json!({ "request": v["request"], "prompts": v["prompts"] });
        let req = vocab::parse_request(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let frame = wire::encode_request(&req).unwrap();
        let want = base64::engine::general_purpose::STANDARD
            .decode(v["frame_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&frame[4..]),
            String::from_utf8_lossy(&want[4..]),
            "{name}"
        );
        assert_eq!(frame, want, "{name}");
        // The same from JSON text, as `wire.encodeRequest` hands it over.
        let from_text = orchard_core::api::encode_request(&input.to_string())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_text, want, "{name} from text");
    }
}

#[test]
fn every_vector_decodes_and_round_trips() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let frame = base64::engine::general_purpose::STANDARD
            .decode(v["frame_base64"].as_str().unwrap())
            .unwrap();
        let req = wire::decode_request(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(req.request_id, 7, "{name}");
        assert_eq!(wire::encode_request(&req).unwrap(), frame, "{name}");
    }
}

#[test]
fn damaged_frames_are_protocol_errors() {
    let v = &vectors()[0];
    let frame = base64::engine::general_purpose::STANDARD
        .decode(v["frame_base64"].as_str().unwrap())
        .unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        frame[..3].to_vec(),
        frame[..40].to_vec(),
        frame[..frame.len() - 10].to_vec(),
    ];
    let mut oversize = frame.clone();
    oversize[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(oversize);
    let mut bad_json = frame.clone();
    bad_json[4] = b'[';
    cases.push(bad_json);
    let wrong_type = {
        let meta_len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        let meta = String::from_utf8(frame[4..4 + meta_len].to_vec()).unwrap();
        let meta = meta.replace("\"text_size\":5", "\"text_size\":\"5x\"");
        let mut f = (meta.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(meta.as_bytes());
        f.extend_from_slice(&frame[4 + meta_len..]);
        f
    };
    cases.push(wrong_type);
    for (i, c) in cases.iter().enumerate() {
        let err = wire::decode_request(c).unwrap_err();
        assert_eq!(
            err.code,
            orchard_core::ErrorCode::Protocol,
            "case {i}: {err}"
        );
    }
}

#[test]
fn vocabulary_errors_name_the_field() {
    let v = &vectors()[0];
    let mut input = serde_json::json!({ "request": v["request"], "prompts": v["prompts"] });
    input["prompts"][0]["sampling_params"] = serde_json::json!({ "temperature": "hot" });
    let err = vocab::parse_request(&input).unwrap_err();
    assert!(
        err.message
            .contains("prompts[0].sampling_params.temperature"),
        "{err}"
    );
    input["prompts"][0]["sampling_params"] = serde_json::json!({ "temprature": 0.5 });
    let err = vocab::parse_request(&input).unwrap_err();
    assert!(err.message.contains("temprature"), "{err}");
    input["prompts"] = serde_json::json!([]);
    assert!(vocab::parse_request(&input).is_err());
}

#[test]
fn decoded_frames_round_trip_through_the_vocabulary() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let frame = base64::engine::general_purpose::STANDARD
            .decode(v["frame_base64"].as_str().unwrap())
            .unwrap();
        let vocab_form = vocab::to_vocab(&wire::decode_request(&frame).unwrap());
        let again = wire::encode_request(&vocab::parse_request(&vocab_form).unwrap()).unwrap();
        assert_eq!(again, frame, "{name}");
    }
}
