#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) on a
# copy of its committed seed corpus, and prints the executions per target.
#
# It runs on the pinned stable toolchain: libFuzzer's instrumentation needs
# compiler flags that stable rustc accepts only with RUSTC_BOOTSTRAP=1, set
# here for the fuzz build alone (the product never builds with it). It
# installs cargo-fuzz when it is missing.
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for target in snapshot policy evaluate_body; do
  mkdir -p "$work/$target"
  cp corpus/"$target"/* "$work/$target/"
  log="$work/$target.log"
  # A target that does not compile is not a crash; say which it is.
  if ! cargo fuzz build --sanitizer none -O "$target" >"$log" 2>&1; then
    echo "fuzz $target: DOES NOT BUILD"
    tail -40 "$log"
    status=1
    continue
  fi
  if cargo fuzz run --sanitizer none -O "$target" "$work/$target" -- \
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
