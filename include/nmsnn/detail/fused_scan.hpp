// nmsnn/detail/fused_scan.hpp — fused kernels for a layer 1 with few inputs (binary's 20
// features, iris's 4) and below a thin layer 2 (at most 4 neurons: binary's 1 output, iris's
// 3 classes).
//
// The general engine writes the currents a_t = W s_t of a chunk of steps with one product and
// then scans them (spiking_layer.hpp); backward, the scan and each product are passes of their
// own. With few inputs or outputs the products are cheap next to the traffic around them: the
// zero fill and packing of Eigen's product, the write of the currents and the scan's read of
// them back.
// - forward_product_scan: each tile of currents (a vector of neurons by 8 samples of one step:
//   one load of weights per 8 multiply-adds, where 2 vectors by 4 samples took two) is summed
//   in vector registers and scanned at once, so that only the outputs o_t are written
//   (binary's 64 x 1024 chunk: 53 against 109 us for product plus scan), and a thin layer 2's
//   currents are made from each column of outputs while it is in L1.
// - backward_fused: the scan of layer 1, the gradient it receives from a thin layer 2, the
//   bias gradient, layer 2's weight gradient and, with at most 4 inputs, layer 1's, in one
//   pass with the sums in registers.
//
// The forward does the arithmetic of forward_step after a product: a = sum_f W(h, f) s_f
// summed in order f = 0, 1, ..., then (a + b) + λ v. Tasks are fixed by the shapes (disjoint
// neurons and samples forward, disjoint neurons backward), so results do not depend on the
// thread count.
#pragma once

#include <algorithm>
#include <type_traits>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "nmsnn/detail/parallel_gemm.hpp"
#include "nmsnn/layers/spiking_layer.hpp"

namespace nmsnn::detail {

/// Most inputs for which the engine uses forward_product_scan (W's rows of one tile then stay
/// in L1; beyond this Eigen's blocked product is the better kernel).
inline constexpr Index fused_max_inputs = 64;

#if defined(NMSNN_THIN_GRADIENT_KERNEL)
#define NMSNN_FUSED_SCAN 1

/// The scan constants of one layer.
template <class Scalar>
struct ScanConstants {
  Scalar decay, threshold, penalty, kappa;
  /// A layer's constants (kappa = penalty / threshold, the scale reset's factor).
  static ScanConstants of(const NeuronOptions& o) {
    return {Scalar(o.decay), Scalar(o.threshold), Scalar(o.penalty), Scalar(o.penalty) / Scalar(o.threshold)};
  }
};

/// One tile: MR vectors of neurons (rows h .. h + MR * lanes) by NB samples of one step.
/// W, bias, v, a and r point at row h; e at the step's first sample of the tile (F values per
/// sample); v, a, r have column stride n, e has F.
template <class Scalar, int bytes, int MR, int NB, Reset mode, bool readout>
[[gnu::always_inline]] inline void product_scan_tile(const Scalar* __restrict W, Index n, Index F, const Scalar* __restrict e,
                              const Scalar* __restrict bias, Scalar* __restrict v, Scalar* __restrict a,
                              Scalar* __restrict r, const ScanConstants<Scalar>& k) {
  typedef Scalar vec __attribute__((vector_size(bytes)));
  constexpr int L = bytes / int(sizeof(Scalar));
  vec acc[NB][MR] = {};
  for (Index f = 0; f < F; ++f) {
    vec w[MR];
    for (int m = 0; m < MR; ++m) __builtin_memcpy(&w[m], W + f * n + m * L, sizeof(vec));
    for (int c = 0; c < NB; ++c) {
      const Scalar x = e[c * F + f];
      for (int m = 0; m < MR; ++m) acc[c][m] += w[m] * x;
    }
  }
  for (int m = 0; m < MR; ++m) {
    vec b;
    __builtin_memcpy(&b, bias + m * L, sizeof(vec));
    for (int c = 0; c < NB; ++c) {
      Scalar* vp = v + c * n + m * L;
      vec vo;
      __builtin_memcpy(&vo, vp, sizeof(vec));
      const vec u = (acc[c][m] + b) + vo * k.decay;
      // The gate as a mask: x & fired is x g for g in {0, 1} (up to the sign of zero), one
      // instruction where x * g took a conversion of the comparison and a product.
      const auto fired = u > k.threshold;
      using mask = decltype(fired);
      const vec o = (vec)((mask)(u - k.threshold) & fired);
      vec vn;
      if constexpr (mode == Reset::scale)
        vn = u - (vec)((mask)(k.kappa * u) & fired);
      else
        vn = u - (vec)((mask)(k.penalty + o) & fired);
      __builtin_memcpy(a + c * n + m * L, &o, sizeof(vec));
      __builtin_memcpy(vp, &vn, sizeof(vec));
      if constexpr (readout) {
        vec rr;
        __builtin_memcpy(&rr, r + c * n + m * L, sizeof(vec));
        rr += vn;
        __builtin_memcpy(r + c * n + m * L, &rr, sizeof(vec));
      }
    }
  }
}

/// All n neurons of NB samples of one step: tiles of two target-width vectors (for NB < 8),
/// then one, then narrower vectors (32, 16 bytes), then single neurons.
template <class Scalar, int NB, Reset mode, bool readout>
inline void product_scan_columns(const Scalar* W, Index n, Index F, const Scalar* e, const Scalar* bias, Scalar* v,
                                 Scalar* a, Scalar* r, const ScanConstants<Scalar>& k) {
  constexpr int bytes = thin_vector_bytes, L = bytes / int(sizeof(Scalar));
  Index h = 0;
  if constexpr (NB < 8)
    for (; h + 2 * L <= n; h += 2 * L)
      product_scan_tile<Scalar, bytes, 2, NB, mode, readout>(W + h, n, F, e, bias + h, v + h, a + h, readout ? r + h : r, k);
  for (; h + L <= n; h += L)
    product_scan_tile<Scalar, bytes, 1, NB, mode, readout>(W + h, n, F, e, bias + h, v + h, a + h, readout ? r + h : r, k);
  if constexpr (bytes > 32) {
    constexpr int L2 = 32 / int(sizeof(Scalar));
    for (; h + L2 <= n; h += L2)
      product_scan_tile<Scalar, 32, 1, NB, mode, readout>(W + h, n, F, e, bias + h, v + h, a + h, readout ? r + h : r, k);
  }
  if constexpr (bytes > 16) {
    constexpr int L2 = 16 / int(sizeof(Scalar));
    for (; h + L2 <= n; h += L2)
      product_scan_tile<Scalar, 16, 1, NB, mode, readout>(W + h, n, F, e, bias + h, v + h, a + h, readout ? r + h : r, k);
  }
  for (; h < n; ++h)  // single neurons: the sum, then the scan's own step
    for (int c = 0; c < NB; ++c) {
      Scalar s = 0;
      for (Index f = 0; f < F; ++f) s += W[f * n + h] * e[c * F + f];
      a[c * n + h] = s;
      forward_step<Scalar, mode, readout, true>(a + c * n + h, bias + h, v + c * n + h, readout ? r + c * n + h : nullptr,
                                                1, k.decay, k.threshold, k.penalty, k.kappa);
    }
}

/// The vector sums of thin_currents for one column o: lanes q * L .. q * L + L - 1 of `sums`
/// (L lanes of `bytes`, not yet added) sum W2T(h, q) o[h] over the neurons of whole pairs of
/// vectors, in two interleaved sums, and (floats with AVX) of one half vector after them.
/// Returns the first neuron not covered. (The vector type stays inside: nvcc drops the vector
/// attribute from a template type argument.)
template <class Scalar, int bytes, int K>
[[gnu::always_inline]] inline Index thin_vector_sums(const Scalar* __restrict W2T, Index n, const Scalar* __restrict o,
                                                     Scalar* __restrict sums) {
  typedef Scalar vec __attribute__((vector_size(bytes)));
  constexpr Index L = Index(bytes / int(sizeof(Scalar)));
  vec acc[2][K];
  for (int q = 0; q < K; ++q) acc[0][q] = acc[1][q] = vec{};
  Index h = 0;
  for (; h + 2 * L <= n; h += 2 * L)
    for (int i = 0; i < 2; ++i) {
      vec x;
      __builtin_memcpy(&x, o + h + i * L, sizeof(vec));
      for (int q = 0; q < K; ++q) {
        vec w;
        __builtin_memcpy(&w, W2T + q * n + h + i * L, sizeof(vec));
        acc[i][q] += w * x;
      }
    }
#if defined(__AVX__)
  if constexpr (bytes == 32 && std::is_same_v<Scalar, float>)
    if (h + 4 <= n) {
      // Then one half vector (iris: neurons 96..99 of 100) in the low lanes, the upper ones
      // zero (a 16-byte load zero-extends), where the callers' scalar tails were slower.
      const vec x = (vec)_mm256_zextps128_ps256(_mm_loadu_ps(o + h));
      for (int q = 0; q < K; ++q) acc[0][q] += (vec)_mm256_zextps128_ps256(_mm_loadu_ps(W2T + q * n + h)) * x;
      h += 4;
    }
#endif
  for (int q = 0; q < K; ++q) {
    const vec a = acc[0][q] + acc[1][q];
    __builtin_memcpy(sums + q * L, &a, sizeof(vec));
  }
  return h;
}

/// The currents of a thin next layer (K <= 4 neurons) from one column o of this layer's
/// outputs: out[q] = sum_h W2T(h, q) o[h] (W2T: n x K, the next layer's weights transposed),
/// in two interleaved vector sums per q, then the lanes, then the neurons after the last
/// pair of vectors.
template <class Scalar, int K>
inline void thin_currents(const Scalar* __restrict W2T, Index n, const Scalar* __restrict o,
                          Scalar* __restrict out) {
  constexpr int bytes = thin_vector_bytes, L = bytes / int(sizeof(Scalar));
  Scalar sums[K * L];
  const Index h = thin_vector_sums<Scalar, bytes, K>(W2T, n, o, sums);
  for (int q = 0; q < K; ++q) {
    Scalar sum = 0;
    for (int l = 0; l < L; ++l) sum += sums[q * L + l];
    for (Index i = h; i < n; ++i) sum += W2T[q * n + i] * o[i];
    out[q] = sum;
  }
}

#if defined(__AVX512F__)
/// thin_currents for 8 adjacent columns o (stride n) into out (stride K), floats with
/// AVX-512: each column's sums over the neurons in 16-lane vectors (two interleaved per q,
/// the last vector's tail by a masked load, so no neuron is left to a scalar loop), then for
/// each q the lanes of all 8 columns at once by a tree of block shuffles and adds (23
/// instructions for 8 sums).
template <int K>
inline void thin_currents_8(const float* __restrict W2T, Index n, const float* __restrict o, float* __restrict out) {
  const Index full = n / 16 * 16;
  const __mmask16 tail = __mmask16((1u << unsigned(n - full)) - 1u);
  __m512 part[K][8];
  for (int c = 0; c < 8; ++c) {
    const float* x = o + c * n;
    __m512 a0[K], a1[K];
    for (int q = 0; q < K; ++q) a0[q] = a1[q] = _mm512_setzero_ps();
    Index h = 0;
    for (; h + 32 <= n; h += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + h), x1 = _mm512_loadu_ps(x + h + 16);
      for (int q = 0; q < K; ++q) {
        a0[q] = _mm512_fmadd_ps(_mm512_loadu_ps(W2T + q * n + h), x0, a0[q]);
        a1[q] = _mm512_fmadd_ps(_mm512_loadu_ps(W2T + q * n + h + 16), x1, a1[q]);
      }
    }
    if (h < full) {
      const __m512 x0 = _mm512_loadu_ps(x + h);
      for (int q = 0; q < K; ++q) a0[q] = _mm512_fmadd_ps(_mm512_loadu_ps(W2T + q * n + h), x0, a0[q]);
      h += 16;
    }
    if (tail) {
      const __m512 x1 = _mm512_maskz_loadu_ps(tail, x + h);
      for (int q = 0; q < K; ++q)
        a1[q] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, W2T + q * n + h), x1, a1[q]);
    }
    for (int q = 0; q < K; ++q) part[q][c] = _mm512_add_ps(a0[q], a1[q]);
  }
  for (int q = 0; q < K; ++q) {
    const __m512* v = part[q];
    // The shuffles as GCC's __builtin_shuffle (one vshuff32x4 or vshufps each): GCC 12's
    // _mm512_shuffle_f32x4 and friends warn of their own uninitialized __Y.
    typedef int idx __attribute__((vector_size(64)));
    constexpr idx lo_blocks = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    constexpr idx hi_blocks = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    constexpr idx even_blocks = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
    constexpr idx odd_blocks = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
    constexpr idx even_lanes = {0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30};
    constexpr idx odd_lanes = {1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31};
    constexpr idx swap_pairs = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
    // Columns in pairs: 128-bit blocks [c (blocks 0 + 2), c (1 + 3), c + 1 (0 + 2), c + 1 (1 + 3)].
    __m512 s[4];
    for (int i = 0; i < 4; ++i)
      s[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], lo_blocks) +
             __builtin_shuffle(v[2 * i], v[2 * i + 1], hi_blocks);
    // Four columns per vector, block j holding column j's four partial sums.
    const __m512 t0 = __builtin_shuffle(s[0], s[1], even_blocks) + __builtin_shuffle(s[0], s[1], odd_blocks);
    const __m512 t1 = __builtin_shuffle(s[2], s[3], even_blocks) + __builtin_shuffle(s[2], s[3], odd_blocks);
    // Within each block: lanes 0 + 1 and 2 + 3 of t0's and t1's, then the pairs: lane 0 of
    // block j is column j's sum, lane 2 column j + 4's.
    const __m512 u = __builtin_shuffle(t0, t1, even_lanes) + __builtin_shuffle(t0, t1, odd_lanes);
    const __m512 w = u + __builtin_shuffle(u, swap_pairs);
    float s16[16];
    _mm512_storeu_ps(s16, w);
    for (int c = 0; c < 8; ++c) out[c * K + q] = s16[c < 4 ? 4 * c : 4 * (c - 4) + 2];
  }
}
#elif defined(__AVX__)
/// thin_currents for 8 adjacent columns o (stride n) into out (stride K), floats with AVX:
/// each column's vector sums as in thin_currents, then for each q the lanes of all 8 columns
/// at once by a tree of horizontal adds (9 instructions for 8 sums), where thin_currents sums
/// one column's lanes by a chain of scalar adds (iris's thin currents took as long as its
/// product and scan together).
template <int K>
inline void thin_currents_8(const float* __restrict W2T, Index n, const float* __restrict o, float* __restrict out) {
  __m256 part[K][8];
  Index hv = 0;
  for (int c = 0; c < 8; ++c) {
    float sums[K * 8];
    hv = thin_vector_sums<float, 32, K>(W2T, n, o + c * n, sums);
    for (int q = 0; q < K; ++q) part[q][c] = _mm256_loadu_ps(sums + q * 8);
  }
  for (int q = 0; q < K; ++q) {
    const __m256* v = part[q];
    const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    // Lane c of h0123 (c < 4) holds the low half's sum of column c, lane c + 4 its high half's.
    const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                                      _mm256_permute2f128_ps(h0123, h4567, 0x31));
    float s[8];
    _mm256_storeu_ps(s, sums);
    for (int c = 0; c < 8; ++c) {
      float sum = s[c];
      for (Index i = hv; i < n; ++i) sum += W2T[q * n + i] * o[c * n + i];
      out[c * K + q] = sum;
    }
  }
}
#endif

/// Forward of a layer with F inputs over `steps` steps of B samples: A (n x steps*B) gets o_t
/// for the inputs E (F x steps*B, column t*B + b), with weights W (n x F) and bias; V (n x B)
/// carries the state v in and out. When R (n x B) is given, v_t is added to it for t in
/// [t_lo, t_hi] (MODEL.md's readout, as forward_scan). With K2 > 0, the currents of a thin
/// next layer (K2 neurons, weights transposed W2T: n x K2) are made from each column while it
/// is in L1: the next layer reads o_t at step t + 1, so they go to column (t+1)*B + b of A2
/// (K2 x (steps+1)*B: the next chunk's first step is column block `steps`; skipped for the
/// chunk's last step when last_chunk, which has no next step).
template <class Scalar, Reset mode, int K2 = 0>
void forward_product_scan(Scalar* A, const Scalar* W, Index n, Index F, const Scalar* E, const Scalar* bias,
                          Index steps, Index B, const ScanConstants<Scalar>& k, Scalar* V, Scalar* R, Index t_lo,
                          Index t_hi, const Scalar* W2T = nullptr, Scalar* A2 = nullptr, bool last_chunk = false) {
  constexpr Index NB = 8;
  const Index blocks = (B + NB - 1) / NB;
  parallel_for(blocks, n * F * B * steps > (Index(1) << 18), [&](Index blk) {
    const Index b0 = blk * NB, nb = std::min(NB, B - b0);
    for (Index t = 0; t < steps; ++t) {
      const Index col = t * B + b0;
      Scalar* r = R ? R + b0 * n : nullptr;
      const bool reduce = R && t >= t_lo && t <= t_hi;
      const Scalar* e = E + col * F;
      Scalar *v = V + b0 * n, *a = A + col * n;
      if (nb == NB) {
        if (reduce) product_scan_columns<Scalar, NB, mode, true>(W, n, F, e, bias, v, a, r, k);
        else product_scan_columns<Scalar, NB, mode, false>(W, n, F, e, bias, v, a, r, k);
      } else {
        for (Index c = 0; c < nb; ++c) {
          if (reduce)
            product_scan_columns<Scalar, 1, mode, true>(W, n, F, e + c * F, bias, v + c * n, a + c * n, r + c * n, k);
          else
            product_scan_columns<Scalar, 1, mode, false>(W, n, F, e + c * F, bias, v + c * n, a + c * n,
                                                         r ? r + c * n : nullptr, k);
        }
      }
      if constexpr (K2 > 0)
        if (!(last_chunk && t == steps - 1)) {
#if defined(__AVX__)
          if constexpr (std::is_same_v<Scalar, float> && NB == 8)
            if (nb == NB) {
              thin_currents_8<K2>(W2T, n, A + col * n, A2 + (col + B) * K2);
              continue;
            }
#endif
          for (Index c = 0; c < nb; ++c) thin_currents<Scalar, K2>(W2T, n, A + (col + c) * n, A2 + (col + c + B) * K2);
        }
    }
  });
}

/// Most outputs of the layer above layer 1, and most inputs of layer 1, for which the fused
/// backward below does their products in its registers.
inline constexpr int fused_max_thin = 4;

template <class Scalar>
struct FusedBackward {
  Scalar* D;
  Index n, steps, B;
  bool last_chunk;  // the chunk ends at step T - 1, which has no next step
  const Scalar* W2T;
  const Scalar* D2;
  Scalar* dW2T;
  const Scalar* E;
  Scalar* dW1;
  Scalar* DN;
  Scalar* SU;
  Scalar decay, kappa;
};

/// The neurons h .. h + lanes of samples [b0, b1) over all steps of the chunk (see
/// backward_fused). Steps outside samples: the carried du of each sample stays in DN (in L1),
/// so that consecutive iterations are independent samples, not a chain through one.
template <class Scalar, int bytes, Reset mode, int K, int F>
inline void backward_fused_rows(const FusedBackward<Scalar>& p, Index h, Index b0, Index b1) {
  typedef Scalar vec __attribute__((vector_size(bytes)));
  // Locals, not p's fields: the vector stores (memcpy) could alias those, forcing reloads.
  Scalar* const D = p.D + h;
  Scalar* const DN = p.DN + h;
  Scalar* const SU = p.SU + h;
  const Scalar* const D2 = p.D2;
  const Scalar* const E = p.E;
  const Index n = p.n, B = p.B, steps = p.steps;
  const bool last_chunk = p.last_chunk;
  const Scalar decay = p.decay, kappa = p.kappa;
  vec w2[K], a2[K], a1[F > 0 ? F : 1], su{};
  for (int k = 0; k < K; ++k) {
    __builtin_memcpy(&w2[k], p.W2T + h + k * n, sizeof(vec));
    a2[k] = vec{};
  }
  for (int f = 0; f < (F > 0 ? F : 1); ++f) a1[f] = vec{};
  // The sums a2, a1 and su (of du) stay in registers. The gate enters as a mask:
  // x & [o > 0] is x g for g in {0, 1} (up to the sign of zero).
  // One sample at step t; `next` (std::true_type or false_type): whether du2 of a next step
  // exists, fixed per step so that the loop over samples has no branch.
  auto sample = [&](Index t, Index b, auto next) {
    const Index j = t * B + b;
    Scalar* d = D + j * n;
    vec o, dn;
    __builtin_memcpy(&o, d, sizeof(vec));
    __builtin_memcpy(&dn, DN + b * n, sizeof(vec));
    const auto fired = o > Scalar(0);
    using mask = decltype(fired);
    const vec dv = dn * decay;
    vec du = dv - (vec)((mask)(mode == Reset::scale ? kappa * dv : dv) & fired);
    if constexpr (decltype(next)::value) {
      const Scalar* u2 = D2 + (j + B) * K;
      vec go = w2[0] * u2[0];
      for (int k = 1; k < K; ++k) go += w2[k] * u2[k];
      du += (vec)((mask)go & fired);
      for (int k = 0; k < K; ++k) a2[k] += o * u2[k];
    }
    su += du;
    if constexpr (F == 0) __builtin_memcpy(d, &du, sizeof(vec));  // else no one reads du_t
    __builtin_memcpy(DN + b * n, &du, sizeof(vec));
    if constexpr (F > 0)
      for (int f = 0; f < F; ++f) a1[f] += du * E[j * F + f];
  };
  for (Index t = steps - 1; t >= 0; --t) {
    if (last_chunk && t == steps - 1)  // the last step: no next one
      for (Index b = b0; b < b1; ++b) sample(t, b, std::false_type{});
    else
      for (Index b = b0; b < b1; ++b) sample(t, b, std::true_type{});
  }
  auto add_to = [](Scalar* c, const vec& x) {
    vec y;
    __builtin_memcpy(&y, c, sizeof(vec));
    y += x;
    __builtin_memcpy(c, &y, sizeof(vec));
  };
  add_to(SU, su);  // the sum over these samples to SU's first column (the engine sums SU's columns)
  for (int k = 0; k < K; ++k) add_to(p.dW2T + h + k * n, a2[k]);
  if constexpr (F > 0)
    for (int f = 0; f < F; ++f) add_to(p.dW1 + h + f * n, a1[f]);
}

/// Backward of layer 1 (n neurons) below a thin layer of K <= 4 neurons, for one chunk of
/// p.steps steps (MODEL.md "Gradients"), in one pass:
/// - the gradient with respect to o_t, W2^T du2_{t+1} (zero at t = T-1), from the layer
///   above's du2 (D2: K x steps*B at the chunk, whose column block p.steps is the next
///   chunk's first step) and its weights, given transposed (W2T: n x K);
/// - the scan: D (n x steps*B) from o_t to du_t (unless F > 0: then nothing reads du_t and D
///   is left as it is), DN (n x B) carrying du in and out; the sum of du over the steps and
///   samples (the bias gradient) is added to SU's first column (n x B, summed over columns
///   by the engine);
/// - the layer above's weight gradient, transposed: dW2T (n x K) += sum_t o_t du2_{t+1}^T;
/// - when F > 0, this layer's: dW1 (n x F) += sum_t du_t s_t^T for the inputs E (F x steps*B).
/// These were three thin products and the scan, each a pass over the chunk. Samples go in
/// blocks of 8, whose steps stay in L1 while each vector of neurons of a task (whose sums
/// stay in registers) walks over them. A task is a fixed group of neurons and sums over the
/// samples and steps in a fixed order, so the result does not depend on the thread count.
template <class Scalar, Reset mode, int K, int F>
void backward_fused(const FusedBackward<Scalar>& p) {
  constexpr int bytes = thin_vector_bytes, L = bytes / int(sizeof(Scalar));
  // Vectors per task: two share the cache lines of a column of D (64 bytes); tasks go round
  // robin, so that two threads get about as many neurons each (iris: 12 vectors and a tail).
  constexpr Index group = 2, sample_block = 8;  // samples per block
  const Index n = p.n, full = n / L, groups = (full + group - 1) / group;
  const Index tasks = groups + (full * L < n ? 1 : 0);
  parallel_for(tasks, n * p.B * p.steps > 65536, [&](Index task) {
    for (Index b0 = 0; b0 < p.B; b0 += sample_block) {
      const Index b1 = std::min(p.B, b0 + sample_block);
      if (task < groups) {
        for (Index v = task * group; v < std::min(full, (task + 1) * group); ++v)
          backward_fused_rows<Scalar, bytes, mode, K, F>(p, v * L, b0, b1);
        continue;
      }
      Index h = full * L;  // the neurons after the last full vector
      if constexpr (bytes > 32) {
        constexpr int L2 = 32 / int(sizeof(Scalar));
        for (; h + L2 <= n; h += L2) backward_fused_rows<Scalar, 32, mode, K, F>(p, h, b0, b1);
      }
      if constexpr (bytes > 16) {
        constexpr int L2 = 16 / int(sizeof(Scalar));
        for (; h + L2 <= n; h += L2) backward_fused_rows<Scalar, 16, mode, K, F>(p, h, b0, b1);
      }
      for (; h < n; ++h) backward_fused_rows<Scalar, int(sizeof(Scalar)), mode, K, F>(p, h, b0, b1);
    }
  }, /*round_robin=*/true);
}

/// forward_product_scan with the reset and the next layer's width (0: none, else 1..4) given
/// at run time. (Plain switches: nvcc's front end rejects the equivalent templated lambdas.)
template <class Scalar, Reset mode>
void forward_product_scan_k(int K2, Scalar* A, const Scalar* W, Index n, Index F, const Scalar* E, const Scalar* bias,
                            Index steps, Index B, const ScanConstants<Scalar>& k, Scalar* V, Scalar* R, Index t_lo,
                            Index t_hi, const Scalar* W2T, Scalar* A2, bool last_chunk) {
  switch (K2) {
    case 1: return forward_product_scan<Scalar, mode, 1>(A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi, W2T, A2, last_chunk);
    case 2: return forward_product_scan<Scalar, mode, 2>(A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi, W2T, A2, last_chunk);
    case 3: return forward_product_scan<Scalar, mode, 3>(A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi, W2T, A2, last_chunk);
    case 4: return forward_product_scan<Scalar, mode, 4>(A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi, W2T, A2, last_chunk);
    default: return forward_product_scan<Scalar, mode, 0>(A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi);
  }
}
template <class Scalar>
void forward_product_scan_dispatch(Reset mode, int K2, Scalar* A, const Scalar* W, Index n, Index F, const Scalar* E,
                                   const Scalar* bias, Index steps, Index B, const ScanConstants<Scalar>& k, Scalar* V,
                                   Scalar* R, Index t_lo, Index t_hi, const Scalar* W2T, Scalar* A2, bool last_chunk) {
  if (mode == Reset::scale)
    forward_product_scan_k<Scalar, Reset::scale>(K2, A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi, W2T, A2,
                                                 last_chunk);
  else
    forward_product_scan_k<Scalar, Reset::subtract>(K2, A, W, n, F, E, bias, steps, B, k, V, R, t_lo, t_hi, W2T, A2,
                                                    last_chunk);
}

/// backward_fused with the reset, the thin layer's width K (1..4) and the inputs handled in
/// the pass F (0..4) given at run time.
template <class Scalar, Reset mode, int K>
void backward_fused_f(int F, const FusedBackward<Scalar>& p) {
  switch (F) {
    case 1: return backward_fused<Scalar, mode, K, 1>(p);
    case 2: return backward_fused<Scalar, mode, K, 2>(p);
    case 3: return backward_fused<Scalar, mode, K, 3>(p);
    case 4: return backward_fused<Scalar, mode, K, 4>(p);
    default: return backward_fused<Scalar, mode, K, 0>(p);
  }
}
template <class Scalar, Reset mode>
void backward_fused_k(int K, int F, const FusedBackward<Scalar>& p) {
  switch (K) {
    case 1: return backward_fused_f<Scalar, mode, 1>(F, p);
    case 2: return backward_fused_f<Scalar, mode, 2>(F, p);
    case 3: return backward_fused_f<Scalar, mode, 3>(F, p);
    default: return backward_fused_f<Scalar, mode, 4>(F, p);
  }
}
template <class Scalar>
void backward_fused_dispatch(Reset mode, int K, int F, const FusedBackward<Scalar>& p) {
  if (mode == Reset::scale) backward_fused_k<Scalar, Reset::scale>(K, F, p);
  else backward_fused_k<Scalar, Reset::subtract>(K, F, p);
}
#endif

}  // namespace nmsnn::detail
