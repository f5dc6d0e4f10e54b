// The training recipe, as pefm-train runs it and any application can: tiles, the split
// (cross-fitting folds or a hold-out, of whole groups), the shipped model's training
// (resumable from a checkpoint), the grouped conformal calibration, the --pe auto search and
// the training-set audit. The caller decodes the images and writes the model; progress,
// notes and stopping go through a TrainObserver.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>

#include "pefm/json_text.h"
#include "pefm/model.h"
#include "pefm/trainer.h"

namespace pefm {

// A decoded normal image.
struct TrainImage {
  std::string path;
  torch::Tensor pixels;  // [H, W, 3] uint8
};

// Which source images are captures of one part (pefm-train --groups): source_key -> group.
// Empty: every image stands alone.
using Groups = std::map<std::string, std::string>;

// The file an image came from, one name per file whatever path named it (--data good and
// --data ./good are the same images).
std::string source_key(const std::string& path);

struct TrainRequest {
  ModelConfig config;  // config.pe is ignored with pe_auto
  bool pe_auto = false;
  std::string source_weights, target_weights;  // weights files; empty: randomly initialised
  TrainOptions options;                        // half_cache is decided by the recipe
  int64_t epochs = 200;
  int folds = 5;                  // cross-fitting folds; 0: hold out val_fraction instead
  double val_fraction = 0.0;
  double false_alarm_rate = 0.01;
  double pixel_false_alarm_rate = 1e-4;
  int tile = 0;                   // train on tile x tile native tiles; 0: whole images
  Groups groups;
  torch::Device device = torch::kCPU;
  std::string checkpoint;         // written after every epoch of the shipped model
  bool resume = false;            // continue from `checkpoint`
  // What the model records of the command as given (data, lr, weight_decay, val_fraction,
  // false_alarm_rate, pixel_false_alarm_rate, groups_file, skipped_images); --resume
  // compares them (same_setting).
  std::map<std::string, std::string> recorded;
};

// A request the images or the checkpoint cannot serve (too few images for the folds, a
// checkpoint of another run, an image without a group); the message names the option.
class TrainSettingsError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// What a run reports as it goes. Every method has a default that does nothing.
class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  // A line for the user: a choice made, a warning ("WARNING: ...").
  virtual void note(const std::string& line) { (void)line; }
  // A step finished ("fold 2/5: trained on ..."), between progress bars.
  virtual void step(const std::string& line) { (void)line; }
  // A stage of `total` units starts ("features", "epoch 3/200", "fold 1/5 epoch 2/200"),
  // has done `done` of them (`detail` may add an overall ETA), and is over (`summary` may be
  // empty).
  virtual void started(const std::string& stage, int64_t total) { (void)stage, (void)total; }
  virtual void progress(const std::string& stage, int64_t done, const std::string& detail) {
    (void)stage, (void)done, (void)detail;
  }
  virtual void finished(const std::string& stage, const std::string& summary) { (void)stage, (void)summary; }
  // Polled between batches: true stops the run, which then writes nothing.
  virtual bool stop_requested() { return false; }
};

// The training-set audit: every calibration image's score, ranked from the most
// anomalous-looking. A defective part in the good folders shows at the top, where it also
// raises the threshold.
struct AuditRow {
  std::string file, group;  // group: empty without groups
  int fold = 0;             // the fold that held the image out (1-based); 0: no cross-fitting
  double score = 0;
  size_t rank = 0;          // 1: the highest score
};

struct TrainOutcome {
  // Empty when the run finished; else why it stopped, for the user (nothing is written).
  std::string stopped;
  std::shared_ptr<Model> model;  // trained and calibrated, its calibration validated
  std::vector<AuditRow> audit;
  const char* scored_by = "";    // "out-of-fold", "held-out" or "in-sample"
  size_t train_images = 0, val_images = 0;
  double feature_seconds = 0, train_seconds = 0;
  double pe_auto_seconds = 0;    // 0: no search this run (a resumed one keeps its choice)
  EpochResult last;              // the last epoch trained this run
};

// Runs the recipe on `images` (moved from). Throws TrainSettingsError for a request they
// cannot serve, std::runtime_error for an unusable checkpoint or a calibration the model
// file would refuse.
TrainOutcome train_recipe(std::vector<TrainImage> images, TrainRequest request, TrainObserver& observer);

// "loss a / b / c": an epoch's three mapping losses.
std::string loss_text(const EpochResult& r);

// One audit row as JSON (the model file's record, pefm-train --train-scores).
Json audit_json(const AuditRow& r, const char* scored_by);

// The audit as the model file keeps it: the few highest-scoring images, as JSON text.
std::string audit_record(const std::vector<AuditRow>& rows, const char* scored_by);

// How many audit rows the model file and pefm-train's summary show.
constexpr size_t kAuditShown = 5;

}  // namespace pefm
