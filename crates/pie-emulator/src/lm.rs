//! A tiny but real language model: a word-piece vocabulary and a smoothed bigram table,
//! both built at startup from [`crate::corpus`].
//!
//! Characters of three or more UTF-8 bytes (CJK, emoji) are byte tokens, one per byte, as
//! byte-fallback tokenizers make them: a sequence streams them one byte at a time and a
//! character's text is released only when its last byte has been generated.
//!
//! `P(next | prev) = 0.90 * bigram + 0.09 * unigram + 0.01 * uniform`, where the end-of-turn
//! token takes no unigram share (it only follows the full stop that closes a reply). A
//! virtual begin-of-reply context (`BOS`) starts every generation. The table stores natural
//! log-probabilities; the sampler adds a boost for words of the prompt, logit bias and
//! penalties on top of them.

use std::collections::HashMap;

use crate::corpus::PARAGRAPHS;

/// The end-of-turn piece and the id it carries on the wire (Llama 3's `<|eot_id|>`).
pub const EOT_TEXT: &str = "<|eot_id|>";
pub const EOT_TOKEN_ID: i64 = 128009;

const BIGRAM_WEIGHT: f64 = 0.90;
const UNIGRAM_WEIGHT: f64 = 0.09;
const UNIFORM_WEIGHT: f64 = 0.01;

/// Split text into word-pieces: a word (letters, digits, inner `'`/`-`) with at most one
/// leading space, a single punctuation or symbol character (also with its leading space),
/// a run of other whitespace, or a special token `<|...|>`. Every byte of `text` lands in
/// exactly one piece, so joining the pieces gives the text back.
pub fn pieces(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map(|c| c.0).unwrap_or(text.len());
    // End (byte offset) of a special token starting at char index `i`.
    let special_at = |i: usize| -> Option<usize> {
        let start = chars.get(i)?.0;
        if !text[start..].starts_with("<|") {
            return None;
        }
        text[start..]
            .find("|>")
            .filter(|c| *c <= 64)
            .map(|c| start + c + 2)
    };
    // A space leads the next piece when a visible, non-special character follows it.
    let space_leads = |i: usize| {
        chars[i].1 == ' '
            && chars.get(i + 1).is_some_and(|n| !n.1.is_whitespace())
            && special_at(i + 1).is_none()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = chars[i].0;
        // Special tokens such as <|eot_id|> are one piece.
        if let Some(stop) = special_at(i) {
            out.push(&text[start..stop]);
            while i < chars.len() && chars[i].0 < stop {
                i += 1;
            }
            continue;
        }
        let c = chars[i].1;
        if c.is_whitespace() {
            if !space_leads(i) {
                // A run of whitespace; a final space that leads a visible character is left
                // to the next piece.
                let mut j = i;
                while j < chars.len() && chars[j].1.is_whitespace() {
                    let leads_next = j > i && space_leads(j);
                    if leads_next {
                        break;
                    }
                    j += 1;
                }
                out.push(&text[start..end_of(j)]);
                i = j;
                continue;
            }
            i += 1; // the leading space joins the next unit
        }
        let c = chars[i].1;
        if c.is_alphanumeric() {
            let mut j = i + 1;
            while j < chars.len() {
                let cj = chars[j].1;
                let inner = (cj == '\'' || cj == '-')
                    && chars.get(j + 1).is_some_and(|n| n.1.is_alphanumeric());
                if cj.is_alphanumeric() || inner {
                    j += 1;
                } else {
                    break;
                }
            }
            out.push(&text[start..end_of(j)]);
            i = j;
        } else {
            out.push(&text[start..end_of(i + 1)]);
            i += 1;
        }
    }
    out
}

/// Number of prompt tokens as the emulator counts them (at least 1).
pub fn prompt_token_count(text: &str) -> u64 {
    (pieces(text).len() as u64).max(1)
}

/// The word a piece stands for when matching prompt words: lower case, no spaces, letters
/// and digits only, at least three characters. Punctuation and short words give `None`.
pub fn content_word(piece: &str) -> Option<String> {
    let w = piece.trim();
    if w.chars().count() < 3 || !w.chars().all(|c| c.is_alphanumeric()) {
        return None;
    }
    Some(w.to_lowercase())
}

/// A piece of the corpus cut into tokens: runs of one- and two-byte characters stay text;
/// each byte of a longer character becomes its own token.
fn tokens_of_piece(piece: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut run = String::new();
    for c in piece.chars() {
        if c.len_utf8() < 3 {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            out.push(Token::Text(std::mem::take(&mut run)));
        }
        let mut buf = [0u8; 4];
        out.extend(c.encode_utf8(&mut buf).bytes().map(Token::Byte));
    }
    if !run.is_empty() {
        out.push(Token::Text(run));
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Text(String),
    Byte(u8),
}

impl Token {
    /// How the token is named in the vocabulary (`<0xF0>` for a byte).
    fn display(&self) -> String {
        match self {
            Token::Text(t) => t.clone(),
            Token::Byte(b) => format!("<0x{b:02X}>"),
        }
    }
}

pub struct Model {
    /// Token names: the text of a text token, `<0xNN>` for a byte token.
    vocab: Vec<String>,
    /// The byte of each byte token.
    byte: Vec<Option<u8>>,
    eot: usize,
    /// `(V + 1) x V` natural log-probabilities; row `V` is the begin-of-reply context.
    table: Vec<f64>,
    words: Vec<Option<String>>,
}

impl Model {
    pub fn from_corpus(paragraphs: &[&str]) -> Model {
        let mut tokens: Vec<Token> = Vec::new();
        let mut index: HashMap<Token, usize> = HashMap::new();
        let mut intern = |t: Token, tokens: &mut Vec<Token>| -> usize {
            if let Some(&i) = index.get(&t) {
                return i;
            }
            tokens.push(t.clone());
            index.insert(t, tokens.len() - 1);
            tokens.len() - 1
        };
        let mut sequences = Vec::with_capacity(paragraphs.len());
        for para in paragraphs {
            let ids: Vec<usize> = pieces(para.trim())
                .into_iter()
                .flat_map(tokens_of_piece)
                .map(|t| intern(t, &mut tokens))
                .collect();
            sequences.push(ids);
        }
        let eot = intern(Token::Text(EOT_TEXT.into()), &mut tokens);
        let vocab: Vec<String> = tokens.iter().map(Token::display).collect();
        let byte: Vec<Option<u8>> = tokens
            .iter()
            .map(|t| match t {
                Token::Byte(b) => Some(*b),
                Token::Text(_) => None,
            })
            .collect();
        let v = vocab.len();
        let bos = v;

        let mut pair = vec![0u32; (v + 1) * v];
        let mut row_total = vec![0u32; v + 1];
        let mut unigram = vec![0u32; v];
        for ids in &sequences {
            let mut prev = bos;
            for &t in ids.iter().chain(std::iter::once(&eot)) {
                pair[prev * v + t] += 1;
                row_total[prev] += 1;
                unigram[t] += 1;
                prev = t;
            }
        }
        let unigram_total: u32 = unigram
            .iter()
            .enumerate()
            .filter(|(t, _)| *t != eot)
            .map(|(_, c)| *c)
            .sum();
        let mut table = vec![0f64; (v + 1) * v];
        for row in 0..=v {
            // A context never followed by anything (the end-of-turn token) continues like
            // the start of a new reply.
            let src = if row_total[row] > 0 { row } else { bos };
            for t in 0..v {
                let bigram = if row_total[src] > 0 {
                    f64::from(pair[src * v + t]) / f64::from(row_total[src])
                } else {
                    0.0
                };
                let uni = if t == eot {
                    0.0
                } else {
                    f64::from(unigram[t]) / f64::from(unigram_total.max(1))
                };
                let p = BIGRAM_WEIGHT * bigram + UNIGRAM_WEIGHT * uni + UNIFORM_WEIGHT / v as f64;
                table[row * v + t] = p.ln();
            }
        }
        let words = tokens
            .iter()
            .map(|t| match t {
                Token::Text(p) => content_word(p),
                Token::Byte(_) => None,
            })
            .collect();
        Model {
            vocab,
            byte,
            eot,
            table,
            words,
        }
    }

    pub fn builtin() -> Model {
        Model::from_corpus(PARAGRAPHS)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn eot(&self) -> usize {
        self.eot
    }

    /// The context index that starts every reply.
    pub fn bos(&self) -> usize {
        self.vocab.len()
    }

    /// Log-probabilities of every next token after `context` (a token index or [`Self::bos`]).
    pub fn row(&self, context: usize) -> &[f64] {
        let v = self.vocab.len();
        let r = context.min(v);
        &self.table[r * v..(r + 1) * v]
    }

    /// The token's name: its text, or `<0xNN>` for a byte token (see [`Model::bytes`]).
    pub fn text(&self, token: usize) -> &str {
        &self.vocab[token]
    }

    /// What the token adds to the output.
    pub fn bytes(&self, token: usize) -> &[u8] {
        match &self.byte[token] {
            Some(b) => std::slice::from_ref(b),
            None => self.vocab[token].as_bytes(),
        }
    }

    /// A byte token: part of a character, never text on its own.
    pub fn is_byte(&self, token: usize) -> bool {
        self.byte[token].is_some()
    }

    /// The byte of a byte token.
    pub fn byte_of(&self, token: usize) -> Option<u8> {
        self.byte[token]
    }

    /// The id a token carries on the wire.
    pub fn wire_id(&self, token: usize) -> i64 {
        if token == self.eot {
            EOT_TOKEN_ID
        } else {
            token as i64
        }
    }

    /// The token behind a wire id (for `logit_bias`), if it is in the vocabulary.
    pub fn token_of_wire_id(&self, id: i64) -> Option<usize> {
        if id == EOT_TOKEN_ID {
            return Some(self.eot);
        }
        usize::try_from(id)
            .ok()
            .filter(|t| *t < self.vocab.len() && *t != self.eot)
    }

    #[cfg(test)]
    pub fn token_of_text(&self, piece: &str) -> Option<usize> {
        self.vocab.iter().position(|p| p == piece)
    }

    /// Tokens whose word appears in `prompt` (see [`content_word`]); they get a logit boost.
    pub fn prompt_words(&self, prompt: &str) -> Vec<usize> {
        let mut wanted: Vec<String> = pieces(prompt)
            .into_iter()
            .filter_map(content_word)
            .collect();
        wanted.sort();
        wanted.dedup();
        self.words
            .iter()
            .enumerate()
            .filter(|(_, w)| w.as_ref().is_some_and(|w| wanted.binary_search(w).is_ok()))
            .map(|(t, _)| t)
            .collect()
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_parts(&[bytes])
}

/// FNV-1a over byte strings one after another: the emulator's deterministic choices for an input.
pub fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A deterministic bag-of-words embedding: every content piece adds a pseudo-random
/// direction derived from its lower-cased text; the sum is L2-normalised. Texts sharing
/// words point in similar directions.
pub fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f64; dims];
    let mut add = |key: &str, weight: f64| {
        let mut rng = crate::sampler::Rng::new(fnv1a(key.as_bytes()));
        for x in v.iter_mut() {
            *x += weight * (rng.next_f64() * 2.0 - 1.0);
        }
    };
    let mut any = false;
    for p in pieces(text) {
        let key = p.trim().to_lowercase();
        if !key.is_empty() {
            add(&key, 1.0);
            any = true;
        }
    }
    if !any {
        add("", 1.0);
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text_exactly() {
        for text in [
            "Hello, world! A café in 日本 🍎.",
            "  two  spaces\n\nand lines ",
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
            "it's a well-known fact",
            "",
            "<|unterminated",
        ] {
            assert_eq!(pieces(text).concat(), text, "{text:?}");
        }
        assert_eq!(
            pieces("Hello, big world!"),
            vec!["Hello", ",", " big", " world", "!"]
        );
        assert_eq!(pieces("a <|eot_id|> b"), vec!["a", " ", "<|eot_id|>", " b"]);
        assert_eq!(pieces("x\n\n y"), vec!["x", "\n\n", " y"]);
    }

    #[test]
    fn vocabulary_has_the_promised_pieces() {
        let m = Model::builtin();
        for p in [" café", " naïve", " apple", " ", ".", ",", "Sure", EOT_TEXT] {
            assert!(m.token_of_text(p).is_some(), "missing {p:?}");
            assert!(!m.is_byte(m.token_of_text(p).unwrap()));
        }
        // Three- and four-byte characters are spelled in byte tokens.
        for c in ["日", "本", "🍎"] {
            for b in c.bytes() {
                let t = m
                    .token_of_text(&format!("<0x{b:02X}>"))
                    .expect("byte token");
                assert!(m.is_byte(t));
                assert_eq!(m.bytes(t), [b]);
            }
        }
        assert!(m.token_of_text(" 日本").is_none());
        assert_eq!(m.wire_id(m.eot()), EOT_TOKEN_ID);
        assert_eq!(m.token_of_wire_id(EOT_TOKEN_ID), Some(m.eot()));
        assert_eq!(m.token_of_wire_id(m.eot() as i64), None);
        assert_eq!(m.token_of_wire_id(-1), None);
    }

    #[test]
    fn rows_are_distributions_and_eot_follows_full_stops() {
        let m = Model::builtin();
        for ctx in 0..=m.vocab_size() {
            let s: f64 = m.row(ctx).iter().map(|l| l.exp()).sum();
            assert!((s - 1.0).abs() < 1e-9, "row {ctx} sums to {s}");
        }
        let dot = m.token_of_text(".").unwrap();
        let after_dot = m.row(dot)[m.eot()];
        let after_word = m.row(m.token_of_text(" apple").unwrap())[m.eot()];
        assert!(after_dot > -3.0, "{after_dot}");
        assert!(after_word < -8.0, "{after_word}");
        assert!(m.row(m.bos())[m.eot()] < -8.0);
    }

    #[test]
    fn prompt_words_match_case_insensitively() {
        let m = Model::builtin();
        let boosted = m.prompt_words("Tell me about APPLE orchards, please");
        assert!(boosted.contains(&m.token_of_text(" apple").unwrap()));
        assert!(boosted.contains(&m.token_of_text(" Apple").unwrap()));
        assert!(!boosted.contains(&m.token_of_text(",").unwrap()));
    }

    #[test]
    fn embeddings_are_unit_length_and_deterministic() {
        let a = embed("apples in the orchard", 16);
        assert_eq!(a.len(), 16);
        assert_eq!(a, embed("apples in the orchard", 16));
        assert_ne!(a, embed("engines and tokens", 16));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
        assert_eq!(embed("", 16).len(), 16);
    }
}
