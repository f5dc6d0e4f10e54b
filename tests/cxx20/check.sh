#!/usr/bin/env bash
# LibTorch's headers require C++20 from 2.14 on. This compiles every C++ source of the
# build (the library, the tools, the plugin, the tests) with -std=c++20 against the newest
# torch on PyPI (its headers only: nothing is linked), with the build's own flags from
# compile_commands.json, so that moving pefm to a newer LibTorch needs no change of the
# sources (only the pins in fetch-libtorch.sh and meson.build, and -Dcpp_std=c++20).
#   tests/cxx20/check.sh [--fetch-only] [BUILD_DIR] [TORCH_VERSION]   (default build/, the newest on PyPI)
# --fetch-only: download and unpack the headers, compile nothing (CI fetches them while
# the tests run).
set -euo pipefail
cd "$(dirname "$0")/../.."
fetch_only=false
if [ "${1:-}" = --fetch-only ]; then fetch_only=true; shift; fi
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
$fetch_only && exit 0

python3 - "$BUILD" "$headers/include" "$WORK" <<'PY'
import concurrent.futures, glob, hashlib, json, os, re, shlex, shutil, subprocess, sys
build, include, work = sys.argv[1], sys.argv[2], sys.argv[3]
source_root = os.getcwd()
# the precompiled headers' sources, by the name the commands -include
pch_sources = {os.path.basename(p): os.path.abspath(p) for p in glob.glob("**/pch/*_pch.h", recursive=True)
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
    flags, pch, it = [words[0]], None, iter(words[1:])
    for a in it:
        if a in ("-MD", "-fpch-preprocess", "-Winvalid-pch", "-c", src) or a.startswith(("-fdiagnostics-color", "-std=")):
            continue  # -std: replaced below, whatever the build had
        if a in ("-MQ", "-MF", "-o"):
            next(it)
            continue
        if a == "-include":
            pch = pch_sources.get(next(it))
            continue
        if a.startswith("-isystem") and a[len("-isystem"):] in old_roots:
            a = "-isystem" + (include + API if a.endswith(API) else include)
            swapped += 1
        flags.append(a)
    jobs.append((src, flags + ["-std=c++20"], pch, entry["directory"]))

if not jobs or swapped == 0:
    sys.exit("cxx20: no command names LibTorch's include folders: nothing would be checked")

# The build's precompiled headers again, with C++20 and the new headers, one per set of
# flags (a target's): LibTorch's headers are then parsed once per target, not per source.
pch_jobs = {}
for i, (src, flags, pch, cwd) in enumerate(jobs):
    if not pch:
        continue
    key = hashlib.sha1(json.dumps([flags, pch, cwd]).encode()).hexdigest()[:12]
    folder = os.path.join(work, "pch", key)
    pch_jobs[key] = (flags, pch, cwd, folder)
    jobs[i] = (src, flags + ["-Winvalid-pch", "-include", os.path.join(folder, os.path.basename(pch))], None, cwd)

def run(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    return r.returncode, r.stderr

def make_pch(item):
    flags, pch, cwd, folder = item
    os.makedirs(folder, exist_ok=True)
    shutil.copy(pch, folder)
    return pch, run(flags + ["-x", "c++-header", pch, "-o", os.path.join(folder, os.path.basename(pch) + ".gch")], cwd)

# Warnings count where they point into the project; GStreamer's and OpenCV's headers are
# not included as system headers and have their own C++20 deprecations.
warning_at = re.compile(r"^(\S+?):\d+:(?:\d+:)? warning:", re.M)
def ours(path, cwd):
    full = os.path.realpath(os.path.join(cwd, path))
    return full.startswith(source_root + os.sep) and not full.startswith(
        (os.path.join(source_root, "subprojects") + os.sep, os.path.realpath(build) + os.sep))

failed, warned = [], []
def report(name, rc, err, cwd):
    if rc != 0:
        failed.append(name)
        sys.stderr.write(f"cxx20: {name} does not compile:\n{err[-4000:]}\n")
    elif any(ours(m, cwd) for m in warning_at.findall(err)) or "not used because" in err:
        warned.append(name)
        sys.stderr.write(f"cxx20: {name} warns:\n{err[-2000:]}\n")

workers = os.cpu_count() or 2
with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    for (pch, (rc, err)), item in zip(pool.map(make_pch, pch_jobs.values()), pch_jobs.values()):
        report(os.path.relpath(pch, source_root), rc, err, item[2])
    if not failed:
        for (src, flags, _, cwd), (rc, err) in zip(jobs, pool.map(lambda j: run(j[1] + ["-fsyntax-only", j[0]], j[3]), jobs)):
            report(os.path.relpath(os.path.normpath(os.path.join(cwd, src)), source_root), rc, err, cwd)
print(f"cxx20: {len(jobs) - len(failed)} of {len(jobs)} sources ({len(pch_jobs)} precompiled headers) compile "
      f"with -std=c++20 against {include}" + (f"; {len(warned)} with warnings of their own" if warned else ""))
if failed or warned:
    sys.exit(1)
PY
echo "cxx20: ok (torch $version)"
