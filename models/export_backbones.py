#!/usr/bin/env python3
"""Export torchvision ImageNet backbones as plain state-dict files for pefm.

Run on a machine with torchvision and internet access; copy the resulting ARCH.pth
files into a folder named by $PEFM_BACKBONE_DIR (or the installed models/ folder).

  python3 export_backbones.py --out ~/pefm-backbones            # every supported arch
  python3 export_backbones.py --out . --arch resnet34 resnet50  # the paper's pair

Each file is `torch.save(dict(model.state_dict()), path)`: a plain dict of tensors with
torchvision's key names, which pefm reads in C++ with torch::pickle_load. The script
re-loads every file into a fresh torchvision model with strict=True and checks that it
still classifies a fixed input identically, so a truncated download cannot slip through.
"""
import argparse
import hashlib
import os
import sys

ARCHS = {
    # arch: (torchvision constructor, weights enum name)
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet34": ("resnet34", "ResNet34_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "wide_resnet50_2": ("wide_resnet50_2", "Wide_ResNet50_2_Weights"),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights"),
}


def export(arch, out_dir, weights_tag):
    import torch
    import torchvision

    ctor_name, enum_name = ARCHS[arch]
    ctor = getattr(torchvision.models, ctor_name)
    weights = getattr(getattr(torchvision.models, enum_name), weights_tag)
    model = ctor(weights=weights).eval()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = os.path.join(out_dir, arch + ".pth")
    tmp = path + ".tmp"
    torch.save(state, tmp)
    # Verify before publishing: strict reload, identical logits on a fixed input.
    check = ctor().eval()
    check.load_state_dict(torch.load(tmp, map_location="cpu"), strict=True)
    x = torch.linspace(-2, 2, 3 * 224 * 224).reshape(1, 3, 224, 224)
    with torch.no_grad():
        if not torch.equal(model(x), check(x)):
            raise RuntimeError(f"{arch}: re-loaded weights give different outputs")
    os.replace(tmp, path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    print(f"{path}: {len(state)} tensors, {os.path.getsize(path)} bytes, sha256 {digest}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".", help="output folder (created if missing)")
    ap.add_argument("--arch", nargs="+", choices=sorted(ARCHS), default=sorted(ARCHS))
    ap.add_argument("--weights", default="IMAGENET1K_V1",
                    help="torchvision weights tag (IMAGENET1K_V1 matches the paper's era)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    try:
        for arch in a.arch:
            export(arch, a.out, a.weights)
    except ImportError as e:
        sys.exit(f"export_backbones.py needs torch and torchvision: {e}")


if __name__ == "__main__":
    main()
