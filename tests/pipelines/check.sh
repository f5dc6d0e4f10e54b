#!/usr/bin/env bash
# The user's scripts rehearsed on small data, their outputs checked: the demo (QUICK=1:
# a few images of each folder, one epoch; real data and weights where ../shared has them,
# then again as without it)
# and a line-scan web from pefm-demo-data through pipelines/line-scan.sh.
#   tests/pipelines/check.sh [WORK_DIR]      (default build/pipelines-check, made anew)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-build/pipelines-check}
rm -rf "$work"
mkdir -p "$work"
fail() { echo "pipelines: FAILED: $*" >&2; exit 1; }
count() { find "$1" -maxdepth 1 -name "$2" | wc -l; }

QUICK=1 OUT="$work/demo" pipelines/demo.sh > "$work/demo.log" 2>&1 || { tail -40 "$work/demo.log"; fail "pipelines/demo.sh"; }
samples=$(count "$work/demo/sample" '*.png')
overlays=$(count "$work/demo/overlays" '*.png')
lines=$(wc -l < "$work/demo/overlays/results.jsonl")
[ "$samples" -gt 0 ] && [ "$overlays" -eq "$samples" ] && [ "$lines" -eq "$samples" ] \
  || fail "demo: $samples sample images gave $overlays overlays and $lines result lines"
python3 - "$work/demo/eval.json" "$work/demo/overlays/results.jsonl" <<'PY' || fail "demo: eval.json or results.jsonl"
import json, math, sys
report = json.load(open(sys.argv[1]))
for key in ("image_auroc", "pixel_auroc", "aupro"):
    v = report[key]
    assert isinstance(v, (int, float)) and 0 <= v <= 1 and not math.isnan(v), f"{key}: {v}"
for line in open(sys.argv[2]):
    assert "score" in json.loads(line), line
PY
[ -s "$work/demo/model.onnx" ] || fail "demo: no model.onnx"
echo "pipelines: demo.sh ok ($samples images through pefmfilter, overlays and results lines; evaluated; exported)"

# As on a machine without ../shared: synthetic images, random backbones, a loud warning.
env -u PEFM_BACKBONE_DIR QUICK=1 PEFM_SHARED_DIR="$work/no-shared" OUT="$work/demo-bare" pipelines/demo.sh > "$work/demo-bare.log" 2>&1 \
  || { tail -40 "$work/demo-bare.log"; fail "pipelines/demo.sh without ../shared"; }
grep -q "PLUMBING ONLY" "$work/demo-bare.log" || fail "demo without ../shared: no warning that it shows the plumbing only"
grep -q "RANDOM (no weights found)" "$work/demo-bare.log" || fail "demo without ../shared: not on random backbones"
[ "$(count "$work/demo-bare/overlays" '*.png')" -gt 0 ] && [ -s "$work/demo-bare/eval.json" ] && [ -s "$work/demo-bare/model.onnx" ] \
  || fail "demo without ../shared: overlays, eval.json or model.onnx missing"
echo "pipelines: demo.sh ok without ../shared (synthetic images, random backbones)"

source pipelines/env.sh
source tests/pipelines/lib.sh
pefm-demo-data --web 4 --strip-rows 64 --width 256 --out "$work/web" > "$work/web.log"
pefm-train --data "$work/web/train/good" --output "$work/web.pt" --tile 64 --image-size 64 --latent 8,8,8 \
  --epochs 1 --folds 0 --val-fraction 0.2 --source mobilenet_v2=random --target resnet18=random >> "$work/web.log" 2>&1 \
  || { tail -20 "$work/web.log"; fail "pefm-train --tile"; }
pipelines/line-scan.sh "$work/web.pt" "$work/web/web" "$work/web-out" >> "$work/web.log" 2>&1 \
  || { tail -20 "$work/web.log"; fail "pipelines/line-scan.sh"; }
strips=$(count "$work/web/web" '*.png')
overlays=$(count "$work/web-out" '*.png')
lines=$(wc -l < "$work/web-out/results.jsonl")
[ "$strips" -eq 4 ] && [ "$overlays" -eq 4 ] && [ "$lines" -eq 4 ] \
  || fail "line-scan: $strips strips gave $overlays overlays and $lines result lines"
grep -q "4 strips inspected as one web" "$work/web.log" || fail "line-scan: no summary line"
echo "pipelines: line-scan.sh ok (4 strips inspected as one web)"

# Real camera protocols through pipelines/camera.sh: RTSP, and GigE Vision in a network
# namespace (tests/pipelines/cameras.sh).
tests/pipelines/cameras.sh "$work/demo/model.pt" "$work/web.pt" "$work/cameras"

# The camera service (pipelines/service): the unit as systemd checks it, its launcher
# pointed at the build tree, and the launcher run for real on a camera's settings (a test
# source, no broker: results.jsonl in its state folder), stopped as systemd stops it.
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (Debian: systemd)"
mkdir -p "$work/unit"
sed "s|^ExecStart=[^ ]*|ExecStart=$PWD/pipelines/service/pefm-service|" "$pefm_build/pipelines/pefm@.service" > "$work/unit/pefm@.service"
ln -s pefm@.service "$work/unit/pefm@cam1.service"
verify=$(cd "$work/unit" && systemd-analyze verify --man=no ./pefm@cam1.service 2>&1) || { echo "$verify" >&2; fail "systemd-analyze verify"; }
[ -z "$verify" ] || { echo "$verify" >&2; fail "systemd-analyze verify complains about pefm@.service"; }
mkdir -p "$work/service-state"
export PEFM_MODEL="$work/web.pt" STATE_DIRECTORY="$work/service-state"
export PEFM_SOURCE="videotestsrc is-live=true ! video/x-raw,format=RGB,width=256,height=64,framerate=10/1"
run_until "$work/service-state/results.jsonl" 3 "$work/service.log" pipelines/service/pefm-service cam1
frames=$(frames_in "$work/service-state/results.jsonl")
grep -q '"source":"cam1"' "$work/service-state/results.jsonl" || fail "pefm-service: the lines do not name cam1"
python3 tests/schema/validate_results.py docs/results.schema.json "$work/service-state/results.jsonl" > "$work/service-schema.log" \
  || { cat "$work/service-schema.log"; fail "pefm-service: lines not valid against docs/results.schema.json"; }
unset PEFM_MODEL STATE_DIRECTORY PEFM_SOURCE
msg=$(PEFM_SOURCE=videotestsrc PEFM_MODEL='/x" ! filesink location="/tmp/y' pipelines/service/pefm-service cam1 2>&1) \
  && fail "pefm-service took a model path that adds elements"
grep -q "PEFM_MODEL holds a quote" <<<"$msg" || fail "pefm-service: $msg"
echo "pipelines: pefm@.service verified; pefm-service ran cam1 ($frames frames), stopped cleanly on SIGINT"
