//! What one caller may cost the server: per-token rate limits (replays
//! always, evaluations and approvals when configured), per-token
//! evaluations in flight, and the memory held, in all, for request bodies
//! whose token is not known yet.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::{ApiError, ServerConfig};

/// Bytes of request bodies held at once, in all, for requests whose token
/// is not known until the body is read (Flagger's `metadata.token`): 32 MiB,
/// however many connections send them. Only bytes received count: a body
/// takes its share as it arrives, not when it is announced.
pub const UNAUTHENTICATED_BYTES: usize = 32 << 20;

/// The largest body a request without an `Authorization` header may send:
/// 1 MiB (or `body_limit`, when smaller). A Flagger hook is a few KiB, even
/// with an inline snapshot in its metadata; a larger body sends its token
/// in the header.
pub const UNAUTHENTICATED_BODY_LIMIT: usize = 1 << 20;

/// How long, in all, a body without an `Authorization` header waits for
/// room in [`UNAUTHENTICATED_BYTES`] before it is answered 503.
pub const UNAUTHENTICATED_WAIT: Duration = Duration::from_secs(2);

/// Token buckets kept before full ones (which mean the same as none) are
/// dropped.
const MAX_BUCKETS: usize = 10_000;

/// A rate: `N/s`, `N/m` or `N/h` (also `N/min`, `N/hour`…). A caller may
/// spend all `N` at once, then one more each `per / N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// Replays a token may start: 10 a minute.
pub const DEFAULT_REPLAY_RATE: Rate = Rate {
    count: 10,
    per: Duration::from_secs(60),
};

/// A rate that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("`{text}` is not a rate: write N/s, N/m or N/h, e.g. `10/m`")]
    NotARate { text: String },
    #[error("`{text}` allows nothing: a rate is at least 1 per period")]
    Nothing { text: String },
}

impl Rate {
    /// Reads `N/s`, `N/m` or `N/h` (also `N/min`, `N/hour`…), `N` at least 1.
    pub fn parse(s: &str) -> Result<Self, RateError> {
        let bad = || RateError::NotARate {
            text: s.to_string(),
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(RateError::Nothing {
                text: s.to_string(),
            });
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self { count, per })
    }
}

/// [`Rate::parse`], for `str::parse`.
impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, RateError> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

struct Bucket {
    /// Requests left, fractional while refilling.
    level: f64,
    at: Instant,
}

/// One token bucket per token id.
struct RateLimit {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimit {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Seconds one request's worth takes to refill.
    fn interval(&self) -> f64 {
        self.rate.per.as_secs_f64() / f64::from(self.rate.count)
    }

    /// Takes one request from `who`'s bucket, or says how long until one
    /// is there.
    fn take(&self, who: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let capacity = f64::from(self.rate.count);
        let interval = self.interval();
        let refilled = |b: &Bucket| {
            (b.level + now.duration_since(b.at).as_secs_f64() / interval).min(capacity)
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(who) {
            buckets.retain(|_, b| refilled(b) < capacity);
        }
        let bucket = buckets.entry(who.to_string()).or_insert(Bucket {
            level: capacity,
            at: now,
        });
        bucket.level = refilled(bucket);
        bucket.at = now;
        if bucket.level >= 1.0 {
            bucket.level -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.level) * interval))
        }
    }

    /// 429 with `Retry-After` once `who` spent its rate; `what` is the
    /// plural of what is counted, `setting` the setting that sets the rate.
    fn check(&self, who: &str, what: &str, setting: &str) -> Result<(), ApiError> {
        self.take(who).map_err(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError {
                retry_after: Some(secs.max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "this token may start {} {what} (`{setting}`); retry in {}s",
                        self.rate,
                        secs.max(1)
                    ),
                )
            }
        })
    }
}

/// Evaluations in flight per token, each entry dropped when its count
/// falls to zero: the map holds only tokens with an evaluation running.
struct InFlight {
    cap: usize,
    counts: Mutex<HashMap<String, usize>>,
}

/// One evaluation in flight for a token; the count falls when it is
/// dropped, on every path out of the evaluation.
pub(super) struct TokenSlot {
    in_flight: Arc<InFlight>,
    who: String,
}

impl Drop for TokenSlot {
    fn drop(&mut self) {
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.who);
            }
        }
    }
}

/// The limits of one server.
pub(super) struct Limits {
    replay: Option<RateLimit>,
    evaluate: Option<RateLimit>,
    approve: Option<RateLimit>,
    in_flight: Arc<InFlight>,
    unauthenticated: Arc<Semaphore>,
    body_limit: usize,
}

impl Limits {
    pub(super) fn new(config: &ServerConfig) -> Self {
        Self {
            replay: config.replay_rate.map(RateLimit::new),
            evaluate: config.evaluate_rate.map(RateLimit::new),
            approve: config.approve_rate.map(RateLimit::new),
            in_flight: Arc::new(InFlight {
                cap: config.per_token_concurrency(),
                counts: Mutex::default(),
            }),
            unauthenticated: Arc::new(Semaphore::new(UNAUTHENTICATED_BYTES)),
            body_limit: config.body_limit,
        }
    }

    /// 429 once the token `who` spent its replay rate.
    pub(super) fn replay(&self, who: &str) -> Result<(), ApiError> {
        self.replay
            .as_ref()
            .map_or(Ok(()), |r| r.check(who, "replays", "replay_rate"))
    }

    /// 429 once the token `who` spent its evaluate rate, when there is one.
    pub(super) fn evaluate(&self, who: &str) -> Result<(), ApiError> {
        self.evaluate
            .as_ref()
            .map_or(Ok(()), |r| r.check(who, "evaluations", "evaluate_rate"))
    }

    /// 429 once the token `who` spent its approve rate, when there is one.
    pub(super) fn approve(&self, who: &str) -> Result<(), ApiError> {
        self.approve
            .as_ref()
            .map_or(Ok(()), |r| r.check(who, "approvals", "approve_rate"))
    }

    /// One of the evaluations the token `who` may have in flight
    /// (`max_concurrency_per_token`), taken before a server-wide slot so
    /// that one token cannot hold them all; 503 with `Retry-After` when it
    /// has its share running.
    pub(super) fn in_flight(&self, who: &str) -> Result<TokenSlot, ApiError> {
        let cap = self.in_flight.cap;
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = counts.entry(who.to_string()).or_insert(0);
        if *n >= cap {
            return Err(ApiError::busy(format!(
                "this token has {cap} evaluations in flight, its share of the server (`max_concurrency_per_token`); retry shortly"
            )));
        }
        *n += 1;
        Ok(TokenSlot {
            in_flight: Arc::clone(&self.in_flight),
            who: who.to_string(),
        })
    }

    /// Meters the body of `req`, which has no `Authorization` header: 413
    /// at once when it announces more than [`UNAUTHENTICATED_BODY_LIMIT`];
    /// otherwise each chunk, as it arrives, takes its bytes from the budget
    /// shared by every such request, waiting at most
    /// [`UNAUTHENTICATED_WAIT`] in all for room (then the read fails with
    /// [`BudgetFull`], which the body extractor answers 503 with
    /// `Retry-After`). The
    /// bytes stay taken until the returned [`HeldBytes`] and the body are
    /// both dropped: hold it until the response is made.
    pub(super) fn unauthenticated(&self, req: Request) -> Result<(HeldBytes, Request), ApiError> {
        let limit = self.body_limit.min(UNAUTHENTICATED_BODY_LIMIT);
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "a request without an `Authorization` header may send at most {}; send the token in the header",
                    crate::engine::human_bytes(limit)
                ),
            ));
        }
        let held = HeldBytes::default();
        let budget = Arc::clone(&self.unauthenticated);
        let req = req.map(|body| {
            Body::new(Metered {
                inner: http_body_util::Limited::new(body, limit),
                budget,
                held: held.clone(),
                deadline: None,
                waiting: None,
            })
        });
        Ok((held, req))
    }
}

/// The bytes one request's body took from the unauthenticated budget so
/// far, given back when the last clone is dropped: after the response, or
/// when the request ends any other way (an error, a timeout, a client that
/// went away).
#[derive(Clone, Default)]
pub(super) struct HeldBytes(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl HeldBytes {
    fn add(&self, permit: OwnedSemaphorePermit) {
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
    }
}

/// Why a body without an `Authorization` header stopped being read: the
/// shared budget had no room for its next chunk within
/// [`UNAUTHENTICATED_WAIT`].
#[derive(Debug, thiserror::Error)]
#[error(
    "too many request bodies without an `Authorization` header are being read; retry shortly, or send the token in the header"
)]
pub(super) struct BudgetFull;

/// A chunk waiting for room in the budget, with the wait.
type Waiting = (
    Bytes,
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, BudgetFull>> + Send>>,
);

/// A body that takes each chunk's bytes from a shared budget as the chunk
/// arrives, so a caller holds only what it actually sent.
struct Metered {
    inner: http_body_util::Limited<Body>,
    budget: Arc<Semaphore>,
    held: HeldBytes,
    /// When waiting for room ends, set at the first wait.
    deadline: Option<tokio::time::Instant>,
    waiting: Option<Waiting>,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some((data, mut wait)) = this.waiting.take() {
                return match wait.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.waiting = Some((data, wait));
                        Poll::Pending
                    }
                    Poll::Ready(Ok(permit)) => {
                        this.held.add(permit);
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Err(full)) => Poll::Ready(Some(Err(full.into()))),
                };
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                other => return Poll::Ready(other),
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
            };
            // A chunk is at most the body limit, which fits in a u32.
            let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
            if n == 0 {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            match Arc::clone(&this.budget).try_acquire_many_owned(n) {
                Ok(permit) => {
                    this.held.add(permit);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Err(TryAcquireError::Closed) => return Poll::Ready(Some(Err(BudgetFull.into()))),
                Err(TryAcquireError::NoPermits) => {
                    let deadline = *this
                        .deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + UNAUTHENTICATED_WAIT);
                    let acquire = Arc::clone(&this.budget).acquire_many_owned(n);
                    let wait = async move {
                        match tokio::time::timeout_at(deadline, acquire).await {
                            Ok(Ok(permit)) => Ok(permit),
                            _ => Err(BudgetFull),
                        }
                    };
                    this.waiting = Some((data, Box::pin(wait)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "10/m".parse().unwrap();
        assert_eq!(r, DEFAULT_REPLAY_RATE);
        assert_eq!(r.to_string(), "10/m");
        assert_eq!("5/s".parse::<Rate>().unwrap().per, Duration::from_secs(1));
        assert_eq!(
            "100/hour".parse::<Rate>().unwrap().per,
            Duration::from_secs(3600)
        );
        assert!("0/m".parse::<Rate>().is_err());
        assert!("10".parse::<Rate>().is_err());
        assert!("10/d".parse::<Rate>().is_err());
        assert_eq!(
            Rate::parse("0/m").unwrap_err().to_string(),
            "`0/m` allows nothing: a rate is at least 1 per period"
        );
        assert_eq!(
            Rate::parse("10/d").unwrap_err().to_string(),
            "`10/d` is not a rate: write N/s, N/m or N/h, e.g. `10/m`"
        );
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let limit = RateLimit::new(Rate {
            count: 3,
            per: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert!(limit.take("tok_a").is_ok());
        }
        let wait = limit.take("tok_a").unwrap_err();
        assert!(wait <= Duration::from_secs(20) && wait > Duration::from_secs(19));
        // Another token has its own bucket.
        assert!(limit.take("tok_b").is_ok());
        let e = limit.check("tok_a", "replays", "replay_rate").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(20));
    }
}
