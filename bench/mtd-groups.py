#!/usr/bin/env python3
"""Writes a pefm-train --groups file for the MTD dataset (MVTec layout).

MTD photographs each magnetic tile up to six times (source names exp<k>_num_<n>, consecutive
frame numbers n). The dataset's README groups the captures of one tile by sorting the
defect-free sources by n and starting a new group wherever n jumps by more than 150; its
train/test split keeps each group on one side. This script applies the same rule to
manifest.csv and writes one IMAGE,GROUP line per defect-free image (absolute paths).

usage: mtd-groups.py DATASET_DIR OUT.csv
"""
import csv
import os
import re
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    root, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    with open(os.path.join(root, "manifest.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["class"] == "good"]

    def frame(row):
        m = re.search(r"num_(\d+)", row["source"])
        if not m:
            sys.exit("manifest.csv: no frame number in source '%s'" % row["source"])
        return int(m.group(1))

    rows.sort(key=frame)
    group, previous, lines = 0, None, []
    for row in rows:
        n = frame(row)
        if previous is not None and n - previous > 150:
            group += 1
        previous = n
        lines.append("%s,tile%03d\n" % (os.path.join(root, row["file"]), group))
    with open(out, "w") as f:
        f.write("file,group\n")
        f.writelines(lines)
    print("%s: %d images in %d groups" % (out, len(lines), group + 1))


if __name__ == "__main__":
    main()
