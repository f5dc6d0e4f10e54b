// How pefm writes every JSON text (one library, nlohmann-json): NaN and infinities as
// null, bytes that are not UTF-8 as U+FFFD, control characters escaped, UTF-8 kept
// as is. Header-only and not installed: the tools, pefm-results and pefmpublish share it.
#ifndef PEFM_JSON_TEXT_H
#define PEFM_JSON_TEXT_H

#include <string>

#include <nlohmann/json.hpp>

namespace pefm {

using Json = nlohmann::ordered_json;

// `indent` < 0: one line (JSON lines); else pretty-printed with that many spaces.
inline std::string json_text(const Json& value, int indent = -1) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

}  // namespace pefm

#endif  // PEFM_JSON_TEXT_H
