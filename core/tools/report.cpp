#include "report.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace pefm {
namespace cli {

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t b0 = bytes[i], b1 = i + 1 < bytes.size() ? bytes[i + 1] : 0, b2 = i + 2 < bytes.size() ? bytes[i + 2] : 0;
    const uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

std::string num(double v, int digits = 2) {
  if (std::isnan(v)) return "n/a";
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

std::string pct(double v) { return std::isnan(v) ? "n/a" : num(v * 100) + "&nbsp;%"; }

// A plot area of `w` x `h` inside margins, mapping data (x0..x1, y0..y1) to pixels.
class Plot {
 public:
  Plot(double x0, double x1, double y0, double y1) : x0_(x0), x1_(x1 > x0 ? x1 : x0 + 1), y0_(y0), y1_(y1 > y0 ? y1 : y0 + 1) {}
  double x(double v) const { return kLeft + (v - x0_) / (x1_ - x0_) * kW; }
  double y(double v) const { return kTop + kH - (v - y0_) / (y1_ - y0_) * kH; }

  // The frame, ticks and labels; `body` is drawn inside, clipped to the plot area.
  std::string svg(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                  const std::string& body, const std::string& id) const {
    std::ostringstream s;
    s << "<svg width='" << kLeft + kW + 20 << "' height='" << kTop + kH + 50
      << "' role='img' aria-label='" << html_escape(title) << "'>"
      << "<defs><clipPath id='clip-" << id << "'><rect x='" << kLeft << "' y='" << kTop << "' width='" << kW
      << "' height='" << kH << "'/></clipPath></defs>"
      << "<text x='" << kLeft + kW / 2 << "' y='16' class='title'>" << html_escape(title) << "</text>"
      << "<rect x='" << kLeft << "' y='" << kTop << "' width='" << kW << "' height='" << kH << "' class='frame'/>";
    for (int i = 0; i <= 4; ++i) {
      const double xv = x0_ + (x1_ - x0_) * i / 4, yv = y0_ + (y1_ - y0_) * i / 4;
      s << "<line x1='" << x(xv) << "' y1='" << kTop + kH << "' x2='" << x(xv) << "' y2='" << kTop + kH + 4 << "' class='axis'/>"
        << "<text x='" << x(xv) << "' y='" << kTop + kH + 16 << "' class='tick'>" << num(xv) << "</text>"
        << "<line x1='" << kLeft - 4 << "' y1='" << y(yv) << "' x2='" << kLeft << "' y2='" << y(yv) << "' class='axis'/>"
        << "<text x='" << kLeft - 6 << "' y='" << y(yv) + 4 << "' class='tick end'>" << num(yv) << "</text>";
    }
    s << "<text x='" << kLeft + kW / 2 << "' y='" << kTop + kH + 34 << "' class='label'>" << html_escape(xlabel) << "</text>"
      << "<text transform='translate(14," << kTop + kH / 2 << ") rotate(-90)' class='label'>" << html_escape(ylabel)
      << "</text><g clip-path='url(#clip-" << id << ")'>" << body << "</g></svg>";
    return s.str();
  }

  std::string polyline(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& cls) const {
    std::ostringstream s;
    s << "<polyline class='" << cls << "' points='";
    for (size_t i = 0; i < xs.size(); ++i) s << num(x(xs[i]), 1) << "," << num(y(ys[i]), 1) << " ";
    s << "'/>";
    return s.str();
  }

  std::string vline(double v, const std::string& cls, const std::string& label) const {
    std::ostringstream s;
    s << "<line x1='" << x(v) << "' y1='" << kTop << "' x2='" << x(v) << "' y2='" << kTop + kH << "' class='" << cls << "'/>"
      << "<text x='" << x(v) + 3 << "' y='" << kTop + 12 << "' class='note'>" << html_escape(label) << "</text>";
    return s.str();
  }

  std::string dot(double xv, double yv, const std::string& cls, const std::string& label) const {
    if (!std::isfinite(xv) || !std::isfinite(yv)) return "";  // a rate undefined for this test set
    std::ostringstream s;
    s << "<circle cx='" << x(xv) << "' cy='" << y(yv) << "' r='4' class='" << cls << "'><title>" << html_escape(label)
      << "</title></circle><text x='" << x(xv) + 6 << "' y='" << y(yv) + 14 << "' class='note'>" << html_escape(label)
      << "</text>";
    return s.str();
  }

  static constexpr double kLeft = 56, kTop = 26, kW = 320, kH = 240;

 private:
  double x0_, x1_, y0_, y1_;
};

std::string roc_chart(const ReportData& d) {
  const Plot p(0, 1, 0, 1);
  std::string body = p.polyline({0, 1}, {0, 1}, "chance") + p.polyline(d.roc.fpr, d.roc.tpr, "curve");
  if (d.at_model) body += p.dot(d.at_model->false_alarm_rate(), d.at_model->recall(), "op", "model's threshold");
  if (!std::isnan(d.at_best.threshold)) body += p.dot(d.at_best.false_alarm_rate(), d.at_best.recall(), "best", "best F1");
  const double auc = d.rows.empty() ? NAN : d.rows.back().image_auroc;
  return p.svg("Image ROC (AUROC " + num(auc * 100) + " %)", "false-alarm rate (good images called defective)",
               "recall (defective images caught)", body, "roc");
}

std::string pro_chart(const ReportData& d) {
  std::vector<double> fx, py;
  double top = 1.0;
  for (size_t i = 0; i < d.pro.fpr.size(); ++i) {
    if (d.pro.fpr[i] > 0.3) break;  // thresholds descend, so the FPR only grows
    fx.push_back(d.pro.fpr[i]);
    py.push_back(d.pro.pro[i]);
    top = std::max(top, d.pro.pro[i]);
  }
  const Plot p(0, 0.3, 0, top);
  const double aupro = d.rows.empty() ? NAN : d.rows.back().aupro;
  return p.svg("Per-region overlap (AUPRO " + num(aupro * 100) + " %)", "pixel false-positive rate (to 0.3)",
               "mean overlap of defect regions", p.polyline(fx, py, "curve"), "pro");
}

std::string histogram_chart(const ReportData& d) {
  if (d.scores.empty()) return "";
  for (double v : d.scores) {
    if (!std::isfinite(v)) return "<p>Scores not finite: no histogram.</p>";
  }
  double lo = *std::min_element(d.scores.begin(), d.scores.end());
  double hi = *std::max_element(d.scores.begin(), d.scores.end());
  if (d.at_model) lo = std::min(lo, d.at_model->threshold), hi = std::max(hi, d.at_model->threshold);
  if (hi <= lo) hi = lo + 1;
  constexpr int kBins = 30;
  const double width = (hi - lo) / kBins;
  std::vector<double> good(kBins, 0), bad(kBins, 0);
  double n_good = 0, n_bad = 0;
  for (size_t i = 0; i < d.scores.size(); ++i) {
    const int b = static_cast<int>(std::clamp(std::floor((d.scores[i] - lo) / width), 0.0, kBins - 1.0));
    (d.labels[i] ? bad : good)[static_cast<size_t>(b)] += 1;
    (d.labels[i] ? n_bad : n_good) += 1;
  }
  double top = 0;
  for (int b = 0; b < kBins; ++b) {
    if (n_good > 0) good[static_cast<size_t>(b)] /= n_good;
    if (n_bad > 0) bad[static_cast<size_t>(b)] /= n_bad;
    top = std::max({top, good[static_cast<size_t>(b)], bad[static_cast<size_t>(b)]});
  }
  const Plot p(lo, hi, 0, top * 1.1);
  std::ostringstream body;
  for (int b = 0; b < kBins; ++b) {
    const double x0 = lo + b * width;
    for (const auto& [v, cls] : {std::pair<double, const char*>{good[static_cast<size_t>(b)], "good"},
                                 std::pair<double, const char*>{bad[static_cast<size_t>(b)], "bad"}}) {
      if (v <= 0) continue;
      body << "<rect class='" << cls << "' x='" << p.x(x0) << "' y='" << p.y(v) << "' width='"
           << std::max(1.0, p.x(x0 + width) - p.x(x0) - 1) << "' height='" << p.y(0) - p.y(v) << "'/>";
    }
  }
  if (d.at_model) body << p.vline(d.at_model->threshold, "thr", "model's threshold");
  if (!std::isnan(d.at_best.threshold)) body << p.vline(d.at_best.threshold, "thr-best", "best F1");
  return p.svg("Image scores: good (green) vs defective (red)",
               d.calibrated ? "score (0.5 = the model's threshold)" : "raw score", "share of the class's images",
               body.str(), "hist");
}

std::string decisions_rows(const Decisions& d) {
  std::ostringstream s;
  s << "<td>" << num(d.threshold, 4) << "</td><td>" << d.false_positives << " / " << d.false_positives + d.true_negatives
    << " (" << pct(d.false_alarm_rate()) << ")</td><td>" << d.false_negatives << " / "
    << d.true_positives + d.false_negatives << " (" << pct(d.miss_rate()) << ")</td><td>" << pct(d.precision())
    << "</td><td>" << pct(d.recall()) << "</td><td>" << pct(d.f1()) << "</td>";
  return s.str();
}

std::string examples(const std::string& title, const std::vector<ReportExample>& list) {
  std::ostringstream s;
  s << "<h3>" << html_escape(title) << "</h3>";
  if (list.empty()) s << "<p class='none'>none</p>";
  for (const auto& e : list) {
    s << "<figure>";
    if (e.png.empty())
      s << "<p class='none'>(picture unreadable)</p>";
    else
      s << "<img alt='" << html_escape(e.file) << "' src='data:image/png;base64," << base64(e.png) << "'>";
    s << "<figcaption>" << html_escape(e.type) << " &middot; score " << num(e.score, 3) << "<br><code>"
      << html_escape(e.file) << "</code></figcaption></figure>";
  }
  return s.str();
}

}  // namespace

std::string html_report(const ReportData& d) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
    << "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
    << "<title>pefm-eval: " << html_escape(d.model) << "</title><style>"
    << "body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:1400px}"
    << "h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}"
    << "h3{font-size:15px;margin:16px 0 6px}table{border-collapse:collapse}"
    << "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
    << "td:first-child,th:first-child{text-align:left}.meta{color:#555}.charts{display:flex;flex-wrap:wrap;gap:16px}"
    << ".title{font-weight:bold;text-anchor:middle;font-size:13px}.tick{font-size:10px;text-anchor:middle;fill:#444}"
    << ".tick.end{text-anchor:end}.label{font-size:11px;text-anchor:middle;fill:#333}.note{font-size:10px;fill:#111}"
    << ".frame{fill:#fafafa;stroke:#888}.axis{stroke:#888}.curve{fill:none;stroke:#1565c0;stroke-width:2}"
    << ".chance{fill:none;stroke:#aaa;stroke-dasharray:4 3}.op{fill:#e65100}.best{fill:#6a1b9a}"
    << ".good{fill:#2e7d32;fill-opacity:.55}.bad{fill:#c62828;fill-opacity:.55}"
    << ".thr{stroke:#000;stroke-width:2}.thr-best{stroke:#6a1b9a;stroke-width:1.5;stroke-dasharray:5 3}"
    << "figure{display:inline-block;margin:6px;vertical-align:top}figure img{max-width:100%;border:1px solid #ccc}"
    << "figcaption{font-size:12px;max-width:768px;word-break:break-all}.none{color:#555}"
    << "</style></head><body>\n"
    << "<h1>Evaluation of " << html_escape(d.model) << "</h1>"
    << "<p class='meta'>test set <code>" << html_escape(d.data) << "</code> &middot; " << d.scores.size() << " images &middot; "
    << d.image_size << " px &middot; " << html_escape(d.device) << " &middot; " << html_escape(d.created) << "</p>\n";

  h << "<h2>Decisions</h2><table><tr><th>threshold</th><th>value</th><th>false alarms (good)</th>"
    << "<th>misses (defective)</th><th>precision</th><th>recall</th><th>F1</th></tr>";
  if (d.at_model) h << "<tr><td>the model's own</td>" << decisions_rows(*d.at_model) << "</tr>";
  h << "<tr><td>best F1 on this test set</td>" << decisions_rows(d.at_best) << "</tr></table>";
  if (!d.at_model) h << "<p>The model has no calibrated threshold: no decisions at it.</p>";
  if (!d.stated_rate.empty()) h << "<p>" << html_escape(d.stated_rate) << "</p>";

  h << "\n<h2>Curves and scores</h2><div class='charts'>" << roc_chart(d);
  if (!d.pro.fpr.empty()) h << pro_chart(d);
  h << histogram_chart(d) << "</div>";
  if (d.pro.fpr.empty()) h << "<p>No ground-truth masks: pixel metrics and the PRO curve are absent.</p>";

  h << "\n<h2>Per defect type</h2><p class='meta'>each type with the good images</p><table><tr><th>type</th>"
    << "<th>images</th><th>image AUROC</th><th>pixel AUROC</th><th>AUPRO</th></tr>";
  for (const auto& r : d.rows) {
    h << "<tr><td>" << html_escape(r.type) << "</td><td>" << r.images << "</td><td>" << pct(r.image_auroc) << "</td><td>"
      << pct(r.pixel_auroc) << "</td><td>" << pct(r.aupro) << "</td></tr>";
  }
  h << "</table>\n<h2>Worst cases</h2><p class='meta'>image &middot; ground truth (green) &middot; heat map "
    << (d.calibrated ? "(white outline: the regions the element reports, at its region threshold)"
                     : "(uncalibrated model: each map scaled to its own maximum, white outline above half of it)")
    << "</p>"
    << examples(d.misses_title, d.misses) << examples(d.false_alarms_title, d.false_alarms) << "\n</body></html>\n";
  return h.str();
}

}  // namespace cli
}  // namespace pefm
