#!/usr/bin/env bash
# pipelines/camera.sh against real camera protocols on this machine, every frame checked:
# - RTSP: pipelines/rtsp-serve.py serves the sample video on 127.0.0.1 (gst-rtsp-server),
#   camera.sh reads it with rtspsrc;
# - GigE Vision: Aravis's software camera (arv-fake-gv-camera-0.8) and camera.sh with
#   aravissrc, both inside a network namespace of this script's own with loopback only
#   (elsewhere Aravis would stream to another interface's address), per frame in Bayer
#   (demosaiced by bayer2rgb) and in 16-bit mono (GRAY16_LE into pefmfilter), and as a
#   continuous web (continuous=true, mono8).
# Each run is stopped as systemd stops a camera service (SIGINT: an end of stream); every
# frame that reached pefmfilter must have a line, numbered without a gap, inspected.
#   tests/pipelines/cameras.sh MODEL WEB_MODEL WORK_DIR
# Needs root for the namespace (ip netns); CI=true makes a missing piece a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 3 ] || { sed -n '12p' "$0" >&2; exit 2; }
model=$(realpath "$1")
web_model=$(realpath "$2")
work=$(realpath -m "$3")
mkdir -p "$work"
fail() { echo "cameras: FAILED: $*" >&2; exit 1; }
missing() {
  if [ -n "${CI:-}" ]; then fail "$*"; fi
  echo "cameras: SKIPPED: $*" >&2
}
source pipelines/env.sh
source tests/pipelines/lib.sh

pids=()
netns=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$netns" ] || ip netns del "$netns" 2>/dev/null || true
}
trap cleanup EXIT

# Every frame line inspected, numbered 0..n-1, from `source`; the lines schema-valid.
check_lines() {
  python3 - "$1" "$2" "${3:-}" <<'PY' || fail "$1"
import json, sys
path, source, continuous = sys.argv[1], sys.argv[2], sys.argv[3] == "continuous"
frames = [l for l in map(json.loads, open(path)) if l["type"] == "frame"]
numbers = [l["frame"] for l in frames]
assert numbers == list(range(len(frames))), f"frame numbers with a gap: {numbers}"
for l in frames:
    assert l["decision"] in ("normal", "anomalous"), f"frame {l['frame']} not inspected: {l['decision']}"
    assert l["source"] == source, f"source {l['source']!r}, not {source!r}"
    assert l["utc_source"] in ("capture", "reference:timestamp/x-ntp"), l["utc_source"]
    assert l["model"] and len(l["model"]["sha256"]) == 64, l["model"]
if continuous:
    rows = [l["web_row"] for l in frames]
    step = rows[1] - rows[0]
    assert step > 0 and rows == [rows[0] + i * step for i in range(len(rows))], f"web rows with a gap: {rows}"
PY
  python3 tests/schema/validate_results.py docs/results.schema.json "$1" > "$1.schema" || { cat "$1.schema"; fail "$1: not valid against the schema"; }
}

# ---- RTSP
shared=${PEFM_SHARED_DIR:-../shared}
video=$shared/media/bottle-detection.mp4
if [ ! -f "$video" ]; then
  missing "no $video for the RTSP server"
elif ! /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null; then
  missing "gst-rtsp-server's Python bindings (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi)"
else
  pipelines/rtsp-serve.py "$video" --port 0 > "$work/rtsp-server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^rtsp-serve: rtsp://' "$work/rtsp-server.log" && break; sleep 0.1; done
  url=$(sed -n 's/^rtsp-serve: //p' "$work/rtsp-server.log")
  [ -n "$url" ] || { cat "$work/rtsp-server.log"; fail "rtsp-serve.py did not start"; }
  rm -f "$work/rtsp.jsonl"
  PEFM_SINK="fakesink sync=false" PEFM_LEAKY=no PEFM_RESULTS="$work/rtsp.jsonl" \
    run_until "$work/rtsp.jsonl" 20 "$work/rtsp.log" pipelines/camera.sh "$model" "$url" overlay=none
  check_lines "$work/rtsp.jsonl" "rtspsrc:$url"
  echo "cameras: RTSP ok ($(frames_in "$work/rtsp.jsonl") frames from $url, every one inspected)"
fi

# ---- GigE Vision, in a network namespace with loopback only
if [ "$(id -u)" -ne 0 ]; then
  missing "GigE Vision: a network namespace needs root"
elif ! command -v arv-fake-gv-camera-0.8 >/dev/null || ! gst-inspect-1.0 aravissrc >/dev/null 2>&1; then
  missing "Aravis (Debian: aravis-tools, libaravis-0.8-0 with aravissrc)"
else
  netns=pefm-cameras-$$
  ip netns add "$netns"
  ip netns exec "$netns" ip link set lo up
  ip netns exec "$netns" arv-fake-gv-camera-0.8 -i 127.0.0.1 -s PEFM01 > "$work/gige-camera.log" 2>&1 &
  pids+=($!)
  # ready once a client finds it
  for _ in $(seq 50); do
    ip netns exec "$netns" gst-launch-1.0 -q aravissrc camera-name=Aravis-PEFM01 num-buffers=1 ! fakesink \
      > /dev/null 2>&1 && break
    sleep 0.2
  done
  rm -f "$work/gige.jsonl" "$work/gige-mono16.jsonl" "$work/gige-web.jsonl"
  PEFM_SINK="fakesink sync=false" PEFM_LEAKY=no PEFM_RESULTS="$work/gige.jsonl" \
    run_until "$work/gige.jsonl" 10 "$work/gige.log" ip netns exec "$netns" pipelines/camera.sh "$model" gige:Aravis-PEFM01 overlay=none
  check_lines "$work/gige.jsonl" "aravissrc:Aravis-PEFM01"
  # 16-bit mono frames as the camera sends them (GRAY16_LE), mapped by pefmfilter bit-depth
  PEFM_SINK="fakesink sync=false" PEFM_LEAKY=no PEFM_RESULTS="$work/gige-mono16.jsonl" PEFM_GIGE_FORMAT=mono16 \
    run_until "$work/gige-mono16.jsonl" 10 "$work/gige-mono16.log" ip netns exec "$netns" pipelines/camera.sh "$model" gige:Aravis-PEFM01 overlay=contours
  check_lines "$work/gige-mono16.jsonl" "aravissrc:Aravis-PEFM01"
  PEFM_SINK="fakesink sync=false" PEFM_LEAKY=no PEFM_RESULTS="$work/gige-web.jsonl" PEFM_GIGE_FORMAT=mono8 \
    run_until "$work/gige-web.jsonl" 6 "$work/gige-web.log" ip netns exec "$netns" pipelines/camera.sh "$web_model" gige:Aravis-PEFM01 continuous=true overlay=none
  check_lines "$work/gige-web.jsonl" "aravissrc:Aravis-PEFM01" continuous
  echo "cameras: GigE Vision ok (software camera in namespace $netns: $(frames_in "$work/gige.jsonl") Bayer frames," \
       "$(frames_in "$work/gige-mono16.jsonl") 16-bit mono frames," \
       "$(frames_in "$work/gige-web.jsonl") mono8 buffers as one web, every one inspected)"
fi
