#!/usr/bin/env bash
# Puts ONNX Runtime and onnx from PyPI, pinned by version and SHA-256
# (tests/onnx/requirements.txt), into a virtual environment at subprojects/onnx-venv/, where
# the export suite (tests/test_export.cpp) runs pefm-export's graphs; meson finds it when it
# configures. Nothing is installed into the system's Python. Safe to run again.
#   pipelines/fetch-onnxruntime.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=subprojects/onnx-venv
REQ=tests/onnx/requirements.txt

if [ -x "$VENV/bin/python3" ] && cmp -s "$REQ" "$VENV/requirements.txt"; then
  echo "pefm fetch-onnxruntime: $VENV is up to date"
  exit 0
fi
rm -rf "$VENV" "$VENV.partial"
# Built aside and moved into place, so an interrupted run leaves no half environment that
# meson would take for a whole one.
/usr/bin/python3 -m venv "$VENV.partial"
"$VENV.partial/bin/python3" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$REQ"
"$VENV.partial/bin/python3" -c "import numpy, onnx, onnxruntime" \
  || { echo "pefm fetch-onnxruntime: the packages do not import" >&2; exit 1; }
cp "$REQ" "$VENV.partial/requirements.txt"
mv "$VENV.partial" "$VENV"
echo "pefm fetch-onnxruntime: onnxruntime and onnx in $VENV"
