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

/// Notifications waiting to be sent to one webhook; more are dropped. Each
/// webhook has its own queue and sender, so a dead one delays only itself.
pub const QUEUE: usize = 256;
/// Webhooks a server may have.
pub const MAX_WEBHOOKS: usize = 64;
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
#[derive(Clone)]
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

/// The URL may hold a secret (a Slack webhook's does) and so may `secret`:
/// neither is shown.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("format", &self.format)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Rollback,
    HoldLongerThan,
    FinalPromote,
}

impl Event {
    /// The name the config and the JSON body use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollback => "rollback",
            Self::HoldLongerThan => "hold_longer_than",
            Self::FinalPromote => "final_promote",
        }
    }
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
    body: Vec<u8>,
    what: String,
}

/// A webhook and the queue its sender reads.
struct Hook {
    webhook: Arc<Webhook>,
    queue: tokio::sync::mpsc::Sender<Job>,
}

/// Decides which decisions notify, and queues them.
pub struct Notifier {
    hooks: Vec<Hook>,
    public_url: Option<reqwest::Url>,
    /// When each held release (policy, service, version) was first held,
    /// and which webhooks (by bit) were told of its long hold.
    held: Mutex<HashMap<Release, (i64, u64)>>,
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
        let hooks = match &runtime {
            Ok(runtime) => hooks
                .into_iter()
                .take(MAX_WEBHOOKS)
                .map(|w| {
                    let webhook = Arc::new(w);
                    let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
                    runtime.spawn(deliver(Arc::clone(&webhook), rx, counts.clone()));
                    Hook { webhook, queue }
                })
                .collect(),
            Err(_) => {
                if !hooks.is_empty() {
                    tracing::error!("notifications disabled: no async runtime to send them from");
                }
                Vec::new()
            }
        };
        Self {
            hooks,
            public_url,
            held: Mutex::new(HashMap::new()),
            counts,
        }
    }

    /// Queues what `d` should notify; `final_stage` says whether its stage
    /// is the policy's last.
    pub fn decided(&self, d: &Decision, final_stage: bool) {
        if self.hooks.is_empty() || d.what_if {
            return;
        }
        let now = d.decided_at.unwrap_or(d.taken_at);
        let held = self.held(d, now);
        for (i, hook) in self.hooks.iter().enumerate() {
            let w = &hook.webhook;
            if !w.policies.is_empty() && !w.policies.contains(&d.policy) {
                continue;
            }
            let event = match d.decision {
                Outcome::Rollback if w.on_rollback => Event::Rollback,
                Outcome::Promote if final_stage && w.on_final_promote => Event::FinalPromote,
                Outcome::Hold => match (w.on_hold_longer_than, held) {
                    (Some(limit), Some(seconds))
                        if seconds >= i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)
                            && self.first_told(d, i) =>
                    {
                        Event::HoldLongerThan
                    }
                    _ => continue,
                },
                _ => continue,
            };
            let body = self.body(w, d, event, held);
            let what = format!(
                "{} of {} {} ({})",
                event.as_str(),
                d.service,
                d.version,
                d.decision_id.as_deref().unwrap_or("-")
            );
            if let Err(e) = hook.queue.try_send(Job { body, what }) {
                count(&self.counts, "dropped");
                let (job, why) = match e {
                    tokio::sync::mpsc::error::TrySendError::Full(j) => {
                        (j, format!("{QUEUE} are waiting for this webhook"))
                    }
                    tokio::sync::mpsc::error::TrySendError::Closed(j) => {
                        (j, "this webhook's sender has stopped".to_string())
                    }
                };
                tracing::error!(
                    webhook = %w.url.host_str().unwrap_or_default(),
                    notification = %job.what,
                    "notification dropped: {why}"
                );
            }
        }
    }

    /// How long `d`'s release has been held (from its first hold); any
    /// other outcome ends the hold.
    fn held(&self, d: &Decision, now: i64) -> Option<i64> {
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
        let first = held.entry(key).or_insert((now, 0)).0;
        Some(now.saturating_sub(first))
    }

    /// Whether webhook `i` is told of this hold for the first time (and
    /// marks it told), so a long hold notifies each webhook once.
    fn first_told(&self, d: &Decision, i: usize) -> bool {
        let key = (d.policy.clone(), d.service.clone(), d.version.clone());
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((_, told)) = held.get_mut(&key) else {
            return false;
        };
        let bit = 1u64 << i;
        let first = *told & bit == 0;
        *told |= bit;
        first
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

/// The error's text without its URL, which may be a secret.
fn without_url(e: &reqwest::Error) -> String {
    let mut shown = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    shown.push_str(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    });
    while let Some(s) = source {
        shown.push_str(": ");
        shown.push_str(&s.to_string());
        source = s.source();
    }
    shown
}

/// Sends queued notifications one at a time, each with bounded retries.
async fn deliver(hook: Arc<Webhook>, mut rx: tokio::sync::mpsc::Receiver<Job>, counts: Counts) {
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
        let sent = send(&client, &hook, &job).await;
        count(&counts, if sent { "sent" } else { "failed" });
    }
}

async fn send(client: &reqwest::Client, hook: &Webhook, job: &Job) -> bool {
    let host = hook.url.host_str().unwrap_or_default().to_string();
    let mut pause = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .post(hook.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("tollgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(job.body.clone());
        if let (Format::Json, Some(secret)) = (hook.format, &hook.secret) {
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
                tracing::warn!(webhook = %host, notification = %job.what, attempt, error = %crate::base::text::first_line(&without_url(e)), "notification not delivered");
                true
            }
        };
        if !retry {
            tracing::error!(webhook = %host, notification = %job.what, attempt, "notification given up: the webhook refused it (not retried)");
            return false;
        }
        if attempt == ATTEMPTS {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
    }
    tracing::error!(webhook = %host, notification = %job.what, "notification given up after {ATTEMPTS} tries");
    false
}
