//! Request text as an error quotes it: JSON paths and parsers' messages,
//! escaped and bounded, so an error never echoes a request back whole.

/// Characters of a JSON path an error names at most.
const SHOWN_PATH_CHARS: usize = 256;

/// A JSON path built from request keys, as an error's `field` or message
/// names it: escaped, and cut to [`SHOWN_PATH_CHARS`] characters.
pub(in crate::server) fn shown_path(path: &str) -> String {
    let mut chars = path.chars();
    let short: String = chars.by_ref().take(SHOWN_PATH_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{}{cut}", crate::base::text::escape_control(&short))
}

/// Characters of a parser's message an error quotes at most.
const SHOWN_MESSAGE_CHARS: usize = 1024;

/// A parser's message (serde's `unknown field `…``, `invalid type: string
/// "…"`) as an error quotes it: each run of request text it quotes, between
/// backquotes or double quotes, cut to [`crate::base::text::SHOWN_CHARS`]
/// characters, control characters escaped, and the whole bounded.
pub(in crate::server) fn shown_message(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let (mut run, mut backslash) = (0, false);
    for c in message.chars().take(SHOWN_MESSAGE_CHARS * 64) {
        match quote {
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    quote = Some(c);
                    (run, backslash) = (0, false);
                }
            }
            Some(q) => {
                if c == q && !backslash {
                    out.push(c);
                    quote = None;
                    continue;
                }
                // Only a double-quoted run (Rust's `{:?}`) has escapes.
                backslash = q == '"' && c == '\\' && !backslash;
                run += 1;
                if run <= crate::base::text::SHOWN_CHARS {
                    out.push(c);
                } else if run == crate::base::text::SHOWN_CHARS + 1 {
                    out.push('…');
                }
            }
        }
        if out.len() > SHOWN_MESSAGE_CHARS * 4 {
            break;
        }
    }
    let escaped = crate::base::text::escape_control(&out);
    let mut chars = escaped.chars();
    let short: String = chars.by_ref().take(SHOWN_MESSAGE_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{short}{cut}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsers_message_quotes_bounded_escaped_text() {
        let long = format!("\u{1b}[2J{}", "a".repeat(10_000));
        let message = format!("unknown field `{long}`, expected `policy` or `stage`");
        let shown = shown_message(&message);
        assert!(shown.starts_with("unknown field `\\x1b[2Jaaa"), "{shown}");
        assert!(
            shown.ends_with("…`, expected `policy` or `stage`"),
            "{shown}"
        );
        assert!(shown.chars().count() < 150, "{shown}");
        // Rust's `{:?}` escapes a quote inside a double-quoted run.
        let typed = format!("invalid type: string \"a\\\"{long}\", expected a number");
        let shown = shown_message(&typed);
        assert!(shown.ends_with("…\", expected a number"), "{shown}");
        // A quote never closed still ends within the bound.
        assert!(shown_message(&format!("`{long}")).chars().count() < 150);
        assert!(shown_message(&"x".repeat(100_000)).chars().count() <= SHOWN_MESSAGE_CHARS + 1);
        assert_eq!(
            shown_path(&"k.".repeat(1000)).chars().count(),
            SHOWN_PATH_CHARS + 1
        );
    }
}
