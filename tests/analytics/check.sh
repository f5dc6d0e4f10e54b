#!/usr/bin/env bash
# pefmfilter's GStreamer >= 1.24 path (GstAnalyticsRelationMeta beside the ROI metas) cannot
# be built against Debian 12's GStreamer 1.22. This compiles it (syntax and types, all
# warnings as errors) against the real 1.26 headers of Debian 13, downloaded from Debian's
# archive, with the flags the build uses for gstpefmfilter.cpp.
#   tests/analytics/check.sh [BUILD_DIR]      (default build/)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
WORK=$(realpath -m "$BUILD/analytics-check")
[ -f "$BUILD/compile_commands.json" ] || { echo "analytics: no $BUILD/compile_commands.json (configure first)"; exit 1; }
mkdir -p "$WORK/lists/partial" "$WORK/debs" "$WORK/root"
if [ ! -f "$WORK/root/usr/include/gstreamer-1.0/gst/analytics/analytics.h" ]; then
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$WORK/sources.list"
  APT=(-o "Dir::Etc::sourcelist=$WORK/sources.list" -o "Dir::Etc::sourceparts=$WORK/none" \
       -o "Dir::State::Lists=$WORK/lists" -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
  apt-get "${APT[@]}" update -qq > "$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; exit 1; }
  (cd "$WORK/debs" && apt-get "${APT[@]}" download libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
     libgstreamer-plugins-bad1.0-dev >> "$WORK/apt.log" 2>&1) || { cat "$WORK/apt.log"; exit 1; }
  for d in "$WORK"/debs/*.deb; do dpkg-deb -x "$d" "$WORK/root"; done
fi
python3 - "$BUILD" "$WORK/root/usr/include/gstreamer-1.0" <<'PY'
import json, shlex, subprocess, sys
build, include = sys.argv[1], sys.argv[2]
entry = next(c for c in json.load(open(f"{build}/compile_commands.json"))
             if c["file"].endswith("gst-plugin/gstpefmfilter.cpp"))
args, skip = [], False
for a in shlex.split(entry["command"]):
    if skip:
        skip = False
    elif a in ("-o", "-MF", "-MQ"):
        skip = True
    elif a != "-MD":
        args.append(a)
args[1:1] = ["-I" + include]
args += ["-DPEFM_HAVE_GST_ANALYTICS", "-fsyntax-only", "-Werror"]
r = subprocess.run(args, cwd=entry["directory"])
print("analytics: ok (GstAnalyticsRelationMeta path compiles against GStreamer 1.26 headers)" if r.returncode == 0
      else "analytics: FAILED")
sys.exit(r.returncode)
PY
