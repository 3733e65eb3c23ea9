//! "Did you mean …?": the closest known name to a mistyped one.
//!
//! Every place that refuses a name it does not know (a policy, a stage, a
//! plugin, a field, a setting) suggests through here, so a typo is judged
//! the same way everywhere.

/// Edit distance over characters, counting a swap of two neighbours as one
/// edit (optimal string alignment): `wiht` is one edit from `with`.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// How far a typo may be from what it meant: one edit for short names, a
/// third of the name's length for longer ones (`ci-quality-gate` →
/// `ci-quality-gates`, `mn` → `min`, not `max` → `min`).
fn tolerance(known: &str) -> usize {
    (known.chars().count() / 3).max(1)
}

/// The known name `typed` most likely meant: the nearest within
/// [`tolerance`], or one that `typed` is a prefix of or that differs only
/// in case. Ties go to the first in `known`. `None` for an exact match.
pub fn closest<'a, I>(typed: &str, known: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = typed.to_lowercase();
    known
        .into_iter()
        .filter(|k| *k != typed)
        .filter_map(|k| {
            let d = distance(&lower, &k.to_lowercase());
            let prefix = lower.len() >= 3 && k.starts_with(lower.as_str());
            (d <= tolerance(k) || prefix).then_some((d, k))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `"; did you mean `x`?"` when a known name is close to `typed`, else
/// nothing: a suffix for an error message.
pub fn did_you_mean<'a, I>(typed: &str, known: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(typed, known).map_or_else(String::new, |k| format!("; did you mean `{k}`?"))
}

/// `"; did you mean `x`? LISTING"`, or `"; LISTING"` when no known name is
/// close: the tail of a message that refuses `typed` and says what there is.
pub fn with_listing<'a, I>(typed: &str, known: I, listing: &str) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match closest(typed, known) {
        Some(k) => format!("; did you mean `{k}`? {listing}"),
        None => format!("; {listing}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_name_they_meant() {
        let policies = ["canary", "ci-pipeline", "ci-quality-gates", "hotfix"];
        assert_eq!(closest("canry", policies), Some("canary"));
        assert_eq!(
            closest("ci-quality-gate", policies),
            Some("ci-quality-gates")
        );
        assert_eq!(closest("Canary", policies), Some("canary"));
        assert_eq!(closest("ci-quality", policies), Some("ci-quality-gates"));
        assert_eq!(closest("something-else", policies), None);
        assert_eq!(
            closest("canary", policies),
            None,
            "an exact match is no typo"
        );
        assert_eq!(closest("mn", ["min", "max_drop"]), Some("min"));
        assert_eq!(closest("max", ["min"]), None);
        assert_eq!(closest("wiht", ["name", "with", "weight"]), Some("with"));
        assert_eq!(
            did_you_mean("thresold", ["threshold"]),
            "; did you mean `threshold`?"
        );
        assert_eq!(
            with_listing("canry", policies, "policies: …"),
            "; did you mean `canary`? policies: …"
        );
        assert_eq!(
            with_listing("zzz", policies, "policies: …"),
            "; policies: …"
        );
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("wiht", "with"), 1);
        assert_eq!(distance("max", "min"), 2);
    }
}
