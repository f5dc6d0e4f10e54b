#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/,
# see build.sh). Any sanitizer report fails the test that triggered it; the sanitizer
# options are set by tests/meson.build for this build.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/sanitize/build.sh
meson test -C build-asan --print-errorlogs --timeout-multiplier 3
