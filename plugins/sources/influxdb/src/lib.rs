//! The `influxdb` source: InfluxQL over InfluxDB 1.x's `GET /query`.
//!
//! ```yaml
//! sources:
//!   influxdb:
//!     url: http://influxdb:8086
//!     with: { database: telemetry, retention_policy: autogen }   # retention_policy is optional
//!     basic: { user: tollgate, password_file: influx.password }
//! ```
//!
//! A query names its window as Grafana's InfluxQL queries do: `$timeFilter`
//! (required) becomes `time > {start}s AND time <= {end}s`, the window
//! `(start, end]`, and `$interval` (or Grafana's newer `$__interval`)
//! becomes the step, `{step}s`:
//!
//! ```text
//! SELECT mean("error_rate") FROM "requests"
//!   WHERE "service" = '${service}' AND "track" = '${track}' AND $timeFilter
//!   GROUP BY time($interval) fill(none)
//! ```
//!
//! The request asks for unix-second timestamps (`epoch=s`). Every value
//! column of every returned series (each statement's `series[]`) but
//! `time` becomes a series labelled with the InfluxDB series' tags, plus
//! `field` = the column's name when a series has several value columns;
//! `null` values (an empty `GROUP BY time` bucket under `fill(null)`) are
//! skipped. An `error` in the answer, for the whole request (bad syntax,
//! HTTP 400) or one statement (an unknown database, HTTP 200), fails the
//! query quoting it; so does an answer InfluxDB truncated (`partial`, its
//! `max-row-limit`).

use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json::Value,
};

/// The plugin.
pub struct InfluxDb;

/// What the operator's `with:` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The database queried (`db`).
    pub database: String,
    /// The retention policy (`rp`); InfluxDB's default one when absent.
    pub retention_policy: Option<String>,
}

impl Options {
    /// Reads the settings; unknown keys are refused.
    pub fn read(config: &Config) -> Result<Self, String> {
        let s = Settings::new(config);
        let database = s
            .text("database")
            .map_err(|e| format!("{e}{}", s.typo_hint()))?;
        let retention_policy = s.opt_text("retention_policy")?;
        s.finish()?;
        if database.trim().is_empty() {
            return Err("`database` must not be empty".into());
        }
        if retention_policy.is_some_and(|rp| rp.trim().is_empty()) {
            return Err(
                "`retention_policy` must not be empty (leave it out for the default)".into(),
            );
        }
        Ok(Self {
            database: database.to_string(),
            retention_policy: retention_policy.map(str::to_string),
        })
    }
}

/// Grafana's name for the window's time condition, which every query must use.
pub const TIME_FILTER: &str = "$timeFilter";

/// The InfluxQL the server runs: `$timeFilter` and `$interval` replaced.
pub fn influxql(query: &SourceQuery) -> Result<String, String> {
    if !query.text.contains(TIME_FILTER) {
        return Err(format!(
            "the InfluxQL query has no `{TIME_FILTER}`: write `WHERE … AND {TIME_FILTER}`, which becomes the window's `time > start AND time <= end`, so the query reads only the window"
        ));
    }
    let filter = format!("time > {}s AND time <= {}s", query.start, query.end);
    let interval = format!("{}s", query.step_seconds.max(1));
    Ok(query
        .text
        .replace(TIME_FILTER, &filter)
        .replace("$__interval", &interval)
        .replace("$interval", &interval))
}

/// The request for `query`: `GET /query?db=…[&rp=…]&q=…&epoch=s`.
pub fn request(options: &Options, query: &SourceQuery) -> Result<Request, String> {
    let q = influxql(query)?;
    let mut params = vec![("db", options.database.as_str())];
    if let Some(rp) = &options.retention_policy {
        params.push(("rp", rp.as_str()));
    }
    params.push(("q", q.as_str()));
    params.push(("epoch", "s"));
    Ok(source::get("/query", &params))
}

/// The series of one `/query` answer, or the error it carries.
pub fn parse(answer: &Response) -> Result<Vec<Series>, String> {
    // InfluxDB writes its errors as JSON (`{"error": "…"}`, HTTP 400 for a
    // syntax error, 401 for credentials): read them before the status.
    if let Ok(json) = source::serde_json::from_slice::<Value>(&answer.body)
        && let Some(error) = json.get("error")
    {
        return Err(format!(
            "InfluxDB refused the query (HTTP {}): {}",
            answer.status,
            text_of(error)
        ));
    }
    let json = source::json(answer)?;
    let results = json["results"].as_array().ok_or_else(|| {
        format!(
            "the answer has no `results` list: is the URL an InfluxDB 1.x API? {}",
            source::quote(&answer.body)
        )
    })?;
    let mut out = Vec::new();
    for (i, result) in results.iter().enumerate() {
        let statement = result["statement_id"].as_u64().unwrap_or(i as u64);
        if let Some(error) = result.get("error") {
            return Err(format!(
                "InfluxDB refused statement {statement}: {}",
                text_of(error)
            ));
        }
        if result["partial"] == true {
            return Err(truncated(statement));
        }
        let Some(list) = result.get("series") else {
            continue; // no data
        };
        let list = list.as_array().ok_or_else(|| {
            format!("malformed answer: `series` of statement {statement} is not a list")
        })?;
        for series in list {
            if series["partial"] == true {
                return Err(truncated(statement));
            }
            read_series(series, statement, &mut out)?;
        }
    }
    Ok(out)
}

fn truncated(statement: u64) -> String {
    format!(
        "InfluxDB truncated the answer to statement {statement} (`partial`, its `max-row-limit`): narrow the query or raise `step`"
    )
}

/// One InfluxDB series (`name`, `tags`, `columns`, `values`): a series per
/// value column.
fn read_series(series: &Value, statement: u64, out: &mut Vec<Series>) -> Result<(), String> {
    let name = series["name"].as_str().unwrap_or("(unnamed)");
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .ok_or_else(|| format!("malformed answer: series `{name}` has no `columns`"))?
        .iter()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    let time = columns.iter().position(|c| *c == "time").ok_or_else(|| {
        format!(
            "series `{name}` of statement {statement} has no `time` column (columns: {}): select values over time, not a `SHOW` or a bare aggregate",
            columns.join(", ")
        )
    })?;
    let rows = match series.get("values") {
        None => &[][..],
        Some(v) => v.as_array().map(Vec::as_slice).ok_or_else(|| {
            format!("malformed answer: `values` of series `{name}` is not a list")
        })?,
    };
    let tags: Vec<(String, String)> = series["tags"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), text_of(v)))
        .collect();
    let fields: Vec<(usize, &str)> = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != time)
        .map(|(i, c)| (i, *c))
        .collect();
    let times = rows
        .iter()
        .map(|row| {
            source::timestamp(&row[time], false).ok_or_else(|| {
                format!("malformed answer: a row of series `{name}` has no unix time: {row}")
            })
        })
        .collect::<Result<Vec<i64>, String>>()?;
    for (column, field) in &fields {
        let mut labels = tags.clone();
        if fields.len() > 1 {
            labels.push(("field".to_string(), field.to_string()));
        }
        // `number` is `None` for `null`, text and booleans: skipped.
        let points = rows
            .iter()
            .zip(&times)
            .filter_map(|(row, t)| Some((*t, source::number(&row[*column])?)));
        out.push(source::series(labels, points));
    }
    Ok(())
}

/// A JSON value as text: a string as it is, anything else as JSON.
fn text_of(value: &Value) -> String {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string);
    source::quote(text.as_bytes())
}

impl Guest for InfluxDb {
    fn validate_config(config: Config) -> Result<(), String> {
        Options::read(&config).map(|_| ())
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        let options = Options::read(&config)?;
        Ok(Round::one(request(&options, &query)?))
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
tollgate_sdk::source::export_source!(InfluxDb);

#[cfg(test)]
mod tests;
