#!/usr/bin/env bash
# Bounded loopback load test of `tollgate serve` with wrk (Debian package):
# 64 connections for 30 s against POST /v1/evaluate on the canary policy.
# Usage: scripts/load-test.sh [duration] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30s}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
token="load-test-token-$(date +%s)-0000"
echo "$token" > "$work/tokens"
port=18$((RANDOM % 900 + 100))
./target/release/tollgate serve --addr "127.0.0.1:$port" --tokens-file "$work/tokens" --max-concurrency 256 \
  2> "$work/server.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
# A healthy canary for the initial stage: gates, four triggers and the schedule.
python3 - "$work/body.json" <<'PY'
import json, sys
snap = json.load(open("tests/fixtures/canary-steady.json"))
json.dump({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": snap}, open(sys.argv[1], "w"))
PY
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local f = io.open("$work/body.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
curl -fsS -X POST "http://127.0.0.1:$port/v1/evaluate" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' --data @"$work/body.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("sanity:", d["decision"], len(d["gates"]), "gates", len(d["triggers"]), "triggers")'
wrk -t2 -c"$connections" -d"$duration" --timeout 10s --latency -s "$work/post.lua" "http://127.0.0.1:$port/v1/evaluate"
curl -fsS "http://127.0.0.1:$port/metrics" -H "Authorization: Bearer $token" | grep -E '^tollgate_(evaluations_total|http_requests_total)'
