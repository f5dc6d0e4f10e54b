#!/usr/bin/python3
"""PIL's Lanczos resize (Image.LANCZOS == Image.ANTIALIAS, the filter of the PEFM authors'
T.Resize(S, Image.ANTIALIAS)) of seeded random 8-bit images, for tests/test_preprocess.cpp:
shrinking (non-square, by non-integer factors; one side already at the size; 420 -> 16),
enlarging (a single pixel too), and a gray image.
Run: /usr/bin/python3 tests/data/make_resize_golden.py"""
import os

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rng = np.random.default_rng(11)
    d = {}
    cases = [("shrink", (37, 53, 3), 16), ("grow", (20, 13, 3), 32), ("wide", (61, 250, 3), 24),
             ("gray", (45, 30, 1), 16), ("side", (16, 40, 3), 16), ("dot", (1, 1, 3), 8),
             ("big", (240, 420, 3), 16)]
    for name, shape, size in cases:
        # smooth structure plus noise, so both the lobes and the rounding matter
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        img[: shape[0] // 2] //= 3
        pil = Image.fromarray(img[:, :, 0] if shape[2] == 1 else img, "L" if shape[2] == 1 else "RGB")
        out = np.asarray(pil.resize((size, size), Image.LANCZOS))
        if out.ndim == 2:
            out = out[:, :, None]
        d[name + "_in"] = torch.from_numpy(img.copy())
        d[name + "_out"] = torch.from_numpy(out.copy())
    torch.save(d, os.path.join(HERE, "golden", "resize.pt"))
    print({k: tuple(v.shape) for k, v in d.items()})


if __name__ == "__main__":
    main()
