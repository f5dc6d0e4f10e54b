#!/usr/bin/env bash
# Debian packages from a built tree, with no second compile: `meson install` into a staging
# folder, moved under /usr, split into packages, LibTorch's CPU runtime shipped privately
# (/usr/lib/<triplet>/pefm/libtorch, found through each binary's RUNPATH), dependencies on
# Debian's libraries computed by dpkg-shlibdeps. Writes the .deb files to OUT_DIR.
#   pipelines/package.sh [BUILD_DIR [OUT_DIR]]     # defaults: build, BUILD_DIR/deb
#   sudo apt-get install ./build/deb/*.deb
# The packages:
#   gstreamer1.0-pefm        the pefmfilter / pefmoverlay / pefmpublish plugin
#   pefm-tools               pefm-train, pefm-eval, pefm-bench, pefm-export, pefm-results, pefm-demo-data
#   libpefm-core0, libpefm-core-dev              the C++ library (pkg-config: pefm-core)
#   libgstpefmmeta-1.0-1, libgstpefmmeta-1.0-dev the metadata library (gstpefmmeta-1.0)
#   gir1.2-gstpefm-1.0       its typelib (Python: gi.require_version('GstPefm', '1.0'))
#   pefm-libtorch, pefm-libtorch-dev             LibTorch 2.11 (CPU) and its headers
# Needs dpkg-dev and patchelf (pipelines/setup.sh installs them).
set -euo pipefail
fail() { echo "package: $*" >&2; exit 1; }
# the folders as the caller names them, then from the checkout's root
build=$(realpath -m "${1:-$(dirname "$0")/../build}")
[ $# -ge 2 ] && out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || out=$build/deb
[ -f "$build/build.ninja" ] || fail "'$build' is not a configured build folder (run pipelines/setup.sh first)"
for tool in dpkg-deb dpkg-shlibdeps patchelf readelf; do
  command -v $tool >/dev/null || fail "$tool is missing (Debian: dpkg-dev, patchelf, binutils)"
done
ninja -C "$build" >/dev/null || fail "the build in '$build' fails: run ninja -C $build"

option() {
  meson introspect "$build" --buildoptions |
    python3 -c 'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]][0])' "$1"
}
prefix=$(option prefix)
libdir=$(option libdir)
case "$libdir" in /*) fail "libdir '$libdir' is absolute: packages need it below the prefix" ;; esac
version=$(meson introspect "$build" --projectinfo | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
# Each commit its own version, so that installing a newer build replaces an older one.
debversion=$version-1
if git rev-parse --git-dir >/dev/null 2>&1; then
  debversion=$version+git$(git rev-list --count HEAD).$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo .dirty)-1
fi
arch=$(dpkg --print-architecture)
# who built these packages: PEFM_MAINTAINER, else git's user, else root@localhost
maintainer=${PEFM_MAINTAINER:-}
if [ -z "$maintainer" ] && git config user.email >/dev/null 2>&1; then
  maintainer="$(git config user.name || echo pefm) <$(git config user.email)>"
fi
maintainer=${maintainer:-"pefm builder <root@localhost>"}
pluginsdir=$(pkg-config --variable=pluginsdir gstreamer-1.0)

# LibTorch: the folder the core library's RUNPATH names for libtorch_cpu.so.
runpath=$(readelf -d "$build/core/libpefm-core.so" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
torch_lib=
IFS=: read -ra dirs <<<"$runpath"
for d in "${dirs[@]}"; do [ -f "$d/libtorch_cpu.so" ] && { torch_lib=$d; break; }; done
[ -n "$torch_lib" ] || fail "libpefm-core's RUNPATH ($runpath) names no folder with libtorch_cpu.so"
torch_root=$(dirname "$torch_lib")
[ -e "$torch_lib/libtorch_cuda.so" ] &&
  fail "'$torch_root' is a CUDA LibTorch: the packages ship the CPU one (pipelines/setup.sh's default)"
if [ ! -f "$torch_root/licenses/torch/LICENSE" ]; then
  case "$torch_root" in
    "$PWD"/subprojects/*) fail "'$torch_root' has no licenses/ (fetched before they were kept): rm -rf $torch_root && pipelines/fetch-libtorch.sh" ;;
    *) fail "'$torch_root' has no licenses/torch/LICENSE: the packages ship LibTorch's terms with it" ;;
  esac
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pefm-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
meson install -C "$build" --no-rebuild --quiet --destdir "$stage" >/dev/null
root=$stage$prefix
[ -d "$root" ] || fail "meson installed nothing under $prefix"
private=${libdir}/pefm/libtorch  # below /usr
mkdir -p "$root/$private/lib" "$root/$private/include"
# libtorch_cpu, libc10 and what they load from the same folder (not the rest of a wheel's
# torch/lib, such as libtorch_python), as files
queue=(libtorch_cpu.so libc10.so)
while [ ${#queue[@]} -gt 0 ]; do
  lib=${queue[0]}
  queue=("${queue[@]:1}")
  [ -e "$root/$private/lib/$lib" ] && continue
  cp -L "$torch_lib/$lib" "$root/$private/lib/$lib"
  while read -r dep; do
    [ -e "$torch_lib/$dep" ] && queue+=("$dep")
  done < <(readelf -d "$torch_lib/$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
cp -a "$torch_root/include/." "$root/$private/include/"

# a builtin read, not a pipe of three programs per file: LibTorch's headers are thousands
is_elf() { local LC_ALL=C magic=; IFS= read -r -d '' -n 4 magic 2>/dev/null <"$1"; [ "$magic" = $'\177ELF' ]; }
# pefm's own binaries (not the private LibTorch, shipped as its wheels have it): without
# debug information, as Debian's dh_strip leaves them; then (patchelf may move sections)
# a RUNPATH (LibTorch's folder, the toolkit's) names the private copy instead, and nowhere
# else outside the system's paths.
while IFS= read -r -d '' f; do
  is_elf "$f" || continue
  case "$f" in
    *.so|*.so.*) strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f" ;;
    *) strip --remove-section=.comment --remove-section=.note "$f" ;;
  esac
  [ -z "$(patchelf --print-rpath "$f")" ] || patchelf --set-rpath "/usr/$private/lib" "$f"
done < <(find "$root" -path "$root/$private" -prune -o -type f -print0)

# pkg-config files: /usr, and LibTorch's paths in the private copy
re_quote() { sed 's/[][\\.*^$|/]/\\&/g' <<<"$1"; }
for pc in "$root/$libdir"/pkgconfig/*.pc; do
  sed -i -e "s|^prefix=.*|prefix=/usr|" \
         -e "s|$(re_quote "$torch_lib")|\${libdir}/pefm/libtorch/lib|g" \
         -e "s|$(re_quote "$torch_root/include")|\${libdir}/pefm/libtorch/include|g" "$pc"
  grep -qF "$torch_root" "$pc" && fail "$pc still names $torch_root"
  [ "$prefix" = /usr ] || ! grep -qF "$prefix/" "$pc" || fail "$pc still names $prefix"
done

# The service unit names the launcher and the example by the build's prefix: under /usr.
unit=$root/lib/systemd/system/pefm@.service
if [ -f "$unit" ] && [ "$prefix" != /usr ]; then
  sed -i "s|$(re_quote "$prefix/")|/usr/|g" "$unit"
fi
grep -q "ExecStart=/usr/libexec/pefm/pefm-service" "$unit" || fail "$unit does not start /usr/libexec/pefm/pefm-service"

# The plugin goes where GStreamer looks (installed under a /usr/local prefix, it sits in
# <prefix>/<libdir>/gstreamer-1.0, which is that folder once moved under /usr).
plugin=$(find "$root" -name libgstpefm.so)
[ "$(dirname "${plugin#"$root"}")" = "${pluginsdir#/usr}" ] ||
  fail "the plugin installs to $(dirname "$plugin"), not GStreamer's ${pluginsdir#/usr} below the prefix"

# name | files below /usr (globs) | Depends beyond the libraries its binaries load | Section |
# description
packages=(
  "pefm-libtorch|$private/lib||libs|LibTorch 2.11 (CPU) for pefm, private copy
 PyTorch's C++ runtime (libtorch_cpu, libc10) and the libraries it loads (GNU OpenMP,
 NVIDIA's CUDA runtime and CUPTI stubs it links), installed where only pefm's
 binaries look for them."
  "pefm-libtorch-dev|$private/include|pefm-libtorch (= $debversion)|libdevel|LibTorch 2.11 headers for building against libpefm-core
 The C++ headers of the LibTorch pefm is built with, beside the private copy of
 its libraries."
  "libpefm-core0|$libdir/libpefm-core.so.*||libs|PEFM visual anomaly detection, C++ library
 Position Encoding enhanced Feature Mapping: frozen ImageNet backbones, a 2-D
 position code and a small mapping network give a per-pixel anomaly heat map,
 trained from normal images only."
  "libpefm-core-dev|include/pefm $libdir/libpefm-core.so $libdir/pkgconfig/pefm-core.pc|libpefm-core0 (= $debversion), pefm-libtorch-dev (= $debversion)|libdevel|PEFM visual anomaly detection, C++ development files
 Headers and pkg-config file (pefm-core) of libpefm-core."
  "libgstpefmmeta-1.0-1|$libdir/libgstpefmmeta-1.0.so.*||libs|GstPefmMeta: pefm's per-frame anomaly metadata
 The buffer metadata pefmfilter attaches: score, decision, heat map and regions."
  "libgstpefmmeta-1.0-dev|include/gstreamer-1.0/gst/pefm $libdir/libgstpefmmeta-1.0.so $libdir/pkgconfig/gstpefmmeta-1.0.pc share/gir-1.0|libgstpefmmeta-1.0-1 (= $debversion), libgstreamer1.0-dev, libgstreamer-plugins-base1.0-dev, gir1.2-gstpefm-1.0 (= $debversion)|libdevel|GstPefmMeta development files
 Header, pkg-config file (gstpefmmeta-1.0) and GIR data of GstPefmMeta."
  "gir1.2-gstpefm-1.0|$libdir/girepository-1.0|libgstpefmmeta-1.0-1 (= $debversion), gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0|introspection|GObject introspection data for GstPefmMeta
 Reads pefm's metadata from Python (gi.require_version('GstPefm', '1.0'))."
  "gstreamer1.0-pefm|${pluginsdir#/usr/}||video|GStreamer elements for visual anomaly detection (PEFM)
 pefmfilter runs a pefm model on every frame (CPU, or CUDA where built), attaches
 heat-map metadata and draws overlays; pefmoverlay draws them later in a
 pipeline; pefmpublish sends results as JSON lines to a file, socket or MQTT."
  "pefm-tools|bin share/pefm/models|gstreamer1.0-pefm (= $debversion)|video|PEFM visual anomaly detection, command-line tools
 pefm-train trains a model from folders of normal images, pefm-eval scores it on
 an MVTec-AD-layout test set, pefm-bench measures speed, pefm-export writes a
 model as an ONNX graph for other runtimes, pefm-results prints a pipeline's
 results as JSON lines."
  "pefm-service|lib/systemd/system/pefm@.service libexec/pefm share/pefm/camera.conf.example|gstreamer1.0-pefm (= $debversion), gstreamer1.0-tools, systemd|video|PEFM visual anomaly detection, a camera's inspection as a systemd service
 pefm@CAMERA.service runs pefmfilter and pefmpublish on one camera with the
 settings in /etc/pefm/CAMERA.conf (camera, model, MQTT broker), its secrets as
 systemd credentials, restarted on failure."
)

mkdir -p "$out"
src=$work/src  # dpkg-shlibdeps reads debian/control and debian/shlibs.local from here
mkdir -p "$src/debian"
printf 'Source: pefm\n\n' >"$src/debian/control"
# Which package holds each library of ours with a versioned SONAME (libtorch_cpu.so and
# libc10.so have none, which dpkg-shlibdeps skips; `own` below names their package).
{
  echo "libpefm-core 0 libpefm-core0 (= $debversion)"
  echo "libgstpefmmeta-1.0 1 libgstpefmmeta-1.0-1 (= $debversion)"
  for f in "$root/$private/lib"/*.so.*; do
    soname=$(basename "$f")
    echo "${soname%%.so.*} ${soname#*.so.} pefm-libtorch (= $debversion)"
  done
} >"$src/debian/shlibs.local"
claimed=$work/claimed
: >"$claimed"
for spec in "${packages[@]}"; do
  # the fields, the description last and on several lines
  name=${spec%%|*}; rest=${spec#*|}
  globs=${rest%%|*}; rest=${rest#*|}
  extra=${rest%%|*}; rest=${rest#*|}
  section=${rest%%|*}; desc=${rest#*|}
  rm -f "$out/${name}"_*_"$arch".deb
  pkg=$work/pkg/$name
  mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/doc/$name"
  for g in $globs; do
    matched=0
    for f in "$root"/$g; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      matched=1
      rel=${f#"$root"/}
      mkdir -p "$pkg/usr/$(dirname "$rel")"
      cp -a "$f" "$pkg/usr/$rel"
      (cd "$root" && find "$rel" \( -type f -o -type l \)) >>"$claimed"
    done
    [ $matched = 1 ] || fail "$name: nothing installed matches $g"
  done
  {
    echo "pefm $version, packaged from its source tree by pipelines/package.sh."
    echo "License: LGPL-2.1-or-later (on Debian systems: /usr/share/common-licenses/LGPL-2.1)."
    echo
    cat NOTICE
  } >"$pkg/usr/share/doc/$name/copyright"
  if [ "$name" = pefm-libtorch ] || [ "$name" = pefm-libtorch-dev ]; then
    # LibTorch's and NVIDIA's own terms, as their wheels ship them
    cp -a "$torch_root/licenses" "$pkg/usr/share/doc/$name/"
  fi
  elves=()
  while IFS= read -r -d '' f; do
    if is_elf "$f"; then elves+=("$f"); fi
  done < <(find "$pkg/usr" -type f -print0)
  # pefm's own libraries and LibTorch: the packages that hold them, this very version
  own=$(for f in "${elves[@]}"; do readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; done | sort -u |
        while read -r soname; do
          case "$soname" in
            libpefm-core.so.*) echo "libpefm-core0 (= $debversion)" ;;
            libgstpefmmeta-1.0.so.*) echo "libgstpefmmeta-1.0-1 (= $debversion)" ;;
            libtorch_cpu.so|libc10.so) if [ "$name" != pefm-libtorch ]; then echo "pefm-libtorch (= $debversion)"; fi ;;
          esac
        done | sort -u | paste -sd, - | sed 's/,/, /g')
  depends=$extra
  [ -n "$own" ] && depends=${depends:+$depends, }$own
  if [ ${#elves[@]} -gt 0 ]; then
    # Debian's libraries from their symbols files, ours from shlibs.local; a library that
    # neither names (one no package holds) fails here.
    log=$work/shlibdeps-$name.log
    shlibs=$(cd "$src" && dpkg-shlibdeps -O -x"$name" -l"$root/$libdir" -l"$root/$private/lib" \
               "${elves[@]}" 2>"$log") || { cat "$log" >&2; fail "$name: dpkg-shlibdeps failed (above)"; }
    shlibs=$(sed -n 's/^shlibs:Depends=//p' <<<"$shlibs")
    [ -n "$shlibs" ] || { cat "$log" >&2; fail "$name: dpkg-shlibdeps found no dependencies"; }
    depends=${depends:+$depends, }$shlibs
  fi
  depends=$(tr ',' '\n' <<<"$depends" | sed 's/^ *//; /^$/d' | awk '!seen[$0]++' | paste -sd, - | sed 's/,/, /g')
  {
    echo "Package: $name"
    echo "Version: $debversion"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $(du -sk "$pkg/usr" | cut -f1)"
    [ -n "$depends" ] && echo "Depends: $depends"
    echo "Section: $section"
    echo "Priority: optional"
    echo "Description: $(printf '%s\n' "$desc" | head -1)"
    printf '%s\n' "$desc" | tail -n +2
  } >"$pkg/DEBIAN/control"
  case "$name" in lib*[0-9]) printf 'activate-noawait ldconfig\n' >"$pkg/DEBIAN/triggers" ;; esac
  dpkg-deb --root-owner-group -Zzstd --build "$pkg" "$out/${name}_${debversion}_$arch.deb" >/dev/null
  echo "package: $out/${name}_${debversion}_$arch.deb ($(du -h "$out/${name}_${debversion}_$arch.deb" | cut -f1))"
done

# Everything meson installed went into exactly one package (the private LibTorch is the
# script's own); nothing was installed outside the prefix.
outside=$(cd "$stage" && find . \( -type f -o -type l \) | sed 's|^\.||' | grep -v "^$prefix/" || true)
[ -z "$outside" ] || fail "installed outside $prefix, so in no package: $outside"
twice=$(sort "$claimed" | uniq -d)
[ -z "$twice" ] || fail "in two packages: $twice"
unclaimed=$(cd "$root" && find . \( -type f -o -type l \) | sed 's|^\./||' | grep -v "^$private/" | sort |
            comm -23 - <(sort -u "$claimed") || true)
[ -z "$unclaimed" ] || fail "installed but in no package: $unclaimed"
