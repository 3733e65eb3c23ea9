//! `${name}` templates, as a metric's `prometheus` query writes them: their
//! syntax and the variables a policy may use. Filling one in (escaping each
//! value for PromQL) is the sources' work; reading it is the policy's.

/// The variables a metric query may use.
pub const VARIABLES: &[&str] = &["service", "version", "stage", "track"];

/// A template that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown template variable `${{{0}}}`; known: ${{service}}, ${{version}}, ${{stage}}, ${{track}}"
    )]
    Unknown(String),
    #[error("unterminated `${{` at byte {0}")]
    Unterminated(usize),
}

/// A piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text kept as written.
    Text(&'a str),
    /// The name inside `${…}`, not yet checked.
    Variable(&'a str),
}

/// Splits a template into text and variables.
pub fn pieces(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        out.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or(TemplateError::Unterminated(offset + start))?;
        out.push(Piece::Variable(&after[..end]));
        offset += start + 2 + end + 1;
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The variables `template` uses, each once, each one of [`VARIABLES`].
pub fn variables(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut used = Vec::new();
    for piece in pieces(template)? {
        if let Piece::Variable(name) = piece {
            if !VARIABLES.contains(&name) {
                return Err(TemplateError::Unknown(name.to_string()));
            }
            if !used.iter().any(|u| u == name) {
                used.push(name.to_string());
            }
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            pieces("a${stage}b").unwrap(),
            [Piece::Text("a"), Piece::Variable("stage"), Piece::Text("b")]
        );
    }
}
