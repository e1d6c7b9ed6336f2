// nmsnn/core/random.hpp — the counter-based random number generator (Philox4x32-10, Salmon et
// al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the generator of cuRAND and of
// JAX). A draw is a pure function of (key, counter), so
//  - the same seed gives the same input masks whatever the thread count or batch split, and
//  - the backward pass regenerates a mask instead of storing it.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace nmsnn {

/// Philox4x32-10: four 32-bit outputs per 128-bit counter under a 64-bit key.
struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  static constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  static constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;

  static constexpr Counter generate(Counter c, Key k) {
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = std::uint64_t(M0) * c[0];
      const std::uint64_t p1 = std::uint64_t(M1) * c[2];
      c = {std::uint32_t(p1 >> 32) ^ c[1] ^ k[0], std::uint32_t(p1),
           std::uint32_t(p0 >> 32) ^ c[3] ^ k[1], std::uint32_t(p0)};
      k[0] += W0;
      k[1] += W1;
    }
    return c;
  }
};

/// Uniform float in [0, 1) from the top 24 bits: exact in float and double alike, so float
/// and double networks see the same masks.
inline constexpr float uniform01_24(std::uint32_t r) { return float(r >> 8) * 0x1.0p-24f; }

#if defined(__AVX2__)
/// philox_uniform_8x4 (below) with the counters' second and third words in vector registers
/// and the floats returned in them: out[w] lane j = word w of Philox(key, counter j). (Callers
/// that make their counters in registers avoid a vector load of words just stored one by one,
/// which the CPU cannot forward from the stores: a stall per call.)
inline void philox_uniform_8x4(std::uint32_t c0, __m256i x1, __m256i x2, std::uint32_t c3, Philox4x32::Key k,
                               __m256 (&out)[4]) {
  const __m256i m0 = _mm256_set1_epi64x(Philox4x32::M0), m1 = _mm256_set1_epi64x(Philox4x32::M1);
  __m256i x0 = _mm256_set1_epi32(int(c0));
  __m256i x3 = _mm256_set1_epi32(int(c3));
  for (int round = 0; round < 10; ++round) {
    // 32x32 -> 64-bit products of the even and odd lanes, split into hi and lo words.
    const __m256i e0 = _mm256_mul_epu32(x0, m0), o0 = _mm256_mul_epu32(_mm256_srli_epi64(x0, 32), m0);
    const __m256i e1 = _mm256_mul_epu32(x2, m1), o1 = _mm256_mul_epu32(_mm256_srli_epi64(x2, 32), m1);
    const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
    const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
    const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
    const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
    x0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), _mm256_set1_epi32(int(k[0])));
    x1 = lo1;
    x2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), _mm256_set1_epi32(int(k[1])));
    x3 = lo0;
    k[0] += Philox4x32::W0;
    k[1] += Philox4x32::W1;
  }
  const __m256 scale = _mm256_set1_ps(0x1.0p-24f);
  out[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x0, 8)), scale);
  out[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x1, 8)), scale);
  out[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x2, 8)), scale);
  out[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x3, 8)), scale);
}
#endif

/// Uniform floats in [0, 1) for eight counters {c0, c1[j], c2[j], c3}, j < 8, that differ in
/// their second and third words: out[w][j] = uniform01_24(word w of Philox(key, counter j)).
/// With AVX2 the eight lanes run in vector registers; the bits are the same either way.
inline void philox_uniform_8x4(std::uint32_t c0, const std::uint32_t (&c1)[8], const std::uint32_t (&c2)[8],
                               std::uint32_t c3, Philox4x32::Key k, float (&out)[4][8]) {
#if defined(__AVX2__)
  __m256 u[4];
  philox_uniform_8x4(c0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c1)),
                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c2)), c3, k, u);
  for (int w = 0; w < 4; ++w) _mm256_storeu_ps(out[w], u[w]);
#else
  for (int j = 0; j < 8; ++j) {
    const auto r = Philox4x32::generate({c0, c1[j], c2[j], c3}, k);
    for (int w = 0; w < 4; ++w) out[w][j] = uniform01_24(r[w]);
  }
#endif
}

/// The same for counters {c0, c1[j], c2, c3} that differ in their second word only.
inline void philox_uniform_8x4(std::uint32_t c0, const std::uint32_t (&c1)[8], std::uint32_t c2,
                               std::uint32_t c3, Philox4x32::Key k, float (&out)[4][8]) {
  const std::uint32_t c2s[8] = {c2, c2, c2, c2, c2, c2, c2, c2};
  philox_uniform_8x4(c0, c1, c2s, c3, k, out);
}

/// What a stream of draws is for; each domain has its own key so streams never overlap.
enum class RandomDomain : std::uint32_t { input_mask = 0, init = 1, shuffle = 2, split = 3, dropout = 4 };

inline constexpr Philox4x32::Key make_key(std::uint64_t seed, RandomDomain domain) {
  return {std::uint32_t(seed) ^ (std::uint32_t(domain) * 0x85EBCA6Bu),
          std::uint32_t(seed >> 32) ^ (std::uint32_t(domain) * 0xC2B2AE35u)};
}


/// Uniform double in [0, 1) with 53 random bits.
inline constexpr double uniform01_53(std::uint32_t hi, std::uint32_t lo) {
  return double((std::uint64_t(hi) << 21) ^ (lo >> 11)) * 0x1.0p-53;
}

/// A small sequential generator over Philox for non-hot-path draws (initialisation, shuffles,
/// splits): draw i of stream s is Philox(key, {i / 4 ..., s}) — fully determined by
/// (seed, domain, stream, position).
class CounterRng {
 public:
  CounterRng(std::uint64_t seed, RandomDomain domain, std::uint64_t stream = 0)
      : key_(make_key(seed, domain)), stream_(stream) {}

  std::uint32_t next_u32() {
    if (used_ == 4) {
      block_ = Philox4x32::generate({std::uint32_t(position_), std::uint32_t(position_ >> 32),
                                     std::uint32_t(stream_), std::uint32_t(stream_ >> 32)},
                                    key_);
      ++position_;
      used_ = 0;
    }
    return block_[used_++];
  }
  /// Uniform in [0, 1).
  double uniform() {
    const std::uint32_t hi = next_u32();
    return uniform01_53(hi, next_u32());
  }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), n >= 1 (multiply-shift; bias below 2^-32 · n).
  std::uint64_t below(std::uint64_t n) {
    if (n <= 0xFFFFFFFFull) return (std::uint64_t(next_u32()) * n) >> 32;
    const std::uint64_t r = (std::uint64_t(next_u32()) << 32) | next_u32();
    return r % n;
  }
  /// Standard normal (Box–Muller).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
  }

 private:
  Philox4x32::Key key_;
  std::uint64_t stream_;
  std::uint64_t position_ = 0;
  Philox4x32::Counter block_{};
  int used_ = 4;
};

}  // namespace nmsnn
