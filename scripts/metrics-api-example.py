#!/usr/bin/env python3
"""The small internal metrics API of the source tutorial
(docs/writing-plugins.md, "Sources"): what a team's own telemetry service
might look like, for a source plugin to read.

  GET /api/v1/series?query=Q&start=S&end=E&step=N[&page=2]
  -> {"series": [{"labels": {...}, "points": [[unix, value], ...]}],
      "next_page": "2" or null}

Every query is answered in two pages of one series each, five points a
minute apart ending at `end`: a query naming `checkout` reads 0.002, any
other 0.05. Requests without `Authorization: Bearer <token>` get 401 when
--token is given. Loopback only.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--token", help="the bearer token to require")
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            if url.path != "/api/v1/series":
                return self.answer(404, {"error": f"no such path {url.path}"})
            if args.token and self.headers.get("Authorization") != f"Bearer {args.token}":
                return self.answer(401, {"error": "missing or wrong bearer token"})
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                end = int(q["end"])
            except (KeyError, ValueError):
                return self.answer(400, {"error": "`end` must be unix seconds"})
            value = 0.002 if "checkout" in q.get("query", "") else 0.05
            page = q.get("page", "1")
            points = [[end - 60 * i, value] for i in range(5)]
            self.answer(200, {
                "series": [{"labels": {"page": page}, "points": points}],
                "next_page": "2" if page == "1" else None,
            })

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
