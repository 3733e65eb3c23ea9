//! The operations a source may ask the host for, as an operator lists
//! them under `allow:`: a method, a path, and for an AWS JSON-protocol
//! call the `X-Amz-Target` it names.

use crate::engine::Method;

/// One operation a source may ask the host for: a method and a path
/// (relative to the base URL, without the query string), and for an AWS
/// JSON-protocol call the `X-Amz-Target` it must name. Written
/// `GET /query` or `POST / GraniteServiceVersion20100801.GetMetricData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: Method,
    pub path: String,
    pub target: Option<String>,
}

impl std::str::FromStr for Operation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let shape = || {
            format!(
                "`{text}` is not an operation: write `GET /path`, `POST /path` or `POST / X-AMZ-TARGET`"
            )
        };
        let method = match words.next() {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            _ => return Err(shape()),
        };
        let path = words
            .next()
            .filter(|p| p.starts_with('/'))
            .ok_or_else(shape)?;
        let target = words.next().map(str::to_string);
        if words.next().is_some() || path.contains('?') {
            return Err(shape());
        }
        Ok(Self {
            method,
            path: path.to_string(),
            target,
        })
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.path)?;
        if let Some(t) = &self.target {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}
