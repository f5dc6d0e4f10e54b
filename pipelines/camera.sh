#!/usr/bin/env bash
# Live camera (V4L2) -> pefmfilter -> window, overlays on, one bus message per anomalous
# frame printed on the terminal.
#   pipelines/camera.sh MODEL.pt [/dev/video0] [pefmfilter properties...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || { sed -n '2,4p' "$0"; exit 2; }
model=$1
device=${2:-/dev/video0}
shift $(( $# >= 2 ? 2 : 1 ))
[ -e "$device" ] || { echo "no camera at $device" >&2; exit 1; }
exec gst-launch-1.0 -m v4l2src device="$device" ! videoconvert ! \
  pefmfilter model="$model" emit-messages=true message-mode=anomalous "$@" ! \
  videoconvert ! autovideosink sync=false
