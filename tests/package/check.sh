#!/usr/bin/env bash
# The Debian packages as a user gets them: built from the existing build by
# pipelines/package.sh (no second compile), installed on this machine with apt (which
# resolves their dependencies), then used with no environment of the build's: gst-inspect-1.0
# finds pefmfilter without GST_PLUGIN_PATH, pefm-train runs from PATH and looks for backbones
# in the installed models folder, /usr/bin/python3 imports GstPefm, and programs build
# against the -dev packages' pkg-config files and run. Then everything is removed again.
# Needs root (CI) or sudo; refuses to touch a pefm that was installed before.
#   tests/package/check.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
fail() { echo "package check: $*" >&2; exit 1; }
out=$(realpath -m "$build/deb")
pipelines/package.sh "$build" "$out"
debs=("$out"/*.deb)
names=()
for d in "${debs[@]}"; do names+=("$(dpkg-deb -f "$d" Package)"); done
for n in "${names[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$n" 2>/dev/null || true)
  if [ -n "$status" ] && [ "$status" != not-installed ]; then
    fail "$n is on this machine ($status): remove it first (this check installs and removes its own)"
  fi
done
work=$(mktemp -d)
cleanup() {
  $SUDO apt-get purge -y -q "${names[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${debs[@]}" >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log" >&2; fail "apt-get could not install the packages"; }
echo "package check: installed ${names[*]}"
# A user's shell: no variables of the build (GST_PLUGIN_PATH, LD_LIBRARY_PATH,
# GI_TYPELIB_PATH, PEFM_*), a registry of its own.
clean() { env -i PATH=/usr/bin:/bin HOME="$work" GST_REGISTRY="$work/registry.bin" "$@"; }
dpkg -L "${names[@]}" | sort -u >"$work/files.txt"

# Installed binaries look for libraries only in the private LibTorch (no build, toolkit or
# checkout folder of the machine that built them), and find every one.
triplet=$(gcc -print-multiarch)
is_elf() { local LC_ALL=C magic=; IFS= read -r -d '' -n 4 magic 2>/dev/null <"$1"; [ "$magic" = $'\177ELF' ]; }
elves=0
while read -r f; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  is_elf "$f" || continue
  elves=$((elves + 1))
  case "$f" in
    /usr/lib/$triplet/pefm/libtorch/*) ;;  # LibTorch's own, as its wheels ship them ($ORIGIN)
    *)
      rp=$(readelf -d "$f" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
      [ -z "$rp" ] || [ "$rp" = "/usr/lib/$triplet/pefm/libtorch/lib" ] || fail "$f has RUNPATH $rp"
      old_rpath=$(readelf -d "$f" | sed -n 's/.*(RPATH).*\[\(.*\)\]/\1/p')
      [ -z "$old_rpath" ] || fail "$f has an RPATH ($old_rpath)" ;;
  esac
  libs=$(clean ldd "$f" 2>&1) || true
  if grep -q "not found" <<<"$libs"; then echo "$libs" >&2; fail "$f: a library is not found"; fi
  if grep -F "=>" <<<"$libs" | grep -vE "=> (/usr)?/lib" >&2; then fail "$f loads a library from outside /usr (above)"; fi
done <"$work/files.txt"
# the plugin, the libraries, six tools and LibTorch's own at the least
[ "$elves" -ge 10 ] || fail "only $elves ELF files among the installed ones: is_elf is broken"
echo "package check: every installed binary ($elves) finds its libraries in /usr, LibTorch in the private copy"

clean gst-inspect-1.0 pefmfilter >"$work/inspect.txt" 2>&1 || { cat "$work/inspect.txt" >&2; fail "gst-inspect-1.0 pefmfilter failed"; }
pluginsdir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
loaded=$(sed -n 's/^ *Filename *//p' "$work/inspect.txt")
# merged /usr: GStreamer may name it through /lib
[ "$(realpath "$loaded")" = "$(realpath "$pluginsdir/libgstpefm.so")" ] || fail "pefmfilter is loaded from '$loaded', not $pluginsdir"
echo "package check: gst-inspect-1.0 pefmfilter finds $pluginsdir/libgstpefm.so"

# The service: the unit as systemd itself checks it (its launcher installed where it says),
# and the launcher's command for a camera's settings.
unit=/usr/lib/systemd/system/pefm@.service
[ -f "$unit" ] || fail "no $unit"
mkdir -p "$work/unit"
cp "$unit" "$work/unit/pefm@.service"
ln -s pefm@.service "$work/unit/pefm@cam1.service"
verify=$(cd "$work/unit" && systemd-analyze verify --man=no ./pefm@cam1.service 2>&1) || { echo "$verify" >&2; fail "systemd-analyze verify $unit"; }
[ -z "$verify" ] || { echo "$verify" >&2; fail "systemd-analyze verify $unit complains"; }
: >"$work/line.pt"
dry=$(clean env PEFM_DRY_RUN=1 PEFM_SOURCE="videotestsrc ! videoconvert" PEFM_MODEL="$work/line.pt" PEFM_BROKER=127.0.0.1:1883 \
        /usr/libexec/pefm/pefm-service cam1) || fail "/usr/libexec/pefm/pefm-service failed"
grep -q "pefmpublish source-id=cam1 method=mqtt address=127.0.0.1:1883" <<<"$dry" || fail "pefm-service: $dry"
echo "package check: $unit passes systemd-analyze verify; its launcher builds the camera's pipeline"

[ "$(clean sh -c 'command -v pefm-train')" = /usr/bin/pefm-train ] || fail "pefm-train is not /usr/bin/pefm-train on PATH"
version=$(clean pefm-train --version | head -1) || fail "pefm-train --version failed"
[[ $version == "pefm-train "* ]] || fail "pefm-train --version said '$version'"
echo "package check: $version from PATH"
for tool in pefm-eval pefm-bench pefm-export; do
  clean "$tool" --version >/dev/null || fail "$tool --version failed"
done
echo "package check: pefm-eval, pefm-bench and pefm-export run from PATH"
mkdir -p "$work/good"
clean gst-launch-1.0 -q videotestsrc num-buffers=1 ! video/x-raw,width=64,height=64 ! pngenc ! filesink location="$work/good/0.png"
msg=$(clean pefm-train --data "$work/good" --output "$work/m.pt" --source resnet34 2>&1) && fail "pefm-train trained without weights"
grep -q "/usr/share/pefm/models/resnet34.pth" <<<"$msg" || { echo "$msg" >&2; fail "pefm-train does not look in /usr/share/pefm/models"; }
echo "package check: pefm-train looks for backbones in /usr/share/pefm/models"

clean /usr/bin/python3 -c "
import gi
gi.require_version('Gst', '1.0')
gi.require_version('GstPefm', '1.0')
from gi.repository import Gst, GstPefm
Gst.init(None)
buf = Gst.Buffer.new_allocate(None, 4, None)
meta = GstPefm.buffer_add_pefm_meta(buf)
assert meta is not None and meta.get_n_regions() == 0
print('package check: /usr/bin/python3 imports GstPefm and attaches a meta')
"

# The -dev packages: pkg-config files that compile and link a program against the
# installed headers and libraries (C for the meta; C++ against libpefm-core, LibTorch-free
# headers, its private LibTorch found through the RUNPATH).
cat >"$work/meta.c" <<'C'
#include <gst/pefm/gstpefmmeta.h>
int main (void) { gst_init (NULL, NULL); return gst_pefm_meta_api_get_type () == 0; }
C
for pc in gstpefmmeta-1.0 pefm-core; do
  [ "$(clean pkg-config --variable=pcfiledir $pc)" = "/usr/lib/$triplet/pkgconfig" ] || fail "pkg-config finds $pc elsewhere"
done
cc "$work/meta.c" -o "$work/meta" $(clean pkg-config --cflags --libs gstpefmmeta-1.0) && clean "$work/meta" ||
  fail "a program using gstpefmmeta-1.0 does not build or run"
cat >"$work/core.cpp" <<'CPP'
#include <pefm/tiling.h>
#include <pefm/frame_detector.h>
#include <iostream>
int main() {
  pefm::DetectorOptions options;
  options.device = "cpu";
  pefm::settle_precision(options);  // in libpefm-core, which loads LibTorch
  std::cout << pefm::tile_origins(100, 32, 0).size() << "\n";
}
CPP
c++ "$work/core.cpp" -o "$work/core" $(clean pkg-config --cflags --libs pefm-core) && [ "$(clean "$work/core")" = 4 ] ||
  fail "a program using pefm-core does not build or run"
echo "package check: programs build against gstpefmmeta-1.0 and pefm-core and run"

$SUDO apt-get purge -y -q "${names[@]}" >/dev/null
rm -f "$work/registry.bin"
clean gst-inspect-1.0 pefmfilter >/dev/null 2>&1 && fail "pefmfilter is still found after removing the packages"
while read -r f; do
  [ -e "$f" ] && [ ! -d "$f" ] && fail "$f is left after removing the packages"
done <"$work/files.txt"
[ ! -e "/usr/lib/$triplet/pefm" ] || fail "/usr/lib/$triplet/pefm is left after removing the packages"
echo "package check: removed; ok"
