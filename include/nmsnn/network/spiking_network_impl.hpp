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

template <TaskType Task, FloatingScalar S>
double SpikingNetwork<Task, S>::train_batch(const Matrix<S>& Xb, const Matrix<S>& Yb, const std::uint32_t* ids,
                                            std::uint32_t stream, Matrix<S>* readout,
                                            const std::vector<double>* class_weights) {
  const DrawKey key{options_.seed, stream};
  const Matrix<S> R = forward_train(Xb, ids, key);
  Matrix<S> G;
  const double loss = Task::loss(R, Yb, &G, class_weights);
  backward_batch(Xb, ids, key, G);
  if (readout) *readout = R;
  return loss;
}

template <TaskType Task, FloatingScalar S>
std::pair<double, double> SpikingNetwork<Task, S>::validation_loss_metric(
    const Eigen::MatrixXd& X, const Matrix<S>& Y, const std::vector<double>* class_weights) const {
  const Matrix<S> R = readout_rows(X);
  return {Task::loss(R, Y, static_cast<Matrix<S>*>(nullptr), class_weights), Task::metric(R, Y)};
}

template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::set_target_scaling(Eigen::RowVectorXd offset, Eigen::RowVectorXd scale) {
  if (offset.size() == 0 && scale.size() == 0) {
    target_offset_.resize(0);
    target_scale_.resize(0);
    return;
  }
  if (offset.size() != outputs() || scale.size() != outputs())
    detail::raise<ShapeError>("set_target_scaling: expected ", outputs(), " offsets and scales");
  if (!offset.allFinite() || !scale.allFinite() || (scale.array() <= 0).any())
    detail::raise<ValueError>("set_target_scaling: offsets must be finite and scales finite and > 0");
  target_offset_ = std::move(offset);
  target_scale_ = std::move(scale);
}

template <TaskType Task, FloatingScalar S>
template <class DX>
void SpikingNetwork<Task, S>::check_features(const Eigen::MatrixBase<DX>& X, std::string_view where) const {
  if (X.rows() < 1) detail::raise<ShapeError>(where, ": X has no rows (empty batch)");
  if (X.cols() != inputs())
    detail::raise<ShapeError>(where, ": X must have ", inputs(), " columns (features), found ", X.cols());
  detail::require_finite(X, where, "X");
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY>
Matrix<S> SpikingNetwork<Task, S>::check_and_encode(const Eigen::MatrixBase<DX>& X,
                                                    const Eigen::MatrixBase<DY>& y,
                                                    std::string_view where) const {
  check_features(X, where);
  const Index rows = (y.cols() == 1 || (y.rows() == 1 && X.rows() != 1)) ? y.size() : y.rows();
  if (rows != X.rows())
    detail::raise<ShapeError>(where, ": X has ", X.rows(), " rows but y has ", rows);
  return Task::template encode_targets<S>(y, outputs());
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY>
double SpikingNetwork<Task, S>::compute_gradients(const Eigen::MatrixBase<DX>& X,
                                                  const Eigen::MatrixBase<DY>& y) {
  const Matrix<S> Y = check_and_encode(X, y, "compute_gradients");
  const Matrix<S> Xb = X.transpose().template cast<S>();
  std::vector<std::uint32_t> ids(static_cast<std::size_t>(X.rows()));
  std::iota(ids.begin(), ids.end(), 0u);
  return train_batch(Xb, Y, ids.data(), next_stream());
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY, class Optimizer>
double SpikingNetwork<Task, S>::train_step(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                           Optimizer& opt) {
  static_assert(OptimizerFor<Optimizer, S>, "train_step: the optimiser needs step(span<const Parameter>)");
  const double loss = compute_gradients(X, y);
  const auto params = parameters();
  detail::guarded_step<S>(std::span<const Parameter<S>>(params), opt, loss, "train_step");
  return loss;
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY, class Optimizer>
History SpikingNetwork<Task, S>::fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                     Optimizer& opt, const FitOptions& fo) {
  static_assert(OptimizerFor<Optimizer, S>, "fit: the optimiser needs step(span<const Parameter>)");
  fo.validate();
  Matrix<S> Y = check_and_encode(X, y, "fit");
  check_class_weights(fo);
  if (fo.validation_fraction > 0) {
    const std::uint64_t seed = fo.seed ? *fo.seed : options_.seed;
    Labels strata;
    if constexpr (Task::is_classifier) strata = Y.row(0).transpose().template cast<int>();
    const Split split = train_test_split(X.rows(), fo.validation_fraction, seed, Task::is_classifier ? &strata : nullptr);
    const Eigen::MatrixXd Xt = take_rows(X.template cast<double>().eval(), split.train);
    Eigen::MatrixXd Xv = take_rows(X.template cast<double>().eval(), split.test);
    Matrix<S> Yt(Y.rows(), Index(split.train.size())), Yv(Y.rows(), Index(split.test.size()));
    for (std::size_t i = 0; i < split.train.size(); ++i) Yt.col(Index(i)) = Y.col(split.train[i]);
    for (std::size_t i = 0; i < split.test.size(); ++i) Yv.col(Index(i)) = Y.col(split.test[i]);
    return fit_encoded(Xt, std::move(Yt), &Xv, &Yv, opt, fo);
  }
  return fit_encoded(X, std::move(Y), nullptr, nullptr, opt, fo);
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY, class DXV, class DYV, class Optimizer>
History SpikingNetwork<Task, S>::fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                     const Eigen::MatrixBase<DXV>& X_val, const Eigen::MatrixBase<DYV>& y_val,
                                     Optimizer& opt, const FitOptions& fo) {
  static_assert(OptimizerFor<Optimizer, S>, "fit: the optimiser needs step(span<const Parameter>)");
  fo.validate();
  Matrix<S> Y = check_and_encode(X, y, "fit");
  Matrix<S> Yv = check_and_encode(X_val, y_val, "fit (validation data)");
  check_class_weights(fo);
  Eigen::MatrixXd Xv = X_val.template cast<double>();
  return fit_encoded(X, std::move(Y), &Xv, &Yv, opt, fo);
}

template <TaskType Task, FloatingScalar S>
void SpikingNetwork<Task, S>::check_class_weights(const FitOptions& fo) const {
  if (fo.class_weights.empty()) return;
  if constexpr (!Task::is_classifier) detail::raise<ValueError>("fit: class weights apply to classifiers only");
  if (Index(fo.class_weights.size()) != classes())
    detail::raise<ValueError>("fit: expected ", classes(), " class weights, found ", fo.class_weights.size());
}

template <TaskType Task, FloatingScalar S>
template <class DX, class Optimizer>
History SpikingNetwork<Task, S>::fit_encoded(const Eigen::MatrixBase<DX>& X, Matrix<S> Y, const Eigen::MatrixXd* Xv,
                                             Matrix<S>* Yv, Optimizer& opt, const FitOptions& fo) {
  if constexpr (!Task::is_classifier) {
    // Standardise the targets on the training rows: the model learns (y - mean) / (3 sd).
    // The factor 3 keeps ±3 sd inside the range a neuron's inner state holds below its
    // threshold (θ = 1): the readout averages states that reset once they cross it.
    if (fo.standardize_targets) {
      const Eigen::MatrixXd Yd = Y.template cast<double>();
      Eigen::RowVectorXd mean = Yd.rowwise().mean().transpose();
      Eigen::RowVectorXd sd = ((Yd.colwise() - mean.transpose()).array().square().rowwise().sum() / double(Yd.cols()))
                                  .sqrt()
                                  .transpose();
      for (Index k = 0; k < sd.size(); ++k) sd(k) = sd(k) > 0 ? 3.0 * sd(k) : 1.0;
      set_target_scaling(mean, sd);
    } else {
      set_target_scaling({}, {});
    }
    if (target_offset_.size()) {
      for (Index k = 0; k < Y.rows(); ++k) {
        Y.row(k) = ((Y.row(k).template cast<double>().array() - target_offset_(k)) / target_scale_(k)).template cast<S>();
        if (Yv)
          Yv->row(k) = ((Yv->row(k).template cast<double>().array() - target_offset_(k)) / target_scale_(k)).template cast<S>();
      }
    }
  }
  return detail::fit_loop(*this, X, Y, Xv, Yv, opt, fo, fo.seed ? *fo.seed : options_.seed);
}

template <TaskType Task, FloatingScalar S>
template <class DX>
Matrix<S> SpikingNetwork<Task, S>::readout_rows(const Eigen::MatrixBase<DX>& X) const {
  check_features(X, "predict");
  const Index n = X.rows();
  const Index batch = 256;
  Matrix<S> R(outputs(), n);
  std::vector<std::uint32_t> ids;
  for (Index begin = 0; begin < n; begin += batch) {
    const Index count = std::min(batch, n - begin);
    const Matrix<S> Xb = X.middleRows(begin, count).transpose().template cast<S>();
    ids.resize(std::size_t(count));
    std::iota(ids.begin(), ids.end(), std::uint32_t(begin));
    R.middleCols(begin, count) = forward_batch(Xb, ids.data(), DrawKey{options_.seed, predict_stream});
  }
  return R;
}

template <TaskType Task, FloatingScalar S>
template <class DX>
Matrix<S> SpikingNetwork<Task, S>::prediction_rows(const Eigen::MatrixBase<DX>& X) const {
  Matrix<S> R = readout_rows(X);
  if (target_offset_.size())
    for (Index k = 0; k < R.rows(); ++k)
      R.row(k) = (R.row(k).template cast<double>().array() * target_scale_(k) + target_offset_(k)).template cast<S>();
  return R;
}

template <TaskType Task, FloatingScalar S>
template <class DX>
Matrix<S> SpikingNetwork<Task, S>::decision_function(const Eigen::MatrixBase<DX>& X) const {
  return readout_rows(X).transpose();
}

template <TaskType Task, FloatingScalar S>
template <class DX>
auto SpikingNetwork<Task, S>::predict(const Eigen::MatrixBase<DX>& X) const {
  if constexpr (Task::is_classifier) return Task::labels(readout_rows(X));
  else return Matrix<S>(prediction_rows(X).transpose());
}

template <TaskType Task, FloatingScalar S>
template <class DX>
Matrix<S> SpikingNetwork<Task, S>::predict_proba(const Eigen::MatrixBase<DX>& X) const
  requires(Task::is_classifier)
{
  return Task::probabilities(readout_rows(X));
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY>
double SpikingNetwork<Task, S>::evaluate(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const {
  const Matrix<S> Y = check_and_encode(X, y, "evaluate");
  return Task::loss(prediction_rows(X), Y, static_cast<Matrix<S>*>(nullptr));
}

template <TaskType Task, FloatingScalar S>
template <class DX, class DY>
double SpikingNetwork<Task, S>::score(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const {
  const Matrix<S> Y = check_and_encode(X, y, "score");
  return Task::metric(prediction_rows(X), Y);
}

}  // namespace nmsnn
