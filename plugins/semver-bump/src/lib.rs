//! The `semver-bump` action: the next version from Conventional Commits.
//!
//! Rules (release process, "Version Bump Rules"): a `BREAKING CHANGE:` (or
//! `BREAKING-CHANGE:`) footer or a `!` before the colon gives **major**;
//! `feat` gives **minor**; `fix` gives **patch**; every other type (`docs`,
//! `style`, `refactor`, `test`, `chore`, …) and any message that is not a
//! Conventional Commit gives none. The largest bump over all commits wins.
//!
//! Pre-releases: with `prerelease: alpha|beta|rc` the result is a pre-release
//! of the bumped version (`1.3.0-beta.1`). A version that already is a
//! pre-release is taken to stand for its own bump (`1.3.0-*` for a minor):
//! a bump no larger continues it (`beta.1` → `beta.2`, or `alpha.3` → `beta.1`
//! when the channel moves on); a larger bump starts the next version. Without
//! `prerelease`, a pre-release is released as its base version (`1.3.0-rc.2`
//! → `1.3.0`) unless a larger bump is needed.

use semver::{Prerelease, Version};
use tollgate_sdk::action::{Action, Context};
use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{ActionRule, View};

/// How much a set of commits moves the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bump {
    None,
    Patch,
    Minor,
    Major,
}

/// The bump one commit message calls for.
pub fn bump_for(message: &str) -> Bump {
    let mut lines = message.lines();
    let header = lines.next().unwrap_or_default().trim();
    let Some((prefix, _description)) = header.split_once(':') else {
        return Bump::None;
    };
    let breaking_marker = prefix.ends_with('!');
    let prefix = prefix.trim_end_matches('!');
    let kind = match prefix.split_once('(') {
        Some((kind, scope)) if scope.ends_with(')') => kind,
        Some(_) => return Bump::None,
        None => prefix,
    };
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphabetic()) {
        return Bump::None;
    }
    let breaking_footer =
        lines.any(|l| l.starts_with("BREAKING CHANGE:") || l.starts_with("BREAKING-CHANGE:"));
    if breaking_marker || breaking_footer {
        return Bump::Major;
    }
    match kind.to_ascii_lowercase().as_str() {
        "feat" => Bump::Minor,
        "fix" => Bump::Patch,
        _ => Bump::None,
    }
}

/// The bump a pre-release's base version already stands for.
fn implied(base: &Version) -> Bump {
    if base.patch > 0 {
        Bump::Patch
    } else if base.minor > 0 {
        Bump::Minor
    } else {
        Bump::Major
    }
}

fn bumped(v: &Version, bump: Bump) -> Version {
    match bump {
        Bump::None => Version::new(v.major, v.minor, v.patch),
        Bump::Patch => Version::new(v.major, v.minor, v.patch + 1),
        Bump::Minor => Version::new(v.major, v.minor + 1, 0),
        Bump::Major => Version::new(v.major + 1, 0, 0),
    }
}

/// The release's next version, or `None` when nothing calls for one.
pub fn next_version(
    current: &Version,
    bump: Bump,
    channel: Option<&str>,
) -> Result<Option<Version>, String> {
    let pre = |v: Version, n: u64, channel: &str| -> Result<Version, String> {
        let mut v = v;
        v.pre = Prerelease::new(&format!("{channel}.{n}")).map_err(|e| e.to_string())?;
        Ok(v)
    };
    if current.pre.is_empty() {
        if bump == Bump::None {
            return Ok(None);
        }
        let base = bumped(current, bump);
        return Ok(Some(match channel {
            Some(c) => pre(base, 1, c)?,
            None => base,
        }));
    }
    let base = Version::new(current.major, current.minor, current.patch);
    let (current_channel, number) = match current.pre.as_str().split_once('.') {
        Some((c, n)) => (c.to_string(), n.parse::<u64>().ok()),
        None => (current.pre.as_str().to_string(), None),
    };
    if bump > implied(&base) {
        // A larger bump than this pre-release stands for: start that version.
        let below = match implied(&base) {
            Bump::Patch => Version::new(base.major, base.minor, base.patch - 1),
            Bump::Minor => Version::new(base.major, base.minor - 1, 0),
            _ => base.clone(),
        };
        let next = bumped(&below, bump);
        return Ok(Some(match channel {
            Some(c) => pre(next, 1, c)?,
            None => next,
        }));
    }
    Ok(Some(match channel {
        None => base,
        Some(c) if c == current_channel => pre(base, number.unwrap_or(0) + 1, c)?,
        Some(c) => pre(base, 1, c)?,
    }))
}

fn parse_channel(s: &Settings<'_>) -> Result<Option<String>, String> {
    match s.opt_text("prerelease")? {
        None => Ok(None),
        Some(c @ ("alpha" | "beta" | "rc")) => Ok(Some(c.to_string())),
        Some(other) => Err(format!(
            "unknown pre-release `{other}`: expected alpha, beta or rc"
        )),
    }
}

/// The action: reads `version` and `commits` from the snapshot.
pub struct SemverBump;

impl ActionRule for SemverBump {
    /// The pre-release channel, if any.
    type Settings = Option<String>;
    fn settings(s: &Settings) -> Result<Option<String>, String> {
        parse_channel(s)
    }

    fn plan(
        channel: &Option<String>,
        snapshot: &dyn View,
        _context: &Context,
    ) -> Result<Vec<Action>, String> {
        let text = snapshot.version();
        let current = Version::parse(text.trim_start_matches('v'))
            .map_err(|e| format!("snapshot version `{text}` is not semver: {e}"))?;
        let bump = snapshot
            .commits()
            .iter()
            .map(|c| bump_for(&c.message))
            .max()
            .unwrap_or(Bump::None);
        Ok(match next_version(&current, bump, channel.as_deref())? {
            Some(v) => vec![Action::BumpVersion(v.to_string())],
            None => Vec::new(),
        })
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_action_rule!(SemverBump);

#[cfg(test)]
mod tests {
    use super::*;

    fn next(current: &str, messages: &[&str], channel: Option<&str>) -> Option<String> {
        let bump = messages
            .iter()
            .map(|m| bump_for(m))
            .max()
            .unwrap_or(Bump::None);
        next_version(&Version::parse(current).unwrap(), bump, channel)
            .unwrap()
            .map(|v| v.to_string())
    }

    #[test]
    fn seed_examples() {
        assert_eq!(
            next("1.0.0", &["fix(auth): resolve login timeout issue"], None).as_deref(),
            Some("1.0.1")
        );
        assert_eq!(
            next("1.0.1", &["feat(api): add user profile endpoints"], None).as_deref(),
            Some("1.1.0")
        );
        assert_eq!(
            next("1.1.0", &["feat(auth)!: migrate to OAuth 2.0\n\nBREAKING CHANGE: Authentication now requires OAuth 2.0 tokens"], None).as_deref(),
            Some("2.0.0")
        );
        for kind in ["docs", "style", "refactor", "test", "chore"] {
            assert_eq!(
                next("1.0.0", &[&format!("{kind}: tidy")], None),
                None,
                "{kind}"
            );
        }
    }

    #[test]
    fn conventional_commits_spec_examples() {
        let cases = [
            (
                "feat: allow provided config object to extend other configs\n\nBREAKING CHANGE: `extends` key in config file is now used for extending other config files",
                Bump::Major,
            ),
            (
                "feat!: send an email to the customer when a product is shipped",
                Bump::Major,
            ),
            (
                "feat(api)!: send an email to the customer when a product is shipped",
                Bump::Major,
            ),
            (
                "chore!: drop support for Node 6\n\nBREAKING CHANGE: use JavaScript features not available in Node 6.",
                Bump::Major,
            ),
            ("docs: correct spelling of CHANGELOG", Bump::None),
            ("feat(lang): add Polish language", Bump::Minor),
            (
                "fix: prevent racing of requests\n\nIntroduce a request id and a reference to latest request. Dismiss\nincoming responses other than from latest request.\n\nRemove timeouts which were used to mitigate the racing issue but are\nobsolete now.\n\nReviewed-by: Z\nRefs: #123",
                Bump::Patch,
            ),
            (
                "revert: let us never again speak of the noodle incident\n\nRefs: 676104e, a215868",
                Bump::None,
            ),
            (
                "fix(parser)!: reject trailing commas\n\nBREAKING-CHANGE: input that was accepted is now an error",
                Bump::Major,
            ),
            ("Merge branch 'main' into feature", Bump::None),
            ("update stuff", Bump::None),
        ];
        for (message, bump) in cases {
            assert_eq!(bump_for(message), bump, "{message}");
        }
    }

    #[test]
    fn the_largest_bump_wins() {
        assert_eq!(
            next("2.3.4", &["fix: a", "feat: b", "docs: c"], None).as_deref(),
            Some("2.4.0")
        );
        assert_eq!(
            next("2.3.4", &["fix: a", "refactor!: b"], None).as_deref(),
            Some("3.0.0")
        );
    }

    #[test]
    fn pre_releases_continue_advance_and_release() {
        assert_eq!(
            next("1.2.3", &["feat: x"], Some("alpha")).as_deref(),
            Some("1.3.0-alpha.1")
        );
        assert_eq!(
            next("1.3.0-alpha.1", &["fix: y"], Some("alpha")).as_deref(),
            Some("1.3.0-alpha.2")
        );
        assert_eq!(
            next("1.3.0-alpha.2", &["feat: z"], Some("beta")).as_deref(),
            Some("1.3.0-beta.1")
        );
        assert_eq!(
            next("1.3.0-beta.4", &["fix: w"], Some("rc")).as_deref(),
            Some("1.3.0-rc.1")
        );
        assert_eq!(
            next("1.3.0-rc.2", &["fix: w"], None).as_deref(),
            Some("1.3.0")
        );
        assert_eq!(
            next("1.2.4-beta.1", &["feat: v"], Some("beta")).as_deref(),
            Some("1.3.0-beta.1")
        );
        assert_eq!(
            next("1.3.0-rc.1", &["feat!: break"], None).as_deref(),
            Some("2.0.0")
        );
        assert_eq!(
            next("2.0.0-alpha.1", &["feat!: more"], Some("alpha")).as_deref(),
            Some("2.0.0-alpha.2")
        );
    }
}
