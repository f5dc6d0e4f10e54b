// Precompiled header of test-core (meson cpp_pch, force-included into each core test
// file): LibTorch's and GoogleTest's headers are parsed once for the ten files, not ten
// times. No include guard: a precompiled header is compiled as a main file.
#include <gtest/gtest.h>
#include <torch/torch.h>
