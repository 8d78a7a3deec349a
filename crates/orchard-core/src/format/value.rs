//! JSON → template values without hashing.
//!
//! `Value::from_serialize` turns every JSON object into an `IndexMap` keyed by `Value`, so each
//! attribute a template reads (`message.role`, `tool.function.name`, thousands per render) hashes
//! its key with SipHash. Chat messages and tool schemas are small objects: [`JsonMap`] keeps
//! them as a list and finds keys by comparison, in insertion order, with the same map semantics
//! (iteration, length, `items()`, `tojson`).

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value};
use serde_json::Value as Json;

/// Above this many keys a hashed map is cheaper than a scan.
const SCAN_LIMIT: usize = 24;

/// A small string-keyed map, in insertion order.
#[derive(Debug)]
pub struct JsonMap(Vec<(Value, Value)>);

impl JsonMap {
    /// The entries as a template value (a hashed map when there are many of them).
    pub fn value(entries: Vec<(Value, Value)>) -> Value {
        if entries.len() > SCAN_LIMIT {
            entries.into_iter().collect()
        } else {
            Value::from_object(JsonMap(entries))
        }
    }
}

impl Object for JsonMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    }

    // Keys with their values: `items` and `tojson` then read each pair without a lookup.
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_key_value_enumerator(|this| {
            Box::new(this.0.iter().map(|(k, v)| (k.clone(), v.clone())))
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// `json` as a template value: the same value `Value::from_serialize` gives, with objects as
/// [`JsonMap`]s.
pub fn json_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(json_value).collect::<Vec<_>>()),
        Json::Object(map) => JsonMap::value(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The converted value behaves as `from_serialize`'s in every way a template can observe.
    #[test]
    fn same_as_from_serialize() {
        let env = minijinja::Environment::new();
        let data = json!({
            "role": "user", "n": 3, "neg": -2, "f": 2.5, "big": 18446744073709551615u64,
            "none": null, "t": true, "list": [1, {"b": 2, "a": [3]}], "empty": {},
            "wide": (0..40).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()
        });
        let src = "{{ v.role }} {{ v['n'] }} {{ v.missing is defined }} {{ v | length }} \
            {% for k, x in v | items %}{{ k }}={{ x }};{% endfor %} {{ v.list[1].a }} \
            {{ v.empty is mapping }} {{ not v.empty }} {{ 'role' in v }} {{ v.wide.k39 }} \
            {{ v | tojson }} {{ v.list[1] }} {{ v == v }}";
        let t = env.template_from_str(src).unwrap();
        let via_serde = t
            .render(minijinja::context! { v => Value::from_serialize(&data) })
            .unwrap();
        let via_map = t
            .render(minijinja::context! { v => json_value(&data) })
            .unwrap();
        assert_eq!(via_map, via_serde);
    }
}
