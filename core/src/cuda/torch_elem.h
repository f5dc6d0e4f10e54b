// Internal, CUDA-LibTorch builds only: the kernels' element type of a LibTorch dtype. One
// mapping for every launch, so no kernel can be handed a dtype it would misread or write
// past (a bf16 buffer filled with floats).
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include "kernels.h"

namespace pefm {
namespace cuda {

inline Elem kernel_elem(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float: return Elem::kFloat;
    case c10::ScalarType::Half: return Elem::kHalf;
    case c10::ScalarType::BFloat16: return Elem::kBFloat16;
    default: TORCH_CHECK(false, "the CUDA kernels take float32, float16 or bfloat16, not ", type);
  }
}

}  // namespace cuda
}  // namespace pefm
