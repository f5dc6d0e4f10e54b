#!/usr/bin/python3
"""Independent metric values for tests/test_metrics.cpp: sklearn's roc_auc_score and the
PEFM authors' aupro (their evaluation counts a region's predicted pixels inside
`prop.filled_image`; ../shared/bench/pefm_ref_train.py counts `prop.coords`, as MVTec's
evaluator does: both are here, skimage + sklearn) on small random cases with ties, regions
of very different sizes and regions with holes.
Run: /usr/bin/python3 tests/data/make_metrics_golden.py"""
import os

import numpy as np
import torch
from skimage import measure
from sklearn.metrics import auc, roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))


def aupro(masks, amaps, steps=1000, max_fpr=0.3, filled=True):
    # filled: the authors' PEFM evaluation (TP = binary map AND prop.filled_image inside the
    # region's bounding box, over prop.area); else pefm_ref_train.aupro (prop.coords).
    masks = masks > 0.45
    lo, hi = amaps.min(), amaps.max()
    delta = (hi - lo) / steps
    regions = [measure.regionprops(measure.label(m, connectivity=2)) for m in masks]
    inv = ~masks
    nneg = inv.sum()
    pros, fprs = [], []
    for th in np.arange(hi, lo, -delta):
        b = amaps > th
        p = []
        for i in range(len(b)):
            for r in regions[i]:
                if filled:
                    y0, x0, y1, x1 = r.bbox
                    p.append(np.logical_and(b[i][y0:y1, x0:x1], r.filled_image).sum() / r.area)
                else:
                    p.append(b[i][r.coords[:, 0], r.coords[:, 1]].mean())
        pros.append(np.mean(p))
        fprs.append((b & inv).sum() / nneg)
    pros, fprs = np.array(pros), np.array(fprs)
    k = fprs <= max_fpr
    f = fprs[k]
    f = (f - f.min()) / (f.max() - f.min())
    return auc(f, pros[k])


def main():
    rng = np.random.default_rng(7)
    # AUROC with heavy ties: scores quantised to 0.1.
    s = np.round(rng.random(400), 1)
    l = (rng.random(400) < 0.3).astype(np.int64)
    # AUPRO: 4 images 48x40, masks with one big blob, a few specks, a diagonal line
    # (8-connected only), an empty mask and a ring holding a speck (holes: the filled and
    # the exact count differ; a diamond ring); maps = noise + bumps inside the defects.
    n, h, w = 5, 48, 40
    masks = np.zeros((n, h, w), bool)
    masks[0, 5:30, 4:28] = True
    masks[1, 3, 3] = True
    masks[1, 40:42, 30:33] = True
    for i in range(20):
        masks[2, 10 + i, 5 + i] = True
    masks[4, 8:30, 6:30] = True
    masks[4, 12:26, 10:26] = False
    masks[4, 18, 17] = True
    masks[4, 2:5, 34:38] = True
    # a diamond ring: its centre reaches the border diagonally only, so it is no hole
    # for an 8-connected fill (skimage) and a hole for a 4-connected one
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        masks[4, 40 + dy, 8 + dx] = True
    maps = rng.random((n, h, w)).astype(np.float64)
    maps += 0.8 * masks * rng.random((n, h, w))
    maps = maps.astype(np.float32)
    d = {
        "auroc_scores": torch.from_numpy(s.astype(np.float32)),
        "auroc_labels": torch.from_numpy(l),
        "auroc_expected": torch.tensor([roc_auc_score(l, s.astype(np.float32))], dtype=torch.float64),
        "pixel_auroc_expected": torch.tensor([roc_auc_score(masks.ravel(), maps.ravel())], dtype=torch.float64),
        "aupro_maps": torch.from_numpy(maps),
        "aupro_masks": torch.from_numpy(masks.astype(np.uint8)),
        "aupro_expected": torch.tensor([aupro(masks, maps)], dtype=torch.float64),
        "aupro_exact_expected": torch.tensor([aupro(masks, maps, filled=False)], dtype=torch.float64),
        "regions_expected": torch.tensor([len(measure.regionprops(measure.label(m, connectivity=2))) for m in masks]),
    }
    torch.save(d, os.path.join(HERE, "golden", "metrics.pt"))
    print({k: v.tolist() for k, v in d.items() if k.endswith("expected")})


if __name__ == "__main__":
    main()
