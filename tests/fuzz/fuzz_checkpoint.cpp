// libFuzzer target for training checkpoints (pefm-train --resume): the trainer state in a
// checkpoint container must be restored or refused with an error; never a crash, a hang,
// or an optimiser state that later corrupts memory. After every accepted state the fuzzer
// takes a training step, which is where a mis-shaped Adam moment used to write out of
// bounds. Inputs are tried as they are and with their checksum repaired.
#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "container.h"
#include "repaired.h"
#include "pefm/model_file.h"
#include "pefm/trainer.h"

namespace {

// The fuzzer's model: MobileNetV2 -> MobileNetV2, 32 px, latent 1,1,1 (tests/fuzz/make_corpus.py
// writes its valid trainer state). One trainer for the whole run; restore() replaces its state.
struct Fixture {
  pefm::Model model;
  std::unique_ptr<pefm::Trainer> trainer;
  Fixture() {
    pefm::ModelConfig cfg;
    cfg.source_arch = cfg.target_arch = "mobilenet_v2";
    cfg.image_size = 32;
    cfg.latent = {1, 1, 1};
    torch::manual_seed(1);
    model = pefm::Model::create(cfg);
    trainer = std::make_unique<pefm::Trainer>(model, pefm::TrainOptions{}, torch::kCPU);
    trainer->add_images(torch::randn({2, 3, 32, 32}));
  }
};

void restore(Fixture& f, const std::string& bytes) {
  pefm::Container c;
  try {
    c = pefm::decode_container(bytes, "fuzz-input");
  } catch (const pefm::ModelFileError&) {
    return;
  }
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : c.tensors) {
    if (name.rfind("trainer.", 0) == 0) state[name.substr(8)] = t;
  }
  try {
    f.trainer->restore(state);
  } catch (const c10::Error&) {
    return;
  } catch (const std::runtime_error&) {
    return;
  }
  f.trainer->train_epoch();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture fixture;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  restore(fixture, bytes);
  if (const auto repaired = pefm_fuzz::with_repaired_trailer(bytes); !repaired.empty()) restore(fixture, repaired);
  return 0;
}
