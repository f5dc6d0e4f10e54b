#!/usr/bin/env bash
# The one-command demo on a fresh Debian 12 machine:
#   1. installs dependencies (Debian packages; LibTorch, and ONNX Runtime for the tests, from
#      PyPI) and builds (pipelines/setup.sh);
#   2. trains a model with pefm-train;
#   3. runs the image-folder pipeline (pefmfilter in GStreamer) over sample test images,
#      writing overlay PNGs and a JSON-lines results file;
#   4. scores the model with pefm-eval and writes side-by-side pictures;
#   5. exports the model as an ONNX graph (pefm-export).
# Data and weights it uses, in order of preference:
#   backbones: $PEFM_BACKBONE_DIR/{resnet34,resnet50}.pth (the paper's pair), else the two
#              ImageNet MobileNetV2 trainings in ../shared/models, else RANDOM weights
#              (then the results only demonstrate the plumbing, and it says so);
#   images:    ../shared/datasets/mtd (magnetic tiles, MVTec layout), else a synthetic
#              set made by pefm-demo-data.
# Results go to demo-output/ (or $OUT). QUICK=1 (CI's rehearsal) takes the first 24
# training images and 2 test images of each type, and 1 epoch: the same steps in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
pipelines/setup.sh
source pipelines/env.sh

OUT=${OUT:-demo-output}
SHARED=${PEFM_SHARED_DIR:-$(cd .. && pwd)/shared}
QUICK=${QUICK:-0}
EPOCHS=${EPOCHS:-$([ "$QUICK" = 1 ] && echo 1 || echo 5)}
rm -rf "$OUT"
mkdir -p "$OUT"
say() { printf '\n== %s\n' "$*"; }

plumbing_only=0
if [ -n "${PEFM_BACKBONE_DIR:-}" ] && [ -f "$PEFM_BACKBONE_DIR/resnet34.pth" ] && [ -f "$PEFM_BACKBONE_DIR/resnet50.pth" ]; then
  source_arch=resnet34
  target_arch=resnet50
  backbones="ResNet34 -> ResNet50 from $PEFM_BACKBONE_DIR"
elif [ -f "$SHARED/models/mobilenet_v2_torchvision_imagenet.pth" ] && [ -f "$SHARED/models/mobilenet_v2_tfslim_imagenet.pth" ]; then
  source_arch="mobilenet_v2=$SHARED/models/mobilenet_v2_torchvision_imagenet.pth"
  target_arch="mobilenet_v2=$SHARED/models/mobilenet_v2_tfslim_imagenet.pth"
  backbones="two ImageNet MobileNetV2 trainings from $SHARED/models"
else
  source_arch=mobilenet_v2=random
  target_arch=resnet18=random
  backbones="RANDOM (no weights found)"
  plumbing_only=1
fi

if [ -d "$SHARED/datasets/mtd/train/good" ]; then
  data="$SHARED/datasets/mtd"
  dataset="MTD magnetic tiles from $data"
else
  say "No real images found: generating a synthetic data set"
  pefm-demo-data --out "$OUT/data"
  data="$OUT/data"
  dataset="synthetic brushed metal with drawn scratches and spots ($data)"
  plumbing_only=1
fi
if [ "$QUICK" = 1 ]; then
  # The same layout, a few images of each folder (links, nothing copied).
  quick="$OUT/quick-data"
  for dir in "$data"/train/good "$data"/test/*/; do
    rel=${dir#"$data"/}
    rel=${rel%/}
    mkdir -p "$quick/$rel"
    count=2
    [ "$rel" = train/good ] && count=24
    mapfile -t files < <(find "$dir" -maxdepth 1 -name '*.png' | sort)
    for f in "${files[@]:0:$count}"; do
      ln -s "$(realpath "$f")" "$quick/$rel/"
      mask="$data/ground_truth/${rel#test/}/$(basename "$f" .png)_mask.png"
      if [ "${rel#test/}" != "$rel" ] && [ -f "$mask" ]; then
        mkdir -p "$quick/ground_truth/${rel#test/}"
        ln -s "$(realpath "$mask")" "$quick/ground_truth/${rel#test/}/"
      fi
    done
  done
  data="$quick"
  dataset="$dataset, quick: a few images of each folder"
fi
if [ $plumbing_only = 1 ]; then
  cat <<'WARN'

  ************************************************************************************
  *  DEMONSTRATION OF THE PLUMBING ONLY: real backbone weights and/or real images   *
  *  were not found, so the scores below mean little. See models/README.md.         *
  ************************************************************************************
WARN
fi

say "Training ($backbones; $dataset; $EPOCHS epochs at 128 px)"
pefm-train --data "$data/train/good" --output "$OUT/model.pt" \
  --source "$source_arch" --target "$target_arch" \
  --image-size 128 --latent 64,128,256 --epochs "$EPOCHS" --folds 3 --false-alarm-rate 0.05

say "Pipeline: a folder of test images through pefmfilter"
mkdir -p "$OUT/sample"
for dir in "$data"/test/*/; do
  type=$(basename "$dir")
  # Not `find | sort | head`: under pipefail, sort killed by SIGPIPE when head has its four
  # lines ends the script (exit 141) whenever the folder is large enough.
  mapfile -t files < <(find "$dir" -maxdepth 1 -name '*.png' | sort)
  for f in "${files[@]:0:4}"; do
    cp "$f" "$OUT/sample/${type}_$(basename "$f")"
  done
done
pipelines/image-folder.sh "$OUT/model.pt" "$OUT/sample" "$OUT/overlays"

say "Evaluation (MVTec protocol)"
pefm-eval --model "$OUT/model.pt" --data "$data" --json "$OUT/eval.json" --save-maps "$OUT/eval-maps"

say "The model as an ONNX graph, for other runtimes (docs/onnx.md)"
pefm-export "$OUT/model.pt" --onnx "$OUT/model.onnx"

say "Done. Results:"
cat <<EOF2
  model             $OUT/model.pt
  overlay frames    $OUT/overlays/*.png   (heat map + red contours, drawn by pefmfilter)
  results file      $OUT/overlays/results.jsonl   (one JSON line per image)
  evaluation        $OUT/eval.json, pictures in $OUT/eval-maps/
  ONNX graph        $OUT/model.onnx   (ONNX Runtime, OpenCV dnn, TensorRT, OpenVINO)
  try the element   GST_PLUGIN_PATH=build/gst-plugin gst-inspect-1.0 pefmfilter
EOF2
[ $plumbing_only = 1 ] && echo "  (plumbing demonstration only: random weights and/or synthetic images)"
exit 0
