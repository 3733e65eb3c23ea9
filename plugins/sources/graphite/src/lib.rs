//! The `graphite` source: Graphite targets over graphite-web's
//! `GET /render?target=…&from=…&until=…&format=json`.
//!
//! ```yaml
//! sources:
//!   graphite:
//!     url: http://graphite:8080
//! ```
//!
//! The query is one render target: a path (`demo.${service}.${track}.error_rate`),
//! a tag query (`seriesByTag('name=error_rate','service=${service}')`) or
//! any function of them (`sumSeries(…)`, `divideSeries(…)`,
//! `summarize(…, '1min', 'avg')`). `from` and `until` are the window's
//! unix seconds; graphite-web answers the points after `from` up to and
//! including `until`, the window `(start, end]`. Graphite has no query
//! step: points come at the storage resolution of the data (or of the
//! function, for `summarize`), so the policy's `step` is not sent.
//!
//! Each answered series (`[{"target", "tags", "datapoints": [[value or
//! null, unix seconds], …]}]`) becomes a series labelled `target` plus its
//! tags (graphite-web 1.1 gives every series a `name` tag); `null` points
//! are skipped. graphite-web refuses a bad target with HTTP 400 and a
//! one-line text (`Invalid parameters (Received request for unknown
//! function: fooBar); …`), and fails a function given bad arguments with
//! HTTP 500 and an HTML page whose traceback ends with the cause; the
//! plugin quotes either.

use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json::Value,
};

/// The plugin.
pub struct Graphite;

/// Checks the settings: there are none, so any key is refused.
fn check_settings(config: &Config) -> Result<(), String> {
    Settings::new(config).finish()
}

/// The render request for `query`.
pub fn request(query: &SourceQuery) -> Request {
    let from = query.start.to_string();
    let until = query.end.to_string();
    source::get(
        "/render",
        &[
            ("target", query.text.as_str()),
            ("from", from.as_str()),
            ("until", until.as_str()),
            ("format", "json"),
        ],
    )
}

/// The series of one render answer, or why there are none.
pub fn parse(answer: &Response) -> Result<Vec<Series>, String> {
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "graphite-web refused the query (HTTP {}): {}",
            answer.status,
            message(&answer.body)
        ));
    }
    let json = source::json(answer)?;
    let list = json.as_array().ok_or_else(|| {
        format!(
            "the answer is not a list of series: is the URL graphite-web's? {}",
            source::quote(&answer.body)
        )
    })?;
    list.iter()
        .enumerate()
        .map(|(i, s)| read_series(i, s))
        .collect()
}

/// One answered series: `{"target", "tags", "datapoints"}`.
fn read_series(i: usize, series: &Value) -> Result<Series, String> {
    let target = series["target"]
        .as_str()
        .ok_or_else(|| format!("malformed answer: series {i} has no `target`"))?;
    let mut labels = vec![("target".to_string(), target.to_string())];
    for (k, v) in series["tags"].as_object().into_iter().flatten() {
        if k != "target" {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            labels.push((k.clone(), text));
        }
    }
    let points = match series.get("datapoints") {
        None => &[][..],
        Some(p) => p
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| format!("malformed answer: `datapoints` of `{target}` is not a list"))?,
    };
    let points = points
        .iter()
        .map(|p| {
            let t = source::timestamp(&p[1], false).ok_or_else(|| {
                format!("malformed answer: a point of `{target}` has no timestamp: {p}")
            })?;
            Ok((t, source::number(&p[0])))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // `number` is `None` for `null`: those points are skipped.
    Ok(source::series(
        labels,
        points.into_iter().filter_map(|(t, v)| Some((t, v?))),
    ))
}

/// What a failed answer says, on one line: the last line of the
/// traceback an HTML error page carries, else the text without its tags.
fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some(pre) = text.split("<pre>").nth(1) {
        let pre = pre.split("</pre>").next().unwrap_or(pre);
        if let Some(last) = pre.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            return source::quote(unescape(last).as_bytes());
        }
    }
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    source::quote(unescape(&words.join(" ")).as_bytes())
}

/// The HTML entities Django's escaping writes.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Guest for Graphite {
    fn validate_config(config: Config) -> Result<(), String> {
        check_settings(&config)
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        check_settings(&config)?;
        Ok(Round::one(request(&query)))
    }

    fn next(
        _config: Config,
        _query: SourceQuery,
        _state: Vec<u8>,
        answers: Vec<Response>,
    ) -> Result<Step, String> {
        let answer = answers.first().ok_or("no answer to read")?;
        parse(answer).map(Step::Done)
    }
}

// The component export exists in the Wasm build only: a native build (the
// unit tests) cannot link symbols named like `tollgate:plugin/…#start`.
#[cfg(target_arch = "wasm32")]
tollgate_sdk::source::export_source!(Graphite);

#[cfg(test)]
mod tests;
