// Precompiled header of the command-line tools (meson cpp_pch, force-included into each of
// their files): LibTorch's headers are parsed once for all nine, not once per file. No
// include guard: a precompiled header is compiled as a main file.
#include <torch/torch.h>
