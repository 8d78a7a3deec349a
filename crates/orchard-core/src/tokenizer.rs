//! Token id → text, from a Hugging Face `tokenizer.json`, for log-probabilities.
//!
//! The engine reports alternatives as token ids. Turning one id into its text needs only the
//! vocabulary and the decoder chain, not the whole tokenizer: byte-level models (GPT-2 style,
//! Llama 3, Qwen) map every byte to a printable character; SentencePiece models write spaces
//! as `▁` and unknown bytes as `<0xNN>`; WordPiece marks continuations with `##`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The bytes of every token id of one model.
#[derive(Debug)]
pub struct TokenDecoder {
    pieces: Vec<Option<Box<[u8]>>>,
}

#[derive(Clone, Copy, Default)]
struct Chain {
    byte_level: bool,
    metaspace: bool,
    byte_fallback: bool,
    wordpiece: bool,
}

impl TokenDecoder {
    /// Read `<dir>/tokenizer.json`; `Ok(None)` when the model has none.
    pub fn load(dir: &Path) -> Result<Option<TokenDecoder>> {
        let path = dir.join("tokenizer.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path.display().to_string(), e)),
        };
        let doc: Value =
            serde_json::from_slice(&text).map_err(|e| Error::not_json(path.display(), e))?;
        Self::from_json(&doc)
            .map(Some)
            .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message)))
    }

    /// Build from a parsed `tokenizer.json`.
    pub fn from_json(doc: &Value) -> Result<TokenDecoder> {
        let model = doc
            .get("model")
            .ok_or_else(|| Error::invalid("no \"model\" section"))?;
        let mut chain = Chain::default();
        if let Some(d) = doc.get("decoder") {
            read_decoder(d, &mut chain);
        }
        if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
            chain.byte_fallback = true;
        }
        if model.get("type").and_then(Value::as_str) == Some("WordPiece") {
            chain.wordpiece = true;
        }

        let mut texts: HashMap<u64, String> = HashMap::new();
        match model.get("vocab") {
            Some(Value::Object(map)) => {
                for (piece, id) in map {
                    if let Some(id) = id.as_u64() {
                        texts.insert(id, piece.clone());
                    }
                }
            }
            // Unigram: [[piece, score], ...], the id is the position.
            Some(Value::Array(items)) => {
                for (id, item) in items.iter().enumerate() {
                    if let Some(piece) = item.get(0).and_then(Value::as_str) {
                        texts.insert(id as u64, piece.to_string());
                    }
                }
            }
            _ => return Err(Error::invalid("model.vocab is missing")),
        }
        let mut special: HashMap<u64, String> = HashMap::new();
        for added in doc
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(id), Some(content)) = (
                added.get("id").and_then(Value::as_u64),
                added.get("content").and_then(Value::as_str),
            ) {
                special.insert(id, content.to_string());
            }
        }
        let size = texts
            .keys()
            .chain(special.keys())
            .max()
            .map_or(0, |m| *m as usize + 1);
        let byte_of = byte_level_table();
        let mut pieces = vec![None; size];
        for (id, piece) in texts {
            pieces[id as usize] = Some(piece_bytes(&piece, chain, &byte_of).into_boxed_slice());
        }
        // Added tokens are written as they are (no byte-level mapping).
        for (id, content) in special {
            pieces[id as usize] = Some(content.into_bytes().into_boxed_slice());
        }
        Ok(TokenDecoder { pieces })
    }

    /// The bytes token `id` stands for.
    pub fn bytes(&self, id: i64) -> Option<&[u8]> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.pieces.get(i))
            .and_then(|p| p.as_deref())
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}

fn read_decoder(d: &Value, chain: &mut Chain) {
    match d.get("type").and_then(Value::as_str) {
        Some("ByteLevel") => chain.byte_level = true,
        Some("Metaspace") => chain.metaspace = true,
        Some("ByteFallback") => chain.byte_fallback = true,
        Some("WordPiece") => chain.wordpiece = true,
        // SentencePiece models often spell Metaspace as `Replace("▁", " ")`.
        Some("Replace") => {
            let pattern = d
                .get("pattern")
                .and_then(|p| p.get("String"))
                .and_then(Value::as_str);
            if pattern == Some("\u{2581}") {
                chain.metaspace = true;
            }
        }
        Some("Sequence") => {
            for inner in d
                .get("decoders")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                read_decoder(inner, chain);
            }
        }
        _ => {}
    }
}

/// GPT-2's reversible byte ↔ printable character table, inverted: char → byte.
fn byte_level_table() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0u32..256 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| char::from_u32(c).map(|c| (c, b as u8)))
        .collect()
}

fn piece_bytes(piece: &str, chain: Chain, byte_of: &HashMap<char, u8>) -> Vec<u8> {
    if chain.byte_fallback {
        if let Some(hex) = piece
            .strip_prefix("<0x")
            .and_then(|h| h.strip_suffix('>'))
            .filter(|h| h.len() == 2)
        {
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                return vec![b];
            }
        }
    }
    if chain.byte_level {
        if let Some(bytes) = piece
            .chars()
            .map(|c| byte_of.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
        {
            return bytes;
        }
    }
    let mut text = piece.to_string();
    if chain.metaspace {
        text = text.replace('\u{2581}', " ");
    }
    if chain.wordpiece {
        text = match text.strip_prefix("##") {
            Some(rest) => rest.to_string(),
            None => format!(" {text}"),
        };
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_level_pieces_decode_to_their_bytes() {
        let doc = json!({
            "model": {"type": "BPE", "vocab": {"Hello": 0, "\u{0120}world": 1, "\u{00c3}\u{00a9}": 2, "\u{010a}": 3}},
            "decoder": {"type": "ByteLevel"},
            "added_tokens": [{"id": 4, "content": "<|eot_id|>"}]
        });
        let d = TokenDecoder::from_json(&doc).unwrap();
        assert_eq!(d.bytes(0), Some(&b"Hello"[..]));
        assert_eq!(d.bytes(1), Some(&b" world"[..]));
        assert_eq!(d.bytes(2), Some("é".as_bytes()));
        assert_eq!(d.bytes(3), Some(&b"\n"[..]));
        assert_eq!(d.bytes(4), Some(&b"<|eot_id|>"[..]));
        assert_eq!(d.bytes(5), None);
        assert_eq!(d.bytes(-1), None);
    }

    #[test]
    fn sentencepiece_spaces_and_byte_fallback() {
        let doc = json!({
            "model": {"type": "BPE", "byte_fallback": true, "vocab": {"\u{2581}the": 0, "<0xE6>": 1, "cat": 2}},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"}
            ]}
        });
        let d = TokenDecoder::from_json(&doc).unwrap();
        assert_eq!(d.bytes(0), Some(&b" the"[..]));
        assert_eq!(d.bytes(1), Some(&[0xE6u8][..]));
        assert_eq!(d.bytes(2), Some(&b"cat"[..]));
    }

    #[test]
    fn unigram_and_wordpiece_vocabularies() {
        let uni = json!({"model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["\u{2581}a", -1.0]]},
                         "decoder": {"type": "Metaspace"}});
        assert_eq!(
            TokenDecoder::from_json(&uni).unwrap().bytes(1),
            Some(&b" a"[..])
        );
        let wp = json!({"model": {"type": "WordPiece", "vocab": {"play": 0, "##ing": 1}}});
        let d = TokenDecoder::from_json(&wp).unwrap();
        assert_eq!(d.bytes(0), Some(&b" play"[..]));
        assert_eq!(d.bytes(1), Some(&b"ing"[..]));
    }

    #[test]
    fn a_file_without_a_model_is_refused() {
        assert!(TokenDecoder::from_json(&json!({})).is_err());
        let dir = std::env::temp_dir().join(format!("orchard-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(TokenDecoder::load(&dir).unwrap().is_none());
        std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
        assert!(TokenDecoder::load(&dir)
            .unwrap_err()
            .message
            .contains("tokenizer.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
