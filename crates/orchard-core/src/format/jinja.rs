//! The minijinja environment, configured once for Jinja2 (Hugging Face chat template) parity:
//!
//! - `trim_blocks` + `lstrip_blocks`, and no `keep_trailing_newline` (HF's sandboxed
//!   environment sets the first two and leaves the third at Jinja2's default, off);
//! - no auto-escaping;
//! - Python methods on values (`.get`, `.items`, `.strip`, ...) through minijinja-contrib's
//!   pycompat callback, plus `.get` on content parts;
//! - `tojson` writing exactly what `json.dumps(x, ensure_ascii=False)` writes, with `indent`,
//!   `separators`, `sort_keys` and `ensure_ascii`;
//! - `{{ x }}` and `x | string` printing lists, dicts and floats as Python's `str()` does
//!   (`None`/`True`/`False` already print that way in minijinja >= 2.22);
//! - `raise_exception(msg)` and `strftime_now(fmt)` globals;
//! - `{% import %}`/`{% include %}` names resolved in the family folder, then in the
//!   model-specs root (for macros shared by several families).

use std::path::{Component, Path, PathBuf};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{
    AutoEscape, Environment, Error as JinjaError, ErrorKind, State, UndefinedBehavior,
};

use super::messages::ContentPart;
use super::python::{self, JsonOptions};
use super::strftime::DateTime;

/// A template name is a relative path without `..`; anything else is refused by the loader.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    }
}

fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    // Most calls pass no options: skip reading each keyword (a lookup and conversion apiece).
    if kwargs.args().next().is_none() {
        return Ok(Value::from_safe_string(python::json_dumps(
            value,
            &JsonOptions::default(),
        )?));
    }
    let mut opts = JsonOptions {
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ..JsonOptions::default()
    };
    let indent: Option<Value> = kwargs.get("indent")?;
    if let Some(indent) = indent.filter(|v| !v.is_none()) {
        let unit = if let Some(s) = indent.as_str() {
            s.to_string()
        } else if let Some(n) = indent.as_i64() {
            " ".repeat(usize::try_from(n).unwrap_or(0))
        } else {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: indent must be an integer or a string",
            ));
        };
        opts.indent = Some(unit);
        // json.dumps drops the space after "," when indenting.
        opts.item_separator = ",".into();
    }
    let separators: Option<Value> = kwargs.get("separators")?;
    if let Some(seps) = separators.filter(|v| !v.is_none()) {
        let pair: Vec<Value> = seps.try_iter()?.collect();
        match (
            pair.first().and_then(Value::as_str),
            pair.get(1).and_then(Value::as_str),
        ) {
            (Some(item), Some(key)) if pair.len() == 2 => {
                opts.item_separator = item.to_string();
                opts.key_separator = key.to_string();
            }
            _ => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be a pair of strings",
                ))
            }
        }
    }
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(python::json_dumps(value, &opts)?))
}

/// `x | string` with Python's `str()` for lists, dicts and floats.
fn string_filter(value: &Value) -> Value {
    if value.kind() == ValueKind::String {
        return value.clone();
    }
    Value::from(python::python_str(value).unwrap_or_else(|| value.to_string()))
}

/// Jinja2's `iterable`: anything `iter()` accepts. Undefined is iterable (it iterates as
/// empty); none, booleans and numbers are not (minijinja says yes for none).
fn is_iterable(value: &Value) -> bool {
    is_sequence(value) || value.kind() == ValueKind::Iterable
}

/// Jinja2's `sequence`: has a length and item access, so strings and dicts count too
/// (minijinja only counts lists), and so does undefined.
fn is_sequence(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Undefined
            | ValueKind::String
            | ValueKind::Bytes
            | ValueKind::Seq
            | ValueKind::Map
    )
}

/// Jinja2's `number`: `isinstance(x, numbers.Number)`, which includes booleans.
fn is_number(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Number | ValueKind::Bool)
}

fn unknown_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, JinjaError> {
    if let Some(part) = value.downcast_object_ref::<ContentPart>() {
        if method == "get" {
            let (key, default): (&str, Option<Value>) = minijinja::value::from_args(args)?;
            return Ok(part.get(key, default.unwrap_or(Value::from(()))));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Build the environment for one family. `family_dir` is searched first, then `shared_dir`.
pub fn environment(family: &str, family_dir: PathBuf, shared_dir: PathBuf) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(unknown_method);

    env.set_loader(move |name| {
        let Some(rel) = safe_relative(name) else {
            return Ok(None);
        };
        for dir in [&family_dir, &shared_dir] {
            let path = dir.join(&rel);
            if path.is_file() {
                return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                    JinjaError::new(
                        ErrorKind::InvalidOperation,
                        format!("cannot read {}: {e}", path.display()),
                    )
                });
            }
        }
        Ok(None)
    });

    env.add_test("iterable", is_iterable);
    env.add_test("sequence", is_sequence);
    env.add_test("number", is_number);
    env.add_filter("tojson", tojson);
    env.add_filter("string", string_filter);
    env.set_formatter(|out, state, value| {
        // Strings print as themselves (no escaping here): skip the `fmt` machinery.
        if value.kind() == ValueKind::String {
            if let Some(text) = value.as_str() {
                return out.write_str(text).map_err(JinjaError::from);
            }
        }
        if !value.is_safe() {
            if let Some(text) = python::python_str(value) {
                return out.write_str(&text).map_err(JinjaError::from);
            }
        }
        minijinja::escape_formatter(out, state, value)
    });

    let family_name = family.to_string();
    env.add_function(
        "raise_exception",
        move |message: Value| -> Result<Value, JinjaError> {
            Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("raise_exception in the {family_name} template: {message}"),
            ))
        },
    );
    env.add_function("strftime_now", |format: &str| -> Value {
        Value::from(DateTime::now().strftime(format))
    });
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: Value) -> Result<String, JinjaError> {
        let mut env = environment(
            "test",
            PathBuf::from("/nonexistent"),
            PathBuf::from("/nonexistent"),
        );
        env.add_template_owned("t", src.to_string())?;
        env.get_template("t")?.render(ctx)
    }

    fn ctx(json: serde_json::Value) -> Value {
        Value::from_serialize(json)
    }

    #[test]
    fn prints_python_values() {
        let out = render(
            "{{ t }} {{ f }} {{ n }} {{ x }} {{ l }} {{ d }} {{ l | string }} {{ big }}",
            ctx(serde_json::json!({
                "t": true, "f": false, "n": null, "x": 2.0,
                "l": ["a", 1, null], "d": {"k": [true]}, "big": 1e20
            })),
        )
        .unwrap();
        assert_eq!(
            out,
            "True False None 2.0 ['a', 1, None] {'k': [True]} ['a', 1, None] 1e+20"
        );
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let data = ctx(serde_json::json!({"v": {"z": "é<&>'", "a": [1, 2.5, null]}}));
        assert_eq!(
            render("{{ v | tojson }}", data.clone()).unwrap(),
            r#"{"z": "é<&>'", "a": [1, 2.5, null]}"#
        );
        assert_eq!(
            render("{{ v | tojson(ensure_ascii=False) }}", data.clone()).unwrap(),
            r#"{"z": "é<&>'", "a": [1, 2.5, null]}"#
        );
        assert_eq!(
            render("{{ v.a | tojson(indent=2) }}", data.clone()).unwrap(),
            "[\n  1,\n  2.5,\n  null\n]"
        );
        assert_eq!(
            render(
                "{{ v | tojson(separators=(',', ':'), sort_keys=true) }}",
                data.clone()
            )
            .unwrap(),
            r#"{"a":[1,2.5,null],"z":"é<&>'"}"#
        );
        assert!(render("{{ v | tojson(bogus=1) }}", data.clone()).is_err());
        assert!(render("{{ missing | tojson }}", data).is_err());
    }

    #[test]
    fn whitespace_and_trailing_newline_follow_hf() {
        let out = render("{% if true %}\n  a\n{% endif %}\n", Value::UNDEFINED).unwrap();
        assert_eq!(out, "  a\n");
    }

    #[test]
    fn jinja2_semantics_that_older_minijinja_got_wrong() {
        // Loop-local `set` does not leak into later iterations.
        let out = render(
            "{% for x in [1, 2, 3] %}{% if x == 1 %}{% set y = 'a' %}{% endif %}[{{ y }}]{% endfor %}",
            Value::UNDEFINED,
        )
        .unwrap();
        assert_eq!(out, "[a][][]");
        // Dict methods work even when a key shadows them.
        let out = render(
            "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('items') }}",
            ctx(serde_json::json!({"d": {"items": 1, "get": 2}})),
        )
        .unwrap();
        assert_eq!(out, "items=1;get=2;1");
    }

    #[test]
    fn type_tests_follow_jinja2() {
        let out = render(
            "{{ n is iterable }} {{ u is iterable }} {{ s is sequence }} {{ d is sequence }} {{ b is number }} {{ b is integer }} {{ l is sequence }} {{ d is mapping }}",
            ctx(serde_json::json!({"n": null, "s": "x", "d": {"a": 1}, "b": true, "l": [1]})),
        )
        .unwrap();
        assert_eq!(out, "False True True True True False True True");
    }

    #[test]
    fn raise_exception_and_strftime_now() {
        let err = render("{{ raise_exception('bad input') }}", Value::UNDEFINED).unwrap_err();
        assert!(
            err.to_string()
                .contains("raise_exception in the test template: bad input"),
            "{err}"
        );
        let out = render("{{ strftime_now('%Y') }}", Value::UNDEFINED).unwrap();
        assert!(out.len() == 4 && out.starts_with('2'), "{out}");
    }

    #[test]
    fn content_parts_behave_like_reference_parts() {
        let parts = Value::from(vec![
            Value::from_object(ContentPart::Text("hi ".into())),
            Value::from_object(ContentPart::Image),
        ]);
        let out = render(
            "{% for p in c %}{{ p }}|{{ p.type }}|{{ p['type'] }}|{{ p.get('text', 'none') }}|{{ p.text is defined }};{% endfor %}",
            Value::from_iter([("c", parts)]),
        )
        .unwrap();
        assert_eq!(out, "hi |text|text|hi |True;|image|image|none|False;");
    }
}
