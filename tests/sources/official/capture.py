#!/usr/bin/env python3
"""What the providers' official clients send, for tollgate's source plugins
to be compared with.

Each subcommand runs an official client (datadog-api-client, boto3 and
botocore, pinned in requirements.txt) for one query against a capture
server on 127.0.0.1: a thread of this script that records the request and
answers with a canned answer from `responses/`, shaped as the provider
documents it. It prints one JSON line:

    {"method", "path", "query": [[name, value], ...] (decoded, sorted),
     "headers": {lowercased name: value}, "dropped_headers": [...],
     "body": text, "parsed": what the client made of the canned answer}

`dropped_headers` names the headers left out as transport or SDK noise
(`NOISE` below): they vary between runs or HTTP libraries and say nothing
about the query. Everything else the client sent is kept, credentials
included (they are the fixed test values given here).

    capture.py datadog-v1 --query Q --from S --to E
    capture.py datadog-scalar --query Q --from-ms S --to-ms E [--aggregator avg]
    capture.py cloudwatch --expression X --period P --start S --end E
               [--next-token T] --amz-date 20261206T120000Z
    capture.py sigv4 --region R --service S --amz-date D [--access-key-id ..]
               [--secret-access-key ..] [--session-token ..] < request.json

`sigv4` reads `{"method", "url", "headers": {name: value}, "body": text}`
and prints `{"authorization": ...}`: the header botocore's `SigV4Auth`
computes for that request at that time, which tollgate's signer must
match byte for byte.

New Relic has no official client that builds a NerdGraph request; the
tollgate test compares its request with the one New Relic's NerdGraph
documentation shows instead.
"""

import argparse
import datetime
import http.server
import json
import os
import sys
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
RESPONSES = os.path.join(HERE, "responses")

#: The fixed AWS credentials of the tests: AWS's own documentation example
#: keys, which sign nothing real.
AWS_ACCESS_KEY_ID = "AKIDEXAMPLE"
AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#: The fixed Datadog keys the client is given (the host adds the operator's
#: from `api_keys`; the plugin never sets them).
DD_API_KEY = "dd-api-key-for-tests"
DD_APPLICATION_KEY = "dd-app-key-for-tests"

#: Headers that are transport or SDK bookkeeping, not the query: the user
#: agent, compression and connection handling, framing, the host (the
#: capture server's own address), and botocore's per-call invocation id and
#: retry counter (`amz-sdk-invocation-id`, `amz-sdk-request`).
NOISE = {
    "user-agent",
    "accept-encoding",
    "connection",
    "content-length",
    "host",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
}


def canned(name):
    """The bytes of a canned answer in `responses/`."""
    with open(os.path.join(RESPONSES, name), "rb") as f:
        return f.read()


class Capture:
    """A one-request HTTP server on 127.0.0.1 in a thread: records the
    request and answers `body` with `content_type`."""

    def __init__(self, body, content_type):
        self.request = None
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                capture.request = {
                    "method": self.command,
                    "target": self.path,
                    "headers": [(k, v) for k, v in self.headers.items()],
                    "body": body,
                }
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(capture_body)))
                self.end_headers()
                self.wfile.write(capture_body)

            do_GET = _record
            do_POST = _record

            def log_message(self, *args):
                pass

        capture_body = body
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def report(self, parsed):
        """The recorded request as the one JSON line this script prints."""
        r = self.request
        if r is None:
            raise SystemExit("the client sent no request")
        path, _, query = r["target"].partition("?")
        params = sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
        headers = {}
        dropped = set()
        for name, value in r["headers"]:
            lower = name.lower()
            if lower in NOISE:
                dropped.add(lower)
                continue
            headers[lower] = value
        return {
            "method": r["method"],
            "path": path,
            "query": [list(p) for p in params],
            "headers": dict(sorted(headers.items())),
            "dropped_headers": sorted(dropped),
            "body": r["body"].decode("utf-8"),
            "parsed": parsed,
        }


def datadog_configuration(url):
    from datadog_api_client import Configuration

    configuration = Configuration(host=url)
    configuration.api_key["apiKeyAuth"] = DD_API_KEY
    configuration.api_key["appKeyAuth"] = DD_APPLICATION_KEY
    # The client would retry nothing here; say so rather than rely on it.
    configuration.enable_retry = False
    return configuration


def datadog_v1(args):
    """`MetricsApi.query_metrics` of the v1 API: GET /api/v1/query."""
    from datadog_api_client import ApiClient
    from datadog_api_client.v1.api.metrics_api import MetricsApi

    capture = Capture(canned("datadog-v1.json"), "application/json")
    try:
        with ApiClient(datadog_configuration(capture.url)) as client:
            answer = MetricsApi(client).query_metrics(
                _from=args.from_, to=args.to, query=args.query
            )
        parsed = [
            {"scope": s.scope, "points": len(s.pointlist)} for s in answer.series
        ]
        return capture.report(parsed)
    finally:
        capture.close()


def datadog_scalar(args):
    """`MetricsApi.query_scalar_data` of the v2 API with one metrics query
    named `a`: POST /api/v2/query/scalar."""
    from datadog_api_client import ApiClient
    from datadog_api_client.v2.api.metrics_api import MetricsApi
    from datadog_api_client.v2.model.metrics_aggregator import MetricsAggregator
    from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
    from datadog_api_client.v2.model.metrics_scalar_query import MetricsScalarQuery
    from datadog_api_client.v2.model.scalar_formula_query_request import (
        ScalarFormulaQueryRequest,
    )
    from datadog_api_client.v2.model.scalar_formula_request import ScalarFormulaRequest
    from datadog_api_client.v2.model.scalar_formula_request_attributes import (
        ScalarFormulaRequestAttributes,
    )
    from datadog_api_client.v2.model.scalar_formula_request_queries import (
        ScalarFormulaRequestQueries,
    )
    from datadog_api_client.v2.model.scalar_formula_request_type import (
        ScalarFormulaRequestType,
    )

    body = ScalarFormulaQueryRequest(
        data=ScalarFormulaRequest(
            attributes=ScalarFormulaRequestAttributes(
                _from=args.from_ms,
                to=args.to_ms,
                queries=ScalarFormulaRequestQueries(
                    [
                        MetricsScalarQuery(
                            aggregator=MetricsAggregator(args.aggregator),
                            data_source=MetricsDataSource.METRICS,
                            query=args.query,
                            name="a",
                        )
                    ]
                ),
            ),
            type=ScalarFormulaRequestType.SCALAR_REQUEST,
        )
    )
    capture = Capture(canned("datadog-scalar.json"), "application/json")
    try:
        with ApiClient(datadog_configuration(capture.url)) as client:
            answer = MetricsApi(client).query_scalar_data(body=body)
        parsed = [
            {"name": c.name, "type": str(c.type), "values": c.values}
            for c in answer.data.attributes.columns
        ]
        return capture.report(parsed)
    finally:
        capture.close()


def amz_datetime(text):
    """`YYYYMMDD'T'HHMMSS'Z'` as the naive UTC datetime botocore's clock
    gives."""
    return datetime.datetime.strptime(text, "%Y%m%dT%H%M%SZ")


def frozen_clock(amz_date):
    """Freezes the clock botocore's SigV4 signer reads.

    In the pinned botocore, `botocore/auth.py` imports
    `get_current_datetime` from `botocore.compat` into its own namespace
    and `SigV4Auth.add_auth` calls it (naive UTC, `remove_tzinfo=True`) for
    `X-Amz-Date` and the credential scope; replacing that name in
    `botocore.auth` fixes the signing time and nothing else.
    """
    import unittest.mock

    fixed = amz_datetime(amz_date)

    def now(remove_tzinfo=True):
        return fixed if remove_tzinfo else fixed.replace(tzinfo=datetime.timezone.utc)

    return unittest.mock.patch("botocore.auth.get_current_datetime", now)


def cloudwatch(args):
    """boto3's `get_metric_data` with a Metrics Insights expression, at a
    frozen signing time."""
    import boto3
    import botocore.config

    first = args.next_token is None
    capture = Capture(
        canned("cloudwatch.json" if first else "cloudwatch-page2.json"),
        "application/x-amz-json-1.0",
    )
    try:
        client = boto3.client(
            "cloudwatch",
            region_name="us-east-1",
            endpoint_url=capture.url,
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
            config=botocore.config.Config(retries={"max_attempts": 1}),
        )
        params = {
            "MetricDataQueries": [
                {"Id": args.id, "Expression": args.expression, "Period": args.period}
            ],
            "StartTime": args.start,
            "EndTime": args.end,
        }
        if not first:
            params["NextToken"] = args.next_token
        with frozen_clock(args.amz_date):
            answer = client.get_metric_data(**params)
        parsed = {
            "results": [
                {
                    "Label": r.get("Label"),
                    "StatusCode": r.get("StatusCode"),
                    "Timestamps": [int(t.timestamp()) for t in r.get("Timestamps", [])],
                    "Values": r.get("Values"),
                }
                for r in answer.get("MetricDataResults", [])
            ],
            "NextToken": answer.get("NextToken"),
            "protocol": client.meta.service_model.resolved_protocol,
        }
        return capture.report(parsed)
    finally:
        capture.close()


def sigv4(args):
    """botocore's `SigV4Auth` over a request given on stdin."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    given = json.load(sys.stdin)
    request = AWSRequest(
        method=given["method"],
        url=given["url"],
        headers=dict(given.get("headers", {})),
        data=given.get("body", "").encode("utf-8"),
    )
    credentials = Credentials(
        args.access_key_id, args.secret_access_key, args.session_token
    )
    with frozen_clock(args.amz_date):
        SigV4Auth(credentials, args.service, args.region).add_auth(request)
    return {
        "authorization": request.headers["Authorization"],
        "x-amz-date": request.headers["X-Amz-Date"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datadog-v1")
    p.add_argument("--query", required=True)
    p.add_argument("--from", dest="from_", type=int, required=True)
    p.add_argument("--to", type=int, required=True)

    p = sub.add_parser("datadog-scalar")
    p.add_argument("--query", required=True)
    p.add_argument("--from-ms", type=int, required=True)
    p.add_argument("--to-ms", type=int, required=True)
    p.add_argument("--aggregator", default="avg")

    p = sub.add_parser("cloudwatch")
    p.add_argument("--expression", required=True)
    p.add_argument("--period", type=int, required=True)
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--end", type=int, required=True)
    p.add_argument("--id", default="q1")
    p.add_argument("--next-token")
    p.add_argument("--amz-date", required=True)

    p = sub.add_parser("sigv4")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--service", default="monitoring")
    p.add_argument("--amz-date", required=True)
    p.add_argument("--access-key-id", default=AWS_ACCESS_KEY_ID)
    p.add_argument("--secret-access-key", default=AWS_SECRET_ACCESS_KEY)
    p.add_argument("--session-token")

    args = parser.parse_args()
    run = {
        "datadog-v1": datadog_v1,
        "datadog-scalar": datadog_scalar,
        "cloudwatch": cloudwatch,
        "sigv4": sigv4,
    }[args.command]
    print(json.dumps(run(args), sort_keys=True))


if __name__ == "__main__":
    main()
