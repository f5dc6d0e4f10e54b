// Precompiled header of the test files (meson cpp_pch, force-included into each of them):
// LibTorch's, GoogleTest's and nlohmann-json's headers are parsed once for all the suites,
// not once per file. No include guard: a precompiled header is compiled as a main file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
