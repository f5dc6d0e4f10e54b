// Whether this build runs under AddressSanitizer (tests/sanitize/run.sh). Standard library
// only, so the LibTorch-free .pth self-test can use it too.
#pragma once

namespace pefm_test {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

}  // namespace pefm_test
