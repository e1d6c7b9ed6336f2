// nmsnn/detail/sparse_input.hpp — layer 1 on sparse inputs. Under the rate and Bernoulli
// encoders a zero feature stays zero at every step, so for MNIST-like data (~80% zeros) each
// sample's input currents need only the columns of W for its non-zero features:
//   a_t(b) = W[:, nz_b] s_t(b)[nz_b],   dW[:, nz_b] += sum_t du_t(b) s_t(b)[nz_b]^T.
// Masks are drawn for the non-zero features alone (the generator is keyed by feature).
// Work per sample is independent of the thread count; the weight gradient is reduced over a
// fixed number of sample groups in a fixed order, so results do not depend on it either.
#pragma once

#include <algorithm>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/encoders/input_encoder.hpp"

namespace nmsnn::detail {

/// Density above which the dense path (one large product per chunk of steps) is used.
inline constexpr double sparse_input_max_density = 0.5;

template <class Scalar>
struct SparseColumn {
  std::vector<std::uint32_t> features;
  std::vector<Scalar> values;
};

template <class Scalar>
void nonzeros(const Scalar* x, Index F, SparseColumn<Scalar>& c) {
  c.features.clear();
  c.values.clear();
  for (Index f = 0; f < F; ++f)
    if (x[f] != Scalar(0)) {
      c.features.push_back(std::uint32_t(f));
      c.values.push_back(x[f]);
    }
}

/// Steps per chunk so that a sample's encoded block (nnz x steps) stays near 256 Ki scalars.
inline Index sparse_chunk_steps(Index nnz, Index T) {
  const Index s = std::max<Index>(4, ((Index(1) << 18) / std::max<Index>(1, nnz)) & ~Index(3));
  return std::min(s, T);
}

/// A (n x T*B, column t*B + b) += W[:, nz_b] * S_b for every sample b.
template <class Scalar>
void sparse_forward(Matrix<Scalar>& A, const Matrix<Scalar>& W, const Matrix<Scalar>& Xb,
                    const std::uint32_t* ids, const DrawKey& key, const InputEncoder<Scalar>& enc,
                    Index T) {
  const Index n = W.rows(), F = W.cols(), B = Xb.cols();
#if defined(_OPENMP)
#pragma omp parallel
#endif
  {
    SparseColumn<Scalar> col;
    Matrix<Scalar> Wc, Sc, P;
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
    for (Index b = 0; b < B; ++b) {
      nonzeros(Xb.data() + b * F, F, col);
      const Index k = Index(col.features.size());
      if (k == 0) continue;
      Wc.resize(n, k);
      for (Index i = 0; i < k; ++i) Wc.col(i) = W.col(col.features[std::size_t(i)]);
      const Index chunk = sparse_chunk_steps(k, T);
      for (Index t0 = 0; t0 < T; t0 += chunk) {
        const Index steps = std::min(chunk, T - t0);
        Sc.resize(k, steps);
        enc.encode_sample(col.values.data(), col.features.data(), k, ids[b], key, t0, steps, Sc.data(), k);
        P.noalias() = Wc * Sc;
        for (Index t = 0; t < steps; ++t) A.col((t0 + t) * B + b) += P.col(t);
      }
    }
  }
}

/// dW (n x F) = sum over samples b and steps t of D[:, t*B + b] s_t(b)^T, from the sparse inputs.
template <class Scalar>
void sparse_weight_gradient(Matrix<Scalar>& dW, const Matrix<Scalar>& D, const Matrix<Scalar>& Xb,
                            const std::uint32_t* ids, const DrawKey& key, const InputEncoder<Scalar>& enc,
                            Index T) {
  const Index n = dW.rows(), F = dW.cols(), B = Xb.cols();
  const Index groups = std::min<Index>(B, 8);
  std::vector<Matrix<Scalar>> partial(static_cast<std::size_t>(groups));
#if defined(_OPENMP)
#pragma omp parallel
#endif
  {
    SparseColumn<Scalar> col;
    Matrix<Scalar> Sc, Db, P;
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
    for (Index g = 0; g < groups; ++g) {
      Matrix<Scalar>& acc = partial[std::size_t(g)];
      acc.setZero(n, F);
      for (Index b = g * B / groups; b < (g + 1) * B / groups; ++b) {
        nonzeros(Xb.data() + b * F, F, col);
        const Index k = Index(col.features.size());
        if (k == 0) continue;
        const Index chunk = sparse_chunk_steps(k, T);
        for (Index t0 = 0; t0 < T; t0 += chunk) {
          const Index steps = std::min(chunk, T - t0);
          // Drawn transposed (steps x k) so that the product packs it without a transpose.
          Sc.resize(steps, k);
          enc.encode_sample(col.values.data(), col.features.data(), k, ids[b], key, t0, steps, Sc.data(),
                            steps, true);
          Db.resize(n, steps);
          for (Index t = 0; t < steps; ++t) Db.col(t) = D.col((t0 + t) * B + b);
          P.noalias() = Db * Sc;
          for (Index i = 0; i < k; ++i) acc.col(col.features[std::size_t(i)]) += P.col(i);
        }
      }
    }
  }
  dW = partial[0];
  for (Index g = 1; g < groups; ++g) dW += partial[std::size_t(g)];
}

}  // namespace nmsnn::detail
