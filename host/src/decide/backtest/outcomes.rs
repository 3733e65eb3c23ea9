//! What became of each release, as far as the log knows: a rollback of it
//! by the backtested policy, a later stage of it (another policy) rolling
//! it back, a hotfix of its service soon after, or its last stage
//! promoted with none of these. A labels file wins over all of them.

use std::collections::{BTreeMap, HashMap};

use super::{Label, Options, Release, Seen};
use crate::store::{Filter, Store, StoreError, each};

/// Labels each release the pass saw. Memory holds the releases and the
/// hotfixes and rollbacks that concern them, never a listing.
pub(super) async fn label(
    store: &dyn Store,
    o: &Options,
    seen: BTreeMap<(String, String), Seen>,
) -> Result<Vec<Release>, StoreError> {
    let since = o.since;
    // Each service's releases by the time of their last decision.
    let mut by_service: HashMap<&str, Vec<(i64, &str)>> = HashMap::new();
    for ((service, version), s) in &seen {
        by_service
            .entry(service.as_str())
            .or_default()
            .push((s.last, version.as_str()));
    }
    for releases in by_service.values_mut() {
        releases.sort_unstable();
    }
    // Hotfixes of the services seen: decisions of the hotfix policy, each
    // owned by the release of its service whose last decision came last
    // before it.
    let mut hotfixes: HashMap<(String, String), Vec<(i64, String)>> = HashMap::new();
    if o.hotfix_policy != o.policy_name {
        let filter = Filter {
            service: o.service.clone(),
            policy: Some(o.hotfix_policy.clone()),
            since,
            oldest_first: true,
            ..Filter::default()
        };
        each(store, &filter, |h| {
            let Some(releases) = by_service.get(h.service.as_str()) else {
                return;
            };
            let before = releases.partition_point(|(last, _)| *last < h.taken_at);
            if let Some((_, owner)) = before.checked_sub(1).map(|i| releases[i]) {
                hotfixes
                    .entry((h.service.clone(), owner.to_string()))
                    .or_default()
                    .push((h.taken_at, h.version));
            }
        })
        .await?;
    }
    // A later stage of the release under another policy that rolled it
    // back (the CI policy's release failing its canary): the first such.
    let mut failed: HashMap<(String, String), (i64, String)> = HashMap::new();
    let filter = Filter {
        service: o.service.clone(),
        decision: Some("rollback".into()),
        since,
        oldest_first: true,
        ..Filter::default()
    };
    each(store, &filter, |r| {
        if r.policy == o.policy_name || r.policy == o.hotfix_policy {
            return;
        }
        let key = (r.service, r.version);
        let Some(s) = seen.get(&key) else {
            return;
        };
        if r.taken_at >= s.first && failed.get(&key).is_none_or(|(t, _)| r.taken_at < *t) {
            failed.insert(
                key,
                (r.taken_at, format!("failed {} {}", r.policy, r.stage)),
            );
        }
    })
    .await?;
    let labelled = seen
        .iter()
        .map(|((service, version), s)| {
            let key = (service.clone(), version.clone());
            // A hotfix of another version within the window.
            let hotfix = hotfixes.get(&key).and_then(|hs| {
                hs.iter()
                    .filter(|(t, v)| {
                        v != version && *t > s.last && t.saturating_sub(s.last) <= o.hotfix_window
                    })
                    .min()
            });
            let (label, because) = if let Some(l) = o.labels.get(&key) {
                (Some(*l), Some("file".to_string()))
            } else if s.rolled_back {
                (Some(Label::Bad), Some("rollback".to_string()))
            } else if let Some((_, why)) = failed.get(&key) {
                (Some(Label::Bad), Some(why.clone()))
            } else if let Some((_, v)) = hotfix {
                (Some(Label::Bad), Some(format!("hotfix {v}")))
            } else if s.shipped {
                (Some(Label::Good), Some("shipped".to_string()))
            } else {
                (None, None)
            };
            Release {
                service: service.clone(),
                version: version.clone(),
                label,
                because,
                stopped_before: s.stopped_before,
                stopped_after: s.stopped_after,
            }
        })
        .collect();
    Ok(labelled)
}
