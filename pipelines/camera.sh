#!/usr/bin/env bash
# Live camera (V4L2) -> pefmfilter -> window, overlays on, one bus message per anomalous
# frame printed on the terminal.
#   pipelines/camera.sh MODEL.pt [/dev/video0] [pefmfilter properties...]
#
# Where the queues are, and why:
# - v4l2src captures into a handful of driver buffers in its own thread. If inference is
#   slower than the camera, the camera must not stall waiting for pefmfilter: the queue
#   after it is leaky=downstream (drops the oldest frame) with max-size-buffers=2. A frame
#   dropped there never reached the inspector: loss at the source, counted by the queue (its
#   "overrun" signal) and visible as gaps in the buffers' offsets (v4l2src numbers frames),
#   not in pefm's "frame" numbers, which count the frames that reached pefmfilter.
#   Where every part must be inspected (triggered line cameras), use a camera trigger that
#   waits for the inspector instead, and drop leaky=downstream.
# - pefmfilter reports its processing time in the LATENCY query, so autovideosink
#   (sync=true) shows each frame at capture time + that latency, not late.
# - pefmfilter never drops a frame itself (skip-late=false, the default); with
#   skip-late=true frames that are already late at the sink pass uninspected and are
#   reported (inspected=false in the message and the meta).
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || { sed -n '2,4p' "$0"; exit 2; }
model=$1
device=${2:-/dev/video0}
shift $(( $# >= 2 ? 2 : 1 ))
[ -e "$device" ] || { echo "no camera at $device" >&2; exit 1; }
exec gst-launch-1.0 -m v4l2src device="$device" ! videoconvert ! \
  queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! \
  pefmfilter model="$model" emit-messages=true message-mode=anomalous "$@" ! \
  videoconvert ! autovideosink
