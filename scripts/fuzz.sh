#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) on a
# copy of its committed seed corpus, and prints the executions per target.
# Needs a nightly toolchain and cargo-fuzz; the plugins embedded in the host
# are still built with the pinned toolchain.
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/../fuzz"
TOLLGATE_PLUGIN_TOOLCHAIN=$(sed -n 's/^channel = "\(.*\)"/\1/p' ../rust-toolchain.toml)
export TOLLGATE_PLUGIN_TOOLCHAIN
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for target in snapshot policy evaluate_body; do
  mkdir -p "$work/$target"
  cp corpus/"$target"/* "$work/$target/"
  log="$work/$target.log"
  # A target that does not compile is not a crash; say which it is.
  if ! cargo +nightly fuzz build --sanitizer none -O "$target" >"$log" 2>&1; then
    echo "fuzz $target: DOES NOT BUILD"
    tail -40 "$log"
    status=1
    continue
  fi
  if cargo +nightly fuzz run --sanitizer none -O "$target" "$work/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $target: ${runs:-?} executions in ${secs}s, no crash"
  else
    echo "fuzz $target: FAILED (artifacts under fuzz/artifacts/$target)"
    tail -40 "$log"
    status=1
  fi
done
exit $status
