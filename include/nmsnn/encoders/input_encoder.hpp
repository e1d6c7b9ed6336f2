// nmsnn/encoders/input_encoder.hpp — what layer 1 receives at step t (MODEL.md "Input
// encoders"): Rate (x times a fresh uniform mask, pynmsnn's encoder), Direct (x every step) or
// Bernoulli spikes. Draws are keyed by (seed, stream, sample id, step, feature), so a mask can
// be regenerated at any time, in any order, on any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"

namespace nmsnn {

enum class Encoding { rate, direct, bernoulli };

inline std::string_view to_string(Encoding e) {
  switch (e) {
    case Encoding::rate: return "rate";
    case Encoding::direct: return "direct";
    case Encoding::bernoulli: return "bernoulli";
  }
  return "?";
}

inline Encoding parse_encoding(std::string_view s) {
  if (s == "rate") return Encoding::rate;
  if (s == "direct") return Encoding::direct;
  if (s == "bernoulli") return Encoding::bernoulli;
  detail::raise<ValueError>("encoder: expected rate, direct or bernoulli, found '", s, "'");
}

/// Identifies one pass of draws: `stream` separates epochs and calls; sample ids are the rows
/// of the data set, so a sample's masks do not depend on which batch it lands in.
struct DrawKey {
  std::uint64_t seed = 0;
  std::uint32_t stream = 0;
};

template <FloatingScalar Scalar>
class InputEncoder {
 public:
  explicit InputEncoder(Encoding kind = Encoding::rate) : kind_(kind) {}

  Encoding kind() const { return kind_; }
  /// Direct encoding gives the same s_t at every step; the engine exploits it.
  bool constant_in_time() const { return kind_ == Encoding::direct; }

  /// Uniform draw r(sample, step, feature) in [0, 1): lane (step mod 4) of
  /// Philox(seed; {step / 4, feature, sample, stream}). One generator call serves four
  /// consecutive steps of one feature, so a sample's non-zero features can be drawn alone.
  static float draw(const DrawKey& key, std::uint32_t sample, std::uint32_t step, Index feature) {
    const auto r = Philox4x32::generate({step >> 2, std::uint32_t(feature), sample, key.stream},
                                        make_key(key.seed, RandomDomain::input_mask));
    return uniform01_24(r[step & 3]);
  }

  /// Encodes one sample for steps t0 .. t0+steps-1: out[i + (t - t0) * ld] = s_t[feature i]
  /// (or out[(t - t0) + i * ld] when transposed), for i < nf, where feature i is features[i]
  /// (or i when features is null) with value xs[i].
  void encode_sample(const Scalar* xs, const std::uint32_t* features, Index nf, std::uint32_t sample,
                     const DrawKey& key, Index t0, Index steps, Scalar* out, Index ld,
                     bool transposed = false) const {
    if (transposed) encode_sample_impl<true>(xs, features, nf, sample, key, t0, steps, out, ld);
    else encode_sample_impl<false>(xs, features, nf, sample, key, t0, steps, out, ld);
  }

  /// Writes s_t for t = t0 .. t0+steps-1 into S (F x steps*B; column (t-t0)*B + b).
  /// x is F x B (one column per sample); ids[b] is the data-set row of sample b.
  template <class XType, class SType>
  void encode(const XType& x, const std::uint32_t* ids, const DrawKey& key, Index t0,
              Index steps, SType& S) const {
    const Index F = x.rows(), B = x.cols();
    NMSNN_ASSERT(S.rows() == F && S.cols() >= steps * B);
    if (kind_ == Encoding::direct || F % 8 == 0 || F >= 64) {
      // Eight features of one sample per generator call: with F a multiple of 8 no lane is
      // idle, and with many features few are.
      detail::parallel_for(B, steps * B * F > 32768, [&](Index b) {
        encode_sample(x.data() + b * F, nullptr, F, ids[b], key, t0, steps, S.data() + b * F, F * B);
      });
      return;
    }
    // Few features, not a multiple of 8 (iris's 4 used half of each call, binary's 20 three
    // quarters): each step's block of S is x's F*B values in x's order (feature i of sample b
    // at b*F + i), so eight consecutive positions p are one generator call, with feature
    // p % F and sample ids[p / F] in its lanes, and each store is eight adjacent values. The
    // draws are those of encode_sample, position by position (the counters are the same).
    const Index P = F * B, groups = (P + 7) / 8;
    const auto pkey = make_key(key.seed, RandomDomain::input_mask);
    const Index t1 = t0 + steps;
    const Scalar* xs = x.data();
    Scalar* out = S.data();
    detail::parallel_for(groups, steps * P > 32768, [&](Index g) {
      const Index p0 = g * 8;
      const int m = int(std::min<Index>(8, P - p0));
      std::uint32_t f[8], s[8];
      Scalar xv[8], hi[8];
      Index fi = p0 % F, bi = p0 / F;  // one division per group, then steps of one position
      for (int j = 0; j < 8; ++j) {
        const Index p = p0 + std::min(j, m - 1);  // idle lanes repeat the last position
        f[j] = std::uint32_t(fi);
        s[j] = ids[bi];
        xv[j] = xs[p];
        hi[j] = std::clamp(xv[j], Scalar(0), Scalar(1));
        if (j + 1 < m && ++fi == F) {
          fi = 0;
          ++bi;
        }
      }
      for (Index tb = t0 >> 2; (tb << 2) < t1; ++tb) {
        float u[4][8];
        philox_uniform_8x4(std::uint32_t(tb), f, s, key.stream, pkey, u);
        for (int w = 0; w < 4; ++w) {
          const Index t = (tb << 2) + w;
          if (t < t0 || t >= t1) continue;
          Scalar v[8];
          if (kind_ == Encoding::rate)
            for (int j = 0; j < 8; ++j) v[j] = Scalar(u[w][j]) * xv[j];
          else
            for (int j = 0; j < 8; ++j) v[j] = Scalar(u[w][j]) < hi[j] ? Scalar(1) : Scalar(0);
          Scalar* o = out + (t - t0) * P + p0;
          if (m == 8)
            for (int j = 0; j < 8; ++j) o[j] = v[j];
          else
            for (int j = 0; j < m; ++j) o[j] = v[j];
        }
      }
    });
  }

 private:
  template <bool transposed>
  void encode_sample_impl(const Scalar* xs, const std::uint32_t* features, Index nf, std::uint32_t sample,
                          const DrawKey& key, Index t0, Index steps, Scalar* out, Index ld) const {
    // Strides as constants where they are 1, so that the inner loops vectorise.
    const Index step_stride = transposed ? 1 : ld;
    const Index feature_stride = transposed ? ld : 1;
    if (kind_ == Encoding::direct) {
      for (Index t = 0; t < steps; ++t)
        for (Index i = 0; i < nf; ++i) out[t * step_stride + i * feature_stride] = xs[i];
      return;
    }
    constexpr int N = 8;
    const auto pkey = make_key(key.seed, RandomDomain::input_mask);
    const Index t1 = t0 + steps;
    for (Index i0 = 0; i0 < nf; i0 += N) {
      const int m = int(std::min<Index>(N, nf - i0));
#if defined(__AVX2__)
      if constexpr (std::is_same_v<Scalar, float> && !transposed)
        if (kind_ == Encoding::rate && m == N) {
          // Counters and inputs straight into registers (see philox_uniform_8x4); with the
          // four steps of a chunk, one call per group: the per-sample path's draws took 1.46
          // ns each against 0.88 on the grouped path.
          const __m256i fv = features ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(features + i0))
                                      : _mm256_add_epi32(_mm256_set1_epi32(int(i0)),
                                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
          const __m256i sv = _mm256_set1_epi32(int(sample));
          const __m256 xv = _mm256_loadu_ps(xs + i0);
          for (Index tb = t0 >> 2; (tb << 2) < t1; ++tb) {
            __m256 u[4];
            philox_uniform_8x4(std::uint32_t(tb), fv, sv, key.stream, pkey, u);
            for (int s = 0; s < 4; ++s) {
              const Index t = (tb << 2) + s;
              if (t >= t0 && t < t1) _mm256_storeu_ps(out + i0 + (t - t0) * ld, _mm256_mul_ps(u[s], xv));
            }
          }
          continue;
        }
#endif
      // Per-group set-up without a variable-length copy (which becomes a slow `rep movs`;
      // with chunks of four steps a group draws only 32 numbers).
      Scalar x[N], hi[N];  // hi = clamp(x, 0, 1): the Bernoulli encoder's firing probability
      std::uint32_t f[N];
      if (m == N) {
        for (int j = 0; j < N; ++j) x[j] = xs[i0 + j];
      } else {
        for (int j = 0; j < N; ++j) x[j] = Scalar(0);
        for (int j = 0; j < m; ++j) x[j] = xs[i0 + j];
      }
      for (int j = 0; j < N; ++j) f[j] = features && j < m ? features[i0 + j] : std::uint32_t(i0 + j);
      if (kind_ == Encoding::bernoulli)
        for (int j = 0; j < N; ++j) hi[j] = std::clamp(x[j], Scalar(0), Scalar(1));
      for (Index tb = t0 >> 2; (tb << 2) < t1; ++tb) {
        float u[4][N];
        philox_uniform_8x4(std::uint32_t(tb), f, sample, key.stream, pkey, u);
        for (int s = 0; s < 4; ++s) {
          const Index t = (tb << 2) + s;
          if (t < t0 || t >= t1) continue;
          Scalar* o = out + i0 * feature_stride + (t - t0) * step_stride;
          if (kind_ == Encoding::rate) {
            if (m == N)  // the common case: eight lanes, a fixed trip count that vectorises
              for (int j = 0; j < N; ++j) o[j * feature_stride] = Scalar(u[s][j]) * x[j];
            else
              for (int j = 0; j < m; ++j) o[j * feature_stride] = Scalar(u[s][j]) * x[j];
          } else {
            for (int j = 0; j < m; ++j) o[j * feature_stride] = Scalar(u[s][j]) < hi[j] ? Scalar(1) : Scalar(0);
          }
        }
      }
    }
  }

  Encoding kind_;
};

}  // namespace nmsnn
