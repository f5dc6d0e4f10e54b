#!/usr/bin/env bash
# LibTorch's headers require C++20 from 2.14 on. This compiles every C++ source of the
# build (the library, the tools, the plugin, the tests) with -std=c++20 against the newest
# torch on PyPI (its headers only: nothing is linked), with the build's own flags from
# compile_commands.json, so that moving pefm to a newer LibTorch needs no change of the
# sources (only the pins in fetch-libtorch.sh and meson.build, and -Dcpp_std=c++20).
#   tests/cxx20/check.sh [BUILD_DIR] [TORCH_VERSION]   (default build/, the newest on PyPI)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
WANT=${2:-}
WORK=$(realpath -m "$BUILD/cxx20-check")
fail() { echo "cxx20: FAILED: $*" >&2; exit 1; }
[ -f "$BUILD/compile_commands.json" ] || fail "no $BUILD/compile_commands.json (configure first)"
mkdir -p "$WORK"
rm -f "$WORK"/torch-*.whl
# The newest release, as the index lists it (not the newest that fits a platform filter)
if [ -z "$WANT" ]; then
  WANT=$(python3 -m pip index versions torch 2>/dev/null | sed -n 's/^torch (\(.*\))$/\1/p')
  [ -n "$WANT" ] || fail "could not ask PyPI for torch's newest version"
fi
headers=$WORK/libtorch-$WANT
if [ ! -f "$headers/done" ]; then
  # pip checks the file against the index's hash; any Linux x86-64 wheel has the headers
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.12 --implementation cp --abi cp312 -d "$WORK" "torch==$WANT" \
    || fail "could not download torch==$WANT from PyPI"
  wheel=$(ls "$WORK"/torch-"$WANT"-*.whl 2>/dev/null | head -1)
  [ -n "$wheel" ] || fail "pip saved no torch-$WANT wheel in $WORK"
  rm -rf "$headers" "$headers.partial"
  python3 - "$wheel" "$headers.partial" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if not name.startswith("torch/include/") or info.is_dir():
            continue
        out = os.path.normpath(os.path.join(dest, name[len("torch/"):]))
        if not out.startswith(dest + os.sep):
            sys.exit(f"{wheel}: unsafe member {name}")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
  rm -f "$wheel"
  touch "$headers.partial/done"
  mv "$headers.partial" "$headers"
fi
version=$WANT
echo "cxx20: torch $version headers in $headers"

python3 - "$BUILD" "$headers/include" "$WORK" <<'PY'
import concurrent.futures, glob, json, os, re, shlex, subprocess, sys
build, include, work = sys.argv[1], sys.argv[2], sys.argv[3]
source_root = os.getcwd()
# the precompiled headers' sources, by the name the commands -include
pch = {os.path.basename(p): os.path.abspath(p) for p in glob.glob("**/pch/*_pch.h", recursive=True)
       if not p.startswith(("build", "subprojects"))}
API = "/torch/csrc/api/include"
jobs, swapped = [], 0
for entry in json.load(open(os.path.join(build, "compile_commands.json"))):
    src = entry["file"]
    if not src.endswith(".cpp"):
        continue  # the precompiled headers themselves, and C
    words = shlex.split(entry["command"])
    # the build's LibTorch: ROOT/include and ROOT/include/torch/csrc/api/include
    api = next((w[len("-isystem"):] for w in words if w.startswith("-isystem") and w.endswith(API)), None)
    old_roots = {api, api[: -len(API)]} if api else set()
    args, it = [], iter(words)
    for a in it:
        if a in ("-MD", "-fpch-preprocess", "-Winvalid-pch") or a.startswith("-fdiagnostics-color"):
            continue
        if a in ("-MQ", "-MF", "-o"):
            next(it)
            continue
        if a == "-include":
            name = next(it)
            args += ["-include", pch.get(name, name)]
            continue
        if a.startswith("-std="):
            continue  # replaced below, whatever the build had
        if a.startswith("-isystem") and a[len("-isystem"):] in old_roots:
            a = "-isystem" + (include + API if a.endswith(API) else include)
            swapped += 1
        elif a == "-c":
            a = "-fsyntax-only"
        args.append(a)
    jobs.append((src, args + ["-std=c++20"], entry["directory"]))

if not jobs or swapped == 0:
    sys.exit("cxx20: no command names LibTorch's include folders: nothing would be checked")

def compile_one(job):
    src, args, cwd = job
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    return src, r.returncode, r.stderr

failed, warned = [], []
with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for src, rc, err in pool.map(compile_one, jobs):
        name = os.path.relpath(os.path.normpath(os.path.join(build, src)), source_root)
        if rc != 0:
            failed.append(name)
            sys.stderr.write(f"cxx20: {name} does not compile:\n{err[-4000:]}\n")
        elif "warning:" in err:
            warned.append(name)
            sys.stderr.write(f"cxx20: {name} warns:\n{err[-2000:]}\n")
print(f"cxx20: {len(jobs) - len(failed)} of {len(jobs)} sources compile with -std=c++20 against {include}"
      + (f"; {len(warned)} with warnings" if warned else ""))
if failed or warned:
    sys.exit(1)
PY
echo "cxx20: ok (torch $version)"
