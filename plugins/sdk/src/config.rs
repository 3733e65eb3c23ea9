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
    /// Every key the plugin asked for, in order, present or not: the
    /// settings it knows, for "did you mean" and the list of settings.
    asked: RefCell<Vec<String>>,
    /// The keys asked for that the configuration does not hold.
    missing: RefCell<Vec<String>>,
}

impl<'a> Settings<'a> {
    /// Wraps the configuration the host passed in.
    pub fn new(entries: &'a [(String, ConfigValue)]) -> Self {
        crate::install_panic_hook();
        Self {
            entries,
            read: RefCell::new(BTreeSet::new()),
            asked: RefCell::new(Vec::new()),
            missing: RefCell::new(Vec::new()),
        }
    }

    fn ask(&self, key: &str) {
        let mut asked = self.asked.borrow_mut();
        if !asked.iter().any(|k| k == key) {
            asked.push(key.to_string());
        }
    }

    fn lookup(&self, key: &str) -> Option<&'a ConfigValue> {
        self.ask(key);
        let Some(entry) = self.entries.iter().find(|(k, _)| k == key) else {
            self.missing.borrow_mut().push(key.to_string());
            return None;
        };
        self.read.borrow_mut().insert(entry.0.as_str());
        Some(&entry.1)
    }

    /// The keys given that nothing has read yet.
    fn unread(&self) -> Vec<&'a str> {
        let read = self.read.borrow();
        self.entries
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !read.contains(k))
            .collect()
    }

    /// What to add to an error when reading stopped on it: each key given
    /// that reads like a misspelling of a setting that was asked for and
    /// missing (`mn` for a required `min`), since that key is most likely
    /// why the setting is missing.
    pub fn typo_hint(&self) -> String {
        let missing = self.missing.borrow();
        self.unread()
            .into_iter()
            .filter_map(|given| {
                closest(given, missing.iter().map(String::as_str))
                    .map(|meant| format!("; `{given}` is not a setting: did you mean `{meant}`?"))
            })
            .collect()
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
        self.ask(prefix);
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
        self.ask(prefix);
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

    /// Fails on the first key that was never read, naming it and the
    /// setting it most likely meant, or else the settings there are.
    pub fn finish(&self) -> Result<(), String> {
        let Some(key) = self.unread().into_iter().next() else {
            return Ok(());
        };
        let asked = self.asked.borrow();
        // A dotted key (`steps.0.weight`) belongs to the map or list its
        // first segment names: settings are named by that segment.
        let mut known: Vec<&str> = Vec::new();
        for k in asked.iter() {
            let head = k.split('.').next().unwrap_or(k);
            if !known.contains(&head) {
                known.push(head);
            }
        }
        let head = key.split('.').next().unwrap_or(key);
        Err(match closest(head, known.iter().copied()) {
            Some(meant) => format!("unknown setting `{key}`; did you mean `{meant}`?"),
            None if known.is_empty() => {
                format!("unknown setting `{key}`; this plugin takes no settings")
            }
            None => format!("unknown setting `{key}`; settings: {}", known.join(", ")),
        })
    }
}

/// Edit distance, counting a swap of neighbours as one edit.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The setting a mistyped key most likely meant: the nearest within one
/// edit per three characters (at least one), as the host judges typos.
fn closest<'k>(typed: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    known
        .into_iter()
        .filter(|k| *k != typed)
        .map(|k| (distance(typed, k), k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
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
        assert_eq!(
            s.finish(),
            Err("unknown setting `typo`; settings: steps".to_string())
        );
    }

    #[test]
    fn a_misspelt_key_is_named_beside_the_setting_it_left_missing() {
        let entries = vec![("mn".to_string(), ConfigValue::Integer(80))];
        let s = Settings::new(&entries);
        assert_eq!(s.opt_text("metric"), Ok(None));
        assert_eq!(s.number("min"), Err("`min` is required".to_string()));
        assert_eq!(
            s.typo_hint(),
            "; `mn` is not a setting: did you mean `min`?"
        );
        let entries = vec![
            ("min".to_string(), ConfigValue::Integer(80)),
            ("max_dorp".to_string(), ConfigValue::Integer(1)),
        ];
        let s = Settings::new(&entries);
        assert_eq!(s.number("min"), Ok(80.0));
        assert_eq!(s.opt_number("max_drop"), Ok(None));
        assert_eq!(
            s.finish(),
            Err("unknown setting `max_dorp`; did you mean `max_drop`?".to_string())
        );
    }
}
