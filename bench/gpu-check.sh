#!/usr/bin/env bash
# The GPU check: prepared here, run on a lent GPU machine (../shared/device/README.md) in
# stages that each fit one device call with margin, every result written to $OUT.
#
#   here:   bench/gpu-check.sh prepare        # .devdeps/ (GStreamer, gtest, OpenCV core) and
#                                             # .gpu-carry/ (reference script, quality set)
#   there:  device run, carry [".devdeps", ".gpu-carry"], one stage a call, back to back
#           (the machine is given back after 30 s idle; a later stage rebuilds if needed).
#           Each stage ends within STAGE_SECONDS (480) whatever hangs; in order of importance:
#     bench/gpu-check.sh build      # build-gpu/ with the machine's LibTorch (ninja -k 0: every
#                                   # compile error at once); libtorch_cuda linked and CUDA on,
#                                   # else it stops; the CUDA tests (CUDA_LAUNCH_BLOCKING=1,
#                                   # PEFM_REQUIRE_CUDA=1: a skip is a failure), the kernel
#                                   # tests again under compute-sanitizer memcheck
#     bench/gpu-check.sh bench      # pefm-bench fp16/bf16/fp32 at batch 1/16/64 and the
#                                   # plain-PyTorch reference on the same GPU
#     bench/gpu-check.sh pipeline   # the 1080p element pipeline (overlay on and off),
#                                   # pefm-eval on CUDA against the CPU's metrics, and the
#                                   # whole test suite with PEFM_REQUIRE_CUDA=1
#   --dry-run runs every stage here on the CPU (small sizes, the existing build/), so CI
#   tests the script itself.
#
# A missing prerequisite stops the stage at once with one "FAILED:" line; a failing step
# inside a stage is logged and the next step still runs. Exit status: 0 when every step
# passed.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
stages=()
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    prepare|build|bench|pipeline) stages+=("$a") ;;
    *) echo "usage: bench/gpu-check.sh [--dry-run] prepare|build|bench|pipeline ..." >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || { echo "usage: bench/gpu-check.sh [--dry-run] prepare|build|bench|pipeline ..." >&2; exit 2; }

OUT=${OUT:-bench/gpu-out}
mkdir -p "$OUT"
CARRY=.gpu-carry
failures=0
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/gpu-check.log"; }
die() { log "FAILED: $*"; exit 1; }
step_failed() { log "FAILED: $*"; failures=$((failures + 1)); }
# Each stage ends within STAGE_SECONDS (default 480, under the device's 600 s a call), so
# its logs always come back: every step gets the smaller of its own limit and what is left.
STAGE_SECONDS=${STAGE_SECONDS:-480}
deadline=$(( $(date +%s) + STAGE_SECONDS ))
# step SECONDS LOGFILE COMMAND...: runs with a time limit, output to $OUT/LOGFILE.
step() {
  local limit=$1 file=$2 left
  shift 2
  left=$(( deadline - $(date +%s) ))
  [ "$limit" -lt "$left" ] || limit=$left
  if [ "$limit" -le 5 ]; then
    echo "no time left in this stage (STAGE_SECONDS=$STAGE_SECONDS)" > "$OUT/$file"
    return 124
  fi
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$file" 2>&1
}

if [ $dry = 1 ]; then
  BUILD=${BUILD_DIR:-build}
  DEVICE=cpu
  SMALL=(--source mobilenet_v2 --target resnet18 --latent 8,8,8 --image-size 64)
  BATCHES=1,2
  ITER=(--iterations 2 --warmup 1)
  FRAME=320x240
  FRAMES=10
  PRECISIONS="fp32 bf16"
else
  BUILD=build-gpu
  DEVICE=cuda
  SMALL=()
  BATCHES=1,16,64
  ITER=(--iterations 100 --warmup 10)
  FRAME=1920x1080
  FRAMES=1000
  PRECISIONS="fp16 bf16 fp32"
fi
export GST_PLUGIN_PATH_1_0=$PWD/$BUILD/gst-plugin
BENCH=$BUILD/core/tools/pefm-bench
EVAL=$BUILD/core/tools/pefm-eval

# ------------------------------------------------------------------ prepare (here)
prepare() {
  local shared=${PEFM_SHARED_DIR:-../shared}
  mkdir -p "$CARRY"
  grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  if [ $dry = 0 ] && [ ! -f .devdeps/setup-deps.sh ]; then
    [ -x "$shared/device/fetch-deps.sh" ] || die "no .devdeps/ and no $shared/device/fetch-deps.sh to make it"
    "$shared/device/fetch-deps.sh" > "$OUT/fetch-deps.log" 2>&1 || die "fetch-deps.sh (see fetch-deps.log)"
  fi
  # The recipe's list lacks one (header-only) package pefm builds with: nlohmann-json.
  if [ $dry = 0 ] && ! compgen -G ".devdeps/nlohmann-json3-dev_*.deb" >/dev/null; then
    (cd .devdeps && { apt-get download nlohmann-json3-dev >> "$OUT/fetch-deps.log" 2>&1 ||
                      { apt-get update -qq && apt-get download nlohmann-json3-dev >> "$OUT/fetch-deps.log" 2>&1; }; }) \
      || die "downloading nlohmann-json3-dev into .devdeps/ (see fetch-deps.log)"
  fi
  if [ -f "$shared/bench/pefm_ref.py" ]; then
    cp "$shared/bench/pefm_ref.py" "$CARRY/pefm_ref.py"
  elif [ $dry = 1 ]; then
    log "prepare: $shared/bench/pefm_ref.py absent (dry run: the ref step will say so)"
  else
    die "$shared/bench/pefm_ref.py not found: the speed comparison needs it"
  fi
  [ -x "$BUILD/core/tools/pefm-train" ] || die "$BUILD/core/tools/pefm-train is not built (pipelines/setup.sh)"
  # Quality set: a small model trained here on the CPU, a compact test set, and the CPU's
  # metrics, which the GPU's must reproduce.
  local q=$CARRY/quality data train=()
  rm -rf "$q"
  mkdir -p "$q/data/test" "$q/data/ground_truth"
  if [ $dry = 0 ] && [ -d "$shared/datasets/mtd/test" ] && [ -f "$shared/models/mobilenet_v2_torchvision_imagenet.pth" ]; then
    data=$shared/datasets/mtd
    train=(--source "mobilenet_v2=$shared/models/mobilenet_v2_torchvision_imagenet.pth"
           --target "mobilenet_v2=$shared/models/mobilenet_v2_tfslim_imagenet.pth"
           --image-size 128 --latent 64,128,256 --epochs 3)
  else
    "$BUILD/core/tools/pefm-demo-data" --out "$q/src" > "$OUT/demo-data.log" 2>&1 || die "pefm-demo-data"
    data=$q/src
    train=(--source mobilenet_v2=random --target resnet18=random --image-size 64 --latent 8,8,8 --epochs 1)
  fi
  for dir in "$data"/test/*/; do
    local type per=6
    type=$(basename "$dir")
    [ "$type" = good ] && per=20
    mkdir -p "$q/data/test/$type"
    find "$dir" -maxdepth 1 -type f | sort | head -n $per | while read -r f; do
      cp "$f" "$q/data/test/$type/"
      local stem mask
      stem=$(basename "${f%.*}")
      mask=$(find "$data/ground_truth/$type" -maxdepth 1 -name "$stem*" 2>/dev/null | head -1)
      if [ -n "$mask" ]; then mkdir -p "$q/data/ground_truth/$type"; cp "$mask" "$q/data/ground_truth/$type/"; fi
    done
  done
  step 1800 prepare-train.log "$BUILD/core/tools/pefm-train" --data "$data/train/good" --output "$q/model.pt" \
      --device cpu --folds 0 "${train[@]}" || die "training the quality model (see prepare-train.log)"
  rm -rf "$q/src"
  step 900 prepare-eval.log "$EVAL" --model "$q/model.pt" --data "$q/data" --device cpu --json "$q/cpu-eval.json" \
      || die "evaluating the quality model on the CPU (see prepare-eval.log)"
  log "prepare: $CARRY holds $(du -sh "$CARRY" | cut -f1); with .devdeps $(du -shc "$CARRY" .devdeps 2>/dev/null | tail -1 | cut -f1) (64 MiB travel limit)"
}

# ------------------------------------------------------------------ build (there)
environment() {
  if [ $dry = 1 ]; then
    [ -x "$BENCH" ] || die "$BENCH is not built (pipelines/setup.sh)"
    return
  fi
  [ -f .devdeps/setup-deps.sh ] || die ".devdeps/ was not carried (run 'bench/gpu-check.sh prepare' here, carry .devdeps)"
  # shellcheck disable=SC1091
  source .devdeps/setup-deps.sh > "$OUT/setup-deps.log" 2>&1 || die "source .devdeps/setup-deps.sh (see setup-deps.log)"
  export PATH=$PATH:/usr/local/cuda/bin
  command -v nvcc > /dev/null || die "nvcc is not on PATH nor in /usr/local/cuda/bin"
  TORCH_ROOT=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null) \
      || die "python3 cannot import torch (the machine's LibTorch is PyTorch's package)"
  [ -f "$TORCH_ROOT/lib/libtorch_cuda.so" ] || die "$TORCH_ROOT/lib has no libtorch_cuda.so"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1
  log "env: $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1 | tail -1); nvcc $(nvcc --version | sed -n 's/.*release \([^,]*\).*/\1/p'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
}

ensure_built() {
  if [ $dry = 0 ]; then
    if [ ! -f "$BUILD/build.ninja" ]; then
      step 90 setup.log meson setup "$BUILD" -Dtorch_dir="$TORCH_ROOT" -Dcuda=enabled -Dgpu_arch=90 -Dexamples=disabled \
          -Dtests=enabled || die "meson setup (see setup.log)"
    fi
    # -k 0: one run lists every compile error against this LibTorch, not just the first.
    step 330 build.log ninja -C "$BUILD" -k 0 || die "build (see build.log): $(grep -m3 -E 'error' "$OUT/build.log" | tr '\n' ' ' | cut -c1-400)"
    log "build: ok, $(grep -ci 'warning' "$OUT/build.log") warning lines"
    local needed
    needed=$(readelf -d "$BUILD/core/libpefm-core.so" | grep -c 'NEEDED.*libtorch_cuda')
    [ "$needed" -ge 1 ] || die "libpefm-core.so does not need libtorch_cuda.so: CUDA would stay off"
  fi
  step 30 probe.log "$BENCH" --device "$DEVICE" --batch-sizes 1 --iterations 1 --warmup 0 \
      --source mobilenet_v2 --target resnet18 --latent 8,8,8 --image-size 64 \
      || die "pefm-bench --device $DEVICE does not run (see probe.log): CUDA is not on"
  log "probe: $(grep -m1 -iE 'device|cuda|cpu' "$OUT/probe.log")"
}

tests() {
  local filter='PreprocessKernel.*:DetectorCuda.*:AnomalyMapKernel.*:ElementCuda.*:CudaLink.*'
  if [ $dry = 0 ]; then
    export PEFM_REQUIRE_CUDA=1
    export CUDA_LAUNCH_BLOCKING=1  # a kernel fault is reported at its launch, not later
  fi
  for t in core element; do
    local exe=$BUILD/tests/test-$t
    [ -x "$exe" ] || { step_failed "tests: $exe not built"; continue; }
    if step 45 "cuda-$t.log" env GST_PLUGIN_PATH_1_0="$GST_PLUGIN_PATH_1_0" "$exe" --gtest_filter="$filter"; then
      log "cuda tests $t: $(grep -E '^\[  (PASSED|SKIPPED|FAILED) ' "$OUT/cuda-$t.log" | tr -s ' ' | tr '\n' ' ')"
    else
      step_failed "cuda tests $t (see cuda-$t.log): $(grep -E '^\[  FAILED  \]' "$OUT/cuda-$t.log" | head -5 | tr '\n' ' ')"
    fi
  done
  unset CUDA_LAUNCH_BLOCKING
  # The pefm kernels under memcheck. PyTorch's caching allocator carves tensors out of large
  # blocks, in which memcheck would not see a write past one tensor: caching off.
  if [ $dry = 0 ]; then
    if command -v compute-sanitizer > /dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
      local cs
      cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      if step 90 memcheck.log env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$cs" --tool memcheck --error-exitcode 99 \
          --print-limit 20 "$BUILD/tests/test-core" --gtest_filter='PreprocessKernel.*:AnomalyMapKernel.*'; then
        log "memcheck: $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")"
      else
        step_failed "memcheck (see memcheck.log): $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")"
      fi
    else
      log "memcheck: compute-sanitizer not found; the CUDA tests ran with CUDA_LAUNCH_BLOCKING=1 only"
    fi
  fi
}

suite() {
  local which=()
  # The dry run checks the step, not the suite again (CI has just run it): one small suite.
  if [ $dry = 1 ]; then which=(image-io); else export PEFM_REQUIRE_CUDA=1; fi
  if step 150 tests.log meson test -C "$BUILD" --print-errorlogs --num-processes 8 "${which[@]}"; then
    log "suite: $(grep -E '^(Ok|Fail|Skipped|Timeout):' "$OUT/tests.log" | tr -s ' ' | tr '\n' ' ')"
  else
    step_failed "suite (see tests.log, testlog.txt): $(grep -E '^(Ok|Fail|Skipped|Timeout):' "$OUT/tests.log" | tr -s ' ' | tr '\n' ' ')"
  fi
  cp "$BUILD/meson-logs/testlog.txt" "$OUT/testlog.txt" 2>/dev/null
}

# ------------------------------------------------------------------ bench
bench() {
  for prec in $PRECISIONS; do
    if step 60 "bench-$prec.log" "$BENCH" --device "$DEVICE" --precision "$prec" --batch-sizes "$BATCHES" "${ITER[@]}" \
        "${SMALL[@]}" --json "$OUT/bench-$prec.json"; then
      log "bench $prec: $(grep -E '^ +[0-9]+ ' "$OUT/bench-$prec.log" | tr -s ' ' | tr '\n' ';')"
    else
      step_failed "bench $prec (see bench-$prec.log)"
    fi
  done
  local ref=$CARRY/pefm_ref.py
  if [ $dry = 1 ] && [ ! -f "$ref" ]; then
    log "ref: $ref absent (no ../shared here); not checked"
    return
  fi
  [ -f "$ref" ] || { step_failed "ref: $ref not carried (run 'bench/gpu-check.sh prepare' here)"; return; }
  if [ $dry = 1 ]; then
    python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$ref" || step_failed "ref: $ref does not parse"
    log "ref: $ref present (not run: no PyTorch here)"
    return
  fi
  if step 100 ref-fp16.log python3 "$ref" --device cuda --precision fp16 --batch-sizes "$BATCHES"; then
    log "ref fp16: $(tail -1 "$OUT/ref-fp16.log")"
  else
    step_failed "ref (see ref-fp16.log)"
  fi
}

# ------------------------------------------------------------------ pipeline + quality
pipeline() {
  for ov in heatmap+contours none; do
    if step 60 "pipeline-$ov.log" "$BENCH" --device "$DEVICE" --precision "${PRECISIONS%% *}" --batch-sizes 1 \
        --iterations 1 --warmup 0 "${SMALL[@]}" --pipeline "$FRAME" --pipeline-frames "$FRAMES" --overlay "$ov" \
        --json "$OUT/pipeline-$ov.json"; then
      log "pipeline $FRAME overlay=$ov: $(grep -E 'pipeline videotestsrc' "$OUT/pipeline-$ov.log")"
    else
      step_failed "pipeline overlay=$ov (see pipeline-$ov.log)"
    fi
  done
  local q=$CARRY/quality
  [ -f "$q/model.pt" ] && [ -f "$q/cpu-eval.json" ] || { step_failed "quality: $q not carried (run 'bench/gpu-check.sh prepare' here)"; return; }
  for prec in fp32 "${PRECISIONS%% *}"; do
    if step 60 "eval-$prec.log" "$EVAL" --model "$q/model.pt" --data "$q/data" --device "$DEVICE" --precision "$prec" \
        --json "$OUT/eval-$DEVICE-$prec.json"; then
      # fp32 must give the CPU's metrics (maps within 1e-3); reduced precision within 1 point.
      local tol=0.002
      [ "$prec" = fp32 ] || tol=0.01
      if python3 - "$q/cpu-eval.json" "$OUT/eval-$DEVICE-$prec.json" "$tol" > "$OUT/eval-$prec-compare.txt" <<'PY'
import json, sys
a, b, tol = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
def metrics(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from metrics(v, prefix + k + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and any(m in k for m in ("auroc", "aupro", "f1")):
            yield prefix + k, v
ma, mb = dict(metrics(a)), dict(metrics(b))
bad = [f"{k}: cpu {ma[k]:.4f} vs {mb.get(k)}" for k in ma if k not in mb or abs(ma[k] - mb[k]) > tol]
print(f"{len(ma)} metrics compared, tolerance {tol}")
print("\n".join(bad) if bad else "all within tolerance")
sys.exit(1 if bad or not ma else 0)
PY
      then
        log "quality $prec: $(tr '\n' ' ' < "$OUT/eval-$prec-compare.txt")"
      else
        step_failed "quality $prec differs from the CPU: $(tr '\n' ' ' < "$OUT/eval-$prec-compare.txt")"
      fi
    else
      step_failed "eval $prec (see eval-$prec.log)"
    fi
  done
}

log "gpu-check: stages ${stages[*]}$([ $dry = 1 ] && echo ' (dry run on the CPU)')"
for s in "${stages[@]}"; do
  budget=$STAGE_SECONDS
  [ "$s" = prepare ] && budget=3600
  deadline=$(( $(date +%s) + budget ))
  case "$s" in
    prepare) prepare ;;
    build) environment; ensure_built; tests ;;
    bench) environment; ensure_built; bench ;;
    pipeline) environment; ensure_built; pipeline; suite ;;
  esac
done
log "gpu-check: done, $failures failed step(s)"
[ $failures -eq 0 ]
