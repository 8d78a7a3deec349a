//! The emulator's OpenAI privacy filter: a deterministic token classification with one token
//! per whitespace-separated word, in the shape of `openai_privacy_filter.token_classification`.

use serde_json::json;

/// The classes of the emulator's privacy filter, by label id.
pub const PRIVACY_LABELS: [&str; 5] = [
    "O",
    "private_email",
    "private_phone",
    "private_url",
    "private_person",
];

/// The class of one whitespace-separated word; `sentence_start` when it opens a sentence
/// (a capitalised word there is not taken for a name).
fn classify(word: &str, sentence_start: bool) -> usize {
    let core = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '+');
    let digits = core.chars().filter(char::is_ascii_digit).count();
    if core.contains('@') && core.contains('.') {
        1
    } else if digits >= 7
        && core
            .chars()
            .all(|c| c.is_ascii_digit() || "+-(). ".contains(c))
    {
        2
    } else if word.starts_with("http://")
        || word.starts_with("https://")
        || word.starts_with("www.")
    {
        3
    } else if !sentence_start
        && core.chars().next().is_some_and(char::is_uppercase)
        && core.chars().skip(1).all(char::is_lowercase)
        && core.chars().count() > 1
    {
        4
    } else {
        0
    }
}

/// A score in [0.5, 1) that depends only on the word, to four decimals.
fn score(word: &str) -> f64 {
    (5000 + super::fnv(&[word.as_bytes()]) % 5000) as f64 / 10000.0
}

/// The privacy filter's answer for one text: one token per whitespace-separated word.
pub fn privacy_filter(text: &str) -> serde_json::Value {
    let mut label_ids = Vec::new();
    let mut scores = Vec::new();
    let mut sentence_start = true;
    for word in text.split_whitespace() {
        label_ids.push(classify(word, sentence_start));
        scores.push(score(word));
        sentence_start = word.ends_with(['.', '!', '?', ':']);
    }
    let labels: Vec<&str> = label_ids.iter().map(|&i| PRIVACY_LABELS[i]).collect();
    json!({
        "type": "openai_privacy_filter.token_classification",
        "token_count": label_ids.len(),
        "label_ids": label_ids,
        "labels": labels,
        "scores": scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_filter_labels_words_deterministically() {
        let v = privacy_filter(
            "Write to Alice at alice@example.com or call +1-555-0100-22. See https://x.org today",
        );
        assert_eq!(v["type"], "openai_privacy_filter.token_classification");
        assert_eq!(v["token_count"], 11);
        let labels: Vec<&str> = v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(
            labels,
            [
                "O",
                "O",
                "private_person",
                "O",
                "private_email",
                "O",
                "O",
                "private_phone",
                "O",
                "private_url",
                "O"
            ]
        );
        let ids = v["label_ids"].as_array().unwrap();
        for (id, label) in ids.iter().zip(&labels) {
            assert_eq!(PRIVACY_LABELS[id.as_u64().unwrap() as usize], *label);
        }
        for s in v["scores"].as_array().unwrap() {
            let s = s.as_f64().unwrap();
            assert!((0.5..1.0).contains(&s), "{s}");
        }
        assert_eq!(v, privacy_filter(
            "Write to Alice at alice@example.com or call +1-555-0100-22. See https://x.org today",
        ));
        assert_eq!(privacy_filter("")["token_count"], 0);
    }
}
