//! Untrusted text made safe for a terminal or a one-line log.
//!
//! Plugin reasons, details, logs and input-supplied names reach people
//! through tables, error lines and text logs. A raw ESC, CR or BEL there
//! could clear the screen or forge a verdict, so every such output passes
//! through [`escape_control`]. JSON output needs none of this: serde escapes.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, and
/// the bidirectional overrides that can reorder what a reader sees.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_unsafe(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The first line of `text`, escaped: for messages from libraries that
/// append multi-line context (hex dumps, backtraces) after the cause.
pub fn first_line(text: &str) -> Cow<'_, str> {
    let line = text.lines().next().unwrap_or_default();
    escape_control(line.trim_end_matches(':'))
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
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_control("p95 412 ms ≤ 500 ms"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn first_line_drops_appended_context() {
        assert_eq!(
            first_line("bad magic number\n  0: 00 61 73 6d"),
            "bad magic number"
        );
    }
}
