//! Typed, checked access to a plugin's flattened configuration.
//!
//! A plugin reads every key it understands through [`Settings`] and then calls
//! [`Settings::finish`], which rejects any key it did not read. A typo in a
//! policy (`treshold:`) therefore fails `tollgate validate`, not an evaluation.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::gate::{ConfigValue, Scalar};

/// A plugin's configuration with the keys it has read so far.
pub struct Settings<'a> {
    entries: &'a [(String, ConfigValue)],
    read: RefCell<BTreeSet<&'a str>>,
}

impl<'a> Settings<'a> {
    /// Wraps the configuration the host passed in.
    pub fn new(entries: &'a [(String, ConfigValue)]) -> Self {
        crate::install_panic_hook();
        Self {
            entries,
            read: RefCell::new(BTreeSet::new()),
        }
    }

    fn lookup(&self, key: &str) -> Option<&'a ConfigValue> {
        let entry = self.entries.iter().find(|(k, _)| k == key)?;
        self.read.borrow_mut().insert(entry.0.as_str());
        Some(&entry.1)
    }

    /// A required text value.
    pub fn text(&self, key: &str) -> Result<&'a str, String> {
        self.opt_text(key)?
            .ok_or_else(|| format!("`{key}` is required"))
    }

    /// An optional text value.
    pub fn opt_text(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Text(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("`{key}` must be text, not {}", kind(other))),
        }
    }

    /// A required number; integers are accepted as numbers.
    pub fn number(&self, key: &str) -> Result<f64, String> {
        self.opt_number(key)?
            .ok_or_else(|| format!("`{key}` is required"))
    }

    /// An optional number; integers are accepted as numbers.
    pub fn opt_number(&self, key: &str) -> Result<Option<f64>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Number(n)) => Ok(Some(*n)),
            Some(ConfigValue::Integer(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(format!("`{key}` must be a number, not {}", kind(other))),
        }
    }

    /// An optional whole number.
    pub fn opt_integer(&self, key: &str) -> Result<Option<i64>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(format!(
                "`{key}` must be a whole number, not {}",
                kind(other)
            )),
        }
    }

    /// An optional flag.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(format!(
                "`{key}` must be true or false, not {}",
                kind(other)
            )),
        }
    }

    /// An optional duration written as `90s`, `5m`, `1h 30m`, or whole seconds.
    pub fn opt_duration(&self, key: &str) -> Result<Option<Duration>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Text(s)) => parse_duration(s)
                .map(Some)
                .map_err(|e| format!("`{key}`: {e}")),
            Some(ConfigValue::Integer(i)) if *i >= 0 && (*i as u64) <= MAX_DURATION.as_secs() => {
                Ok(Some(Duration::from_secs(*i as u64)))
            }
            Some(other) => Err(format!(
                "`{key}` must be a duration such as `5m`, not {}",
                kind(other)
            )),
        }
    }

    /// An optional list of text values; a single text value is a list of one.
    pub fn opt_text_list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Text(s)) => Ok(Some(vec![s.clone()])),
            Some(ConfigValue::List(items)) => items
                .iter()
                .map(|item| match item {
                    Scalar::Text(s) => Ok(s.clone()),
                    _ => Err(format!("`{key}` must be a list of text")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(format!(
                "`{key}` must be a list of text, not {}",
                kind(other)
            )),
        }
    }

    /// An optional list of whole numbers; a single number is a list of one.
    pub fn opt_integer_list(&self, key: &str) -> Result<Option<Vec<i64>>, String> {
        match self.lookup(key) {
            None => Ok(None),
            Some(ConfigValue::Integer(i)) => Ok(Some(vec![*i])),
            Some(ConfigValue::List(items)) => items
                .iter()
                .map(|item| match item {
                    Scalar::Integer(i) => Ok(*i),
                    _ => Err(format!("`{key}` must be a list of whole numbers")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(format!(
                "`{key}` must be a list of whole numbers, not {}",
                kind(other)
            )),
        }
    }

    /// Every `prefix.name: text` entry as `(name, value)`, e.g. a label selector.
    pub fn text_map(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let dotted = format!("{prefix}.");
        let mut out = Vec::new();
        for (key, value) in self.entries {
            let Some(name) = key.strip_prefix(&dotted) else {
                continue;
            };
            self.read.borrow_mut().insert(key.as_str());
            let text = match value {
                ConfigValue::Text(s) => s.clone(),
                ConfigValue::Integer(i) => i.to_string(),
                ConfigValue::Number(n) => n.to_string(),
                ConfigValue::Boolean(b) => b.to_string(),
                ConfigValue::List(_) => return Err(format!("`{key}` must be text, not a list")),
            };
            out.push((name.to_string(), text));
        }
        Ok(out)
    }

    /// How many `prefix.N.…` entries there are (indices 0 to N-1 in order),
    /// for lists of maps such as `steps.0.weight`.
    pub fn indexed_len(&self, prefix: &str) -> usize {
        let dotted = format!("{prefix}.");
        let mut n = 0;
        while self.entries.iter().any(|(k, _)| {
            k.strip_prefix(&dotted)
                .and_then(|rest| rest.split('.').next())
                .is_some_and(|i| i == n.to_string())
        }) {
            n += 1;
        }
        n
    }

    /// Fails on the first key that was never read, naming it.
    pub fn finish(&self) -> Result<(), String> {
        let read = self.read.borrow();
        match self
            .entries
            .iter()
            .find(|(k, _)| !read.contains(k.as_str()))
        {
            Some((key, _)) => Err(format!("unknown setting `{key}`")),
            None => Ok(()),
        }
    }
}

/// The longest duration a setting may hold: a year. Longer ones are typos,
/// and would overflow timestamp arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a duration such as `90s`, `5m` or `1h 30m`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "invalid duration `{text}`: {}",
            e.to_string().to_lowercase()
        )
    })?;
    if d > MAX_DURATION {
        return Err(format!("duration `{text}` is longer than a year"));
    }
    Ok(d)
}

fn kind(value: &ConfigValue) -> &'static str {
    match value {
        ConfigValue::Boolean(_) => "a boolean",
        ConfigValue::Integer(_) => "a whole number",
        ConfigValue::Number(_) => "a number",
        ConfigValue::Text(_) => "text",
        ConfigValue::List(_) => "a list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_to_a_year() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("2years").is_err());
        assert!(parse_duration("soon").is_err());
        let entries = vec![("w".to_string(), ConfigValue::Integer(i64::MAX))];
        assert!(Settings::new(&entries).opt_duration("w").is_err());
    }

    #[test]
    fn unread_keys_are_reported_and_indexed_lists_counted() {
        let entries = vec![
            ("steps.0.weight".to_string(), ConfigValue::Integer(5)),
            ("steps.1.weight".to_string(), ConfigValue::Integer(25)),
            ("typo".to_string(), ConfigValue::Boolean(true)),
        ];
        let s = Settings::new(&entries);
        assert_eq!(s.indexed_len("steps"), 2);
        assert_eq!(s.opt_integer("steps.0.weight"), Ok(Some(5)));
        assert_eq!(s.opt_integer("steps.1.weight"), Ok(Some(25)));
        assert_eq!(s.finish(), Err("unknown setting `typo`".to_string()));
    }
}
