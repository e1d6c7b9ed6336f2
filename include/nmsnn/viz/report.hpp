// nmsnn/viz/report.hpp — one HTML file that a browser opens offline (no scripts, no network):
// model summary, data summary, metrics tables and the plots that apply to the task, inline.
//
//   auto report = nmsnn::make_report(net, X_test, y_test, {.title = "iris", .history = &history});
//   report.save("iris_report.html");   // atomic: temporary file + rename
//
// Report is also a small builder (sections, tables, figures) for reports of one's own.
#pragma once

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "nmsnn/io/atomic_file.hpp"
#include "nmsnn/metrics/metrics.hpp"
#include "nmsnn/network/dense_network.hpp"
#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/viz/plots.hpp"
#include "nmsnn/viz/recording.hpp"

namespace nmsnn {

class Report {
 public:
  explicit Report(std::string title) : title_(std::move(title)) {}

  void add_section(const std::string& heading) { body_ += "<h2>" + viz::escape_xml(heading) + "</h2>\n"; }
  void add_paragraph(const std::string& text) { body_ += "<p>" + viz::escape_xml(text) + "</p>\n"; }
  void add_preformatted(const std::string& text) { body_ += "<pre>" + viz::escape_xml(text) + "</pre>\n"; }
  /// A table with a header row; every row must have the header's length.
  void add_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    std::string t = "<table>\n<tr>";
    for (const auto& h : header) t += "<th>" + viz::escape_xml(h) + "</th>";
    t += "</tr>\n";
    for (const auto& r : rows) {
      if (r.size() != header.size())
        detail::raise<ShapeError>("Report::add_table: a row has ", r.size(), " cells, the header ", header.size());
      t += "<tr>";
      for (const auto& c : r) t += "<td>" + viz::escape_xml(c) + "</td>";
      t += "</tr>\n";
    }
    body_ += t + "</table>\n";
  }
  /// Two-column table of names and values.
  void add_key_values(const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string t = "<table>\n";
    for (const auto& [k, v] : kv) t += "<tr><th>" + viz::escape_xml(k) + "</th><td>" + viz::escape_xml(v) + "</td></tr>\n";
    body_ += t + "</table>\n";
  }
  /// An SVG (from nmsnn/viz/plots.hpp) with a caption.
  void add_figure(const std::string& svg, const std::string& caption = {}) {
    body_ += "<figure>" + strip_xml_declaration(svg);
    if (!caption.empty()) body_ += "<figcaption>" + viz::escape_xml(caption) + "</figcaption>";
    body_ += "</figure>\n";
    ++figures_;
  }
  Index figures() const { return figures_; }

  std::string html() const {
    return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n" + std::string(generator_tag) + "\n<title>" + viz::escape_xml(title_) +
           "</title>\n<style>\n"
           "body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\n"
           "h1{border-bottom:2px solid #4c72b0;padding-bottom:.2em}h2{margin-top:1.6em;color:#2b4a80}\n"
           "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .7em;text-align:right}\n"
           "td:first-child,th:first-child{text-align:left}th{background:#eef2f8}\n"
           "figure{display:inline-block;margin:.6em .6em .6em 0;vertical-align:top}figcaption{font-size:.85em;color:#555}\n"
           "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}\n"
           "</style>\n</head>\n<body>\n<h1>" +
           viz::escape_xml(title_) + "</h1>\n" + body_ + "<p style=\"color:#888;font-size:.8em\">Made by nmsnn.</p>\n</body>\n</html>\n";
  }
  /// Writes the report atomically (temporary file + rename). An existing file is replaced only
  /// when it is an nmsnn report (or with force); a directory, device or FIFO never.
  void save(const std::string& path, bool force = false) const {
    write_file_atomically(path, html(), {.kind = "report", .replaceable = is_report_file, .force = force, .where = "Report::save"});
  }
  /// The tag in the head of every report: how save recognises a file it may replace.
  static constexpr std::string_view generator_tag = "<meta name=\"generator\" content=\"nmsnn\"/>";
  /// Whether `path` is an HTML report written by nmsnn (its head has generator_tag; reports of
  /// earlier versions, without it, end with their "Made by nmsnn." line).
  static bool is_report_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), std::streamsize(head.size()));
    head.resize(std::size_t(in.gcount()));
    if (head.rfind("<!DOCTYPE html>", 0) != 0) return false;
    if (head.find(generator_tag) != std::string::npos) return true;
    in.clear();
    in.seekg(-200, std::ios::end);
    std::string tail(200, '\0');
    in.read(tail.data(), 200);
    return tail.find("Made by nmsnn.") != std::string::npos;
  }

 private:
  static std::string strip_xml_declaration(const std::string& svg) {
    if (svg.rfind("<?xml", 0) == 0) {
      const auto e = svg.find("?>");
      if (e != std::string::npos) return svg.substr(e + 2);
    }
    return svg;
  }
  std::string title_, body_;
  Index figures_ = 0;
};

struct ReportOptions {
  std::string title = "nmsnn report";
  std::string data_name = {};            ///< shown in the data summary
  std::vector<std::string> class_names = {};  ///< classifiers: names of classes 0..K-1
  std::vector<std::string> feature_names = {};
  std::string target_name = {};
  const History* history = nullptr;      ///< training curves when given
  Index record_sample = 0;               ///< spiking networks: the test row whose activity is plotted
  bool neuron_plots = true;              ///< spiking networks: heat maps, trace, raster, firing rates
  /// Extra lines for the model summary (e.g. timings, the optimiser).
  std::vector<std::pair<std::string, std::string>> notes = {};
};

namespace detail {
template <class Net>
std::vector<Index> layer_widths(const Net& net) {
  std::vector<Index> w{net.inputs()};
  if constexpr (requires { net.time_steps(); })
    for (Index l = 0; l < net.num_layers(); ++l) w.push_back(net.layer(l).outputs());
  else
    for (Index l = 0; l < net.num_layers(); ++l) w.push_back(net.layer(l).weights.rows());
  return w;
}
inline std::string join_widths(const std::vector<Index>& w) {
  std::string s;
  for (std::size_t i = 0; i < w.size(); ++i) s += (i ? " -> " : "") + std::to_string(w[i]);
  return s;
}
/// A number with a fixed count of decimals (4 unless told).
inline std::string num(double v, int digits = 4) { return viz::detail::fixed(v, digits); }
}  // namespace detail

/// A report on a trained network evaluated on (X_test, y_test): the model and data summaries,
/// metrics, training curves (when options.history is set), the task's plots and, for spiking
/// networks, the recorded activity of options.record_sample.
template <class Net, class DX, class DY>
Report make_report(const Net& net, const Eigen::MatrixBase<DX>& X_test, const Eigen::MatrixBase<DY>& y_test,
                   const ReportOptions& o = {}) {
  using Task = typename Net::TaskT;
  constexpr bool spiking = requires { net.time_steps(); };
  if (X_test.rows() != y_test.rows())
    detail::raise<ShapeError>("make_report: X has ", X_test.rows(), " rows but y has ", y_test.rows());
  if (X_test.rows() == 0) detail::raise<ShapeError>("make_report: no test data");
  Report r(o.title);

  r.add_section("Model");
  std::vector<std::pair<std::string, std::string>> model{
      {"kind", spiking ? "spiking neural network" : "dense network (MLP)"},
      {"task", std::string(Task::name)},
      {"layers", detail::join_widths(detail::layer_widths(net))},
      {"parameters", std::to_string(net.parameter_count())}};
  if constexpr (spiking) {
    model.push_back({"time steps", std::to_string(net.time_steps())});
    model.push_back({"begin_eval", std::to_string(net.begin_eval())});
    model.push_back({"encoder", std::string(to_string(net.encoder().kind()))});
    model.push_back({"readout", std::string(to_string(net.readout().kind()))});
    for (Index l = 0; l < net.num_layers(); ++l) {
      const auto& nr = net.layer(l).neuron();
      std::string d = std::string(to_string(nr.model)) + ", " + (nr.lif_family() ? "beta " : "decay ") + detail::num(nr.decay, 3) +
                      ", threshold " + detail::num(nr.threshold, 3) + ", reset " + std::string(to_string(nr.reset));
      if (nr.model == NeuronModel::li) {
        d = "li (leaky integrator), beta " + detail::num(nr.decay, 3);
        if (nr.learn_decay) d += ", learnt: beta";
      } else if (nr.lif_family()) {
        if (nr.model == NeuronModel::synaptic) d += ", alpha " + detail::num(nr.alpha, 3);
        d += ", surrogate " + std::string(to_string(nr.surrogate));
        if (nr.surrogate != Surrogate::straight_through) d += " (" + detail::num(nr.surrogate_slope(), 3) + ")";
        if (nr.learn_decay || nr.learn_alpha || nr.learn_threshold)
          d += std::string(", learnt:") + (nr.learn_decay ? " beta" : "") + (nr.learn_alpha ? " alpha" : "") +
               (nr.learn_threshold ? " threshold" : "");
      } else {
        d += ", penalty " + detail::num(nr.penalty, 3);
      }
      model.push_back({"neuron (layer " + std::to_string(l + 1) + ")", d});
    }
  } else {
    model.push_back({"batch norm", net.batch_norm() ? "yes" : "no"});
    model.push_back({"dropout", detail::num(net.dropout(), 2)});
  }
  for (const auto& n : o.notes) model.push_back(n);
  r.add_key_values(model);

  r.add_section("Data");
  std::vector<std::pair<std::string, std::string>> data;
  if (!o.data_name.empty()) data.push_back({"data", o.data_name});
  data.push_back({"test samples", std::to_string(X_test.rows())});
  data.push_back({"features", std::to_string(X_test.cols())});
  if (!o.target_name.empty()) data.push_back({"target", o.target_name});
  if (o.history && !o.history->loss.empty()) data.push_back({"epochs trained", std::to_string(o.history->loss.size())});
  r.add_key_values(data);

  if (o.history && !o.history->loss.empty()) {
    r.add_section("Training");
    r.add_figure(viz::loss_curves(*o.history));
    r.add_figure(viz::metric_curves(*o.history, Task::is_classifier ? "accuracy" : "R²"));
  }

  r.add_section("Test metrics");
  if constexpr (Task::is_classifier) {
    const Index K = net.classes();
    const Labels y = y_test.col(0).template cast<int>();
    const Labels p = net.predict(X_test);
    const Eigen::MatrixXd proba = net.predict_proba(X_test).template cast<double>();
    std::vector<std::string> names = o.class_names;
    if (Index(names.size()) != K) {
      names.clear();
      for (Index k = 0; k < K; ++k) names.push_back(std::to_string(k));
    }
    const auto cr = classification_report(y, p, K, names);
    std::vector<std::vector<std::string>> rows;
    for (Index k = 0; k < K; ++k)
      rows.push_back({names[std::size_t(k)], detail::num(cr.precision(k)), detail::num(cr.recall(k)), detail::num(cr.f1(k)),
                      std::to_string(cr.support(k))});
    const std::string n = std::to_string(cr.support.sum());
    rows.push_back({"macro avg", detail::num(cr.macro_precision), detail::num(cr.macro_recall), detail::num(cr.macro_f1), n});
    rows.push_back({"weighted avg", detail::num(cr.weighted_precision), detail::num(cr.weighted_recall), detail::num(cr.weighted_f1), n});
    std::vector<std::pair<std::string, std::string>> summary{{"accuracy", detail::num(cr.accuracy)}};
    bool both = (y.array() == 0).any() && (y.array() == 1).any();
    if (K == 2 && both) {
      summary.push_back({"ROC AUC", detail::num(roc_auc(y, proba.col(1)))});
      summary.push_back({"average precision", detail::num(average_precision(y, proba.col(1)))});
    } else if (K > 2) {
      bool all = true;
      for (Index k = 0; k < K; ++k) all = all && (y.array() == int(k)).any();
      if (all) summary.push_back({"ROC AUC (one vs rest, macro)", detail::num(roc_auc_ovr(y, proba))});
    }
    r.add_key_values(summary);
    r.add_table({"class", "precision", "recall", "f1-score", "support"}, rows);
    const Eigen::MatrixXi C = confusion_matrix(y, p, K);
    r.add_figure(viz::confusion_matrix_plot(C, names));
    r.add_figure(viz::confusion_matrix_plot(C, names, true));
    r.add_figure(viz::roc_plot(y, proba, names));
    r.add_figure(viz::precision_recall_plot(y, proba, names));
    r.add_figure(viz::class_distribution(y, K, names, "Test set: class distribution"));
  } else {
    const Eigen::MatrixXd P = net.predict(X_test).template cast<double>();
    const Eigen::MatrixXd Y = y_test.template cast<double>();
    if (Y.cols() != P.cols()) detail::raise<ShapeError>("make_report: y has ", Y.cols(), " columns, the model predicts ", P.cols());
    std::vector<std::vector<std::string>> rows;
    for (Index k = 0; k < P.cols(); ++k) {
      const auto m = regression_metrics(Y.col(k), P.col(k));
      rows.push_back({P.cols() > 1 ? "output " + std::to_string(k) : (o.target_name.empty() ? "target" : o.target_name),
                      detail::num(m.r2), detail::num(m.mse), detail::num(m.rmse), detail::num(m.mae), detail::num(m.mape),
                      detail::num(m.pearson_r), detail::num(m.rmsre)});
    }
    r.add_table({"", "R²", "MSE", "RMSE", "MAE", "MAPE", "Pearson r", "RMSRE"}, rows);
    r.add_figure(viz::regression_fit(Y.col(0), P.col(0)));
    r.add_figure(viz::residual_plot(Y.col(0), P.col(0)));
    r.add_figure(viz::error_histogram(Y.col(0), P.col(0)));
  }

  if constexpr (spiking) {
    if (o.neuron_plots) {
      const Index row = std::clamp<Index>(o.record_sample, 0, X_test.rows() - 1);
      const Recording rec = record_activity(net, X_test, row);
      r.add_section("Neuron activity (test sample " + std::to_string(row) + ")");
      std::vector<std::vector<std::string>> rows;
      for (std::size_t l = 0; l < rec.layers.size(); ++l)
        rows.push_back({"layer " + std::to_string(l + 1), std::to_string(rec.layers[l].state.rows()),
                        detail::num(100 * rec.layers[l].mean_firing_rate, 2) + "%"});
      r.add_table({"layer", "neurons", "mean firing rate"}, rows);
      for (Index l = 0; l < Index(rec.layers.size()); ++l) {
        r.add_figure(viz::layer_heatmap(rec, l, false));
        r.add_figure(viz::layer_heatmap(rec, l, true));
      }
      // The most active neuron of the first layer, the one pynmsnn's visualize_neuron shows.
      Index best = 0;
      rec.layers[0].firing_rate.maxCoeff(&best);
      const double theta = net.layer(0).neuron().lif_family() ? double(net.layer(0).thresholds()(best))
                                                          : net.layer(0).neuron().threshold;
      r.add_figure(viz::neuron_trace(rec, 0, best, theta),
                   "The most active neuron of layer 1");
      r.add_figure(viz::layer_raster(rec, 0));
      r.add_figure(viz::firing_rate_histogram(rec, 0));
    }
  }
  return r;
}

}  // namespace nmsnn
