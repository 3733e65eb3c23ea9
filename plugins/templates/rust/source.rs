//! `{{name}}`: a tollgate source. It reads an internal metrics API:
//!
//! `GET /api/v1/series?query=…&start=…&end=…&step=…[&page=…]` answering
//! `{"series": [{"labels": {…}, "points": [[unix, value], …]}], "next_page": "…" or null}`.
//!
//! The plugin never opens a socket: `start` describes the first request,
//! the host sends it to the URL the operator configured (with the
//! credentials the plugin never sees), and `next` reads the answer, asking
//! for the next page until there is none. The pages read so far travel in
//! the round's `state`: an instance keeps nothing between rounds.

use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json,
};

struct Source;

/// The API's path, from `with: { path: … }`; unknown keys are refused.
fn api_path(config: &Config) -> Result<String, String> {
    let s = Settings::new(config);
    let path = s.opt_text("path")?.unwrap_or("/api/v1/series").to_string();
    s.finish()?;
    if !path.starts_with('/') {
        return Err(format!("`path` must start with `/`, not `{path}`"));
    }
    Ok(path)
}

fn request(path: &str, q: &SourceQuery, page: Option<&str>) -> Request {
    let (start, end, step) = (q.start.to_string(), q.end.to_string(), q.step_seconds.to_string());
    let mut params = vec![("query", q.text.as_str()), ("start", &start), ("end", &end), ("step", &step)];
    if let Some(page) = page {
        params.push(("page", page));
    }
    source::get(path, &params)
}

/// One answer's series as (labels, points), and its next page.
fn read_page(answer: &Response) -> Result<(Vec<Series>, Option<String>), String> {
    let json = source::json(answer)?;
    let list = json["series"].as_array().ok_or("the answer has no `series` list")?;
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let labels = s["labels"].as_object().into_iter().flatten();
        let labels = labels.map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()));
        let points = s["points"].as_array().into_iter().flatten().filter_map(|p| {
            Some((source::timestamp(&p[0], false)?, source::number(&p[1])?))
        });
        out.push(source::series(labels, points));
    }
    Ok((out, json["next_page"].as_str().map(str::to_string)))
}

/// The series of the pages before, carried as JSON in the round's state.
fn encode(series: &[Series]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = series
        .iter()
        .map(|s| {
            let points: Vec<(i64, f64)> = s.points.iter().map(|p| (p.timestamp, p.value)).collect();
            serde_json::json!({"labels": s.labels, "points": points})
        })
        .collect();
    serde_json::json!({ "series": list }).to_string().into_bytes()
}

fn decode(state: Vec<u8>) -> Result<Vec<Series>, String> {
    if state.is_empty() {
        return Ok(Vec::new());
    }
    let as_answer = Response { status: 200, content_type: None, body: state };
    let json = source::json(&as_answer)?;
    let list = json["series"].as_array().cloned().unwrap_or_default();
    Ok(list
        .iter()
        .map(|s| {
            let labels = s["labels"].as_array().into_iter().flatten().filter_map(|pair| {
                Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
            });
            let points = s["points"].as_array().into_iter().flatten().filter_map(|p| {
                Some((p[0].as_i64()?, p[1].as_f64()?))
            });
            source::series(labels, points)
        })
        .collect())
}

impl Guest for Source {
    fn validate_config(config: Config) -> Result<(), String> {
        api_path(&config).map(|_| ())
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        Ok(Round::one(request(&api_path(&config)?, &query, None)))
    }

    fn next(config: Config, query: SourceQuery, state: Vec<u8>, answers: Vec<Response>) -> Result<Step, String> {
        let answer = answers.first().ok_or("no answer to read")?;
        let (mut series, next_page) = read_page(answer)?;
        let mut all = decode(state)?;
        all.append(&mut series);
        Ok(match next_page {
            Some(page) => Step::Fetch(Round {
                requests: vec![request(&api_path(&config)?, &query, Some(&page))],
                state: encode(&all),
            }),
            None => Step::Done(all),
        })
    }
}

tollgate_sdk::source::export_source!(Source);

// `cargo test` runs the parsing natively, over answers in memory.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_its_series_and_the_next_page() {
        let body = br#"{"series": [{"labels": {"service": "checkout"}, "points": [[1764237600, 0.5], [1764237630, "NaN"]]}], "next_page": "2"}"#;
        let answer = Response { status: 200, content_type: None, body: body.to_vec() };
        let (series, next) = read_page(&answer).unwrap();
        assert_eq!(series[0].points.len(), 1, "NaN is dropped");
        assert_eq!(next.as_deref(), Some("2"));
        assert_eq!(decode(encode(&series)).unwrap(), series, "state round-trips");
    }
}
