#!/usr/bin/env python3
"""Times a pefm-export graph in ONNX Runtime on the CPU, as pefm-bench times pefm.

    onnxruntime_bench.py MODEL.onnx [--threads N] [--batch N] [--iterations N]

Random input of the graph's size, one untimed run first; prints frames/s (mean) and the
median milliseconds per batch. Run it with the Python of pipelines/fetch-onnxruntime.sh
(subprojects/onnx-venv/bin/python3).
"""
import argparse
import time

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--iterations", type=int, default=5)
a = ap.parse_args()
opts = ort.SessionOptions()
opts.intra_op_num_threads = a.threads
opts.inter_op_num_threads = 1
session = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
size = session.get_inputs()[0].shape[2]
x = np.random.default_rng(0).standard_normal((a.batch, 3, size, size)).astype(np.float32)
session.run(None, {"image": x})
times = []
for _ in range(a.iterations):
    start = time.perf_counter()
    session.run(None, {"image": x})
    times.append((time.perf_counter() - start) * 1000)
times = np.array(times)
print(f"onnxruntime {ort.__version__}, {a.threads} thread(s), batch {a.batch}: "
      f"{a.batch * 1000 / times.mean():.2f} frames/s, median {np.median(times):.0f} ms")
