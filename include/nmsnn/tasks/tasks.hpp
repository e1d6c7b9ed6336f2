// nmsnn/tasks/tasks.hpp — the heads (MODEL.md "Heads"). A Task brings its loss, its
// predictions and its output width, and turns the user's targets into the engine's
// internal layout (one column per sample).
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/readout/output_reducer.hpp"

namespace nmsnn {

namespace detail {

template <class Derived>
void require_finite(const Eigen::DenseBase<Derived>& m, std::string_view where, std::string_view what) {
  for (Index j = 0; j < m.cols(); ++j)
    for (Index i = 0; i < m.rows(); ++i)
      if (!std::isfinite(double(m(i, j))))
        raise<ValueError>(where, ": ", what, " must be finite, found ", double(m(i, j)),
                          " at row ", i, ", column ", j);
}

/// Integer class labels from any numeric vector; each must be an integer in 0..K-1.
template <class Derived>
Labels to_class_labels(const Eigen::MatrixBase<Derived>& y, Index classes, std::string_view where) {
  if (y.cols() != 1 && y.rows() != 1)
    raise<ShapeError>(where, ": labels must be a vector, found ", y.rows(), "x", y.cols());
  Labels out(y.size());
  for (Index i = 0; i < y.size(); ++i) {
    const double v = double(y.reshaped()(i));
    if (!std::isfinite(v) || v != std::floor(v) || v < 0 || v >= double(classes))
      raise<ValueError>(where, ": label at row ", i, " must be an integer in 0..", classes - 1,
                        ", found ", v);
    out(i) = int(v);
  }
  return out;
}

template <class Scalar>
double label_accuracy(const Labels& l, const Matrix<Scalar>& Y) {
  Index correct = 0;
  for (Index i = 0; i < l.size(); ++i) correct += l(i) == Index(Y(0, i));
  return l.size() ? double(correct) / double(l.size()) : 0.0;
}

/// Sum of the class weights of a batch's labels (B without weights).
template <class Scalar>
double weight_sum(const Matrix<Scalar>& Y, const std::vector<double>* weights, Index B) {
  if (!weights || weights->empty()) return double(B);
  double s = 0;
  for (Index b = 0; b < B; ++b) s += (*weights)[std::size_t(Y(0, b))];
  if (!(s > 0)) raise<ValueError>("class weights: the batch's labels all have weight 0");
  return s;
}

/// Class weight of sample b's label (1 without weights).
template <class Scalar>
double sample_weight(const Matrix<Scalar>& Y, const std::vector<double>* weights, Index b) {
  return weights && !weights->empty() ? (*weights)[std::size_t(Y(0, b))] : 1.0;
}

/// A task's mean loss over a batch (Z: outputs x B, Y: target rows x B), written once over
/// the task's per-sample loss (Task::sample_loss, which the GPU path's loss kernel runs too)
/// and its normaliser (Task::loss_norm); writes dL/dZ into G when given.
template <class Task, class Scalar>
double task_loss(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y, Matrix<Scalar>* G, const std::vector<double>* weights) {
  const double norm = Task::loss_norm(Z.rows(), Y, weights);
  double total = 0;
  if (G) G->resize(Z.rows(), Z.cols());
  for (Index b = 0; b < Z.cols(); ++b)
    total += Task::sample_loss(Z.col(b).data(), Y.col(b).data(), Z.rows(), sample_weight(Y, weights, b), norm,
                               G ? G->col(b).data() : static_cast<Scalar*>(nullptr));
  return total / norm;
}

}  // namespace detail

/// Two classes, one output z. Loss: binary cross-entropy with logits, mean over the batch.
struct BinaryClassification {
  static constexpr std::string_view name = "binary";
  static constexpr bool is_classifier = true;
  static constexpr Index default_hidden = 64;
  static constexpr Readout default_readout = Readout::sum;
  static constexpr Index default_time_steps = 500;
  static Index default_outputs() { return 1; }
  static Index classes(Index /*outputs*/) { return 2; }
  static void check_outputs(Index outputs) {
    if (outputs != 1)
      detail::raise<ValueError>("BinaryClassification has 1 output, found outputs = ", outputs);
  }

  /// Targets -> 1 x n matrix of 0/1.
  template <class Scalar, class Derived>
  static Matrix<Scalar> encode_targets(const Eigen::MatrixBase<Derived>& y, Index /*outputs*/) {
    const Labels l = detail::to_class_labels(y, 2, "binary classification");
    return l.cast<Scalar>().transpose();
  }

  /// Mean loss over the batch; writes dL/dz into G (1 x B) when given.
  /// With class weights w, the loss is sum_b w[y_b] l_b / sum_b w[y_b] (PyTorch's weighted mean).
  template <class Scalar>
  static double loss(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y, Matrix<Scalar>* G,
                     const std::vector<double>* weights = nullptr) {
    return detail::task_loss<BinaryClassification>(Z, Y, G, weights);
  }
  /// The loss's normaliser: the batch's weight sum (B without weights).
  template <class Scalar>
  static double loss_norm(Index /*outputs*/, const Matrix<Scalar>& Y, const std::vector<double>* weights) {
    return detail::weight_sum(Y, weights, Y.cols());
  }
  /// Sample b's weighted loss w l_b (z: its output, y: its 0/1 label); g = w (p - y) / norm.
  template <class Scalar>
  NMSNN_HOST_DEVICE static double sample_loss(const Scalar* z_, const Scalar* y_, Index /*outputs*/, double w, double norm,
                                              Scalar* g) {
    const double z = double(z_[0]), y = double(y_[0]);
    if (g) {
      const double p = z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
      g[0] = Scalar(w * (p - y) / norm);
    }
    return w * ((z < 0.0 ? 0.0 : z) - z * y + std::log1p(std::exp(-std::abs(z))));
  }

  /// Probabilities n x 2 (columns: class 0, class 1), as scikit-learn's predict_proba.
  template <class Scalar>
  static Matrix<Scalar> probabilities(const Matrix<Scalar>& Z) {
    Matrix<Scalar> P(Z.cols(), 2);
    for (Index b = 0; b < Z.cols(); ++b) {
      const double z = double(Z(0, b));
      const double p = z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
      P(b, 0) = Scalar(1.0 - p);
      P(b, 1) = Scalar(p);
    }
    return P;
  }
  template <class Scalar>
  static Labels labels(const Matrix<Scalar>& Z) {
    Labels l(Z.cols());
    for (Index b = 0; b < Z.cols(); ++b) l(b) = Z(0, b) > 0 ? 1 : 0;
    return l;
  }
  /// Accuracy of readouts Z against targets Y (engine layout).
  template <class Scalar>
  static double metric(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y) {
    return detail::label_accuracy(labels(Z), Y);
  }
};

/// K classes, K outputs. Loss: cross-entropy of log-softmax, mean over the batch.
struct MulticlassClassification {
  static constexpr std::string_view name = "multiclass";
  static constexpr bool is_classifier = true;
  static constexpr Index default_hidden = 100;
  static constexpr Readout default_readout = Readout::mean;
  static constexpr Index default_time_steps = 64;
  static Index default_outputs() {
    detail::raise<ValueError>("MulticlassClassification: set outputs to the number of classes (>= 2)");
  }
  static Index classes(Index outputs) { return outputs; }
  static void check_outputs(Index outputs) {
    if (outputs < 2)
      detail::raise<ValueError>("MulticlassClassification needs outputs = number of classes >= 2, found ",
                                outputs);
  }

  template <class Scalar, class Derived>
  static Matrix<Scalar> encode_targets(const Eigen::MatrixBase<Derived>& y, Index outputs) {
    const Labels l = detail::to_class_labels(y, outputs, "multiclass classification");
    return l.cast<Scalar>().transpose();
  }

  template <class Scalar>
  static double loss(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y, Matrix<Scalar>* G,
                     const std::vector<double>* weights = nullptr) {
    return detail::task_loss<MulticlassClassification>(Z, Y, G, weights);
  }
  /// The loss's normaliser: the batch's weight sum (B without weights).
  template <class Scalar>
  static double loss_norm(Index /*outputs*/, const Matrix<Scalar>& Y, const std::vector<double>* weights) {
    return detail::weight_sum(Y, weights, Y.cols());
  }
  /// Sample b's weighted loss w (logsumexp(z) - z_y) over its K outputs z; g = w (softmax(z) -
  /// onehot(y)) / norm.
  template <class Scalar>
  NMSNN_HOST_DEVICE static double sample_loss(const Scalar* z, const Scalar* y_, Index K, double w, double norm, Scalar* g) {
    double zmax = double(z[0]);
    for (Index k = 1; k < K; ++k) zmax = double(z[k]) > zmax ? double(z[k]) : zmax;
    double sum = 0;
    for (Index k = 0; k < K; ++k) sum += std::exp(double(z[k]) - zmax);
    const double log_sum = zmax + std::log(sum);
    const Index y = Index(y_[0]);
    if (g)
      for (Index k = 0; k < K; ++k) g[k] = Scalar(w * (std::exp(double(z[k]) - log_sum) - (k == y ? 1.0 : 0.0)) / norm);
    return w * (log_sum - double(z[y]));
  }

  /// Softmax probabilities, n x K.
  template <class Scalar>
  static Matrix<Scalar> probabilities(const Matrix<Scalar>& Z) {
    const Index K = Z.rows();
    Matrix<Scalar> P(Z.cols(), K);
    for (Index b = 0; b < Z.cols(); ++b) {
      const double zmax = double(Z.col(b).maxCoeff());
      double sum = 0;
      for (Index k = 0; k < K; ++k) sum += std::exp(double(Z(k, b)) - zmax);
      for (Index k = 0; k < K; ++k) P(b, k) = Scalar(std::exp(double(Z(k, b)) - zmax) / sum);
    }
    return P;
  }
  template <class Scalar>
  static Labels labels(const Matrix<Scalar>& Z) {
    Labels l(Z.cols());
    for (Index b = 0; b < Z.cols(); ++b) {
      Index k;
      Z.col(b).maxCoeff(&k);
      l(b) = int(k);
    }
    return l;
  }
  template <class Scalar>
  static double metric(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y) {
    return detail::label_accuracy(labels(Z), Y);
  }
};

/// k real-valued outputs. Loss: mean squared error over batch and outputs. (Unlike pynmsnn's
/// "spiking regressor", which runs a plain MLP, the regressor here is spiking for real.)
struct Regression {
  static constexpr std::string_view name = "regression";
  static constexpr bool is_classifier = false;
  static constexpr Index default_hidden = 100;
  static constexpr Readout default_readout = Readout::mean;
  static constexpr Index default_time_steps = 64;
  static Index default_outputs() { return 1; }
  static Index classes(Index /*outputs*/) { return 0; }
  static void check_outputs(Index outputs) {
    if (outputs < 1) detail::raise<ValueError>("Regression needs outputs >= 1, found ", outputs);
  }

  /// Targets (n x k, or a vector of n when k = 1) -> k x n.
  template <class Scalar, class Derived>
  static Matrix<Scalar> encode_targets(const Eigen::MatrixBase<Derived>& y, Index outputs) {
    Matrix<Scalar> Y;
    if (outputs == 1 && (y.cols() == 1 || y.rows() == 1))
      Y = y.reshaped().transpose().template cast<Scalar>();
    else if (y.cols() == outputs)
      Y = y.transpose().template cast<Scalar>();
    else
      detail::raise<ShapeError>("regression: targets must have ", outputs, " column(s), found ",
                                y.rows(), "x", y.cols());
    detail::require_finite(Y.transpose(), "regression", "targets");
    return Y;
  }

  template <class Scalar>
  static double loss(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y, Matrix<Scalar>* G,
                     const std::vector<double>* weights = nullptr) {
    return detail::task_loss<Regression>(Z, Y, G, weights);
  }
  /// The loss's normaliser: the number of values (outputs x B).
  template <class Scalar>
  static double loss_norm(Index outputs, const Matrix<Scalar>& Y, const std::vector<double>* weights) {
    if (weights && !weights->empty())
      detail::raise<ValueError>("regression: class weights apply to classifiers only");
    return double(outputs) * double(Y.cols());
  }
  /// Sample b's squared error summed over its k outputs; g = 2 (z - y) / norm.
  template <class Scalar>
  NMSNN_HOST_DEVICE static double sample_loss(const Scalar* z, const Scalar* y, Index K, double /*w*/, double norm, Scalar* g) {
    double total = 0;
    for (Index k = 0; k < K; ++k) {
      const double d = double(z[k]) - double(y[k]);
      total += d * d;
      if (g) g[k] = Scalar(2.0 * d / norm);
    }
    return total;
  }

  /// R² of predictions Z against targets Y (rows: outputs), averaged uniformly over outputs
  /// (scikit-learn's r2_score).
  template <class Scalar>
  static double metric(const Matrix<Scalar>& Z, const Matrix<Scalar>& Y) {
    double r2 = 0;
    for (Index k = 0; k < Y.rows(); ++k) {
      const Eigen::RowVectorXd y = Y.row(k).template cast<double>(), z = Z.row(k).template cast<double>();
      const double ss_tot = (y.array() - y.mean()).square().sum(), ss_res = (y - z).squaredNorm();
      r2 += ss_tot > 0 ? 1.0 - ss_res / ss_tot : (ss_res == 0 ? 1.0 : 0.0);
    }
    return r2 / double(Y.rows());
  }
};

template <class T>
concept TaskType = requires {
  { T::name } -> std::convertible_to<std::string_view>;
  { T::is_classifier } -> std::convertible_to<bool>;
  { T::default_hidden } -> std::convertible_to<Index>;
  { T::default_readout } -> std::convertible_to<Readout>;
  { T::default_time_steps } -> std::convertible_to<Index>;
};

}  // namespace nmsnn
