#include "render.h"

#include <cstdio>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "cli.h"
#include "pefm/overlay.h"

namespace pefm {
namespace cli {

namespace {

cv::Mat as_mat(const torch::Tensor& t, int type) {
  return cv::Mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), type, t.data_ptr()).clone();
}

void outline(cv::Mat& rgb, const cv::Mat& binary, const cv::Scalar& colour) {
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(binary, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(rgb, contours, -1, colour, 2, cv::LINE_AA);
}

// The panel with a caption strip below it, so no text covers the picture.
cv::Mat captioned(const cv::Mat& rgb, const std::string& text) {
  cv::Mat out(rgb.rows + 20, rgb.cols, CV_8UC3, cv::Scalar(0, 0, 0));
  rgb.copyTo(out(cv::Rect(0, 0, rgb.cols, rgb.rows)));
  cv::putText(out, text, {4, rgb.rows + 14}, cv::FONT_HERSHEY_SIMPLEX, 0.42, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  return out;
}

}  // namespace

io::Image side_by_side(const torch::Tensor& image, const torch::Tensor& mask, const torch::Tensor& heat,
                       double score, double outline_level, int panel) {
  const cv::Size size(panel, panel);
  cv::Mat img;
  cv::resize(as_mat(image.contiguous(), CV_8UC3), img, size, 0, 0, cv::INTER_AREA);

  cv::Mat gt_bin;
  cv::resize(as_mat(mask.to(torch::kUInt8).mul(255).contiguous(), CV_8UC1), gt_bin, size, 0, 0, cv::INTER_NEAREST);
  cv::Mat gt = img.clone();
  outline(gt, gt_bin, cv::Scalar(0, 255, 0));

  cv::Mat h;
  cv::resize(as_mat(heat.to(torch::kFloat32).clamp(0, 1).contiguous(), CV_32FC1), h, size, 0, 0, cv::INTER_LINEAR);
  // the element's colour map (pefm/overlay.h), so a score looks the same in both
  cv::Mat h8, colour, lut(1, 256, CV_8UC3);
  h.convertTo(h8, CV_8UC1, 255.0);
  for (int i = 0; i < 256; ++i) heat_colour(i / 255.0, lut.ptr<uint8_t>(0) + 3 * i);
  cv::cvtColor(h8, colour, cv::COLOR_GRAY2RGB);
  cv::LUT(colour, lut, colour);
  cv::Mat overlay;
  cv::addWeighted(img, 0.5, colour, 0.5, 0.0, overlay);
  cv::Mat above = h >= static_cast<float>(outline_level);
  outline(overlay, above, cv::Scalar(255, 255, 255));

  char text[64];
  std::snprintf(text, sizeof(text), "heat map, score %.3f", score);
  cv::Mat out;
  cv::hconcat(std::vector<cv::Mat>{captioned(img, "image"), captioned(gt, "ground truth"), captioned(overlay, text)},
              out);
  io::Image result;
  result.width = out.cols;
  result.height = out.rows;
  result.channels = 3;
  result.pixels.assign(out.data, out.data + out.total() * 3);
  return result;
}

}  // namespace cli
}  // namespace pefm
