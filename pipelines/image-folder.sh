#!/usr/bin/env bash
# A folder of images -> OUT_DIR/<stem>.png with the heat map and contours drawn in (in
# colour: gray images are converted to RGB first), and
# OUT_DIR/results.jsonl with one JSON line per image (score, decision, regions), read
# from GstPefmMeta by the pefm-results example application. One pipeline per image type
# reads all the files of that type (multifilesrc), so the model loads once. When a.png
# and a.jpg are both there, the JPEG's overlay is a.jpg.png.
#   pipelines/image-folder.sh MODEL.pt IN_DIR OUT_DIR [pefmfilter properties...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 3 ] || { sed -n '2,8p' "$0"; exit 2; }
model=$1 in=$2 out=$3
shift 3
[ -d "$in" ] || { echo "image-folder.sh: '$in' is not a folder" >&2; exit 2; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > "$out/results.jsonl"
total=0
declare -A written
for kind in png jpeg; do
  if [ $kind = png ]; then pattern='.*\.png'; caps=image/png; dec=pngdec; else pattern='.*\.jpe?g'; caps=image/jpeg; dec=jpegdec; fi
  n=0
  : > "$tmp/$kind.names"
  while IFS= read -r -d '' f; do
    ln -s "$(realpath "$f")" "$tmp/$kind-$(printf %06d $n)"
    basename "$f" >> "$tmp/$kind.names"
    n=$((n + 1))
  done < <(find "$in" -maxdepth 1 -type f -regextype posix-extended -iregex "$pattern" -print0 | sort -z)
  [ $n -gt 0 ] || continue
  pefm-results --names "$tmp/$kind.names" \
    "multifilesrc location=$tmp/$kind-%06d index=0 stop-index=$((n - 1)) caps=$caps ! $dec ! videoconvert ! video/x-raw,format=RGB ! \
     pefmfilter model=\"$model\" overlay=heatmap+contours $* ! tee name=t \
     t. ! queue ! videoconvert ! pngenc ! multifilesink location=$tmp/out-$kind-%06d.png \
     t. ! queue ! appsink name=results" >> "$out/results.jsonl"
  i=0
  while IFS= read -r name; do
    target="${name%.*}.png"
    [ -z "${written[$target]:-}" ] || target="$name.png"
    written[$target]=1
    mv "$tmp/out-$kind-$(printf %06d $i).png" "$out/$target"
    i=$((i + 1))
  done < "$tmp/$kind.names"
  total=$((total + n))
done
[ $total -gt 0 ] || { echo "image-folder.sh: no PNG or JPEG files in '$in'" >&2; exit 2; }
echo "wrote $total overlay images and results.jsonl to $out/"
