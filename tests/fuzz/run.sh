#!/usr/bin/env bash
# Builds the fuzzers in build-asan/ (clang, ASan + UBSan) and runs each on its committed
# seed corpus. Exit status non-zero on any crash, leak, sanitizer report, uncaught
# exception or timeout; the failing input is kept in build-asan/artifacts/ (add it to the
# fuzzer's corpus as regression-* once fixed).
#   tests/fuzz/run.sh              # CI: a fixed number of runs each from seed 1, deterministic
#   tests/fuzz/run.sh SECONDS      # exploration: random seed, bounded by time, each fuzzer
#   FUZZERS="pth-reader" tests/fuzz/run.sh ...   # a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzzers=${FUZZERS:-"model-loader checkpoint pth-reader groups"}
declare -A corpus=([model-loader]=corpus [checkpoint]=corpus-checkpoint [pth-reader]=corpus-pth [groups]=corpus-groups)
declare -A runs=([model-loader]=400000 [checkpoint]=4000 [pth-reader]=100000 [groups]=200000)
declare -A max_len=([model-loader]=65536 [checkpoint]=262144 [pth-reader]=65536 [groups]=20000)
targets=()
for f in $fuzzers; do targets+=("tests/fuzz/fuzz-$f"); done
tests/sanitize/build.sh "${targets[@]}"
mkdir -p build-asan/artifacts
for f in $fuzzers; do
  if [ $# -ge 1 ]; then
    budget=(-max_total_time="$1")
    what="$1 s"
  else
    budget=(-runs="${runs[$f]}" -seed=1)
    what="${runs[$f]} runs from seed 1"
  fi
  work=$(mktemp -d)
  cp "tests/fuzz/${corpus[$f]}"/* "$work/"
  # rss_limit bounds every allocation path; timeout catches hangs.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "build-asan/tests/fuzz/fuzz-$f" "$work" "${budget[@]}" -rss_limit_mb=2048 \
    -timeout=10 -max_len="${max_len[$f]}" -artifact_prefix=build-asan/artifacts/ -print_final_stats=1 2>&1 | tail -12
  rm -rf "$work"
  echo "fuzz: $f, $what, no finding"
done
