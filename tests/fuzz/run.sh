#!/usr/bin/env bash
# Builds the model-loader fuzzer in build-asan/ (clang, ASan + UBSan) and runs it on the committed
# seed corpus. Exit status non-zero on any crash, leak, sanitizer report, uncaught
# exception or timeout; the failing input is kept in build-asan/artifacts/ (add it to
# tests/fuzz/corpus/ as regression-* once fixed).
#   tests/fuzz/run.sh            # CI: 400000 runs from seed 1, deterministic (about 40 s)
#   tests/fuzz/run.sh SECONDS    # exploration: random seed, bounded by time
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ]; then
  budget=(-max_total_time="$1")
  what="$1 s"
else
  budget=(-runs=400000 -seed=1)
  what="400000 runs from seed 1"
fi
tests/sanitize/build.sh tests/fuzz/fuzz-model-loader
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp tests/fuzz/corpus/* "$corpus/"
mkdir -p build-asan/artifacts
# rss_limit bounds every allocation path; timeout catches hangs.
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
  build-asan/tests/fuzz/fuzz-model-loader "$corpus" "${budget[@]}" -rss_limit_mb=2048 \
  -timeout=10 -max_len=65536 -artifact_prefix=build-asan/artifacts/ -print_final_stats=1 2>&1 | tail -25
echo "fuzz: model loader, $what, no finding"
