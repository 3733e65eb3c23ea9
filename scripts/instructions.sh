#!/usr/bin/env bash
# Instruction counts of the tracked workloads (host/benches/instructions.rs)
# under callgrind, checked against the committed baseline: a count more than
# 5 % above its baseline fails, so a slower change must update the baseline
# in the same commit, where review sees it. Counts are per operation: each
# workload runs with N = 0 and N > 0, and the difference is divided by N, so
# setup never counts.
#
#   scripts/instructions.sh           check against the baseline
#   scripts/instructions.sh --bless   write the baseline from this build
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=host/benches/instructions.baseline
bless=false
[[ "${1:-}" == "--bless" ]] && bless=true
runs="${TOLLGATE_INSTRUCTION_RUNS:-40}"
tolerance=5

command -v valgrind >/dev/null || { echo "instructions: valgrind is not installed (apt install valgrind)" >&2; exit 1; }

bin=$(cargo bench -p tollgate --bench instructions --no-run --locked --message-format=json 2>/dev/null \
  | jq -r 'select(.reason == "compiler-artifact" and .target.name == "instructions") | .executable' | tail -n1)
[[ -x "$bin" ]] || { echo "instructions: the bench did not build" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Compiled plugins are cached here by a first, uncounted run, so the setup
# the counts subtract deserialises rather than compiles in parallel.
export TOLLGATE_CACHE_DIR="$out/cache"

count() { # workload n -> total instructions of the whole process
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" "$bin" "$1" "$2" >/dev/null 2>"$out/$1.$2.log" \
    || { cat "$out/$1.$2.log" >&2; echo "instructions: $1 failed under callgrind" >&2; exit 1; }
  awk '/^summary:/ { print $2 }' "$out/$1.$2"
}

declare -A measured
for w in w1 w2 http; do
  # Under valgrind too: it shows the program its own CPU, and compiled
  # code is cached per CPU.
  valgrind --tool=none "$bin" "$w" 1 >/dev/null 2>&1
  base=$(count "$w" 0)
  full=$(count "$w" "$runs")
  measured[$w]=$(( (full - base) / runs ))
done

if $bless; then
  {
    echo "# Instructions per operation (scripts/instructions.sh --bless), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    for w in w1 w2 http; do echo "$w ${measured[$w]}"; done
  } > "$baseline"
  cat "$baseline"
  exit 0
fi

[[ -f "$baseline" ]] || { echo "instructions: no baseline at $baseline; run with --bless" >&2; exit 1; }
status=0
printf '%-6s %14s %14s %8s\n' workload baseline measured change
for w in w1 w2 http; do
  want=$(awk -v w="$w" '$1 == w { print $2 }' "$baseline")
  [[ -n "$want" ]] || { echo "instructions: $w has no baseline" >&2; status=1; continue; }
  got=${measured[$w]}
  change=$(awk -v a="$got" -v b="$want" 'BEGIN { printf "%+.1f%%", (a - b) * 100 / b }')
  printf '%-6s %14d %14d %8s\n' "$w" "$want" "$got" "$change"
  if (( got * 100 > want * (100 + tolerance) )); then
    echo "instructions: $w rose $change over its baseline (more than $tolerance %); if intended, run scripts/instructions.sh --bless and commit the baseline" >&2
    status=1
  fi
done
exit $status
