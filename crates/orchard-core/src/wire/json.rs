//! Typed reads from JSON objects, with errors that name the exact field.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

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
