//! Untrusted text made safe for a terminal or a one-line log.
//!
//! Plugin reasons, details, logs and input-supplied names reach people
//! through tables, error lines and text logs. A raw ESC, CR or BEL there
//! could clear the screen or forge a verdict, so every such output passes
//! through [`escape_control`]. JSON output needs none of this: serde escapes.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a log raw: C0 and C1 controls,
/// DEL, the line and paragraph separators (U+2028, U+2029) that some viewers
/// break lines at, and the bidirectional controls that can reorder what a
/// reader sees (embeddings and overrides U+202A–U+202E, isolates
/// U+2066–U+2069, the marks U+200E, U+200F and U+061C).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{061c}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Writes `c` as the visible escape [`escape_control`] uses.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if u32::from(c) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// `text` with every control character written as a visible escape
/// (`\n`, `\r`, `\t`, `\0`, `\x1b`, `\u{202e}`), so it stays on one line and
/// cannot move the cursor or change colours. Text without any is borrowed.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A value as a text log line shows it, by logfmt's rules: as is when it
/// holds no whitespace, `=`, `"`, `\` or unsafe character (and is not
/// empty); otherwise in double quotes, with `"` and `\` backslash-escaped
/// and unsafe characters written as [`escape_control`] writes them. So a
/// value can neither end its field early nor add a field of its own: a
/// service named `a decision=promote` is one field, `service="a
/// decision=promote"`.
pub fn log_value(text: &str) -> Cow<'_, str> {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '=' | '"' | '\\') || is_unsafe(c));
    if plain {
        return Cow::Borrowed(text);
    }
    Cow::Owned(quoted(text))
}

/// A log line's message: as is unless it holds `=`, `"`, `\` or an unsafe
/// character, then quoted like [`log_value`], so text formatted into a
/// message cannot pose as a field either.
pub fn log_message(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| matches!(c, '=' | '"' | '\\') || is_unsafe(c))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(quoted(text))
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters of a request's text an error message quotes at most.
pub const SHOWN_CHARS: usize = 64;

/// A name or value from a request as an error message quotes it: its first
/// [`SHOWN_CHARS`] characters, escaped, and `…` when there was more. The
/// cap applies before the copy, so a 100 KB name costs 64 characters.
pub fn shown(text: &str) -> String {
    let mut chars = text.chars();
    let short: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{}{cut}", escape_control(&short))
}

/// The first line of `text`, escaped: for messages from libraries that
/// append multi-line context (hex dumps, backtraces) after the cause.
pub fn first_line(text: &str) -> Cow<'_, str> {
    let line = text.lines().next().unwrap_or_default();
    escape_control(line.trim_end_matches(':'))
}

/// A duration as a message says it: days spelled out (`1 day`, `2 days
/// 16h`), the rest as `humantime` writes it (`12h 30m`, `30s`); never the
/// `1day` humantime writes.
pub fn duration(d: std::time::Duration) -> String {
    const DAY: u64 = 86_400;
    let days = d.as_secs() / DAY;
    let rest = d - std::time::Duration::from_secs(days * DAY);
    let mut out = match days {
        0 => String::new(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    };
    if !rest.is_zero() || days == 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{}", humantime::format_duration(rest));
    }
    out
}

/// Formats a byte count the way policies write it (`16 MiB`): the largest
/// unit that divides it exactly, so a limit reads as the policy wrote it.
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// A word that is none of the accepted ones; it shows as the words
/// accepted ("policy or caller"), for callers to put after "expected".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{expected}")]
pub struct NotOneOf {
    /// The accepted words, as a phrase.
    pub expected: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_become_visible_escapes() {
        let forged = "fail\x1b[2J\x1b[H\x1b[1;32mPROMOTE\x07\r\n";
        let shown = escape_control(forged);
        assert!(!shown.chars().any(is_unsafe), "{shown:?}");
        assert_eq!(shown, "fail\\x1b[2J\\x1b[H\\x1b[1;32mPROMOTE\\x07\\r\\n");
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(escape_control("a\u{9b}b\u{202e}c"), "a\\x9bb\\u{202e}c");
    }

    #[test]
    fn line_separators_and_every_bidi_control_are_escaped() {
        assert_eq!(
            escape_control("a\u{2028}b\u{2029}c\u{200e}\u{200f}\u{61c}\u{2066}"),
            "a\\u{2028}b\\u{2029}c\\u{200e}\\u{200f}\\u{61c}\\u{2066}"
        );
    }

    #[test]
    fn log_values_are_quoted_by_logfmt_rules() {
        assert_eq!(log_value("checkout"), "checkout");
        assert_eq!(log_value(""), "\"\"");
        assert_eq!(
            log_value("checkout decision=\"promote\" reason=all-good"),
            "\"checkout decision=\\\"promote\\\" reason=all-good\""
        );
        assert_eq!(log_value("a\\b"), "\"a\\\\b\"");
        assert_eq!(log_value("a\u{2028}b"), "\"a\\u{2028}b\"");
        assert_eq!(log_value("a\nb"), "\"a\\nb\"");
        assert_eq!(log_message("listening"), "listening");
        assert_eq!(log_message("no worker free"), "no worker free");
        assert_eq!(log_message("x=1"), "\"x=1\"");
    }

    #[test]
    fn durations_spell_out_days() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_secs(86_400)), "1 day");
        assert_eq!(duration(Duration::from_secs(64 * 3600)), "2 days 16h");
        assert_eq!(duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_control("p95 412 ms ≤ 500 ms"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn byte_counts_use_the_largest_exact_unit() {
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(512 << 10), "512 KiB");
        assert_eq!(human_bytes(1536), "1536 bytes");
    }

    #[test]
    fn first_line_drops_appended_context() {
        assert_eq!(
            first_line("bad magic number\n  0: 00 61 73 6d"),
            "bad magic number"
        );
    }
}
