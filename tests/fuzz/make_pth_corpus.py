#!/usr/bin/env python3
"""Writes the seed corpus of the .pth reader's fuzzer (tests/fuzz/corpus-pth/) without
PyTorch: torch.save's zip layout and protocol-2 pickle, produced by Python's own pickler
with stand-ins for the few torch globals a state dict names. Valid files (plain dict,
OrderedDict with _metadata, views with offsets and strides, a shared storage, int64
scalars, fp16) and crafted ones (a storage shorter than its tensor, an offset past the
end, a huge size, a negative stride, a forbidden global, a one-element storage expanded by
zero strides, thousands of views of one storage)."""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

from make_corpus import write_seeds

HERE = os.path.dirname(os.path.abspath(__file__))

# Stand-in modules: the pickler records module and name, exactly as torch.save does.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils
for kind in ("FloatStorage", "HalfStorage", "LongStorage", "ByteStorage"):
    setattr(torch, kind, type(kind, (), {"__module__": "torch"}))


def _rebuild_tensor_v2(*args):
    raise RuntimeError("stand-in only")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch._utils = torch_utils

ITEM = {"FloatStorage": ("<f", 4), "HalfStorage": ("<e", 2), "LongStorage": ("<q", 8), "ByteStorage": ("<B", 1)}


class Storage:
    def __init__(self, key, kind, values):
        self.key, self.kind, self.values = key, kind, values

    def raw(self):
        fmt, _ = ITEM[self.kind]
        return b"".join(struct.pack(fmt, v) for v in self.values)


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                                     collections.OrderedDict()))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def save(obj, storages, numel_override=None):
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                n = len(o.values) if numel_override is None else numel_override
                return ("storage", getattr(torch, o.kind), o.key, "cpu", n)
            return None

    P(buf, protocol=2).dump(obj)
    out = io.BytesIO()
    def entry(name):  # a fixed date: the same seeds on every run
        return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))

    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(entry("archive/data.pkl"), buf.getvalue())
        z.writestr(entry("archive/byteorder"), "little")
        for s in storages:
            z.writestr(entry("archive/data/" + s.key), s.raw())
        z.writestr(entry("archive/version"), "3\n")
    return out.getvalue()


def main():
    out = os.path.join(HERE, "corpus-pth")
    os.makedirs(out, exist_ok=True)
    w = Storage("0", "FloatStorage", [0.1 * i for i in range(24)])
    b = Storage("1", "FloatStorage", [1.0, -2.0, 3.5])
    n = Storage("2", "LongStorage", [7])
    h = Storage("3", "HalfStorage", [0.5, 1.5, -1.0, 2.0])
    u = Storage("4", "ByteStorage", [1, 2, 3])
    big = Storage("5", "FloatStorage", [0.0] * 4096)
    valid = {"conv.weight": Tensor(w, 0, [2, 3, 2, 2], [12, 4, 2, 1]), "conv.bias": Tensor(b, 0, [3], [1]),
             "bn.num_batches_tracked": Tensor(n, 0, [], [])}
    od = collections.OrderedDict(valid)
    od._metadata = collections.OrderedDict({"": {"version": 1}})
    seeds = {
        "plain-dict": save(valid, [w, b, n]),
        "ordered-dict-metadata": save(od, [w, b, n]),
        "views-and-shared-storage": save({"a": Tensor(w, 4, [4, 2], [1, 4]), "b": Tensor(w, 0, [24], [1]),
                                          "c": Tensor(w, 23, [1, 1], [0, 0])}, [w]),
        "half-and-bytes": save({"h": Tensor(h, 0, [2, 2], [2, 1]), "u": Tensor(u, 1, [2], [1])}, [h, u]),
        "empty-dict": save({}, []),
        "not-a-dict": save([Tensor(b, 0, [3], [1])], [b]),
        "short-storage": save({"w": Tensor(b, 0, [3, 100], [100, 1])}, [b]),
        "offset-past-end": save({"w": Tensor(b, 5, [1], [1])}, [b]),
        "huge-size": save({"w": Tensor(b, 0, [2 ** 62, 4], [4, 1])}, [b]),
        "negative-stride": save({"w": Tensor(b, 2, [3], [-1])}, [b]),
        "numel-lies": save({"w": Tensor(b, 0, [3], [1])}, [b], numel_override=1000),
        "forbidden-global": save({"w": Evil()}, []),
        "zero-stride-expansion": save({"w": Tensor(b, 0, [65536, 65536], [0, 0])}, [b]),
        "many-views": save({f"v{i}": Tensor(big, 0, [4096], [1]) for i in range(500)}, [big]),
    }
    write_seeds(out, seeds)


if __name__ == "__main__":
    main()
