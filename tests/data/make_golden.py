#!/usr/bin/python3
"""Writes the golden tensors the backbone tests compare against, using torchvision itself.

Run with Debian's python3-torch / python3-torchvision (1.13 / 0.14):
    /usr/bin/python3 tests/data/make_golden.py [--shared ../shared]

* formula_<arch>.pt: for every supported architecture, a torchvision model whose every
  parameter and buffer is filled by a deterministic integer formula (the same one
  tests/common.cpp implements), run on a formula input [1, 3, 40, 56]; the dict holds
  the input and the three tap outputs. This checks the C++ networks against torchvision's
  own code (names, strides, padding, block order) without committing weights.
* mobilenet_v2_real.pt: taps of ../shared/models/mobilenet_v2_torchvision_imagenet.pth
  (real ImageNet weights, a torchvision-layout dict written by Python) on a formula input,
  checked when ../shared is present.
"""
import argparse
import os

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))


def key_hash(key):
    h = 0
    for ch in key.encode():
        h = (h * 31 + ch) % 2**32
    return h


def formula_values(key, n):
    i = np.arange(n, dtype=np.uint64)
    u = ((i * np.uint64(2654435761) + np.uint64(key_hash(key))) % np.uint64(2**32)).astype(np.float64) / 2**32
    return u


def formula_tensor(key, shape, kind):
    n = int(np.prod(shape)) if len(shape) else 1
    u = formula_values(key, n)
    if kind == "conv":
        fan_in = int(np.prod(shape[1:]))
        v = (u - 0.5) * 2.0 * np.sqrt(6.0 / fan_in)
    elif kind == "gamma":
        v = 0.5 + 0.5 * u
    elif kind == "var":
        v = 0.5 + u
    elif kind == "count":
        return torch.zeros(shape, dtype=torch.int64)
    else:  # biases, running means
        v = (u - 0.5) * 0.2
    return torch.from_numpy(v.astype(np.float32)).reshape(shape)


def kind_of(key, t):
    if key.endswith("num_batches_tracked"):
        return "count"
    if key.endswith("running_var"):
        return "var"
    if key.endswith("weight"):
        return "conv" if t.dim() > 1 else "gamma"
    return "shift"


def fill(model):
    sd = {k: formula_tensor(k, tuple(v.shape), kind_of(k, v)) for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)


def taps(model, arch, x):
    if arch == "mobilenet_v2":
        out, y = [], x
        for i, layer in enumerate(model.features[:14]):
            y = layer(y)
            if i in (3, 6, 13):
                out.append(y)
        return out
    y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for layer in (model.layer1, model.layer2, model.layer3):
        y = layer(y)
        out.append(y)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "shared"))
    a = ap.parse_args()
    out_dir = os.path.join(HERE, "golden")
    os.makedirs(out_dir, exist_ok=True)
    x = formula_tensor("input", (1, 3, 40, 56), "shift") * 10.0
    for arch in ["resnet18", "resnet34", "resnet50", "wide_resnet50_2", "mobilenet_v2"]:
        m = getattr(torchvision.models, arch)().eval()
        fill(m)
        with torch.no_grad():
            t = taps(m, arch, x)
        d = {"input": x.clone(), "tap0": t[0].contiguous(), "tap1": t[1].contiguous(), "tap2": t[2].contiguous()}
        torch.save(d, os.path.join(out_dir, f"formula_{arch}.pt"))
        print(arch, [tuple(v.shape) for v in t])
    real = os.path.join(a.shared, "models", "mobilenet_v2_torchvision_imagenet.pth")
    if os.path.exists(real):
        m = torchvision.models.mobilenet_v2().eval()
        m.load_state_dict(torch.load(real), strict=True)
        xr = formula_tensor("real-input", (1, 3, 64, 80), "shift") * 20.0
        with torch.no_grad():
            t = taps(m, "mobilenet_v2", xr)
        torch.save({"input": xr, "tap0": t[0], "tap1": t[1], "tap2": t[2]},
                   os.path.join(out_dir, "mobilenet_v2_real.pt"))
        print("mobilenet_v2_real", [tuple(v.shape) for v in t])


if __name__ == "__main__":
    main()
