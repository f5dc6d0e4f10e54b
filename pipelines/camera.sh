#!/usr/bin/env bash
# A live camera -> pefmfilter -> window, overlays on; the anomalous frames' results printed
# as JSON lines (pefmpublish).
#   pipelines/camera.sh MODEL [CAMERA] [pefmfilter properties...]
# CAMERA:
#   /dev/videoN           a V4L2 camera (the default: /dev/video0)
#   gige[:NAME]           a GigE Vision / USB3 Vision camera through Aravis (aravissrc; NAME
#                         as arv-tool-0.8 lists it, else the first camera found). Its pixel
#                         format: PEFM_GIGE_FORMAT=bayer (default: bayer2rgb demosaics),
#                         mono8, or mono16 (GRAY16_LE as the camera sends it; a 12-bit
#                         camera: PEFM_GIGE_BITS=12, pefmfilter's bit-depth)
#   rtsp://HOST[:PORT]/PATH  a network camera (rtspsrc; a camera that signals its clock,
#                         RFC 7273, stamps each frame's "utc" itself)
# PEFM_SINK (default autovideosink) replaces the window, e.g. "fakesink sync=false";
# PEFM_RESULTS=FILE writes every frame's line to FILE instead of the anomalous ones to stdout.
#
# Where the queues are, and why:
# - The camera captures into a handful of buffers in its own thread. If inference is
#   slower than the camera, the camera must not stall waiting for pefmfilter: the queue
#   after it is leaky=downstream (drops the oldest frame) with max-size-buffers=2. A frame
#   dropped there never reached the inspector: loss at the source, counted by the queue (its
#   "overrun" signal) and visible as gaps in the buffers' offsets (v4l2src numbers frames),
#   not in pefm's "frame" numbers, which count the frames that reached pefmfilter.
#   Where every part must be inspected (triggered line cameras), use a camera trigger that
#   waits for the inspector instead, and set PEFM_LEAKY=no: nothing is dropped, the camera
#   waits (or, free-running, loses frames in its own driver, which Aravis counts).
# - pefmfilter reports its processing time in the LATENCY query, so autovideosink
#   (sync=true) shows each frame at capture time + that latency, not late.
# - pefmfilter never drops a frame itself (skip-late=false, the default); with
#   skip-late=true frames that are already late at the sink pass uninspected and are
#   reported (inspected=false in the message and the meta).
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || { sed -n '2,15p' "$0"; exit 2; }
model=$1
camera=${2:-/dev/video0}
shift $(( $# >= 2 ? 2 : 1 ))
# gst-launch-1.0 escapes a word's spaces but not its quotes: a quote or backslash in a
# name would end the word and could add elements.
for value in "$model" "$camera" "${PEFM_RESULTS:-}" "${PEFM_GIGE_BITS:-}"; do
  case "$value" in *'"'* | *"'"* | *'\'*) echo "a quote or backslash in '$value'" >&2; exit 2 ;; esac
done

case "$camera" in
  gige | gige:*)
    name=${camera#gige}
    name=${name#:}
    src=(aravissrc)
    [ -z "$name" ] || src+=("camera-name=$name")
    case "${PEFM_GIGE_FORMAT:-bayer}" in
      bayer) src+=(! video/x-bayer ! bayer2rgb) ;;
      mono8) src+=(! video/x-raw,format=GRAY8) ;;
      mono16) src+=(! video/x-raw,format=GRAY16_LE)
              [ -z "${PEFM_GIGE_BITS:-}" ] || set -- "bit-depth=$PEFM_GIGE_BITS" "$@" ;;
      *) echo "PEFM_GIGE_FORMAT must be bayer, mono8 or mono16" >&2; exit 2 ;;
    esac
    ;;
  rtsp://* | rtsps://*)
    # the video stream only: a camera's audio stream would otherwise take decodebin
    src=(rtspsrc "location=$camera" latency=200 add-reference-timestamp-meta=true ! application/x-rtp,media=video
         ! decodebin) ;;
  *)
    [ -e "$camera" ] || { echo "no camera at $camera" >&2; exit 1; }
    src=(v4l2src "device=$camera") ;;
esac
queue=(queue max-size-buffers=2 max-size-bytes=0 max-size-time=0)
[ "${PEFM_LEAKY:-yes}" = no ] || queue+=(leaky=downstream)
if [ -n "${PEFM_RESULTS:-}" ]; then
  publish=(pefmpublish method=file "location=$PEFM_RESULTS")
else
  publish=(pefmpublish frames=anomalous)
fi
read -r -a sink <<< "${PEFM_SINK:-autovideosink}"
exec gst-launch-1.0 -q -e "${src[@]}" ! videoconvert ! "${queue[@]}" ! \
  pefmfilter "model=$model" "$@" ! "${publish[@]}" ! videoconvert ! "${sink[@]}"
