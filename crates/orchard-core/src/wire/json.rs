//! Typed reads from JSON objects, with errors that name the exact field.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde_json::Value;

use super::tree::Node;
use crate::error::{Error, Result};

/// What `v` is, in messages ("a string"): the names [`Node::type_name`] gives.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => Node::Null,
        Value::Bool(_) => Node::Bool(false),
        Value::Number(_) => Node::U64(0),
        Value::String(_) => Node::Str("".into()),
        Value::Array(_) => Node::Array(Vec::new()),
        Value::Object(_) => Node::Object(Vec::new()),
    }
    .type_name()
}

/// A number as messages print it: as serde_json writes it (a float that is not finite, which
/// JSON text cannot hold but a tree built in Rust can, as Rust writes it).
fn number_text(n: &Node) -> String {
    match (n.number(), n) {
        (Some(number), _) => number.to_string(),
        (None, Node::F64(f)) => f.to_string(),
        (None, other) => other.type_name().to_string(),
    }
}

/// Where an object sits (e.g. `prompts[0].sampling_params`), written out only for a message.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, &'a str, usize),
}

impl Path<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, Path::Root(""))
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Path::Root(s) => f.write_str(s),
            Path::Field(parent, field) => write!(f, "{}", Joined(parent, field)),
            Path::Item(parent, field, i) => write!(f, "{}[{i}]", Joined(parent, field)),
        }
    }
}

/// `field` under `path`: `path.field`, `path[0]` for an index, `field` at the root.
struct Joined<'a>(&'a Path<'a>, &'a str);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Joined(path, field) = *self;
        if path.is_empty() {
            f.write_str(field)
        } else if field.starts_with('[') {
            write!(f, "{path}{field}")
        } else {
            write!(f, "{path}.{field}")
        }
    }
}

/// A view of one JSON object at a known path (e.g. `prompts[0].sampling_params`).
#[derive(Clone)]
pub struct Obj<'a> {
    map: &'a [(Cow<'a, str>, Node<'a>)],
    path: Path<'a>,
    err: fn(String) -> Error,
    /// Where the last lookup found its key: readers mostly ask in the order keys are written.
    next: Cell<usize>,
}

impl<'a> Obj<'a> {
    pub fn new(v: &'a Node<'a>, path: &'a str, err: fn(String) -> Error) -> Result<Obj<'a>> {
        Obj::at_path(v, Path::Root(path), err)
    }

    fn at_path(v: &'a Node<'a>, path: Path<'a>, err: fn(String) -> Error) -> Result<Obj<'a>> {
        match v {
            Node::Object(map) => Ok(Obj {
                map,
                path,
                err,
                next: Cell::new(0),
            }),
            other => Err(err(format!(
                "{path}: expected an object, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn at(&self, field: &str) -> String {
        Joined(&self.path, field).to_string()
    }

    pub fn fail(&self, field: &str, what: impl fmt::Display) -> Error {
        (self.err)(format!("{}: {what}", Joined(&self.path, field)))
    }

    pub fn get(&self, key: &str) -> Option<&'a Node<'a>> {
        let map = self.map;
        let start = self.next.get().min(map.len());
        let (head, tail) = map.split_at(start);
        let found = tail
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| start + i)
            .or_else(|| head.iter().position(|(k, _)| k == key))?;
        self.next.set(found + 1);
        Some(&map[found].1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.map.iter().map(|(k, _)| k.as_ref())
    }

    /// Every key with its value, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a Node<'a>)> {
        self.map.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Refuse keys outside `allowed`, naming the first unknown one.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<()> {
        if let Some(k) = self.keys().find(|k| !allowed.contains(k)) {
            return Err((self.err)(format!(
                "{}: unknown key; expected one of {}",
                self.at(k),
                allowed.join(", ")
            )));
        }
        Ok(())
    }

    fn present(&self, key: &str) -> Option<&'a Node<'a>> {
        self.get(key).filter(|v| !v.is_null())
    }

    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.present(key) {
            None => Ok(None),
            Some(&Node::U64(u)) => Ok(Some(u)),
            Some(&Node::F64(f)) if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) => {
                Ok(Some(f as u64))
            }
            Some(n @ (Node::I64(_) | Node::F64(_))) => Err(self.fail(
                key,
                format!("expected a non-negative integer, got {}", number_text(n)),
            )),
            Some(Node::Str(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| self.fail(key, format!("{s} does not fit in 64 bits"))),
            Some(other) => Err(self.fail(
                key,
                format!("expected a non-negative integer, got {}", other.type_name()),
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
            Some(n @ (Node::U64(_) | Node::I64(_) | Node::F64(_))) => n
                .as_i64()
                .or_else(|| match *n {
                    Node::F64(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
                    _ => None,
                })
                .map(Some)
                .ok_or_else(|| {
                    self.fail(key, format!("expected an integer, got {}", number_text(n)))
                }),
            Some(other) => Err(self.fail(
                key,
                format!("expected an integer, got {}", other.type_name()),
            )),
        }
    }

    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64> {
        Ok(self.i64_opt(key)?.unwrap_or(default))
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        self.f64_of(key, self.get(key))
    }

    /// [`Self::f64_opt`] of a value already found at `key`.
    pub fn f64_of(&self, key: &str, v: Option<&Node>) -> Result<Option<f64>> {
        match v.filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(n) => match n.as_f64() {
                Some(f) => Ok(Some(f)),
                None => Err(self.fail(key, format!("expected a number, got {}", n.type_name()))),
            },
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.f64_opt(key)?.unwrap_or(default))
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.present(key) {
            None => Ok(None),
            Some(Node::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.fail(
                key,
                format!("expected a boolean, got {}", other.type_name()),
            )),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.bool_opt(key)?.unwrap_or(default))
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<String>> {
        self.string_of(key, self.get(key))
    }

    /// [`Self::opt_string`] of a value already found at `key`.
    pub fn string_of(&self, key: &str, v: Option<&Node>) -> Result<Option<String>> {
        match v.filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(Node::Str(s)) => Ok(Some(s.to_string())),
            Some(other) => {
                Err(self.fail(key, format!("expected a string, got {}", other.type_name())))
            }
        }
    }

    pub fn string_or(&self, key: &str, default: &str) -> Result<String> {
        Ok(self.opt_string(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn array(&self, key: &str) -> Result<&'a [Node<'a>]> {
        match self.present(key) {
            None => Ok(&[]),
            Some(Node::Array(a)) => Ok(a),
            Some(other) => {
                Err(self.fail(key, format!("expected an array, got {}", other.type_name())))
            }
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Node::Str(s) => Ok(s.to_string()),
                other => Err(self.fail(
                    &format!("{key}[{i}]"),
                    format!("expected a string, got {}", other.type_name()),
                )),
            })
            .collect()
    }

    /// The objects of the array at `key`, each checked to be one as it is reached.
    pub fn items<'s>(&'s self, key: &'s str) -> Result<impl Iterator<Item = Result<Obj<'s>>> + 's> {
        let err = self.err;
        Ok(self
            .array(key)?
            .iter()
            .enumerate()
            .map(move |(i, v)| Obj::at_path(v, Path::Item(&self.path, key, i), err)))
    }

    /// The objects of the array at `key` (all checked first).
    pub fn objects<'s>(&'s self, key: &'s str) -> Result<Vec<Obj<'s>>> {
        self.items(key)?.collect()
    }

    /// The nested object at `key`, or an empty one when absent or null.
    pub fn object_or_empty<'s>(&'s self, key: &'s str) -> Result<Obj<'s>> {
        static EMPTY: Node<'static> = Node::Object(Vec::new());
        let path = Path::Field(&self.path, key);
        Obj::at_path(self.present(key).unwrap_or(&EMPTY), path, self.err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree;
    use super::*;

    /// A tree built in Rust can hold a float JSON text cannot spell: it is refused, not a panic.
    #[test]
    fn non_finite_numbers_are_refused_by_name() {
        let node = Node::Object(vec![
            ("n".into(), Node::F64(f64::NAN)),
            ("i".into(), Node::F64(f64::NEG_INFINITY)),
        ]);
        let o = Obj::new(&node, "p", Error::invalid).unwrap();
        assert_eq!(
            o.u64_opt("n").unwrap_err().message,
            "p.n: expected a non-negative integer, got NaN"
        );
        assert_eq!(
            o.i64_opt("i").unwrap_err().message,
            "p.i: expected an integer, got -inf"
        );
    }

    #[test]
    fn paths_are_written_out_only_in_messages() {
        let node = tree::parse(r#"{"a":{"b":[{"c":"x"},{"c":1}]}}"#).unwrap();
        let root = Obj::new(&node, "", Error::invalid).unwrap();
        let a = root.object_or_empty("a").unwrap();
        let items = a.objects("b").unwrap();
        assert_eq!(items[0].string_or("c", "").unwrap(), "x");
        assert_eq!(
            items[1].string_or("c", "").unwrap_err().message,
            "a.b[1].c: expected a string, got a number"
        );
        assert_eq!(root.at("[2]"), "[2]");
        assert_eq!(a.at("[2]"), "a[2]");
        assert_eq!(
            a.object_or_empty("b").err().unwrap().message,
            "a.b: expected an object, got an array"
        );
        let named = Obj::new(&node, "request", Error::invalid).unwrap();
        assert_eq!(named.fail("x", "bad").message, "request.x: bad");
    }

    #[test]
    fn lookups_find_keys_in_any_order() {
        let node = tree::parse(r#"{"a":1,"b":2,"c":3}"#).unwrap();
        let o = Obj::new(&node, "", Error::invalid).unwrap();
        for key in ["c", "a", "b", "b", "c", "z", "a"] {
            let want = match key {
                "a" => Some(1),
                "b" => Some(2),
                "c" => Some(3),
                _ => None,
            };
            assert_eq!(o.u64_opt(key).unwrap(), want, "{key}");
        }
    }

    #[test]
    fn numbers_read_as_before() {
        let node =
            tree::parse(r#"{"f":2.0,"n":-1,"big":1e300,"s":"12","h":"99999999999999999999"}"#)
                .unwrap();
        let o = Obj::new(&node, "p", Error::invalid).unwrap();
        assert_eq!(o.u64_opt("f").unwrap(), Some(2));
        assert_eq!(o.u64_opt("s").unwrap(), Some(12));
        assert_eq!(
            o.u64_opt("n").unwrap_err().message,
            "p.n: expected a non-negative integer, got -1"
        );
        assert_eq!(
            o.u64_opt("h").unwrap_err().message,
            "p.h: 99999999999999999999 does not fit in 64 bits"
        );
        assert_eq!(o.i64_opt("f").unwrap(), Some(2));
        assert_eq!(
            o.i64_opt("big").unwrap_err().message,
            "p.big: expected an integer, got 1e+300"
        );
        assert_eq!(o.f64_opt("n").unwrap(), Some(-1.0));
    }
}
