// The constants of the preprocessing step that its two implementations, the CPU path
// (preprocess.cpp, resample.cpp) and the CUDA kernel (cuda/preprocess.cu), must share.
// Plain C++ with no includes, so nvcc compiles it without LibTorch.
#pragma once

namespace pefm {

// ImageNet's per-channel mean and standard deviation (R, G, B), as torchvision normalises.
// Scalars too: device code may read a host constexpr scalar, not an element of an array.
constexpr float kImageNetMeanR = 0.485f, kImageNetMeanG = 0.456f, kImageNetMeanB = 0.406f;
constexpr float kImageNetStdR = 0.229f, kImageNetStdG = 0.224f, kImageNetStdB = 0.225f;
constexpr float kImageNetMean[3] = {kImageNetMeanR, kImageNetMeanG, kImageNetMeanB};
constexpr float kImageNetStd[3] = {kImageNetStdR, kImageNetStdG, kImageNetStdB};

namespace resample {
// Fixed-point fraction bits of 8-bit weights: 32 - 8 - 2, as PIL.
constexpr int kPrecisionBits = 22;
}  // namespace resample

}  // namespace pefm
