#!/usr/bin/python3
"""Writes the golden tensors the backbone tests compare against, using torchvision itself.

Run with Debian's python3-torch / python3-torchvision (1.13 / 0.14):
    /usr/bin/python3 tests/data/make_golden.py [--shared ../shared]

* formula_<arch>.pt: for every supported architecture, a torchvision model whose every
  parameter and buffer is filled by a deterministic integer formula (the same one
  tests/common.cpp implements), run on a formula input [1, 3, 40, 56]; the dict holds
  the input and the three tap outputs. This checks the C++ networks against torchvision's
  own code (names, strides, padding, block order) without committing weights.
* anomaly_map.pt: the whole anomaly map, written here from the method's description
  (../shared/PEFM.md, not in this repository, steps 3-7: L2 normalisation, the authors' 2-D position code, the dual 1x1
  mapping networks in eval mode, the residual, bilinear upsampling and fusion), on top of
  torchvision's backbones; every weight from the formula, under the key names of pefm's
  modules (mapping.<k>.encoder_s.0.0.weight, ...). Config: mobilenet_v2 -> resnet18, 64 px,
  latent 8/12/16; one map per PE mode (add, concat, none) and fusion (mean, product) on
  2 x 64 x 64 inputs, and for add and concat with mean fusion on a 64 x 96 input ("*_wide"),
  where swapped rows and columns (position code, upsampling) would show.
* mobilenet_v2_real.pt: taps of ../shared/models/mobilenet_v2_torchvision_imagenet.pth
  (real ImageNet weights, a torchvision-layout dict written by Python) on a formula input,
  checked when ../shared is present.
"""
import argparse
import math
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


# ---------------------------------------------------------------- whole anomaly map
MAP_SIZE = 64
MAP_LATENT = (8, 12, 16)


def position_code(d, h, w):
    """2-D sinusoidal code of the authors' PEFM_AD.py (positionalencoding2d)."""
    pe = torch.zeros(d, h, w, dtype=torch.float64)
    d2 = d // 2
    div = torch.exp(torch.arange(0.0, d2, 2, dtype=torch.float64) * -(math.log(10000.0) / d2))
    pos_w = torch.arange(0.0, w, dtype=torch.float64).unsqueeze(1)
    pos_h = torch.arange(0.0, h, dtype=torch.float64).unsqueeze(1)
    pe[0:d2:2, :, :] = torch.sin(pos_w * div).transpose(0, 1).unsqueeze(1).repeat(1, h, 1)
    pe[1:d2:2, :, :] = torch.cos(pos_w * div).transpose(0, 1).unsqueeze(1).repeat(1, h, 1)
    pe[d2::2, :, :] = torch.sin(pos_h * div).transpose(0, 1).unsqueeze(2).repeat(1, 1, w)
    pe[d2 + 1::2, :, :] = torch.cos(pos_h * div).transpose(0, 1).unsqueeze(2).repeat(1, 1, w)
    return pe.float()


class FormulaMapping:
    """PEFM.md step 5 for one scale, as plain functions over formula-filled tensors."""

    def __init__(self, prefix, cs, ct, in_s, in_t, latent):
        self.p = prefix
        self.w = {}
        for side, c, cin in (("s", cs, in_s), ("t", ct, in_t)):
            self._cbr(f"encoder_{side}.0", cin, c // 2 + latent)
            self._cbr(f"encoder_{side}.1", c // 2 + latent, 2 * latent)
            self._cbr(f"decoder_{side}.0", latent, 2 * latent)
            self._cbr(f"decoder_{side}.1", 2 * latent, c // 2 + latent)
            self._conv(f"decoder_{side}.2", c // 2 + latent, c)
        self._conv("shared", 2 * latent, latent)

    def _t(self, name, shape):
        key = self.p + name
        probe = torch.empty(shape)
        self.w[name] = formula_tensor(key, shape, kind_of(key, probe))

    def _conv(self, name, cin, cout):
        self._t(name + ".weight", (cout, cin, 1, 1))
        self._t(name + ".bias", (cout,))

    def _cbr(self, name, cin, cout):
        self._conv(name + ".0", cin, cout)
        for p in ("weight", "bias", "running_mean", "running_var"):
            self._t(f"{name}.1.{p}", (cout,))

    def conv(self, x, name):
        return torch.nn.functional.conv2d(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def cbr(self, x, name):
        w = self.w
        y = self.conv(x, name + ".0")
        y = torch.nn.functional.batch_norm(y, w[name + ".1.running_mean"], w[name + ".1.running_var"],
                                           w[name + ".1.weight"], w[name + ".1.bias"], False, 0.0, 1e-5)
        return torch.relu(y)

    def encode(self, x, side):
        return self.cbr(self.cbr(x, f"encoder_{side}.0"), f"encoder_{side}.1")

    def decode(self, z, side):
        return self.conv(self.cbr(self.cbr(z, f"decoder_{side}.0"), f"decoder_{side}.1"), f"decoder_{side}.2")

    def forward(self, in_s, in_t):
        t_hat = self.decode(self.conv(self.encode(in_s, "s"), "shared"), "t")
        s_hat = self.decode(self.conv(self.encode(in_t, "t"), "shared"), "s")
        return s_hat, t_hat


def pefm_maps(src, tgt, x, pes, fusions):
    """{"<pe>_<fusion>": [N, H, W]} for input x [N, 3, H, W] (formula mapping weights)."""
    size = tuple(x.shape[2:])
    out = {}
    with torch.no_grad():
        fs = [torch.nn.functional.normalize(t, p=2, dim=1) for t in taps(src, "mobilenet_v2", x)]
        ft = [torch.nn.functional.normalize(t, p=2, dim=1) for t in taps(tgt, "resnet18", x)]
        for pe in pes:
            residuals = []
            for k in range(3):
                cs, ct = fs[k].shape[1], ft[k].shape[1]
                h, w = fs[k].shape[2:]
                wide = 2 if pe == "concat" else 1
                net = FormulaMapping(f"{k}.", cs, ct, wide * cs, wide * ct, MAP_LATENT[k])
                es, et = position_code(cs, h, w), position_code(ct, h, w)
                if pe == "add":
                    in_s, in_t = fs[k] + es, ft[k] + et
                elif pe == "concat":
                    n = x.shape[0]
                    in_s = torch.cat([fs[k], es.expand(n, -1, -1, -1)], 1)
                    in_t = torch.cat([ft[k], et.expand(n, -1, -1, -1)], 1)
                else:
                    in_s, in_t = fs[k], ft[k]
                s_hat, t_hat = net.forward(in_s, in_t)
                sm = 0.5 * (((s_hat - fs[k]) ** 2).sum(1, keepdim=True) + ((t_hat - ft[k]) ** 2).sum(1, keepdim=True))
                residuals.append(torch.nn.functional.interpolate(sm, size=size, mode="bilinear", align_corners=False))
            if "mean" in fusions:
                out[f"{pe}_mean"] = (sum(residuals) / 3.0).squeeze(1).contiguous()
            if "product" in fusions:
                out[f"{pe}_product"] = (residuals[0] * residuals[1] * residuals[2]).squeeze(1).contiguous()
    return out


def anomaly_maps(out_dir):
    src = torchvision.models.mobilenet_v2().eval()
    tgt = torchvision.models.resnet18().eval()
    fill(src)
    fill(tgt)
    x = formula_tensor("map-input", (2, 3, MAP_SIZE, MAP_SIZE), "shift") * 10.0
    out = {"input": x.clone()}
    out.update(pefm_maps(src, tgt, x, ("add", "concat", "none"), ("mean", "product")))
    xw = formula_tensor("map-input-wide", (1, 3, MAP_SIZE, MAP_SIZE * 3 // 2), "shift") * 10.0
    out["input_wide"] = xw.clone()
    out.update({k + "_wide": v for k, v in pefm_maps(src, tgt, xw, ("add", "concat"), ("mean",)).items()})
    torch.save(out, os.path.join(out_dir, "anomaly_map.pt"))
    print("anomaly_map", {k: tuple(v.shape) for k, v in out.items()})


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
    anomaly_maps(out_dir)
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
