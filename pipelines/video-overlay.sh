#!/usr/bin/env bash
# Video file -> pefmfilter (heat map + contours drawn in) -> MJPEG/AVI file, with a line
# per anomalous frame on the terminal (gst-launch -m prints the element's messages).
#   pipelines/video-overlay.sh MODEL.pt INPUT.mp4 OUTPUT.avi [pefmfilter properties...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 3 ] || { sed -n '2,4p' "$0"; exit 2; }
model=$1 input=$2 output=$3
shift 3
gst-launch-1.0 -m -e filesrc location="$input" ! decodebin ! videoconvert ! \
  pefmfilter model="$model" overlay=heatmap+contours emit-messages=true message-mode=anomalous "$@" ! \
  videoconvert ! jpegenc quality=90 ! avimux ! filesink location="$output" | grep -E "pefm, |ERROR|WARNING" || true
[ -s "$output" ] && echo "wrote $output"
