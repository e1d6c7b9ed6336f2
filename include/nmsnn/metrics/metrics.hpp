// nmsnn/metrics/metrics.hpp — classification and regression metrics, with scikit-learn's
// definitions (tests compare against values scikit-learn computed on fixed inputs).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"

namespace nmsnn {

namespace detail {
inline void check_same_length(Index a, Index b, std::string_view where) {
  if (a != b) raise<ShapeError>(where, ": y_true has ", a, " values but y_pred has ", b);
  if (a == 0) raise<ShapeError>(where, ": empty input");
}
inline Index class_count(const Labels& a, const Labels& b, Index classes) {
  if (classes > 0) return classes;
  return Index(std::max(a.maxCoeff(), b.maxCoeff())) + 1;
}
}  // namespace detail

/// Fraction of labels predicted correctly.
inline double accuracy(const Labels& y_true, const Labels& y_pred) {
  detail::check_same_length(y_true.size(), y_pred.size(), "accuracy");
  return double((y_true.array() == y_pred.array()).count()) / double(y_true.size());
}

/// Confusion matrix C (classes x classes): C(i, j) counts samples of true class i predicted j.
inline Eigen::MatrixXi confusion_matrix(const Labels& y_true, const Labels& y_pred, Index classes = 0) {
  detail::check_same_length(y_true.size(), y_pred.size(), "confusion_matrix");
  const Index K = detail::class_count(y_true, y_pred, classes);
  Eigen::MatrixXi C = Eigen::MatrixXi::Zero(K, K);
  for (Index i = 0; i < y_true.size(); ++i) {
    if (y_true(i) < 0 || y_true(i) >= K || y_pred(i) < 0 || y_pred(i) >= K)
      detail::raise<ValueError>("confusion_matrix: label outside 0..", K - 1, " at index ", i);
    C(y_true(i), y_pred(i)) += 1;
  }
  return C;
}

/// Per-class precision, recall, F1 and support, with macro and weighted averages.
struct ClassificationReport {
  Eigen::VectorXd precision, recall, f1;
  Eigen::VectorXi support;
  double accuracy = 0;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  double weighted_precision = 0, weighted_recall = 0, weighted_f1 = 0;
  std::vector<std::string> class_names;

  /// Printed like scikit-learn's classification_report.
  std::string to_string(int digits = 2) const {
    std::size_t width = std::string("weighted avg").size();
    for (const auto& n : class_names) width = std::max(width, n.size());
    std::string out;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%*s  %9s %9s %9s %9s\n\n", int(width), "", "precision", "recall",
                  "f1-score", "support");
    out += buf;
    const Index total = support.sum();
    for (Index k = 0; k < precision.size(); ++k) {
      std::snprintf(buf, sizeof buf, "%*s  %9.*f %9.*f %9.*f %9d\n", int(width), class_names[std::size_t(k)].c_str(),
                    digits, precision(k), digits, recall(k), digits, f1(k), support(k));
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "\n%*s  %9s %9s %9.*f %9ld\n", int(width), "accuracy", "", "", digits, accuracy,
                  long(total));
    out += buf;
    std::snprintf(buf, sizeof buf, "%*s  %9.*f %9.*f %9.*f %9ld\n", int(width), "macro avg", digits, macro_precision,
                  digits, macro_recall, digits, macro_f1, long(total));
    out += buf;
    std::snprintf(buf, sizeof buf, "%*s  %9.*f %9.*f %9.*f %9ld\n", int(width), "weighted avg", digits,
                  weighted_precision, digits, weighted_recall, digits, weighted_f1, long(total));
    out += buf;
    return out;
  }
};

/// scikit-learn's precision_recall_fscore_support with zero_division = 0.
inline ClassificationReport classification_report(const Labels& y_true, const Labels& y_pred, Index classes = 0,
                                                  std::vector<std::string> class_names = {}) {
  const Eigen::MatrixXi C = confusion_matrix(y_true, y_pred, classes);
  const Index K = C.rows();
  ClassificationReport r;
  r.precision.resize(K);
  r.recall.resize(K);
  r.f1.resize(K);
  r.support = C.rowwise().sum();
  for (Index k = 0; k < K; ++k) {
    const double tp = C(k, k), predicted = C.col(k).sum(), actual = C.row(k).sum();
    r.precision(k) = predicted > 0 ? tp / predicted : 0.0;
    r.recall(k) = actual > 0 ? tp / actual : 0.0;
    const double s = r.precision(k) + r.recall(k);
    r.f1(k) = s > 0 ? 2 * r.precision(k) * r.recall(k) / s : 0.0;
  }
  const double n = double(r.support.sum());
  r.accuracy = double(C.trace()) / n;
  r.macro_precision = r.precision.mean();
  r.macro_recall = r.recall.mean();
  r.macro_f1 = r.f1.mean();
  const Eigen::VectorXd w = r.support.cast<double>() / n;
  r.weighted_precision = r.precision.dot(w);
  r.weighted_recall = r.recall.dot(w);
  r.weighted_f1 = r.f1.dot(w);
  if (class_names.empty())
    for (Index k = 0; k < K; ++k) class_names.push_back(std::to_string(k));
  if (Index(class_names.size()) != K)
    detail::raise<ValueError>("classification_report: ", class_names.size(), " class names for ", K, " classes");
  r.class_names = std::move(class_names);
  return r;
}

/// A curve of (x, y) points with the thresholds that produce them.
struct Curve {
  std::vector<double> x, y, thresholds;
};

namespace detail {
/// Distinct score thresholds in decreasing order, with cumulative true and false positives
/// (scikit-learn's _binary_clf_curve).
inline void binary_counts(const Labels& y, const Eigen::VectorXd& score, std::vector<double>& tps,
                          std::vector<double>& fps, std::vector<double>& thr) {
  check_same_length(y.size(), score.size(), "binary curve");
  std::vector<Index> order(std::size_t(y.size()));
  std::iota(order.begin(), order.end(), Index(0));
  std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return score(a) > score(b); });
  double tp = 0, fp = 0;
  tps.clear();
  fps.clear();
  thr.clear();
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Index k = order[i];
    if (!std::isfinite(score(k))) raise<ValueError>("binary curve: non-finite score at index ", k);
    if (y(k) != 0 && y(k) != 1) raise<ValueError>("binary curve: labels must be 0 or 1, found ", y(k));
    (y(k) == 1 ? tp : fp) += 1;
    if (i + 1 == order.size() || score(order[i + 1]) != score(k)) {
      tps.push_back(tp);
      fps.push_back(fp);
      thr.push_back(score(k));
    }
  }
}
}  // namespace detail

/// ROC curve (x: false-positive rate, y: true-positive rate), as scikit-learn's roc_curve with
/// drop_intermediate = false, starting at (0, 0) with threshold +inf.
inline Curve roc_curve(const Labels& y_true, const Eigen::VectorXd& score) {
  std::vector<double> tps, fps, thr;
  detail::binary_counts(y_true, score, tps, fps, thr);
  const double P = tps.back(), N = fps.back();
  if (P == 0 || N == 0) detail::raise<ValueError>("roc_curve: needs both classes among the labels");
  Curve c;
  c.x.push_back(0);
  c.y.push_back(0);
  c.thresholds.push_back(std::numeric_limits<double>::infinity());
  for (std::size_t i = 0; i < tps.size(); ++i) {
    c.x.push_back(fps[i] / N);
    c.y.push_back(tps[i] / P);
    c.thresholds.push_back(thr[i]);
  }
  return c;
}

/// Area under a curve by the trapezoidal rule.
inline double auc(const Curve& c) {
  double a = 0;
  for (std::size_t i = 1; i < c.x.size(); ++i) a += (c.x[i] - c.x[i - 1]) * (c.y[i] + c.y[i - 1]) / 2;
  return std::abs(a);
}

inline double roc_auc(const Labels& y_true, const Eigen::VectorXd& score) { return auc(roc_curve(y_true, score)); }

/// One-vs-rest ROC AUC for K classes, macro-averaged (probabilities n x K).
inline double roc_auc_ovr(const Labels& y_true, const Eigen::MatrixXd& proba) {
  double sum = 0;
  for (Index k = 0; k < proba.cols(); ++k) sum += roc_auc((y_true.array() == int(k)).cast<int>(), proba.col(k));
  return sum / double(proba.cols());
}

/// Precision–recall curve (x: recall, y: precision), as scikit-learn's (1.2): thresholds in
/// increasing order, then a last point at recall 0 with precision 1.
inline Curve precision_recall_curve(const Labels& y_true, const Eigen::VectorXd& score) {
  std::vector<double> tps, fps, thr;
  detail::binary_counts(y_true, score, tps, fps, thr);
  const double P = tps.back();
  if (P == 0) detail::raise<ValueError>("precision_recall_curve: no positive label");
  Curve c;
  for (std::size_t i = tps.size(); i-- > 0;) {
    c.y.push_back(tps[i] / (tps[i] + fps[i]));
    c.x.push_back(tps[i] / P);
    c.thresholds.push_back(thr[i]);
  }
  c.y.push_back(1.0);
  c.x.push_back(0.0);
  return c;
}

/// Average precision: sum over thresholds of (R_n - R_{n-1}) P_n (scikit-learn's).
inline double average_precision(const Labels& y_true, const Eigen::VectorXd& score) {
  const Curve c = precision_recall_curve(y_true, score);
  double ap = 0;
  for (std::size_t i = 0; i + 1 < c.x.size(); ++i) ap += (c.x[i] - c.x[i + 1]) * c.y[i];
  return ap;
}

// --- regression --------------------------------------------------------------------

struct RegressionMetrics {
  double mse = 0, rmse = 0, mae = 0, mape = 0, r2 = 0, pearson_r = 0, rmsre = 0;
};

/// MSE, RMSE, MAE, MAPE (scikit-learn's: |e| / max(|y|, eps), as a fraction), R², Pearson's
/// r and RMSRE (root mean squared relative error, sqrt(mean((e / y)^2)), pynmsnn's).
inline RegressionMetrics regression_metrics(const Eigen::VectorXd& y, const Eigen::VectorXd& p) {
  detail::check_same_length(y.size(), p.size(), "regression_metrics");
  const double n = double(y.size());
  const Eigen::ArrayXd e = (p - y).array();
  RegressionMetrics m;
  m.mse = e.square().mean();
  m.rmse = std::sqrt(m.mse);
  m.mae = e.abs().mean();
  const double eps = std::numeric_limits<double>::epsilon();
  m.mape = (e.abs() / y.array().abs().max(eps)).mean();
  const double ym = y.mean(), pm = p.mean();
  const double ss_tot = (y.array() - ym).square().sum();
  m.r2 = ss_tot > 0 ? 1.0 - e.square().sum() / ss_tot : (e.square().sum() == 0 ? 1.0 : 0.0);
  const double sp = std::sqrt((p.array() - pm).square().sum()), sy = std::sqrt(ss_tot);
  m.pearson_r = sp > 0 && sy > 0 ? ((y.array() - ym) * (p.array() - pm)).sum() / (sp * sy) : 0.0;
  m.rmsre = std::sqrt((e / y.array().abs().max(eps)).square().sum() / n);
  return m;
}

}  // namespace nmsnn
