// nmsnn/layers/spiking_layer.hpp — one fully connected layer of spiking neurons: weights and
// bias, the neuron settings (neurons/neuron_options.hpp) and, for the LIF family, each neuron's
// β, α and θ. The graded neuron's scans are below (MODEL.md "One spiking layer, one step":
// decay λ, threshold θ, refractory penalty ρ, reset "scale" or "subtract", and the one-step-late
// emission of (state, output)); the LIF family's are in neurons/lif.hpp.
//
// The layer works time-batched: the engine hands it the input currents a_t = W s_t + b of all
// steps at once (n_out x T*B, column t*B + b), and the scan below runs the recurrence over t,
// vectorised over neurons and samples, overwriting a_t with the output o_t. The backward scan
// needs only the fire gates g_t = [o_t > 0]: it reads them from o_t and overwrites o_t with the
// gradient dL/du_t. Both scans can run over a long sequence in pieces of steps, carrying
// the state (v forward, du backward) from one piece to the next.
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/neurons/lif.hpp"
#include "nmsnn/neurons/neuron_options.hpp"

namespace nmsnn {

namespace detail {

/// Elements of one step's n x B block that one scan task keeps in L1 while it walks over t.
inline constexpr Index scan_chunk = 2048;

/// One forward step over n elements (restrict-qualified and branch-free so that it
/// vectorises): a_t (+ b when with_bias) -> o_t in place, v_{t-1} -> v_t, and v_t added to r
/// when accumulating.
template <class Scalar, Reset mode, bool accumulate, bool with_bias>
inline void forward_step(Scalar* __restrict a, const Scalar* __restrict b, Scalar* __restrict v,
                         Scalar* __restrict r, Index n, Scalar decay, Scalar threshold, Scalar penalty,
                         Scalar kappa) {
  // The gate g = [u > θ] (equivalently [o > 0]: with gradual underflow u > θ implies
  // u - θ > 0) enters as a 0/1 factor, exactly as the reference writes the reset.
  for (Index j = 0; j < n; ++j) {
    Scalar in = a[j];
    if constexpr (with_bias) in += b[j];
    const Scalar u = in + v[j] * decay;
    const Scalar g = static_cast<Scalar>(u > threshold);
    const Scalar o = (u - threshold) * g;
    Scalar vn;
    if constexpr (mode == Reset::scale)
      vn = u - (kappa * u) * g;
    else
      vn = u - (penalty + o) * g;
    a[j] = o;
    v[j] = vn;
    if constexpr (accumulate) r[j] += vn;
  }
}

/// Forward scan over T steps of the element range [j0, j1) of each step's block (size nB).
/// A holds a_t on entry (W s_t, plus b unless a bias tile BT is given, which is then added:
/// nB values, b for each sample) and o_t on exit. V, when given, holds the state v before
/// the first step on entry and after the last on exit (so that a long run can be scanned in
/// pieces); otherwise the state starts at zero. When R is given, v_t is added to R for t in
/// [t_lo, t_hi] (the steps whose emitted state the readout reduces).
template <class Scalar, Reset mode, bool readout, bool with_bias>
void forward_scan(Scalar* A, const Scalar* BT, Index T, Index nB, Index j0, Index j1, Scalar decay,
                  Scalar threshold, Scalar penalty, Scalar* V, Scalar* R, Index t_lo, Index t_hi) {
  const Scalar kappa = penalty / threshold;
  alignas(64) Scalar zero_state[scan_chunk];
  const Index n = j1 - j0;
  Scalar* v = V ? V + j0 : zero_state;  // the carried state is updated in place
  if (!V) std::fill(v, v + n, Scalar(0));
  const Scalar* b = with_bias ? BT + j0 : nullptr;
  for (Index t = 0; t < T; ++t) {
    Scalar* a = A + t * nB + j0;
    if (readout && t >= t_lo && t <= t_hi)
      forward_step<Scalar, mode, true, with_bias>(a, b, v, R + j0, n, decay, threshold, penalty, kappa);
    else
      forward_step<Scalar, mode, false, with_bias>(a, b, v, nullptr, n, decay, threshold, penalty, kappa);
  }
}

/// One backward step over n elements (see backward_scan).
template <class Scalar, Reset mode, bool has_go, bool from_readout>
inline void backward_step(Scalar* __restrict d, const Scalar* __restrict go, Scalar* __restrict du_next,
                          Scalar* __restrict du_sum, const Scalar* __restrict gv, Index n, Scalar decay,
                          Scalar kappa) {
  for (Index j = 0; j < n; ++j) {
    Scalar dv = du_next[j] * decay;
    if constexpr (from_readout) dv += gv[j];
    const Scalar g = static_cast<Scalar>(d[j] > Scalar(0));  // g_t = [u_t > θ] = [o_t > 0]
    Scalar du;
    if constexpr (mode == Reset::scale)
      du = dv - (kappa * dv) * g;
    else
      du = dv - dv * g;
    if constexpr (has_go) du += go[j] * g;
    d[j] = du;
    du_next[j] = du;
    du_sum[j] += du;
  }
}

/// Backward scan (MODEL.md "Gradients"), t = T-1 down to 0, over the element range [j0, j1).
/// D holds the outputs o_t on entry (their sign is the fire gate) and the gradient with
/// respect to u_t (= a_t) on exit. GO, when has_go, holds the gradient with respect to o_t
/// (same layout). DN, when given, holds du_T on entry and du_0 on exit (so that a long run
/// can be scanned in pieces, last piece first); otherwise du_T = 0. gv is the gradient with
/// respect to v_t for t in [t_lo, t_hi] (the readout's, already scaled). SU, when given, gets
/// the sum over the steps of du_t added (the bias gradient before its sum over samples).
template <class Scalar, Reset mode, bool has_go, bool has_gv>
void backward_scan(Scalar* D, const Scalar* GO, Index T, Index nB, Index j0, Index j1, Scalar decay,
                   Scalar kappa, Scalar* DN, const Scalar* gv, Index t_lo, Index t_hi, Scalar* SU) {
  alignas(64) Scalar zero_state[scan_chunk];
  alignas(64) Scalar no_sum[scan_chunk];
  const Index n = j1 - j0;
  Scalar* du_next = DN ? DN + j0 : zero_state;  // carried and summed in place
  if (!DN) std::fill(du_next, du_next + n, Scalar(0));
  Scalar* du_sum = SU ? SU + j0 : no_sum;
  if (!SU) std::fill(du_sum, du_sum + n, Scalar(0));
  for (Index t = T - 1; t >= 0; --t) {
    Scalar* d = D + t * nB + j0;
    const Scalar* go = has_go ? GO + t * nB + j0 : nullptr;
    if (has_gv && t >= t_lo && t <= t_hi)
      backward_step<Scalar, mode, has_go, true>(d, go, du_next, du_sum, gv + j0, n, decay, kappa);
    else
      backward_step<Scalar, mode, has_go, false>(d, go, du_next, du_sum, gv, n, decay, kappa);
  }
}

}  // namespace detail

/// A fully connected layer of leaky spiking neurons with trainable weights W (outputs x inputs)
/// and bias b, and the gradients of the last backward pass.
template <FloatingScalar Scalar = float>
class SpikingLayer {
 public:
  SpikingLayer() = default;
  SpikingLayer(Index inputs, Index outputs, NeuronOptions neuron = {})
      : weights_(Matrix<Scalar>::Zero(outputs, inputs)),
        bias_(Vector<Scalar>::Zero(outputs)),
        weight_grad_(Matrix<Scalar>::Zero(outputs, inputs)),
        bias_grad_(Vector<Scalar>::Zero(outputs)),
        neuron_(neuron) {
    if (inputs <= 0 || outputs <= 0)
      detail::raise<ValueError>("SpikingLayer: inputs and outputs must be >= 1, found ", inputs,
                                " and ", outputs);
    neuron_.validate("SpikingLayer");
    reset_neuron_values();
  }

  Index inputs() const { return weights_.cols(); }
  Index outputs() const { return weights_.rows(); }

  const Matrix<Scalar>& weights() const { return weights_; }
  const Vector<Scalar>& bias() const { return bias_; }
  const Matrix<Scalar>& weight_gradient() const { return weight_grad_; }
  const Vector<Scalar>& bias_gradient() const { return bias_grad_; }
  const NeuronOptions& neuron() const { return neuron_; }

  /// Replaces W; the shape must stay outputs x inputs and the values must be finite.
  template <class Derived>
  void set_weights(const Eigen::MatrixBase<Derived>& w) {
    if (w.rows() != outputs() || w.cols() != inputs())
      detail::raise<ShapeError>("SpikingLayer::set_weights: expected ", outputs(), "x", inputs(),
                                ", found ", w.rows(), "x", w.cols());
    if (!w.allFinite()) detail::raise<ValueError>("SpikingLayer::set_weights: non-finite value");
    weights_ = w.template cast<Scalar>();
  }
  template <class Derived>
  void set_bias(const Eigen::MatrixBase<Derived>& b) {
    if (b.size() != outputs())
      detail::raise<ShapeError>("SpikingLayer::set_bias: expected ", outputs(), " values, found ",
                                b.size());
    if (!b.allFinite()) detail::raise<ValueError>("SpikingLayer::set_bias: non-finite value");
    bias_ = b.template cast<Scalar>().reshaped();
  }
  /// Replaces the neuron settings; a LIF layer's per-neuron β, α and θ restart from them.
  void set_neuron(const NeuronOptions& n) {
    n.validate("SpikingLayer::set_neuron");
    neuron_ = n;
    reset_neuron_values();
  }

  // --- LIF family: per-neuron constants (MODEL.md "The LIF family") -------------------
  // Each neuron of a leaky or synaptic layer has its own β, α and θ, which start from the
  // layer's NeuronOptions and are trained where its learn_* flags say (empty for a graded
  // layer, whose constants are the layer's NeuronOptions). β and α are clamped to [0, 1] where
  // used, so a trained value outside it acts as the bound (and its gradient there is zero).
  const Vector<Scalar>& beta() const { return beta_; }
  const Vector<Scalar>& alpha() const { return alpha_; }
  const Vector<Scalar>& thresholds() const { return theta_; }
  const Vector<Scalar>& beta_gradient() const { return beta_grad_; }
  const Vector<Scalar>& alpha_gradient() const { return alpha_grad_; }
  const Vector<Scalar>& threshold_gradient() const { return theta_grad_; }
  template <class Derived>
  void set_beta(const Eigen::MatrixBase<Derived>& v) { set_values(beta_, v, "set_beta"); }
  template <class Derived>
  void set_alpha(const Eigen::MatrixBase<Derived>& v) { set_values(alpha_, v, "set_alpha"); }
  template <class Derived>
  void set_thresholds(const Eigen::MatrixBase<Derived>& v) { set_values(theta_, v, "set_thresholds"); }
  Vector<Scalar>& mutable_beta() { return beta_; }
  Vector<Scalar>& mutable_alpha() { return alpha_; }
  Vector<Scalar>& mutable_thresholds() { return theta_; }

  /// PyTorch's nn.Linear with Xavier-uniform weights (as pynmsnn): W ~ U(-a, a),
  /// a = sqrt(6 / (in + out)); b ~ U(-1/sqrt(in), 1/sqrt(in)).
  void initialize(CounterRng& rng) {
    const double a = std::sqrt(6.0 / double(inputs() + outputs()));
    for (Index j = 0; j < weights_.cols(); ++j)
      for (Index i = 0; i < weights_.rows(); ++i) weights_(i, j) = Scalar(rng.uniform(-a, a));
    const double bound = 1.0 / std::sqrt(double(inputs()));
    for (Index i = 0; i < bias_.size(); ++i) bias_(i) = Scalar(rng.uniform(-bound, bound));
  }

  // --- engine interface (time-batched layout, see the file comment) ---------------------

  /// In place: a_t -> o_t for all steps of an (outputs x T*B) block; optionally adds v_t to
  /// the readout R (outputs x B) for t in [t_lo, t_hi]. V (outputs x B), when given, carries
  /// the state v from the step before the block in and out of it. A holds the currents with
  /// their bias, or, when a bias tile BT (outputs x B, the bias in every column) is given,
  /// without it: the scan adds it (so that the products need not start from a bias fill).
  void scan_forward(Scalar* A, Index T, Index B, Scalar* R = nullptr, Index t_lo = 0, Index t_hi = -1,
                    Scalar* V = nullptr, const Scalar* BT = nullptr) const {
    const Index nB = outputs() * B;
    const Scalar decay = Scalar(neuron_.decay), theta = Scalar(neuron_.threshold),
                 rho = Scalar(neuron_.penalty);
    const Index chunks = (nB + detail::scan_chunk - 1) / detail::scan_chunk;
    detail::parallel_for(chunks, nB * T > 65536, [&](Index c) {
      const Index j0 = c * detail::scan_chunk, j1 = std::min(nB, j0 + detail::scan_chunk);
      dispatch2(R != nullptr, BT != nullptr, [&]<bool readout, bool with_bias>() {
        if (neuron_.reset == Reset::scale)
          detail::forward_scan<Scalar, Reset::scale, readout, with_bias>(A, BT, T, nB, j0, j1, decay, theta, rho, V,
                                                                         R, t_lo, t_hi);
        else
          detail::forward_scan<Scalar, Reset::subtract, readout, with_bias>(A, BT, T, nB, j0, j1, decay, theta, rho,
                                                                            V, R, t_lo, t_hi);
      });
    });
  }

  /// In place: D (outputs x T*B) from the outputs o_t to dL/du_t. GO (same layout), when
  /// given, is dL/do_t; gv (outputs x B), when given, is dL/dv_t for t in [t_lo, t_hi].
  /// DN (outputs x B), when given, carries du from the step after the block in and out of it.
  /// SU (outputs x B), when given, gets sum_t du_t added (summed over its columns, the bias
  /// gradient), so that the gradient needs no further pass over the block.
  void scan_backward(Scalar* D, const Scalar* GO, Index T, Index B, Scalar* DN = nullptr,
                     const Scalar* gv = nullptr, Index t_lo = 0, Index t_hi = -1, Scalar* SU = nullptr) const {
    const Index nB = outputs() * B;
    const Scalar decay = Scalar(neuron_.decay);
    const Scalar kappa = Scalar(neuron_.penalty) / Scalar(neuron_.threshold);
    const Index chunks = (nB + detail::scan_chunk - 1) / detail::scan_chunk;
    detail::parallel_for(chunks, nB * T > 65536, [&](Index c) {
      const Index j0 = c * detail::scan_chunk, j1 = std::min(nB, j0 + detail::scan_chunk);
      dispatch2(GO != nullptr, gv != nullptr, [&]<bool go, bool has_gv>() {
        if (neuron_.reset == Reset::scale)
          detail::backward_scan<Scalar, Reset::scale, go, has_gv>(D, GO, T, nB, j0, j1, decay, kappa, DN, gv, t_lo, t_hi, SU);
        else
          detail::backward_scan<Scalar, Reset::subtract, go, has_gv>(D, GO, T, nB, j0, j1, decay, kappa, DN, gv, t_lo, t_hi, SU);
      });
    });
  }

  /// The LIF layer's constants for a chunk: β and α clamped to [0, 1], θ as is.
  struct LifValues {
    Vector<Scalar> beta, alpha;
  };
  LifValues clamped_decays() const {
    return {beta_.cwiseMax(Scalar(0)).cwiseMin(Scalar(1)), alpha_.cwiseMax(Scalar(0)).cwiseMin(Scalar(1))};
  }

  /// LIF forward over one chunk (see neuron::ForwardChunk): A holds W s_t without the bias on
  /// entry, the outputs (spikes; an li layer's membranes) on exit; M (and J, when given) get the
  /// states of every step. With arg, R keeps the largest output of steps r_lo .. r_hi (a max
  /// readout) and arg its step (t0 + the chunk's step).
  void lif_scan_forward(Scalar* A, Scalar* M, Scalar* J, Index steps, Index B, Scalar* m_state, Scalar* j_state,
                        Scalar* R = nullptr, Index r_lo = 0, Index r_hi = -1, Index* arg = nullptr,
                        Index t0 = 0) const {
    const auto k = clamped_decays();
    const neuron::ForwardChunk<Scalar> c{.n = outputs(), .B = B, .steps = steps, .beta = k.beta.data(),
                                         .alpha = k.alpha.data(), .theta = theta_.data(),
                                         .slope = Scalar(neuron_.surrogate_slope()), .bias = bias_.data(), .A = A, .M = M,
                                         .J = J, .m_state = m_state, .j_state = j_state, .R = R, .r_lo = r_lo,
                                         .r_hi = r_hi, .arg = arg, .t0 = t0};
    neuron::dispatch(neuron_.model, neuron_.reset, neuron_.surrogate,
                     [&]<NeuronModel N, Reset Rs, Surrogate>() { neuron::forward_chunk<N, Rs>(c); });
  }

  /// LIF backward over one chunk (see neuron::BackwardChunk; its n, B, steps, constants and
  /// the learn-α choice are filled in here).
  void lif_scan_backward(neuron::BackwardChunk<Scalar> c, Index steps, Index B) const {
    const auto k = clamped_decays();
    c.n = outputs(), c.B = B, c.steps = steps;
    c.beta = k.beta.data(), c.alpha = k.alpha.data(), c.theta = theta_.data();
    c.slope = Scalar(neuron_.surrogate_slope());
    const bool learn_alpha = neuron_.learn_alpha && c.J != nullptr;
    neuron::dispatch(neuron_.model, neuron_.reset, neuron_.surrogate, [&]<NeuronModel N, Reset Rs, Surrogate Sg>() {
      if (learn_alpha) neuron::backward_chunk<N, Rs, Sg, true>(c);
      else neuron::backward_chunk<N, Rs, Sg, false>(c);
    });
  }

  /// The gradients of β and α from their sums over steps: zero where the value is clamped
  /// (outside [0, 1]), as the clamp's derivative.
  void set_decay_gradients(const Vector<Scalar>& beta_sum, const Vector<Scalar>& alpha_sum,
                           const Vector<Scalar>& theta_sum) {
    auto inside = [](const Vector<Scalar>& v) {
      return (v.array() >= Scalar(0) && v.array() <= Scalar(1)).template cast<Scalar>().matrix();
    };
    beta_grad_ = beta_sum.cwiseProduct(inside(beta_));
    alpha_grad_ = alpha_.size() && alpha_sum.size() ? Vector<Scalar>(alpha_sum.cwiseProduct(inside(alpha_)))
                                                    : Vector<Scalar>::Zero(alpha_.size());
    theta_grad_ = theta_sum;
  }

  // Mutable access for optimisers and the engine.
  Matrix<Scalar>& mutable_weights() { return weights_; }
  Vector<Scalar>& mutable_bias() { return bias_; }
  Matrix<Scalar>& mutable_weight_gradient() { return weight_grad_; }
  Vector<Scalar>& mutable_bias_gradient() { return bias_grad_; }

 private:
  // Calls f.operator()<x, y>() with two run-time flags as template arguments.
  template <class F>
  static void dispatch2(bool x, bool y, F&& f) {
    if (x && y) f.template operator()<true, true>();
    else if (x) f.template operator()<true, false>();
    else if (y) f.template operator()<false, true>();
    else f.template operator()<false, false>();
  }

  void reset_neuron_values() {
    const Index n = outputs();
    const bool lif = neuron_.lif_family();
    beta_ = lif ? Vector<Scalar>::Constant(n, Scalar(neuron_.decay)) : Vector<Scalar>();
    alpha_ = neuron_.model == NeuronModel::synaptic ? Vector<Scalar>::Constant(n, Scalar(neuron_.alpha)) : Vector<Scalar>();
    theta_ = lif ? Vector<Scalar>::Constant(n, Scalar(neuron_.threshold)) : Vector<Scalar>();
    beta_grad_ = Vector<Scalar>::Zero(beta_.size());
    alpha_grad_ = Vector<Scalar>::Zero(alpha_.size());
    theta_grad_ = Vector<Scalar>::Zero(theta_.size());
  }
  template <class Derived>
  void set_values(Vector<Scalar>& dst, const Eigen::MatrixBase<Derived>& v, const char* what) {
    if (!neuron_.lif_family() || dst.size() == 0)
      detail::raise<ValueError>("SpikingLayer::", what, ": the layer's ", to_string(neuron_.model),
                                " neurons have no such per-neuron value");
    if (v.size() != outputs())
      detail::raise<ShapeError>("SpikingLayer::", what, ": expected ", outputs(), " values, found ", v.size());
    if (!v.allFinite()) detail::raise<ValueError>("SpikingLayer::", what, ": non-finite value");
    dst = v.template cast<Scalar>().reshaped();
  }

  Matrix<Scalar> weights_;
  Vector<Scalar> bias_;
  Matrix<Scalar> weight_grad_;
  Vector<Scalar> bias_grad_;
  NeuronOptions neuron_;
  Vector<Scalar> beta_, alpha_, theta_;
  Vector<Scalar> beta_grad_, alpha_grad_, theta_grad_;
};

}  // namespace nmsnn
