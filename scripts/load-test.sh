#!/usr/bin/env bash
# Bounded loopback load test of `tollgate serve` with wrk (Debian package):
# POST /v1/evaluate for a fixed time, once per decision store, in one run so
# the figures compare.
#   scripts/load-test.sh [duration=30s] [connections=64] [policy=ci|canary] [stores="memory sqlite"]
# A store is `memory` (no decision log), `sqlite` (a fresh file) or a
# `postgres://…` URL (its tables are used as they are).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30s}
connections=${2:-64}
policy=${3:-ci}
stores=${4:-memory sqlite}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
work=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
token="load-test-token-$(date +%s)-0000"
echo "$token" > "$work/tokens"
python3 - "$work/body.json" "$policy" <<'PY'
import json, sys
if sys.argv[2] == "canary":
    # A healthy canary for the initial stage: gates, five triggers, the schedule.
    snap = json.load(open("tests/fixtures/canary-steady.json"))
    body = {"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": snap}
else:
    # The CI stage: six gates, no trigger state.
    body = {"policy": "ci-quality-gates", "snapshot": json.load(open("tests/fixtures/ci-passing.json"))}
json.dump(body, open(sys.argv[1], "w"))
PY
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local f = io.open("$work/body.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
for store in $stores; do
  case $store in
    sqlite) spec="$work/log.db"; rm -f "$spec"* ;;
    *) spec=$store ;;
  esac
  port=18$((RANDOM % 900 + 100))
  ./target/release/tollgate serve --addr "127.0.0.1:$port" --tokens-file "$work/tokens" --max-concurrency 256 \
    --store "$spec" 2> "$work/server.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
  echo "== store: ${store%%@*} · policy: $policy · $connections connections · $duration"
  curl -fsS -X POST "http://127.0.0.1:$port/v1/evaluate" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data @"$work/body.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("sanity:", d["decision"], len(d["gates"]), "gates", len(d["triggers"]), "triggers")'
  wrk -t2 -c"$connections" -d"$duration" --timeout 10s --latency -s "$work/post.lua" "http://127.0.0.1:$port/v1/evaluate" \
    | grep -E "Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors"
  curl -fsS "http://127.0.0.1:$port/metrics" -H "Authorization: Bearer $token" | grep -E '^tollgate_http_requests_total\{.*evaluate'
  if [ "$store" = sqlite ]; then
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print('logged decisions:', c.execute('select count(*) from decisions').fetchone()[0])" "$spec"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
