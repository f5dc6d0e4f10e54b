#!/usr/bin/env bash
# Installs pefm's build dependencies (Debian 12 packages; LibTorch 2.11 from PyPI's torch
# wheel into subprojects/, pipelines/fetch-libtorch.sh; ONNX Runtime for the tests,
# pipelines/fetch-onnxruntime.sh), configures and builds into build/.
# Safe to run again: it skips what is already there.
#   pipelines/setup.sh            # as root, or with sudo available
#   BUILD_DIR=build-x pipelines/setup.sh -Dcuda=disabled   # extra meson options
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

PACKAGES=(
  build-essential pkg-config meson ninja-build cmake patchelf
  python3 python3-pip python3-venv
  libopencv-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-libav
  libgtest-dev libgmock-dev
  nlohmann-json3-dev
  libmosquitto-dev mosquitto mosquitto-clients openssl python3-jsonschema systemd
  libaravis-0.8-0 aravis-tools gir1.2-gst-rtsp-server-1.0 iproute2
  gobject-introspection libgirepository1.0-dev python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pefm setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# nvcc lives outside PATH in NVIDIA's default install; with it the CUDA kernels compile
# (and run where LibTorch has CUDA).
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

# LibTorch: meson's default is the one fetched here (-Dtorch_dir=DIR takes another)
pipelines/fetch-libtorch.sh
# ONNX Runtime for the tests of pefm-export (a virtual environment in subprojects/); its
# wheels are pinned for Debian 12's Python on x86-64: elsewhere that one test case skips
pipelines/fetch-onnxruntime.sh || echo "pefm setup: no ONNX Runtime; the export suite's ONNX Runtime cases will skip" >&2

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR" "$@"
elif [ $# -gt 0 ]; then
  meson configure "$BUILD_DIR" "$@"
fi
ninja -C "$BUILD_DIR"
echo "pefm setup: built into $BUILD_DIR/"
