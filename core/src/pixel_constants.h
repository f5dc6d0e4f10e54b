// The constants of the preprocessing step that its two implementations, the CPU path
// (preprocess.cpp, resample.cpp) and the CUDA kernel (cuda/preprocess.cu), must share.
// Plain C++ with no includes, so nvcc compiles it without LibTorch.
#pragma once

namespace pefm {

// ImageNet's per-channel mean and standard deviation (R, G, B), as torchvision normalises.
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

namespace resample {
// Fixed-point fraction bits of 8-bit weights: 32 - 8 - 2, as PIL.
constexpr int kPrecisionBits = 22;
}  // namespace resample

}  // namespace pefm
