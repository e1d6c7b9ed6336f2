// nmsnn/viz/plots.hpp — the plots pynmsnn's users look at, as self-contained SVG strings:
// neuron activity (layer heat maps, a single neuron's trace, spike raster, firing-rate
// histogram), training curves, confusion matrices, ROC and precision-recall curves, class
// distribution, and for regression predicted-vs-actual, residuals and the error histogram.
// Write one to a file with write_file_atomically (nmsnn/io/atomic_file.hpp) or put several in
// an HTML report (nmsnn/viz/report.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/metrics/metrics.hpp"
#include "nmsnn/train/fit_options.hpp"
#include "nmsnn/viz/recording.hpp"
#include "nmsnn/viz/svg.hpp"

namespace nmsnn::viz {

/// One line of a line plot.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

namespace detail {
inline void finite_range(const std::vector<double>& v, double& lo, double& hi) {
  for (double a : v)
    if (std::isfinite(a)) lo = std::min(lo, a), hi = std::max(hi, a);
}
inline std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * v);
  return buf;
}
inline std::string fixed(double v, int digits = 3) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
}  // namespace detail

/// Lines through (x, y) points; non-finite points are skipped. A legend names the series when
/// there is more than one (or when `legend` is set).
inline std::string line_plot(const std::vector<Series>& series, const PlotOptions& o, bool legend = false,
                             bool legend_bottom = false, std::optional<std::array<double, 4>> range = {}) {
  Canvas c(o.width, o.height);
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) nmsnn::detail::raise<ShapeError>("line_plot: series '", s.name, "' has ", s.x.size(), " x and ", s.y.size(), " y values");
    detail::finite_range(s.x, x0, x1);
    detail::finite_range(s.y, y0, y1);
  }
  if (x0 > x1) x0 = 0, x1 = 1;
  if (y0 > y1) y0 = 0, y1 = 1;
  if (range) x0 = (*range)[0], x1 = (*range)[1], y0 = (*range)[2], y1 = (*range)[3];
  else {
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
  }
  Axes ax(c, x0, x1, y0, y1);
  ax.decorate(o);
  std::vector<std::string> names;
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    std::vector<std::pair<double, double>> pts;
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) pts.emplace_back(ax.x(s.x[i]), ax.y(s.y[i]));
    c.polyline(pts, series_colour(k), 2);
    if (pts.size() == 1) c.circle(pts[0].first, pts[0].second, 3, series_colour(k));
    names.push_back(s.name);
  }
  if (legend || series.size() > 1) ax.legend(names, legend_bottom);
  return c.str();
}

/// A matrix as coloured cells (rows top to bottom), with a colour bar. Signed data use the
/// diverging map centred on zero; non-negative data use viridis. Runs of equal colour in a
/// row are merged into one rectangle, which keeps files of mostly-silent layers small.
inline std::string heatmap(const Eigen::MatrixXd& M, const PlotOptions& o, bool signed_values = true) {
  if (M.size() == 0) nmsnn::detail::raise<ShapeError>("heatmap: empty matrix");
  Canvas c(o.width, o.height);
  double lo = 0, hi = 0;
  for (Index i = 0; i < M.size(); ++i)
    if (std::isfinite(M.data()[i])) lo = std::min(lo, M.data()[i]), hi = std::max(hi, M.data()[i]);
  const bool diverge = signed_values && lo < 0;
  if (diverge) hi = std::max(std::abs(lo), std::abs(hi)), lo = -hi;
  if (hi - lo < 1e-12) hi = lo + 1;
  auto colour_of = [&](double v) {
    const double t = (v - lo) / (hi - lo);
    // 64 levels: enough for the eye, and equal neighbours merge.
    const double q = std::round(std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 63) / 63;
    return diverge ? diverging(q) : viridis(q);
  };
  Axes ax(c, 0, double(M.cols()), 0, double(M.rows()), 70, 90, 40, 55);
  const double cw = ax.plot_width() / double(M.cols()), ch = ax.plot_height() / double(M.rows());
  for (Index i = 0; i < M.rows(); ++i) {
    Index j = 0;
    while (j < M.cols()) {
      const std::string col = colour_of(M(i, j));
      Index k = j + 1;
      while (k < M.cols() && colour_of(M(i, k)) == col) ++k;
      // A hair wider and taller so that anti-aliasing leaves no seams between cells.
      c.rect(ax.left() + cw * double(j), ax.top() + ch * double(i), cw * double(k - j) + 0.3, ch + 0.3, col);
      j = k;
    }
  }
  // The y axis counts rows from the top: label with row indices.
  ax.decorate(o, false, true, false);
  for (double t : nice_ticks(0, double(M.rows() - 1), std::max(2, int(ax.plot_height() / 50)))) {
    const double yy = ax.top() + ch * (t + 0.5);
    c.line(ax.left() - 5, yy, ax.left(), yy, "#444");
    c.text(ax.left() - 8, yy + 4, format_number(t), 11, "end");
  }
  // Colour bar.
  const double bx = ax.left() + ax.plot_width() + 18, bw = 16;
  const int steps = 64;
  for (int s = 0; s < steps; ++s) {
    const double t = double(s) / (steps - 1);
    const double yy = ax.top() + ax.plot_height() * (1 - double(s + 1) / steps);
    c.rect(bx, yy, bw, ax.plot_height() / steps + 0.3, diverge ? diverging(t) : viridis(t));
  }
  c.rect(bx, ax.top(), bw, ax.plot_height(), "none", "stroke=\"#444\"");
  for (double t : nice_ticks(lo, hi, 4)) {
    if (t < lo - 1e-12 || t > hi + 1e-12) continue;
    const double yy = ax.top() + ax.plot_height() * (1 - (t - lo) / (hi - lo));
    c.line(bx + bw, yy, bx + bw + 4, yy, "#444");
    c.text(bx + bw + 6, yy + 4, format_number(t), 10, "start");
  }
  return c.str();
}

/// A dot where a neuron's output is > 0 (neurons x T matrix).
inline std::string spike_raster(const Eigen::MatrixXd& output, const PlotOptions& o) {
  if (output.size() == 0) nmsnn::detail::raise<ShapeError>("spike_raster: empty matrix");
  Canvas c(o.width, o.height);
  Axes ax(c, -0.5, double(output.cols()) - 0.5, -0.5, double(output.rows()) - 0.5);
  ax.decorate(o);
  const double radius = std::clamp(std::min(ax.plot_width() / double(output.cols()), ax.plot_height() / double(output.rows())) * 0.4, 0.6, 3.0);
  for (Index i = 0; i < output.rows(); ++i)
    for (Index t = 0; t < output.cols(); ++t)
      if (output(i, t) > 0) c.circle(ax.x(double(t)), ax.y(double(i)), radius, "#1f3b73");
  return c.str();
}

/// A histogram of values in `bins` equal bins.
inline std::string histogram(const std::vector<double>& values, int bins, const PlotOptions& o) {
  if (bins < 1) nmsnn::detail::raise<ValueError>("histogram: bins must be >= 1");
  double lo = 1e300, hi = -1e300;
  detail::finite_range(values, lo, hi);
  if (lo > hi) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  std::vector<double> count(std::size_t(bins), 0);
  for (double v : values)
    if (std::isfinite(v)) count[std::size_t(std::min(bins - 1, int((v - lo) / (hi - lo) * bins)))] += 1;
  Canvas c(o.width, o.height);
  const double top = *std::max_element(count.begin(), count.end());
  Axes ax(c, lo, hi, 0, std::max(1.0, top * 1.08));
  ax.decorate(o);
  const double w = (hi - lo) / bins;
  for (int b = 0; b < bins; ++b) {
    const double x0 = ax.x(lo + w * b), x1 = ax.x(lo + w * (b + 1));
    c.rect(x0, ax.y(count[std::size_t(b)]), std::max(0.5, x1 - x0 - 1), ax.y(0) - ax.y(count[std::size_t(b)]),
           "#4c72b0");
  }
  return c.str();
}

/// Labelled bars.
inline std::string bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values,
                             const PlotOptions& o) {
  if (labels.size() != values.size()) nmsnn::detail::raise<ShapeError>("bar_chart: ", labels.size(), " labels for ", values.size(), " values");
  Canvas c(o.width, o.height);
  double top = 0;
  for (double v : values) top = std::max(top, std::isfinite(v) ? v : 0.0);
  const double n = double(std::max<std::size_t>(1, values.size()));
  Axes ax(c, 0, n, 0, std::max(1.0, top * 1.12));
  ax.decorate(o, true, false, true);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = std::isfinite(values[i]) ? values[i] : 0.0;
    const double x0 = ax.x(double(i) + 0.15), x1 = ax.x(double(i) + 0.85);
    c.rect(x0, ax.y(v), x1 - x0, ax.y(0) - ax.y(v), series_colour(i));
    c.text((x0 + x1) / 2, ax.y(v) - 4, format_number(v), 11);
    c.text((x0 + x1) / 2, ax.y(0) + 18, labels[i], 11);
  }
  return c.str();
}

// --- neuron activity ---------------------------------------------------------------

/// Heat map of one recorded layer's emitted inner state (or output) through time.
inline std::string layer_heatmap(const Recording& r, Index layer, bool output, std::string title = {}) {
  const auto& L = r.layers.at(std::size_t(layer));
  if (title.empty())
    title = "Layer " + std::to_string(layer + 1) + (output ? (L.spikes ? " spikes" : " output") : (L.spikes ? " membrane" : " inner state")) +
            ", sample " + std::to_string(r.sample);
  return heatmap(output ? L.output : L.state, {.width = 720, .height = 420, .title = title, .xlabel = "time step", .ylabel = "neuron"},
                 !output);
}

/// One neuron's emitted inner state and output through time, with its threshold.
inline std::string neuron_trace(const Recording& r, Index layer, Index neuron, double threshold = 1.0) {
  const auto& L = r.layers.at(std::size_t(layer));
  if (neuron < 0 || neuron >= L.state.rows()) nmsnn::detail::raise<ValueError>("neuron_trace: neuron ", neuron, " is outside 0..", L.state.rows() - 1);
  Series v{L.spikes ? "membrane" : "inner state", {}, {}}, o{L.spikes ? "spike" : "output", {}, {}}, th{"threshold", {}, {}};
  for (Index t = 0; t < r.time_steps; ++t) {
    v.x.push_back(double(t)), v.y.push_back(L.state(neuron, t));
    o.x.push_back(double(t)), o.y.push_back(L.output(neuron, t));
  }
  th.x = {0.0, double(r.time_steps - 1)};
  th.y = {threshold, threshold};
  return line_plot({v, o, th},
                   {.width = 720, .height = 360,
                    .title = "Layer " + std::to_string(layer + 1) + ", neuron " + std::to_string(neuron) + ", sample " + std::to_string(r.sample),
                    .xlabel = "time step", .ylabel = "value"},
                   true);
}

/// Spike raster of one recorded layer.
inline std::string layer_raster(const Recording& r, Index layer) {
  return spike_raster(r.layers.at(std::size_t(layer)).output,
                      {.width = 720, .height = 380, .title = "Layer " + std::to_string(layer + 1) + " spikes (output > 0)",
                       .xlabel = "time step", .ylabel = "neuron"});
}

/// Histogram of the per-neuron firing rates of one recorded layer.
inline std::string firing_rate_histogram(const Recording& r, Index layer) {
  const auto& L = r.layers.at(std::size_t(layer));
  return histogram(std::vector<double>(L.firing_rate.data(), L.firing_rate.data() + L.firing_rate.size()), 20,
                   {.title = "Layer " + std::to_string(layer + 1) + " firing rates (mean " + detail::percent(L.mean_firing_rate) + ")",
                    .xlabel = "fraction of steps with output > 0", .ylabel = "neurons"});
}

// --- training ----------------------------------------------------------------------

/// Loss and metric per epoch, training and (when present) validation: two plots side by side
/// in one SVG would be hard to read small, so this returns the loss plot, and
/// metric_curves() the other.
inline std::string loss_curves(const History& h) {
  Series tr{"train", {}, h.loss}, va{"validation", {}, h.val_loss};
  for (std::size_t i = 0; i < h.loss.size(); ++i) tr.x.push_back(double(i + 1));
  for (std::size_t i = 0; i < h.val_loss.size(); ++i) va.x.push_back(double(i + 1));
  std::vector<Series> s{tr};
  if (!h.val_loss.empty()) s.push_back(va);
  return line_plot(s, {.title = "Loss per epoch", .xlabel = "epoch", .ylabel = "loss"}, true);
}
inline std::string metric_curves(const History& h, const std::string& metric_name) {
  Series tr{"train", {}, h.metric}, va{"validation", {}, h.val_metric};
  for (std::size_t i = 0; i < h.metric.size(); ++i) tr.x.push_back(double(i + 1));
  for (std::size_t i = 0; i < h.val_metric.size(); ++i) va.x.push_back(double(i + 1));
  std::vector<Series> s{tr};
  if (!h.val_metric.empty()) s.push_back(va);
  return line_plot(s, {.title = metric_name + " per epoch", .xlabel = "epoch", .ylabel = metric_name}, true, true);
}

// --- classification ----------------------------------------------------------------

/// Confusion matrix with counts and row percentages in the cells; under it accuracy,
/// precision, recall and F1 (of class 1) for two classes, accuracy for more. `normalized`
/// colours and labels the cells by row fraction instead of count.
inline std::string confusion_matrix_plot(const Eigen::MatrixXi& C, std::vector<std::string> names = {},
                                         bool normalized = false) {
  const Index K = C.rows();
  if (K == 0 || C.cols() != K) nmsnn::detail::raise<ShapeError>("confusion_matrix_plot: need a square, non-empty matrix");
  if (names.empty())
    for (Index k = 0; k < K; ++k) names.push_back(std::to_string(k));
  if (Index(names.size()) != K) nmsnn::detail::raise<ShapeError>("confusion_matrix_plot: ", names.size(), " names for ", K, " classes");
  const double side = std::clamp(60.0 * double(K), 240.0, 560.0);
  Canvas c(side + 170, side + 150);
  const double left = 110, top = 40, cell = side / double(K);
  const Eigen::VectorXd rows = C.rowwise().sum().cast<double>();
  const double total = double(C.sum()), maxv = double(C.maxCoeff());
  for (Index i = 0; i < K; ++i)
    for (Index j = 0; j < K; ++j) {
      const double frac = rows(i) > 0 ? C(i, j) / rows(i) : 0.0;
      const double t = normalized ? frac : (maxv > 0 ? C(i, j) / maxv : 0.0);
      c.rect(left + cell * double(j), top + cell * double(i), cell, cell, viridis(t), "stroke=\"white\"");
      const char* ink = t > 0.6 ? "#111" : "white";
      const double fs = std::clamp(cell / 4.5, 8.0, 16.0);
      if (normalized) c.text(left + cell * (double(j) + 0.5), top + cell * (double(i) + 0.5) + fs / 3, detail::percent(frac), fs, "middle", 0, ink);
      else {
        c.text(left + cell * (double(j) + 0.5), top + cell * (double(i) + 0.5), std::to_string(C(i, j)), fs, "middle", 0, ink);
        if (cell >= 40) c.text(left + cell * (double(j) + 0.5), top + cell * (double(i) + 0.5) + fs, detail::percent(frac), fs * 0.7, "middle", 0, ink);
      }
    }
  for (Index k = 0; k < K; ++k) {
    c.text(left + cell * (double(k) + 0.5), top + side + 16, names[std::size_t(k)], 11);
    c.text(left - 6, top + cell * (double(k) + 0.5) + 4, names[std::size_t(k)], 11, "end");
  }
  c.text(left + side / 2, top - 14, normalized ? "Confusion matrix (row-normalised)" : "Confusion matrix", 15);
  c.text(left + side / 2, top + side + 36, "predicted", 13);
  c.text(22, top + side / 2, "true", 13, "middle", -90);
  const double acc = total > 0 ? double(C.trace()) / total : 0.0;
  std::string stats = "accuracy " + detail::fixed(acc);
  if (K == 2) {
    const double tp = C(1, 1), fp = C(0, 1), fn = C(1, 0);
    const double p = tp + fp > 0 ? tp / (tp + fp) : 0, r = tp + fn > 0 ? tp / (tp + fn) : 0;
    const double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
    stats += "   precision " + detail::fixed(p) + "   recall " + detail::fixed(r) + "   F1 " + detail::fixed(f1);
  }
  c.text(left + side / 2, top + side + 62, stats, 12);
  return c.str();
}

/// ROC curve(s) with AUC: one for two classes (score of class 1), one per class (one vs rest)
/// for more. proba is n x K (predict_proba's output).
inline std::string roc_plot(const Labels& y, const Eigen::MatrixXd& proba, std::vector<std::string> names = {}) {
  std::vector<Series> s;
  const Index K = proba.cols();
  auto one = [&](Index k, const std::string& name) {
    const Labels yk = (y.array() == int(k)).cast<int>();
    if (yk.sum() == 0 || yk.sum() == yk.size()) return;  // undefined for a class absent from y or alone
    const Curve cu = roc_curve(yk, proba.col(k));
    s.push_back({name + " (AUC " + detail::fixed(auc(cu)) + ")", cu.x, cu.y});
  };
  if (K == 2) one(1, "ROC");
  else
    for (Index k = 0; k < K; ++k) one(k, k < Index(names.size()) ? names[std::size_t(k)] : "class " + std::to_string(k));
  s.push_back({"chance", {0, 1}, {0, 1}});
  return line_plot(s, {.width = 560, .height = 480, .title = "ROC curve", .xlabel = "false positive rate", .ylabel = "true positive rate"},
                   true, true, std::array<double, 4>{0, 1, 0, 1.02});
}

/// Precision-recall curve(s) with average precision (as roc_plot).
inline std::string precision_recall_plot(const Labels& y, const Eigen::MatrixXd& proba, std::vector<std::string> names = {}) {
  std::vector<Series> s;
  const Index K = proba.cols();
  auto one = [&](Index k, const std::string& name) {
    const Labels yk = (y.array() == int(k)).cast<int>();
    if (yk.sum() == 0) return;
    const Curve cu = precision_recall_curve(yk, proba.col(k));
    s.push_back({name + " (AP " + detail::fixed(average_precision(yk, proba.col(k))) + ")", cu.x, cu.y});
  };
  if (K == 2) one(1, "PR");
  else
    for (Index k = 0; k < K; ++k) one(k, k < Index(names.size()) ? names[std::size_t(k)] : "class " + std::to_string(k));
  return line_plot(s, {.width = 560, .height = 480, .title = "Precision-recall curve", .xlabel = "recall", .ylabel = "precision"},
                   true, true, std::array<double, 4>{0, 1, 0, 1.02});
}

/// Number of samples per class.
inline std::string class_distribution(const Labels& y, Index classes, std::vector<std::string> names = {},
                                      const std::string& title = "Class distribution") {
  std::vector<double> count(std::size_t(std::max<Index>(classes, 1)), 0);
  for (Index i = 0; i < y.size(); ++i)
    if (y(i) >= 0 && y(i) < classes) count[std::size_t(y(i))] += 1;
  if (names.size() != count.size()) {
    names.clear();
    for (std::size_t k = 0; k < count.size(); ++k) names.push_back(std::to_string(k));
  }
  return bar_chart(names, count, {.title = title, .xlabel = "class", .ylabel = "samples"});
}

// --- regression --------------------------------------------------------------------

namespace detail {
/// Points (x_i, y_i) in the data range {x0, x1, y0, y1} over a dashed reference line
/// {from x, from y, to x, to y}; non-finite points are skipped.
inline std::string scatter_with_line(const Eigen::VectorXd& x, const Eigen::VectorXd& y, const PlotOptions& o,
                                     std::array<double, 4> range, std::array<double, 4> line) {
  Canvas c(o.width, o.height);
  Axes ax(c, range[0], range[1], range[2], range[3]);
  ax.decorate(o);
  c.line(ax.x(line[0]), ax.y(line[1]), ax.x(line[2]), ax.y(line[3]), "#d62728", 1.5, "stroke-dasharray=\"6 4\"");
  for (Index i = 0; i < x.size(); ++i)
    if (std::isfinite(x(i)) && std::isfinite(y(i))) c.circle(ax.x(x(i)), ax.y(y(i)), 3, "#1f77b4", "fill-opacity=\"0.6\"");
  return c.str();
}
}  // namespace detail

/// Predicted against actual values, with the identity line.
inline std::string regression_fit(const Eigen::VectorXd& y, const Eigen::VectorXd& p) {
  nmsnn::detail::check_same_length(y.size(), p.size(), "regression_fit");
  const double lo = std::min(y.minCoeff(), p.minCoeff()), hi = std::max(y.maxCoeff(), p.maxCoeff());
  const double pad = 0.04 * (hi - lo + 1e-12);
  return detail::scatter_with_line(
      y, p,
      {.width = 520, .height = 480, .title = "Predicted vs actual (R² " + detail::fixed(regression_metrics(y, p).r2) + ")",
       .xlabel = "actual", .ylabel = "predicted"},
      {lo - pad, hi + pad, lo - pad, hi + pad}, {lo - pad, lo - pad, hi + pad, hi + pad});
}

/// Residuals (predicted - actual) against the predicted value, with the zero line.
inline std::string residual_plot(const Eigen::VectorXd& y, const Eigen::VectorXd& p) {
  nmsnn::detail::check_same_length(y.size(), p.size(), "residual_plot");
  const Eigen::VectorXd e = p - y;
  const double r = std::max(1e-12, e.cwiseAbs().maxCoeff()) * 1.08;
  const double pad = 0.04 * (p.maxCoeff() - p.minCoeff() + 1e-12);
  const double x0 = p.minCoeff() - pad, x1 = p.maxCoeff() + pad;
  return detail::scatter_with_line(p, e, {.title = "Residuals", .xlabel = "predicted", .ylabel = "predicted - actual"},
                                   {x0, x1, -r, r}, {x0, 0, x1, 0});
}

/// Histogram of the prediction errors (predicted - actual).
inline std::string error_histogram(const Eigen::VectorXd& y, const Eigen::VectorXd& p) {
  nmsnn::detail::check_same_length(y.size(), p.size(), "error_histogram");
  const Eigen::VectorXd e = p - y;
  return histogram(std::vector<double>(e.data(), e.data() + e.size()), 25,
                   {.title = "Prediction errors", .xlabel = "predicted - actual", .ylabel = "samples"});
}

}  // namespace nmsnn::viz
