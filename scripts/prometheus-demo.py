#!/usr/bin/env python3
"""Writes demo telemetry as OpenMetrics for `promtool tsdb create-blocks-from
openmetrics`: 40 minutes of 15-second samples ending at --end (default now),
for a canary (track="canary") beside its primary (track="primary").

The data ends at --end and every query of `tollgate eval` looks back from
now, so load and query it at once: it goes stale within minutes (see the
README's walkthrough).

Services:
  checkout        healthy: 0.005% errors, p95 about 210 ms, steady conversion;
                  promotes at every stage of the bundled canary policy, whose
                  tightest gate (full-rollout) wants an error rate under 0.01%
  payments-spike  errors jump to 5% for the last 10 minutes
  search-slow     canary p95 about 2.5 s throughout
  cart-drop       canary conversion 20% below the primary's
  (ghost)         no series at all: a query for it returns nothing
  many_series     1,200 series of one metric, for the size bound
"""

import argparse
import time

STEP = 15
MINUTES = 40
BUCKETS = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
FAST = [0.5, 0.9, 0.97, 0.995, 0.999, 1.0, 1.0]
SLOW = [0.01, 0.02, 0.05, 0.1, 0.3, 0.97, 1.0]
RPS = 100.0
# A healthy service's error share: under every stage's limit of the bundled
# canary policy (0.1%, 0.05%, 0.01%), with room to spare.
HEALTHY_ERRORS = 0.00005


def services(end):
    """(service, track) -> functions of time giving error share, latency
    profile and conversion share."""
    spike_from = end - 10 * 60
    healthy = dict(err=lambda t: HEALTHY_ERRORS, lat=lambda t: FAST, conv=lambda t: 0.3)
    out = {}
    for svc in ["checkout", "payments-spike", "search-slow", "cart-drop"]:
        for track in ["canary", "primary"]:
            out[(svc, track)] = dict(healthy)
    out[("payments-spike", "canary")]["err"] = lambda t: 0.05 if t > spike_from else HEALTHY_ERRORS
    out[("search-slow", "canary")]["lat"] = lambda t: SLOW
    out[("cart-drop", "canary")]["conv"] = lambda t: 0.24
    return out


def p95_ms(cumulative):
    """The 0.95 quantile of a latency profile in ms, interpolated within its
    bucket as PromQL's histogram_quantile does (+Inf answers its lower
    bound's double)."""
    below = lower = 0.0
    for bound, share in zip(BUCKETS, cumulative):
        upper = float(bound) if bound != "+Inf" else lower * 2
        if share >= 0.95:
            width = share - below
            return 1000 * (lower + (upper - lower) * ((0.95 - below) / width if width else 1))
        below, lower = share, float(bound) if bound != "+Inf" else lower
    return 1000 * lower


def write_influx(out, times, svcs):
    """The demo as InfluxDB 1.x line protocol, one point per service, track
    and time, for the `influxdb` source walkthrough."""
    lines = []
    for t in times:
        for (svc, track), f in sorted(svcs.items()):
            lines.append(
                f"requests,service={svc},track={track} "
                f"error_rate={f['err'](t)},p95_ms={p95_ms(f['lat'](t)):.2f},conversion_rate={f['conv'](t)} {t}")
    with open(out, "w") as file:
        file.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--end", type=int, default=int(time.time()))
    parser.add_argument(
        "--format", choices=["openmetrics", "influx"], default="openmetrics",
        help="influx: InfluxDB line protocol of the already-computed error rate, "
        "p95 (ms) and conversion rate, measurement `requests` (seconds precision)")
    args = parser.parse_args()
    end = args.end - args.end % STEP
    times = list(range(end - MINUTES * 60, end + 1, STEP))
    svcs = services(end)
    if args.format == "influx":
        write_influx(args.out, times, svcs)
        return
    fams = {"http_requests": [], "http_request_duration_seconds": [], "checkout_sessions": [], "checkout_conversions": []}
    for (svc, track), f in sorted(svcs.items()):
        base = f'service="{svc}",track="{track}"'
        ok = err = 0.0
        buckets = [0.0] * len(BUCKETS)
        total = sessions = conversions = 0.0
        for i, t in enumerate(times):
            if i > 0:
                n = RPS * STEP
                err += n * f["err"](t)
                ok += n * (1 - f["err"](t))
                for b, share in enumerate(f["lat"](t)):
                    buckets[b] += n * share
                total += n
                sessions += 10 * STEP
                conversions += 10 * STEP * f["conv"](t)
            fams["http_requests"].append((f'http_requests_total{{{base},code="200"}}', ok, t))
            fams["http_requests"].append((f'http_requests_total{{{base},code="500"}}', err, t))
            for b, le in enumerate(BUCKETS):
                fams["http_request_duration_seconds"].append(
                    (f'http_request_duration_seconds_bucket{{{base},le="{le}"}}', buckets[b], t))
            fams["http_request_duration_seconds"].append((f"http_request_duration_seconds_count{{{base}}}", total, t))
            fams["http_request_duration_seconds"].append((f"http_request_duration_seconds_sum{{{base}}}", total * 0.2, t))
            fams["checkout_sessions"].append((f"checkout_sessions_total{{{base}}}", sessions, t))
            fams["checkout_conversions"].append((f"checkout_conversions_total{{{base}}}", conversions, t))
    lines = []
    types = {"http_requests": "counter", "http_request_duration_seconds": "histogram",
             "checkout_sessions": "counter", "checkout_conversions": "counter"}
    for fam, samples in fams.items():
        lines.append(f"# TYPE {fam} {types[fam]}")
        # promtool wants each series' samples together and in time order.
        by_series = {}
        for name, value, t in samples:
            by_series.setdefault(name, []).append((value, t))
        for name, points in by_series.items():
            for value, t in points:
                lines.append(f"{name} {value:.3f} {t}")
    lines.append("# TYPE many_series gauge")
    for i in range(1200):
        for t in times[-4:]:
            lines.append(f'many_series{{i="{i}"}} 1 {t}')
    lines.append("# EOF")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
