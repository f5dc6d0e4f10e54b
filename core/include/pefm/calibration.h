// Calibration: the record a model carries of how its raw, unbounded residual scores map to
// a normalised 0..1 score, and the rules that apply it. LibTorch-free: the model file, the
// element, pefm-eval and the JSON all read this one record. Fitting it to normal images'
// maps is in pefm/calibration_maps.h; docs/calibration.md has the scale and the argument.
//
//   normalised(x) = clamp(0.5 + 0.5 * (x - threshold) / (threshold - base), 0, 1)
//
// The calibrated decision boundary sits at exactly 0.5 (anomalib's convention); `base`, the
// median normal pixel, maps to 0. Regions are cut at a threshold of their own
// (`region_threshold`, set on its own scale: region_raw).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace pefm {

struct Calibration {
  bool valid = false;
  int64_t images = 0;          // held-out normal images the statistics come from
  double threshold = 0.0;      // raw score that maps to 0.5
  double base = 0.0;           // raw score that maps to 0.0
  double image_mean = 0.0, image_std = 0.0, image_min = 0.0, image_max = 0.0;
  double pixel_mean = 0.0, pixel_std = 0.0;
  double val_false_positive_rate = 0.0;  // normals above threshold (the images that set it)
  std::vector<double> image_quantiles;   // 0%, 1%, ..., 100% of normal image scores
  std::vector<double> pixel_quantiles;   // same, over all normal pixels

  // How the threshold was set. "mean+3std": mean + 3 std of held-out normal images' scores
  // (no stated rate). "conformal": the stated false-alarm rate below, from cross-fitted
  // scores (set_false_alarm_threshold); the other fields are NaN / 0 otherwise.
  std::string method = "mean+3std";
  double false_alarm_target = NAN;     // F asked for (pefm-train --false-alarm-rate)
  double false_alarm_bound = NAN;      // what the threshold guarantees: 1 - k / (n + 1)
  int64_t folds = 0;                   // cross-fitting folds the scores came from
  // Exchangeable units the images formed (pefm-train --groups: captures of one part, frames
  // of one pass, which a fold keeps together); `images` when every image stood alone.
  int64_t groups = 0;
  // With 95 % probability over the draw of the n calibration images, the false-alarm rate
  // of this threshold is at most this (the rate given the calibration set follows
  // Beta(n + 1 - k, k) for continuous scores: clopper_pearson_upper(n - k, n)). With groups,
  // the m groups are the trials and their weight above the threshold (rounded up) the
  // events: an approximation, as the images of a group are not independent.
  double false_alarm_upper95 = NAN;

  // The region threshold: raw pixel score at region-threshold 0.5; NaN when the model has
  // none (regions then at `threshold`). The pixel false-alarm rate asked for, what
  // fraction of the calibration images' pixels (`region_pixels` of them, sampled evenly)
  // lie at or above it, and what fraction of the calibration images hold a region at it.
  double region_threshold = NAN;
  double region_rate_target = NAN;
  double region_rate = NAN;
  double region_image_rate = NAN;
  int64_t region_pixels = 0;

  // Checks a calibration read from a file as a whole: scores and spreads non-negative,
  // base < threshold apart by more than rounding, quantiles in order, rates in 0..1, the
  // stated rate no lower than its image (or group) count allows and no higher than asked
  // unless that count allows no less, its 95 % bound at or above it, folds within the
  // groups, the region threshold above base. Throws std::invalid_argument naming the field.
  void validate() const;

  // Without valid calibration the raw value is returned unchanged.
  double normalize(double raw) const;
  // The same scale, not clamped to 0..1 (for plots of scores beyond either end).
  double normalize_unclamped(double raw) const;
  // The score a frame reports (a float, as FrameResult and GstPefmMeta carry it) and the
  // decision on it: anomalous at or above `threshold`, normalised (0.5: the calibrated
  // threshold; raw scores without calibration). The one rule of the element, pefm-eval and
  // pefm-train.
  float score(double raw) const { return static_cast<float>(normalize(raw)); }
  bool anomalous(double raw, double threshold = 0.5) const { return score(raw) >= threshold; }
  // Raw score of a normalised value (inverse of normalize inside (0, 1)).
  double denormalize(double normalised) const;
  // Raw pixel score of a region-threshold value (see above); the value itself without
  // valid calibration.
  double region_raw(double region_normalised) const;
  // The raw level regions are cut at for a region-threshold value: region_raw kept inside
  // what the normalised map resolves (just above `base`, at most the raw score of
  // normalised 1), so that the regions, cut from the normalised map at normalize(cut), are
  // the areas the contours drawn from that map outline. The value itself without valid
  // calibration.
  double region_cut(double region_normalised) const;


  // Replaces the threshold by the conformal one for `target` (conformal_threshold) on
  // `scores`, n normal images' scores from models that did not train on them (nor on any
  // image of their group: `group`, empty when every image stands alone), and records the
  // rate, its bound and the 95 % bound given the calibration set. Throws
  // std::invalid_argument for an empty or non-finite `scores`, a `group` of another length
  // or a target outside (0, 1).
  void set_false_alarm_threshold(const std::vector<double>& scores, double target, int64_t folds,
                                 const std::vector<int64_t>& group = {});

};

// The order-statistic (split-conformal) threshold: the k-th smallest of n scores, k =
// ceil((n + 1)(1 - target)). For a new score exchangeable with them, P(new > threshold)
// <= 1 - k / (n + 1) = bound <= target. With n < 1 / target - 1 there are too few scores
// for `target`: k is then n (the largest score) and the bound 1 / (n + 1), the smallest
// rate n scores support.
//
// Images in groups (`group[i]`: score i's group; empty: each score alone). Captures of one
// part, or neighbouring frames of a video, are not exchangeable with each other, only the
// groups are (a new image comes from a new part). The threshold is then the smallest score
// t with (W(t) + 1) / (m + 1) <= target, m groups, W(t) the groups' share of images above
// t (an image weighs 1 / |its group|), and bound = (W(t) + 1) / (m + 1). For a random image
// of a new group exchangeable with the m, P(new > t) <= target (docs/calibration.md has
// the argument). With too few groups: the largest score, and 1 / (m + 1). The rate is per
// group, then per image within it: where group sizes vary with the scores it is not the
// rate over a pool of images. Without ties, groups of one image are the rule above
// (W = n - k); with ties that rule errs on the safe side (its bound counts tied scores as
// above).
struct ConformalThreshold {
  double threshold = 0.0;
  int64_t rank = 0;    // k, 1-based (with groups: the scores at or below the threshold)
  double bound = 0.0;
  bool enough = true;  // n (m) supports `target`
  int64_t units = 0;   // n, or m with groups
  double above = 0.0;  // n - k, or W(threshold) with groups
};
ConformalThreshold conformal_threshold(std::vector<double> scores, double target, const std::vector<int64_t>& group = {});

// One-sided upper confidence bound on a binomial rate after `k` events in `n` trials
// (Clopper-Pearson): the p with P(X <= k | n, p) = 1 - confidence; 1 when k == n.
double clopper_pearson_upper(int64_t k, int64_t n, double confidence = 0.95);


}  // namespace pefm
