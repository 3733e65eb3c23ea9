//! `GET /v1/events`: new decisions as server-sent events, so the web view
//! (or any read token's holder) sees them without polling.
//!
//! Listeners are bounded ([`MAX_LISTENERS`], then 503 with `Retry-After`),
//! each stream ends after [`MAX_STREAM`] (clients reconnect) and at
//! shutdown, and a listener that falls behind is told how many decisions it
//! missed rather than holding memory for them. A decision is serialised for
//! the stream only while someone listens, so evaluations without listeners
//! pay nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, AppState};
use crate::evaluate::decision::Decision;

/// Event streams open at once, server-wide.
pub const MAX_LISTENERS: usize = 64;

/// Event streams one token may hold open, so one cannot take them all.
pub const MAX_LISTENERS_PER_TOKEN: usize = 4;

/// Decisions buffered for a slow listener before it is told it lagged.
pub(super) const BUFFER: usize = 256;

/// How long one stream stays open; the client reconnects after.
pub const MAX_STREAM: Duration = Duration::from_secs(30 * 60);

/// What a listener is told of a decision: enough to list it and link to it.
pub(super) fn publish(state: &AppState, d: &Decision) {
    let events = &state.inner.events;
    if events.receiver_count() == 0 {
        return;
    }
    let summary = serde_json::json!({
        "decision_id": d.decision_id,
        "policy": d.policy,
        "stage": d.stage,
        "service": d.service,
        "version": d.version,
        "decision": d.decision.as_str(),
        "summary": d.summary,
        "score": d.score,
        "taken_at": d.taken_at,
        "decided_at": d.decided_at,
    });
    let _ = events.send(Arc::from(summary.to_string()));
}

/// One token's share of the streams, given back when its stream ends.
pub(super) struct TokenStream {
    state: AppState,
    token: String,
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        let mut open = self
            .state
            .inner
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.token);
            }
        }
    }
}

fn token_share(state: &AppState, token: &str) -> Result<TokenStream, ApiError> {
    let mut open = state
        .inner
        .listening
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let n = open.entry(token.to_string()).or_default();
    if *n >= MAX_LISTENERS_PER_TOKEN {
        return Err(ApiError::busy(format!(
            "this token has {MAX_LISTENERS_PER_TOKEN} event streams open, its share; close one or retry shortly"
        )));
    }
    *n += 1;
    Ok(TokenStream {
        state: state.clone(),
        token: token.to_string(),
    })
}

/// `GET /v1/events`.
pub(super) async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<super::auth::Caller>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let share = match &caller {
        super::auth::Caller::Token(g) => Some(token_share(&state, &g.id)?),
        _ => None,
    };
    let permit = Arc::clone(&state.inner.listeners)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::busy(format!(
                "{MAX_LISTENERS} event streams are open, the most this server keeps; retry shortly"
            ))
        })?;
    let rx = state.inner.events.subscribe();
    let closing = state.inner.closing.subscribe();
    let until = tokio::time::Instant::now() + MAX_STREAM;
    let held = (permit, share);
    let stream = futures_util::stream::unfold(
        (rx, closing, held),
        move |(mut rx, mut closing, held)| async move {
            if *closing.borrow() {
                return None;
            }
            let event = tokio::select! {
                () = tokio::time::sleep_until(until) => return None,
                _ = closing.changed() => return None,
                next = rx.recv() => match next {
                    Ok(data) => Event::default().event("decision").data(data.as_ref()),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok(event), (rx, closing, held)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
