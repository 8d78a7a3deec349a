//! Typed reads from JSON objects, with errors that name the exact field.

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// A JSON float that always prints as a float (`1.0`, not `1`).
pub fn float(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

pub fn opt_string(v: &Option<String>) -> Value {
    v.clone().map(Value::String).unwrap_or(Value::Null)
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A view of one JSON object at a known path (e.g. `prompts[0].sampling_params`).
#[derive(Clone)]
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    err: fn(String) -> Error,
}

impl<'a> Obj<'a> {
    pub fn new(v: &'a Value, path: String, err: fn(String) -> Error) -> Result<Obj<'a>> {
        match v {
            Value::Object(map) => Ok(Obj { map, path, err }),
            other => Err(err(format!(
                "{path}: expected an object, got {}",
                type_name(other)
            ))),
        }
    }

    pub fn at(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else if field.starts_with('[') {
            format!("{}{field}", self.path)
        } else {
            format!("{}.{field}", self.path)
        }
    }

    pub fn fail(&self, field: &str, what: impl std::fmt::Display) -> Error {
        (self.err)(format!("{}: {what}", self.at(field)))
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &'a String> {
        self.map.keys()
    }

    /// Refuse keys outside `allowed`, naming the first unknown one.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<()> {
        if let Some(k) = self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err((self.err)(format!(
                "{}: unknown key; expected one of {}",
                self.at(k),
                allowed.join(", ")
            )));
        }
        Ok(())
    }

    fn present(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| self.fail(key, format!("expected a non-negative integer, got {n}"))),
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| self.fail(key, format!("{s} does not fit in 64 bits"))),
            Some(other) => Err(self.fail(
                key,
                format!("expected a non-negative integer, got {}", type_name(other)),
            )),
        }
    }

    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        Ok(self.u64_opt(key)?.unwrap_or(default))
    }

    pub fn u64_req(&self, key: &str) -> Result<u64> {
        self.u64_opt(key)?.ok_or_else(|| self.fail(key, "required"))
    }

    pub fn i64_opt(&self, key: &str) -> Result<Option<i64>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                        .map(|f| f as i64)
                })
                .map(Some)
                .ok_or_else(|| self.fail(key, format!("expected an integer, got {n}"))),
            Some(other) => Err(self.fail(
                key,
                format!("expected an integer, got {}", type_name(other)),
            )),
        }
    }

    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64> {
        Ok(self.i64_opt(key)?.unwrap_or(default))
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.fail(key, format!("expected a number, got {n}"))),
            Some(other) => {
                Err(self.fail(key, format!("expected a number, got {}", type_name(other))))
            }
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.f64_opt(key)?.unwrap_or(default))
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(self.fail(key, format!("expected a boolean, got {}", type_name(other))))
            }
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.bool_opt(key)?.unwrap_or(default))
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                Err(self.fail(key, format!("expected a string, got {}", type_name(other))))
            }
        }
    }

    pub fn string_or(&self, key: &str, default: &str) -> Result<String> {
        Ok(self.opt_string(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn array(&self, key: &str) -> Result<&'a [Value]> {
        match self.present(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => {
                Err(self.fail(key, format!("expected an array, got {}", type_name(other))))
            }
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.fail(
                    &format!("{key}[{i}]"),
                    format!("expected a string, got {}", type_name(other)),
                )),
            })
            .collect()
    }

    pub fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| Obj::new(v, format!("{}[{i}]", self.at(key)), self.err))
            .collect()
    }

    /// The nested object at `key`, or an empty one when absent or null.
    pub fn object_or_empty(&self, key: &str) -> Result<Obj<'a>> {
        static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        match self.present(key) {
            None => Ok(Obj::new(
                EMPTY.get_or_init(|| Value::Object(Map::new())),
                self.at(key),
                self.err,
            )?),
            Some(v) => Obj::new(v, self.at(key), self.err),
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{v}");
        if s.contains('.') || s.contains("inf") {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn python_string(out: &mut String, s: &str, ensure_ascii: bool) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Write `v` the way Python's `json.dumps(v, ensure_ascii=..., indent=...)` does with its
/// default separators (`", "` and `": "`, or `","` and `": "` when indenting).
pub fn write_python_json(
    out: &mut String,
    v: &Value,
    ensure_ascii: bool,
    indent: Option<usize>,
    depth: usize,
) {
    let newline = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * d));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => python_string(out, s, ensure_ascii),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_python_json(out, item, ensure_ascii, indent, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                python_string(out, k, ensure_ascii);
                out.push_str(": ");
                write_python_json(out, item, ensure_ascii, indent, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// `json.dumps(v)` with Python's defaults (ASCII-escaped, spaced separators).
pub fn python_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_python_json(&mut out, v, true, None, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_matches_repr() {
        for (v, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-100.0, "-100.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789012345.0, "123456789012345.0"),
            (2.5e-7, "2.5e-07"),
        ] {
            assert_eq!(python_float(v), want, "{v}");
        }
    }

    #[test]
    fn python_dumps_spacing_and_escapes() {
        let v: Value =
            serde_json::from_str(r#"{"type":"function","name":"café","n":[1,2.0,null,true]}"#)
                .unwrap();
        assert_eq!(
            python_dumps(&v),
            r#"{"type": "function", "name": "caf\u00e9", "n": [1, 2.0, null, true]}"#
        );
    }
}
