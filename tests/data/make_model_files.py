#!/usr/bin/python3
"""Writes model files in every layout pefm has ever written, from the layout itself (not
from pefm's writer), and the anomaly maps they must keep giving. tests/test_model_file.cpp
loads them with the current reader: a change that breaks users' existing model files (a
renamed key, a reordered field, a new required entry) fails there.

Run with Debian's python3-torch / python3-torchvision:
    /usr/bin/python3 tests/data/make_model_files.py

Container (format version 1; core/include/pefm/model_file.h): "PEFMMODL", u32 version,
u32 flags, u64 metadata length, "key=value\\n" lines sorted by key, u32 tensor count,
tensors sorted by name (u16 name length, name, u8 dtype, u8 rank, i64 dims, u64 bytes,
data), u32 CRC-32, "PEFM_END". Layouts inside version 1:

* v1-2026-11-28-first.pefm: pefm's first writer (commit eb2a775): tensors named as the
  network's modules ("source.features.0.0.weight", "mapping.0.shared.weight"), no tap names.
* v1-2026-11-28-taps.pefm: since commits 4657bb2 / 3b629e0: tensors under "net.", and
  config.source_taps / config.target_taps.

Model: mobilenet_v2 -> mobilenet_v2, 64 px, PE added, latent 4/8/12, mean fusion, a valid
calibration. Weights: make_golden.py's formula rounded to multiples of 1/64 (few distinct
values: git stores each 4.5 MB file in about 0.7 MB). expected_maps.pt holds the input
and the raw anomaly map of each file, computed by make_golden.py's independent reference.
"""
import os
import struct
import zlib

import torch
import torchvision

import make_golden as g

HERE = os.path.dirname(os.path.abspath(__file__))
ARCH = "mobilenet_v2"
SIZE = 64
LATENT = (4, 8, 12)
CALIBRATION = {  # raw-score statistics; any consistent values (threshold > base)
    "valid": "1", "images": "7", "threshold": "0.875", "base": "0.25",
    "image_mean": "0.5", "image_std": "0.125", "image_min": "0.375", "image_max": "0.75",
    "pixel_mean": "0.3125", "pixel_std": "0.0625", "val_false_positive_rate": "0",
    "image_quantiles": ",".join(str(0.375 + 0.00375 * i) for i in range(101)),
    "pixel_quantiles": ",".join(str(0.125 + 0.005 * i) for i in range(101)),
}
DTYPES = {torch.float32: 1, torch.int64: 3}


def quantised(t):
    return t if t.dtype == torch.int64 else torch.round(t.double() * 64.0).div(64.0).float()


def backbone_state(prefix):
    """The taps-only mobilenet_v2 (features 0..13) pefm stores, formula-filled."""
    m = torchvision.models.mobilenet_v2()
    out = {}
    for k, v in m.state_dict().items():
        if not k.startswith("features."):
            continue
        if int(k.split(".")[1]) > 13:
            continue
        out[prefix + k] = quantised(g.formula_tensor(prefix + k, tuple(v.shape), g.kind_of(k, v)))
    return out


def mapping_state():
    out = {}
    cs = (24, 32, 96)
    for k in range(3):
        net = g.FormulaMapping(f"mapping.{k}.", cs[k], cs[k], cs[k], cs[k], LATENT[k])
        for name, t in net.w.items():
            out[f"mapping.{k}.{name}"] = quantised(t)
        for side in ("s", "t"):
            for layer in ("encoder", "decoder"):
                for i in range(2):
                    out[f"mapping.{k}.{layer}_{side}.{i}.1.num_batches_tracked"] = torch.zeros((), dtype=torch.int64)
    return out


def container(meta, tensors):
    body = bytearray(b"PEFMMODL")
    body += struct.pack("<II", 1, 0)
    text = "".join(f"{k}={meta[k]}\n" for k in sorted(meta)).encode()
    body += struct.pack("<Q", len(text)) + text
    body += struct.pack("<I", len(tensors))
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()
        body += struct.pack("<H", len(name)) + name.encode()
        body += struct.pack("<BB", DTYPES[t.dtype], t.dim())
        body += b"".join(struct.pack("<q", d) for d in t.shape)
        body += struct.pack("<Q", len(data)) + data
    body += struct.pack("<I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    return bytes(body) + b"PEFM_END"


def reference_map(state, x):
    """Raw anomaly map of the stored weights, by make_golden.py's reference code."""
    def features(side):
        m = torchvision.models.mobilenet_v2().eval()
        sd = m.state_dict()
        for k in list(sd):
            if f"{side}.{k}" in state:
                sd[k] = state[f"{side}.{k}"]
        m.load_state_dict(sd)
        return [torch.nn.functional.normalize(t, p=2, dim=1) for t in g.taps(m, ARCH, x)]

    with torch.no_grad():
        fs, ft = features("source"), features("target")
        residuals = []
        for k in range(3):
            c, h, w = fs[k].shape[1:]
            net = g.FormulaMapping(f"mapping.{k}.", c, c, c, c, LATENT[k])
            net.w = {n: state[f"mapping.{k}.{n}"] for n in net.w}
            pe = g.position_code(c, h, w)
            s_hat, t_hat = net.forward(fs[k] + pe, ft[k] + pe)
            sm = 0.5 * (((s_hat - fs[k]) ** 2).sum(1, keepdim=True) + ((t_hat - ft[k]) ** 2).sum(1, keepdim=True))
            residuals.append(torch.nn.functional.interpolate(sm, size=(SIZE, SIZE), mode="bilinear",
                                                             align_corners=False))
        return (sum(residuals) / 3.0).squeeze(1).contiguous()


def main():
    out_dir = os.path.join(HERE, "models")
    os.makedirs(out_dir, exist_ok=True)
    state = {**backbone_state("source."), **backbone_state("target."), **mapping_state()}
    meta = {
        "format": "pefm-model",
        "config.source_arch": ARCH, "config.target_arch": ARCH,
        "config.image_size": str(SIZE), "config.pe": "add",
        "config.latent": ",".join(map(str, LATENT)), "config.fusion": "mean",
        "training.epochs": "3", "training.note": "line one\\nline two",
    }
    meta.update({"calibration." + k: v for k, v in CALIBRATION.items()})
    first = dict(meta, created_by="pefm 0.1.0")
    with open(os.path.join(out_dir, "v1-2026-11-28-first.pefm"), "wb") as f:
        f.write(container(first, state))
    taps = dict(meta, created_by="pefm 0.1.0")
    taps["config.source_taps"] = taps["config.target_taps"] = "features.3,features.6,features.13"
    with open(os.path.join(out_dir, "v1-2026-11-28-taps.pefm"), "wb") as f:
        f.write(container(taps, {"net." + k: v for k, v in state.items()}))
    x = g.formula_tensor("model-file-input", (1, 3, SIZE, SIZE), "shift") * 10.0
    torch.save({"input": x, "map": reference_map(state, x)}, os.path.join(out_dir, "expected_maps.pt"))
    print("written to", out_dir)


if __name__ == "__main__":
    main()
