//! What became of each release, as far as the log knows: a rollback of it
//! by the backtested policy, a later stage of it (another policy) rolling
//! it back, a hotfix of its service soon after, or its last stage
//! promoted with none of these. A labels file wins over all of them.

use std::collections::{BTreeMap, HashMap};

use super::{Label, Options, Release, Seen};
use crate::store::{Filter, Store, StoreError};

/// Labels each release the pass saw.
pub(super) async fn label(
    store: &dyn Store,
    o: &Options,
    seen: BTreeMap<(String, String), Seen>,
) -> Result<Vec<Release>, StoreError> {
    let since = o.since;
    // Hotfixes of the services seen: decisions of the hotfix policy.
    let mut hotfixes: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    if o.hotfix_policy != o.policy_name {
        for h in crate::store::all(
            store,
            &Filter {
                service: o.service.clone(),
                policy: Some(o.hotfix_policy.clone()),
                since,
                ..Filter::default()
            },
        )
        .await?
        {
            hotfixes
                .entry(h.service)
                .or_default()
                .push((h.taken_at, h.version));
        }
    }
    // A later stage of the release under another policy that rolled it
    // back (the CI policy's release failing its canary): the first such.
    let mut failed: HashMap<(String, String), (i64, String)> = HashMap::new();
    for r in crate::store::all(
        store,
        &Filter {
            service: o.service.clone(),
            decision: Some("rollback".into()),
            since,
            ..Filter::default()
        },
    )
    .await?
    {
        if r.policy == o.policy_name || r.policy == o.hotfix_policy {
            continue;
        }
        let Some(s) = seen.get(&(r.service.clone(), r.version.clone())) else {
            continue;
        };
        if r.taken_at < s.first {
            continue;
        }
        let why = format!("failed {} {}", r.policy, r.stage);
        let e = failed
            .entry((r.service, r.version))
            .or_insert((r.taken_at, why.clone()));
        if r.taken_at < e.0 {
            *e = (r.taken_at, why);
        }
    }
    // For each hotfix, the release of its service whose last decision came
    // last before it.
    let mut owner_of: HashMap<(&str, i64), &str> = HashMap::new();
    for (service, hs) in &hotfixes {
        for (t, _) in hs {
            let owner = seen
                .iter()
                .filter(|((s, _), r)| s == service && r.last < *t)
                .max_by_key(|(_, r)| r.last)
                .map(|((_, v), _)| v.as_str());
            if let Some(v) = owner {
                owner_of.insert((service.as_str(), *t), v);
            }
        }
    }
    let labelled = seen
        .iter()
        .map(|((service, version), s)| {
            // A hotfix belongs to the release the service ran last before it.
            let hotfix = hotfixes.get(service).and_then(|hs| {
                hs.iter()
                    .filter(|(t, v)| {
                        v != version
                            && *t > s.last
                            && t.saturating_sub(s.last) <= o.hotfix_window
                            && owner_of.get(&(service.as_str(), *t)) == Some(&version.as_str())
                    })
                    .min()
            });
            let key = (service.clone(), version.clone());
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
