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
  parallel_for(blocks, true, [&](Index i) {
    const Index c0 = i * w, nc = std::min(w, n - c0);
    if (accumulate) C.middleCols(c0, nc).noalias() += A * B.middleCols(c0, nc);
    else C.middleCols(c0, nc).noalias() = A * B.middleCols(c0, nc);
  });
}

/// C = A^T * B (+ C when accumulate), split over columns of C.
template <class Scalar>
void gemm_tn(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B, bool accumulate) {
  const Index n = C.cols();
  const Index w = column_block(A.rows(), A.cols());
  const Index blocks = (n + w - 1) / w;
  parallel_for(blocks, true, [&](Index i) {
    const Index c0 = i * w, nc = std::min(w, n - c0);
    if (accumulate) C.middleCols(c0, nc).noalias() += A.transpose() * B.middleCols(c0, nc);
    else C.middleCols(c0, nc).noalias() = A.transpose() * B.middleCols(c0, nc);
  });
}

/// C += A * B^T (the weight-gradient product: a reduction over the long inner dimension),
/// split over columns of C, each task reducing over the whole inner dimension. A small
/// product is one block: splitting it would only read A once per block (a quarter slower
/// for a 64 x 20 gradient over 1024 columns) with nothing to run in parallel.
template <class Scalar>
void gemm_nt_acc(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  const Index n = C.cols();
  const bool split = A.cols() * n > 65536;
  const Index w = split ? std::max<Index>(16, std::min<Index>(256, (n + 7) / 8)) : std::max<Index>(1, n);
  const Index blocks = (n + w - 1) / w;
  parallel_for(blocks, true, [&](Index i) {
    const Index c0 = i * w, nc = std::min(w, n - c0);
    C.middleCols(c0, nc).noalias() += A * B.middleRows(c0, nc).transpose();
  });
}

/// C += A * B^T split over fixed blocks of rows of C (for a tall C whose rows are A's).
template <class Scalar>
void gemm_nt_acc_rows(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  const Index m = C.rows();
  const Index h = 512;
  const Index blocks = (m + h - 1) / h;
  parallel_for(blocks, true, [&](Index i) {
    const Index r0 = i * h, nr = std::min(h, m - r0);
    C.middleRows(r0, nr).noalias() += A.middleRows(r0, nr) * B.transpose();
  });
}

/// C = 0; one contiguous fill when C's columns are adjacent (Eigen's setZero on a strided
/// map fills column by column, 3x slower for 64 x 1024).
template <class Scalar>
void set_zero(MatMap<Scalar> C) {
  if (C.outerStride() == C.rows()) std::fill_n(C.data(), C.size(), Scalar(0));
  else C.setZero();
}

/// Rows of A up to which gemm_tn_thin is used instead of Eigen's product.
inline constexpr Index thin_rows = 4;

/// C.col(c) = sum_r a_r B(r, c) for K columns a_r of length C.rows() (a_r at a + r * lda):
/// column by column, each element a K-term sum, written without a prior fill. The kernel of
/// the thin products below, where Eigen's general product packs and blocks for a depth of K.
/// Columns are independent, so the thread count cannot change the result.
template <class Scalar, int K>
void combine_columns(MatMap<Scalar> C, const Scalar* a, Index lda, ConstMatMap<Scalar> B) {
  const Index m = C.rows(), n = C.cols(), w = 256, blocks = (n + w - 1) / w;
  parallel_for(blocks, m * n > 65536, [&](Index blk) {
    for (Index c = blk * w, c1 = std::min(n, c + w); c < c1; ++c) {
      Scalar b[K];
      for (int r = 0; r < K; ++r) b[r] = B(r, c);
      Scalar* __restrict out = C.data() + c * C.outerStride();
      const Scalar* __restrict ar = a;
      for (Index i = 0; i < m; ++i) {
        Scalar s = ar[i] * b[0];
        for (int r = 1; r < K; ++r) s += ar[r * lda + i] * b[r];
        out[i] = s;
      }
    }
  });
}

/// Calls f.operator()<k>() for k = 1..thin_rows; returns false (calling nothing) otherwise.
template <class F>
bool dispatch_thin(Index k, F&& f) {
  switch (k) {
    case 1: f.template operator()<1>(); return true;
    case 2: f.template operator()<2>(); return true;
    case 3: f.template operator()<3>(); return true;
    case 4: f.template operator()<4>(); return true;
    default: return false;
  }
}

/// C = A^T * B. An A (k x m) of few rows (k <= thin_rows, m <= 1024), as the gradient
/// W^T du that a layer of few neurons sends to the layer below, goes to combine_columns
/// with A's rows copied contiguous: Eigen's product is about 3x slower at these shapes
/// (100 x 3 times 3 x 480: 21 against 7.6 us on this project's development machine).
template <class Scalar>
void gemm_tn_thin(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  const bool done = A.cols() <= 1024 && dispatch_thin(A.rows(), [&]<int K>() {
    Scalar at[K][1024];  // A^T: row r of A at at[r]
    for (int r = 0; r < K; ++r)
      for (Index i = 0; i < A.cols(); ++i) at[r][i] = A(r, i);
    combine_columns<Scalar, K>(C, &at[0][0], 1024, B);
  });
  if (!done) gemm_tn(C, A, B, false);
}

/// C = A * B (C need not be initialised). An A of few columns (k <= thin_rows), as the
/// currents of a layer with few inputs (iris's 4 features), goes to combine_columns: Eigen's
/// product, which needs C filled first, takes 2-3x as long at these shapes (100 x 4 times
/// 4 x 480: 19 against 8 us). Otherwise Eigen's product onto a zero fill (which is faster
/// than its assignment).
template <class Scalar>
void gemm_nn_set(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  if (dispatch_thin(A.cols(), [&]<int K>() { combine_columns<Scalar, K>(C, A.data(), A.outerStride(), B); }))
    return;
  set_zero(C);
  gemm_nn(C, A, B, true);
}

/// C += A * B^T for a B (k x n) of few rows, 2 <= k <= thin_rows: the weight gradient of a
/// layer with few inputs or (transposed) few outputs, a reduction over the long n. Strips of
/// C's rows stay in vector registers for the whole reduction, so A is read once and nothing
/// is packed; Eigen's product packs all of A for k output columns and takes 1.2-1.6x as
/// long (100 x 480 times 480 x 3: 14 against 8-9 us). For k = 1 Eigen's matrix-vector
/// product is faster and is used. Strips are fixed by the shape and each element is one
/// sequential sum over n, so the thread count cannot change the result. The vectors are
/// the target's own width (64 bytes with AVX-512, 32 with AVX, else 16): wider GCC vectors
/// than the target has are emulated and made this kernel 5x slower than Eigen's in an
/// SSE2-only build. After the strips, single vectors, then single rows.
#if defined(__GNUC__) && (defined(__SSE2__) || defined(__ARM_NEON))
#define NMSNN_THIN_GRADIENT_KERNEL 1
#if defined(__AVX512F__)
inline constexpr int thin_vector_bytes = 64;
#elif defined(__AVX__)
inline constexpr int thin_vector_bytes = 32;
#else
inline constexpr int thin_vector_bytes = 16;
#endif
template <class Scalar, int K>
void gemm_nt_acc_thin_fixed(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  typedef Scalar vec __attribute__((vector_size(thin_vector_bytes)));
  constexpr Index lanes = Index(thin_vector_bytes / sizeof(Scalar));
  constexpr int V = K <= 2 ? 4 : 2;  // vectors per strip: enough independent sums to hide latency
  constexpr Index strip = V * lanes;
  const Index m = C.rows(), n = A.cols(), lda = A.outerStride(), ldb = B.outerStride(), ldc = C.outerStride();
  const Scalar* __restrict a = A.data();
  const Scalar* __restrict b = B.data();
  Scalar* __restrict c = C.data();
  // Rows i0 .. i0 + VV vectors.
  auto vectors = [&]<int VV>(Index i0) {
    vec acc[K][VV] = {};
    for (Index j = 0; j < n; ++j) {
      vec x[VV];
      for (int v = 0; v < VV; ++v) __builtin_memcpy(&x[v], a + j * lda + i0 + v * lanes, sizeof(vec));
      for (int r = 0; r < K; ++r) {
        const Scalar br = b[j * ldb + r];
        for (int v = 0; v < VV; ++v) acc[r][v] += x[v] * br;
      }
    }
    for (int r = 0; r < K; ++r)
      for (int v = 0; v < VV; ++v)
        for (Index l = 0; l < lanes; ++l) c[r * ldc + i0 + v * lanes + l] += acc[r][v][l];
  };
  const Index strips = m / strip;
  parallel_for(strips, m * n * K > (Index(1) << 20), [&](Index s) { vectors.template operator()<V>(s * strip); });
  Index i = strips * strip;
  for (; i + lanes <= m; i += lanes) vectors.template operator()<1>(i);
  for (; i < m; ++i) {  // the rows after the last vector
    Scalar acc[K] = {};
    for (Index j = 0; j < n; ++j)
      for (int r = 0; r < K; ++r) acc[r] += a[j * lda + i] * b[j * ldb + r];
    for (int r = 0; r < K; ++r) c[r * ldc + i] += acc[r];
  }
}

// The tiled kernel below only where the target has FMA: with SSE2's separate multiply and
// add it is 1.3-2x slower than Eigen's product.
#if defined(__AVX__) && defined(__FMA__)
#define NMSNN_TILED_GRADIENT_KERNEL 1
/// Widest B (rows) and tallest C for gemm_nt_acc_tiled.
inline constexpr Index tiled_max_rows_b = 64, tiled_max_rows_c = 200;

/// One tile of gemm_nt_acc_tiled: C's rows i .. i + MR vectors by columns r .. r + NR, summed
/// over A's and B's columns [j0, j1) in registers (c, a, b point at row i, row i, row r).
template <class Scalar, int bytes, int MR, int NR>
[[gnu::always_inline]] inline void nt_tile(Scalar* __restrict c, Index ldc, const Scalar* __restrict a, Index lda,
                                           const Scalar* __restrict b, Index ldb, Index j0, Index j1) {
  typedef Scalar vec __attribute__((vector_size(bytes)));
  constexpr int L = bytes / int(sizeof(Scalar));
  vec acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) __builtin_memcpy(&acc[r][m], c + r * ldc + m * L, sizeof(vec));
  for (Index j = j0; j < j1; ++j) {
    vec x[MR];
    for (int m = 0; m < MR; ++m) __builtin_memcpy(&x[m], a + j * lda + m * L, sizeof(vec));
    for (int r = 0; r < NR; ++r) {
      const Scalar s = b[j * ldb + r];
      for (int m = 0; m < MR; ++m) acc[r][m] += x[m] * s;
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) __builtin_memcpy(c + r * ldc + m * L, &acc[r][m], sizeof(vec));
}

/// The tiles of C's rows [i0, i1) (a multiple of MR vectors) by columns [r0, r0 + nr), nr <= 5.
template <class Scalar, int bytes, int MR>
inline void nt_tiles(Scalar* c, Index ldc, const Scalar* a, Index lda, const Scalar* b, Index ldb, Index i0, Index i1,
                     Index r0, Index nr, Index j0, Index j1) {
  constexpr Index rows = MR * Index(bytes / int(sizeof(Scalar)));
  for (Index i = i0; i < i1; i += rows) {
    Scalar* ct = c + r0 * ldc + i;
    const Scalar *at = a + i, *bt = b + r0;
    switch (nr) {
      case 1: nt_tile<Scalar, bytes, MR, 1>(ct, ldc, at, lda, bt, ldb, j0, j1); break;
      case 2: nt_tile<Scalar, bytes, MR, 2>(ct, ldc, at, lda, bt, ldb, j0, j1); break;
      case 3: nt_tile<Scalar, bytes, MR, 3>(ct, ldc, at, lda, bt, ldb, j0, j1); break;
      case 4: nt_tile<Scalar, bytes, MR, 4>(ct, ldc, at, lda, bt, ldb, j0, j1); break;
      default: nt_tile<Scalar, bytes, MR, 5>(ct, ldc, at, lda, bt, ldb, j0, j1); break;
    }
  }
}

/// C += A * B^T for a B (k x n) of 5..tiled_max_rows_b rows and a C of at most
/// tiled_max_rows_c rows: the weight gradient of a layer with a few tens of inputs (binary's
/// 64 x 20 over a chunk's 1024 columns), a reduction over the long n with a short k that
/// Eigen's product packs and blocks for (48-58 us there, this kernel 30-47; mnist's
/// transposed 100 x 10 gradient 46-55 against 26-34). Tiles of two vectors of C's rows by
/// five of its columns stay in registers over blocks of 128 inner columns. Each element is one
/// sequential sum over n from its old value, and the tasks (strips of rows and columns of C)
/// are fixed by the shape, so the thread count cannot change the result.
template <class Scalar>
void gemm_nt_acc_tiled(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B) {
  constexpr int bytes = thin_vector_bytes, L = bytes / int(sizeof(Scalar));
  constexpr Index NR = 5, JB = 128;
  const Index m = C.rows(), k = C.cols(), n = A.cols();
  const Index lda = A.outerStride(), ldb = B.outerStride(), ldc = C.outerStride();
  Scalar* c = C.data();
  const Scalar *a = A.data(), *b = B.data();
  constexpr Index H = 16 / Index(sizeof(Scalar));  // lanes of a half vector
  const Index full2 = m / (2 * L) * (2 * L), full1 = m / L * L, groups = (k + NR - 1) / NR;
  const Index half = L > H ? (m - full1) / H * H : 0;
  parallel_for(groups, m * n * k > (Index(1) << 20), [&](Index g) {
    const Index r0 = g * NR, nr = std::min(NR, k - r0);
    for (Index j0 = 0; j0 < n; j0 += JB) {
      const Index j1 = std::min(n, j0 + JB);
      nt_tiles<Scalar, bytes, 2>(c, ldc, a, lda, b, ldb, 0, full2, r0, nr, j0, j1);
      nt_tiles<Scalar, bytes, 1>(c, ldc, a, lda, b, ldb, full2, full1, r0, nr, j0, j1);
      nt_tiles<Scalar, 16, 1>(c, ldc, a, lda, b, ldb, full1, full1 + half, r0, nr, j0, j1);
      for (Index i = full1 + half; i < m; ++i)  // the rows after the last vector
        for (Index r = r0; r < r0 + nr; ++r) {
          Scalar s = c[r * ldc + i];
          for (Index j = j0; j < j1; ++j) s += a[j * lda + i] * b[j * ldb + r];
          c[r * ldc + i] = s;
        }
    }
  });
}
#endif  // __AVX__ && __FMA__
#endif

/// C += A * B^T: gemm_nt_acc_thin_fixed where B has 2..thin_rows rows, gemm_nt_acc_tiled
/// where it has up to tiled_max_rows_b and C at most tiled_max_rows_c (with FMA), else the given
/// fallback (gemm_nt_acc or gemm_nt_acc_rows, by the caller's layout).
template <class Scalar, class Fallback>
void gemm_nt_acc_thin(MatMap<Scalar> C, ConstMatMap<Scalar> A, ConstMatMap<Scalar> B, Fallback&& fallback) {
#if defined(NMSNN_THIN_GRADIENT_KERNEL)
  if (B.rows() >= 2 && dispatch_thin(B.rows(), [&]<int K>() { gemm_nt_acc_thin_fixed<Scalar, K>(C, A, B); }))
    return;
#if defined(NMSNN_TILED_GRADIENT_KERNEL)
  if (B.rows() > thin_rows && B.rows() <= tiled_max_rows_b && C.rows() <= tiled_max_rows_c &&
      C.rows() >= thin_vector_bytes / Index(sizeof(Scalar))) {
    gemm_nt_acc_tiled<Scalar>(C, A, B);
    return;
  }
#endif
#endif
  fallback(C, A, B);
}

/// C.col(c) = v for every column (the bias of a block of currents); a plain loop, a third
/// faster than Eigen's colwise assignment for 100 x 480.
template <class Scalar>
void fill_columns(MatMap<Scalar> C, const Scalar* __restrict v) {
  const Index m = C.rows();
  for (Index c = 0; c < C.cols(); ++c) {
    Scalar* __restrict out = C.data() + c * C.outerStride();
    for (Index i = 0; i < m; ++i) out[i] = v[i];
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
