// nmsnn/detail/sparse_spikes.hpp — products with a sparse chunk of layer inputs (the mixed
// engine's): Bernoulli input spikes, a spiking layer's outputs, the rate encoder on sparse data.
// When few entries of a chunk's inputs S (in x k, k = steps x samples) are non-zero, the
// currents W S and the weight gradient dW += D S^T need only W's and dW's columns of the
// non-zero inputs:
//   A[:, c] = sum_{j in nz(c)} S(j, c) W[:, j],   dW[:, j] += S(j, c) D[:, c].
// Each column's sum runs over its non-zeros in order; the weight gradient is split by rows of
// dW over threads, each walking every column in order: results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "nmsnn/core/config.hpp"

namespace nmsnn::detail {

/// The density (fraction of non-zero inputs in a chunk) at or below which the mixed engine
/// takes these kernels instead of dense products; 0 turns them off (tests compare the two).
inline double& sparse_spike_density_ref() {
  static double d = 0.25;
  return d;
}

/// A chunk of inputs in compressed columns: the rows and values of each column's non-zeros.
template <class Scalar>
struct SparseChunk {
  std::vector<Index> start;  // k + 1 offsets into rows and values
  std::vector<std::int32_t> rows;
  std::vector<Scalar> values;
  Index k = 0;  // columns
};

/// Fills c from the dense chunk S (in x k, column-major) when its density is at most the
/// threshold; returns whether it did.
template <class Scalar>
bool sparse_chunk(const Scalar* S, Index in, Index k, SparseChunk<Scalar>& c) {
  const double limit = sparse_spike_density_ref();
  if (!(limit > 0) || in * k == 0) return false;
  const Index max_nnz = Index(limit * double(in) * double(k));
  c.k = k;
  c.start.resize(std::size_t(k + 1));
  // One pass, branch-free: each entry is written, and kept when non-zero (room for one more
  // column than the limit allows, so the pass can stop at the first column past it).
  const std::size_t room = std::size_t(max_nnz + in);
  if (c.rows.size() < room) c.rows.resize(room), c.values.resize(room);
  Index p = 0;
  for (Index col = 0; col < k; ++col) {
    c.start[std::size_t(col)] = p;
    const Scalar* __restrict s = S + col * in;
    std::int32_t* __restrict r = c.rows.data() + p;
    Scalar* __restrict v = c.values.data() + p;
    Index q = 0;
    for (Index j = 0; j < in; ++j) {
      r[q] = std::int32_t(j);
      v[q] = s[j];
      q += s[j] != Scalar(0);
    }
    p += q;
    if (p > max_nnz) return false;
  }
  c.start[std::size_t(k)] = p;
  return true;
}

/// A = W S (n x k), W n x in column-major.
template <class Scalar>
void sparse_product_set(Scalar* A, const Scalar* W, Index n, const SparseChunk<Scalar>& c) {
  parallel_for(c.k, n * (c.start.back() + c.k) > 65536, [&](Index col) {
    Scalar* __restrict a = A + col * n;
    std::fill(a, a + n, Scalar(0));
    for (Index p = c.start[std::size_t(col)]; p < c.start[std::size_t(col) + 1]; ++p) {
      const Scalar v = c.values[std::size_t(p)];
      const Scalar* __restrict w = W + Index(c.rows[std::size_t(p)]) * n;
      for (Index i = 0; i < n; ++i) a[i] += v * w[i];
    }
  });
}

/// dW += D S^T (dW n x in, D n x k).
template <class Scalar>
void sparse_weight_gradient(Scalar* dW, const Scalar* D, Index n, const SparseChunk<Scalar>& c) {
  constexpr Index rows = 256;  // rows of dW per task (its columns' slices stay in cache)
  const Index tasks = (n + rows - 1) / rows;
  parallel_for(tasks, n * (c.start.back() + c.k) > 65536, [&](Index task) {
    const Index i0 = task * rows, i1 = std::min(n, i0 + rows), m = i1 - i0;
    for (Index col = 0; col < c.k; ++col) {
      const Scalar* __restrict d = D + col * n + i0;
      for (Index p = c.start[std::size_t(col)]; p < c.start[std::size_t(col) + 1]; ++p) {
        const Scalar v = c.values[std::size_t(p)];
        Scalar* __restrict g = dW + Index(c.rows[std::size_t(p)]) * n + i0;
        for (Index i = 0; i < m; ++i) g[i] += v * d[i];
      }
    }
  });
}

}  // namespace nmsnn::detail
