// nmsnn/encoders/input_encoder.hpp — what layer 1 receives at step t (MODEL.md "Input
// encoders"): Rate (x times a fresh uniform mask, pynmsnn's encoder), Direct (x every step) or
// Bernoulli spikes. Draws are keyed by (seed, stream, sample id, step, feature), so a mask can
// be regenerated at any time, in any order, on any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

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

  /// Uniform draw r(sample, step, feature) in [0, 1).
  static float draw(const DrawKey& key, std::uint32_t sample, std::uint32_t step, Index feature) {
    const auto r = Philox4x32::generate(
        {std::uint32_t(feature >> 2), step, sample, key.stream},
        make_key(key.seed, RandomDomain::input_mask));
    return uniform01_24(r[feature & 3]);
  }

  /// Writes s_t for t = t0 .. t0+steps-1 into S (F x steps*B; column (t-t0)*B + b).
  /// x is F x B (one column per sample); ids[b] is the data-set row of sample b.
  template <class XType, class SType>
  void encode(const XType& x, const std::uint32_t* ids, const DrawKey& key, Index t0,
              Index steps, SType& S) const {
    const Index F = x.rows(), B = x.cols();
    NMSNN_ASSERT(S.rows() == F && S.cols() >= steps * B);
    const auto pkey = make_key(key.seed, RandomDomain::input_mask);
    const Index columns = steps * B;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (columns * F > 32768)
#endif
    for (Index c = 0; c < columns; ++c) {
      const Index b = c % B;
      const std::uint32_t t = std::uint32_t(t0 + c / B);
      Scalar* out = S.data() + c * S.rows();
      const Scalar* xb = x.data() + b * x.rows();
      if (kind_ == Encoding::direct) {
        std::copy(xb, xb + F, out);
        continue;
      }
      Index f = 0;
      for (; f < F; f += 4) {
        const auto r = Philox4x32::generate({std::uint32_t(f >> 2), t, ids[b], key.stream}, pkey);
        const Index n = std::min<Index>(4, F - f);
        for (Index j = 0; j < n; ++j) {
          const Scalar u = Scalar(uniform01_24(r[j]));
          const Scalar xv = xb[f + j];
          if (kind_ == Encoding::rate)
            out[f + j] = u * xv;
          else
            out[f + j] = u < std::clamp(xv, Scalar(0), Scalar(1)) ? Scalar(1) : Scalar(0);
        }
      }
    }
  }

 private:
  Encoding kind_;
};

}  // namespace nmsnn
