// nmsnn/network/dense_network.hpp — DenseNetwork<Task>: pynmsnn's non-spiking baselines
// (MODEL.md "Dense baseline"): fully connected ReLU layers, optional BatchNorm1d after each
// hidden ReLU and dropout before the output layer. Same tasks, optimisers, fit, predict and
// saving as SpikingNetwork. Defaults per task: binary F -> 64 -> 64 -> 1 with batch norm and
// dropout 0.1; multiclass F -> 100 -> K; regression F -> 16 -> 32 -> 16 -> 1.
//
// Layout as the spiking engine: one column per sample. Batch norm uses the batch's statistics
// in training (biased variance; running averages with momentum 0.1 and the unbiased variance,
// as PyTorch) and the running ones for inference; a training batch of one sample, whose
// variance is undefined, is normalised with the running statistics.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/network/estimator.hpp"
#include "nmsnn/tasks/tasks.hpp"

namespace nmsnn {

struct DenseOptions {
  Index inputs = 0;
  std::optional<Index> outputs = {};
  std::vector<Index> hidden = {};       ///< hidden widths; empty: the task's default
  std::optional<bool> batch_norm = {};  ///< after each hidden ReLU; default: binary only
  std::optional<double> dropout = {};   ///< before the output layer; default: binary 0.1
  std::uint64_t seed = 0;
};

namespace detail {
/// Inverted dropout's factor for unit `unit` of sample `sample`: 1 / keep where lane 0 of
/// Philox(key; counter {unit, 0, sample, stream}) is below keep, else 0. constexpr, so that
/// the GPU engine's kernel (nmsnn/detail/device_engine.hpp) draws the same masks.
template <class Scalar>
constexpr Scalar dropout_factor(std::uint32_t unit, std::uint32_t sample, std::uint32_t stream, Philox4x32::Key key,
                                Scalar keep) {
  const auto r = Philox4x32::generate({unit, 0, sample, stream}, key);
  return uniform01_24(r[0]) < float(keep) ? Scalar(1) / keep : Scalar(0);
}

template <class Task>
std::vector<Index> dense_default_hidden() {
  if constexpr (std::is_same_v<Task, BinaryClassification>) return {64, 64};
  else if constexpr (std::is_same_v<Task, MulticlassClassification>) return {100};
  else return {16, 32, 16};
}
}  // namespace detail

template <TaskType Task, FloatingScalar ScalarT = float>
class DenseNetwork : public Estimator<DenseNetwork<Task, ScalarT>, Task, ScalarT> {
  using Base = Estimator<DenseNetwork<Task, ScalarT>, Task, ScalarT>;
  friend Base;

 public:
  using Scalar = ScalarT;
  using TaskT = Task;

  struct Layer {
    Matrix<Scalar> weights, weight_grad;
    Vector<Scalar> bias, bias_grad;
    // Batch norm (hidden layers, when enabled).
    Vector<Scalar> gamma, beta, gamma_grad, beta_grad;
    Vector<double> running_mean, running_var;
  };

  explicit DenseNetwork(const DenseOptions& o) : options_(o) {
    if (o.inputs < 1) detail::raise<ValueError>("DenseNetwork: inputs must be >= 1, found ", o.inputs);
    const Index outputs = o.outputs ? *o.outputs : Task::default_outputs();
    Task::check_outputs(outputs);
    std::vector<Index> widths = o.hidden.empty() ? detail::dense_default_hidden<Task>() : o.hidden;
    for (std::size_t i = 0; i < widths.size(); ++i)
      if (widths[i] < 1) detail::raise<ValueError>("DenseNetwork: hidden layer ", i + 1, " must have >= 1 unit");
    batch_norm_ = o.batch_norm ? *o.batch_norm : std::is_same_v<Task, BinaryClassification>;
    dropout_ = o.dropout ? *o.dropout : (std::is_same_v<Task, BinaryClassification> ? 0.1 : 0.0);
    if (!(dropout_ >= 0 && dropout_ < 1)) detail::raise<ValueError>("DenseNetwork: dropout must be in [0, 1), found ", dropout_);
    options_.outputs = outputs;
    options_.hidden = widths;
    options_.batch_norm = batch_norm_;
    options_.dropout = dropout_;
    widths.push_back(outputs);
    CounterRng rng(o.seed, RandomDomain::init);
    Index in = o.inputs;
    for (std::size_t l = 0; l < widths.size(); ++l) {
      Layer L;
      // PyTorch's nn.Linear default: U(-1/sqrt(in), 1/sqrt(in)) for weights and bias.
      const double a = 1.0 / std::sqrt(double(in));
      L.weights.resize(widths[l], in);
      for (Index i = 0; i < L.weights.size(); ++i) L.weights.data()[i] = Scalar(rng.uniform(-a, a));
      L.bias.resize(widths[l]);
      for (Index i = 0; i < L.bias.size(); ++i) L.bias(i) = Scalar(rng.uniform(-a, a));
      L.weight_grad = Matrix<Scalar>::Zero(L.weights.rows(), L.weights.cols());
      L.bias_grad = Vector<Scalar>::Zero(L.bias.size());
      if (batch_norm_ && l + 1 < widths.size()) {
        L.gamma = Vector<Scalar>::Ones(widths[l]);
        L.beta = Vector<Scalar>::Zero(widths[l]);
        L.gamma_grad = L.beta_grad = Vector<Scalar>::Zero(widths[l]);
        L.running_mean = Vector<double>::Zero(widths[l]);
        L.running_var = Vector<double>::Ones(widths[l]);
      }
      layers_.push_back(std::move(L));
      in = widths[l];
    }
  }

  Index inputs() const { return layers_.front().weights.cols(); }
  Index outputs() const { return layers_.back().weights.rows(); }
  std::uint64_t seed() const { return options_.seed; }
  const DenseOptions& options() const { return options_; }
  bool batch_norm() const { return batch_norm_; }
  double dropout() const { return dropout_; }
  Index num_layers() const { return Index(layers_.size()); }
  Layer& layer(Index i) { return layers_.at(std::size_t(i)); }
  const Layer& layer(Index i) const { return layers_.at(std::size_t(i)); }

  /// W, b of each layer, then gamma, beta of its batch norm when present.
  std::vector<Parameter<Scalar>> parameters() {
    std::vector<Parameter<Scalar>> p;
    for (auto& L : layers_) {
      p.push_back({L.weights.data(), L.weight_grad.data(), L.weights.size()});
      p.push_back({L.bias.data(), L.bias_grad.data(), L.bias.size()});
      if (L.gamma.size()) {
        p.push_back({L.gamma.data(), L.gamma_grad.data(), L.gamma.size()});
        p.push_back({L.beta.data(), L.beta_grad.data(), L.beta.size()});
      }
    }
    return p;
  }
  Index parameter_count() const {
    Index n = 0;
    for (const auto& L : layers_) n += L.weights.size() + L.bias.size() + L.gamma.size() + L.beta.size();
    return n;
  }
  /// Peak bytes of the buffers of a training batch of this size (activations kept for backward).
  std::size_t workspace_bytes(Index batch) const {
    using detail::sat_add, detail::sat_mul, detail::to_size;
    std::size_t units = to_size(inputs());
    for (const auto& L : layers_) units = sat_add(units, sat_add(sat_mul(5, to_size(L.weights.rows())), to_size(L.weights.cols())));
    return sat_mul(sat_mul(units, to_size(std::max<Index>(batch, 1))), sizeof(Scalar));
  }
  /// Multiply-accumulates of one forward pass of one sample.
  Index macs_per_sample() const {
    Index n = 0;
    for (const auto& L : layers_) n += L.weights.size();
    return n;
  }

  /// Inference: running batch-norm statistics, no dropout.
  Matrix<Scalar> forward_batch(const Matrix<Scalar>& Xb, const std::uint32_t* /*ids*/, DrawKey /*key*/) const {
    Matrix<Scalar> h = Xb;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const Layer& L = layers_[l];
      Matrix<Scalar> z = L.weights * h;
      z.colwise() += L.bias;
      if (l + 1 == layers_.size()) return z;
      h = z.cwiseMax(Scalar(0));
      if (L.gamma.size())
        for (Index i = 0; i < h.rows(); ++i) {
          const Scalar m = Scalar(L.running_mean(i)), inv = Scalar(1.0 / std::sqrt(L.running_var(i) + eps));
          h.row(i) = ((h.row(i).array() - m) * inv * L.gamma(i) + L.beta(i)).matrix();
        }
    }
    return h;
  }

  /// Runs the training passes (fit, train_step, compute_gradients) on another engine, such
  /// as the GPU (nmsnn::cuda::DenseEngine); nullptr returns to the CPU. With Sgd or Adam, fit
  /// and train_step run the loss and the update on the engine too (Estimator::train_and_update);
  /// the running statistics' update and inference stay on the CPU. Copies of the network share
  /// the engine.
  void set_engine(std::shared_ptr<ExternalEngine<DenseNetwork>> engine) { engine_ = std::move(engine); }
  const std::shared_ptr<ExternalEngine<DenseNetwork>>& engine() const { return engine_; }

  /// Training forward pass (batch statistics, dropout keyed by (seed, stream, sample, unit)),
  /// keeping what backward_batch() needs; updates the running statistics.
  Matrix<Scalar> forward_train(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key) {
    const Index B = Xb.cols();
    cache_.assign(layers_.size(), {});
    if (engine_) {
      Matrix<Scalar> out = engine_->forward(*this, Xb, ids, key);
      Vector<double> mean, var;
      for (std::size_t l = 0; l + 1 < layers_.size(); ++l)
        if (layers_[l].gamma.size() && engine_->batch_statistics(Index(l), mean, var))
          for (Index i = 0; i < mean.size(); ++i) update_running(layers_[l], cache_[l], i, mean(i), var(i), B);
      return out;
    }
    Matrix<Scalar> h = Xb;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      Layer& L = layers_[l];
      Cache& c = cache_[l];
      c.input = h;
      if (l + 1 == layers_.size() && dropout_ > 0) {
        // Inverted dropout on the last hidden layer's output, before the output layer.
        c.mask.resize(h.rows(), B);
        const auto pkey = make_key(key.seed, RandomDomain::dropout);
        const Scalar keep = Scalar(1.0 - dropout_);
        for (Index b = 0; b < B; ++b)
          for (Index i = 0; i < h.rows(); ++i) c.mask(i, b) = detail::dropout_factor(std::uint32_t(i), ids[b], key.stream, pkey, keep);
        c.input = h.cwiseProduct(c.mask);
      }
      Matrix<Scalar> z = L.weights * c.input;
      z.colwise() += L.bias;
      if (l + 1 == layers_.size()) return z;
      c.relu = z.cwiseMax(Scalar(0));
      h = c.relu;
      if (L.gamma.size()) {
        c.xhat.resize(h.rows(), B);
        c.inv_std.resize(h.rows());
        c.batch_stats = B > 1;
        for (Index i = 0; i < h.rows(); ++i) {
          double mean, var;
          if (c.batch_stats) {
            mean = h.row(i).template cast<double>().mean();
            var = (h.row(i).template cast<double>().array() - mean).square().mean();
            update_running(L, c, i, mean, var, B);
          } else {
            mean = L.running_mean(i);
            var = L.running_var(i);
          }
          c.inv_std(i) = Scalar(1.0 / std::sqrt(var + eps));
          c.xhat.row(i) = ((h.row(i).array() - Scalar(mean)) * c.inv_std(i)).matrix();
          h.row(i) = (c.xhat.row(i).array() * L.gamma(i) + L.beta(i)).matrix();
        }
      }
    }
    return h;
  }

  /// Backward pass after forward_train(): dL/doutput (outputs x B) in, gradients out.
  void backward_batch(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key, const Matrix<Scalar>& grad) {
    if (engine_) {
      engine_->backward(*this, Xb, ids, key, grad);
      return;
    }
    Matrix<Scalar> g = grad;  // gradient with respect to the current layer's output z
    for (std::size_t l = layers_.size(); l-- > 0;) {
      Layer& L = layers_[l];
      Cache& c = cache_[l];
      L.weight_grad.noalias() = g * c.input.transpose();
      L.bias_grad = g.rowwise().sum();
      if (l == 0) break;
      Matrix<Scalar> gh = L.weights.transpose() * g;  // gradient w.r.t. this layer's input
      if (c.mask.size()) gh = gh.cwiseProduct(c.mask);
      // Through the previous layer's batch norm and ReLU.
      Layer& P = layers_[l - 1];
      Cache& pc = cache_[l - 1];
      const Index B = gh.cols();
      if (P.gamma.size()) {
        for (Index i = 0; i < gh.rows(); ++i) {
          P.gamma_grad(i) = (gh.row(i).array() * pc.xhat.row(i).array()).sum();
          P.beta_grad(i) = gh.row(i).sum();
          const auto dxhat = (gh.row(i).array() * P.gamma(i)).eval();
          if (pc.batch_stats)
            gh.row(i) = (pc.inv_std(i) / Scalar(B) *
                         (Scalar(B) * dxhat - dxhat.sum() - pc.xhat.row(i).array() * (dxhat * pc.xhat.row(i).array()).sum()))
                            .matrix();
          else
            gh.row(i) = (dxhat * pc.inv_std(i)).matrix();
        }
      }
      g = gh.cwiseProduct((pc.relu.array() > Scalar(0)).template cast<Scalar>().matrix());
    }
  }

  /// Undoes the running-statistics update of the last forward_train() (the trainer calls it
  /// when that step is refused as diverged, so the model is the one from before the step).
  void rollback_step() {
    for (std::size_t l = 0; l < cache_.size() && l < layers_.size(); ++l)
      if (cache_[l].prev_mean.size()) {
        layers_[l].running_mean = cache_[l].prev_mean;
        layers_[l].running_var = cache_[l].prev_var;
      }
  }

  static constexpr double eps = 1e-5, momentum = 0.1;

 private:
  struct Cache {
    Matrix<Scalar> input, relu, xhat, mask;
    Vector<Scalar> inv_std;
    Vector<double> prev_mean, prev_var;
    bool batch_stats = true;
  };
  DenseOptions options_;
  bool batch_norm_ = false;
  double dropout_ = 0;
  std::vector<Layer> layers_;
  std::vector<Cache> cache_;
  std::shared_ptr<ExternalEngine<DenseNetwork>> engine_;

  // Running statistics of unit i from a batch of B's mean and biased variance (PyTorch's
  // momentum and unbiased variance), keeping the previous ones for rollback_step().
  static void update_running(Layer& L, Cache& c, Index i, double mean, double var, Index B) {
    if (c.prev_mean.size() == 0) {
      c.prev_mean = L.running_mean;
      c.prev_var = L.running_var;
    }
    L.running_mean(i) = (1 - momentum) * L.running_mean(i) + momentum * mean;
    L.running_var(i) = (1 - momentum) * L.running_var(i) + momentum * var * double(B) / double(B - 1);
  }
};

template <FloatingScalar Scalar = float>
using DenseClassifier = DenseNetwork<MulticlassClassification, Scalar>;
template <FloatingScalar Scalar = float>
using DenseBinaryClassifier = DenseNetwork<BinaryClassification, Scalar>;
template <FloatingScalar Scalar = float>
using DenseRegressor = DenseNetwork<Regression, Scalar>;

}  // namespace nmsnn
