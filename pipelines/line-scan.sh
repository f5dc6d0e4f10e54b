#!/usr/bin/env bash
# Line-scan strip (one very wide image, e.g. 8192x512 from a line-scan camera) -> tiles of
# native pixels batched through the detector -> heat map stitched at frame scale -> PNG
# with overlays, and the result as a JSON line. Resizing such a strip to 256x256 would
# erase small defects; tiling keeps the native resolution. Train the model with
# `pefm-train --tile 256` on strips of the same product; the element then tiles the same
# way by default. Without STRIP.png, a 4096x256 synthetic strip is used.
# A camera pipeline has the same shape: aravissrc ! videoconvert ! pefmfilter ... .
#   pipelines/line-scan.sh MODEL.pt OUT.png [STRIP.png] [pefmfilter properties...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 2 ] || { sed -n '2,9p' "$0"; exit 2; }
model=$1 output=$2
shift 2
if [ $# -ge 1 ] && [ -f "$1" ]; then
  source_desc="filesrc location=\"$1\" ! decodebin"
  shift
else
  source_desc="videotestsrc num-buffers=1 pattern=checkers-8 ! video/x-raw,width=4096,height=256"
fi
pefm-results "$source_desc ! videoconvert ! video/x-raw,format=RGB ! pefmfilter model=\"$model\" tile-size=256 tile-overlap=32 $* ! \
  tee name=t t. ! queue ! videoconvert ! pngenc ! filesink location=\"$output\" t. ! queue ! appsink name=results"
echo "wrote $output"
