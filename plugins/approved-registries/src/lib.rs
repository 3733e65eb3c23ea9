//! The `approved-registries` gate: every container image a release ships
//! comes from an approved registry.
//!
//! ```yaml
//! - name: approved-base-images
//!   plugin: approved-registries
//!   key: true
//!   with: { registries: [registry.example.com, ghcr.io/acme], require_digest: false }
//! ```
//!
//! The images are read from a snapshot attribute (`attribute`, default
//! `base_image`): one reference, or several separated by commas or spaces
//! (a multi-stage build's bases, sidecars). Each is normalised as Docker
//! does — a first component with a `.` or `:`, or `localhost`, is the
//! registry, otherwise the image is on `docker.io` (and a bare name is under
//! `library/`) — and is approved when its registry is an entry of
//! `registries`, or its `registry/repository` lies under an entry that has
//! a path (`ghcr.io/acme` approves `ghcr.io/acme/base`, not
//! `ghcr.io/acmecorp/base`). With `require_digest`, each must also be
//! pinned by `@sha256:…`. No attribute is inconclusive.

use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Detail, Finding, Verdict};
use tollgate_sdk::rule::{GateRule, View};

/// The gate's settings.
pub struct Rule {
    attribute: String,
    registries: Vec<String>,
    require_digest: bool,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let attribute = s.opt_text("attribute")?.unwrap_or("base_image").to_string();
        let registries: Vec<String> = s
            .opt_text_list("registries")?
            .ok_or("`registries` is required: the approved registries, such as [registry.example.com, ghcr.io/acme]")?
            .into_iter()
            .map(|r| r.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        if registries.is_empty() || registries.iter().any(String::is_empty) {
            return Err("`registries` must name at least one registry, none empty".into());
        }
        Ok(Self {
            attribute,
            registries,
            require_digest: s.opt_bool("require_digest")?.unwrap_or(false),
        })
    }

    /// Why `image` is not approved, or `None` when it is.
    fn refusal(&self, image: &str) -> Option<String> {
        let r = match Reference::parse(image) {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let full = format!("{}/{}", r.registry, r.repository);
        let approved = self.registries.iter().any(|allowed| {
            if allowed.contains('/') {
                full.strip_prefix(allowed.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            } else {
                r.registry == *allowed
            }
        });
        if !approved {
            return Some(format!(
                "`{image}` is from {}, not an approved registry",
                r.registry
            ));
        }
        if self.require_digest && !r.digest {
            return Some(format!("`{image}` is not pinned by digest (@sha256:…)"));
        }
        None
    }

    fn evaluate(&self, snapshot: &dyn View) -> Finding {
        let Some(value) = snapshot.attribute(&self.attribute) else {
            return finding(
                Verdict::Inconclusive,
                format!("no `{}` attribute in the snapshot", self.attribute),
                Vec::new(),
            );
        };
        let images: Vec<&str> = value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        if images.is_empty() {
            return finding(
                Verdict::Inconclusive,
                format!("the `{}` attribute is empty", self.attribute),
                Vec::new(),
            );
        }
        let refused: Vec<String> = images.iter().filter_map(|i| self.refusal(i)).collect();
        let mut details: Vec<Detail> = images
            .iter()
            .enumerate()
            .map(|(i, image)| Detail {
                key: format!("image.{}", i + 1),
                value: (*image).to_string(),
            })
            .collect();
        details.truncate(16);
        match refused.first() {
            None => finding(
                Verdict::Pass,
                format!(
                    "{} image(s) from approved registries ({})",
                    images.len(),
                    self.registries.join(", ")
                ),
                details,
            ),
            Some(first) => finding(
                Verdict::Fail,
                if refused.len() == 1 {
                    first.clone()
                } else {
                    format!("{first} (and {} more)", refused.len() - 1)
                },
                details,
            ),
        }
    }
}

/// An image reference, normalised as Docker does.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    registry: String,
    repository: String,
    digest: bool,
}

impl Reference {
    fn parse(image: &str) -> Result<Self, String> {
        let (name, digest) = match image.split_once('@') {
            Some((name, d)) => {
                let hex = d.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "`{image}` has a malformed digest (expected @sha256: and 64 hex digits)"
                    ));
                }
                (name, true)
            }
            None => (image, false),
        };
        // A tag follows the last `:` after the last `/` (a registry port
        // comes before a `/`).
        let name = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => &name[..i],
            _ => name,
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || "._-/:".contains(c);
        if name.is_empty()
            || !name.chars().all(valid)
            || name.starts_with('/')
            || name.ends_with('/')
            || name.contains("//")
        {
            return Err(format!("`{image}` is not an image reference"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_ascii_lowercase(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        Ok(Self {
            registry,
            repository: repository.to_ascii_lowercase(),
            digest,
        })
    }
}

/// A finding with details and no observed value or threshold.
fn finding(verdict: Verdict, reason: String, details: Vec<Detail>) -> Finding {
    Finding {
        details,
        ..tollgate_sdk::rule::finding(verdict, reason, None, None)
    }
}

/// The gate.
pub struct ApprovedRegistries;

impl GateRule for ApprovedRegistries {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn judge(rule: &Rule, snapshot: &dyn View) -> Finding {
        rule.evaluate(snapshot)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_gate_rule!(ApprovedRegistries);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::rule::{MemorySnapshot, judge};

    fn reference(image: &str) -> (String, String, bool) {
        let r = Reference::parse(image).unwrap();
        (r.registry, r.repository, r.digest)
    }

    #[test]
    fn references_normalise_as_docker_does() {
        let r = |a: &str, b: &str, d| (a.to_string(), b.to_string(), d);
        assert_eq!(reference("alpine"), r("docker.io", "library/alpine", false));
        assert_eq!(
            reference("alpine:3.20"),
            r("docker.io", "library/alpine", false)
        );
        assert_eq!(
            reference("bitnami/redis:7"),
            r("docker.io", "bitnami/redis", false)
        );
        assert_eq!(
            reference("localhost:5000/app:1"),
            r("localhost:5000", "app", false)
        );
        assert_eq!(
            reference("Registry.Example.com/team/base:1.2"),
            r("registry.example.com", "team/base", false)
        );
        let pinned = format!("ghcr.io/acme/base@sha256:{}", "a".repeat(64));
        assert_eq!(reference(&pinned), r("ghcr.io", "acme/base", true));
        assert!(Reference::parse("ghcr.io/acme/base@sha256:abc").is_err());
        assert!(Reference::parse("bad image!").is_err());
    }

    fn check(image: &str, with: &[(&str, tollgate_sdk::gate::ConfigValue)]) -> Finding {
        let snapshot = MemorySnapshot::new(0).with_attribute("base_image", image);
        judge::<ApprovedRegistries>(with, &snapshot).unwrap()
    }

    #[test]
    fn only_approved_registries_and_path_prefixes_pass() {
        let approved: &[&str] = &["registry.example.com", "ghcr.io/acme"];
        let with = [("registries", approved.into())];
        assert_eq!(
            check("registry.example.com/app/base:1", &with).verdict,
            Verdict::Pass
        );
        assert_eq!(check("ghcr.io/acme/base:1", &with).verdict, Verdict::Pass);
        let f = check("ghcr.io/acmecorp/base:1", &with);
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(
            f.reason,
            "`ghcr.io/acmecorp/base:1` is from ghcr.io, not an approved registry"
        );
        let f = check("registry.example.com/app:1, python:3.12-slim", &with);
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(
            f.reason,
            "`python:3.12-slim` is from docker.io, not an approved registry"
        );
    }

    #[test]
    fn a_digest_can_be_required_and_a_missing_attribute_is_inconclusive() {
        let approved: &[&str] = &["ghcr.io"];
        let with = [
            ("registries", approved.into()),
            ("require_digest", true.into()),
        ];
        let f = check("ghcr.io/acme/base:1", &with);
        assert_eq!(
            f.reason,
            "`ghcr.io/acme/base:1` is not pinned by digest (@sha256:…)"
        );
        let pinned = format!("ghcr.io/acme/base@sha256:{}", "0".repeat(64));
        assert_eq!(check(&pinned, &with).verdict, Verdict::Pass);
        let f = judge::<ApprovedRegistries>(&with, &MemorySnapshot::new(0)).unwrap();
        assert_eq!(f.verdict, Verdict::Inconclusive);
        assert_eq!(f.reason, "no `base_image` attribute in the snapshot");
        assert!(
            judge::<ApprovedRegistries>(&[], &MemorySnapshot::new(0))
                .unwrap_err()
                .starts_with("`registries` is required")
        );
    }
}
