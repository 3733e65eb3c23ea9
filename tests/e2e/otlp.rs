//! Tracing turned on the README's way: `serve` with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` starts, answers, and exports its spans over
//! OTLP/HTTP (protobuf) to a receiver on loopback, which decodes them with
//! the OpenTelemetry protocol's own message definitions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::json;

use crate::support::{Server, http, repo, write};

const TOKEN: &str = "otlp-token-0123456789abcdef";

/// Accepts OTLP/HTTP export requests on `listener`, answers each with an
/// empty `ExportTraceServiceResponse`, and sends every decoded request
/// (path, content type, message) down `tx`.
fn receive(listener: TcpListener, tx: mpsc::Sender<(String, String, ExportTraceServiceRequest)>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            continue;
        }
        let _ = reader.get_mut().write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
        let message = ExportTraceServiceRequest::decode(body.as_slice())
            .unwrap_or_else(|e| panic!("the exporter sent no ExportTraceServiceRequest: {e}"));
        if tx.send((path, content_type, message)).is_err() {
            return;
        }
    }
}

#[test]
fn serve_with_an_otlp_endpoint_starts_and_exports_spans_named_for_tollgate() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || receive(listener, tx));

    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    let server = Server::start_with_env(
        &["--tokens-file", tokens.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            // Export soon after the request instead of after 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/ci-passing.json")).unwrap(),
    )
    .unwrap();
    let body = json!({"policy": "ci-quality-gates", "snapshot": snapshot}).to_string();
    let answer = http(
        &server.addr,
        "POST",
        "/v1/evaluate",
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    let mut names = Vec::new();
    let mut services = Vec::new();
    while !names.iter().any(|n: &String| n.starts_with("gate")) {
        let (path, content_type, message) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "no span reached the receiver; spans seen {names:?}; server log:\n{}",
                    server.stderr.lock().unwrap()
                )
            });
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        for resource in &message.resource_spans {
            for attribute in resource.resource.iter().flat_map(|r| &r.attributes) {
                if attribute.key == "service.name"
                    && let Some(AnyValue::StringValue(name)) =
                        attribute.value.as_ref().and_then(|v| v.value.clone())
                {
                    services.push(name);
                }
            }
            for scope in &resource.scope_spans {
                names.extend(scope.spans.iter().map(|s| s.name.clone()));
            }
        }
    }
    assert!(services.iter().all(|s| s == "tollgate"), "{services:?}");
    assert!(!services.is_empty(), "no service.name in the resource");
    assert!(names.iter().any(|n| n == "evaluate"), "{names:?}");
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "{log}");
}
