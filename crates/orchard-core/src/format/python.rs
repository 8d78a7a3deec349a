//! Python-compatible printing of template values.
//!
//! Chat templates are written against Jinja2, so values must print the way CPython prints them:
//! `json.dumps(x, ensure_ascii=False)` for `tojson`, `str()`/`repr()` for `{{ x }}` and `|string`,
//! and `float.__repr__` for floats (`1e+20`, `1e-05`, `2.5`, `1.0`).

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error as JinjaError, ErrorKind};

use super::messages::ContentPart;

/// `float.__repr__`: the shortest digits that round-trip, in fixed notation when the decimal
/// exponent is in [-4, 16), otherwise in scientific notation with a signed, two-digit exponent.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf".into() } else { "inf".into() };
    }
    // Rust's `{:e}` prints the shortest round-trip digits, e.g. "1.5e-7", "-2e16", "0e0".
    let sci = format!("{:e}", x);
    let (mantissa, exponent) = match sci.split_once('e') {
        Some(parts) => parts,
        None => return sci,
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point relative to the start of `digits`.
    let point = exponent + 1;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4 < point && point <= 16) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    } else if point <= 0 {
        out.push_str("0.");
        for _ in 0..(-point) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Print a number the way Python's `str()` does (ints as digits, floats via `float_repr`).
fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else if let Ok(f) = f64::try_from(value.clone()) {
        out.push_str(&float_repr(f));
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Options of Python's `json.dumps` that templates may pass to `tojson`.
#[derive(Clone, Debug)]
pub struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: single line. `Some(s)`: newline plus `s` repeated per nesting level.
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
        }
    }
}

fn json_error(msg: String) -> JinjaError {
    JinjaError::new(ErrorKind::InvalidOperation, msg)
}

/// `json.dumps(value, ...)` over a template value.
pub fn json_dumps(value: &Value, opts: &JsonOptions) -> Result<String, JinjaError> {
    let mut out = String::new();
    write_json(&mut out, value, opts, 0)?;
    Ok(out)
}

fn write_json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    // Copy runs that need no escape in one go, testing bytes: every byte of a multi-byte
    // character is >= 0x80, so only ensure_ascii has to look at whole characters.
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let plain = match b {
            b'"' | b'\\' | 0..=0x1f => false,
            0x7f..=0xff => !ensure_ascii,
            _ => true,
        };
        if plain {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        // `i` is on a character boundary: escapes start at an ASCII byte or a lead byte.
        let c = s[i..].chars().next().unwrap_or_default();
        i += c.len_utf8();
        start = i;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn newline_indent(out: &mut String, indent: &str, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str(indent);
    }
}

/// A map key as `json.dumps` converts it: str as is, numbers/bools/None to their JSON text.
fn json_key(key: &Value) -> Result<String, JinjaError> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key);
            Ok(s)
        }
        other => Err(json_error(format!(
            "tojson: keys must be str, int, float, bool or None, not {other}"
        ))),
    }
}

/// Key/value pairs of a map in their order, read in one pass (no lookup per key).
fn map_pairs(value: &Value) -> Result<impl Iterator<Item = (Value, Value)>, JinjaError> {
    if let Some(pairs) = value.as_object().and_then(|o| o.try_iter_pairs()) {
        return Ok(pairs);
    }
    let keys: Vec<Value> = value.try_iter()?.collect();
    let mut pairs = Vec::with_capacity(keys.len());
    for key in keys {
        let item = value.get_item(&key)?;
        pairs.push((key, item));
    }
    Ok(Box::new(pairs.into_iter()) as Box<dyn Iterator<Item = (Value, Value)> + Send + Sync>)
}

fn write_json_entry(
    out: &mut String,
    index: usize,
    key: &str,
    item: &Value,
    opts: &JsonOptions,
    level: usize,
) -> Result<(), JinjaError> {
    if index > 0 {
        out.push_str(&opts.item_separator);
    }
    if let Some(indent) = &opts.indent {
        newline_indent(out, indent, level + 1);
    }
    write_json_string(out, key, opts.ensure_ascii);
    out.push_str(&opts.key_separator);
    write_json(out, item, opts, level + 1)
}

/// Close a list or dict opened with its bracket; an empty one stays `[]`/`{}` even indented.
fn close_container(out: &mut String, close: char, empty: bool, opts: &JsonOptions, level: usize) {
    if !empty {
        if let Some(indent) = &opts.indent {
            newline_indent(out, indent, level);
        }
    }
    out.push(close);
}

fn write_json(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    level: usize,
) -> Result<(), JinjaError> {
    if let Some(part) = value.downcast_object_ref::<ContentPart>() {
        return write_json(out, &part.as_mapping(), opts, level);
    }
    match value.kind() {
        ValueKind::Undefined => Err(json_error(
            "tojson: an undefined value is not JSON serializable".into(),
        )),
        ValueKind::None => {
            out.push_str("null");
            Ok(())
        }
        ValueKind::Bool => {
            out.push_str(if value.is_true() { "true" } else { "false" });
            Ok(())
        }
        ValueKind::Number => {
            if !value.is_integer() {
                if let Ok(f) = f64::try_from(value.clone()) {
                    // Python writes the non-finite floats as these JavaScript names.
                    if f.is_nan() {
                        out.push_str("NaN");
                        return Ok(());
                    }
                    if f.is_infinite() {
                        out.push_str(if f < 0.0 { "-Infinity" } else { "Infinity" });
                        return Ok(());
                    }
                }
            }
            write_number(out, value);
            Ok(())
        }
        ValueKind::String => {
            write_json_string(out, value.as_str().unwrap_or_default(), opts.ensure_ascii);
            Ok(())
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            let mut empty = true;
            for (i, item) in value.try_iter()?.enumerate() {
                empty = false;
                if i > 0 {
                    out.push_str(&opts.item_separator);
                }
                if let Some(indent) = &opts.indent {
                    newline_indent(out, indent, level + 1);
                }
                write_json(out, &item, opts, level + 1)?;
            }
            close_container(out, ']', empty, opts, level);
            Ok(())
        }
        ValueKind::Map if opts.sort_keys => {
            let mut entries = Vec::new();
            for (key, item) in map_pairs(value)? {
                entries.push((json_key(&key)?, item));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                write_json_entry(out, i, key, item, opts, level)?;
            }
            close_container(out, '}', entries.is_empty(), opts, level);
            Ok(())
        }
        ValueKind::Map => {
            out.push('{');
            let mut empty = true;
            for (i, (key, item)) in map_pairs(value)?.enumerate() {
                empty = false;
                match key.as_str() {
                    Some(s) => write_json_entry(out, i, s, &item, opts, level)?,
                    None => write_json_entry(out, i, &json_key(&key)?, &item, opts, level)?,
                }
            }
            close_container(out, '}', empty, opts, level);
            Ok(())
        }
        other => Err(json_error(format!(
            "tojson: a value of type {other} is not JSON serializable"
        ))),
    }
}

/// Characters that Python's `str.isprintable()` rejects and `repr()` therefore escapes.
/// Exact for ASCII and Latin-1; for the rest, the common separators and format characters.
fn is_python_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    !matches!(
        u,
        0xA0 | 0xAD
            | 0x1680
            | 0x2000..=0x200F
            | 0x2028..=0x202F
            | 0x205F..=0x206F
            | 0x3000
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0xD800..=0xDFFF
            | 0xE000..=0xF8FF
    )
}

/// `repr(str)`: single quotes unless the text holds a single quote and no double quote.
pub fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_python_printable(c) => {
                let u = c as u32;
                if u <= 0xFF {
                    let _ = write!(out, "\\x{u:02x}");
                } else if u <= 0xFFFF {
                    let _ = write!(out, "\\u{u:04x}");
                } else {
                    let _ = write!(out, "\\U{u:08x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// `repr(value)` for values nested inside a printed list or dict.
fn write_repr(out: &mut String, value: &Value) {
    if let Some(part) = value.downcast_object_ref::<ContentPart>() {
        write_str_repr(out, part.text());
        return;
    }
    match value.kind() {
        ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Number => write_number(out, value),
        ValueKind::Seq | ValueKind::Map => write_container(out, value),
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

fn write_container(out: &mut String, value: &Value) {
    let Ok(iter) = value.try_iter() else {
        let _ = write!(out, "{value}");
        return;
    };
    if value.kind() == ValueKind::Map {
        out.push('{');
        for (i, key) in iter.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_repr(out, &key);
            out.push_str(": ");
            let item = value.get_item(&key).unwrap_or_default();
            write_repr(out, &item);
        }
        out.push('}');
    } else {
        out.push('[');
        for (i, item) in iter.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_repr(out, &item);
        }
        out.push(']');
    }
}

/// `str(value)` where it differs from minijinja's own printing: lists and dicts print as Python
/// reprs (`['a', 1]`, `{'k': None}`) and floats as `float.__repr__`. `None` for everything else,
/// which minijinja already prints like Python (strings, ints, `True`/`False`/`None`).
pub fn python_str(value: &Value) -> Option<String> {
    if value.downcast_object_ref::<ContentPart>().is_some() {
        return None;
    }
    match value.kind() {
        ValueKind::Seq | ValueKind::Map => {
            let mut out = String::new();
            write_container(&mut out, value);
            Some(out)
        }
        ValueKind::Number if !value.is_integer() => {
            let mut out = String::new();
            write_number(&mut out, value);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (2.5, "2.5"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e20, "1e+20"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e-7, "1e-07"),
            (-1.25e-10, "-1.25e-10"),
            (123456.789, "123456.789"),
            (0.1, "0.1"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "float_repr({x:e})");
        }
    }

    #[test]
    fn json_dumps_matches_python_defaults() {
        let v = Value::from_serialize(serde_json::json!({
            "b": [1, 2.5, true, null, "é<&>\"\n"],
            "a": {},
            "c": [],
        }));
        let got = json_dumps(&v, &JsonOptions::default()).unwrap();
        assert_eq!(
            got,
            r#"{"b": [1, 2.5, true, null, "é<&>\"\n"], "a": {}, "c": []}"#
        );
    }

    #[test]
    fn json_dumps_indent_sort_and_ascii() {
        let v = Value::from_serialize(serde_json::json!({"z": [1, {"y": "é😀"}], "a": []}));
        let opts = JsonOptions {
            ensure_ascii: true,
            indent: Some("  ".into()),
            item_separator: ",".into(),
            key_separator: ": ".into(),
            sort_keys: true,
        };
        let got = json_dumps(&v, &opts).unwrap();
        let want = "{\n  \"a\": [],\n  \"z\": [\n    1,\n    {\n      \"y\": \"\\u00e9\\ud83d\\ude00\"\n    }\n  ]\n}";
        assert_eq!(got, want);
    }

    #[test]
    fn json_strings_escape_as_python_does() {
        let text = "a\u{7f}\u{1}\u{8}\u{c}\t\r\\\"z é😀 end";
        let mut ascii = String::new();
        write_json_string(&mut ascii, text, true);
        assert_eq!(
            ascii,
            r#""a\u007f\u0001\b\f\t\r\\\"z \u00e9\ud83d\ude00 end""#
        );
        let mut utf8 = String::new();
        write_json_string(&mut utf8, text, false);
        assert_eq!(utf8, "\"a\u{7f}\\u0001\\b\\f\\t\\r\\\\\\\"z é😀 end\"");
    }

    #[test]
    fn json_dumps_rejects_undefined() {
        assert!(json_dumps(&Value::UNDEFINED, &JsonOptions::default()).is_err());
    }

    #[test]
    fn containers_print_as_python_repr() {
        let v = Value::from_serialize(serde_json::json!(["a", 1, 2.0, null, true, {"k": "it's"}]));
        assert_eq!(
            python_str(&v).unwrap(),
            r#"['a', 1, 2.0, None, True, {'k': "it's"}]"#
        );
        let mut s = String::new();
        write_str_repr(&mut s, "a'b\"c\\\n\u{1}");
        assert_eq!(s, r#"'a\'b"c\\\n\x01'"#);
    }
}
