#!/usr/bin/env bash
# One prepared run for a session that is lent the GPU machine (see ../shared/device/README.md):
# build with the machine's CUDA LibTorch, run the test suite (the CUDA tests run there and
# skip elsewhere), then the benchmarks of issue 5 side by side with the plain-PyTorch
# reference. Everything goes to $OUT (or bench/gpu-out/) as logs and JSON.
#
#   here:  ../shared/device/fetch-deps.sh          # once: .devdeps/ (GStreamer, GLib, gtest, OpenCV core)
#   there: bench/gpu-session.sh                    # device tool: carry [".devdeps"], timeout ~540 s
#          (copy ../shared/bench/pefm_ref.py to an untracked bench/ path, or set PEFM_REF, for the reference)
#
# Steps are independent: a failing one is logged and the next still runs. STEPS selects
# some ("build tests bench pipeline ref"), for a rerun within the time left.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu-out}
mkdir -p "$OUT"
STEPS=${STEPS:-"build tests bench pipeline ref"}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }

if [ -f .devdeps/setup-deps.sh ]; then
  # shellcheck disable=SC1091
  source .devdeps/setup-deps.sh
fi
TORCH_ROOT=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
log "torch $(python3 -c 'import torch;print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1

if want build; then
  log "build: meson setup build-gpu -Dtorch_dir=$TORCH_ROOT -Dcuda=enabled"
  [ -f build-gpu/build.ninja ] || meson setup build-gpu -Dtorch_dir="$TORCH_ROOT" -Dcuda=enabled \
      -Dexamples=disabled > "$OUT/setup.log" 2>&1 || log "build: setup FAILED (see setup.log)"
  ninja -C build-gpu > "$OUT/build.log" 2>&1 && log "build: ok, $(grep -c warning "$OUT/build.log") warnings" \
      || log "build: FAILED (see build.log)"
fi
export GST_PLUGIN_PATH_1_0=$PWD/build-gpu/gst-plugin
BENCH=build-gpu/core/tools/pefm-bench

if want tests; then
  meson test -C build-gpu --print-errorlogs > "$OUT/tests.log" 2>&1; rc=$?
  cp build-gpu/meson-logs/testlog.txt "$OUT/testlog.txt" 2>/dev/null
  log "tests: rc=$rc; CUDA tests: $(grep -E '^\[ +(OK|FAILED|SKIPPED) +\] (PreprocessKernel.Cuda|DetectorCuda|ElementCuda)' "$OUT/testlog.txt" | tr -s ' ' | tr '\n' ';')"
fi

if want bench; then
  # Issue 5 targets: ResNet34 -> ResNet50, 256 px, random weights (speed does not depend on them).
  for prec in fp16 fp32; do
    timeout 150 "$BENCH" --device cuda --precision "$prec" --batch-sizes 1,16,64 --iterations 200 --warmup 20 \
        --json "$OUT/bench-$prec.json" > "$OUT/bench-$prec.log" 2>&1 || log "bench $prec: FAILED or timed out"
    log "bench $prec: $(grep -E '^ +[0-9]+ ' "$OUT/bench-$prec.log" | tr -s ' ' | tr '\n' ';')"
  done
fi

if want pipeline; then
  for ov in heatmap+contours none; do
    timeout 120 "$BENCH" --device cuda --precision fp16 --batch-sizes 1 --iterations 20 --pipeline 1920x1080 \
        --pipeline-frames 2000 --overlay "$ov" --json "$OUT/pipeline-$ov.json" > "$OUT/pipeline-$ov.log" 2>&1 \
        || log "pipeline $ov: FAILED or timed out"
    log "pipeline 1920x1080 overlay=$ov: $(grep -E 'pipeline videotestsrc' "$OUT/pipeline-$ov.log")"
  done
fi

if want ref; then
  ref=${PEFM_REF:-}
  for c in ../shared/bench/pefm_ref.py shared/bench/pefm_ref.py; do
    [ -z "$ref" ] && [ -f "$c" ] && ref=$c
  done
  if [ -n "$ref" ]; then
    timeout 150 python3 "$ref" --device cuda --precision fp16 --batch-sizes 1,16,64 > "$OUT/ref-fp16.json" 2> "$OUT/ref-fp16.err" \
        || log "ref: FAILED or timed out"
    log "ref fp16: $(cat "$OUT/ref-fp16.json")"
  else
    log "ref: ../shared/bench/pefm_ref.py not carried; skipped"
  fi
fi
log "done"
