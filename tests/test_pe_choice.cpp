// --pe auto's rule (pe_choice.h) on per-probe scores made by hand: the gains' sign, the
// per-unit averaging, the two-standard-error bar and the pooled-merit condition.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "pefm/pe_choice.h"

namespace {

using pefm::PeMode;
using pefm::PeTrial;

PeTrial trial(PeMode pe, std::vector<double> per_image, double merit) {
  PeTrial t;
  t.pe = pe;
  t.per_image = std::move(per_image);
  t.pixel_auroc = t.aupro = merit;
  return t;
}

const std::vector<std::string> kKinds = {"cut-paste", "blotch", "flip", "warp", "scar", "cut-paste"};

TEST(PeChoice, ACodeThatLocalisesEveryProbeBetterIsChosenWithAPositiveGain) {
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.95, 0.96, 0.94, 0.97, 0.95, 0.96}, 0.9),
                                 trial(PeMode::kNone, {0.80, 0.82, 0.79, 0.81, 0.80, 0.83}, 0.8),
                                 trial(PeMode::kConcat, {0.81, 0.80, 0.80, 0.82, 0.79, 0.83}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, {0, 1, 2, 3, 4, 5}, kKinds), PeMode::kAdd);
  const auto& add = trials[0];
  EXPECT_NEAR(add.gain, (0.15 + 0.14 + 0.15 + 0.16 + 0.15 + 0.13) / 6, 1e-12);
  EXPECT_TRUE(add.eligible);
  EXPECT_NEAR(add.gain_by_kind.at("cut-paste").first, (0.15 + 0.13) / 2, 1e-12);
  EXPECT_EQ(add.gain_by_kind.at("cut-paste").second, 2);
  EXPECT_GT(add.gain_by_kind.at("warp").first, 0);
  EXPECT_FALSE(trials[2].eligible);  // concat's gain is within noise
}

TEST(PeChoice, NoneIsKeptWhenTheCodeLocalisesWorse) {
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.70, 0.72, 0.69, 0.71}, 0.7),
                                 trial(PeMode::kNone, {0.90, 0.91, 0.92, 0.90}, 0.9)};
  EXPECT_EQ(pefm::choose_pe(trials, {0, 1, 2, 3}, kKinds), PeMode::kNone);
  EXPECT_LT(trials[0].gain, 0);
  EXPECT_FALSE(trials[0].eligible);
  EXPECT_LT(trials[0].gain_by_kind.at("blotch").first, 0);
}

TEST(PeChoice, GainsAreAveragedPerUnitBeforeTheStandardError) {
  // Units 0 (three probes) and 1 (one probe): gains per unit 0.1 and 0.25, not four equal
  // votes (which would give a mean of 0.1375).
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.6, 0.7, 0.8, 0.95}, 0.9),
                                 trial(PeMode::kNone, {0.5, 0.6, 0.7, 0.7}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, {0, 0, 0, 1}, kKinds), PeMode::kAdd);
  EXPECT_NEAR(trials[0].gain, 0.175, 1e-12);
  EXPECT_NEAR(trials[0].gain_se, 0.075, 1e-12);  // sd 0.106 over sqrt(2)
  EXPECT_TRUE(trials[0].eligible);              // 0.175 > 2 x 0.075
}

TEST(PeChoice, AGainBelowTwoStandardErrorsOrAWorsePooledMeritKeepsNone) {
  std::vector<PeTrial> noisy = {trial(PeMode::kAdd, {0.9, 0.6, 0.95, 0.62}, 0.9),
                                trial(PeMode::kNone, {0.8, 0.7, 0.8, 0.7}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(noisy, {0, 1, 2, 3}, kKinds), PeMode::kNone);
  EXPECT_GT(noisy[0].gain, 0);
  EXPECT_FALSE(noisy[0].eligible);
  std::vector<PeTrial> worse_pooled = {trial(PeMode::kAdd, {0.95, 0.96, 0.94, 0.97}, 0.7),
                                       trial(PeMode::kNone, {0.80, 0.82, 0.79, 0.81}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(worse_pooled, {0, 1, 2, 3}, kKinds), PeMode::kNone);
  EXPECT_FALSE(worse_pooled[0].eligible);
}

TEST(PeChoice, OfTwoEligibleCodesTheLargerGainWins) {
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.90, 0.91, 0.90, 0.91}, 0.9),
                                 trial(PeMode::kNone, {0.80, 0.81, 0.80, 0.81}, 0.8),
                                 trial(PeMode::kConcat, {0.95, 0.96, 0.95, 0.96}, 0.9)};
  EXPECT_EQ(pefm::choose_pe(trials, {0, 1, 2, 3}, kKinds), PeMode::kConcat);
  EXPECT_TRUE(trials[0].eligible);
  EXPECT_TRUE(trials[2].eligible);
}

TEST(PeChoice, OneUnitGivesNoGainAndNoChoiceButNone) {
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.99, 0.99}, 0.99), trial(PeMode::kNone, {0.5, 0.5}, 0.5)};
  EXPECT_EQ(pefm::choose_pe(trials, {0, 0}, kKinds), PeMode::kNone);
  EXPECT_TRUE(std::isnan(trials[0].gain));
}

TEST(PeChoice, WithoutAFiniteNoneTheBestFiniteMeritWinsAndNoFiniteMeritThrows) {
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.9}, 0.7), trial(PeMode::kNone, {0.9}, NAN),
                                 trial(PeMode::kConcat, {0.9}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, {0}, kKinds), PeMode::kConcat);
  std::vector<PeTrial> none_finite = {trial(PeMode::kAdd, {0.9}, NAN), trial(PeMode::kNone, {0.9}, NAN)};
  EXPECT_THROW(pefm::choose_pe(none_finite, {0}, kKinds), std::runtime_error);
}

// A code that localises parts moved within their image (the defect only it can see) is
// chosen on that evidence alone, unless it loses on the appearance defects; a code that
// does nothing for moved parts needs the appearance evidence.
TEST(PeChoice, APositionGainCountsWhenTheAppearanceDefectsDoNotSufferFromIt) {
  const std::vector<std::string> kinds = {"cut-paste", "blotch", "flip", "shift", "shift", "shift"};
  const std::vector<size_t> units = {0, 1, 2, 0, 1, 2};
  // add: no appearance gain beyond noise, a clear gain on every moved part
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {0.81, 0.79, 0.80, 0.90, 0.92, 0.91}, 0.8),
                                 trial(PeMode::kNone, {0.80, 0.80, 0.80, 0.60, 0.61, 0.62}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, units, kinds), PeMode::kAdd);
  EXPECT_NEAR(trials[0].position_gain, 0.30, 1e-12);
  EXPECT_FALSE(trials[0].gain > 2 * trials[0].gain_se) << "chosen on the position evidence alone";
  EXPECT_TRUE(trials[0].eligible);
  // the same position gain, but a clear loss on the appearance defects: none
  trials = {trial(PeMode::kAdd, {0.70, 0.71, 0.69, 0.90, 0.92, 0.91}, 0.8),
            trial(PeMode::kNone, {0.80, 0.80, 0.80, 0.60, 0.61, 0.62}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, units, kinds), PeMode::kNone);
  EXPECT_FALSE(trials[0].eligible);
  // no gain on moved parts and none on appearance: none
  trials = {trial(PeMode::kAdd, {0.81, 0.79, 0.80, 0.61, 0.60, 0.63}, 0.8),
            trial(PeMode::kNone, {0.80, 0.80, 0.80, 0.60, 0.61, 0.62}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, units, kinds), PeMode::kNone);
  // a significant but small gain on moved parts (a texture with a little structure): none
  trials = {trial(PeMode::kAdd, {0.81, 0.79, 0.80, 0.62, 0.63, 0.64}, 0.8),
            trial(PeMode::kNone, {0.80, 0.80, 0.80, 0.60, 0.61, 0.62}, 0.8)};
  EXPECT_EQ(pefm::choose_pe(trials, units, kinds), PeMode::kNone);
  EXPECT_NEAR(trials[0].position_gain, 0.02, 1e-12);
  EXPECT_LT(0.0, trials[0].position_gain - 2 * trials[0].position_se) << "significant, and still not enough";
}

// A search that found its probes at chance level keeps none whatever the rule chose; at
// kWeakEvidenceAuroc and above the rule's choice stands. NaN everywhere is weak too.
TEST(PeChoice, ChanceLevelEvidenceKeepsNoneAndEnoughKeepsTheRulesChoice) {
  std::vector<PeTrial> trials = {trial(PeMode::kAdd, {}, 0.74), trial(PeMode::kNone, {}, 0.70),
                                 trial(PeMode::kConcat, {}, NAN)};
  auto s = pefm::evidence_strength(trials);
  EXPECT_DOUBLE_EQ(s.best_pixel_auroc, 0.74);
  EXPECT_TRUE(s.weak);
  EXPECT_EQ(pefm::gate_weak_evidence(PeMode::kAdd, s), PeMode::kNone);
  trials[2].pixel_auroc = pefm::kWeakEvidenceAuroc;
  s = pefm::evidence_strength(trials);
  EXPECT_FALSE(s.weak);
  EXPECT_EQ(pefm::gate_weak_evidence(PeMode::kAdd, s), PeMode::kAdd);
  EXPECT_EQ(pefm::gate_weak_evidence(PeMode::kConcat, s), PeMode::kConcat);
  for (auto& t : trials) t.pixel_auroc = NAN;
  s = pefm::evidence_strength(trials);
  EXPECT_TRUE(std::isnan(s.best_pixel_auroc));
  EXPECT_TRUE(s.weak);
}

}  // namespace
