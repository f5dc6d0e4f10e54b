#!/usr/bin/python3
"""Writes model files in every layout pefm has ever written, from the layout itself (not
from pefm's writer), and the anomaly maps they must keep giving. tests/test_model_file.cpp
loads them with the current reader: a change that breaks users' existing model files (a
renamed key, a reordered field, a new required entry) fails there.

Run with Debian's python3-torch / python3-torchvision:
    /usr/bin/python3 tests/data/make_model_files.py
or, with the standard library only, to write the version 2 files from the committed
v1-2026-11-28-taps.pefm (the same tensors, byte for byte; the others are left as they are):
    python3 tests/data/make_model_files.py --version-2-only

Container (core/include/pefm/model_file.h): "PEFMMODL", u32 version,
u32 flags, u64 metadata length, "key=value\\n" lines sorted by key, u32 tensor count,
tensors sorted by name (u16 name length, name, u8 dtype, u8 rank, i64 dims, u64 bytes,
data), u32 CRC-32, "PEFM_END". Layouts inside version 1:

* v1-2026-11-28-first.pefm: pefm's first writer (commit eb2a775): tensors named as the
  network's modules ("source.features.0.0.weight", "mapping.0.shared.weight"), no tap names.
* v1-2026-11-28-taps.pefm: since commits 4657bb2 / 3b629e0: tensors under "net.", and
  config.source_taps / config.target_taps.

Version 2 (commit 8e3cd51: config.resize), the taps layout's tensors; the calibration as
pefm-train wrote it by default then, conformal (commits 67c3151 / 1377fdb: method,
false_alarm_target, false_alarm_bound, folds, false_alarm_upper95):

* v2-2026-11-29-resize.pefm: commit 8e3cd51's writer: config.resize (lanczos), no region
  threshold and no calibration.groups. Loads with groups == images (every image stood
  alone) and regions cut at the image threshold (region_threshold NaN).
* v2-2026-11-30-regions.pefm: since commit 13a3efb: calibration.region_threshold,
  region_rate_target, region_rate, region_image_rate, region_pixels; still no
  calibration.groups (commit d47d203 added it). Resize bilinear (--resize bilinear).

Model: mobilenet_v2 -> mobilenet_v2, 64 px, PE added, latent 4/8/12, mean fusion, a valid
calibration. Weights: make_golden.py's formula rounded to multiples of 1/64 (few distinct
values: git stores each 4.5 MB file in about 0.7 MB). expected_maps.pt holds the input
and the raw anomaly map of each file, computed by make_golden.py's independent reference.
"""
import os
import struct
import sys
import zlib

try:
    import torch
    import torchvision

    import make_golden as g
except ImportError:  # --version-2-only needs the standard library alone
    torch = None

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
# pefm-train's default threshold since commit 67c3151 (--folds 5 --false-alarm-rate): 7
# images, k = ceil(8 * (1 - 0.125)) = 7, bound 1 - 7/8; upper95 = clopper_pearson_upper(0, 7).
CONFORMAL = {"method": "conformal", "false_alarm_target": "0.125", "false_alarm_bound": "0.125",
             "folds": "5", "false_alarm_upper95": "0.34816"}
# The region threshold (commit 13a3efb): 2 of 7 x 64 x 64 pixels at or above it, 1 of 7
# images holding a region.
REGIONS = {"region_threshold": "0.625", "region_rate_target": "0.0001", "region_rate": repr(2 / 28672),
           "region_image_rate": repr(1 / 7), "region_pixels": "28672"}
TAPS = "features.3,features.6,features.13"


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


def records(tensors):
    """name -> (dtype code, shape, raw bytes), as the container stores a tensor."""
    codes = {torch.float32: 1, torch.int64: 3}
    return {name: (codes[t.dtype], tuple(t.shape), t.contiguous().numpy().tobytes()) for name, t in tensors.items()}


def container(meta, tensors, version=1):
    """tensors: records() of them."""
    body = bytearray(b"PEFMMODL")
    body += struct.pack("<II", version, 0)
    text = "".join(f"{k}={meta[k]}\n" for k in sorted(meta)).encode()
    body += struct.pack("<Q", len(text)) + text
    body += struct.pack("<I", len(tensors))
    for name in sorted(tensors):
        code, shape, data = tensors[name]
        body += struct.pack("<H", len(name)) + name.encode()
        body += struct.pack("<BB", code, len(shape))
        body += b"".join(struct.pack("<q", d) for d in shape)
        body += struct.pack("<Q", len(data)) + data
    body += struct.pack("<I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    return bytes(body) + b"PEFM_END"


def tensor_records(path):
    """The tensors of a container file as records(), its checksum checked."""
    with open(path, "rb") as f:
        b = f.read()
    body = len(b) - 12
    if b[:8] != b"PEFMMODL" or b[body + 4:] != b"PEFM_END":
        sys.exit(f"{path}: not a pefm model file")
    if struct.unpack_from("<I", b, body)[0] != zlib.crc32(b[:body]) & 0xFFFFFFFF:
        sys.exit(f"{path}: checksum mismatch")
    pos = 16
    (meta_len,) = struct.unpack_from("<Q", b, pos)
    pos += 8 + meta_len
    (count,) = struct.unpack_from("<I", b, pos)
    pos += 4
    out = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", b, pos)
        name = b[pos + 2:pos + 2 + name_len].decode()
        pos += 2 + name_len
        code, rank = struct.unpack_from("<BB", b, pos)
        shape = struct.unpack_from(f"<{rank}q", b, pos + 2)
        pos += 2 + 8 * rank
        (size,) = struct.unpack_from("<Q", b, pos)
        out[name] = (code, tuple(shape), b[pos + 8:pos + 8 + size])
        pos += 8 + size
    if pos != body:
        sys.exit(f"{path}: {body - pos} unexplained bytes")
    return out


def base_meta():
    """What every file holds alike: config (but taps and resize), calibration, provenance."""
    meta = {
        "format": "pefm-model", "created_by": "pefm 0.1.0",
        "config.source_arch": ARCH, "config.target_arch": ARCH,
        "config.image_size": str(SIZE), "config.pe": "add",
        "config.latent": ",".join(map(str, LATENT)), "config.fusion": "mean",
        "training.epochs": "3", "training.note": "line one\\nline two",
    }
    meta.update({"calibration." + k: v for k, v in CALIBRATION.items()})
    return meta


def write_version_2(out_dir, net_records):
    """The version 2 files; net_records: the taps layout's tensors (under "net.")."""
    meta = base_meta()
    meta["config.source_taps"] = meta["config.target_taps"] = TAPS
    meta.update({"calibration." + k: v for k, v in CONFORMAL.items()})
    resize = dict(meta, **{"config.resize": "lanczos"})
    with open(os.path.join(out_dir, "v2-2026-11-29-resize.pefm"), "wb") as f:
        f.write(container(resize, net_records, version=2))
    regions = dict(meta, **{"config.resize": "bilinear"})
    regions.update({"calibration." + k: v for k, v in REGIONS.items()})
    with open(os.path.join(out_dir, "v2-2026-11-30-regions.pefm"), "wb") as f:
        f.write(container(regions, net_records, version=2))


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
    if "--version-2-only" in sys.argv[1:]:
        write_version_2(out_dir, tensor_records(os.path.join(out_dir, "v1-2026-11-28-taps.pefm")))
        print("written to", out_dir)
        return
    if torch is None:
        sys.exit("needs torch and torchvision (Debian's python3-torch, python3-torchvision), or --version-2-only")
    state = {**backbone_state("source."), **backbone_state("target."), **mapping_state()}
    with open(os.path.join(out_dir, "v1-2026-11-28-first.pefm"), "wb") as f:
        f.write(container(base_meta(), records(state)))
    taps = base_meta()
    taps["config.source_taps"] = taps["config.target_taps"] = TAPS
    net = records({"net." + k: v for k, v in state.items()})
    with open(os.path.join(out_dir, "v1-2026-11-28-taps.pefm"), "wb") as f:
        f.write(container(taps, net))
    write_version_2(out_dir, net)
    x = g.formula_tensor("model-file-input", (1, 3, SIZE, SIZE), "shift") * 10.0
    torch.save({"input": x, "map": reference_map(state, x)}, os.path.join(out_dir, "expected_maps.pt"))
    print("written to", out_dir)


if __name__ == "__main__":
    main()
