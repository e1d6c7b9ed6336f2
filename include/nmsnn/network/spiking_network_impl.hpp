// nmsnn/network/spiking_network_impl.hpp — definitions of SpikingNetwork (included by
// spiking_network.hpp). The equations cited are those of MODEL.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/detail/fused_scan.hpp"
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
  if (hidden == std::vector<Index>{0}) hidden.clear();  // no hidden layer: one layer, inputs to outputs
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
  if (o.output_neuron) o.output_neuron->validate("SpikingNetwork: output_neuron");
  for (std::size_t i = 0; i < hidden.size(); ++i) {
    const bool last = i + 1 == hidden.size();
    layers_.emplace_back(in, hidden[i], last && o.output_neuron ? *o.output_neuron : o.neuron);
    layers_.back().initialize(rng);
    in = hidden[i];
  }
  check_readout();
}

template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::check_readout() const {
  const Readout r = reducer_.kind();
  if (reduces_membrane(r) && layers_.back().neuron().model != NeuronModel::li)
    detail::raise<ValueError>("SpikingNetwork: readout '", to_string(r), "' reduces a membrane: the output layer must be li "
                              "(output_neuron = NeuronOptions::li()), not ", to_string(layers_.back().neuron().model));
}

template <TaskType Task, FloatingScalar S>
std::vector<Parameter<S>> SpikingNetwork<Task, S>::parameters() {
  std::vector<Parameter<S>> p;
  for (auto& l : layers_) {
    p.push_back({l.mutable_weights().data(), l.weight_gradient().data(), l.weights().size()});
    p.push_back({l.mutable_bias().data(), l.bias_gradient().data(), l.bias().size()});
    const auto& nr = l.neuron();
    if (nr.learn_decay) p.push_back({l.mutable_beta().data(), l.beta_gradient().data(), l.beta().size()});
    if (nr.learn_alpha) p.push_back({l.mutable_alpha().data(), l.alpha_gradient().data(), l.alpha().size()});
    if (nr.learn_threshold) p.push_back({l.mutable_thresholds().data(), l.threshold_gradient().data(), l.thresholds().size()});
  }
  return p;
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::parameter_count() const {
  Index n = 0;
  for (const auto& l : layers_) {
    n += l.weights().size() + l.bias().size();
    const auto& nr = l.neuron();
    n += (nr.learn_decay ? l.beta().size() : 0) + (nr.learn_alpha ? l.alpha().size() : 0) +
         (nr.learn_threshold ? l.thresholds().size() : 0);
  }
  return n;
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::input_chunk_steps(Index batch) const {
  // About 4 Mi scalars of encoded input at a time (16 x engine_chunk_bytes() by default),
  // whatever T; a multiple of 4 steps, since one generator call draws four consecutive steps
  // of a feature.
  const Index per_step = std::max<Index>(1, inputs() * batch);
  const Index budget = Index(16 * engine_chunk_bytes());
  const Index steps = std::max<Index>(4, (budget / per_step) & ~Index(3));
  return std::min(steps, time_steps());
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::time_chunk_steps(Index batch) const {
  // Steps run together, layer after layer, so that a chunk of the widest layer stays in cache
  // from its product through its scan to the next layer's product (and back in backward); a
  // multiple of 4 steps, and no more than layer 1's input chunk.
  Index widest = 1;
  for (const auto& l : layers_) widest = std::max(widest, l.outputs());
  const Index per_step = std::max<Index>(1, widest * batch * Index(sizeof(S)));
  Index steps = std::max<Index>(4, (Index(engine_chunk_bytes()) / per_step) & ~Index(3));
  if (!encoder_.constant_in_time()) steps = std::min(steps, input_chunk_steps(batch));
  return std::min(steps, time_steps());
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::widest_hidden() const {
  Index widest = 0;
  for (std::size_t l = 0; l + 1 < layers_.size(); ++l) widest = std::max(widest, layers_[l].outputs());
  return widest;
}

template <TaskType Task, FloatingScalar S>
bool SpikingNetwork<Task, S>::thin_layer2() const {
#if defined(NMSNN_FUSED_SCAN)
  return num_layers() >= 2 && layers_[1].outputs() <= detail::fused_max_thin;
#else
  return false;
#endif
}

template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::layer1_rows() const {
  const Index n = layers_[0].outputs();
#if defined(NMSNN_FUSED_SCAN)
  if (thin_layer2() && n > layers_[1].outputs()) {
    constexpr Index lanes = detail::thin_vector_bytes / Index(sizeof(S));
    return (n + lanes - 1) / lanes * lanes;
  }
#endif
  return n;
}

template <TaskType Task, FloatingScalar S>
bool SpikingNetwork<Task, S>::use_sparse_input(const Matrix<S>& Xb) const {
  if (encoder_.constant_in_time() || Xb.size() == 0) return false;
  const double density = double((Xb.array() != S(0)).count()) / double(Xb.size());
  return density <= detail::sparse_input_max_density;
}

template <TaskType Task, FloatingScalar S>
std::size_t SpikingNetwork<Task, S>::workspace_bytes(Index batch) const {
  // Outputs of every layer (all steps; backward overwrites them with dL/du), the readout, the
  // scans' carried states, layer 1's encoded input (all steps when they fit one input chunk,
  // else one time chunk) and one time chunk of dL/do for the layers below the last.
  // Saturating arithmetic: an absurd size (time_steps 2^62) gives SIZE_MAX, never a wrapped
  // small number that the guard would let through.
  using detail::sat_add, detail::sat_mul, detail::sat_prod, detail::to_size;
  const std::size_t B = to_size(batch);
  // (recomputing, the buffers hold one segment of steps, and the states at each segment's start
  // are kept: two n x B per layer and segment)
  const Index seg = recompute_segment_steps(batch);
  const std::size_t TB = sat_mul(to_size(seg > 0 ? seg : time_steps()), B);
  const std::size_t segments = seg > 0 ? to_size((time_steps() + seg - 1) / seg) : 0;
  const std::size_t chunk = sat_mul(to_size(time_chunk_steps(batch)), B);
  const std::size_t per_row = sat_add(sat_add(TB, sat_mul(2, B)), sat_mul(segments, sat_mul(2, B)));
  std::size_t scalars = sat_add(sat_mul(to_size(outputs()), B), sat_mul(to_size(widest_hidden()), chunk));
  for (const auto& l : layers_) {
    scalars = sat_add(scalars, sat_mul(to_size(l.outputs()), per_row));
    // a LIF layer's membranes (and a synaptic one's currents, when it learns α) for every step,
    // its other state and the backward sums
    const auto& nr = l.neuron();
    if (nr.lif_family())
      scalars = sat_add(scalars, sat_mul(to_size(l.outputs()), sat_add(sat_mul(nr.learn_alpha ? 2 : 1, TB), sat_mul(6, B))));
  }
  scalars = sat_add(scalars, sat_mul(to_size(layer1_rows() - layers_[0].outputs()), per_row));  // padding rows, if any
  if (!encoder_.constant_in_time()) {
    const bool all = input_chunk_steps(batch) >= time_steps();
    scalars = sat_add(scalars, sat_mul(to_size(inputs()), all ? TB : chunk));
  }
  return sat_mul(scalars, sizeof(S));
}

// Forward (MODEL.md "One spiking layer, one step", "The network"), in chunks of time steps:
// for each chunk and each layer, the currents of the chunk's steps by one product, then the
// scan, carrying the state v from chunk to chunk. Layer l >= 2 reads at step t what layer l-1
// emitted, o_{t-1} (column block t-1 of its outputs); step 0 gets the bias alone. Layer 1's
// currents come from one product per chunk of regenerated masks, or, on the sparse and the
// constant-input paths, for all steps at once before the chunks.
template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::run_forward(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                          Workspace& ws, Matrix<S>& R) const {
  check_readout();
  if (!graded_only()) {
    run_forward_mixed(Xb, ids, key, ws, R);
    return;
  }
  const Index T = time_steps(), B = Xb.cols(), TB = T * B, L = num_layers(), F = inputs();
  ws.outputs.resize(std::size_t(L));
  ws.active.clear();  // (activity() reads the kept outputs)
  R.setZero(outputs(), B);
  const bool dense_input = !encoder_.constant_in_time() && !use_sparse_input(Xb);
  // Layer 1 with few inputs: currents and scan in one pass (detail::forward_product_scan),
  // which also makes the currents of a thin layer 2 (at most 4 neurons). Below a thin layer
  // 2 both passes of layer 1 are fused kernels, which then run on `rows` neurons: n rounded
  // up to whole vectors, the added ones with zero weights, bias and weights in layer 2, so
  // that they never fire and add nothing (layer 1's outputs keep those rows). Without tails,
  // and with each column starting on a vector (no load or store split across cache lines),
  // iris's training step (100 neurons as 112 in 16-float vectors) went from 0.77 to 0.57 ms.
  bool fused = false;
  Index K2 = 0, rows = layers_[0].outputs();
  Matrix<S> W2T, W1, b1;
#if defined(NMSNN_FUSED_SCAN)
  fused = dense_input && F <= detail::fused_max_inputs;
  if (fused && thin_layer2()) {
    K2 = layers_[1].outputs();
    rows = layer1_rows();
    W2T.setZero(rows, K2);
    W2T.topRows(layers_[0].outputs()) = layers_[1].weights().transpose();
    if (rows > layers_[0].outputs()) {  // the padded copies of W1 and b1
      W1.setZero(rows, F);
      W1.topRows(layers_[0].outputs()) = layers_[0].weights();
      b1.setZero(rows, 1);
      b1.topRows(layers_[0].outputs()) = layers_[0].bias();
    }
  }
#endif
  for (Index l = 0; l < L; ++l)
    ws.outputs[std::size_t(l)].resize(l == 0 ? rows : layers_[std::size_t(l)].outputs(), TB);
  const bool keep_all = dense_input && input_chunk_steps(B) >= T;  // backward reuses the draws
  const Index c = time_chunk_steps(B);
  if (!dense_input) {
    Matrix<S>& A = ws.outputs[0];
    if (encoder_.constant_in_time()) {
      const Matrix<S> a = layers_[0].weights() * Xb;
      for (Index t = 0; t < T; ++t) A.middleCols(t * B, B) = a;
    } else {
      A.setZero();
      detail::sparse_forward(A, layers_[0].weights(), Xb, ids, key, encoder_, T);
    }
  } else {
    ws.encoded.resize(F, (keep_all ? T : c) * B);
  }
  // V carries each layer's state between chunks; BT holds its bias for every sample, which
  // the scan adds to the products (these start from zero: a contiguous fill, faster than
  // writing the bias column by column).
  std::vector<Matrix<S>> V(static_cast<std::size_t>(L)), BT(static_cast<std::size_t>(L));
  for (Index l = 0; l < L; ++l) {
    V[std::size_t(l)].setZero(l == 0 ? rows : layers_[std::size_t(l)].outputs(), B);
    BT[std::size_t(l)].resize(layers_[std::size_t(l)].outputs(), B);
    detail::fill_columns(detail::map(BT[std::size_t(l)].data(), layers_[std::size_t(l)].outputs(), B),
                         layers_[std::size_t(l)].bias().data());
  }
  for (Index t0 = 0; t0 < T; t0 += c) {
    const Index steps = std::min(c, T - t0), t1 = t0 + steps;
    for (Index l = 0; l < L; ++l) {
      const Layer& layer = layers_[std::size_t(l)];
      const Index n = layer.outputs(), in = layer.inputs();
      S* a = ws.outputs[std::size_t(l)].data() + t0 * B * ws.outputs[std::size_t(l)].rows();
      const auto W = detail::cmap(layer.weights().data(), n, in);
      // The currents without the bias, which the scan adds (layer 1's sparse and
      // constant-input currents were made for all steps above); step 0 of a layer l >= 2 gets
      // the bias alone.
      if (l == 0 && dense_input) {
        auto E = detail::map(ws.encoded.data() + (keep_all ? t0 * B * F : 0), F, steps * B);
        encoder_.encode(Xb, ids, key, t0, steps, E);
#if defined(NMSNN_FUSED_SCAN)
        if (fused) {
          const bool last = l == L - 1;
          const bool padded = rows > n;  // then on W1, b1: the weights and bias with `rows` rows
          detail::forward_product_scan_dispatch<S>(
              layer.neuron().reset, int(K2), a, padded ? W1.data() : layer.weights().data(), padded ? rows : n, F,
              E.data(), padded ? b1.data() : layer.bias().data(), steps, B,
              detail::ScanConstants<S>::of(layer.neuron()), V[0].data(), last ? R.data() : nullptr,
              reducer_.first_state() - t0, reducer_.last_state() - t0, W2T.data(),
              K2 > 0 ? ws.outputs[1].data() + t0 * B * K2 : nullptr, t1 == T);
          continue;
        }
#endif
        detail::gemm_nn_set<S>(detail::map(a, n, steps * B), W, detail::cmap(E.data(), F, steps * B));
      } else if (l > 0) {
        const Index s0 = std::max<Index>(t0, 1);
        if (s0 > t0) detail::set_zero(detail::map(a, n, B));
        if (t1 > s0 && !(l == 1 && K2 > 0))  // (else made by layer 1's fused pass)
          detail::gemm_nn_set<S>(detail::map(ws.outputs[std::size_t(l)].data() + s0 * B * n, n, (t1 - s0) * B), W,
                                 detail::cmap(ws.outputs[std::size_t(l - 1)].data() + (s0 - 1) * B * in, in,
                                              (t1 - s0) * B));
      }
      if (l == L - 1)
        layer.scan_forward(a, steps, B, R.data(), reducer_.first_state() - t0, reducer_.last_state() - t0,
                           V[std::size_t(l)].data(), BT[std::size_t(l)].data());
      else
        layer.scan_forward(a, steps, B, nullptr, 0, -1, V[std::size_t(l)].data(), BT[std::size_t(l)].data());
    }
  }
  ws.encoded_for = keep_all ? EncodedFor{key, std::vector<std::uint32_t>(ids, ids + B)} : EncodedFor{};
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

// Backward (MODEL.md "Gradients"), in the forward's chunks of time steps, last chunk first;
// within a chunk, last layer first, each scan carrying du from the chunk after it. Each
// layer's outputs are overwritten with dL/du chunk by chunk. For the last layer, dL/dv_t is
// the readout gradient (divided by T - e for a mean) for the reduced steps and there is no
// dL/do_t. For layer l >= 2, dW_l = sum_t du_t o_{t-1}^T of layer l-1 (t >= 1) and the
// gradient with respect to o_t of layer l-1 is W_l^T du_{t+1} (zero at t = T-1); the du of
// the chunk's step after its last is already there, from the chunk after it. Layer 1's
// inputs are the forward's draws when they were all kept, else drawn again chunk by chunk.
template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::backward_batch(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                             const Matrix<S>& readout_grad) {
  if (engine_) {
    engine_->backward(*this, Xb, ids, key, readout_grad);
    return;
  }
  if (!graded_only()) {
    backward_mixed(Xb, ids, key, readout_grad);
    return;
  }
  const Index T = time_steps(), B = Xb.cols(), TB = T * B, L = num_layers(), F = inputs();
  NMSNN_ASSERT(Index(ws_.outputs.size()) == L && ws_.outputs.back().cols() == TB);
  Matrix<S> gv = readout_grad;
  if (reducer_.kind() == Readout::mean) gv /= S(T - begin_eval());
  const bool dense_input = !encoder_.constant_in_time() && !use_sparse_input(Xb);
  const bool reuse = dense_input && ws_.encoded_for.matches(key, ids, B) && ws_.encoded.cols() >= TB;
  const Index c = time_chunk_steps(B);
  if (dense_input && !reuse) ws_.encoded.resize(F, c * B);
  ws_.scratch.resize(widest_hidden(), c * B);  // dL/do of the layer below, one chunk
  // DN carries du between chunks; SU collects sum_t du_t per neuron and sample (the bias
  // gradient, summed over the samples at the end).
  // Layer 1's outputs may have rows after its neurons' (see layer1_rows), as its state and
  // sums and layer 2's weights and weight gradient in the fused pass then do.
  const Index n1 = layers_[0].outputs(), rows1 = ws_.outputs[0].rows();
  std::vector<Matrix<S>> DN(static_cast<std::size_t>(L)), SU(static_cast<std::size_t>(L));
  for (Index l = 0; l < L; ++l) {
    Layer& layer = layers_[std::size_t(l)];
    DN[std::size_t(l)].setZero(l == 0 ? rows1 : layer.outputs(), B);
    SU[std::size_t(l)].setZero(l == 0 ? rows1 : layer.outputs(), B);
    layer.mutable_weight_gradient().setZero(layer.outputs(), layer.inputs());
  }
  // A layer with more inputs than outputs accumulates its gradient as dW^T = sum s du^T, so
  // that the larger operand is the product's left one, which Eigen packs fastest (for an
  // output layer of 3 neurons below 100 this is 3x faster than dW += du s^T).
  std::vector<Matrix<S>> dWT(static_cast<std::size_t>(L));
  auto transposed = [&](Index l) {
    return (l > 0 || dense_input) && layers_[std::size_t(l)].inputs() > layers_[std::size_t(l)].outputs();
  };
  for (Index l = 0; l < L; ++l)
    if (transposed(l))
      dWT[std::size_t(l)].setZero(l == 1 ? rows1 : layers_[std::size_t(l)].inputs(), layers_[std::size_t(l)].outputs());
  // dW_l += dU s^T over some steps: dU is n x k, s (the layer's inputs at those steps) in x k.
  auto accumulate_dW = [&](Index l, const detail::ConstMatMap<S>& dU, const detail::ConstMatMap<S>& s) {
    Layer& layer = layers_[std::size_t(l)];
    const Index n = layer.outputs(), in = layer.inputs();
    if (transposed(l))
      detail::gemm_nt_acc_thin<S>(detail::map(dWT[std::size_t(l)].data(), in, n), s, dU,
                                  [](auto C, auto A, auto B) { detail::gemm_nt_acc_rows<S>(C, A, B); });
    else
      detail::gemm_nt_acc_thin<S>(detail::map(layer.mutable_weight_gradient().data(), n, in), dU, s,
                                  [](auto C, auto A, auto B) { detail::gemm_nt_acc<S>(C, A, B); });
  };
  // Below a thin layer 2 (at most 4 neurons, fewer than layer 1's), layer 1's backward is one
  // fused pass (detail::backward_fused) that also makes the gradient it receives from layer 2
  // and layer 2's weight gradient, and, with at most 4 encoded inputs, its own.
  const Index K2 = L >= 2 ? layers_[1].outputs() : 0;
  bool fused = false;
  int fused_inputs = 0;
  Matrix<S> W2T, dW1p;  // (dW1p: layer 1's weight gradient with rows1 rows, when the pass makes it)
#if defined(NMSNN_FUSED_SCAN)
  fused = thin_layer2() && n1 > K2;  // as layer1_rows pads
  if (fused) {
    W2T.setZero(rows1, K2);
    W2T.topRows(n1) = layers_[1].weights().transpose();
  }
  if (fused && dense_input && !transposed(0) && F <= detail::fused_max_thin) {
    fused_inputs = int(F);
    dW1p.setZero(rows1, F);
  }
#endif
  NMSNN_ASSERT(rows1 == n1 || fused);
  // Layer 1's (dense) inputs at the chunk of `steps` steps from t0: the forward's draws when
  // it kept them all, else drawn again into the chunk buffer.
  auto layer1_inputs = [&](Index t0, Index steps) -> const S* {
    S* e = ws_.encoded.data() + (reuse ? t0 * B * F : 0);
    if (!reuse) {
      auto E = detail::map(e, F, steps * B);
      encoder_.encode(Xb, ids, key, t0, steps, E);
    }
    return e;
  };
  for (Index t0 = (T - 1) / c * c; t0 >= 0; t0 -= c) {
    const Index steps = std::min(c, T - t0), t1 = t0 + steps;
    for (Index l = L - 1; l >= 0; --l) {
      Layer& layer = layers_[std::size_t(l)];
      const Index n = layer.outputs(), in = layer.inputs();
      S* d = ws_.outputs[std::size_t(l)].data();  // o_t before this chunk's scan, dL/du_t after
      if (fused && l == 0) {
        const S* e = dense_input ? layer1_inputs(t0, steps) : nullptr;
#if defined(NMSNN_FUSED_SCAN)
        const auto k = detail::ScanConstants<S>::of(layer.neuron());
        detail::backward_fused_dispatch<S>(
            layer.neuron().reset, int(K2), fused_inputs,
            {d + t0 * B * rows1, rows1, steps, B, t1 == T, W2T.data(), ws_.outputs[1].data() + t0 * B * K2,
             dWT[1].data(), e, dW1p.data(), DN[0].data(), SU[0].data(), k.decay, k.kappa});
#endif
        if (dense_input && fused_inputs == 0)
          accumulate_dW(0, detail::cmap(d + t0 * B * rows1, n, steps * B, rows1), detail::cmap(e, F, steps * B));
        continue;
      }
      if (l == L - 1)
        layer.scan_backward(d + t0 * B * n, nullptr, steps, B, DN[std::size_t(l)].data(), gv.data(),
                            reducer_.first_state() - t0, reducer_.last_state() - t0, SU[std::size_t(l)].data());
      else
        layer.scan_backward(d + t0 * B * n, ws_.scratch.data(), steps, B, DN[std::size_t(l)].data(), nullptr, 0, -1,
                            SU[std::size_t(l)].data());
      const auto dU = detail::cmap(d + t0 * B * n, n, steps * B);
      if (fused && l == 1) continue;  // its weight gradient and layer 1's dL/do: in the fused pass
      if (l > 0) {
        const S* below = ws_.outputs[std::size_t(l - 1)].data();  // still o_t up to step t1 - 1
        const Index s0 = std::max<Index>(t0, 1);
        if (t1 > s0)
          accumulate_dW(l, detail::cmap(d + s0 * B * n, n, (t1 - s0) * B),
                        detail::cmap(below + (s0 - 1) * B * in, in, (t1 - s0) * B));
        const Index ng = std::min(t1, T - 1) - t0;  // steps of the chunk with a step after them
        if (ng > 0)
          detail::gemm_tn_thin<S>(detail::map(ws_.scratch.data(), in, ng * B), detail::cmap(layer.weights().data(), n, in),
                                  detail::cmap(d + (t0 + 1) * B * n, n, ng * B));
        if (ng < steps) detail::map(ws_.scratch.data() + ng * B * in, in, (steps - ng) * B).setZero();
      } else if (dense_input) {
        accumulate_dW(0, dU, detail::cmap(layer1_inputs(t0, steps), F, steps * B));
      }
    }
  }
  for (Index l = 0; l < L; ++l) {
    const Index n = layers_[std::size_t(l)].outputs(), in = layers_[std::size_t(l)].inputs();
    if (transposed(l)) layers_[std::size_t(l)].mutable_weight_gradient() = dWT[std::size_t(l)].topRows(in).transpose();
    layers_[std::size_t(l)].mutable_bias_gradient() = SU[std::size_t(l)].topRows(n).rowwise().sum();
  }
  if (fused_inputs > 0) layers_[0].mutable_weight_gradient() = dW1p.topRows(n1);
  if (dense_input) return;  // layer 1's gradient was accumulated chunk by chunk
  Matrix<S>& dW1 = layers_[0].mutable_weight_gradient();
  const Matrix<S>& D1 = ws_.outputs[0];
  if (encoder_.constant_in_time()) {
    // s_t = x for every t: dW_1 = (sum_t du_t) x^T.
    Matrix<S> du_sum = Matrix<S>::Zero(D1.rows(), B);
    for (Index t = 0; t < T; ++t) du_sum += D1.middleCols(t * B, B);
    dW1.noalias() = du_sum * Xb.transpose();
  } else {
    detail::sparse_weight_gradient(dW1, D1, Xb, ids, key, encoder_, T);
  }
}

// The mixed engine (any layer of the LIF family). Forward, per chunk of steps and layer: the
// currents by one product from what the layer below emitted (at step t - d, d its emit_delay;
// steps before d get the bias alone), then the layer's scan: the graded one's (MODEL.md "One
// spiking layer"), or the LIF neuron's, which keeps M_t (and J_t when learning α) for
// backward and writes its outputs (spikes; an li layer's membrane), the next layer's input. The
// readout reduces what the last layer emits over steps begin_eval .. T-1: the graded layer's
// state v, a spiking layer's spikes (a count; divided by T - e for the mean, a rate), an li
// layer's membrane (sum, mean, max, or the last step's).
//
// When it recomputes (recompute_segment_steps > 0: LIF-family layers only, all emitting at
// their own step), the buffers hold one segment of steps: forward keeps the layers' states at
// each segment's start, and backward runs each segment's forward again from them (the same
// products on the same chunks, so the same bits) before running back through it.
template <TaskType Task, FloatingScalar S>
Index SpikingNetwork<Task, S>::recompute_segment_steps(Index batch) const {
  if (recompute_ == Recompute::never) return 0;
  for (const auto& l : layers_)
    if (!l.neuron().lif_family()) return 0;  // (a graded layer reads the step before: across segments)
  const Index T = time_steps(), c = time_chunk_steps(batch);
  if (recompute_ == Recompute::automatic) {
    std::size_t kept = 0;  // outputs and membranes (and currents) of every step
    for (const auto& l : layers_)
      kept = detail::sat_add(kept, detail::sat_mul(detail::to_size(l.outputs()) * (l.neuron().learn_alpha ? 3 : 2),
                                                   detail::sat_mul(detail::to_size(T), detail::to_size(batch))));
    if (detail::sat_mul(kept, sizeof(S)) <= recompute_threshold_bytes) return 0;
  }
  // About sqrt(number of chunks) chunks per segment: the kept states (one per segment) and a
  // segment's buffers then grow alike, as the square root of T.
  const Index chunks = (T + c - 1) / c;
  const Index per = std::max<Index>(1, Index(std::lround(std::sqrt(double(chunks)))));
  return std::min(T, per * c);
}

template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::forward_mixed_steps(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                                  Workspace& ws, MixedState& st, Index base, Index t_begin, Index t_end,
                                                  S* R, Index* arg) const {
  const Index T = time_steps(), B = Xb.cols(), L = num_layers(), F = inputs();
  const Index c = time_chunk_steps(B), e = begin_eval();
  const Index r_first = reducer_.kind() == Readout::last ? T - 1 : e;
  for (Index t0 = t_begin; t0 < t_end; t0 += c) {
    const Index steps = std::min(c, t_end - t0), t1 = t0 + steps;
    for (Index l = 0; l < L; ++l) {
      const Layer& layer = layers_[std::size_t(l)];
      const Index n = layer.outputs(), in = layer.inputs();
      S* a = ws.outputs[std::size_t(l)].data() + (t0 - base) * B * n;
      const auto W = detail::cmap(layer.weights().data(), n, in);
      // (inputs mostly zero, as spikes are: only the columns of W of the non-zero ones)
      if (l == 0) {
        auto E = detail::map(ws.encoded.data(), F, steps * B);
        encoder_.encode(Xb, ids, key, t0, steps, E);
        if (detail::sparse_chunk(E.data(), F, steps * B, ws.sparse))
          detail::sparse_product_set(a, layer.weights().data(), n, ws.sparse);
        else
          detail::gemm_nn_set<S>(detail::map(a, n, steps * B), W, detail::cmap(E.data(), F, steps * B));
      } else if (emit_delay(l - 1) == 0 &&
                 detail::sparse_chunk(ws.outputs[std::size_t(l - 1)].data() + (t0 - base) * B * in, in, steps * B, ws.sparse)) {
        detail::sparse_product_set(a, layer.weights().data(), n, ws.sparse);
      } else {
        const Index d = emit_delay(l - 1), s0 = std::min(std::max(t0, d), t1);
        if (s0 > t0) detail::set_zero(detail::map(a, n, (s0 - t0) * B));
        if (t1 > s0)
          detail::gemm_nn_set<S>(detail::map(a + (s0 - t0) * B * n, n, (t1 - s0) * B), W,
                                 detail::cmap(ws.outputs[std::size_t(l - 1)].data() + (s0 - d - base) * B * in, in,
                                              (t1 - s0) * B));
      }
      const bool last = l == L - 1;
      S* Rl = last ? R : nullptr;
      if (layer.neuron().lif_family()) {
        S* J = ws.synaptic[std::size_t(l)].size() ? ws.synaptic[std::size_t(l)].data() + (t0 - base) * B * n : nullptr;
        layer.lif_scan_forward(a, ws.membranes[std::size_t(l)].data() + (t0 - base) * B * n, J, steps, B,
                               st.V[std::size_t(l)].data(), st.JS[std::size_t(l)].size() ? st.JS[std::size_t(l)].data() : nullptr,
                               Rl, r_first - t0, T - 1 - t0, Rl ? arg : nullptr, t0);
      } else {
        layer.scan_forward(a, steps, B, Rl, reducer_.first_state() - t0, reducer_.last_state() - t0,
                           st.V[std::size_t(l)].data(), st.BT[std::size_t(l)].data());
      }
      if (R) ws.active[std::size_t(l)] += Index((detail::cmap(a, n, steps * B).array() > S(0)).count());
    }
  }
}

template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::run_forward_mixed(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                                Workspace& ws, Matrix<S>& R) const {
  const Index T = time_steps(), B = Xb.cols(), L = num_layers(), F = inputs();
  const Index c = time_chunk_steps(B), e = begin_eval();
  const Index seg = recompute_segment_steps(B);
  const Index kept = seg > 0 ? seg : T;  // steps the buffers hold
  const auto Ls = std::size_t(L);
  ws.outputs.resize(Ls), ws.membranes.resize(Ls), ws.synaptic.resize(Ls);
  ws.active.assign(Ls, 0);
  ws.batch = B, ws.segment = seg;
  ws.checkpoints.clear();
  R.setZero(outputs(), B);
  MixedState st;
  st.V.resize(Ls), st.JS.resize(Ls), st.BT.resize(Ls);
  for (std::size_t l = 0; l < Ls; ++l) {
    const Layer& layer = layers_[l];
    const Index n = layer.outputs();
    const auto& nr = layer.neuron();
    ws.outputs[l].resize(n, kept * B);
    ws.membranes[l].resize(nr.lif_family() ? n : 0, nr.lif_family() ? kept * B : 0);
    const bool keep_j = nr.model == NeuronModel::synaptic && nr.learn_alpha;
    ws.synaptic[l].resize(keep_j ? n : 0, keep_j ? kept * B : 0);
    st.V[l].setZero(n, B);
    if (nr.model == NeuronModel::synaptic) st.JS[l].setZero(n, B);
    if (!nr.lif_family()) {
      st.BT[l].resize(n, B);
      detail::fill_columns(detail::map(st.BT[l].data(), n, B), layer.bias().data());
    }
  }
  ws.encoded.resize(F, c * B);
  ws.encoded_for = {};
  // A max readout starts from the lowest value and keeps the step of each maximum for backward.
  Index* arg = nullptr;
  if (reducer_.kind() == Readout::max) {
    R.setConstant(outputs(), B, std::numeric_limits<S>::lowest());
    ws.readout_step.assign(std::size_t(outputs() * B), 0);
    arg = ws.readout_step.data();
  }
  for (Index s0 = 0; s0 < T; s0 += kept) {
    if (seg > 0) {  // the states the segment starts from
      std::vector<Matrix<S>> cp;
      for (std::size_t l = 0; l < Ls; ++l) cp.push_back(st.V[l]), cp.push_back(st.JS[l]);
      ws.checkpoints.push_back(std::move(cp));
    }
    forward_mixed_steps(Xb, ids, key, ws, st, s0, s0, std::min(T, s0 + kept), R.data(), arg);
  }
  if (reducer_.kind() == Readout::mean) R /= S(T - e);
}

// Backward of the mixed engine: chunks last first, layers last first. A layer's scan turns its
// kept outputs into dL/d(current); the layer above's weight gradient is taken before, from the
// outputs still there, and the gradient it passes down is W^T times its dL/d(current) d steps
// later (d the emit delay of the layer below). LIF layers sum their β, α and θ gradients per
// neuron and sample (fixed partitions: the same sums whatever the thread count). When the
// forward recomputes, each segment (last first) is run forward again from its kept states.
template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::backward_mixed(const Matrix<S>& Xb, const std::uint32_t* ids, DrawKey key,
                                             const Matrix<S>& readout_grad) {
  const Index T = time_steps(), B = Xb.cols(), L = num_layers(), F = inputs();
  const Index c = time_chunk_steps(B), e = begin_eval();
  const auto Ls = std::size_t(L);
  const Index seg = ws_.segment, kept = seg > 0 ? seg : T;
  NMSNN_ASSERT(ws_.outputs.size() == Ls && ws_.outputs.back().cols() == kept * B && ws_.membranes.size() == Ls &&
               ws_.batch == B);
  Matrix<S> gv = readout_grad;
  if (reducer_.kind() == Readout::mean) gv /= S(T - e);
  ws_.encoded.resize(F, c * B);
  ws_.scratch.resize(widest_hidden(), c * B);
  struct Sums {
    Matrix<S> carry, carry_j, bias, beta, alpha, theta;
  };
  std::vector<Sums> sums(Ls);
  for (std::size_t l = 0; l < Ls; ++l) {
    Layer& layer = layers_[l];
    const Index n = layer.outputs();
    const auto& nr = layer.neuron();
    sums[l].carry.setZero(n, B);
    sums[l].bias.setZero(n, B);
    if (nr.lif_family()) {
      sums[l].beta.setZero(n, B);
      sums[l].theta.setZero(n, B);
      if (nr.model == NeuronModel::synaptic) sums[l].carry_j.setZero(n, B), sums[l].alpha.setZero(n, B);
    }
    layer.mutable_weight_gradient().setZero(n, layer.inputs());
  }
  MixedState st;  // (recomputing: the states a segment starts from)
  st.V.resize(Ls), st.JS.resize(Ls), st.BT.resize(Ls);
  for (Index base = (T - 1) / kept * kept; base >= 0; base -= kept) {
    const Index seg_end = std::min(T, base + kept);
    if (seg > 0) {
      const auto& cp = ws_.checkpoints.at(std::size_t(base / kept));
      for (std::size_t l = 0; l < Ls; ++l) st.V[l] = cp[2 * l], st.JS[l] = cp[2 * l + 1];
      forward_mixed_steps(Xb, ids, key, ws_, st, base, base, seg_end, nullptr, nullptr);
    }
    // the states of the step before the segment (its first step's M_{t-1}, J_{t-1})
    const auto* before = seg > 0 ? &ws_.checkpoints.at(std::size_t(base / kept)) : nullptr;
    for (Index t0 = base + (seg_end - 1 - base) / c * c; t0 >= base; t0 -= c) {
      const Index steps = std::min(c, seg_end - t0), t1 = t0 + steps, o = t0 - base;
      for (Index l = L - 1; l >= 0; --l) {
        Layer& layer = layers_[std::size_t(l)];
        Sums& sm = sums[std::size_t(l)];
        const Index n = layer.outputs(), in = layer.inputs();
        S* d = ws_.outputs[std::size_t(l)].data() + o * B * n;  // outputs before the scan, dL/d(current) after
        const bool last = l == L - 1;
        const S* GS = last ? nullptr : ws_.scratch.data();
        if (layer.neuron().lif_family()) {
          const S* M = ws_.membranes[std::size_t(l)].data();
          const S* J = ws_.synaptic[std::size_t(l)].size() ? ws_.synaptic[std::size_t(l)].data() : nullptr;
          neuron::BackwardChunk<S> bc;
          bc.D = d;
          bc.M = M + o * B * n;
          bc.J = J ? J + o * B * n : nullptr;
          if (o > 0) {
            bc.M_before = M + (o - 1) * B * n;
            bc.J_before = J ? J + (o - 1) * B * n : nullptr;
          } else if (before && t0 > 0) {
            bc.M_before = (*before)[2 * std::size_t(l)].data();
            bc.J_before = J && (*before)[2 * std::size_t(l) + 1].size() ? (*before)[2 * std::size_t(l) + 1].data() : nullptr;
          }
          bc.GS = GS;
          if (last) {
            bc.gv = gv.data(), bc.g_lo = (reducer_.kind() == Readout::last ? T - 1 : e) - t0, bc.g_hi = T - 1 - t0;
            if (reducer_.kind() == Readout::max) bc.arg = ws_.readout_step.data(), bc.t0 = t0;
          }
          bc.dm = sm.carry.data();
          bc.dj = sm.carry_j.size() ? sm.carry_j.data() : nullptr;
          bc.bias_sum = sm.bias.data();
          bc.beta_sum = sm.beta.data();
          bc.alpha_sum = sm.alpha.size() ? sm.alpha.data() : nullptr;
          bc.theta_sum = sm.theta.data();
          layer.lif_scan_backward(bc, steps, B);
        } else if (last) {
          layer.scan_backward(d, nullptr, steps, B, sm.carry.data(), gv.data(), reducer_.first_state() - t0,
                              reducer_.last_state() - t0, sm.bias.data());
        } else {
          layer.scan_backward(d, GS, steps, B, sm.carry.data(), nullptr, 0, -1, sm.bias.data());
        }
        auto& dW = layer.mutable_weight_gradient();
        if (l > 0) {
          // (recomputing, every delay is 0: a chunk reads only its own steps)
          const Index dd = emit_delay(l - 1), s0 = std::min(std::max(t0, dd), t1);
          const S* below = ws_.outputs[std::size_t(l - 1)].data();  // still its outputs up to step t1 - 1
          if (dd == 0 && detail::sparse_chunk(below + o * B * in, in, steps * B, ws_.sparse))
            detail::sparse_weight_gradient(dW.data(), d, n, ws_.sparse);
          else if (t1 > s0)
            detail::gemm_nt_acc<S>(detail::map(dW.data(), n, in), detail::cmap(d + (s0 - t0) * B * n, n, (t1 - s0) * B),
                                   detail::cmap(below + (s0 - dd - base) * B * in, in, (t1 - s0) * B));
          // dL/d(output of layer l-1) at steps t0 .. t1-1: W^T dL/d(current) at step t + dd
          const Index ng = std::max<Index>(0, std::min(t1, T - dd) - t0);
          if (ng > 0)
            detail::gemm_tn_thin<S>(detail::map(ws_.scratch.data(), in, ng * B), detail::cmap(layer.weights().data(), n, in),
                                    detail::cmap(ws_.outputs[std::size_t(l)].data() + (o + dd) * B * n, n, ng * B));
          if (ng < steps) detail::map(ws_.scratch.data() + ng * B * in, in, (steps - ng) * B).setZero();
        } else {
          auto E = detail::map(ws_.encoded.data(), F, steps * B);
          encoder_.encode(Xb, ids, key, t0, steps, E);
          if (detail::sparse_chunk(E.data(), F, steps * B, ws_.sparse))
            detail::sparse_weight_gradient(dW.data(), d, n, ws_.sparse);
          else
            detail::gemm_nt_acc<S>(detail::map(dW.data(), n, in), detail::cmap(d, n, steps * B),
                                   detail::cmap(ws_.encoded.data(), F, steps * B));
        }
      }
    }
  }
  for (std::size_t l = 0; l < Ls; ++l) {
    Layer& layer = layers_[l];
    layer.mutable_bias_gradient() = sums[l].bias.rowwise().sum();
    if (layer.neuron().lif_family())
      layer.set_decay_gradients(sums[l].beta.rowwise().sum(),
                                sums[l].alpha.size() ? Vector<S>(sums[l].alpha.rowwise().sum()) : Vector<S>(),
                                sums[l].theta.rowwise().sum());
  }
}

}  // namespace nmsnn
