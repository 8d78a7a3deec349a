//! A JSON tree that borrows from its text, for the wire readers: strings without escapes are
//! slices of the input, objects are their entries in order (no key copies; only objects of
//! more than 32 keys hash, to find repeated keys).
//!
//! Parsed by `serde_json`'s deserializer, so syntax errors, the recursion limit (128) and
//! number classification are serde_json's: a non-negative integer that fits is [`Node::U64`],
//! a negative one [`Node::I64`], anything else (`1.0`, `-0`, `1e3`, integers past 64 bits)
//! [`Node::F64`]. A repeated key keeps its last value in the first key's place, as
//! `serde_json::Map::insert` does with `preserve_order`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

/// An object's entries, in order, each key once.
pub type Entries<'a> = Vec<(Cow<'a, str>, Node<'a>)>;

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Node<'a> {
    #[default]
    Null,
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Entries<'a>),
}

/// Parse JSON text (the whole of it: trailing characters are an error).
pub fn parse(text: &str) -> serde_json::Result<Node<'_>> {
    serde_json::from_str(text)
}

/// [`parse`] for bytes that should be UTF-8 JSON.
pub fn parse_slice(bytes: &[u8]) -> serde_json::Result<Node<'_>> {
    serde_json::from_slice(bytes)
}

impl<'a> Node<'a> {
    /// A view of a `serde_json::Value`, its strings borrowed.
    pub fn from_value(v: &'a Value) -> Node<'a> {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Node::U64(u),
                (None, Some(i), _) => Node::I64(i),
                (None, None, Some(f)) => Node::F64(f),
                (None, None, None) => Node::Null,
            },
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::from_value).collect()),
            Value::Object(m) => Node::Object(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The same JSON as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Str(s) => Value::String(s.to_string()),
            Node::Array(a) => Value::Array(a.iter().map(Node::to_value).collect()),
            Node::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
            number => number.number().map_or(Value::Null, Value::Number),
        }
    }

    /// The number as serde_json holds it (for messages: it prints the same way).
    pub fn number(&self) -> Option<Number> {
        match *self {
            Node::U64(u) => Some(u.into()),
            Node::I64(i) => Some(i.into()),
            Node::F64(f) => Number::from_f64(f),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::U64(_) | Node::I64(_) | Node::F64(_) => "a number",
            Node::Str(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// The value at `key` of an object (`None` for anything else), as `Value::get`.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As `serde_json::Number::as_u64`: integers only.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Node::U64(u) => Some(u),
            _ => None,
        }
    }

    /// As `serde_json::Number::as_i64`: integers that fit only.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Node::U64(u) => i64::try_from(u).ok(),
            Node::I64(i) => Some(i),
            _ => None,
        }
    }

    /// As `serde_json::Number::as_f64`: any number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Node::U64(u) => Some(u as f64),
            Node::I64(i) => Some(i as f64),
            Node::F64(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for Node<'_> {
    /// Compact JSON, as `Value`'s `Display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Node<'de>, E> {
        Ok(match u64::try_from(i) {
            Ok(u) => Node::U64(u),
            Err(_) => Node::I64(i),
        })
    }

    fn visit_u64<E>(self, u: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(u))
    }

    /// Not finite becomes null, as in `Value` (JSON text cannot spell one).
    fn visit_f64<E>(self, f: f64) -> Result<Node<'de>, E> {
        Ok(if f.is_finite() {
            Node::F64(f)
        } else {
            Node::Null
        })
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s.to_string())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries: Entries<'de> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            entries.push((key, map.next_value()?));
        }
        merge_repeated_keys(&mut entries);
        Ok(Node::Object(entries))
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_string()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

/// Objects up to this many entries look for repeated keys by scanning; larger ones hash.
const SCAN_MAX: usize = 32;

/// (first index, later index) of every repeated key, in order; empty (no allocation) when
/// each key comes once.
pub(crate) fn repeated_keys<K: AsRef<str>, V>(entries: &[(K, V)]) -> Vec<(usize, usize)> {
    let n = entries.len();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    if n <= SCAN_MAX {
        // One bit per (length, last byte) seen: a key whose bit is clear cannot be a repeat,
        // so most keys skip the scan.
        let mut seen = 0u64;
        for j in 0..n {
            let key = entries[j].0.as_ref().as_bytes();
            let bit =
                1u64 << ((key.len() * 7 + usize::from(key.last().copied().unwrap_or(0))) % 64);
            if seen & bit != 0 {
                if let Some(i) = entries[..j]
                    .iter()
                    .position(|(k, _)| k.as_ref().as_bytes() == key)
                {
                    repeats.push((i, j));
                }
            }
            seen |= bit;
        }
    } else {
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (j, (key, _)) in entries.iter().enumerate() {
            if let Some(&i) = first.get(key.as_ref()) {
                repeats.push((i, j));
            } else {
                first.insert(key.as_ref(), j);
            }
        }
    }
    repeats
}

/// Keep each key once: its last value, in its first place (what a JSON object means by a
/// repeated key, as `serde_json::Map::insert` keeps it with `preserve_order`).
pub(crate) fn merge_repeated_keys<K: AsRef<str>, V: Default>(entries: &mut Vec<(K, V)>) {
    let repeats = repeated_keys(entries);
    if repeats.is_empty() {
        return;
    }
    let mut dropped = vec![false; entries.len()];
    for (i, j) in repeats {
        entries[i].1 = std::mem::take(&mut entries[j].1);
        dropped[j] = true;
    }
    let mut index = 0;
    entries.retain(|_| {
        index += 1;
        !dropped[index - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree and `Value` agree on `text` (or both refuse it with the same message).
    fn same_as_value(text: &str) {
        let value: serde_json::Result<Value> = serde_json::from_str(text);
        match (parse(text), value) {
            (Ok(node), Ok(value)) => {
                assert_eq!(node.to_value(), value, "{text}");
                assert_eq!(Node::from_value(&value), node, "{text}");
                assert_eq!(node.to_string(), value.to_string(), "{text}");
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            (a, b) => panic!("{text}: tree {a:?}, Value {b:?}"),
        }
    }

    #[test]
    fn numbers_are_classified_as_serde_json_does() {
        let cases = [
            ("0", Node::U64(0)),
            ("7", Node::U64(7)),
            ("18446744073709551615", Node::U64(u64::MAX)),
            ("-1", Node::I64(-1)),
            ("-9223372036854775808", Node::I64(i64::MIN)),
            ("-0", Node::F64(-0.0)),
            ("1.0", Node::F64(1.0)),
            ("1e3", Node::F64(1000.0)),
            ("18446744073709551616", Node::F64(18446744073709551616.0)),
            ("-9223372036854775809", Node::F64(-9223372036854775809.0)),
            ("0.1", Node::F64(0.1)),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(
                got.number().map(|n| n.to_string()),
                serde_json::from_str::<Number>(text)
                    .ok()
                    .map(|n| n.to_string()),
                "{text}"
            );
            same_as_value(text);
        }
        assert_eq!(Node::U64(u64::MAX).as_i64(), None);
        assert_eq!(Node::F64(1.0).as_u64(), None);
        same_as_value("1e400");
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_in_its_first_place() {
        let text = r#"{"a":1,"b":2,"a":3,"c":4,"a":{"x":5}}"#;
        let node = parse(text).unwrap();
        let keys: Vec<&str> = match &node {
            Node::Object(m) => m.iter().map(|(k, _)| k.as_ref()).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(node.get("a").unwrap().get("x"), Some(&Node::U64(5)));
        same_as_value(text);
        // Same length and last byte, different keys.
        let text = r#"{"ab":1,"cb":2,"ab":3}"#;
        assert_eq!(
            parse(text).unwrap(),
            Node::Object(vec![
                ("ab".into(), Node::U64(3)),
                ("cb".into(), Node::U64(2))
            ])
        );
        same_as_value(text);
    }

    #[test]
    fn repeated_keys_in_large_objects_merge_the_same_way() {
        let mut text = String::from("{");
        for i in 0..5000 {
            text.push_str(&format!("\"{}\":{i},", i % 3000));
        }
        text.push_str("\"end\":true}");
        let node = parse(&text).unwrap();
        match &node {
            Node::Object(m) => assert_eq!(m.len(), 3001),
            other => panic!("{other:?}"),
        }
        assert_eq!(node.get("5"), Some(&Node::U64(3005)));
        assert_eq!(node.get("2999"), Some(&Node::U64(2999)));
        same_as_value(&text);
    }

    #[test]
    fn strings_borrow_the_text_unless_escaped() {
        let node = parse(r#"{"plain":"abc","esc\u0041":"a\"b","uni":"é"}"#).unwrap();
        let Node::Object(m) = &node else {
            panic!("{node:?}")
        };
        assert!(matches!(&m[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&m[0].1, Node::Str(Cow::Borrowed("abc"))));
        assert!(matches!(&m[1].0, Cow::Owned(k) if k == "escA"));
        assert!(matches!(&m[1].1, Node::Str(Cow::Owned(s)) if s == "a\"b"));
        assert!(matches!(&m[2].1, Node::Str(Cow::Borrowed("é"))));
        let bytes = br#"["x"]"#;
        assert_eq!(
            parse_slice(bytes).unwrap(),
            Node::Array(vec![Node::Str(Cow::Borrowed("x"))])
        );
        assert!(parse_slice(b"[\"\xff\"]").is_err());
    }

    #[test]
    fn nesting_deeper_than_serde_json_allows_is_refused() {
        let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        let err = parse(&deep).unwrap_err().to_string();
        assert!(err.contains("recursion limit exceeded"), "{err}");
        same_as_value(&deep);
        same_as_value(&format!("{}1{}", "{\"a\":".repeat(129), "}".repeat(129)));
    }

    #[test]
    fn syntax_errors_read_as_serde_json_reports_them() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "nul",
            "1 2",
            "{\"a\":1}x",
            "\"\\q\"",
        ] {
            same_as_value(text);
        }
        same_as_value(r#"{"a":[1,-2,3.5,"x",null,true,{}],"b":{"c":[]}}"#);
    }
}
