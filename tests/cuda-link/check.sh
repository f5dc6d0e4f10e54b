#!/usr/bin/env bash
# Proves, without a GPU, that a build against a CUDA LibTorch would run on the GPU. Against
# the real LibTorch 2.11 of PyPI's CUDA 13.0 wheel (pipelines/fetch-libtorch.sh --cuda:
# libtorch_cuda, libc10_cuda, the toolkit's cuBLAS, cuDNN, NCCL ...):
#  1. -Dcuda=enabled: libpefm-core, the plugin and a tool carry NEEDED libtorch_cuda.so
#     (else torch::cuda::is_available() is false at run time), libpefm-core an rpath to the
#     toolkit's libcudart, and sm_90 machine code plus compute_90 PTX; nothing is linked by
#     nvcc. Then the probe runs: `pefm-bench --version` must say that CUDA is compiled in
#     and registered (libtorch_cuda loaded: its hooks answer with the CUDA runtime version)
#     and that no device answers here, which tells a CUDA build on a GPU-less machine apart
#     from one whose linker dropped libtorch_cuda;
#  2. -Dcuda=disabled configures with the CUDA glue on and compiles it.
#   tests/cuda-link/check.sh [WORK_DIR]      # default build-cuda-link/ (made anew)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-build-cuda-link}
export PATH=/usr/local/cuda/bin:$PATH
fail() { echo "cuda-link: FAILED: $*" >&2; exit 1; }
command -v nvcc >/dev/null || fail "nvcc not found (install the CUDA toolkit at /usr/local/cuda)"
pipelines/fetch-libtorch.sh --cuda
torch=$PWD/subprojects/libtorch-$(sed -n 's/^VERSION=//p' pipelines/fetch-libtorch.sh)-cuda
[ -f "$torch/lib/libtorch_cuda.so" ] || fail "$torch has no libtorch_cuda.so"
rm -rf "$work"
mkdir -p "$work"
common=(-Dtorch_dir="$torch" -Dtests=disabled -Dexamples=disabled -Dintrospection=disabled --buildtype=plain)

# ---- 1. -Dcuda=enabled
b=$work/enabled
meson setup "$b" "${common[@]}" -Dcuda=enabled >"$work/setup-enabled.log" \
  || { tail -30 "$work/setup-enabled.log"; fail "meson setup -Dcuda=enabled"; }
grep -q '#define PEFM_TORCH_CUDA 1' "$b/pefm-config.h" || fail "PEFM_TORCH_CUDA is not 1 with a CUDA LibTorch"
grep -q '#define PEFM_WITH_CUDA_KERNELS 1' "$b/pefm-config.h" || fail "the CUDA kernels are off with -Dcuda=enabled"
# libpefm-core's file name carries its version (libpefm-core.so.X.Y.Z): ask ninja for it.
core_lib() { ninja -C "$1" -t targets all | sed -n 's|^\(core/libpefm-core\.so[.0-9]*\): cpp_LINKER$|\1|p'; }
core_target=$(core_lib "$b")
[ -n "$core_target" ] || fail "no libpefm-core target in $b"
targets=("$core_target" gst-plugin/libgstpefm.so core/tools/pefm-bench)
ninja -C "$b" "${targets[@]}" >"$work/build-enabled.log" || { tail -40 "$work/build-enabled.log"; fail "build"; }
for t in "${targets[@]}"; do
  needed=$(readelf -d "$b/$t" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  for lib in libtorch_cuda.so libc10_cuda.so; do
    [[ " $needed" == *" $lib "* ]] || fail "$t does not need $lib (NEEDED: $needed): CUDA would silently stay off"
  done
  echo "cuda-link: $t needs libtorch_cuda.so and libc10_cuda.so"
done
core=$b/$core_target
# the toolkit's folder among the rpaths (LibTorch's own folder aside)
cudart_dir=$(readelf -d "$core" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p' | tr ':' '\n' \
             | grep -vxF "$torch/lib" | grep cuda | head -1 || true)
[ -n "$cudart_dir" ] || fail "libpefm-core.so has no rpath to the CUDA runtime"
ls "$cudart_dir"/libcudart.so.* >/dev/null 2>&1 || fail "the rpath $cudart_dir holds no libcudart"
echo "cuda-link: libpefm-core.so finds libcudart in $cudart_dir"
archs=$(tests/cuda-link/fatbin_archs.py "$core" | tr '\n' ';')
[[ "$archs" == *"sm_90 elf"* && "$archs" == *"compute_90 ptx"* ]] || fail "libpefm-core.so embeds $archs, not sm_90 code + compute_90 PTX"
echo "cuda-link: libpefm-core.so embeds $archs"
# nvcc may compile the kernels (-c) but link nothing: it moves -Wl options ahead of the
# libraries, and libtorch_cuda would be dropped again.
if ninja -C "$b" -t commands | grep -E '(^|/)nvcc ' | grep -vE ' -c ' >/dev/null; then
  fail "something is linked by nvcc: $(ninja -C "$b" -t commands | grep -E '(^|/)nvcc ' | grep -vE ' -c ' | head -1 | cut -c1-200)"
fi
echo "cuda-link: nvcc only compiles; everything links with $(ninja -C "$b" -t commands "$core_target" | tail -1 | cut -d' ' -f1)"

# The probe: the tool runs, loads the real libtorch_cuda and its CUDA hooks answer.
probe=$("$b/core/tools/pefm-bench" --version 2>&1) || fail "pefm-bench --version did not run: $probe"
echo "$probe" | sed 's/^/cuda-link: probe: /'
cuda_line=$(echo "$probe" | grep '^CUDA: ') || fail "the probe printed no CUDA line"
[[ "$cuda_line" == "CUDA: compiled in and registered ("* ]] || fail "CUDA is not registered in the built tool: $cuda_line"
[[ "$cuda_line" == *"$(readlink -f "$torch/lib/libtorch_cuda.so")"* ]] || fail "the tool did not load $torch/lib/libtorch_cuda.so: $cuda_line"
[[ "$cuda_line" == *"CUDA runtime 13."* ]] || fail "the hooks did not answer with a CUDA 13 runtime: $cuda_line"
if ! compgen -G '/dev/nvidia[0-9]*' >/dev/null; then
  # no GPU here: the device query must have been made, and failed
  [[ "$cuda_line" == *"devices: 0 (cudaGetDeviceCount: "* ]] || fail "no device here, yet the probe says: $cuda_line"
fi
echo "$probe" | grep -q "^pefm CUDA kernels: compiled for sm_90" || fail "the probe does not report sm_90 kernels"
echo "cuda-link: LibTorch $(echo "$probe" | sed -n 's/^LibTorch: \([^ ]*\).*/\1/p'), libtorch_cuda $(stat -Lc %s "$torch/lib/libtorch_cuda.so") bytes"

# ---- 2. -Dcuda=disabled: no kernels, but the glue still compiles
b=$work/disabled
meson setup "$b" "${common[@]}" -Dcuda=disabled >"$work/setup-disabled.log" \
  || { tail -30 "$work/setup-disabled.log"; fail "meson setup -Dcuda=disabled"; }
grep -q '#define PEFM_WITH_CUDA_KERNELS 0' "$b/pefm-config.h" || fail "kernels on with -Dcuda=disabled"
grep -q '#define PEFM_TORCH_CUDA 1' "$b/pefm-config.h" || fail "-Dcuda=disabled turned the CUDA glue off"
core_target=$(core_lib "$b")
glue=$(grep -l PEFM_TORCH_CUDA core/src/*.cpp | sed "s|core/src/\(.*\)|$core_target.p/src_\1.o|")
# shellcheck disable=SC2086
ninja -C "$b" $glue >"$work/build-disabled.log" || { tail -40 "$work/build-disabled.log"; fail "the glue does not compile with -Dcuda=disabled"; }
echo "cuda-link: -Dcuda=disabled compiles the glue ($(echo $glue | wc -w) files)"
echo "cuda-link: ok"
