#!/usr/bin/env bash
# The GPU check: prepared here, run on a lent GPU machine (../shared/device/README.md) as
# ONE device call that fits the 15 minutes a machine is lent for (about 3.5 of them are its
# start): every step has a planned time, which is also its limit there, and they add up to
# at most RUN_SECONDS (540). Each result is written to $OUT as soon as it exists, so a call
# cut short still returns what it measured.
#
#   here:   bench/gpu-check.sh prepare    # .devdeps/ (GStreamer, gtest, OpenCV core) and
#                                         # .gpu-carry/ (reference script, quality set),
#                                         # made with this checkout's build/
#   there:  device run, carry [".devdeps", ".gpu-carry"], timeout_s 600:
#           bench/gpu-check.sh run        # the plan below, in order of importance
#   here:   bench/gpu-check.sh --dry-run prepare run
#                                         # prints the plan and its total, then rehearses
#                                         # every step on the CPU (small sizes, build/)
#
# The plan (step, planned device seconds): environment; build (only the targets the steps
# use, libtorch_cuda linked, CUDA on, else it stops); probe; the CUDA tests of core and
# element (PEFM_REQUIRE_CUDA=1: a skip is a failure); the core CUDA tests again under
# compute-sanitizer memcheck (every kernel); pefm-bench fp16/bf16/fp32 at batch 1/16/64,
# fp16/bf16 also channels-last, fp16 also with frames and maps on the device;
# the element on 1080p RGB and NV12 frames, overlay none and drawn; pefm-eval on CUDA
# against the CPU's metrics (fp32 to 0.002, fp16 overall to 0.01, per type reported); the
# plain-PyTorch reference on the same GPU.
#
# A missing prerequisite stops the run at once with one "FAILED:" line; a failing step is
# logged and the next one still runs. Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
stages=()
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    prepare|run) stages+=("$a") ;;
    *) echo "usage: bench/gpu-check.sh [--dry-run] prepare|run ..." >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || { echo "usage: bench/gpu-check.sh [--dry-run] prepare|run ..." >&2; exit 2; }

OUT=${OUT:-bench/gpu-out}
mkdir -p "$OUT"
CARRY=.gpu-carry
failures=0
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/gpu-check.log"; }
die() { log "FAILED: $*"; exit 1; }
step_failed() { log "FAILED: $*"; failures=$((failures + 1)); }
# The device call's plan: each step's planned seconds, its time limit there.
RUN_SECONDS=${RUN_SECONDS:-540}
PLAN=(environment:15 build:200 probe:10 cuda-tests:85 memcheck:50 bench:60 pipeline:45 quality:40 ref:30)
# The dry run's limits are the plan's times SCALE times: here a busy 2-core CPU runs them.
SCALE=1
[ $dry = 1 ] && SCALE=${DRY_RUN_SCALE:-3}
deadline=$(( $(date +%s) + RUN_SECONDS ))
step_deadline=$deadline
# step SECONDS LOGFILE COMMAND...: runs with a time limit (the smaller of SECONDS and what
# is left of its plan step and of the call), output to $OUT/LOGFILE.
step() {
  local limit=$(( $1 * SCALE )) file=$2 left
  shift 2
  left=$(( step_deadline - $(date +%s) ))
  [ "$limit" -lt "$left" ] || limit=$left
  if [ "$limit" -le 2 ]; then
    echo "no time left in this step's plan" > "$OUT/$file"
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
  FRAMES_DRAWN=10
  PRECISIONS="fp32 bf16"
  BENCH_RUNS="fp32 bf16 bf16:nhwc bf16:resident"
else
  BUILD=build-gpu
  DEVICE=cuda
  SMALL=()
  BATCHES=1,16,64
  ITER=(--iterations 50 --warmup 5)
  FRAME=1920x1080
  FRAMES=200
  FRAMES_DRAWN=60  # the overlay is drawn on the CPU, 50-80 ms a 1080p frame (bench/RESULTS.md)
  PRECISIONS="fp16 bf16 fp32"
  BENCH_RUNS="fp16 bf16 fp32 fp16:nhwc bf16:nhwc fp16:resident"
fi
export GST_PLUGIN_PATH_1_0=$PWD/$BUILD/gst-plugin
BENCH=$BUILD/core/tools/pefm-bench
EVAL=$BUILD/core/tools/pefm-eval

# ------------------------------------------------------------------ prepare (here)
prepare() {
  # here, with this checkout's build/ (not the GPU machine's build-gpu/)
  local shared=${PEFM_SHARED_DIR:-../shared} BUILD=${BUILD_DIR:-build} EVAL
  EVAL=$BUILD/core/tools/pefm-eval
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
  step_deadline=$(( $(date +%s) + 3600 ))
  step 1800 prepare-train.log "$BUILD/core/tools/pefm-train" --data "$data/train/good" --output "$q/model.pt" \
      --device cpu --folds 0 "${train[@]}" || die "training the quality model (see prepare-train.log)"
  rm -rf "$q/src"
  step 900 prepare-eval.log "$EVAL" --model "$q/model.pt" --data "$q/data" --device cpu --json "$q/cpu-eval.json" \
      || die "evaluating the quality model on the CPU (see prepare-eval.log)"
  log "prepare: $CARRY holds $(du -sh "$CARRY" | cut -f1); with .devdeps $(du -shc "$CARRY" .devdeps 2>/dev/null | tail -1 | cut -f1) (64 MiB travel limit)"
}

# ------------------------------------------------------------------ the run (there)
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

# Only what the steps run: the tools, the two CUDA test suites, the plugin.
TARGETS=(core/tools/pefm-bench core/tools/pefm-eval tests/test-core tests/test-element gst-plugin/libgstpefm.so)

build() {
  [ $dry = 1 ] && { log "build: dry run: the existing $BUILD/ (there: ninja ${TARGETS[*]})"; return; }
  if [ ! -f "$BUILD/build.ninja" ]; then
    step 40 setup.log meson setup "$BUILD" -Dtorch_dir="$TORCH_ROOT" -Dcuda=enabled -Dgpu_arch=90 -Dexamples=disabled \
        -Dtests=enabled -Dintrospection=disabled || die "meson setup (see setup.log)"
  fi
  # -k 0: one run lists every compile error against this LibTorch, not just the first.
  step 200 build.log ninja -C "$BUILD" -k 0 "${TARGETS[@]}" \
      || die "build (see build.log): $(grep -m3 -E 'error' "$OUT/build.log" | tr '\n' ' ' | cut -c1-400)"
  log "build: ok, $(grep -ci 'warning' "$OUT/build.log") warning lines"
  local needed
  needed=$(readelf -d "$BUILD/core/libpefm-core.so" | grep -c 'NEEDED.*libtorch_cuda')
  [ "$needed" -ge 1 ] || die "libpefm-core.so does not need libtorch_cuda.so: CUDA would stay off"
}

probe() {
  step 10 probe.log "$BENCH" --device "$DEVICE" --batch-sizes 1 --iterations 1 --warmup 0 \
      --source mobilenet_v2 --target resnet18 --latent 8,8,8 --image-size 64 \
      || die "pefm-bench --device $DEVICE does not run (see probe.log): CUDA is not on"
  log "probe: $(grep -m1 -iE 'device|cuda|cpu' "$OUT/probe.log")"
}

CUDA_FILTER='PreprocessKernel.*:YuvKernel.*:DetectorCuda.*:FrameDetectorCuda.*:WebStreamCuda.*:AnomalyMapKernel.*:ElementCuda.*:CudaLink.*'
# memcheck: the cases that launch each kernel (preprocess both filters and dtypes, YUV, the
# map), not the ones that repeat them through whole detectors
MEMCHECK_FILTER='PreprocessKernel.*:YuvKernel.*:AnomalyMapKernel.*:DetectorCuda.Fp32OnCudaMatchesTheCpu:DetectorCuda.Fp16AndBf16OnCudaMatchTheCpuFp32'

cuda_tests() {
  local t limit
  for t in core element; do
    local exe=$BUILD/tests/test-$t
    [ -x "$exe" ] || { step_failed "tests: $exe not built"; continue; }
    limit=45; [ $t = element ] && limit=40
    # a kernel fault is reported at its launch, not later; a skip is a failure there
    if step $limit "cuda-$t.log" env GST_PLUGIN_PATH_1_0="$GST_PLUGIN_PATH_1_0" \
        $([ $dry = 0 ] && echo "PEFM_REQUIRE_CUDA=1 CUDA_LAUNCH_BLOCKING=1") "$exe" --gtest_filter="$CUDA_FILTER"; then
      log "cuda tests $t: $(grep -E '^\[  (PASSED|SKIPPED|FAILED) ' "$OUT/cuda-$t.log" | tr -s ' ' | tr '\n' ' ')"
    else
      step_failed "cuda tests $t (see cuda-$t.log): $(grep -E '^\[  FAILED  \]' "$OUT/cuda-$t.log" | head -5 | tr '\n' ' ')"
    fi
  done
}

# Every kernel under memcheck: the core CUDA tests launch each of them. PyTorch's caching
# allocator carves tensors out of large blocks, in which memcheck would not see a write past
# one tensor: caching off.
memcheck() {
  [ $dry = 1 ] && { log "memcheck: dry run: not here (no GPU)"; return; }
  local cs
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  [ -x "$cs" ] || { log "memcheck: compute-sanitizer not found; the CUDA tests ran with CUDA_LAUNCH_BLOCKING=1 only"; return; }
  if step 50 memcheck.log env PYTORCH_NO_CUDA_MEMORY_CACHING=1 PEFM_REQUIRE_CUDA=1 "$cs" --tool memcheck \
      --error-exitcode 99 --print-limit 20 "$BUILD/tests/test-core" --gtest_filter="$MEMCHECK_FILTER"; then
    log "memcheck: $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")"
  else
    step_failed "memcheck (see memcheck.log): $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log")"
  fi
}

# Each precision as the element runs it (NCHW on CUDA, frames from host memory, maps back);
# fp16 and bf16 also channels-last, and fp16 with frames and maps on the device (the
# detector alone, no upload or download).
bench() {
  local run prec name limit extra
  for run in $BENCH_RUNS; do
    prec=${run%%:*}
    extra=()
    case $run in
      *:nhwc) extra=(--layout nhwc) ;;
      *:resident) extra=(--resident) ;;
    esac
    name=bench-${run/:/-}
    limit=9; [ "$prec" = fp32 ] && limit=12
    if step $limit "$name.log" "$BENCH" --device "$DEVICE" --precision "$prec" --batch-sizes "$BATCHES" "${ITER[@]}" \
        "${SMALL[@]}" "${extra[@]}" --json "$OUT/$name.json"; then
      log "bench $run: $(grep -E '^ +[0-9]+ ' "$OUT/$name.log" | tr -s ' ' | tr '\n' ';')"
    else
      step_failed "bench $run (see $name.log)"
    fi
  done
}

ref() {
  local ref=$CARRY/pefm_ref.py
  if [ $dry = 1 ] && [ ! -f "$ref" ]; then
    log "ref: $ref absent (no ../shared here); not checked"
    return
  fi
  [ -f "$ref" ] || { step_failed "ref: $ref not carried (run 'bench/gpu-check.sh prepare' here)"; return; }
  if [ $dry = 1 ]; then
    python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$ref" || step_failed "ref: $ref does not parse"
    log "ref: $ref present (not run: no GPU here)"
    return
  fi
  if step 30 ref-fp16.log python3 "$ref" --device cuda --precision fp16 --batch-sizes "$BATCHES"; then
    log "ref fp16: $(tail -1 "$OUT/ref-fp16.log")"
  else
    step_failed "ref (see ref-fp16.log)"
  fi
}

# The element on full-HD frames as a camera gives them (RGB, and NV12 as decoders do),
# overlay off and drawn.
pipeline() {
  local fmt ov frames limit
  for fmt in RGB NV12; do
    for ov in none heatmap+contours; do
      frames=$FRAMES limit=9
      [ "$ov" = none ] || frames=$FRAMES_DRAWN limit=13
      if step $limit "pipeline-$fmt-$ov.log" "$BENCH" --device "$DEVICE" --precision "${PRECISIONS%% *}" --batch-sizes 1 \
          --iterations 1 --warmup 0 "${SMALL[@]}" --pipeline "$FRAME" --pipeline-format "$fmt" \
          --pipeline-frames "$frames" --overlay "$ov" --json "$OUT/pipeline-$fmt-$ov.json"; then
        log "pipeline $FRAME $fmt overlay=$ov: $(grep -E 'pipeline videotestsrc' "$OUT/pipeline-$fmt-$ov.log")"
      else
        step_failed "pipeline $fmt overlay=$ov (see pipeline-$fmt-$ov.log)"
      fi
    done
  done
}

# pefm-eval on the device against the CPU's metrics on the same images: fp32 must give
# them (maps within rounding), fp16 the overall metrics within 0.01 (one rank swap among
# a type's few images moves that type's AUROC by more: per-type figures are reported, not
# gated).
quality() {
  local q=$CARRY/quality prec
  [ -f "$q/model.pt" ] && [ -f "$q/cpu-eval.json" ] || { step_failed "quality: $q not carried (run 'bench/gpu-check.sh prepare' here)"; return; }
  for prec in fp32 "${PRECISIONS%% *}"; do
    if step 20 "eval-$prec.log" "$EVAL" --model "$q/model.pt" --data "$q/data" --device "$DEVICE" --precision "$prec" \
        --json "$OUT/eval-$DEVICE-$prec.json"; then
      local tol=0.002
      [ "$prec" = fp32 ] || tol=0.01
      if python3 - "$q/cpu-eval.json" "$OUT/eval-$DEVICE-$prec.json" "$tol" "$prec" > "$OUT/eval-$prec-compare.txt" <<'PY'
import json, sys
a, b, tol, prec = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3]), sys.argv[4]
def metrics(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from metrics(v, prefix + k + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and any(m in k for m in ("auroc", "aupro", "f1")):
            yield prefix + k, v
ma, mb = dict(metrics(a)), dict(metrics(b))
gated = {k for k in ma if prec == "fp32" or "." not in k}  # fp16: the overall metrics
bad = [f"{k}: cpu {ma[k]:.4f} vs {mb.get(k)}" for k in sorted(gated) if k not in mb or abs(ma[k] - mb[k]) > tol]
other = [f"{k}: cpu {ma[k]:.4f} vs {mb.get(k)}" for k in sorted(set(ma) - gated)]
print(f"{len(gated)} metrics gated at {tol}" + (f", {len(other)} reported" if other else ""))
print("\n".join(bad) if bad else "all gated metrics within tolerance")
if other:
    print("reported: " + "; ".join(other))
sys.exit(1 if bad or not gated else 0)
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

# The plan, printed (and checked against RUN_SECONDS) before anything runs.
print_plan() {
  local p total=0
  for p in "${PLAN[@]}"; do
    printf '  %-12s %4d s\n' "${p%%:*}" "${p##*:}"
    total=$(( total + ${p##*:} ))
  done
  printf '  %-12s %4d s (at most %d s a call; the machine'"'"'s start is outside it)\n' total "$total" "$RUN_SECONDS"
  [ "$total" -le "$RUN_SECONDS" ] || { echo "the plan takes $total s, more than RUN_SECONDS=$RUN_SECONDS"; return 1; }
}

run() {
  local p name
  for p in "${PLAN[@]}"; do
    name=${p%%:*}
    step_deadline=$(( $(date +%s) + ${p##*:} * SCALE ))
    [ "$step_deadline" -le "$deadline" ] || step_deadline=$deadline
    local t0
    t0=$(date +%s)
    case "$name" in
      environment) environment ;;
      build) build ;;
      probe) probe ;;
      cuda-tests) cuda_tests ;;
      memcheck) memcheck ;;
      bench) bench ;;
      pipeline) pipeline ;;
      quality) quality ;;
      ref) ref ;;
    esac
    log "$name: $(( $(date +%s) - t0 )) s of ${p##*:} planned"
  done
}

log "gpu-check: ${stages[*]}$([ $dry = 1 ] && echo ' (dry run on the CPU)')"
# The plan first, before anything runs: a plan over RUN_SECONDS stops here.
log "plan of the device call:"
print_plan > "$OUT/plan.txt" || die "$(tail -1 "$OUT/plan.txt")"
tee -a "$OUT/gpu-check.log" < "$OUT/plan.txt"
for s in "${stages[@]}"; do
  deadline=$(( $(date +%s) + RUN_SECONDS * SCALE ))
  case "$s" in
    prepare) prepare ;;
    run) run ;;
  esac
done
log "gpu-check: done, $failures failed step(s)"
[ $failures -eq 0 ]
