//! `${name}` templates in PromQL, with values escaped for label matchers.
//!
//! A template names its variables as `${service}`, `${version}`, `${stage}`
//! and `${track}`. Each value is escaped as the inside of a PromQL string
//! literal (double- or single-quoted), so a service called
//! `x"} or vector(1) or {a="` stays one label value and cannot change the
//! query. A value containing a backquote is refused: raw strings have no
//! escapes.

use std::collections::BTreeMap;

/// The variables a metric query may use.
pub const VARIABLES: &[&str] = &["service", "version", "stage", "track"];

/// A template that cannot be read or filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown template variable `${{{0}}}`; known: ${{service}}, ${{version}}, ${{stage}}, ${{track}}"
    )]
    Unknown(String),
    #[error("unterminated `${{` at byte {0}")]
    Unterminated(usize),
    #[error("`{name}` value `{value}` contains a backquote, which no PromQL string can escape")]
    Backquote { name: String, value: String },
}

/// Splits a template into literal text and variable names.
fn pieces(template: &str) -> Result<Vec<(bool, &str)>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        out.push((false, &rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or(TemplateError::Unterminated(offset + start))?;
        out.push((true, &after[..end]));
        offset += start + 2 + end + 1;
        rest = &after[end + 1..];
    }
    out.push((false, rest));
    Ok(out)
}

/// The variables `template` uses, each checked against [`VARIABLES`].
pub fn variables(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut used = Vec::new();
    for (is_var, text) in pieces(template)? {
        if is_var {
            if !VARIABLES.contains(&text) {
                return Err(TemplateError::Unknown(text.to_string()));
            }
            if !used.iter().any(|u| u == text) {
                used.push(text.to_string());
            }
        }
    }
    Ok(used)
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
    for (is_var, text) in pieces(template)? {
        if !is_var {
            out.push_str(text);
            continue;
        }
        let value = values
            .get(text)
            .ok_or_else(|| TemplateError::Unknown(text.to_string()))?;
        if value.contains('`') {
            // The value is a request's: quote a bounded, escaped piece.
            return Err(TemplateError::Backquote {
                name: text.to_string(),
                value: crate::text::shown(value),
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
    fn unknown_and_unterminated_variables_are_named() {
        assert_eq!(
            variables("x{a=\"${servce}\"}").unwrap_err(),
            TemplateError::Unknown("servce".into())
        );
        assert_eq!(
            variables("x{a=\"${service").unwrap_err(),
            TemplateError::Unterminated(5)
        );
        assert_eq!(
            variables("${service} ${track} ${service}").unwrap(),
            vec!["service", "track"]
        );
    }
}
