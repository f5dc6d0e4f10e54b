// Synthetic defects and misaligned copies of normal images: the evidence `pefm-train
// --pe auto` weighs the position-code variants on, from normal images alone.
#pragma once

#include <cstdint>
#include <string>

#include <torch/types.h>

namespace pefm {

// The kinds of synthetic defect, after the anomaly-synthesis literature (CutPaste's patch
// and scar, DRAEM's local disorder) and what lines show (patches from other normal images,
// local warps, colour blotches):
//   kCutPaste  a patch of another normal image pasted at another place, its brightness
//              (colour, on colour images) jittered: a seam, a foreign part;
//   kBlotch    a half-transparent ellipse of one grey level or colour: a stain;
//   kFlip      a patch turned upside down and mirrored in place: local disorder of the
//              structure;
//   kWarp      a swirl of the pixels within a disc: a dent, a bend;
//   kScar      a thin band of another normal image at a random angle: a scratch, a crack;
//   kShift     a patch of the image itself copied over another place of it: every pixel
//              normal, only its place wrong (a part missing or misplaced), the
//              defect only a position code can see.
enum class DefectKind { kCutPaste, kBlotch, kFlip, kWarp, kScar, kShift };
inline constexpr int kDefectKinds = 6;
// The kinds before kShift change what pixels look like; kShift changes only where they are.
inline constexpr int kAppearanceKinds = 5;

// "cut-paste", "blotch", "flip", "warp", "scar", "shift".
std::string to_string(DefectKind kind);

struct SyntheticDefect {
  torch::Tensor image;  // [H, W, 3] uint8
  torch::Tensor mask;   // [H, W] bool: the pixels the defect covers
};

// One defect of `kind` in a copy of `image` ([H, W, 3] uint8; H, W >= 2); `donor` (any
// [h, w, 3] uint8 normal image) lends the pasted pixels. Deterministic in `seed` (and the
// same with every compiler: each random draw is its own statement). On a grey image (all
// channels equal) the defect is grey: a colour the line's camera cannot give would be found
// by any variant, and so tell them apart by nothing.
// A placement that changes little (mean change inside the mask below 4 of 255, as a flip of
// a uniform patch would) is drawn again, up to 8 times, and the most visible draw kept; on
// an image without structure that can still be an invisible defect, or an empty mask.
SyntheticDefect synthetic_defect(const torch::Tensor& image, const torch::Tensor& donor, DefectKind kind,
                                 uint64_t seed);

// A normal copy of `image` with the part misplaced: a window of 85-95 % of its sides at a
// random place (so, stretched back to the model's size, the part sits shifted and a little
// larger, as one placed less exactly would). Deterministic in `seed`.
torch::Tensor misaligned_copy(const torch::Tensor& image, uint64_t seed);

}  // namespace pefm
