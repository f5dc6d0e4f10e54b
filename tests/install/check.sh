#!/usr/bin/env bash
# Where `meson install` puts things, without building or installing (meson introspect on
# throwaway configurations): with --prefix=/usr the plugin lands in GStreamer's own plugin
# folder (pkg-config's pluginsdir), where gst-launch-1.0 finds it with no environment;
# libpefm-core has a soversion and a pkg-config file; the element is compiled without
# LibTorch's include folders. Exit status non-zero on a mismatch.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
installed() {
  meson introspect "$1" --installed | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin).values()))'
}
meson setup "$work/usr" --prefix=/usr -Dtests=disabled -Dexamples=disabled -Dcuda=disabled > "$work/usr.log"
pluginsdir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
fail=0
# The lists are read whole before grep looks: `installed ... | grep -q` lets grep exit at the
# first match, python3 then dies of a broken pipe, and pipefail reports a miss.
usr_files=$(installed "$work/usr")
want() {
  if grep -qx "$1" <<< "$usr_files"; then echo "install: $1"; else echo "install: MISSING $1" >&2; fail=1; fi
}
want "$pluginsdir/libgstpefm.so"
libdir=/usr/$(meson introspect "$work/usr" --buildoptions | python3 -c 'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"][0])')
want "$libdir/libpefm-core.so.0"
want "$libdir/pkgconfig/pefm-core.pc"
want "$libdir/pkgconfig/gstpefmmeta-1.0.pc"
want "/usr/lib/systemd/system/pefm@.service"
want "/usr/libexec/pefm/pefm-service"
# Another prefix: the plugin goes under it, and meson tells the user where GStreamer looks.
meson setup "$work/opt" --prefix=/opt/pefm -Dtests=disabled -Dexamples=disabled -Dcuda=disabled > "$work/opt.log"
if ! grep -q "where GStreamer does not look by default: export GST_PLUGIN_PATH=" "$work/opt.log"; then
  echo "install: meson setup --prefix=/opt/pefm does not say where the plugin goes" >&2
  fail=1
fi
opt_files=$(installed "$work/opt")
grep -q "^/opt/pefm/.*/gstreamer-1.0/libgstpefm.so$" <<< "$opt_files" || { echo "install: plugin not under /opt/pefm" >&2; fail=1; }
# The element's object is compiled without LibTorch's include folders (docs/architecture.md).
element_cmd=$(ninja -C "$work/usr" -t commands gst-plugin/libgstpefm.so | grep -E -- '-c [^ ]*gst-plugin/gstpefmfilter\.cpp' || true)
if [ -z "$element_cmd" ]; then
  echo "install: no compile command for gst-plugin/gstpefmfilter.cpp" >&2; fail=1
elif grep -q 'torch/csrc/api/include' <<< "$element_cmd"; then
  echo "install: gstpefmfilter.cpp is compiled with LibTorch's include folders" >&2; fail=1
else
  echo "install: the element compiles without LibTorch's include folders"
fi
[ $fail = 0 ] && echo "install: ok"
exit $fail
