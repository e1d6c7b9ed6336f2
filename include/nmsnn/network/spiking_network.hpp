// nmsnn/network/spiking_network.hpp — SpikingNetwork<Task>: an InputEncoder, any number of
// SpikingLayers and an OutputReducer, trained by hand-written backprop through time
// (MODEL.md). Public data: one row per sample.
//
// Engine layout (see spiking_network_impl.hpp): a layer's quantities for all steps of a batch
// sit in one column-major (neurons x T*B) matrix, column t*B + b. Each layer's input currents
// for all steps are one matrix product (layer 1: in chunks of steps whose masks are
// regenerated, never stored); the recurrence is an element-wise scan over t; backward is a
// reverse scan, one product for dW and one for the input gradient. Only the layers' outputs
// o_t are kept for backward: they are the next layer's inputs and their signs are the gates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/encoders/input_encoder.hpp"
#include "nmsnn/layers/spiking_layer.hpp"
#include "nmsnn/optim/optimizers.hpp"
#include "nmsnn/readout/output_reducer.hpp"
#include "nmsnn/tasks/tasks.hpp"
#include "nmsnn/train/fit_options.hpp"

namespace nmsnn {

/// Architecture and neuron settings. Unset fields take the Task's pynmsnn defaults
/// (binary: hidden {64}, sum readout, T = 500; multiclass: {100}, mean, T = 64;
/// regression: {100}, mean, T = 64).
struct SpikingOptions {
  Index inputs = 0;                    ///< number of features (required)
  std::optional<Index> outputs = {};   ///< classes (multiclass, required) or targets (regression)
  std::vector<Index> hidden = {};      ///< hidden widths, e.g. {100} or {100, 50}
  std::optional<Index> time_steps = {};
  Index begin_eval = 0;
  std::optional<Readout> readout = {};
  Encoding encoder = Encoding::rate;
  NeuronOptions neuron = {};           ///< for every layer; change one with layer(i).set_neuron
  std::uint64_t seed = 0;              ///< initial weights, input masks and shuffles
};

template <TaskType Task, FloatingScalar ScalarT = float>
class SpikingNetwork {
 public:
  using Scalar = ScalarT;
  using TaskT = Task;
  using Layer = SpikingLayer<Scalar>;

  explicit SpikingNetwork(const SpikingOptions& options);

  // --- architecture ------------------------------------------------------------------
  Index inputs() const { return layers_.front().inputs(); }
  Index outputs() const { return layers_.back().outputs(); }
  /// Number of classes (classifiers) or 0 (regression).
  Index classes() const { return Task::classes(outputs()); }
  Index time_steps() const { return reducer_.time_steps(); }
  Index begin_eval() const { return reducer_.begin_eval(); }
  const OutputReducer<Scalar>& readout() const { return reducer_; }
  const InputEncoder<Scalar>& encoder() const { return encoder_; }
  const SpikingOptions& options() const { return options_; }
  std::uint64_t seed() const { return options_.seed; }
  Index num_layers() const { return Index(layers_.size()); }
  Layer& layer(Index i) { return layers_.at(std::size_t(i)); }
  const Layer& layer(Index i) const { return layers_.at(std::size_t(i)); }
  /// Trainable weights and biases, in layer order (W1, b1, W2, b2, ...).
  std::vector<Parameter<Scalar>> parameters();
  Index parameter_count() const;

  // --- training ----------------------------------------------------------------------
  /// Loss of the batch (X: n x inputs, y: labels or n x outputs targets) and the gradients
  /// of every weight and bias (read them with layer(i).weight_gradient()). Uses fresh masks.
  template <class DX, class DY>
  double compute_gradients(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y);

  /// compute_gradients, then one optimiser step. Throws NumericalError, weights untouched,
  /// when the loss or a gradient is not finite.
  template <class DX, class DY, class Optimizer>
  double train_step(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y, Optimizer& opt);

  /// Mini-batch training; returns the per-epoch history (loss, metric, validation figures,
  /// times). Regression targets are standardised for training (options.standardize_targets)
  /// and predictions mapped back; the history's losses are then in standardised units.
  template <class DX, class DY, class Optimizer>
  History fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y, Optimizer& opt,
              const FitOptions& options = {});
  /// The same with explicit validation data.
  template <class DX, class DY, class DXV, class DYV, class Optimizer>
  History fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y, const Eigen::MatrixBase<DXV>& X_val,
              const Eigen::MatrixBase<DYV>& y_val, Optimizer& opt, const FitOptions& options = {});

  /// Regression targets' standardisation: y_model = (y - offset) / scale (identity when unset).
  const Eigen::RowVectorXd& target_offset() const { return target_offset_; }
  const Eigen::RowVectorXd& target_scale() const { return target_scale_; }
  void set_target_scaling(Eigen::RowVectorXd offset, Eigen::RowVectorXd scale);

  // --- inference (deterministic: masks keyed by the row index and a fixed stream) --------
  /// The readout (n x outputs): logits for classifiers, values for regression.
  template <class DX>
  Matrix<Scalar> decision_function(const Eigen::MatrixBase<DX>& X) const;
  /// Labels (classifiers) or values n x outputs (regression).
  template <class DX>
  auto predict(const Eigen::MatrixBase<DX>& X) const;
  /// Class probabilities, n x classes (binary: columns P(0), P(1)).
  template <class DX>
  Matrix<Scalar> predict_proba(const Eigen::MatrixBase<DX>& X) const
    requires(Task::is_classifier);
  /// Mean loss on (X, y) without training (regression: in target units).
  template <class DX, class DY>
  double evaluate(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const;
  /// Accuracy (classifiers) or R² (regression), as scikit-learn's score.
  template <class DX, class DY>
  double score(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const;

  // --- engine interface (used by the trainer, the benchmarks and the GPU path) -----------
  /// Forward pass of a batch in engine layout (Xb: inputs x B). Returns the readout
  /// (outputs x B). Thread-safe: uses a local workspace.
  Matrix<Scalar> forward_batch(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key) const;
  /// The same, keeping in the network's workspace what backward_batch() needs.
  Matrix<Scalar> forward_train(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key);
  /// Backward pass after forward_train(): dL/dreadout (outputs x B) in,
  /// gradients of every layer out.
  void backward_batch(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key,
                      const Matrix<Scalar>& readout_grad);
  /// Loss and gradients of a batch in engine layout (Yb: target rows x B); optionally the
  /// readout (outputs x B) and per-class loss weights.
  double train_batch(const Matrix<Scalar>& Xb, const Matrix<Scalar>& Yb, const std::uint32_t* ids,
                     std::uint32_t stream, Matrix<Scalar>* readout = nullptr,
                     const std::vector<double>* class_weights = nullptr);
  /// Loss and metric on validation rows (targets in engine layout, model units).
  std::pair<double, double> validation_loss_metric(const Eigen::MatrixXd& X, const Matrix<Scalar>& Y,
                                                   const std::vector<double>* class_weights) const;
  /// The stream id of the next training pass (each pass draws fresh masks).
  std::uint32_t next_stream() { return stream_counter_++; }
  /// Stream of inference passes.
  static constexpr std::uint32_t predict_stream = 0xFFFFFFFFu;
  /// Steps of layer 1's encoded input generated at once (bounds memory by F x chunk x B).
  Index input_chunk_steps(Index batch) const;
  /// Fraction of layer l's outputs o_t that were > 0 (spikes) in the last forward_train()
  /// (before backward_batch, which reuses that storage).
  double activity(Index l) const {
    const auto& O = ws_.outputs.at(std::size_t(l));
    return O.size() ? double((O.array() > Scalar(0)).count()) / double(O.size()) : 0.0;
  }
  /// Whether layer 1 takes the per-sample sparse path for this batch (rate or Bernoulli
  /// encoder and at most half the inputs non-zero).
  bool use_sparse_input(const Matrix<Scalar>& Xb) const;
  /// Peak bytes of the engine's buffers for a training batch of this size.
  std::size_t workspace_bytes(Index batch) const;

 private:
  template <class DX>
  void check_features(const Eigen::MatrixBase<DX>& X, std::string_view where) const;
  template <class DX, class DY>
  Matrix<Scalar> check_and_encode(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                  std::string_view where) const;
  template <class DX>
  Matrix<Scalar> readout_rows(const Eigen::MatrixBase<DX>& X) const;  // outputs x n
  /// Readout mapped to target units (regression), outputs x n.
  template <class DX>
  Matrix<Scalar> prediction_rows(const Eigen::MatrixBase<DX>& X) const;
  template <class DX, class Optimizer>
  History fit_encoded(const Eigen::MatrixBase<DX>& X, Matrix<Scalar> Y, const Eigen::MatrixXd* Xv, Matrix<Scalar>* Yv,
                      Optimizer& opt, const FitOptions& options);
  void check_class_weights(const FitOptions& options) const;
  Eigen::RowVectorXd target_offset_, target_scale_;

  SpikingOptions options_;
  InputEncoder<Scalar> encoder_;
  std::vector<Layer> layers_;
  OutputReducer<Scalar> reducer_;
  std::uint32_t stream_counter_ = 0;

  // Workspace of the last training forward pass (kept for backward). Inference allocates its
  // own, so const methods stay thread-safe.
  struct EncodedFor {  // which draws the encoded chunk holds, when it holds all T steps
    DrawKey key{};
    std::vector<std::uint32_t> ids;
    bool matches(const DrawKey& k, const std::uint32_t* p, Index B) const {
      return !ids.empty() && k.seed == key.seed && k.stream == key.stream && Index(ids.size()) == B &&
             std::equal(ids.begin(), ids.end(), p);
    }
  };
  struct Workspace {
    std::vector<Matrix<Scalar>> outputs;  // o_t of each layer (n_l x T*B); dL/du after backward
    Matrix<Scalar> grad;                  // dL/du of the last layer
    std::vector<std::uint8_t> gates;      // fire gates of the layer being differentiated
    Matrix<Scalar> encoded;               // one chunk of layer 1's input
    EncodedFor encoded_for;
  };
  Workspace ws_;
  void run_forward(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key,
                   Workspace& ws, Matrix<Scalar>& R) const;
};

template <FloatingScalar Scalar = float>
using SpikingClassifier = SpikingNetwork<MulticlassClassification, Scalar>;
template <FloatingScalar Scalar = float>
using SpikingBinaryClassifier = SpikingNetwork<BinaryClassification, Scalar>;
template <FloatingScalar Scalar = float>
using SpikingRegressor = SpikingNetwork<Regression, Scalar>;

}  // namespace nmsnn

#include "nmsnn/network/spiking_network_impl.hpp"
