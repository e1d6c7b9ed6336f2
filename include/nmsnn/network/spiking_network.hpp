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
// A network with LIF layers (any mix of neuron models) runs the mixed engine: the same chunks
// and products, each layer's own scan, the LIF layers' membranes kept for backward.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/detail/sparse_spikes.hpp"
#include "nmsnn/encoders/input_encoder.hpp"
#include "nmsnn/layers/spiking_layer.hpp"
#include "nmsnn/network/estimator.hpp"
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
  std::vector<Index> hidden = {};      ///< hidden widths, e.g. {100} or {100, 50}; {0}: none (one layer)
  std::optional<Index> time_steps = {};
  Index begin_eval = 0;
  std::optional<Readout> readout = {};
  Encoding encoder = Encoding::rate;
  NeuronOptions neuron = {};           ///< for every layer; change one with layer(i).set_neuron
  /// The output layer's neurons, when not `neuron` (NeuronOptions::li() for a membrane readout)
  std::optional<NeuronOptions> output_neuron = {};
  std::uint64_t seed = 0;              ///< initial weights, input masks and shuffles
};

template <TaskType Task, FloatingScalar ScalarT = float>
class SpikingNetwork : public Estimator<SpikingNetwork<Task, ScalarT>, Task, ScalarT> {
  using Base = Estimator<SpikingNetwork<Task, ScalarT>, Task, ScalarT>;
  friend Base;

 public:
  using Scalar = ScalarT;
  using TaskT = Task;
  using Layer = SpikingLayer<Scalar>;
  using Base::predict_stream;

  explicit SpikingNetwork(const SpikingOptions& options);

  // --- architecture ------------------------------------------------------------------
  Index inputs() const { return layers_.front().inputs(); }
  Index outputs() const { return layers_.back().outputs(); }
  Index time_steps() const { return reducer_.time_steps(); }
  Index begin_eval() const { return reducer_.begin_eval(); }
  const OutputReducer<Scalar>& readout() const { return reducer_; }
  const InputEncoder<Scalar>& encoder() const { return encoder_; }
  /// The options with every default filled in (hidden: the widths in use, empty for a network
  /// of one layer).
  const SpikingOptions& options() const { return options_; }
  std::uint64_t seed() const { return options_.seed; }
  Index num_layers() const { return Index(layers_.size()); }
  /// Whether every layer is of pynmsnn's graded neuron (the engines' fused and device paths).
  bool graded_only() const {
    return std::none_of(layers_.begin(), layers_.end(), [](const Layer& l) { return l.neuron().lif_family(); });
  }
  Layer& layer(Index i) { return layers_.at(std::size_t(i)); }
  const Layer& layer(Index i) const { return layers_.at(std::size_t(i)); }
  /// Trainable parameters in layer order: W1, b1, then layer 1's learnt per-neuron β, α and θ
  /// (those its NeuronOptions learn), W2, b2, ...
  std::vector<Parameter<Scalar>> parameters();
  Index parameter_count() const;

  // Training and inference (fit, predict, predict_proba, evaluate, score, ...): see
  // Estimator (nmsnn/network/estimator.hpp).

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
  /// Steps of layer 1's encoded input generated at once (bounds memory by F x chunk x B).
  Index input_chunk_steps(Index batch) const;
  /// Steps the engine runs together through all layers (a multiple of 4, sized for the cache).
  Index time_chunk_steps(Index batch) const;
  /// Fraction of layer l's outputs o_t that were > 0 (spikes) in the last forward_train()
  /// (before backward_batch, which overwrites them with gradients).
  double activity(Index l) const {
    if (!ws_.active.empty()) {  // (the mixed engine counts as it goes: it may not keep every step)
      const double n = double(layer(l).outputs() * time_steps()) * double(ws_.batch);
      return n > 0 ? double(ws_.active.at(std::size_t(l))) / n : 0.0;
    }
    // (layer 1's outputs may have rows after its neurons': see layer1_rows)
    const auto O = ws_.outputs.at(std::size_t(l)).topRows(layer(l).outputs());
    return O.size() ? double((O.array() > Scalar(0)).count()) / double(O.size()) : 0.0;
  }
  /// Whether layer 1 takes the per-sample sparse path for this batch (rate or Bernoulli
  /// encoder and at most half the inputs non-zero).
  bool use_sparse_input(const Matrix<Scalar>& Xb) const;
  /// Peak bytes of the engine's buffers for a training batch of this size.
  std::size_t workspace_bytes(Index batch) const;
  /// Runs the training passes (fit, train_step, compute_gradients) on another engine, such
  /// as the GPU (nmsnn::cuda::Engine); nullptr returns to the CPU engine. With an optimiser
  /// that gives its update as data (Sgd, Adam), fit and train_step run the loss and the update
  /// on the engine too (Estimator::train_and_update); inference stays on the CPU. Copies of the
  /// network share the engine.
  void set_engine(std::shared_ptr<ExternalEngine<SpikingNetwork>> engine) {
    if (engine && !graded_only())
      detail::raise<ValueError>("SpikingNetwork::set_engine: the device engines run graded neurons only; this network "
                                "has LIF layers (it trains on the CPU engine)");
    engine_ = std::move(engine);
  }
  const std::shared_ptr<ExternalEngine<SpikingNetwork>>& engine() const { return engine_; }
  /// Whether a training step of a network of LIF-family layers keeps every step's outputs and
  /// membranes for backward, or only the states at the start of each segment of steps, from
  /// which backward recomputes a segment's forward before it runs back through it (bit for bit
  /// the same gradients; about one more forward pass of time; memory that does not grow with T
  /// beyond n x B per segment). automatic recomputes when the kept steps would take more than
  /// recompute_threshold_bytes; networks with graded layers always keep every step.
  enum class Recompute { automatic, always, never };
  void set_recompute(Recompute r) { recompute_ = r; }
  Recompute recompute() const { return recompute_; }
  static constexpr std::size_t recompute_threshold_bytes = std::size_t(64) << 20;
  /// Steps per recomputed segment for a training batch of this size (0: every step is kept).
  Index recompute_segment_steps(Index batch) const;

 private:
  SpikingOptions options_;
  InputEncoder<Scalar> encoder_;
  std::vector<Layer> layers_;
  OutputReducer<Scalar> reducer_;

  // Workspace of the last training forward pass (kept for backward). Inference allocates its
  // own, so const methods stay thread-safe.
  struct EncodedFor {  // which draws `encoded` holds, when it holds all T steps
    DrawKey key{};
    std::vector<std::uint32_t> ids;
    bool matches(const DrawKey& k, const std::uint32_t* p, Index B) const {
      return !ids.empty() && k.seed == key.seed && k.stream == key.stream && Index(ids.size()) == B &&
             std::equal(ids.begin(), ids.end(), p);
    }
  };
  struct Workspace {
    std::vector<Matrix<Scalar>> outputs;  // o_t of each layer (n_l x T*B); dL/du after backward
    Matrix<Scalar> encoded;               // layer 1's input: all steps, or one chunk of them
    Matrix<Scalar> scratch;               // dL/do of one chunk of the layer below (backward)
    EncodedFor encoded_for;
    std::vector<Matrix<Scalar>> membranes;  // LIF layers: M_t (n_l x T*B); empty for graded ones
    std::vector<Matrix<Scalar>> synaptic;   // Synaptic layers learning α: J_t (n_l x T*B)
    std::vector<Index> readout_step;        // a max readout: the step of each output's maximum
    // Mixed engine: outputs > 0 per layer in the last forward (activity), its batch, and, when
    // it recomputes, the layers' states at the start of each segment (V then J, n_l x B).
    std::vector<Index> active;
    Index batch = 0, segment = 0;
    std::vector<std::vector<Matrix<Scalar>>> checkpoints;
    detail::SparseChunk<Scalar> sparse;  // a sparse chunk of a layer's inputs (detail/sparse_spikes.hpp)
  };
  // The running states of the mixed engine's layers: membrane (or graded state), synaptic
  // current, graded bias tile.
  struct MixedState {
    std::vector<Matrix<Scalar>> V, JS, BT;
  };
  // Forward chunks of steps [t_begin, t_end) of the mixed engine; ws's buffers hold steps from
  // base on. R (and arg, a max readout's steps) when the readout is made; counts activity then.
  void forward_mixed_steps(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key, Workspace& ws,
                           MixedState& st, Index base, Index t_begin, Index t_end, Scalar* R, Index* arg) const;
  Recompute recompute_ = Recompute::automatic;
  // Throws ValueError when the readout cannot reduce what the last layer emits (max and last
  // reduce a membrane: an li output layer).
  void check_readout() const;
  Workspace ws_;
  std::shared_ptr<ExternalEngine<SpikingNetwork>> engine_;
  void run_forward(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key,
                   Workspace& ws, Matrix<Scalar>& R) const;
  // The engine for networks with LIF layers (any mix of neuron models): chunks of steps, one
  // product per layer and chunk, each layer's own scan; none of the graded-only fused paths.
  void run_forward_mixed(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key, Workspace& ws,
                         Matrix<Scalar>& R) const;
  void backward_mixed(const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key,
                      const Matrix<Scalar>& readout_grad);
  // Steps by which layer l's output lags its input: 1 for the graded neuron (it emits
  // (v_{t-1}, o_{t-1}) at step t), 0 for the LIF family.
  Index emit_delay(Index l) const { return layers_[std::size_t(l)].neuron().lif_family() ? 0 : 1; }
  Index widest_hidden() const;  // widest layer below the last (0 with one layer)
  // Rows of layer 1's outputs where its forward and backward are fused kernels below a thin
  // layer 2: its neurons rounded up to whole vectors of the kernels (see run_forward).
  Index layer1_rows() const;
  // Whether layer 2 is thin enough (<= detail::fused_max_thin neurons) for the fused passes
  // of layer 1 to take its currents and gradient (false where the fused kernels are not built).
  bool thin_layer2() const;
};

template <FloatingScalar Scalar = float>
using SpikingClassifier = SpikingNetwork<MulticlassClassification, Scalar>;
template <FloatingScalar Scalar = float>
using SpikingBinaryClassifier = SpikingNetwork<BinaryClassification, Scalar>;
template <FloatingScalar Scalar = float>
using SpikingRegressor = SpikingNetwork<Regression, Scalar>;

}  // namespace nmsnn

#include "nmsnn/network/spiking_network_impl.hpp"
