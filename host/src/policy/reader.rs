//! The typed reader over the YAML tree: text, names, booleans, numbers,
//! percentages, durations and byte sizes, each checked and reported with
//! its line.

use std::time::Duration;

use super::yaml::{Node, Value};
use super::{Name, Problem};
use crate::engine::{MAX_MEMORY, human_bytes};

/// Reads typed values out of YAML nodes, collecting every problem with
/// its line instead of stopping at the first.
pub(super) struct Reader {
    pub(super) problems: Vec<Problem>,
}

/// A mapping's entries, in document order.
pub(super) type Entries = [(String, Node)];

impl Reader {
    /// A reader with no problems yet.
    pub(super) fn new() -> Self {
        Self {
            problems: Vec::new(),
        }
    }

    /// Text parsed with `FromStr`; the error names the accepted values.
    pub(super) fn parsed<T: std::str::FromStr<Err = crate::base::text::NotOneOf>>(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Option<T> {
        let text = self.text(node, what)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(expected) => {
                self.problem(
                    node.line,
                    format!("{what} is `{text}`; expected {expected}"),
                );
                None
            }
        }
    }

    pub(super) fn problem(&mut self, line: usize, message: String) {
        // A problem is one line: text it quotes from the policy (a name with
        // a newline in it) is shown escaped, never broken over lines.
        let message = match crate::base::text::escape_control(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(escaped) => escaped,
        };
        self.problems.push(Problem {
            line: Some(line),
            message,
        });
    }

    /// The entries of a mapping, after reporting any key not in `allowed`.
    pub(super) fn map<'a>(
        &mut self,
        node: &'a Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'a Entries> {
        let Value::Map(entries) = &node.value else {
            self.problem(
                node.line,
                format!("{what} must be a mapping, not {}", node.value.kind()),
            );
            return None;
        };
        for (key, value) in entries {
            if !allowed.contains(&key.as_str()) {
                self.problem(
                    value.line,
                    format!(
                        "unknown field `{key}` in {what}{}",
                        crate::base::suggest::with_listing(
                            key,
                            allowed.iter().copied(),
                            &format!("expected one of {}", allowed.join(", "))
                        )
                    ),
                );
            }
        }
        Some(entries)
    }

    pub(super) fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            other => {
                self.problem(
                    node.line,
                    format!("{what} must be text, not {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn name(&mut self, node: &Node, what: &str) -> Option<Name> {
        let text = self.text(node, what)?;
        match text.parse() {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(node.line, format!("{what}: {e}"));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            ref other => {
                self.problem(
                    node.line,
                    format!("{what} must be true or false, not {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        let v = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            ref other => {
                self.problem(
                    node.line,
                    format!("{what} must be a number, not {}", other.kind()),
                );
                return None;
            }
        };
        if !v.is_finite() {
            self.problem(node.line, format!("{what} must be a finite number"));
            return None;
        }
        Some(v)
    }

    /// A percentage written `90` or `"90%"`, between 0 and 100.
    pub(super) fn percent(&mut self, node: &Node, what: &str) -> Option<f64> {
        let v = match &node.value {
            Value::Str(s) => match s.trim().strip_suffix('%').map(|n| n.trim().parse::<f64>()) {
                Some(Ok(v)) => v,
                _ => {
                    self.problem(
                        node.line,
                        format!("{what} must be a percentage such as `90%`, not `{s}`"),
                    );
                    return None;
                }
            },
            _ => self.number(node, what)?,
        };
        if !(0.0..=100.0).contains(&v) {
            self.problem(
                node.line,
                format!("{what} must be between 0% and 100%, not {v}"),
            );
            return None;
        }
        Some(v)
    }

    pub(super) fn duration(&mut self, node: &Node, what: &str, max: Duration) -> Option<Duration> {
        let d = match &node.value {
            Value::Str(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(node.line, format!("{what}: invalid duration `{s}`: {e}"));
                    return None;
                }
            },
            other => {
                self.problem(
                    node.line,
                    format!(
                        "{what} must be a duration such as `100ms`, not {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        if d.is_zero() || d > max {
            self.problem(
                node.line,
                format!(
                    "{what} must be above zero and at most {}",
                    humantime::format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    pub(super) fn bytes(&mut self, node: &Node, what: &str) -> Option<usize> {
        let n = match &node.value {
            Value::Int(i) => usize::try_from(*i).ok(),
            Value::Str(s) => parse_bytes(s),
            _ => None,
        };
        let Some(n) = n else {
            self.problem(node.line, format!("{what} must be a size such as `16MiB`"));
            return None;
        };
        if !((64 << 10)..=MAX_MEMORY).contains(&n) {
            self.problem(
                node.line,
                format!(
                    "{what} must be between 64 KiB and {}, not {}",
                    human_bytes(MAX_MEMORY),
                    human_bytes(n)
                ),
            );
            return None;
        }
        Some(n)
    }
}

/// Parses `16MiB`, `512 KiB`, `1GiB`, `2MB` or a plain byte count.
fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().ok()?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}
