// nmsnn/network/spiking_network_impl.hpp — definitions of SpikingNetwork (included by
// spiking_network.hpp). The equations cited are those of MODEL.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/detail/parallel_gemm.hpp"
#include "nmsnn/detail/sparse_input.hpp"
#include "nmsnn/preprocessing/preprocessing.hpp"
#include "nmsnn/train/trainer.hpp"

namespace nmsnn {

template <TaskType Task, FloatingScalar S>
SpikingNetwork<Task, S>::SpikingNetwork(const SpikingOptions& o) : options_(o) {
  if (o.inputs < 1) detail::raise<ValueError>("SpikingNetwork: inputs must be >= 1, found ", o.inputs);
  const Index outputs = o.outputs ? *o.outputs : Task::default_outputs();
  Task::check_outputs(outputs);
  std::vector<Index> hidden = o.hidden.empty() ? std::vector<Index>{Task::default_hidden} : o.hidden;
  for (std::size_t i = 0; i < hidden.size(); ++i)
    if (hidden[i] < 1)
      detail::raise<ValueError>("SpikingNetwork: hidden layer ", i + 1, " must have >= 1 neuron, found ",
                                hidden[i]);
  o.neuron.validate("SpikingNetwork");
  reducer_ = OutputReducer<S>(o.readout ? *o.readout : Task::default_readout,
                              o.time_steps ? *o.time_steps : Task::default_time_steps, o.begin_eval);
  encoder_ = InputEncoder<S>(o.encoder);
  options_.outputs = outputs;
  options_.hidden = hidden;
  options_.time_steps = reducer_.time_steps();
  options_.readout = reducer_.kind();
  Index in = o.inputs;
  CounterRng rng(o.seed, RandomDomain::init);
  hidden.push_back(outputs);
  for (Index width : hidden) {
    layers_.emplace_back(in, width, o.neuron);
    layers_.back().initialize(rng);
    in = width;
  }
}

template <TaskType Task, FloatingScalar S>
std::vector<Parameter<S>> SpikingNetwork<Task, S>::parameters() {
  std::vector<Parameter<S>> p;
  for (auto& l : layers_) {
    p.push_back({l.mutable_weights().data(), l.weight_gradient().data(), l.weights().size()});
    p.push_back({l.mutable_bias().data(), l.bias_gradient().data(), l.bias().size()});
  }
  return p;
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::parameter_count() const {
  Index n = 0;
  for (const auto& l : layers_) n += l.weights().size() + l.bias().size();
  return n;
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::input_chunk_steps(Index batch) const {
  // About 4 Mi scalars of encoded input at a time, whatever T; a multiple of 4 steps, since
  // one generator call draws four consecutive steps of a feature.
  const Index per_step = std::max<Index>(1, inputs() * batch);
  const Index steps = std::max<Index>(4, ((Index(1) << 22) / per_step) & ~Index(3));
  return std::min(steps, time_steps());
}

template <TaskType Task, FloatingScalar S>
bool SpikingNetwork<Task, S>::use_sparse_input(const Matrix<S>& Xb) const {
  if (encoder_.constant_in_time() || Xb.size() == 0) return false;
  const double density = double((Xb.array() != S(0)).count()) / double(Xb.size());
  return density <= detail::sparse_input_max_density;
}

template <TaskType Task, FloatingScalar S>
std::size_t SpikingNetwork<Task, S>::workspace_bytes(Index batch) const {
  // Outputs of every layer, the last layer's gradient, one layer's gates (bytes), one chunk of
  // encoded input (dense path) and the readout.
  const std::size_t TB = std::size_t(time_steps()) * std::size_t(batch);
  std::size_t scalars = (std::size_t(outputs()) + 1) * TB, widest = 0;
  for (const auto& l : layers_) {
    scalars += std::size_t(l.outputs()) * TB;
    widest = std::max(widest, std::size_t(l.outputs()));
  }
  if (!encoder_.constant_in_time())
    scalars += std::size_t(inputs()) * std::size_t(input_chunk_steps(batch) * batch);
  return scalars * sizeof(S) + widest * TB;
}

// Forward (MODEL.md "One spiking layer, one step", "The network"): for each layer, currents of
// all steps by one product, then the scan. Layer l >= 2 reads at step t what layer l-1 emitted,
// o_{t-1}: columns [0, (T-1)B) of its outputs feed steps 1..T-1; step 0 gets the bias alone.
template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::run_forward(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                          Workspace& ws, Matrix<S>& R) const {
  const Index T = time_steps(), B = Xb.cols(), TB = T * B, L = num_layers();
  ws.outputs.resize(std::size_t(L));
  R.setZero(outputs(), B);
  for (Index l = 0; l < L; ++l) {
    const Layer& layer = layers_[std::size_t(l)];
    Matrix<S>& A = ws.outputs[std::size_t(l)];
    A.resize(layer.outputs(), TB);
    const auto W = detail::cmap(layer.weights().data(), layer.outputs(), layer.inputs());
    A.colwise() = layer.bias();  // the products below accumulate onto the bias
    if (l == 0) {
      if (encoder_.constant_in_time()) {
        const Matrix<S> a = layer.weights() * Xb;
        for (Index t = 0; t < T; ++t) A.middleCols(t * B, B) += a;
      } else if (use_sparse_input(Xb)) {
        detail::sparse_forward(A, layer.weights(), Xb, ids, key, encoder_, T);
      } else {
        const Index chunk = input_chunk_steps(B);
        ws.encoded.resize(inputs(), chunk * B);
        for (Index t0 = 0; t0 < T; t0 += chunk) {
          const Index steps = std::min(chunk, T - t0);
          encoder_.encode(Xb, ids, key, t0, steps, ws.encoded);
          detail::gemm_nn<S>(detail::map(A.data() + t0 * B * A.rows(), A.rows(), steps * B), W,
                             detail::cmap(ws.encoded.data(), inputs(), steps * B), true);
        }
        // When all T steps fit in one chunk, backward reuses it instead of drawing again.
        ws.encoded_for = chunk >= T ? EncodedFor{key, std::vector<std::uint32_t>(ids, ids + B)} : EncodedFor{};
      }
    } else if (T > 1) {
      detail::gemm_nn<S>(detail::map(A.data() + B * A.rows(), A.rows(), (T - 1) * B), W,
                         detail::cmap(ws.outputs[std::size_t(l - 1)].data(), layer.inputs(), (T - 1) * B),
                         true);
    }
    if (l == L - 1)
      layer.scan_forward(A.data(), T, B, R.data(), reducer_.first_state(), reducer_.last_state());
    else
      layer.scan_forward(A.data(), T, B);
  }
  if (reducer_.kind() == Readout::mean) R /= S(T - begin_eval());
}

template <TaskType Task, FloatingScalar S>
Matrix<S> SpikingNetwork<Task, S>::forward_batch(const Matrix<S>& Xb, const std::uint32_t* ids,
                                                 DrawKey key) const {
  Matrix<S> R;
  Workspace local;
  run_forward(Xb, ids, key, local, R);
  return R;
}

template <TaskType Task, FloatingScalar S>
Matrix<S> SpikingNetwork<Task, S>::forward_train(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key) {
  if (engine_) return engine_->forward(*this, Xb, ids, key);
  Matrix<S> R;
  run_forward(Xb, ids, key, ws_, R);
  return R;
}

// Backward (MODEL.md "Gradients"). For the last layer, dL/dv_t is the readout gradient (divided
// by T - e for a mean) for the reduced steps and there is no dL/do_t. For layer l >= 2,
// dW_l = dU_l[:, steps 1..T-1] * O_{l-1}[:, steps 0..T-2]^T and the gradient with respect to
// o_{t-1} of layer l-1 is W_l^T du_t. Layer 1's inputs are regenerated chunk by chunk.
template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::backward_batch(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                             const Matrix<S>& readout_grad) {
  if (engine_) {
    engine_->backward(*this, Xb, ids, key, readout_grad);
    return;
  }
  const Index T = time_steps(), B = Xb.cols(), TB = T * B, L = num_layers();
  NMSNN_ASSERT(Index(ws_.outputs.size()) == L && ws_.outputs.back().cols() == TB);
  Matrix<S> gv = readout_grad;
  if (reducer_.kind() == Readout::mean) gv /= S(T - begin_eval());
  // Memory: the gates of a layer are extracted (one byte each) just before its outputs'
  // storage is reused for its gradient dL/du, so only one extra buffer (the last layer's) is
  // needed beyond the forward pass.
  Matrix<S>* D = &ws_.grad;
  D->resize(outputs(), TB);
  ws_.gates.resize(std::size_t(ws_.outputs.back().size()));
  Layer::extract_gates(ws_.outputs.back().data(), ws_.outputs.back().size(), ws_.gates.data());
  layers_.back().scan_backward(D->data(), ws_.gates.data(), T, B, false, gv.data(),
                               reducer_.first_state(), reducer_.last_state());
  for (Index l = L - 1; l >= 0; --l) {
    Layer& layer = layers_[std::size_t(l)];
    const Index n = layer.outputs(), in = layer.inputs();
    layer.mutable_bias_gradient() = D->rowwise().sum();
    Matrix<S>& dW = layer.mutable_weight_gradient();
    dW.setZero(n, in);
    auto dW_map = detail::map(dW.data(), n, in);
    if (l > 0) {
      Matrix<S>& below = ws_.outputs[std::size_t(l - 1)];  // o_t of layer l-1, then its dL/du
      const auto dU = detail::cmap(D->data() + B * n, n, (T - 1) * B);
      if (T > 1) detail::gemm_nt_acc<S>(dW_map, dU, detail::cmap(below.data(), in, (T - 1) * B));
      ws_.gates.resize(std::size_t(below.size()));
      Layer::extract_gates(below.data(), below.size(), ws_.gates.data());
      if (T > 1)
        detail::gemm_tn<S>(detail::map(below.data(), in, (T - 1) * B),
                           detail::cmap(layer.weights().data(), n, in), dU, false);
      below.rightCols(B).setZero();
      layers_[std::size_t(l - 1)].scan_backward(below.data(), ws_.gates.data(), T, B, true);
      D = &below;
    } else if (encoder_.constant_in_time()) {
      // s_t = x for every t: dW_1 = (sum_t du_t) x^T.
      Matrix<S> du_sum = Matrix<S>::Zero(n, B);
      for (Index t = 0; t < T; ++t) du_sum += D->middleCols(t * B, B);
      dW.noalias() = du_sum * Xb.transpose();
    } else if (use_sparse_input(Xb)) {
      detail::sparse_weight_gradient(dW, *D, Xb, ids, key, encoder_, T);
    } else {
      const Index chunk = input_chunk_steps(B);
      const bool reuse = ws_.encoded_for.matches(key, ids, B) && ws_.encoded.cols() >= T * B;
      ws_.encoded.resize(in, chunk * B);
      // The larger of du and s is packed as the product's left operand, where Eigen packs a
      // column-major matrix fastest: for wide inputs accumulate dW^T = sum s du^T instead.
      const bool transposed = in > n;
      Matrix<S> dWT;
      if (transposed) dWT.setZero(in, n);
      for (Index t0 = 0; t0 < T; t0 += chunk) {
        const Index steps = std::min(chunk, T - t0);
        if (!reuse) encoder_.encode(Xb, ids, key, t0, steps, ws_.encoded);
        const auto dU = detail::cmap(D->data() + t0 * B * n, n, steps * B);
        const auto Sx = detail::cmap(ws_.encoded.data(), in, steps * B);
        if (transposed) detail::gemm_nt_acc_rows<S>(detail::map(dWT.data(), in, n), Sx, dU);
        else detail::gemm_nt_acc<S>(dW_map, dU, Sx);
      }
      if (transposed) dW = dWT.transpose();
    }
  }
}

}  // namespace nmsnn
