// nmsnn/core/config.hpp — the types every component shares (Index, Matrix aliases) and the
// threading switches. Included first by every nmsnn header.
//
// nmsnn runs its own OpenMP loops over fixed partitions of the work so that results do not
// depend on the thread count (Eigen's own threaded GEMM chooses its blocking from the thread
// count, which changes rounding). Eigen's internal threading is therefore switched off.
#pragma once

#if (defined(_MSVC_LANG) ? _MSVC_LANG : __cplusplus) < 202002L
#error "nmsnn needs C++20: compile with -std=c++20 (or later); the nmsnn::nmsnn CMake target asks for it"
#endif

#include <cstddef>

#if defined(EIGEN_WORLD_VERSION) && defined(_OPENMP) && !defined(EIGEN_DONT_PARALLELIZE)
#error "nmsnn: Eigen was included before nmsnn with OpenMP enabled. Include <nmsnn/nmsnn.hpp> first, or define EIGEN_DONT_PARALLELIZE (the nmsnn::nmsnn CMake target does)."
#endif
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif

#include <Eigen/Core>

#include <cstdint>

#include "nmsnn/core/memory.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

/// Marks a function that GPU kernels call too (nmsnn/cuda.hpp): __host__ __device__ under nvcc.
#if defined(__CUDACC__)
#define NMSNN_HOST_DEVICE __host__ __device__
#else
#define NMSNN_HOST_DEVICE
#endif

namespace nmsnn {

using Index = Eigen::Index;

/// Column-major dynamic matrix: the public data layout is one row per sample.
template <class Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
template <class Scalar>
using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
using Labels = Eigen::VectorXi;

template <class Scalar>
concept FloatingScalar = std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>;

/// Number of threads nmsnn's loops use (OpenMP); 1 when built without OpenMP.
inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the number of threads for nmsnn's loops. Results do not depend on it.
inline void set_num_threads(int n) {
#if defined(_OPENMP)
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

namespace detail {
/// body(i) for every i in [0, n): spread over nmsnn's threads when `worth` (OpenMP's static
/// schedule: a contiguous block of indices per thread, or with round_robin one index at a
/// time in turn), else in order in this thread. Callers fix their partitions by the shapes,
/// so the thread count never changes a result. With one thread, n < 2, or inside a parallel
/// region already (where OpenMP would run a team of one) no parallel region is entered:
/// libgomp's region for a team of one still builds a team and, in a VM, makes system calls
/// (4375 futex calls in 54 one-thread steps of iris; skipping the regions made it 1.25x faster).
template <class Body>
inline void parallel_for(Index n, bool worth, const Body& body, bool round_robin = false) {
#if defined(_OPENMP)
  if (worth && n > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
    if (round_robin) {
#pragma omp parallel for schedule(static, 1)
      for (Index i = 0; i < n; ++i) body(i);
    } else {
#pragma omp parallel for schedule(static)
      for (Index i = 0; i < n; ++i) body(i);
    }
    return;
  }
#else
  (void)worth;
  (void)round_robin;
#endif
  for (Index i = 0; i < n; ++i) body(i);
}

}  // namespace detail

namespace detail {
inline constexpr std::size_t default_chunk_bytes = std::size_t(1) << 18;
inline std::size_t& chunk_bytes_ref() {
  static std::size_t bytes = default_chunk_bytes;
  return bytes;
}
}  // namespace detail

/// Size in bytes of one layer's block of time steps that the spiking engine keeps in cache
/// while it runs a chunk of steps through all layers (default 256 KiB, half of a typical L2;
/// 0 restores the default). A tuning knob: results change only by float rounding (the order
/// of the sums over time), and never with the thread count.
inline std::size_t engine_chunk_bytes() { return detail::chunk_bytes_ref(); }
inline void set_engine_chunk_bytes(std::size_t bytes) {
  detail::chunk_bytes_ref() = bytes ? bytes : detail::default_chunk_bytes;
}

}  // namespace nmsnn
