//! A JSON/YAML document as a tree of nodes that remember where they were written, and the
//! field-by-field reading helpers the format parsers share.
//!
//! Both JSON and YAML go through serde-saphyr (JSON is YAML's flow style), so every node carries a
//! 1-based line and column; JSON is first checked by serde_json so JSON syntax errors read as JSON
//! errors. Validating a tree rather than deserializing straight into structs lets one pass report
//! every problem in a file, each with its place.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::quantity::MemoryQuantity;

use super::InputKind;

/// Where a node starts (1-based); `line == 0` when unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A scalar's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeValue {
    /// A scalar, with its text as written when it is not a string (`3.10`, `0755`, `yes`).
    Scalar(Scalar, String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: its text and where it is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

/// One node of a document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub value: NodeValue,
    pub pos: Pos,
}

// What serde-saphyr hands us: values wrapped in `Spanned` so each one knows its location.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        i128::try_from(v)
            .map(Raw::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Raw>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

fn pos_of(location: &serde_saphyr::Location) -> Pos {
    Pos {
        line: usize::try_from(location.line()).unwrap_or(0),
        column: usize::try_from(location.column()).unwrap_or(0),
    }
}

/// The source text of a plain (unquoted, unaliased) scalar, so `3.10` stays `3.10`.
fn source_text<'a>(src: &'a str, location: &serde_saphyr::Location) -> Option<&'a str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let text = src.get(start..start.checked_add(len)?)?.trim();
    let plain = !text.is_empty() && !text.starts_with(['*', '!', '&', '"', '\'']);
    plain.then_some(text)
}

fn scalar_text(scalar: &Scalar) -> String {
    match scalar {
        Scalar::Null => String::new(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => s.clone(),
    }
}

fn convert(raw: Spanned<Raw>, src: &str) -> Node {
    let pos = pos_of(&raw.referenced);
    let scalar = |s: Scalar| {
        let text = match &s {
            Scalar::Str(v) => v.clone(),
            other => source_text(src, &raw.referenced)
                .map(str::to_owned)
                .unwrap_or_else(|| scalar_text(other)),
        };
        NodeValue::Scalar(s, text)
    };
    let value = match raw.value {
        Raw::Null => scalar(Scalar::Null),
        Raw::Bool(b) => scalar(Scalar::Bool(b)),
        Raw::Int(i) => scalar(Scalar::Int(i)),
        Raw::Float(f) => scalar(Scalar::Float(f)),
        Raw::Str(s) => NodeValue::Scalar(Scalar::Str(s.clone()), s),
        Raw::Seq(items) => NodeValue::Seq(items.into_iter().map(|i| convert(i, src)).collect()),
        Raw::Map(entries) => NodeValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = convert(k, src);
                    let name = match &key.value {
                        NodeValue::Scalar(_, text) => text.clone(),
                        other => format!("{other:?}"),
                    };
                    (Key { name, pos: key.pos }, convert(v, src))
                })
                .collect(),
        ),
    };
    Node { value, pos }
}

impl Node {
    /// A tree from an already parsed value (no places: `line == 0` everywhere).
    pub(crate) fn from_json(value: &Value) -> Node {
        let value = match value {
            Value::Null => NodeValue::Scalar(Scalar::Null, String::new()),
            Value::Bool(b) => NodeValue::Scalar(Scalar::Bool(*b), b.to_string()),
            Value::Number(n) => {
                let scalar = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => Scalar::Int(i128::from(i)),
                    (None, Some(u)) => Scalar::Int(i128::from(u)),
                    _ => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
                };
                NodeValue::Scalar(scalar, n.to_string())
            }
            Value::String(s) => NodeValue::Scalar(Scalar::Str(s.clone()), s.clone()),
            Value::Array(items) => NodeValue::Seq(items.iter().map(Node::from_json).collect()),
            Value::Object(entries) => NodeValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = Key {
                            name: k.clone(),
                            pos: Pos::default(),
                        };
                        (key, Node::from_json(v))
                    })
                    .collect(),
            ),
        };
        Node {
            value,
            pos: Pos::default(),
        }
    }

    /// The mapping that starts at `at`, this node or one inside it.
    pub(crate) fn mapping_at(&self, at: Pos) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(_) if self.pos == at => Some(self),
            NodeValue::Map(entries) => entries.iter().find_map(|(_, v)| v.mapping_at(at)),
            NodeValue::Seq(items) => items.iter().find_map(|v| v.mapping_at(at)),
            NodeValue::Scalar(..) => None,
        }
    }
}

/// Strips serde-saphyr's " at line L, column C" suffix: the diagnostic carries the place itself.
fn bare_message(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains("column ") => &message[..i],
        _ => message,
    }
}

/// Parses `text` into a located tree, or the syntax error with its place.
pub(crate) fn parse_document(text: &str, kind: InputKind) -> Result<Node, Diagnostic> {
    if kind == InputKind::Json
        && let Err(e) = serde_json::from_str::<de::IgnoredAny>(text)
    {
        let message = bare_message(&e.to_string()).to_owned();
        return Err(
            Diagnostic::error("", format!("invalid JSON: {message}")).at(e.line(), e.column())
        );
    }
    match serde_saphyr::from_str::<Spanned<Raw>>(text) {
        Ok(raw) => Ok(convert(raw, text)),
        Err(e) => Err(syntax_error(&e, kind)),
    }
}

/// A YAML syntax error as a located diagnostic that says what is wrong with the file.
fn syntax_error(e: &serde_saphyr::Error, kind: InputKind) -> Diagnostic {
    let plain = e.without_snippet().to_string();
    let message = bare_message(&plain);
    // Say what is wrong with the file, not which library option would accept it.
    let message = if message.contains("multiple YAML documents") {
        "expected one document, found several (separated by `---`)"
    } else {
        message
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(message)
    };
    let syntax = match kind {
        InputKind::Json => "JSON",
        InputKind::Yaml => "YAML",
    };
    let mut d = Diagnostic::error("", format!("invalid {syntax}: {message}"));
    if let Some(location) = e.location() {
        let pos = pos_of(&location);
        if pos.line > 0 {
            d = d.at(pos.line, pos.column);
        }
    }
    d
}

/// Parses every document of a YAML stream (`---`-separated), or the one JSON document.
/// Empty documents are left out, unless there is nothing else.
pub(crate) fn parse_documents(text: &str, kind: InputKind) -> Result<Vec<Node>, Diagnostic> {
    if kind == InputKind::Json {
        return parse_document(text, kind).map(|n| vec![n]);
    }
    match serde_saphyr::from_multiple::<Spanned<Raw>>(text) {
        Ok(raws) => {
            let docs: Vec<Node> = raws.into_iter().map(|raw| convert(raw, text)).collect();
            let first = docs.first().cloned();
            let docs: Vec<Node> = docs.into_iter().filter(|n| !n.is_null()).collect();
            // A file of nothing but an empty document is that document, with its place.
            match first {
                _ if !docs.is_empty() => Ok(docs),
                Some(first) => Ok(vec![first]),
                None => parse_document(text, kind).map(|n| vec![n]),
            }
        }
        Err(e) => Err(syntax_error(&e, kind)),
    }
}

impl Node {
    /// A string field of a mapping node, when it is one.
    pub(crate) fn str_field(&self, name: &str) -> Option<&str> {
        match &self.field(name)?.value {
            NodeValue::Scalar(Scalar::Str(s), _) => Some(s),
            _ => None,
        }
    }

    /// A field of a mapping node.
    pub(crate) fn field(&self, name: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node as JSON, for settings passed through verbatim.
    pub(crate) fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Scalar(Scalar::Null, _) => Value::Null,
            NodeValue::Scalar(Scalar::Bool(b), _) => Value::Bool(*b),
            NodeValue::Scalar(Scalar::Int(i), text) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(text.clone())),
            NodeValue::Scalar(Scalar::Float(f), text) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.clone())),
            NodeValue::Scalar(Scalar::Str(s), _) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Scalar(Scalar::Null, _))
    }

    /// What kind of thing this is, for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.value {
            NodeValue::Scalar(Scalar::Null, _) => "null",
            NodeValue::Scalar(Scalar::Bool(_), _) => "a boolean",
            NodeValue::Scalar(Scalar::Int(_), _) => "an integer",
            NodeValue::Scalar(Scalar::Float(_), _) => "a number",
            NodeValue::Scalar(Scalar::Str(_), _) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

/// Collects diagnostics for one input, adding the file to each.
pub(crate) struct Report<'a> {
    pub diagnostics: Diagnostics,
    file: Option<&'a Path>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: Option<&'a Path>) -> Self {
        Report {
            diagnostics: Diagnostics::new(),
            file,
        }
    }

    pub(crate) fn add(&mut self, severity: Severity, field: &str, pos: Pos, message: String) {
        let mut d = match severity {
            Severity::Error => Diagnostic::error(field, message),
            Severity::Warning => Diagnostic::warning(field, message),
        };
        if let Some(file) = self.file {
            d = d.with_file(file);
        }
        if pos.line > 0 {
            d = d.at(pos.line, pos.column);
        }
        self.diagnostics.push(d);
    }

    pub(crate) fn error(&mut self, field: &str, pos: Pos, message: impl Into<String>) {
        self.add(Severity::Error, field, pos, message.into());
    }

    pub(crate) fn warning(&mut self, field: &str, pos: Pos, message: impl Into<String>) {
        self.add(Severity::Warning, field, pos, message.into());
    }

    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        let d = match self.file {
            Some(file) if diagnostic.file.is_none() => diagnostic.with_file(file),
            _ => diagnostic,
        };
        self.diagnostics.push(d);
    }

    /// Expected-type error.
    pub(crate) fn expected(&mut self, field: &str, node: &Node, what: &str) {
        self.error(
            field,
            node.pos,
            format!("expected {what}, found {}", node.describe()),
        );
    }

    /// The string value of a scalar. Numbers and booleans are taken as written (as BPG's Jackson
    /// and Kubernetes' YAML tooling coerce them); null is absent.
    pub(crate) fn string(&mut self, field: &str, node: &Node) -> Option<String> {
        match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => None,
            NodeValue::Scalar(_, text) => Some(text.clone()),
            _ => {
                self.expected(field, node, "a string");
                None
            }
        }
    }

    /// A version string; a YAML number is refused because `3.10` would be read as `3.1`.
    pub(crate) fn version(&mut self, field: &str, node: &Node) -> Option<String> {
        match &node.value {
            NodeValue::Scalar(Scalar::Float(_), text) | NodeValue::Scalar(Scalar::Int(_), text) => {
                self.error(
                    field,
                    node.pos,
                    format!(
                        "expected a string, found the number {text}; quote it (\"{text}\"): unquoted, 3.10 is read as 3.1"
                    ),
                );
                None
            }
            _ => self.string(field, node),
        }
    }

    pub(crate) fn integer<T: TryFrom<i128>>(
        &mut self,
        field: &str,
        node: &Node,
        what: &str,
    ) -> Option<T> {
        let value = match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => return None,
            NodeValue::Scalar(Scalar::Int(i), _) => Some(*i),
            // Jackson accepts "2" for an int; so do we.
            NodeValue::Scalar(Scalar::Str(s), _) => s.trim().parse::<i128>().ok(),
            _ => None,
        };
        match value.and_then(|v| T::try_from(v).ok()) {
            Some(v) => Some(v),
            None => {
                let found = match &node.value {
                    NodeValue::Scalar(_, text) => format!("{text:?}"),
                    _ => node.describe().to_owned(),
                };
                self.error(field, node.pos, format!("expected {what}, found {found}"));
                None
            }
        }
    }

    pub(crate) fn float(&mut self, field: &str, node: &Node) -> Option<f64> {
        match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => None,
            NodeValue::Scalar(Scalar::Int(i), _) => Some(*i as f64),
            NodeValue::Scalar(Scalar::Float(f), _) => Some(*f),
            NodeValue::Scalar(Scalar::Str(s), _) if s.trim().parse::<f64>().is_ok() => {
                s.trim().parse().ok()
            }
            _ => {
                self.expected(field, node, "a number");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, field: &str, node: &Node) -> Option<bool> {
        match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => None,
            NodeValue::Scalar(Scalar::Bool(b), _) => Some(*b),
            NodeValue::Scalar(Scalar::Str(s), _) if s == "true" || s == "false" => {
                Some(s == "true")
            }
            _ => {
                self.expected(field, node, "true or false");
                None
            }
        }
    }

    pub(crate) fn memory(&mut self, field: &str, node: &Node) -> Option<MemoryQuantity> {
        let text = self.string(field, node)?;
        match text.parse::<MemoryQuantity>() {
            Ok(q) => Some(q),
            Err(e) => {
                self.error(field, node.pos, e.to_string());
                None
            }
        }
    }

    pub(crate) fn string_list(&mut self, field: &str, node: &Node) -> Vec<String> {
        match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => Vec::new(),
            NodeValue::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let path = format!("{field}[{i}]");
                    match &item.value {
                        NodeValue::Scalar(Scalar::Null, _) => {
                            self.expected(&path, item, "a string");
                            None
                        }
                        _ => self.string(&path, item),
                    }
                })
                .collect(),
            _ => {
                self.expected(field, node, "a list of strings");
                Vec::new()
            }
        }
    }

    pub(crate) fn string_map(&mut self, field: &str, node: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => {}
            NodeValue::Map(entries) => {
                for (key, value) in entries {
                    let path = format!("{field}.{}", key.name);
                    if value.is_null() {
                        self.expected(&path, value, "a string value");
                    } else if let Some(v) = self.string(&path, value) {
                        out.insert(key.name.clone(), v);
                    }
                }
            }
            _ => self.expected(field, node, "a mapping of strings to strings"),
        }
        out
    }

    /// A list of mappings passed through verbatim (volumes, volume mounts).
    pub(crate) fn object_list(&mut self, field: &str, node: &Node) -> Vec<Value> {
        match &node.value {
            NodeValue::Scalar(Scalar::Null, _) => Vec::new(),
            NodeValue::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match &item.value {
                    NodeValue::Map(_) => Some(item.to_json()),
                    _ => {
                        self.expected(&format!("{field}[{i}]"), item, "a mapping");
                        None
                    }
                })
                .collect(),
            _ => {
                self.expected(field, node, "a list of mappings");
                Vec::new()
            }
        }
    }

    /// The fields of a mapping node, or an error.
    pub(crate) fn fields<'n>(&mut self, field: &str, node: &'n Node) -> Option<Fields<'n>> {
        match &node.value {
            NodeValue::Map(entries) => Some(Fields::new(field, entries)),
            NodeValue::Scalar(Scalar::Null, _) => None,
            _ => {
                self.expected(field, node, "a mapping");
                None
            }
        }
    }
}

/// The entries of one mapping, taken one by one; what is left over is unknown.
pub(crate) struct Fields<'n> {
    path: String,
    entries: &'n [(Key, Node)],
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    fn new(path: &str, entries: &'n [(Key, Node)]) -> Self {
        Fields {
            path: path.to_owned(),
            entries,
            used: vec![false; entries.len()],
        }
    }

    /// The dotted path of a child field.
    pub(crate) fn path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Takes field `name` (null counts as absent).
    pub(crate) fn take(&mut self, name: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _)| k.name == name)?;
        self.used[i] = true;
        let node = &self.entries[i].1;
        (!node.is_null()).then_some(node)
    }

    /// Takes field `name` even when null, with its key's position.
    pub(crate) fn take_entry(&mut self, name: &str) -> Option<(&'n Key, &'n Node)> {
        let i = self.entries.iter().position(|(k, _)| k.name == name)?;
        self.used[i] = true;
        Some((&self.entries[i].0, &self.entries[i].1))
    }

    /// The entries nobody took, in document order.
    pub(crate) fn rest(&self) -> impl Iterator<Item = &'n (Key, Node)> + '_ {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(e, _)| e)
    }
}

/// "did you mean" for a misspelt field name.
pub(crate) fn suggestion(name: &str, known: &[&str]) -> String {
    match crate::closest_match(name, known.iter().copied()) {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nodes_know_their_place_and_text() {
        let doc = parse_document("a: 1\nb:\n  c: 3.10\n  d: [x, 'y']\n", InputKind::Yaml).unwrap();
        let NodeValue::Map(entries) = &doc.value else {
            panic!("not a map")
        };
        let (key, b) = &entries[1];
        assert_eq!(
            (key.name.as_str(), key.pos),
            ("b", Pos { line: 2, column: 1 })
        );
        let NodeValue::Map(inner) = &b.value else {
            panic!("not a map")
        };
        assert_eq!(inner[0].1.pos, Pos { line: 3, column: 6 });
        assert_eq!(
            inner[0].1.value,
            NodeValue::Scalar(Scalar::Float(3.1), "3.10".into())
        );
    }

    #[test]
    fn json_syntax_errors_are_located() {
        let e = parse_document("{\n  \"a\": 1,\n  \"b\" 2\n}", InputKind::Json).unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(7)));
        assert!(
            e.message.starts_with("invalid JSON: expected `:`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn yaml_syntax_errors_are_located() {
        let e = parse_document("a: 1\nb: [1, 2\nc: 3\n", InputKind::Yaml).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.starts_with("invalid YAML: "), "{}", e.message);
        assert!(!e.message.contains(" at line "), "{}", e.message);
    }

    #[test]
    fn duplicate_keys_are_errors_in_both_syntaxes() {
        let e = parse_document("a: 1\na: 2\n", InputKind::Yaml).unwrap_err();
        assert_eq!(e.message, "invalid YAML: duplicate mapping key: a");
        let e = parse_document("{\"a\": 1, \"a\": 2}", InputKind::Json).unwrap_err();
        assert_eq!(e.message, "invalid JSON: duplicate mapping key: a");
        assert_eq!((e.line, e.column), (Some(1), Some(10)));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(
            suggestion("sparkConfs", &["sparkConf", "deps"]),
            " (did you mean `sparkConf`?)"
        );
        assert_eq!(suggestion("zzz", &["sparkConf", "deps"]), "");
    }
}
