#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS [TARGET...]: runs each fuzz target (default: all three) for SECONDS
# on a copy of its seed corpus (tests/fuzz/corpus/NAME); crashes land in BUILD_DIR/fuzz-findings.
# Exit status non-zero when a target finds a crash.
set -euo pipefail
build=$1 seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=${*:-"csv model idx"}
mkdir -p "$build/fuzz-findings"
for t in $targets; do
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  cp "$here/corpus/$t"/* "$work"/ 2>/dev/null || true
  echo "== fuzz_$t for ${seconds}s"
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -artifact_prefix="$build/fuzz-findings/${t}-" -print_final_stats=1 "$work" 2>&1 | tail -12
done
