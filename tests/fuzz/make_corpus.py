#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers:
- tests/fuzz/corpus/: small model containers in pefm's format (core/include/pefm/model_file.h)
  that reach each part of the loader: header, metadata, tensor table, configuration checks,
  key matching, NaN checks;
- tests/fuzz/corpus-checkpoint/: trainer states for fuzz_checkpoint.cpp's model
  (MobileNetV2 pair, 32 px, latent 1,1,1): a valid one, and ones with shortened moments,
  huge and negative counters, an old TorchScript optimiser blob.
The .pth reader's corpus (tests/fuzz/corpus-pth/) is written by make_pth_corpus.py."""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPE = {"f32": 1, "f16": 2, "i64": 3, "u8": 4, "f64": 5}
SIZE = {"f32": 4, "f16": 2, "i64": 8, "u8": 1, "f64": 8}

CONFIG = {
    "format": "pefm-model", "created_by": "pefm 0.1.0",
    "config.source_arch": "mobilenet_v2", "config.target_arch": "mobilenet_v2",
    "config.source_taps": "features.3,features.6,features.13", "config.target_taps": "features.3,features.6,features.13",
    "config.image_size": "32", "config.pe": "add", "config.latent": "1,1,1", "config.fusion": "mean",
    "calibration.valid": "0",
}


def container(meta, tensors, version=1):
    body = b"PEFMMODL" + struct.pack("<II", version, 0)
    m = "".join(f"{k}={v}\n" for k, v in meta.items()).encode()
    body += struct.pack("<Q", len(m)) + m + struct.pack("<I", len(tensors))
    for name, dtype, dims, payload in tensors:
        n = name.encode()
        body += struct.pack("<H", len(n)) + n + struct.pack("<BB", DTYPE[dtype], len(dims))
        body += b"".join(struct.pack("<q", d) for d in dims)
        body += struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF) + b"PEFM_END"


def floats(values):
    return b"".join(struct.pack("<f", v) for v in values)


def adam_shapes():
    """Parameter shapes of each scale's DualMapping in registration order (mapping_net.cpp)."""
    shapes = []
    for c in (24, 32, 96):  # MobileNetV2 taps features.3, .6, .13
        L, h = 1, c // 2 + 1
        cbr = lambda i, o: [[o, i, 1, 1], [o], [o], [o]]
        conv = lambda i, o: [[o, i, 1, 1], [o]]
        enc = cbr(c, h) + cbr(h, 2 * L)
        dec = cbr(L, 2 * L) + cbr(2 * L, h) + conv(h, c)
        shapes.append(enc + enc + conv(2 * L, L) + dec + dec)
    return shapes


def checkpoint_seeds():
    meta = dict(CONFIG, format="pefm-checkpoint")
    def state(step=3, epochs=2, shorten=None):
        tensors = [("trainer.epochs_done", "i64", [1], struct.pack("<q", epochs))]
        for k, params in enumerate(adam_shapes()):
            for i, shape in enumerate(params):
                n = 1
                for d in shape:
                    n *= d
                name = f"trainer.adam.{k}.{i}."
                dims = [max(1, shape[0] // 2)] if shorten == (k, i) else shape
                m = 1
                for d in dims:
                    m *= d
                tensors.append((name + "step", "i64", [1], struct.pack("<q", step)))
                tensors.append((name + "exp_avg", "f32", dims, floats([0.01] * m)))
                tensors.append((name + "exp_avg_sq", "f32", dims, floats([0.001] * m)))
        return tensors
    return {
        "valid": container(meta, state()),
        "short-moment": container(meta, state(shorten=(1, 4))),
        "negative-epochs": container(meta, state(epochs=-10**15)),
        "huge-step": container(meta, state(step=2**62)),
        "torchscript-blob": container(meta, [("trainer.optimizer.0", "u8", [8], b"PK\x03\x04\0\0\0\0"),
                                             ("trainer.epochs_done", "i64", [1], struct.pack("<q", 1))]),
    }


def main():
    write_seeds(os.path.join(HERE, "corpus-checkpoint"), checkpoint_seeds())
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    seeds = {
        "empty-model": container(CONFIG, []),
        "one-tensor": container(CONFIG, [("net.source.features.0.0.weight", "f32", [2, 2], floats([1, 2, 3, 4]))]),
        "nan-tensor": container(CONFIG, [("net.mapping.0.shared.bias", "f32", [2], floats([float("nan"), 0]))]),
        "int-tensor": container(CONFIG, [("net.source.features.0.1.num_batches_tracked", "i64", [], struct.pack("<q", 0))]),
        "bad-config": container(dict(CONFIG, **{"config.image_size": "33", "config.pe": "sideways"}), []),
        "calibrated": container(dict(CONFIG, **{"calibration.valid": "1", "calibration.threshold": "2", "calibration.base": "1"}), []),
        "newer-version": container(CONFIG, [], version=2),
        "not-a-model": b"\x89PNG\r\n\x1a\n" + bytes(32),
    }
    write_seeds(out, seeds)


def write_seeds(out, seeds):
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main()
