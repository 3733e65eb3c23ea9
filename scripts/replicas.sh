#!/usr/bin/env bash
# Throughput and p99 of 1, 2 and 3 `serve` replicas on one PostgreSQL (the
# `ha` overlay's shape, on one machine), loopback only, bounded: for each
# count, a fresh database, then one wrk per replica splitting the
# connections evenly (a round-robin client), all at once.
#   scripts/replicas.sh [duration=15s] [connections=64] [postgres-url]
# Without a URL it starts a throwaway cluster (scripts/postgres-test-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15s}
connections=${2:-64}
base=${3:-}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
[ -n "$base" ] || base=$(scripts/postgres-test-cluster.sh 2>/dev/null)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
token="replicas-token-$(date +%s)-0000"
echo "$token" >"$work/tokens"
python3 -c "
import json
json.dump({'policy': 'ci-quality-gates', 'snapshot': json.load(open('tests/fixtures/ci-passing.json'))}, open('$work/body.json', 'w'))"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local f = io.open("$work/body.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
for n in 1 2 3; do
  db="replicas_$(date +%s)_$n"
  psql "$base" -qc "CREATE DATABASE $db" >/dev/null
  url="${base%/*}/$db"
  pids=()
  ports=()
  for i in $(seq "$n"); do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ./target/release/tollgate serve --addr "127.0.0.1:$port" --tokens-file "$work/tokens" \
      --max-concurrency 256 --store "$url" 2>"$work/server-$n-$i.log" &
    pids+=($!)
    ports+=("$port")
    for _ in $(seq 100); do grep -q "listening on" "$work/server-$n-$i.log" && break; sleep 0.1; done
  done
  per=$((connections / n))
  wrks=()
  for port in "${ports[@]}"; do
    wrk -t1 -c"$per" -d"$duration" --timeout 10s --latency -s "$work/post.lua" \
      "http://127.0.0.1:$port/v1/evaluate" >"$work/wrk-$n-$port.txt" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  python3 - "$n" "$work" "${ports[@]}" <<'PY'
import re, sys
n, work, ports = sys.argv[1], sys.argv[2], sys.argv[3:]
rps, p99, bad = 0.0, 0.0, 0
for p in ports:
    t = open(f"{work}/wrk-{n}-{p}.txt").read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    v = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    p99 = max(p99, v)
    e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    bad += int(e.group(1)) if e else 0
print(f"{n} replica(s): {rps:,.0f} req/s, p99 {p99:.1f} ms (worst replica), non-2xx {bad}")
PY
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
done
