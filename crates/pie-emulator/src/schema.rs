//! Constrained JSON: values that satisfy a JSON Schema, written out token by token.
//!
//! This plays the part of the engine's grammar-constrained decoder. The structure (braces,
//! keys, punctuation, enum members, numbers) is forced; the text inside free strings comes
//! from the language model through a [`Words`] source, so strings look like the model's
//! other output and depend on the seed.
//!
//! Supported schema keywords: `type` (one type or a list; `null` is used only when nothing
//! else is allowed), `enum`, `const`, `properties`, `required`, `additionalProperties`
//! (no extra keys are ever written), `items`, `minItems`/`maxItems`, `minimum`/`maximum`
//! (and the exclusive forms), `minLength`/`maxLength`, `anyOf`/`oneOf` (first usable
//! branch), `allOf` (merged), `$ref` to `#/$defs/...` or `#/definitions/...`.

use serde_json::{Map, Value};

use crate::sampler::Rng;

/// Deepest nesting the generator follows before it writes the smallest allowed value.
const MAX_DEPTH: usize = 8;

/// One sampled word-piece from the language model.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub token: usize,
    pub text: String,
    pub logprob: f64,
    pub top: Vec<(usize, f64)>,
}

/// Where free string text and random choices come from.
pub trait Words {
    /// Sample a short run of `n` word-pieces suitable inside a JSON string.
    fn words(&mut self, n: usize) -> Vec<Sampled>;
    fn rng(&mut self) -> &mut Rng;
}

/// One token of constrained output.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonTok {
    /// The text as it appears in the output (JSON-escaped inside strings).
    pub text: String,
    /// Set for word-pieces sampled from the model (free string text).
    pub sampled: Option<Sampled>,
    /// The unescaped string text this token contributes (string contents only).
    pub raw: Option<String>,
    /// Per-field streaming: `(field name, delta text)`.
    pub field_delta: Option<(String, String)>,
    /// Per-field completion: `(field name, value)`, on the token that closes the value.
    pub field_done: Option<(String, Value)>,
}

impl JsonTok {
    pub fn forced(text: impl Into<String>) -> JsonTok {
        JsonTok {
            text: text.into(),
            sampled: None,
            raw: None,
            field_delta: None,
            field_done: None,
        }
    }
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        rng.next_u64() % n
    }
}

fn type_list(schema: &Map<String, Value>) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Follow `$ref`, `allOf`, `anyOf`/`oneOf` until a concrete schema remains.
fn resolve(schema: &Value, root: &Value, depth: usize) -> Map<String, Value> {
    let Some(obj) = schema.as_object() else {
        return Map::new();
    };
    if depth > MAX_DEPTH {
        return obj.clone();
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix("#/")
            .map(|path| {
                path.split('/').try_fold(root, |v, key| {
                    v.get(key.replace("~1", "/").replace("~0", "~"))
                })
            })
            .unwrap_or(None);
        if let Some(t) = target {
            let mut merged = resolve(t, root, depth + 1);
            for (k, v) in obj {
                if k != "$ref" {
                    merged.insert(k.clone(), v.clone());
                }
            }
            return merged;
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            let usable = branches
                .iter()
                .find(|b| {
                    let r = resolve(b, root, depth + 1);
                    type_list(&r) != ["null"]
                })
                .or_else(|| branches.first());
            if let Some(b) = usable {
                let mut merged = resolve(b, root, depth + 1);
                for (k, v) in obj {
                    if k != key {
                        merged.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                return merged;
            }
        }
    }
    if let Some(Value::Array(parts)) = obj.get("allOf") {
        let mut merged = obj.clone();
        merged.remove("allOf");
        for part in parts {
            for (k, v) in resolve(part, root, depth + 1) {
                match (k.as_str(), merged.get_mut(&k), v) {
                    ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                        for (pk, pv) in theirs {
                            mine.entry(pk).or_insert(pv);
                        }
                    }
                    ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                        for r in theirs {
                            if !mine.contains(&r) {
                                mine.push(r);
                            }
                        }
                    }
                    (_, Some(_), _) => {}
                    (_, None, v) => {
                        merged.insert(k, v);
                    }
                }
            }
        }
        return merged;
    }
    obj.clone()
}

/// The type to generate for a resolved schema.
fn pick_type(schema: &Map<String, Value>) -> String {
    let types = type_list(schema);
    if let Some(t) = types.iter().find(|t| t.as_str() != "null") {
        return t.clone();
    }
    if !types.is_empty() {
        return "null".into();
    }
    if schema.contains_key("properties") || schema.contains_key("additionalProperties") {
        "object".into()
    } else if schema.contains_key("items") {
        "array".into()
    } else {
        "string".into()
    }
}

/// Generate a value for `schema` (with `root` for `$ref`), appending its tokens to `out`.
pub fn generate(
    schema: &Value,
    root: &Value,
    src: &mut dyn Words,
    out: &mut Vec<JsonTok>,
) -> Value {
    gen(schema, root, src, out, 0)
}

fn gen(
    schema: &Value,
    root: &Value,
    src: &mut dyn Words,
    out: &mut Vec<JsonTok>,
    depth: usize,
) -> Value {
    let s = resolve(schema, root, depth);
    if let Some(c) = s.get("const") {
        return literal(c.clone(), out);
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.is_empty() {
            let i = below(src.rng(), options.len() as u64) as usize;
            return literal(options[i].clone(), out);
        }
    }
    match pick_type(&s).as_str() {
        "object" => gen_object(&s, root, src, out, depth, None),
        "array" => gen_array(&s, root, src, out, depth),
        "integer" => {
            let (lo, hi) = bounds(&s);
            let v = lo + below(src.rng(), (hi - lo) as u64 + 1) as i64;
            literal(Value::from(v), out)
        }
        "number" => {
            let (lo, hi) = bounds(&s);
            let tenths = below(src.rng(), ((hi - lo) as u64) * 10 + 1) as i64;
            let v = lo as f64 + tenths as f64 / 10.0;
            let v = if v > hi as f64 { hi as f64 } else { v };
            literal(Value::from(v), out)
        }
        "boolean" => {
            let b = below(src.rng(), 2) == 1;
            literal(Value::Bool(b), out)
        }
        "null" => literal(Value::Null, out),
        _ => gen_string(&s, src, out),
    }
}

/// Integer bounds of a numeric schema, defaulting to 0..=100.
fn bounds(s: &Map<String, Value>) -> (i64, i64) {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let mut lo = num("minimum").map(|v| v.ceil() as i64);
    let mut hi = num("maximum").map(|v| v.floor() as i64);
    if let Some(v) = num("exclusiveMinimum") {
        lo = Some(v.floor() as i64 + 1);
    }
    if let Some(v) = num("exclusiveMaximum") {
        hi = Some(v.ceil() as i64 - 1);
    }
    let (lo, hi) = match (lo, hi) {
        (Some(l), Some(h)) => (l, h),
        (Some(l), None) => (l, l.saturating_add(100)),
        (None, Some(h)) => (h.saturating_sub(100).max(h.min(0)), h),
        (None, None) => (0, 100),
    };
    if hi < lo {
        (lo, lo)
    } else {
        (lo, hi.min(lo.saturating_add(1_000_000)))
    }
}

/// A value written as one forced token (numbers, booleans, null, enum members, consts).
fn literal(v: Value, out: &mut Vec<JsonTok>) -> Value {
    match &v {
        Value::String(s) => {
            out.push(JsonTok::forced("\""));
            let mut t = JsonTok::forced(escape_inner(s));
            t.raw = Some(s.clone());
            out.push(t);
            out.push(JsonTok::forced("\""));
        }
        Value::Object(m) if !m.is_empty() => {
            let text = python_style(&v);
            out.push(JsonTok::forced(text));
        }
        Value::Array(a) if !a.is_empty() => {
            out.push(JsonTok::forced(python_style(&v)));
        }
        _ => out.push(JsonTok::forced(python_style(&v))),
    }
    v
}

/// JSON text with `", "` and `": "` separators (how the tokens are joined).
pub fn python_style(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_style(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(python_style).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// The escaped text of a string without its surrounding quotes.
fn escape_inner(s: &str) -> String {
    let q = Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

fn gen_string(s: &Map<String, Value>, src: &mut dyn Words, out: &mut Vec<JsonTok>) -> Value {
    let min_len = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max_len = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|m| m as usize);
    let n = 2 + below(src.rng(), 3) as usize;
    let mut pieces = src.words(n);
    let chars = |p: &[Sampled]| p.iter().map(|x| x.text.chars().count()).sum::<usize>();
    let mut guard = 0;
    while chars(&pieces) < min_len && guard < 64 {
        pieces.extend(src.words(2));
        guard += 1;
    }
    let mut texts: Vec<String> = pieces.iter().map(|p| p.text.clone()).collect();
    if let Some(max) = max_len {
        while !texts.is_empty() && texts.iter().map(|t| t.chars().count()).sum::<usize>() > max {
            if texts.len() == 1 {
                let cut: String = texts[0].chars().take(max).collect();
                texts[0] = cut;
                break;
            }
            texts.pop();
            pieces.pop();
        }
    }
    // Pad (when a minimum length could not be reached from words) with letters.
    let mut value: String = texts.concat();
    while value.chars().count() < min_len {
        value.push('a');
        texts.push("a".into());
    }
    out.push(JsonTok::forced("\""));
    for (i, text) in texts.iter().enumerate() {
        if text.is_empty() {
            continue;
        }
        let sampled = pieces.get(i).filter(|p| p.text == *text).cloned();
        out.push(JsonTok {
            text: escape_inner(text),
            sampled,
            raw: Some(text.clone()),
            field_delta: None,
            field_done: None,
        });
    }
    out.push(JsonTok::forced("\""));
    Value::String(value)
}

fn gen_array(
    s: &Map<String, Value>,
    root: &Value,
    src: &mut dyn Words,
    out: &mut Vec<JsonTok>,
    depth: usize,
) -> Value {
    let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(1);
    let max = s
        .get("maxItems")
        .and_then(Value::as_u64)
        .unwrap_or(min.max(3))
        .max(min);
    let (min, max) = (min.min(16), max.min(16.max(min)));
    let n = if depth >= MAX_DEPTH {
        min
    } else {
        min + below(src.rng(), max - min + 1)
    };
    if n == 0 {
        out.push(JsonTok::forced("[]"));
        return Value::Array(Vec::new());
    }
    let empty = Value::Object(Map::new());
    let item_schema = s.get("items").unwrap_or(&empty);
    out.push(JsonTok::forced("["));
    let mut items = Vec::new();
    for i in 0..n {
        if i > 0 {
            out.push(JsonTok::forced(", "));
        }
        items.push(gen(item_schema, root, src, out, depth + 1));
    }
    out.push(JsonTok::forced("]"));
    Value::Array(items)
}

/// Generate an object. With `fields`, the tokens of each top-level property value are
/// tagged for per-field streaming (tool-call arguments).
pub fn gen_object_for_fields(schema: &Value, src: &mut dyn Words, out: &mut Vec<JsonTok>) -> Value {
    let s = resolve(schema, schema, 0);
    gen_object(&s, schema, src, out, 0, Some(()))
}

fn gen_object(
    s: &Map<String, Value>,
    root: &Value,
    src: &mut dyn Words,
    out: &mut Vec<JsonTok>,
    depth: usize,
    fields: Option<()>,
) -> Value {
    let empty = Map::new();
    let props = s
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut keys: Vec<&String> = Vec::new();
    for (k, _) in props.iter() {
        let include =
            required.contains(&k.as_str()) || (depth < MAX_DEPTH && below(src.rng(), 2) == 1);
        if include {
            keys.push(k);
        }
    }
    if keys.is_empty() {
        out.push(JsonTok::forced("{}"));
        return Value::Object(Map::new());
    }
    out.push(JsonTok::forced("{"));
    let mut m = Map::new();
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push(JsonTok::forced(", "));
        }
        out.push(JsonTok::forced(Value::String((*k).clone()).to_string()));
        out.push(JsonTok::forced(": "));
        let start = out.len();
        let v = gen(&props[k.as_str()], root, src, out, depth + 1);
        if fields.is_some() {
            tag_field(k, &v, &mut out[start..]);
        }
        m.insert((*k).clone(), v);
    }
    out.push(JsonTok::forced("}"));
    Value::Object(m)
}

/// Mark the tokens of one field value: string contents (without the quotes) or the whole
/// value stream as field deltas, and the value's last token as the field's completion.
fn tag_field(name: &str, v: &Value, toks: &mut [JsonTok]) {
    let is_string = v.is_string();
    let n = toks.len();
    for (i, t) in toks.iter_mut().enumerate() {
        let delta = if is_string {
            if i == 0 || i + 1 == n {
                None
            } else {
                t.raw.clone()
            }
        } else {
            Some(t.text.clone())
        };
        if let Some(d) = delta.filter(|d| !d.is_empty()) {
            t.field_delta = Some((name.to_string(), d));
        }
    }
    if let Some(last) = toks.last_mut() {
        last.field_done = Some((name.to_string(), v.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake {
        rng: Rng,
        n: usize,
    }

    impl Words for Fake {
        fn words(&mut self, n: usize) -> Vec<Sampled> {
            (0..n)
                .map(|i| {
                    self.n += 1;
                    Sampled {
                        token: self.n,
                        text: if i == 0 {
                            "Apple".into()
                        } else {
                            " \"tree\"".into()
                        },
                        logprob: -1.0,
                        top: vec![],
                    }
                })
                .collect()
        }
        fn rng(&mut self) -> &mut Rng {
            &mut self.rng
        }
    }

    fn run(schema: Value, seed: u64) -> (Value, String) {
        let mut f = Fake {
            rng: Rng::new(seed),
            n: 0,
        };
        let mut out = Vec::new();
        let v = generate(&schema, &schema, &mut f, &mut out);
        let text: String = out.iter().map(|t| t.text.as_str()).collect();
        (v, text)
    }

    #[test]
    fn text_parses_back_to_the_value() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 18, "maximum": 20},
                "score": {"type": "number"},
                "ok": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                "kind": {"enum": ["a", "b"]},
                "inner": {"type": "object", "properties": {"x": {"type": ["null", "integer"]}},
                          "required": ["x"], "additionalProperties": false},
                "ref": {"$ref": "#/$defs/R"}
            },
            "required": ["name", "age", "score", "ok", "tags", "kind", "inner", "ref"],
            "additionalProperties": false,
            "$defs": {"R": {"type": "string", "maxLength": 3}}
        });
        for seed in 0..20 {
            let (v, text) = run(schema.clone(), seed);
            let parsed: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed, v);
            let age = v["age"].as_i64().unwrap();
            assert!((18..=20).contains(&age));
            assert_eq!(v["tags"].as_array().unwrap().len(), 2);
            assert!(["a", "b"].contains(&v["kind"].as_str().unwrap()));
            assert!(v["inner"]["x"].is_i64());
            assert!(v["ref"].as_str().unwrap().chars().count() <= 3);
            assert_eq!(v.as_object().unwrap().len(), 8);
        }
    }

    #[test]
    fn optional_properties_come_and_go_with_the_seed() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}}});
        let sizes: std::collections::HashSet<usize> = (0..30)
            .map(|s| run(schema.clone(), s).0.as_object().unwrap().len())
            .collect();
        assert!(sizes.len() > 1, "{sizes:?}");
    }

    #[test]
    fn fields_are_tagged_for_streaming() {
        let schema = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"]});
        let mut f = Fake {
            rng: Rng::new(3),
            n: 0,
        };
        let mut out = Vec::new();
        let v = gen_object_for_fields(&schema, &mut f, &mut out);
        let city: String = out
            .iter()
            .filter_map(|t| t.field_delta.as_ref())
            .filter(|(n, _)| n == "city")
            .map(|(_, d)| d.as_str())
            .collect();
        assert_eq!(Value::String(city), v["city"]);
        let done: Vec<&(String, Value)> =
            out.iter().filter_map(|t| t.field_done.as_ref()).collect();
        assert_eq!(done.len(), 2);
        assert_eq!(done[1].1, v["days"]);
    }
}
