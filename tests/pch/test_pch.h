// Precompiled header of the test files (meson cpp_pch, force-included into each of them):
// LibTorch's, GoogleTest's and nlohmann-json's headers are parsed once for all the suites,
// not once per file. No include guard: a precompiled header is compiled as a main file.
#include <gtest/gtest.h>
#if __has_include(<nlohmann/json.hpp>)  // required only with GStreamer (the tools' suites)
#include <nlohmann/json.hpp>
#endif
#include <torch/torch.h>
