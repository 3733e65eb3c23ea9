//! `${name}` templates in PromQL, with values escaped for label matchers.
//!
//! A template names its variables as `${service}`, `${version}`, `${stage}`
//! and `${track}`. Each value is escaped as the inside of a PromQL string
//! literal (double- or single-quoted), so a service called
//! `x"} or vector(1) or {a="` stays one label value and cannot change the
//! query. A value containing a backquote is refused: raw strings have no
//! escapes.

use std::collections::BTreeMap;

use crate::policy::template::{self as syntax, Piece};

/// A template that cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template itself does not read (a policy that loaded never has one).
    #[error(transparent)]
    Syntax(#[from] syntax::TemplateError),
    #[error("`{name}` value `{value}` contains a backquote, which no PromQL string can escape")]
    Backquote { name: String, value: String },
}

/// `value` escaped as the inside of a quoted PromQL string.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `template` with `values`, each escaped.
pub fn render(template: &str, values: &BTreeMap<&str, &str>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    for piece in syntax::pieces(template)? {
        let text = match piece {
            Piece::Text(text) => {
                out.push_str(text);
                continue;
            }
            Piece::Variable(name) => name,
        };
        let value = values
            .get(text)
            .ok_or_else(|| syntax::TemplateError::Unknown(text.to_string()))?;
        if value.contains('`') {
            // The value is a request's: quote a bounded, escaped piece.
            return Err(TemplateError::Backquote {
                name: text.to_string(),
                value: crate::base::text::shown(value),
            });
        }
        out.push_str(&escape_label_value(value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn variables_are_filled() {
        let q = render(
            r#"rate(x{service="${service}",track="${track}"}[1m])"#,
            &vars(&[("service", "checkout"), ("track", "canary")]),
        )
        .unwrap();
        assert_eq!(q, r#"rate(x{service="checkout",track="canary"}[1m])"#);
    }

    #[test]
    fn a_service_name_cannot_inject_a_query() {
        let evil = r#"x"} or vector(1) or {a=""#;
        let q = render(r#"up{service="${service}"}"#, &vars(&[("service", evil)])).unwrap();
        assert_eq!(q, r#"up{service="x\"} or vector(1) or {a=\""}"#);
        let q = render("up{service='${service}'}", &vars(&[("service", "a'b\\")])).unwrap();
        assert_eq!(q, r"up{service='a\'b\\'}");
    }

    #[test]
    fn backquotes_are_refused() {
        let err = render("up{s=`${service}`}", &vars(&[("service", "a`b")])).unwrap_err();
        assert!(matches!(err, TemplateError::Backquote { .. }));
    }

    #[test]
    fn a_variable_without_a_value_is_named() {
        assert_eq!(
            render("up{s=\"${stage}\"}", &vars(&[("service", "a")])).unwrap_err(),
            TemplateError::Syntax(syntax::TemplateError::Unknown("stage".into()))
        );
    }
}
