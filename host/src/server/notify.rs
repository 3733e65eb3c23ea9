//! Webhooks on decisions: a rollback, a hold that has lasted longer than a
//! set time, a promote of a policy's last stage. Each carries the decision's
//! summary and a link to its page in the web view, as a Slack-compatible
//! message or a generic JSON body signed with HMAC-SHA256.
//!
//! Delivery never holds up the decision's answer: a notification is queued
//! (bounded; a full queue drops it, logged and counted) and sent by one
//! task, retried with backoff a bounded number of times on a network error,
//! a 429 or a 5xx, and every failure is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::evaluate::decision::{Decision, Outcome};

/// Notifications waiting to be sent, server-wide; more are dropped.
pub const QUEUE: usize = 1024;
/// Tries per notification, the first included.
pub const ATTEMPTS: u32 = 5;
/// The pause before the second try; it doubles for each one after.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Releases whose hold is being timed, at most; the oldest is forgotten.
const MAX_HELD: usize = 10_000;
/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"text": …}`, which Slack's incoming webhooks (and Mattermost,
    /// Rocket.Chat, Teams' Slack-compatible hooks) take.
    Slack,
    /// The decision's summary as JSON, signed when a secret is set.
    Json,
}

/// One webhook, as the server's config file gives it.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: reqwest::Url,
    pub format: Format,
    /// The HMAC-SHA256 key for `X-Tollgate-Signature` (JSON bodies).
    pub secret: Option<Vec<u8>>,
    /// The policies it is for; every policy when empty.
    pub policies: Vec<String>,
    pub on_rollback: bool,
    pub on_final_promote: bool,
    /// Notify once when a release has been held this long.
    pub on_hold_longer_than: Option<Duration>,
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Rollback,
    HoldLongerThan,
    FinalPromote,
}

/// What every body says of a decision.
#[derive(Debug, Clone, Serialize)]
struct Body<'a> {
    event: Event,
    decision_id: Option<&'a str>,
    policy: &'a str,
    stage: &'a str,
    service: &'a str,
    version: &'a str,
    decision: &'a str,
    summary: &'a str,
    score: Option<f64>,
    decided_at: Option<i64>,
    /// Seconds the release has been held, for `hold_longer_than`.
    #[serde(skip_serializing_if = "Option::is_none")]
    held_seconds: Option<i64>,
    /// The decision's page in the web view, when `public_url` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// A release: policy, service, version.
type Release = (String, String, String);

struct Job {
    hook: Arc<Webhook>,
    body: Vec<u8>,
    what: String,
}

/// Decides which decisions notify, and queues them.
pub struct Notifier {
    hooks: Vec<Arc<Webhook>>,
    public_url: Option<reqwest::Url>,
    queue: Option<tokio::sync::mpsc::Sender<Job>>,
    /// When each held release (policy, service, version) was first held,
    /// and whether its long hold was notified.
    held: Mutex<HashMap<Release, (i64, bool)>>,
    /// `tollgate_notifications_total{result}`: sent, failed, dropped.
    counts: Counts,
}

type Counts = prometheus_client::metrics::family::Family<
    super::metrics::NotificationLabels,
    prometheus_client::metrics::counter::Counter,
>;

fn count(counts: &Counts, result: &'static str) {
    counts
        .get_or_create(&super::metrics::NotificationLabels { result })
        .inc();
}

/// Slack's escaping for message text: `&`, `<` and `>`.
fn slack_text(s: &str) -> String {
    crate::base::text::escape_control(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `X-Tollgate-Signature`: `sha256=` and the hex HMAC of
/// `{timestamp}.{body}` under `secret`, so a receiver can check both the
/// body and its age (`X-Tollgate-Timestamp`).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Notifier {
    /// A notifier for `hooks`; its sending task starts on the current Tokio
    /// runtime when there is one to notify.
    pub(super) fn new(
        hooks: Vec<Webhook>,
        public_url: Option<reqwest::Url>,
        counts: Counts,
    ) -> Self {
        let runtime = tokio::runtime::Handle::try_current();
        let queue = match (&runtime, hooks.is_empty()) {
            (Ok(runtime), false) => {
                let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
                runtime.spawn(deliver(rx, counts.clone()));
                Some(tx)
            }
            (Err(_), false) => {
                tracing::error!("notifications disabled: no async runtime to send them from");
                None
            }
            (_, true) => None,
        };
        Self {
            hooks: hooks.into_iter().map(Arc::new).collect(),
            public_url,
            queue,
            held: Mutex::new(HashMap::new()),
            counts,
        }
    }

    /// Queues what `d` should notify; `final_stage` says whether its stage
    /// is the policy's last.
    pub fn decided(&self, d: &Decision, final_stage: bool) {
        let Some(queue) = &self.queue else {
            return;
        };
        if d.what_if {
            return;
        }
        let now = d.decided_at.unwrap_or(d.taken_at);
        let held_for = self.held_for(d, now);
        for hook in &self.hooks {
            if !hook.policies.is_empty() && !hook.policies.contains(&d.policy) {
                continue;
            }
            let event = match d.decision {
                Outcome::Rollback if hook.on_rollback => Event::Rollback,
                Outcome::Promote if final_stage && hook.on_final_promote => Event::FinalPromote,
                Outcome::Hold => match (hook.on_hold_longer_than, held_for) {
                    (Some(limit), Some((held, first_time)))
                        if first_time
                            && held >= i64::try_from(limit.as_secs()).unwrap_or(i64::MAX) =>
                    {
                        Event::HoldLongerThan
                    }
                    _ => continue,
                },
                _ => continue,
            };
            let body = self.body(hook, d, event, held_for.map(|h| h.0));
            let what = format!(
                "{:?} of {} {} ({})",
                event,
                d.service,
                d.version,
                d.decision_id.as_deref().unwrap_or("-")
            );
            let job = Job {
                hook: Arc::clone(hook),
                body,
                what,
            };
            if let Err(e) = queue.try_send(job) {
                count(&self.counts, "dropped");
                let job = match e {
                    tokio::sync::mpsc::error::TrySendError::Full(j)
                    | tokio::sync::mpsc::error::TrySendError::Closed(j) => j,
                };
                tracing::error!(
                    webhook = %hook.url.host_str().unwrap_or_default(),
                    notification = %job.what,
                    "notification dropped: {QUEUE} are waiting to be sent"
                );
            }
        }
    }

    /// How long `d`'s release has been held, and whether this is the first
    /// time that reaches a limit (so a long hold notifies once). Any other
    /// outcome ends the hold.
    fn held_for(&self, d: &Decision, now: i64) -> Option<(i64, bool)> {
        let key = (d.policy.clone(), d.service.clone(), d.version.clone());
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if d.decision != Outcome::Hold {
            held.remove(&key);
            return None;
        }
        if !held.contains_key(&key) && held.len() >= MAX_HELD {
            let oldest = held
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                held.remove(&k);
            }
        }
        let entry = held.entry(key).or_insert((now, false));
        let seconds = now.saturating_sub(entry.0);
        let limit = self
            .hooks
            .iter()
            .filter_map(|h| h.on_hold_longer_than)
            .min()
            .map_or(i64::MAX, |l| i64::try_from(l.as_secs()).unwrap_or(i64::MAX));
        let first_time = !entry.1 && seconds >= limit;
        if first_time {
            entry.1 = true;
        }
        Some((seconds, first_time))
    }

    fn body(&self, hook: &Webhook, d: &Decision, event: Event, held: Option<i64>) -> Vec<u8> {
        let link = self.public_url.as_ref().and_then(|base| {
            let id = d.decision_id.as_deref()?;
            base.join(&format!("ui/#/decision/{id}"))
                .ok()
                .map(String::from)
        });
        let body = Body {
            event,
            decision_id: d.decision_id.as_deref(),
            policy: &d.policy,
            stage: &d.stage,
            service: &d.service,
            version: &d.version,
            decision: d.decision.as_str(),
            summary: &d.summary,
            score: d.score,
            decided_at: d.decided_at,
            held_seconds: held.filter(|_| event == Event::HoldLongerThan),
            link,
        };
        match hook.format {
            Format::Json => serde_json::to_vec(&body).unwrap_or_default(),
            Format::Slack => {
                let headline = match event {
                    Event::Rollback => "rolled back",
                    Event::FinalPromote => "promoted (last stage)",
                    Event::HoldLongerThan => "held",
                };
                let mut text = format!(
                    "*{} {}* {headline} by policy `{}`, stage `{}`",
                    slack_text(&d.service),
                    slack_text(&d.version),
                    slack_text(&d.policy),
                    slack_text(&d.stage)
                );
                if let Some(s) = body.held_seconds {
                    text.push_str(&format!(
                        " for {}",
                        humantime::format_duration(Duration::from_secs(
                            u64::try_from(s).unwrap_or(0)
                        ))
                    ));
                }
                text.push_str(&format!(": {}", slack_text(&d.summary)));
                if let Some(link) = &body.link {
                    text.push_str(&format!(" <{}|decision page>", slack_text(link)));
                }
                serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
            }
        }
    }
}

/// Sends queued notifications one at a time, each with bounded retries.
async fn deliver(mut rx: tokio::sync::mpsc::Receiver<Job>, counts: Counts) {
    let client = match reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled: the HTTP client cannot be built");
            return;
        }
    };
    while let Some(job) = rx.recv().await {
        let sent = send(&client, &job).await;
        count(&counts, if sent { "sent" } else { "failed" });
    }
}

async fn send(client: &reqwest::Client, job: &Job) -> bool {
    let host = job.hook.url.host_str().unwrap_or_default().to_string();
    let mut pause = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .post(job.hook.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("tollgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(job.body.clone());
        if let (Format::Json, Some(secret)) = (job.hook.format, &job.hook.secret) {
            let now = crate::evaluate::clock_now();
            request = request
                .header("X-Tollgate-Timestamp", now.to_string())
                .header("X-Tollgate-Signature", signature(secret, now, &job.body));
        }
        let outcome = request.send().await;
        let retry = match &outcome {
            Ok(r) if r.status().is_success() => {
                tracing::info!(webhook = %host, notification = %job.what, attempt, "notification sent");
                return true;
            }
            Ok(r) => {
                let status = r.status();
                tracing::warn!(webhook = %host, notification = %job.what, attempt, status = status.as_u16(), "notification refused");
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            Err(e) => {
                tracing::warn!(webhook = %host, notification = %job.what, attempt, error = %crate::base::text::first_line(&e.to_string()), "notification not delivered");
                true
            }
        };
        if !retry || attempt == ATTEMPTS {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
    }
    tracing::error!(webhook = %host, notification = %job.what, "notification given up after {ATTEMPTS} tries at most");
    false
}
