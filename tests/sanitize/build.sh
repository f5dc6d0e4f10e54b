#!/usr/bin/env bash
# Configures and builds build-asan/: every target (libraries, tools, plugin, tests, the
# model-loader fuzzer) compiled by clang with AddressSanitizer + UndefinedBehaviorSanitizer
# and libFuzzer coverage. -O1 with line tables only: the reports carry file:line, and the
# LibTorch-heavy translation units compile about twice as fast as at -O2 -g.
#   tests/sanitize/build.sh [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ ! -f build-asan/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-asan \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Doptimization=1 -Ddebug=false \
    -Dc_args="-gline-tables-only -fsanitize=fuzzer-no-link" -Dcpp_args="-gline-tables-only -fsanitize=fuzzer-no-link" \
    -Dfuzz=enabled -Dexamples=disabled -Dcuda=disabled
fi
ninja -C build-asan "$@"
