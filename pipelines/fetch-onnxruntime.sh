#!/usr/bin/env bash
# Puts ONNX Runtime and onnx from PyPI, pinned by version and SHA-256
# (tests/onnx/requirements.txt), into a virtual environment at subprojects/onnx-venv/, where
# the export suite (tests/test_export.cpp) runs pefm-export's graphs. The environment is
# complete once it holds a copy of the requirements (written last): meson looks for that
# when it configures, the test when it runs. Nothing is installed into the system's Python.
# Safe to run again.
#   pipelines/fetch-onnxruntime.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=subprojects/onnx-venv
REQ=tests/onnx/requirements.txt

if [ -x "$VENV/bin/python3" ] && cmp -s "$REQ" "$VENV/requirements.txt"; then
  echo "pefm fetch-onnxruntime: $VENV is up to date"
  exit 0
fi
# Made where it stays (a moved environment's pip still names its first path); the marker
# goes last, so an interrupted run leaves an environment nobody takes for complete.
rm -rf "$VENV"
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/python3" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$REQ"
"$VENV/bin/python3" -c "import numpy, onnx, onnxruntime" \
  || { echo "pefm fetch-onnxruntime: the packages do not import" >&2; exit 1; }
cp "$REQ" "$VENV/requirements.txt"
echo "pefm fetch-onnxruntime: onnxruntime and onnx in $VENV"
