// Precompiled header of the command-line tools (meson cpp_pch, force-included into each of
// their files): LibTorch's and nlohmann-json's headers are parsed once for all nine, not
// once per file. No include guard: a precompiled header is compiled as a main file.
#include <nlohmann/json.hpp>
#include <torch/torch.h>
