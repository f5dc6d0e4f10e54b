#!/usr/bin/env bash
# CI's first stage, seconds long: what a reader can check without building, so that a typo
# in a script or in the case expectations fails CI before the half-hour of builds.
#   tests/ci/static.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
while IFS= read -r f; do
  bash -n "$f" || { echo "static: $f: shell syntax error"; fail=1; }
done < <(git ls-files '*.sh' .ci/run)
python3 - <<'PY' || fail=1
import ast, subprocess, sys
bad = 0
for f in subprocess.run(["git", "ls-files", "*.py"], capture_output=True, text=True, check=True).stdout.split():
    try:
        ast.parse(open(f, encoding="utf-8").read(), f)
    except SyntaxError as e:
        print(f"static: {f}: {e}")
        bad = 1
sys.path.insert(0, "tests/ci")
import importlib.util
spec = importlib.util.spec_from_file_location("check_cases", "tests/ci/check-cases.py")
check_cases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_cases)
try:
    check_cases.read_expectations()
except (ValueError, SystemExit) as e:
    print(f"static: tests/ci/expected-cases.txt: {e}")
    bad = 1
sys.exit(bad)
PY
# Every tests/test_*.cpp is compiled by tests/meson.build (a file left out would be a silent hole).
for f in tests/test_*.cpp; do
  grep -q "'$(basename "$f")'" tests/meson.build || { echo "static: $f is not in tests/meson.build"; fail=1; }
done
[ "$fail" -eq 0 ] && echo "static: ok"
exit "$fail"
