// Evaluation metrics as the PEFM authors compute them (the authors' protocol).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace pefm {

// Area under the ROC curve; tied scores count one half (the Mann-Whitney statistic, equal
// to sklearn's roc_auc_score). `scores` any shape, `labels` the same number of elements
// (non-zero = positive). Returns NaN when either class is absent.
double auroc(const torch::Tensor& scores, const torch::Tensor& labels);

// Per-region overlap (PRO) curve area: `steps` thresholds evenly spaced from the maximum
// to the minimum score; at each, the false positive rate over all negative pixels and the
// mean overlap over every connected defect region of every image (label_regions in
// postprocess.h); points with FPR <= max_fpr kept, their FPR rescaled to [0, 1] by
// min-max, trapezoidal area.
// maps: [N, H, W] float; masks: [N, H, W] (non-zero = defect). NaN without any region.
double aupro(const torch::Tensor& maps, const torch::Tensor& masks, int64_t steps = 1000,
             double max_fpr = 0.3);

}  // namespace pefm
