#!/usr/bin/env bash
# A line-scan web from a folder of consecutive strip images (file names in web order, as
# a camera would deliver its buffers), inspected as ONE continuous web (pefmfilter
# continuous=true): tiles straddle strip boundaries, so the heat map has no seam, and each
# defect is reported once, with the strip where it ends, with its extent on the web (rows
# counted from the first strip; millimetres too with pixels-per-mm=...). Writes
# OUT_DIR/NNNNN.png (each strip with its heat map and contours), OUT_DIR/results.jsonl (one
# JSON line per strip, pefm-results' fields; each region with web_y, web_height, web_x,
# web_width, closed_by) and prints the largest regions of the web, one line each.
# Train the model on strips of the same product with `pefm-train --tile T` (the element
# tiles the same way). Try it: `pefm-demo-data --web 8 --out web` writes clean strips to
# train on and a web with a spot across two strips. A camera pipeline has the same shape:
#   aravissrc ! videoconvert ! pefmfilter model=M.pt continuous=true pixels-per-mm=10 ! ...
#   pipelines/line-scan.sh MODEL.pt STRIPS_DIR OUT_DIR [pefmfilter properties...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 3 ] || { sed -n '2,14p' "$0"; exit 2; }
model=$1 in=$2 out=$3
shift 3
[ -d "$in" ] || { echo "line-scan.sh: '$in' is not a folder" >&2; exit 2; }
mkdir -p "$out"
# the overlays are NNNNN.png, the names strips have: never write them over the strips
[ "$(realpath "$in")" != "$(realpath "$out")" ] || { echo "line-scan.sh: OUT_DIR '$out' is the strips folder; give another" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
while IFS= read -r -d '' f; do
  ln -s "$(realpath "$f")" "$tmp/strip-$(printf %06d $n)"
  n=$((n + 1))
done < <(find "$in" -maxdepth 1 -type f -iname '*.png' -print0 | sort -z)
[ $n -gt 1 ] || { echo "line-scan.sh: '$in' holds $n PNG strips; a web needs at least 2" >&2; exit 2; }
pefm-results "multifilesrc location=$tmp/strip-%06d index=0 stop-index=$((n - 1)) caps=image/png,framerate=10/1 ! \
  pngdec ! videoconvert ! video/x-raw,format=RGB ! pefmfilter model=\"$model\" continuous=true overlay=heatmap+contours $* ! \
  tee name=t t. ! queue ! videoconvert ! pngenc ! multifilesink location=\"$out/%05d.png\" t. ! queue ! appsink name=results" \
  > "$out/results.jsonl"
python3 - "$out/results.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
defects = [(l["frame"], r) for l in lines for r in l.get("regions", []) if "web_y" in r]
defects.sort(key=lambda d: -d[1]["area"])
print(f"{len(lines)} strips inspected as one web, {len(defects)} region(s), each reported once; the largest:")
for strip, r in defects[:8]:
    where = f"web rows {r['web_y']}..{r['web_y'] + r['web_height'] - 1}, columns {r['web_x']}..{r['web_x'] + r['web_width'] - 1}"
    if "web_y_mm" in r:
        where += f" ({r['height_mm']:.1f} x {r['width_mm']:.1f} mm at {r['web_y_mm'] / 1000:.4f} m, {r['web_x_mm']:.1f} mm across)"
    print(f"  strip {strip}: {where}, peak {r['peak']:.3f}, {r['closed_by']}")
PY
echo "wrote $out/results.jsonl and $n overlay PNGs to $out/"
