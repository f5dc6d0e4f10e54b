// Precompiled header of libpefm-core (meson cpp_pch, force-included into every core
// translation unit): LibTorch's headers are most of the compile time of each one; with
// this they are parsed once per build. No include guard: a
// precompiled header is compiled as a main file.
#include <torch/torch.h>
