//! A YAML reader that keeps line numbers and cannot be blown up.
//!
//! Documents become a small tree of [`Node`]s. Aliases are expanded against a
//! node budget and nesting is capped, so billion-laughs and deep-nesting bombs
//! end in an error instead of exhausting memory or the stack.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nodes a document may expand to, aliases included.
pub(crate) const MAX_NODES: usize = 100_000;
/// How deeply collections may nest.
pub(crate) const MAX_DEPTH: usize = 64;

/// A YAML value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub(crate) value: Value,
    pub(crate) line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The tree as JSON: the bridge to serde for test files and the server
    /// config, and to JSON Schema for policies.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::String(s.clone()),
            Value::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl Value {
    /// How the value is described in an error message.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "a whole number",
            Self::Float(_) => "a number",
            Self::Str(_) => "text",
            Self::Seq(_) => "a list",
            Self::Map(_) => "a mapping",
        }
    }
}

/// A document that is not YAML this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

enum Frame {
    Seq {
        anchor: usize,
        line: usize,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        line: usize,
        entries: Vec<(String, Node)>,
        key: Option<(String, usize)>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
    error: Option<YamlError>,
    /// The text's last line: the reader may place the end of the stream
    /// (an empty value after the last key) on the line after it.
    last_line: usize,
}

/// The number of the last line, counting breaks as YAML does (`\r\n`,
/// `\n`, or a bare `\r`).
fn last_line(text: &str) -> usize {
    text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { line, message });
        }
    }

    fn count(&mut self, n: usize, line: usize) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.fail(
                line,
                format!("document expands to more than {MAX_NODES} values; aliases may be nested too deeply"),
            );
            return false;
        }
        true
    }

    /// Places a finished node into its parent, or makes it the document root.
    fn push(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => match node.value {
                    Value::Str(k) => *key = Some((k, node.line)),
                    Value::Int(i) => *key = Some((i.to_string(), node.line)),
                    Value::Bool(b) => *key = Some((b.to_string(), node.line)),
                    other => {
                        let kind = other.kind();
                        self.fail(node.line, format!("mapping keys must be text, not {kind}"));
                    }
                },
                Some((k, line)) => {
                    if entries.iter().any(|(existing, _)| *existing == k) {
                        self.fail(line, format!("duplicate key `{k}`"));
                    } else {
                        entries.push((k, node));
                    }
                }
            },
        }
    }

    fn open(&mut self, frame: Frame, line: usize) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(line, format!("nesting deeper than {MAX_DEPTH} levels"));
            return;
        }
        if self.count(1, line) {
            self.stack.push(frame);
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line().clamp(1, self.last_line);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(line, "expected one YAML document, found several".into());
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, line) {
                    return;
                }
                match resolve(text, style, tag.as_ref()) {
                    Ok(value) => self.push(Node { value, line }, anchor, 1),
                    Err(message) => self.fail(line, message),
                }
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if tag.is_some() =>
            {
                let _ = anchor;
                self.fail(
                    line,
                    format!(
                        "YAML tags such as `{}` are not supported",
                        show_tag(tag.as_ref())
                    ),
                );
            }
            Event::SequenceStart(anchor, _) => self.open(
                Frame::Seq {
                    anchor,
                    line,
                    items: Vec::new(),
                },
                line,
            ),
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    anchor,
                    line,
                    entries: Vec::new(),
                    key: None,
                },
                line,
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let (node, anchor) = match frame {
                    Frame::Seq {
                        anchor,
                        line,
                        items,
                    } => (
                        Node {
                            value: Value::Seq(items),
                            line,
                        },
                        anchor,
                    ),
                    Frame::Map {
                        anchor,
                        line,
                        entries,
                        ..
                    } => (
                        Node {
                            value: Value::Map(entries),
                            line,
                        },
                        anchor,
                    ),
                };
                let size = node_size(&node);
                self.push(node, anchor, size);
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    self.fail(line, "alias to an unknown anchor".into());
                    return;
                };
                if self.count(size, line) {
                    self.push(Node { line, ..node }, 0, size);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

fn node_size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(node_size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, n)| 1 + node_size(n)).sum::<usize>(),
        _ => 1,
    }
}

fn show_tag(tag: Option<&Tag>) -> String {
    tag.map(|t| format!("{}{}", t.handle, t.suffix))
        .unwrap_or_default()
}

/// Resolves a scalar with the YAML 1.2 core schema.
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag {
        let is_str = (t.handle == "!!" && t.suffix == "str") || t.suffix == "tag:yaml.org,2002:str";
        if is_str {
            return Ok(Value::Str(text));
        }
        return Err(format!(
            "YAML tags such as `{}` are not supported",
            show_tag(tag)
        ));
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::Str(text));
    }
    Ok(match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        s => {
            if let Some(v) = parse_int(s) {
                Value::Int(v)
            } else if looks_like_float(s) {
                s.parse::<f64>()
                    .map(Value::Float)
                    .unwrap_or(Value::Str(text))
            } else {
                Value::Str(text)
            }
        }
    })
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(hex) = s.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = s.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    None
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn looks_like_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => {
            digits(int)
                && digits(f)
                && !(int.is_empty() && f.is_empty())
                && (!int.is_empty() || !f.is_empty())
        }
        None => !int.is_empty() && digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
        error: None,
        last_line: last_line(text),
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(YamlError {
            line: e.marker().line().clamp(1, builder.last_line),
            message: e.info().to_string(),
        });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        line: 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_core_schema_scalars() {
        let n = parse("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: 80%\ng: 1e3\nh: -0.25\n").unwrap();
        let Value::Map(entries) = n.value else {
            panic!("not a map")
        };
        let values: Vec<Value> = entries.into_iter().map(|(_, n)| n.value).collect();
        assert_eq!(
            values,
            vec![
                Value::Int(1),
                Value::Float(1.5),
                Value::Bool(true),
                Value::Null,
                Value::Str("1".into()),
                Value::Str("80%".into()),
                Value::Float(1000.0),
                Value::Float(-0.25),
            ]
        );
    }

    #[test]
    fn keeps_line_numbers() {
        let n = parse("a:\n  - x\n  - y: 2\n").unwrap();
        let Value::Map(entries) = n.value else {
            panic!()
        };
        let Value::Seq(items) = &entries[0].1.value else {
            panic!()
        };
        assert_eq!(items[1].line, 3);
    }

    #[test]
    fn refuses_a_billion_laughs() {
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='j' {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            doc.push_str(&format!("{name}: &{name} [{refs}]\n"));
            prev = name;
        }
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("more than 100000 values"), "{e}");
    }

    #[test]
    fn refuses_deep_nesting() {
        let doc = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("nesting deeper than 64"), "{e}");
        let doc = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert!(parse(&doc).is_err());
    }

    #[test]
    fn refuses_duplicate_keys_and_custom_tags() {
        assert!(
            parse("a: 1\na: 2\n")
                .unwrap_err()
                .message
                .contains("duplicate key `a`")
        );
        assert!(parse("a: !!python/object x\n").is_err());
    }

    #[test]
    fn small_aliases_expand() {
        let n = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        let Value::Map(entries) = n.value else {
            panic!()
        };
        assert_eq!(
            entries[1].1.value,
            Value::Map(vec![(
                "x".into(),
                Node {
                    value: Value::Int(1),
                    line: 1
                }
            )])
        );
    }

    #[test]
    fn a_problem_at_the_end_of_the_text_is_on_its_last_line() {
        let root = parse("a: 1\ntriggers:").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("{root:?}")
        };
        assert_eq!(entries[1].1.line, 2, "{entries:?}");
        // A bare carriage return breaks a line too.
        assert_eq!(last_line("a\rb\r\nc\n"), 4);
    }
}
