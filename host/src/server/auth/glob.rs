//! Name patterns from a token file: which policies and services a scope
//! covers, written as globs (`team-a-*`, `svc-?`).

/// A policy or service name pattern from a token file: `*` matches any
/// run of characters, `?` any one, every other character itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// The pattern `text`, as a token file writes it.
    pub(super) fn new(text: &str) -> Self {
        Self(text.to_string())
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let n: Vec<char> = name.chars().collect();
        let (mut pi, mut ni) = (0, 0);
        // Where the last `*` was, and the name position it matched up to.
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some(c) if *c == '?' || *c == n[ni] => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// The names a scope covers: every one, or those matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    All,
    Only(Vec<Pattern>),
}

impl Names {
    /// Whether `name` is covered.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(patterns) => patterns.iter().any(|p| p.matches(name)),
        }
    }

    /// The union of two scopes.
    pub(super) fn union(self, other: Self) -> Self {
        match (self, other) {
            (Self::Only(mut a), Self::Only(b)) => {
                a.extend(b);
                Self::Only(a)
            }
            _ => Self::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        let p = |s: &str| Pattern(s.into());
        assert!(p("team-a-*").matches("team-a-web"));
        assert!(!p("team-a-*").matches("xteam-a-web"));
        assert!(p("*-web").matches("team-a-web"));
        assert!(p("a*b*c").matches("aXbYc") && !p("a*b*c").matches("aXbY"));
        assert!(p("svc-?").matches("svc-1") && !p("svc-?").matches("svc-12"));
        assert!(p("*").matches("") && p("**").matches("x"));
        assert!(p("exact").matches("exact") && !p("exact").matches("exactly"));
    }
}
