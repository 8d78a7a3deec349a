//! Text and UTF-8 handling: tokens add bytes, the text grows by whole characters only, and
//! text that could begin a stop string is held back until it cannot.

use super::Sequence;
use crate::lm::Model;

impl Sequence {
    /// Earliest byte offset at which a stop string occurs, looking only at matches that
    /// could involve text appended after byte `old_len`.
    pub(super) fn find_stop(&self, old_len: usize) -> Option<usize> {
        self.stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let mut from = old_len.saturating_sub(s.len().saturating_sub(1));
                while !self.text.is_char_boundary(from) {
                    from -= 1;
                }
                self.text[from..].find(s.as_str()).map(|p| from + p)
            })
            .min()
    }

    /// Only tokens that keep the text valid UTF-8 may come next: a byte token must start a
    /// character or continue the one in progress, and nothing else may interrupt that one.
    /// Left alone when the vocabulary has no way on (then the character is cut, as at
    /// `max_tokens`).
    pub(super) fn mask_orphan_bytes(&mut self, lm: &Model) {
        let mut next = [0u8; 4];
        let held = self.partial.len().min(3);
        next[..held].copy_from_slice(&self.partial[..held]);
        let fits = |t: usize| match lm.byte_of(t) {
            Some(b) => {
                let mut next = next;
                next[held] = b;
                match std::str::from_utf8(&next[..=held]) {
                    Ok(_) => true,
                    Err(e) => e.error_len().is_none(),
                }
            }
            None => self.partial.is_empty(),
        };
        let allowed: Vec<bool> = (0..self.logits.len()).map(fits).collect();
        if !allowed
            .iter()
            .zip(&self.logits)
            .any(|(ok, l)| *ok && l.is_finite())
        {
            return;
        }
        for (logit, ok) in self.logits.iter_mut().zip(allowed) {
            if !ok {
                *logit = f64::NEG_INFINITY;
            }
        }
    }

    /// Add a token's bytes; text grows only by whole characters.
    pub(super) fn push_bytes(&mut self, bytes: &[u8]) {
        if self.partial.is_empty() {
            if let Ok(t) = std::str::from_utf8(bytes) {
                self.text.push_str(t);
                return;
            }
        }
        self.partial.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.partial) {
            Ok(_) => self.partial.len(),
            Err(e) if e.error_len().is_some() => {
                // Not a character and never going to be one.
                let bad = String::from_utf8_lossy(&self.partial).into_owned();
                self.text.push_str(&bad);
                self.partial.clear();
                return;
            }
            Err(e) => e.valid_up_to(),
        };
        let done: Vec<u8> = self.partial.drain(..complete).collect();
        self.text
            .push_str(std::str::from_utf8(&done).expect("a checked UTF-8 prefix"));
    }

    /// Bytes at the end of the text that might begin a stop string.
    pub(super) fn held_back(&self) -> usize {
        let mut hold = 0;
        for s in self.stops.iter() {
            for k in (1..s.len()).rev() {
                if k <= hold {
                    break;
                }
                if s.is_char_boundary(k) && self.text.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }
}
