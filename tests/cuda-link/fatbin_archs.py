#!/usr/bin/env python3
"""Lists the GPU code a library or object embeds: one line per fatbinary entry, "sm_90 elf"
or "compute_90 ptx", read from its .nv_fatbin section (no CUDA tools needed).

  fatbin_archs.py FILE
"""
import struct
import subprocess
import sys
import tempfile

MAGIC = 0xBA55ED50
KINDS = {1: "ptx", 2: "elf"}


def section(path, name=".nv_fatbin"):
    with tempfile.NamedTemporaryFile() as out:
        r = subprocess.run(["objcopy", "-O", "binary", "--only-section=" + name, path, out.name],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"fatbin_archs: objcopy failed on {path}: {r.stderr.strip()}")
        return open(out.name, "rb").read()


def entries(blob):
    pos = 0
    while pos + 16 <= len(blob):
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", blob, pos)
        if magic != MAGIC:
            pos += 8  # blobs are 8-byte aligned
            continue
        p, end = pos + header_size, pos + header_size + fat_size
        while p + 32 <= end:
            kind, _v, ehdr, payload = struct.unpack_from("<HHIQ", blob, p)
            arch = struct.unpack_from("<I", blob, p + 28)[0]
            yield KINDS.get(kind, f"kind{kind}"), arch
            if ehdr == 0:
                break
            p += ehdr + payload
        pos = end


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found = sorted(set(entries(section(sys.argv[1]))))
    for kind, arch in found:
        print(("sm_" if kind == "elf" else "compute_") + str(arch), kind)


if __name__ == "__main__":
    main()
