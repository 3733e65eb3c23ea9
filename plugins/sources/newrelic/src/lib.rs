//! The `newrelic` source: NRQL through NerdGraph, New Relic's GraphQL API.
//!
//! One request, as New Relic's NerdGraph documentation shows it:
//! `POST /graphql` with `Content-Type: application/json` and the JSON body
//! `{"query": "query($accountId: Int!, $nrql: Nrql!) { actor { account(id:
//! $accountId) { nrql(query: $nrql, timeout: N) { results } } } }",
//! "variables": {"accountId": …, "nrql": "…"}}`. The user key travels in
//! the `API-Key` header, which the host adds from the operator's
//! `api_keys: { API-Key: FILE }`; the plugin never sees it.
//!
//! The window is the policy's: unless the NRQL names its own time range
//! (`SINCE` or `UNTIL`), the plugin appends `SINCE <start> UNTIL <end>`
//! in epoch milliseconds (the unit NRQL reads a bare number in) and, unless
//! the NRQL already has one, `TIMESERIES <step> seconds`.
//!
//! Results are read as NRQL returns them: `TIMESERIES` rows carry
//! `beginTimeSeconds` (the point's time), `FACET` rows carry `facet` (and
//! each faceted attribute by name), and every numeric field is an
//! aggregate (`count`, `average.duration`, an `AS` alias; a `percentile`
//! object gives one aggregate per percentile). A series is labelled with
//! its facet values and `aggregate` (the field's name). GraphQL `errors`
//! fail the query, quoting the first message.

#![cfg_attr(
    not(any(target_arch = "wasm32", test)),
    allow(
        dead_code,
        reason = "natively only the unit tests call the plugin: the component export is Wasm only"
    )
)]

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json,
};

/// NerdGraph's own default for `nrql(timeout:)`, in seconds.
const DEFAULT_TIMEOUT: u64 = 5;
/// The longest `nrql(timeout:)` this plugin asks for, in seconds.
const MAX_TIMEOUT: u64 = 120;
/// The most `TIMESERIES` buckets NRQL returns for one query.
const MAX_BUCKETS: i64 = 366;

/// A source's settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    /// The account the NRQL runs in.
    account_id: i64,
    /// `nrql(timeout:)`, seconds.
    timeout: u64,
}

impl Options {
    fn read(config: &Config) -> Result<Self, String> {
        let s = Settings::new(config);
        let account_id = s.opt_integer("account_id")?;
        let timeout = s.opt_duration("timeout")?;
        let hint = s.typo_hint();
        s.finish()?;
        let account_id = account_id.ok_or_else(|| {
            format!("`account_id` is required: the New Relic account the NRQL runs in{hint}")
        })?;
        if account_id <= 0 || account_id > i64::from(i32::MAX) {
            return Err(format!(
                "`account_id` must be a positive account number (NerdGraph's `Int`), not {account_id}"
            ));
        }
        let timeout = timeout.map_or(DEFAULT_TIMEOUT, |d| d.as_secs());
        if !(1..=MAX_TIMEOUT).contains(&timeout) {
            return Err(format!(
                "`timeout` must be 1s to {MAX_TIMEOUT}s (NerdGraph's NRQL timeout), not {timeout}s"
            ));
        }
        Ok(Self {
            account_id,
            timeout,
        })
    }
}

/// The GraphQL document: the NRQL and the account as variables, as New
/// Relic's documentation and its Go client write it.
fn graphql(timeout: u64) -> String {
    format!(
        "query($accountId: Int!, $nrql: Nrql!) {{ actor {{ account(id: $accountId) {{ nrql(query: $nrql, timeout: {timeout}) {{ results }} }} }} }}"
    )
}

/// The words of `nrql` outside quoted strings and comments, uppercased:
/// what decides whether the NRQL names its own time range.
fn keywords(nrql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = nrql.chars().peekable();
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(word.to_ascii_uppercase());
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                flush(&mut word, &mut words);
                // A quote inside is doubled or backslash-escaped; either
                // way the string ends at an unescaped closing quote.
                while let Some(inner) = chars.next() {
                    if inner == '\\' {
                        chars.next();
                    } else if inner == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                flush(&mut word, &mut words);
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                flush(&mut word, &mut words);
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut words);
                chars.next();
                let mut last = ' ';
                for inner in chars.by_ref() {
                    if last == '*' && inner == '/' {
                        break;
                    }
                    last = inner;
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => word.push(c),
            _ => flush(&mut word, &mut words),
        }
    }
    flush(&mut word, &mut words);
    words
}

/// Whether `nrql` has a comment, after which appended clauses could be
/// swallowed by a line comment: then they go on a new line.
fn has_comment(nrql: &str) -> bool {
    nrql.contains("--") || nrql.contains("//") || nrql.contains("/*")
}

/// The NRQL sent: the query's, with the window and the step appended
/// unless it names its own time range.
fn windowed_nrql(q: &SourceQuery) -> Result<String, String> {
    let text = q.text.trim();
    if text.is_empty() {
        return Err(
            "the query is empty: give NRQL such as `SELECT percentage(count(*), WHERE error IS true) FROM Transaction WHERE appName = '${service}'`"
                .into(),
        );
    }
    let words = keywords(text);
    let has = |w: &str| words.iter().any(|k| k == w);
    if has("SINCE") || has("UNTIL") {
        return Ok(text.to_string());
    }
    let sep = if has_comment(text) { "\n" } else { " " };
    let mut out = format!(
        "{text}{sep}SINCE {} UNTIL {}",
        q.start.saturating_mul(1000),
        q.end.saturating_mul(1000)
    );
    if !has("TIMESERIES") {
        let step = i64::try_from(q.step_seconds.max(1)).unwrap_or(i64::MAX);
        let buckets = (q.end - q.start).max(0) / step;
        if buckets > MAX_BUCKETS {
            let span = (q.end - q.start).max(0);
            let least = (span + MAX_BUCKETS - 1) / MAX_BUCKETS;
            return Err(format!(
                "a {}s window in {step}s steps is {buckets} TIMESERIES buckets; NRQL returns at most {MAX_BUCKETS}: use a step of at least {least}s",
                q.end - q.start
            ));
        }
        out.push_str(&format!(" TIMESERIES {step} seconds"));
    }
    Ok(out)
}

fn request(options: Options, q: &SourceQuery) -> Result<Request, String> {
    let body = serde_json::json!({
        "query": graphql(options.timeout),
        "variables": {
            "accountId": options.account_id,
            "nrql": windowed_nrql(q)?,
        },
    });
    Ok(source::post_json("/graphql", &body))
}

/// The first GraphQL error's message, if the answer has errors.
fn graphql_error(json: &Value) -> Option<String> {
    let first = json["errors"].as_array()?.first()?;
    Some(
        first["message"]
            .as_str()
            .map_or_else(|| first.to_string(), str::to_string),
    )
}

/// The NRQL results of an answer, or the query's failure.
fn results(answer: &Response) -> Result<Vec<Value>, String> {
    let parsed = serde_json::from_slice::<Value>(&answer.body);
    if let Ok(json) = &parsed
        && let Some(message) = graphql_error(json)
    {
        return Err(format!(
            "New Relic refused the query{}: {}",
            if (200..300).contains(&answer.status) {
                String::new()
            } else {
                format!(" (HTTP {})", answer.status)
            },
            source::quote(message.as_bytes())
        ));
    }
    let json = source::json(answer)?;
    match &json["data"]["actor"]["account"]["nrql"]["results"] {
        Value::Array(rows) => Ok(rows.clone()),
        Value::Null => Err(format!(
            "New Relic's answer has no `data.actor.account.nrql.results`: {}",
            source::quote(&answer.body)
        )),
        _ => Err("New Relic's `results` is not a list".into()),
    }
}

/// Fields of a result row that are neither facets nor aggregates.
const TIME_FIELDS: [&str; 2] = ["beginTimeSeconds", "endTimeSeconds"];

/// One row's aggregates as `(name, value)`: numbers, and the members of an
/// object of numbers (`percentile.duration: {"95": …}` gives
/// `percentile.duration.95`). Nulls are no data.
fn aggregates(row: &serde_json::Map<String, Value>) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (key, value) in row {
        if TIME_FIELDS.contains(&key.as_str()) || key == "facet" {
            continue;
        }
        match value {
            Value::Number(_) => {
                if let Some(v) = source::number(value) {
                    out.push((key.clone(), v));
                }
            }
            Value::Object(members) => {
                for (sub, v) in members {
                    if let Some(v) = v.is_number().then(|| source::number(v)).flatten() {
                        out.push((format!("{key}.{sub}"), v));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// One row's facet labels: `facet` (a list's values comma-joined) and each
/// faceted attribute the row names (text fields).
fn facet_labels(row: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    match &row.get("facet") {
        Some(Value::String(s)) => labels.push(("facet".to_string(), s.clone())),
        Some(Value::Array(parts)) => labels.push((
            "facet".to_string(),
            parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
        )),
        Some(Value::Number(n)) => labels.push(("facet".to_string(), n.to_string())),
        _ => {}
    }
    for (key, value) in row {
        if key == "facet" || TIME_FIELDS.contains(&key.as_str()) {
            continue;
        }
        if let Value::String(s) = value {
            labels.push((key.clone(), s.clone()));
        }
    }
    labels
}

/// A series' labels, sorted: its key among the results.
type Labels = Vec<(String, String)>;

/// The series of NRQL results: one per facet and aggregate, each point at
/// its bucket's `beginTimeSeconds`, or at the end of the window for a
/// result that is not a time series.
fn read(rows: &[Value], end: i64) -> Vec<Series> {
    let mut by_key: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for row in rows {
        let Some(row) = row.as_object() else { continue };
        let at = row
            .get("beginTimeSeconds")
            .and_then(|t| source::timestamp(t, false))
            .unwrap_or(end);
        let facets = facet_labels(row);
        for (aggregate, value) in aggregates(row) {
            let mut labels = facets.clone();
            labels.push(("aggregate".to_string(), aggregate));
            labels.sort();
            by_key.entry(labels).or_default().push((at, value));
        }
    }
    by_key
        .into_iter()
        .map(|(labels, mut points)| {
            points.sort_by_key(|p| p.0);
            source::series(labels, points)
        })
        .collect()
}

struct NewRelic;

impl Guest for NewRelic {
    fn validate_config(config: Config) -> Result<(), String> {
        Options::read(&config).map(|_| ())
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        Ok(Round::one(request(Options::read(&config)?, &query)?))
    }

    fn next(
        config: Config,
        query: SourceQuery,
        _state: Vec<u8>,
        answers: Vec<Response>,
    ) -> Result<Step, String> {
        Options::read(&config)?;
        let answer = answers.first().ok_or("New Relic sent no answer to read")?;
        Ok(Step::Done(read(&results(answer)?, query.end)))
    }
}

// Natively (unit tests) there is no component to export: the names of
// component exports are not valid native symbols.
#[cfg(target_arch = "wasm32")]
tollgate_sdk::source::export_source!(NewRelic);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::source::{ConfigValue, Method};

    fn query(text: &str) -> SourceQuery {
        SourceQuery {
            metric: "error_rate".into(),
            text: text.into(),
            start: 1_796_558_100,
            end: 1_796_558_400,
            step_seconds: 60,
            variables: vec![],
        }
    }

    fn config() -> Config {
        vec![("account_id".into(), ConfigValue::Integer(1_234_567))]
    }

    fn ok(body: &str) -> Response {
        Response {
            status: 200,
            content_type: Some("application/json".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    const NRQL: &str = "SELECT percentage(count(*), WHERE error IS true) AS 'error_rate' FROM Transaction WHERE appName = 'checkout' FACET appVersion";

    #[test]
    fn settings_need_an_account_and_bound_the_timeout() {
        assert_eq!(
            Options::read(&config()).unwrap(),
            Options {
                account_id: 1_234_567,
                timeout: 5
            }
        );
        assert!(
            Options::read(&vec![])
                .unwrap_err()
                .contains("`account_id` is required")
        );
        let typo = vec![("acount_id".into(), ConfigValue::Integer(1))];
        assert!(
            Options::read(&typo)
                .unwrap_err()
                .contains("did you mean `account_id`"),
            "{:?}",
            Options::read(&typo)
        );
        let text = vec![("account_id".into(), ConfigValue::Text("123".into()))];
        assert!(Options::read(&text).unwrap_err().contains("whole number"));
        let mut long = config();
        long.push(("timeout".into(), ConfigValue::Text("5m".into())));
        assert!(Options::read(&long).unwrap_err().contains("1s to 120s"));
        let mut ok = config();
        ok.push(("timeout".into(), ConfigValue::Integer(30)));
        assert_eq!(Options::read(&ok).unwrap().timeout, 30);
    }

    /// The request New Relic's documentation shows (`curl -X POST
    /// https://api.newrelic.com/graphql -H 'Content-Type: application/json'
    /// -H 'API-Key: …' -d '{ "query": … }'`), with the NRQL and account as
    /// GraphQL variables.
    #[test]
    fn the_request_is_the_documented_nerdgraph_call() {
        let round = NewRelic::start(config(), query(NRQL)).unwrap();
        let r = &round.requests[0];
        assert_eq!((r.method, r.path.as_str()), (Method::Post, "/graphql"));
        assert_eq!(
            r.headers,
            vec![("Content-Type".into(), "application/json".into())]
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "query": "query($accountId: Int!, $nrql: Nrql!) { actor { account(id: $accountId) { nrql(query: $nrql, timeout: 5) { results } } } }",
                "variables": {
                    "accountId": 1_234_567,
                    "nrql": format!("{NRQL} SINCE 1796558100000 UNTIL 1796558400000 TIMESERIES 60 seconds"),
                },
            })
        );
    }

    #[test]
    fn the_window_is_appended_unless_the_nrql_has_its_own() {
        let q = |t: &str| windowed_nrql(&query(t)).unwrap();
        assert_eq!(
            q("SELECT count(*) FROM Transaction SINCE 1 hour ago"),
            "SELECT count(*) FROM Transaction SINCE 1 hour ago"
        );
        assert_eq!(
            q("select count(*) from Transaction until 5 minutes ago"),
            "select count(*) from Transaction until 5 minutes ago"
        );
        assert_eq!(
            q("SELECT count(*) FROM Transaction TIMESERIES 5 minutes"),
            "SELECT count(*) FROM Transaction TIMESERIES 5 minutes SINCE 1796558100000 UNTIL 1796558400000"
        );
        // `since` inside a string or a comment is not a clause.
        assert_eq!(
            q("SELECT count(*) FROM Log WHERE message = 'since boot'"),
            "SELECT count(*) FROM Log WHERE message = 'since boot' SINCE 1796558100000 UNTIL 1796558400000 TIMESERIES 60 seconds"
        );
        assert_eq!(
            q("SELECT count(*) FROM Log -- since when?"),
            "SELECT count(*) FROM Log -- since when?\nSINCE 1796558100000 UNTIL 1796558400000 TIMESERIES 60 seconds"
        );
        assert_eq!(
            keywords("a 'it''s since' b `since` /* since */ c"),
            vec!["A", "B", "C"]
        );
        let mut wide = query("SELECT count(*) FROM Transaction");
        wide.start = wide.end - 86_400;
        assert!(windowed_nrql(&wide).unwrap_err().contains("at least 237s"));
        assert!(windowed_nrql(&query(" ")).is_err());
    }

    #[test]
    fn timeseries_and_facets_become_labelled_series() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/sources/official/responses/newrelic.json"
        ))
        .unwrap();
        let Step::Done(series) =
            NewRelic::next(config(), query(NRQL), Vec::new(), vec![ok(&body)]).unwrap()
        else {
            panic!("one round")
        };
        assert_eq!(series.len(), 2, "{series:?}");
        assert_eq!(
            series[0].labels,
            vec![
                ("aggregate".into(), "error_rate".into()),
                ("appVersion".into(), "2.0.9".into()),
                ("facet".into(), "2.0.9".into()),
            ]
        );
        assert_eq!(series[1].labels[1], ("appVersion".into(), "2.1.0".into()));
        let points: Vec<(i64, f64)> = series[1]
            .points
            .iter()
            .map(|p| (p.timestamp, p.value))
            .collect();
        assert_eq!(points[0], (1_796_558_100, 0.1));
        assert_eq!(points.len(), 5);
    }

    #[test]
    fn single_values_percentiles_and_nulls() {
        let body = r#"{"data":{"actor":{"account":{"nrql":{"results":[{"count":1000,"percentile.duration":{"95":0.5,"99":null},"average.duration":null}]}}}}}"#;
        let Step::Done(series) =
            NewRelic::next(config(), query(NRQL), Vec::new(), vec![ok(body)]).unwrap()
        else {
            panic!("one round")
        };
        let flat: Vec<(String, i64, f64)> = series
            .iter()
            .map(|s| {
                (
                    s.labels[0].1.clone(),
                    s.points[0].timestamp,
                    s.points[0].value,
                )
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                ("count".into(), 1_796_558_400, 1000.0),
                ("percentile.duration.95".into(), 1_796_558_400, 0.5)
            ]
        );
        let empty = r#"{"data":{"actor":{"account":{"nrql":{"results":[]}}}}}"#;
        assert_eq!(
            NewRelic::next(config(), query(NRQL), Vec::new(), vec![ok(empty)]).unwrap(),
            Step::Done(vec![])
        );
    }

    #[test]
    fn graphql_errors_quote_the_first_message() {
        let body = r#"{"data":{"actor":{"account":{"nrql":null}}},"errors":[{"locations":[{"column":35,"line":1}],"message":"NRDB query parse error: unexpected token at 'FORM'","path":["actor","account","nrql"]},{"message":"second"}]}"#;
        assert_eq!(
            NewRelic::next(config(), query(NRQL), Vec::new(), vec![ok(body)]).unwrap_err(),
            "New Relic refused the query: NRDB query parse error: unexpected token at 'FORM'"
        );
        let unauthorized = Response {
            status: 401,
            content_type: Some("application/json".into()),
            body: br#"{"errors":[{"message":"Invalid API key"}]}"#.to_vec(),
        };
        assert_eq!(
            NewRelic::next(config(), query(NRQL), Vec::new(), vec![unauthorized]).unwrap_err(),
            "New Relic refused the query (HTTP 401): Invalid API key"
        );
        let nothing = ok(r#"{"data":{"actor":{"account":null}}}"#);
        assert!(
            NewRelic::next(config(), query(NRQL), Vec::new(), vec![nothing])
                .unwrap_err()
                .contains("no `data.actor.account.nrql.results`")
        );
    }
}
