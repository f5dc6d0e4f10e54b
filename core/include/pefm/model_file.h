// The self-contained, versioned model file (`cable.pt`).
//
// Layout (little endian):
//   "PEFMMODL" | u32 format version | u32 flags (0)
//   u64 metadata length | metadata: UTF-8 "key=value" lines (config, calibration, training)
//   u32 tensor count | per tensor: u16 name length, name, u8 dtype, u8 ndim,
//                       i64 dims[ndim], u64 byte count, raw bytes
//   u32 CRC-32 of everything before it | "PEFM_END"
// A reader checks magic, version, every size against the bytes left, the checksum, and
// that every weight is finite, before it builds anything.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "pefm/model_file_format.h"
#include "pefm/model.h"

namespace pefm {

// Writes atomically: a temporary file in the same folder, fsync, rename. A crash at any
// point leaves either the old file or the complete new one.
void save_model(const Model& model, const std::string& path);
Model load_model(const std::string& path);
// Same, from bytes in memory (`origin` names them in errors); used by the fuzzer.
Model load_model_from_bytes(const std::string& bytes, const std::string& origin);

// The metadata a model file stores (config.*, calibration.*, training.*, created_by), as
// key=value text.
std::map<std::string, std::string> model_metadata(const Model& model);

// A training checkpoint: the model so far plus the trainer's state (optimisers, epoch),
// for `pefm-train --resume`. Same container, format "pefm-checkpoint".
struct Checkpoint {
  Model model;
  std::map<std::string, torch::Tensor> trainer_state;
};
void save_checkpoint(const Model& model, const std::map<std::string, torch::Tensor>& trainer_state,
                     const std::string& path);
Checkpoint load_checkpoint(const std::string& path);

}  // namespace pefm
