//! What a source plugin costs beside the native Prometheus client, on the
//! same answer: a loopback server returns one canned `query_range` matrix
//! (2 series of 61 points, as a 30-minute window at 30 s gives) to both.
//! The difference is the sandbox's share: two plugin calls (plan the
//! request, parse the answer) and the answer copied into the plugin.
//! `plugin calls only` times those two calls without HTTP.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::engine::{Input, Response, Runtime, Session, SourceQuery, Step, source_limits};
use tollgate::snapshot::Snapshot;
use tollgate::sources::exchange::{Endpoint, Sender};
use tollgate::sources::plugin_source::PluginSource;
use tollgate::sources::prometheus::{Prometheus, PrometheusConfig};

const END: i64 = 1_764_237_600;

/// The matrix both clients read.
fn matrix() -> String {
    let series = |track: &str| {
        let values: Vec<String> = (0..61_i32)
            .map(|i| {
                format!(
                    "[{},\"{}\"]",
                    END - 1800 + 30 * i64::from(i),
                    0.001 + f64::from(i) * 1e-5
                )
            })
            .collect();
        format!(
            "{{\"metric\":{{\"service\":\"checkout\",\"track\":\"{track}\"}},\"values\":[{}]}}",
            values.join(",")
        )
    };
    format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{},{}]}}}}",
        series("canary"),
        series("primary")
    )
}

/// Answers every request on a kept-alive connection with `body`.
fn serve(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = Arc::clone(&body);
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut writer = match stream.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut sent = vec![0; length];
                    if reader.read_exact(&mut sent).is_err() {
                        return;
                    }
                    // One write: a head and a body in two would wait on
                    // the client's delayed ACK (40 ms) every time.
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn query() -> SourceQuery {
    SourceQuery {
        metric: "error_rate".into(),
        text: "sum(rate(http_requests_total{service=\"checkout\"}[1m]))".into(),
        start: END - 1800,
        end: END,
        step_seconds: 30,
        variables: vec![("service".into(), "checkout".into())],
    }
}

fn benches(c: &mut Criterion) {
    let url = serve(matrix());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let prom = Prometheus::new(PrometheusConfig::new(
        url.parse().unwrap_or_else(|e| panic!("{e}")),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("native Prometheus query (2 series x 61 points)", |b| {
        b.iter(|| {
            rt.block_on(prom.query_range(
                black_box("sum(rate(x[1m]))"),
                END - 1800,
                END,
                Duration::from_secs(30),
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        })
    });

    let runtime = Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let bytes = tollgate::policy::builtin::plugin("prometheus")
        .unwrap_or_else(|| panic!("no first-party prometheus source"));
    let plugin = runtime
        .load("prometheus", bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    let sender = Sender::new(Endpoint::new(url.parse().unwrap_or_else(|e| panic!("{e}"))))
        .unwrap_or_else(|e| panic!("{e}"));
    let source = PluginSource::new(plugin, Vec::new(), sender).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("prometheus source plugin query (same answer)", |b| {
        b.iter(|| {
            rt.block_on(source.query(black_box(query()), END))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });

    let plugin = runtime
        .load("prometheus", bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = Response {
        status: 200,
        content_type: Some("application/json".into()),
        body: matrix().into_bytes(),
    };
    let limits = source_limits();
    let none = Vec::new();
    c.bench_function("prometheus source plugin calls only (start + next)", |b| {
        b.iter(|| {
            let q = query();
            let mut session = Session::new(Input {
                snapshot: Arc::new(Snapshot::empty()),
                now: END,
            });
            let round = session.source_start(&plugin, &none, &q, &limits).result;
            let mut session = Session::new(Input {
                snapshot: Arc::new(Snapshot::empty()),
                now: END,
            });
            let step = session
                .source_next(
                    &plugin,
                    &none,
                    &q,
                    &[],
                    std::slice::from_ref(&answer),
                    &limits,
                )
                .result;
            match (round, step) {
                (Ok(Ok(_)), Ok(Ok(Step::Done(series)))) => black_box(series),
                other => panic!("{other:?}"),
            }
        })
    });
}

criterion_group!(sources, benches);
criterion_main!(sources);
