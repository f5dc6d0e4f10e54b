#!/usr/bin/env python3
"""Runs a pefm-export graph in ONNX Runtime on pefm's own inputs and compares the outputs.

    check_onnxruntime.py MODEL.onnx CHECK_DIR [--tolerance 1e-4] [--meta KEY=VALUE]... [--meta-number KEY=X]...

CHECK_DIR is what `pefm-export --check-images ... --check-out CHECK_DIR` wrote: image.npy
(pefm's preprocessed inputs), anomaly_map.npy and score.npy (pefm's outputs). The graph is
checked with onnx.checker (full shape inference), run once on the whole batch and once per
image (the batch axis is open), and every output must lie within the tolerance of pefm's.
--meta and --meta-number check metadata properties (numbers to a relative 1e-6). Prints
the largest differences; exit status 1 when one is over or a property differs.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("check_dir")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--meta-number", action="append", default=[])
    a = ap.parse_args()

    proto = onnx.load(a.model)
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    opset = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    assert opset and str(opset[0]) == meta.get("pefm.onnx.opset"), (opset, meta.get("pefm.onnx.opset"))
    bad = []
    for item in a.meta:
        key, want = item.split("=", 1)
        if meta.get(key) != want:
            bad.append(f"{key} is {meta.get(key)!r}, not {want!r}")
    for item in a.meta_number:
        key, want = item.split("=", 1)
        got = float(meta.get(key, "nan"))
        if not abs(got - float(want)) <= 1e-6 * max(1.0, abs(float(want))):
            bad.append(f"{key} is {got!r}, not {want}")
    if bad:
        print("FAILED: metadata: " + "; ".join(bad), file=sys.stderr)
        return 1

    load = lambda name: np.load(os.path.join(a.check_dir, name))
    images, want_map, want_score = load("image.npy"), load("anomaly_map.npy"), load("score.npy")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["anomaly_map", "score"], names
    assert session.get_inputs()[0].name == "image"

    worst = 0.0
    runs = [("batch", images, want_map, want_score)]
    runs += [(f"image {i}", images[i:i + 1], want_map[i:i + 1], want_score[i:i + 1]) for i in range(len(images))]
    for label, x, m, s in runs:
        got_map, got_score = session.run(None, {"image": x})
        assert got_map.shape == m.shape and got_score.shape == s.shape, (got_map.shape, got_score.shape)
        dm = float(np.abs(got_map - m).max())
        ds = float(np.abs(got_score - s).max())
        worst = max(worst, dm, ds)
        print(f"onnxruntime {ort.__version__} {label}: max |map - pefm| {dm:.3g}, max |score - pefm| {ds:.3g}")
    print(f"map range in pefm: {float(want_map.min()):.4g} .. {float(want_map.max()):.4g}")
    if not worst < a.tolerance:
        print(f"FAILED: {worst:.3g} is not under {a.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
