//! Calls into a source plugin, and the bounds on what it returns: the
//! requests it asks the host to send and the series it reads from the
//! answers. The engine sends nothing itself; the sources layer does.

use std::time::Duration;

use super::bindings::source::exports::tollgate::plugin::source_api as wit;
use super::call::{Call, Plugin, PluginConfig, wrong_world};
use super::error::CallError;
use super::inspect::World;
use super::limits::{Limits, MAX_MEMORY, MAX_REASON_BYTES};
use super::session::{Bound, Session};
use crate::base::text::escape_control;

pub use wit::{
    Method, Request, Response, Round, Sample, Series as SourceSeries, SourceQuery, Step,
};

impl Method {
    /// The method as HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Requests one round may ask for.
pub const MAX_ROUND_REQUESTS: usize = 8;
/// Longest request path (with its query string) a source may ask for.
pub const MAX_PATH_BYTES: usize = 16 << 10;
/// Largest request body a source may ask the host to send.
pub const MAX_REQUEST_BODY: usize = 1 << 20;
/// Headers one request may carry, and the bytes of each name plus value.
pub const MAX_REQUEST_HEADERS: usize = 32;
pub const MAX_HEADER_BYTES: usize = 8 << 10;
/// Series one query may return, and points over all of them: the bounds
/// native Prometheus queries have.
pub const MAX_SOURCE_SERIES: usize = 1_000;
pub const MAX_SOURCE_POINTS: usize = 100_000;
/// State one round may hand to the next: a pager carries the series of
/// the pages before (a trigger's state is smaller; this is one query's).
pub const MAX_ROUND_STATE: usize = 8 << 20;
/// Labels one series may carry, and the bytes of each name plus value.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_BYTES: usize = 1024;

/// What a source call may use: parsing megabytes of JSON needs more than a
/// gate's 100 ms and 16 MiB, and the answer itself is copied into the
/// plugin's memory.
pub fn source_limits() -> Limits {
    Limits {
        deadline: Duration::from_secs(2),
        memory: MAX_MEMORY,
        ..Limits::default()
    }
}

impl Session {
    /// The first round of `query`.
    pub fn source_start(
        &mut self,
        plugin: &Plugin,
        config: &PluginConfig,
        query: &SourceQuery,
        limits: &Limits,
    ) -> Call<Result<Round, String>> {
        self.call(plugin, limits, World::Source, |store, bound| {
            let Bound::Source(source) = bound else {
                return Err(wrong_world(World::Source));
            };
            source
                .tollgate_plugin_source_api()
                .call_start(&mut *store, config, query)
        })
        .map(|r| {
            r.and_then(|answer| match answer {
                Ok(round) => check_round(&round).map(|()| Ok(round)),
                Err(message) => check_message(message).map(Err),
            })
        })
    }

    /// The step after a round, given its answers in request order and the
    /// state the round carried.
    pub fn source_next(
        &mut self,
        plugin: &Plugin,
        config: &PluginConfig,
        query: &SourceQuery,
        state: &[u8],
        responses: &[Response],
        limits: &Limits,
    ) -> Call<Result<Step, String>> {
        self.call(plugin, limits, World::Source, |store, bound| {
            let Bound::Source(source) = bound else {
                return Err(wrong_world(World::Source));
            };
            source.tollgate_plugin_source_api().call_next(
                &mut *store,
                config,
                query,
                state,
                responses,
            )
        })
        .map(|r| {
            r.and_then(|answer| match answer {
                Ok(Step::Fetch(round)) => check_round(&round).map(|()| Ok(Step::Fetch(round))),
                Ok(Step::Done(series)) => check_series(&series).map(|()| Ok(Step::Done(series))),
                Err(message) => check_message(message).map(Err),
            })
        })
    }
}

fn output(message: String) -> CallError {
    CallError::Output(message)
}

fn check_message(message: String) -> Result<String, CallError> {
    if message.len() > MAX_REASON_BYTES {
        return Err(output(format!(
            "error of {} bytes exceeds the {MAX_REASON_BYTES}-byte limit",
            message.len()
        )));
    }
    Ok(message)
}

/// A round's requests are few, small and well formed; where they go and
/// which headers they may carry is the sender's check, which knows the
/// operator's configuration.
fn check_round(round: &Round) -> Result<(), CallError> {
    if round.requests.is_empty() {
        return Err(output("a round with no requests".into()));
    }
    if round.requests.len() > MAX_ROUND_REQUESTS {
        return Err(output(format!(
            "{} requests in one round exceed the limit of {MAX_ROUND_REQUESTS}",
            round.requests.len()
        )));
    }
    if round.state.len() > MAX_ROUND_STATE {
        return Err(output(format!(
            "state of {} bytes exceeds the {MAX_ROUND_STATE}-byte limit",
            round.state.len()
        )));
    }
    for r in &round.requests {
        if r.path.len() > MAX_PATH_BYTES {
            return Err(output(format!(
                "a request path of {} bytes exceeds the {MAX_PATH_BYTES}-byte limit",
                r.path.len()
            )));
        }
        if r.body.len() > MAX_REQUEST_BODY {
            return Err(output(format!(
                "a request body of {} bytes exceeds the {MAX_REQUEST_BODY}-byte limit",
                r.body.len()
            )));
        }
        if r.headers.len() > MAX_REQUEST_HEADERS {
            return Err(output(format!(
                "{} headers exceed the limit of {MAX_REQUEST_HEADERS} per request",
                r.headers.len()
            )));
        }
        if let Some((name, _)) = r
            .headers
            .iter()
            .find(|(n, v)| n.len() + v.len() > MAX_HEADER_BYTES)
        {
            return Err(output(format!(
                "header `{}` exceeds the {MAX_HEADER_BYTES}-byte limit",
                escape_control(&name.chars().take(64).collect::<String>())
            )));
        }
    }
    Ok(())
}

/// The answer fits the bounds a native query has, every value is a finite
/// number, and labels are bounded.
fn check_series(series: &[SourceSeries]) -> Result<(), CallError> {
    if series.len() > MAX_SOURCE_SERIES {
        return Err(output(format!(
            "{} series exceed the limit of {MAX_SOURCE_SERIES} per query; narrow the query",
            series.len()
        )));
    }
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    if points > MAX_SOURCE_POINTS {
        return Err(output(format!(
            "{points} points exceed the limit of {MAX_SOURCE_POINTS} per query; raise `step` or shorten `window`"
        )));
    }
    for s in series {
        if s.labels.len() > MAX_LABELS {
            return Err(output(format!(
                "a series with {} labels exceeds the limit of {MAX_LABELS}",
                s.labels.len()
            )));
        }
        if let Some((name, _)) = s.labels.iter().find(|(k, v)| {
            k.is_empty()
                || k.len() + v.len() > MAX_LABEL_BYTES
                || k.chars().chain(v.chars()).any(char::is_control)
        }) {
            return Err(output(format!(
                "label `{}` is empty, holds a control character or exceeds the {MAX_LABEL_BYTES}-byte limit",
                escape_control(&name.chars().take(64).collect::<String>())
            )));
        }
        if s.points.iter().any(|p| !p.value.is_finite()) {
            return Err(output("a point's value is not a finite number".into()));
        }
    }
    Ok(())
}
