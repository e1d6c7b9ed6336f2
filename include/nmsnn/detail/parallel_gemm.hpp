// nmsnn/detail/parallel_gemm.hpp — matrix products split over OpenMP threads along fixed
// partitions. The partition depends only on the shapes, never on the thread count, and each
// output element is computed by exactly one sequential Eigen product, so the result is the
// same bit for bit whatever the number of threads.
#pragma once

#include <algorithm>

#include "nmsnn/core/config.hpp"

namespace nmsnn::detail {

template <class Scalar>
using MatMap = Eigen::Map<Matrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using ConstMatMap = Eigen::Map<const Matrix<Scalar>, 0, Eigen::OuterStride<>>;

/// Block width (columns of the result per task) for a product with inner size k.
inline Index column_block(Index k, Index m) {
  // Aim for tasks of ~ 2^21 multiply-adds, at least 64 columns.
  const Index per = std::max<Index>(1, (Index(1) << 21) / std::max<Index>(1, k * m));
  return std::max<Index>(64, per);
}

/// C = A * B (+ C when accumulate), split over columns of C.
template <class Scalar>
void gemm_nn(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B, bool accumulate) {
  const Index n = C.cols();
  const Index w = column_block(A.cols(), A.rows());
  const Index blocks = (n + w - 1) / w;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (blocks > 1)
#endif
  for (Index i = 0; i < blocks; ++i) {
    const Index c0 = i * w, nc = std::min(w, n - c0);
    if (accumulate) C.middleCols(c0, nc).noalias() += A * B.middleCols(c0, nc);
    else C.middleCols(c0, nc).noalias() = A * B.middleCols(c0, nc);
  }
}

/// C = A^T * B (+ C when accumulate), split over columns of C.
template <class Scalar>
void gemm_tn(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B, bool accumulate) {
  const Index n = C.cols();
  const Index w = column_block(A.rows(), A.cols());
  const Index blocks = (n + w - 1) / w;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (blocks > 1)
#endif
  for (Index i = 0; i < blocks; ++i) {
    const Index c0 = i * w, nc = std::min(w, n - c0);
    if (accumulate) C.middleCols(c0, nc).noalias() += A.transpose() * B.middleCols(c0, nc);
    else C.middleCols(c0, nc).noalias() = A.transpose() * B.middleCols(c0, nc);
  }
}

/// C += A * B^T (the weight-gradient product: a reduction over the long inner dimension),
/// split over columns of C, each task reducing over the whole inner dimension.
template <class Scalar>
void gemm_nt_acc(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  const Index n = C.cols();
  const Index w = std::max<Index>(16, std::min<Index>(256, (n + 7) / 8));
  const Index blocks = (n + w - 1) / w;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (blocks > 1 && A.cols() * n > 65536)
#endif
  for (Index i = 0; i < blocks; ++i) {
    const Index c0 = i * w, nc = std::min(w, n - c0);
    C.middleCols(c0, nc).noalias() += A * B.middleRows(c0, nc).transpose();
  }
}

/// C += A * B^T split over fixed blocks of rows of C (for a tall C whose rows are A's).
template <class Scalar>
void gemm_nt_acc_rows(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  const Index m = C.rows();
  const Index h = 512;
  const Index blocks = (m + h - 1) / h;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (blocks > 1)
#endif
  for (Index i = 0; i < blocks; ++i) {
    const Index r0 = i * h, nr = std::min(h, m - r0);
    C.middleRows(r0, nr).noalias() += A.middleRows(r0, nr) * B.transpose();
  }
}

template <class Scalar>
MatMap<Scalar> map(Scalar* p, Index rows, Index cols, Index stride = -1) {
  return MatMap<Scalar>(p, rows, cols, Eigen::OuterStride<>(stride < 0 ? rows : stride));
}
template <class Scalar>
ConstMatMap<Scalar> cmap(const Scalar* p, Index rows, Index cols, Index stride = -1) {
  return ConstMatMap<Scalar>(p, rows, cols, Eigen::OuterStride<>(stride < 0 ? rows : stride));
}

}  // namespace nmsnn::detail
