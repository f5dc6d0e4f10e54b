#!/usr/bin/env bash
# Fetches the LibTorch pefm builds with: the C++ part of PyPI's torch wheel (the build for
# CUDA 13.0, the GPU machine's), pinned by version and SHA-256, unpacked into
#   subprojects/libtorch-2.11.0/        include/, share/ and the CPU libraries (meson's default)
#   subprojects/libtorch-2.11.0-cuda/   the same plus libtorch_cuda and what it loads (--cuda)
# Python is only the downloader: nothing is installed into it. The CPU folder is
# self-contained: libtorch_cpu also loads libcudart and libcupti, which come from NVIDIA's
# wheels. The CUDA folder links the libraries installed in /usr/local/cuda/lib64 (the toolkit's
# cuBLAS, cuFFT ..., and cuDNN 9 and NCCL 2, which NVIDIA ships apart from the toolkit and
# this project's machines have there) and takes the three these lack (cuFile, cuSPARSELt,
# NVSHMEM) from NVIDIA's wheels. Safe to run again.
#   pipelines/fetch-libtorch.sh            # CPU
#   pipelines/fetch-libtorch.sh --cuda     # CPU, then CUDA
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=2.11.0
# name=version sha256 (manylinux x86-64; torch's wheel for CPython 3.11, whose C++ part
# does not depend on the Python version)
TORCH_WHEEL="torch==$VERSION 7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a"
CPU_WHEELS=(
  "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-cupti==13.0.85 4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8"
)
CUDA_WHEELS=(
  "nvidia-cufile==1.15.1.6 08a3ecefae5a01c7f5117351c64f17c7c62efa5fffdbe24fc7d298da19cd0b44"
  "nvidia-cusparselt-cu13==0.8.0 25e30a8a7323935d4ad0340b95a0b69926eee755767e8e0b1cf8dd85b197d3fd"
  "nvidia-nvshmem-cu13==3.4.5 290f0a2ee94c9f3687a02502f3b9299a9f9fe826e6d0287ee18482e78d495b80"
)
CPU_LIBS=(libc10.so libtorch_cpu.so libgomp.so.1 libcudart.so.13 libcupti.so.13)
CUDA_LIBS=(libtorch.so libtorch_cuda.so libc10_cuda.so libtorch_cuda_linalg.so libtorch_nvshmem.so
           libcaffe2_nvrtc.so libcufile.so.0 libcusparseLt.so.0 libnvshmem_host.so.3)
# what libtorch_cuda loads from /usr/local/cuda/lib64 (NEEDED, found through its $ORIGIN rpath)
TOOLKIT_LIBS=(libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libcufft.so.12 libcurand.so.10
              libcusolver.so.12 libcusparse.so.12 libnccl.so.2 libnvrtc.so.13 libnvJitLink.so.13)

cuda=false
case "$#:${1:-}" in
  1:--cuda) cuda=true ;;
  0:) ;;
  *) echo "usage: $0 [--cuda]" >&2; exit 2 ;;
esac
cpu_dir=subprojects/libtorch-$VERSION
cuda_dir=subprojects/libtorch-$VERSION-cuda
fail() { echo "fetch-libtorch: $*" >&2; exit 1; }
command -v python3 >/dev/null || fail "python3 (with pip) is needed to download the wheels"

# Downloads "name==version sha256" into $1 (never into a Python environment) and checks it.
download() {
  local into=$1 spec=$2
  local req=${spec% *} sum=${spec#* }
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 -d "$into" "$req" \
    || fail "could not download $req from PyPI"
  local name=${req%%==*}
  local file
  file=$(ls "$into"/"${name//-/_}"-*.whl 2>/dev/null | head -1)
  [ -n "$file" ] || fail "pip saved no wheel for $req"
  echo "$sum  $file" | sha256sum -c --quiet - || fail "$file does not have the pinned SHA-256 (wanted $sum)"
  echo "$file"
}

# Copies the members of wheel $1 whose names match the Python regex $2 into $3, flattened
# to their path below the regex's first group.
unpack() {
  python3 - "$@" <<'EOF'
import os, re, shutil, sys, zipfile
wheel, pattern, dest = sys.argv[1], re.compile(sys.argv[2]), sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        m = pattern.fullmatch(info.filename)
        if not m or info.is_dir():
            continue
        rel = os.path.normpath(m.group(1))
        if rel.startswith(("..", "/")):
            sys.exit(f"{wheel}: unsafe member {info.filename}")
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if info.external_attr >> 16 & 0o111:
            os.chmod(out, 0o755)
EOF
}

libs_present() {
  local dir=$1; shift
  for l in "$@"; do [ -e "$dir/lib/$l" ] || return 1; done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pefm-libtorch.XXXXXX")
trap 'rm -rf "$work"' EXIT
torch_wheel=""

if [ -f "$cpu_dir/VERSION" ] && [ "$(cat "$cpu_dir/VERSION")" = "$VERSION" ] && libs_present "$cpu_dir" "${CPU_LIBS[@]}" \
   && [ -f "$cpu_dir/licenses/torch/LICENSE" ]; then
  echo "fetch-libtorch: LibTorch $VERSION already in $cpu_dir/"
else
  echo "fetch-libtorch: downloading torch $VERSION (about 530 MB) and the CUDA runtime it loads"
  torch_wheel=$(download "$work" "$TORCH_WHEEL")
  tmp=$cpu_dir.partial
  rm -rf "$tmp"
  mkdir -p "$tmp/lib"
  unpack "$torch_wheel" 'torch/(include/.*|share/cmake/.*)' "$tmp"
  unpack "$torch_wheel" "torch/(lib/(libc10|libtorch_cpu)\\.so|lib/libgomp\\.so\\.1)" "$tmp"
  for spec in "${CPU_WHEELS[@]}"; do
    wheel=$(download "$work" "$spec")
    unpack "$wheel" 'nvidia/cu13/(lib/(libcudart\.so\.13|libcupti\.so\.13))' "$tmp"
    name=${spec%%==*}
    unpack "$wheel" "${name//-/_}-[^/]+\\.dist-info/(?:licenses/)?(License\\.txt|LICENSE[^/]*)" "$tmp/licenses/$name"
  done
  # the terms the libraries come under travel with them (pipelines/package.sh ships them)
  unpack "$torch_wheel" 'torch-[^/]+\.dist-info/licenses/(LICENSE|NOTICE)' "$tmp/licenses/torch"
  [ -f "$tmp/licenses/torch/LICENSE" ] || fail "the torch wheel holds no LICENSE"
  libs_present "$tmp" "${CPU_LIBS[@]}" || fail "the wheels lacked one of ${CPU_LIBS[*]}"
  echo "$VERSION" >"$tmp/VERSION"
  rm -rf "$cpu_dir"
  mv "$tmp" "$cpu_dir"
  echo "fetch-libtorch: LibTorch $VERSION (CPU) in $cpu_dir/ ($(du -sh "$cpu_dir" | cut -f1))"
fi
$cuda || exit 0

if [ -f "$cuda_dir/VERSION" ] && [ "$(cat "$cuda_dir/VERSION")" = "$VERSION" ] && libs_present "$cuda_dir" "${CUDA_LIBS[@]}" "${TOOLKIT_LIBS[@]}"; then
  echo "fetch-libtorch: LibTorch $VERSION with CUDA already in $cuda_dir/"
  exit 0
fi
toolkit_lib=/usr/local/cuda/lib64
for l in "${TOOLKIT_LIBS[@]}"; do
  [ -e "$toolkit_lib/$l" ] || fail "$toolkit_lib has no $l, which libtorch_cuda needs (the CUDA 13 toolkit, with cuDNN 9 and NCCL 2 installed into it)"
done
[ -n "$torch_wheel" ] || torch_wheel=$(download "$work" "$TORCH_WHEEL")
tmp=$cuda_dir.partial
rm -rf "$tmp"
mkdir -p "$tmp/lib"
ln -s "../libtorch-$VERSION/include" "$tmp/include"
ln -s "../libtorch-$VERSION/share" "$tmp/share"
for l in "${CPU_LIBS[@]}"; do ln -s "../../libtorch-$VERSION/lib/$l" "$tmp/lib/$l"; done
unpack "$torch_wheel" 'torch/(lib/lib(torch|torch_cuda|c10_cuda|torch_cuda_linalg|torch_nvshmem|caffe2_nvrtc)\.so)' "$tmp"
members=('nvidia/cu13/(lib/libcufile\.so\.0)' 'nvidia/cusparselt/(lib/libcusparseLt\.so\.0)'
         'nvidia/nvshmem/(lib/libnvshmem_host\.so\.3)')
for i in "${!CUDA_WHEELS[@]}"; do
  wheel=$(download "$work" "${CUDA_WHEELS[$i]}")
  unpack "$wheel" "${members[$i]}" "$tmp"
done
for l in "${TOOLKIT_LIBS[@]}"; do ln -s "$toolkit_lib/$l" "$tmp/lib/$l"; done
libs_present "$tmp" "${CUDA_LIBS[@]}" "${TOOLKIT_LIBS[@]}" || fail "the wheels lacked one of ${CUDA_LIBS[*]}"
echo "$VERSION" >"$tmp/VERSION"
rm -rf "$cuda_dir"
mv "$tmp" "$cuda_dir"
echo "fetch-libtorch: LibTorch $VERSION with CUDA in $cuda_dir/ ($(du -shL "$cuda_dir/lib" | cut -f1) of libraries)"
