// nmsnn/neurons/lif.hpp — the LIF family (MODEL.md "The LIF family"): binary-spike Leaky and
// Synaptic (current-based) neurons with resets subtract / zero / none, and their surrogate
// gradients, as snnTorch 0.9 defines them (reset_delay=True); and the non-spiking leaky
// integrator (li), whose membrane is its output.
//
// A neuron's step is written once, as functions of one element over any arithmetic type (a
// scalar here; a vector lane or a CUDA thread's value for the backends that call it), with the
// reset and fire gates as 0/1 factors rather than branches, so the loops that call it
// vectorise. The scans below run it over a chunk of steps in the engine's time-batched layout
// (neurons x T*B, column t*B + b), carrying the state from one chunk to the next.
//
// What backward keeps: the membrane M_t of every step (the surrogate's argument M_t - θ, the
// reset r_{t+1} = H(M_t - θ) and, for a learnable β, the product's other factor), and the
// synaptic current J_t only where α is learnt. The spikes S_t are the next layer's input.
#pragma once

#include <cmath>
#include <numbers>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/neurons/neuron_options.hpp"

namespace nmsnn {

namespace neuron {

/// σ'(x), x = M - θ, of the surrogate S with parameter k.
template <Surrogate S, class T>
NMSNN_HOST_DEVICE inline T surrogate_derivative(T x, T k) {
  if constexpr (S == Surrogate::atan) {
    const T z = T(std::numbers::pi / 2) * k * x;
    return (k / T(2)) / (T(1) + z * z);
  } else if constexpr (S == Surrogate::fast_sigmoid) {
    const T d = k * (x < T(0) ? -x : x) + T(1);
    return T(1) / (d * d);
  } else if constexpr (S == Surrogate::sigmoid) {
    // k σ(kx)(1 - σ(kx)), with the exponential of a non-positive argument only (the literal
    // k e^{-kx} / (1 + e^{-kx})^2 overflows to NaN for kx < -709 in double precision).
    const T kx = k * x;
    const T e = std::exp(kx < T(0) ? kx : -kx);
    const T d = T(1) + e;
    return k * e / (d * d);
  } else {
    (void)x, (void)k;
    return T(1);
  }
}

/// The constants of one neuron: decays already clamped to [0, 1].
template <class T>
struct LifConstants {
  T beta, alpha, theta, slope;
};

/// One forward step of one neuron (MODEL.md "Step equations"): from the previous membrane m
/// (and synaptic current j) and this step's input current i, the new m (and j); returns the
/// spike S_t = H(M_t - θ) as 0 or 1. The arithmetic is in snnTorch's order.
template <NeuronModel N, Reset R, class T>
NMSNN_HOST_DEVICE inline T forward_step(T i, T& m, T& j, const LifConstants<T>& c) {
  if constexpr (N == NeuronModel::li) {  // the leaky integrator: its membrane is its output
    (void)j;
    m = c.beta * m + i;
    return m;
  }
  const T r = static_cast<T>(m - c.theta > T(0));  // r_t = H(M_{t-1} - θ), from the previous step
  if constexpr (N == NeuronModel::leaky) {
    (void)j;
    if constexpr (R == Reset::subtract) m = (c.beta * m + i) - r * c.theta;
    else if constexpr (R == Reset::zero) m = c.beta * ((T(1) - r) * m) + i;
    else m = c.beta * m + i;
  } else {
    j = c.alpha * j + i;
    const T u = c.beta * m + j;
    if constexpr (R == Reset::subtract) m = u - r * c.theta;
    else if constexpr (R == Reset::zero) m = u - u * r;
    else m = u;
  }
  return static_cast<T>(m - c.theta > T(0));
}

/// The gradients that flow back through one neuron from step t+1 to step t.
template <class T>
struct LifAdjoint {
  T dm = 0;  ///< dL/dM_{t+1} (total), on entry; dL/dM_t on exit
  T dj = 0;  ///< dL/dJ_{t+1} (synaptic), on entry; dL/dJ_t on exit
};

/// Sums over steps of the parameter gradients of one neuron (before the clamp's mask).
template <class T>
struct LifSums {
  T beta = 0, alpha = 0, theta = 0;
};

/// One backward step of one neuron at step t. m is M_t, m_prev M_{t-1} (0 at t = 0), j_prev
/// J_{t-1} (used only when learning α). gs, gm and gj are the loss's gradients with respect to
/// S_t, M_t and J_t from outside the neuron (the layer above, a readout). Returns dL/dI_t.
template <NeuronModel N, Reset R, Surrogate S, bool learn_alpha, class T>
NMSNN_HOST_DEVICE inline T backward_step(T m, T m_prev, T j_prev, T gs, T gm, T gj, LifAdjoint<T>& a, LifSums<T>& sums,
                                         const LifConstants<T>& c) {
  if constexpr (N == NeuronModel::li) {  // output = M_t: gs is a gradient of M_t too
    (void)j_prev, (void)gj;
    const T dm = (gm + gs) + c.beta * a.dm;
    sums.beta += dm * m_prev;
    a.dm = dm;
    return dm;
  }
  const T x = m - c.theta;
  const T sg = surrogate_derivative<S>(x, c.slope);
  const T r_next = static_cast<T>(x > T(0));                  // r_{t+1}, made by M_t
  const T r_now = static_cast<T>(m_prev - c.theta > T(0));     // r_t, made by M_{t-1}
  const T keep_next = R == Reset::zero ? T(1) - r_next : T(1);  // ∂M_{t+1}/∂(β M_t) factor
  const T keep_now = R == Reset::zero ? T(1) - r_now : T(1);
  const T gss = gs * sg;
  const T dm = (gm + gss) + c.beta * keep_next * a.dm;
  sums.theta -= gss;
  if constexpr (R == Reset::subtract) sums.theta -= r_now * dm;
  sums.beta += dm * keep_now * m_prev;
  a.dm = dm;
  if constexpr (N == NeuronModel::leaky) {
    (void)j_prev, (void)gj;
    return dm;
  } else {
    const T dj = (gj + dm * keep_now) + c.alpha * a.dj;
    if constexpr (learn_alpha) sums.alpha += dj * j_prev;
    else (void)j_prev;
    a.dj = dj;
    return dj;
  }
}

/// Calls f.template operator()<N, R, S>() with the layer's run-time choices as types (once per
/// scan, the cost of a switch).
template <class F>
void dispatch(NeuronModel n, Reset r, Surrogate s, F&& f) {
  auto by_surrogate = [&]<NeuronModel N, Reset R>() {
    switch (s) {
      case Surrogate::atan: f.template operator()<N, R, Surrogate::atan>(); return;
      case Surrogate::fast_sigmoid: f.template operator()<N, R, Surrogate::fast_sigmoid>(); return;
      case Surrogate::sigmoid: f.template operator()<N, R, Surrogate::sigmoid>(); return;
      case Surrogate::straight_through: f.template operator()<N, R, Surrogate::straight_through>(); return;
    }
  };
  auto by_reset = [&]<NeuronModel N>() {
    switch (r) {
      case Reset::subtract: by_surrogate.template operator()<N, Reset::subtract>(); return;
      case Reset::zero: by_surrogate.template operator()<N, Reset::zero>(); return;
      case Reset::none: by_surrogate.template operator()<N, Reset::none>(); return;
      default: NMSNN_ASSERT(false && "the LIF family resets by subtract, zero or none");
    }
  };
  if (n == NeuronModel::li) f.template operator()<NeuronModel::li, Reset::none, Surrogate::straight_through>();
  else if (n == NeuronModel::leaky) by_reset.template operator()<NeuronModel::leaky>();
  else by_reset.template operator()<NeuronModel::synaptic>();
}


/// One forward chunk of a LIF layer, in the engine's layout (element i + b*n of step t at
/// (t*B + b)*n + i). Named fields, since most are pointers of one type.
template <class Scalar>
struct ForwardChunk {
  Index n = 0, B = 0, steps = 0;  ///< neurons, samples, steps of the chunk
  const Scalar* beta = nullptr;   ///< per neuron, clamped to [0, 1]
  const Scalar* alpha = nullptr;  ///< per neuron, clamped (Synaptic)
  const Scalar* theta = nullptr;  ///< per neuron
  Scalar slope = 0;
  const Scalar* bias = nullptr;   ///< per neuron, added to the currents
  Scalar* A = nullptr;            ///< in: W s_t (without the bias); out: the spikes S_t
  Scalar* M = nullptr;            ///< out: the membranes M_t
  Scalar* J = nullptr;            ///< out: the synaptic currents J_t (nullable: kept only to learn α)
  Scalar* m_state = nullptr;      ///< n x B: M before the chunk in, after it out
  Scalar* j_state = nullptr;      ///< n x B: J likewise (Synaptic)
  Scalar* R = nullptr;            ///< n x B readout: the outputs of chunk steps r_lo .. r_hi added (nullable)
  Index r_lo = 0, r_hi = -1;
  Index* arg = nullptr;           ///< n x B: when given, R keeps the largest output instead, arg its step
  Index t0 = 0;                   ///< the chunk's first step (for arg)
};

template <NeuronModel N, Reset Rs, class Scalar>
void forward_chunk(const ForwardChunk<Scalar>& c) {
  const Index n = c.n, B = c.B, nB = n * B;
  // The inner loop over neurons has no branch: a step outside the readout adds to a scratch
  // row, a current not kept is written to one.
  detail::parallel_for(B, nB * c.steps > 65536, [&](Index b) {
    std::vector<Scalar> scratch(std::size_t(3 * n), Scalar(0));  // (three distinct rows: no aliasing)
    Scalar* __restrict m = c.m_state + b * n;
    Scalar* __restrict j = N == NeuronModel::synaptic ? c.j_state + b * n : scratch.data();
    for (Index t = 0; t < c.steps; ++t) {
      const Index at = t * nB + b * n;
      Scalar* __restrict a = c.A + at;
      Scalar* __restrict mt = c.M + at;
      Scalar* __restrict jt = c.J ? c.J + at : scratch.data() + n;
      const bool in_readout = c.R && t >= c.r_lo && t <= c.r_hi;
      Scalar* __restrict r = in_readout ? c.R + b * n : scratch.data() + 2 * n;
      if (in_readout && c.arg) {  // a max readout: the largest output and its step
        Index* __restrict arg = c.arg + b * n;
        for (Index i = 0; i < n; ++i) {
          const LifConstants<Scalar> k{c.beta[i], N == NeuronModel::synaptic ? c.alpha[i] : Scalar(0), c.theta[i], c.slope};
          const Scalar out = forward_step<N, Rs>(a[i] + c.bias[i], m[i], j[i], k);
          mt[i] = m[i], jt[i] = j[i], a[i] = out;
          if (out > r[i]) r[i] = out, arg[i] = c.t0 + t;  // (strictly: the first of equal maxima)
        }
        continue;
      }
      for (Index i = 0; i < n; ++i) {
        const LifConstants<Scalar> k{c.beta[i], N == NeuronModel::synaptic ? c.alpha[i] : Scalar(0), c.theta[i], c.slope};
        const Scalar out = forward_step<N, Rs>(a[i] + c.bias[i], m[i], j[i], k);
        mt[i] = m[i], jt[i] = j[i], a[i] = out;
        r[i] += out;
      }
    }
  });
}

/// One backward chunk of a LIF layer (steps last to first), same layout as ForwardChunk.
template <class Scalar>
struct BackwardChunk {
  Index n = 0, B = 0, steps = 0;
  const Scalar* beta = nullptr;
  const Scalar* alpha = nullptr;
  const Scalar* theta = nullptr;
  Scalar slope = 0;
  Scalar* D = nullptr;               ///< out: dL/dI_t (overwrites the spikes)
  const Scalar* M = nullptr;         ///< the chunk's membranes
  const Scalar* M_before = nullptr;  ///< n x B: M of the step before the chunk (null: zero)
  const Scalar* J = nullptr;         ///< the chunk's synaptic currents (learning α)
  const Scalar* J_before = nullptr;  ///< n x B: J of the step before the chunk (null: zero)
  const Scalar* GS = nullptr;        ///< dL/dS_t from the layer above (nullable)
  const Scalar* GM = nullptr;        ///< dL/dM_t from outside the neuron (nullable)
  const Scalar* GJ = nullptr;        ///< dL/dJ_t from outside the neuron (nullable; Synaptic)
  const Scalar* gv = nullptr;        ///< n x B: dL/d(output) from the readout for chunk steps g_lo .. g_hi
  Index g_lo = 0, g_hi = -1;
  const Index* arg = nullptr;        ///< n x B: when given, gv reaches only step arg (a max readout's)
  Index t0 = 0;                      ///< the chunk's first step (for arg)
  Scalar* dm = nullptr;              ///< n x B: dL/dM from the chunk after in, of this chunk's first step out
  Scalar* dj = nullptr;              ///< n x B: dL/dJ likewise (Synaptic)
  Scalar* bias_sum = nullptr;        ///< n x B: sum of dL/dI_t added
  Scalar* beta_sum = nullptr;        ///< n x B: the β gradient's sum added (before the clamp's mask)
  Scalar* alpha_sum = nullptr;       ///< n x B (learning α)
  Scalar* theta_sum = nullptr;       ///< n x B
};

template <NeuronModel N, Reset Rs, Surrogate Sg, bool learn_alpha, class Scalar>
void backward_chunk(const BackwardChunk<Scalar>& c) {
  const Index n = c.n, B = c.B, nB = n * B;
  // Absent inputs read a row of zeros, absent sums go to a scratch row: no branch inside the
  // loop over neurons but the max readout's step test.
  detail::parallel_for(B, nB * c.steps > 65536, [&](Index b) {
    std::vector<Scalar> zero(std::size_t(n), Scalar(0)), scratch(std::size_t(2 * n), Scalar(0));
    const Index col = b * n;
    Scalar* __restrict dm = c.dm + col;
    Scalar* __restrict dj = N == NeuronModel::synaptic ? c.dj + col : scratch.data();
    Scalar* __restrict bias = c.bias_sum + col;
    Scalar* __restrict beta = c.beta_sum + col;
    Scalar* __restrict theta = c.theta_sum + col;
    Scalar* __restrict alpha = learn_alpha ? c.alpha_sum + col : scratch.data() + n;
    for (Index t = c.steps - 1; t >= 0; --t) {
      const Index at = t * nB + col;
      const Scalar* __restrict m = c.M + at;
      const Scalar* mp_ = t > 0 ? c.M + at - nB : (c.M_before ? c.M_before + col : zero.data());
      const Scalar* __restrict mp = mp_;
      const Scalar* jp_ = zero.data();
      if constexpr (learn_alpha) jp_ = t > 0 ? c.J + at - nB : (c.J_before ? c.J_before + col : zero.data());
      const Scalar* __restrict jp = jp_;
      const Scalar* __restrict gs = c.GS ? c.GS + at : zero.data();
      const Scalar* __restrict gm = c.GM ? c.GM + at : zero.data();
      const Scalar* __restrict gj = c.GJ ? c.GJ + at : zero.data();
      const bool in_readout = c.gv && t >= c.g_lo && t <= c.g_hi;
      const Scalar* __restrict gv = in_readout ? c.gv + col : zero.data();
      const Index* __restrict arg = in_readout && c.arg ? c.arg + col : nullptr;
      Scalar* __restrict d = c.D + at;
      auto row = [&]<bool max_readout>() {
        for (Index i = 0; i < n; ++i) {
          const LifConstants<Scalar> k{c.beta[i], N == NeuronModel::synaptic ? c.alpha[i] : Scalar(0), c.theta[i], c.slope};
          LifAdjoint<Scalar> adj{dm[i], dj[i]};
          LifSums<Scalar> sums;
          Scalar g = gs[i];
          if constexpr (max_readout) g += arg[i] == c.t0 + t ? gv[i] : Scalar(0);
          else g += gv[i];
          const Scalar di = backward_step<N, Rs, Sg, learn_alpha>(m[i], mp[i], jp[i], g, gm[i], gj[i], adj, sums, k);
          d[i] = di;
          dm[i] = adj.dm, dj[i] = adj.dj;
          bias[i] += di, beta[i] += sums.beta, theta[i] += sums.theta, alpha[i] += sums.alpha;
        }
      };
      if (arg) row.template operator()<true>();
      else row.template operator()<false>();
    }
  });
}

}  // namespace neuron
}  // namespace nmsnn
