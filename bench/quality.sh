#!/usr/bin/env bash
# Reproduces the quality figures of bench/RESULTS.md: pefm-train + pefm-eval on MTD and
# MVTec AD transistor (../shared/datasets), per position code and seed, and the
# plain-PyTorch reference (../shared/bench/pefm_ref_train.py, PE add) where Python's torch
# is installed; a table per data set at the end, per defect type and the mean over seeds.
#
#   bench/quality.sh [--data mtd,mvtec-transistor] [--pe add,none,concat,auto] [--seeds 888,1,2]
#                    [--size 128] [--epochs 10] [--latent 64,128,256] [--ref] [--out DIR]
#
# The setting defaults to the CPU one of RESULTS.md (MobileNetV2 pair, 128 px, latent
# 64,128,256, 10 epochs, batch 16, --folds 0 --val-fraction 0: every image trains, the
# threshold plays no part in these metrics). Results (models, eval JSON, logs, table.md) go
# to --out (default bench/quality-out, not tracked). A finished run is not redone: delete
# its JSON to run it again.
set -euo pipefail
cd "$(dirname "$0")/.."

datasets=mtd,mvtec-transistor pes=add,none,concat,auto seeds=888,1,2 size=128 epochs=10
latent=64,128,256 ref=0 out=bench/quality-out
while [ $# -gt 0 ]; do
  case "$1" in
    --data) datasets=$2; shift ;;
    --pe) pes=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --size) size=$2; shift ;;
    --epochs) epochs=$2; shift ;;
    --latent) latent=$2; shift ;;
    --ref) ref=1 ;;
    --out) out=$2; shift ;;
    *) echo "usage: bench/quality.sh [--data LIST] [--pe LIST] [--seeds LIST] [--size S] [--epochs N] [--latent L1,L2,L3] [--ref] [--out DIR]" >&2
       exit 2 ;;
  esac
  shift
done

shared=${PEFM_SHARED_DIR:-../shared}
tools=${PEFM_TOOLS:-build/core/tools}
src=$shared/models/mobilenet_v2_torchvision_imagenet.pth
tgt=$shared/models/mobilenet_v2_tfslim_imagenet.pth
for f in "$tools/pefm-train" "$tools/pefm-eval" "$src" "$tgt"; do
  [ -e "$f" ] || { echo "bench/quality.sh: '$f' is missing (build first: pipelines/setup.sh; backbones: ../shared/models)" >&2; exit 1; }
done
mkdir -p "$out"
echo "bench/quality.sh: commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs" | tee "$out/machine.txt"

IFS=, read -ra dataset_list <<<"$datasets"
IFS=, read -ra pe_list <<<"$pes"
IFS=, read -ra seed_list <<<"$seeds"
for d in "${dataset_list[@]}"; do
  data=$shared/datasets/$d
  [ -d "$data/train/good" ] || { echo "bench/quality.sh: no data set '$data'" >&2; exit 1; }
  for pe in "${pe_list[@]}"; do
    for seed in "${seed_list[@]}"; do
      tag=$d-$pe-s$seed
      [ -s "$out/$tag.json" ] && continue
      echo "== $tag"
      "$tools/pefm-train" --data "$data/train/good" --output "$out/$tag.pt" \
        --source "mobilenet_v2=$src" --target "mobilenet_v2=$tgt" --image-size "$size" --latent "$latent" \
        --epochs "$epochs" --batch-size 16 --seed "$seed" --pe "$pe" --folds 0 --val-fraction 0 \
        >"$out/$tag.train.log" 2>&1 || { echo "pefm-train failed: $out/$tag.train.log" >&2; exit 1; }
      "$tools/pefm-eval" --model "$out/$tag.pt" --data "$data" --json "$out/$tag.json" \
        >"$out/$tag.eval.log" 2>&1 || { echo "pefm-eval failed: $out/$tag.eval.log" >&2; exit 1; }
    done
  done
  if [ $ref = 1 ]; then
    py=
    for p in ${PEFM_PYTHON:-} python3 /usr/bin/python3; do
      if "$p" -c "import torch, torchvision, sklearn, skimage, PIL" 2>/dev/null; then py=$p; break; fi
    done
    if [ -z "$py" ]; then
      echo "bench/quality.sh: the reference needs python3-torch, python3-torchvision, python3-sklearn, python3-skimage, python3-pil" >&2
      exit 1
    fi
    for seed in "${seed_list[@]}"; do
      tag=$d-ref-s$seed
      [ -s "$out/$tag.json" ] && continue
      echo "== $tag"
      # the reference seeds with 888 itself: its seed calls take this run's instead
      PEFM_REF_SIZE=$size "$py" - "$shared/bench/pefm_ref_train.py" "$seed" "$data" "$src" "$tgt" "$epochs" "$latent" \
        >"$out/$tag.log" 2>&1 <<'PY' || { echo "reference failed: $out/$tag.log" >&2; exit 1; }
import runpy, sys
import numpy, torch
script, seed = sys.argv[1], int(sys.argv[2])
torch_seed, numpy_seed = torch.manual_seed, numpy.random.seed
torch.manual_seed = lambda _: torch_seed(seed)
numpy.random.seed = lambda _: numpy_seed(seed)
sys.argv = [script] + sys.argv[3:6] + [sys.argv[6], "mobilenet_v2", sys.argv[7]]
runpy.run_path(script, run_name="__main__")
PY
      python3 -c "import json, sys; r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); \
json.dump({k: r[k] / 100 for k in ('image_auroc', 'pixel_auroc', 'aupro')}, open(sys.argv[2], 'w'))" "$out/$tag.log" "$out/$tag.json"
    done
  fi
done

python3 - "$out" "$datasets" <<'EOF' | tee "$out/table.md"
import glob, json, os, re, statistics, sys
out, datasets = sys.argv[1], sys.argv[2].split(",")
def pct(v):
    return "-" if v is None else f"{100 * v:.2f}"
for d in datasets:
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, f"{d}-*-s*.json"))):
        m = re.match(rf"{re.escape(d)}-(.+)-s(\d+)\.json$", os.path.basename(path))
        if m:
            runs.setdefault(m.group(1), {})[int(m.group(2))] = json.load(open(path))
    if not runs:
        continue
    types = sorted({t for by_seed in runs.values() for j in by_seed.values() for t in j.get("per_type", {})})
    print(f"\n### {d}\n")
    print("| run | seed | image AUROC | pixel AUROC | AUPRO | " + " | ".join(f"{t} (img/px/PRO)" for t in types) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(types))
    for name, by_seed in runs.items():
        rows = []
        for seed, j in sorted(by_seed.items()):
            per = j.get("per_type", {})
            cells = [f"{pct(per[t]['image_auroc'])}/{pct(per[t]['pixel_auroc'])}/{pct(per[t]['aupro'])}" if t in per else "-"
                     for t in types]
            chose = ""
            model = j.get("model", "")
            log = model[:-3] + ".train.log" if model.endswith(".pt") else ""
            if name == "auto" and log and os.path.exists(log):
                c = re.search(r"pe auto: chose (\w+)", open(log).read())
                chose = f" (chose {c.group(1)})" if c else ""
            print(f"| {name}{chose} | {seed} | {pct(j['image_auroc'])} | {pct(j['pixel_auroc'])} | {pct(j['aupro'])} | "
                  + " | ".join(cells) + " |")
            rows.append(j)
        if len(rows) > 1:
            mean = lambda k: statistics.mean(r[k] for r in rows if r.get(k) is not None)
            print(f"| **{name}, mean** | | **{pct(mean('image_auroc'))}** | **{pct(mean('pixel_auroc'))}** | "
                  f"**{pct(mean('aupro'))}** |" + " |" * len(types))
EOF
