// nmsnn/train/trainer.hpp — the mini-batch training loop shared by every network: shuffles
// with a counter-based generator (so a seed gives the same order on any machine), gathers
// batches into the engine's layout (one column per sample), applies one optimiser step per
// batch and stops with NumericalError, weights untouched, when a step would diverge.
#pragma once

#include <chrono>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/optim/optimizers.hpp"
#include "nmsnn/train/fit_options.hpp"

namespace nmsnn::detail {

/// Fisher–Yates shuffle of 0..n-1 keyed by (seed, stream).
inline std::vector<Index> shuffled_indices(Index n, std::uint64_t seed, std::uint64_t stream) {
  std::vector<Index> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), Index(0));
  CounterRng rng(seed, RandomDomain::shuffle, stream);
  for (Index i = n - 1; i > 0; --i) std::swap(idx[i], idx[rng.below(std::uint64_t(i) + 1)]);
  return idx;
}

/// Copies rows idx[begin..end) of X into the columns of Xb (F x count), cast to Scalar.
template <class Scalar, class Derived>
void gather_columns(const Eigen::MatrixBase<Derived>& X, const std::vector<Index>& idx, Index begin,
                    Index end, Matrix<Scalar>& Xb) {
  Xb.resize(X.cols(), end - begin);
  for (Index b = begin; b < end; ++b) Xb.col(b - begin) = X.row(idx[b]).transpose().template cast<Scalar>();
}

/// One optimiser step on parameters whose gradients are already computed. When the loss, a
/// gradient or an updated parameter is not finite, restores the parameters and throws.
template <class Scalar, class Optimizer>
void guarded_step(std::span<const Parameter<Scalar>> params, Optimizer& opt, double loss,
                  std::string_view where) {
  if (!std::isfinite(loss))
    raise<NumericalError>(where, ": training diverged, the loss is ", loss,
                          "; the weights are those from before this step");
  for (const auto& p : params)
    for (Index i = 0; i < p.size; ++i)
      if (!std::isfinite(p.gradient[i]))
        raise<NumericalError>(where, ": training diverged, a gradient is ", p.gradient[i],
                              "; the weights are those from before this step");
  std::vector<std::vector<Scalar>> backup;
  backup.reserve(params.size());
  for (const auto& p : params) backup.emplace_back(p.value, p.value + p.size);
  opt.step(params);
  for (std::size_t k = 0; k < params.size(); ++k)
    for (Index i = 0; i < params[k].size; ++i)
      if (!std::isfinite(params[k].value[i])) {
        for (std::size_t r = 0; r < params.size(); ++r)
          std::copy(backup[r].begin(), backup[r].end(), params[r].value);
        raise<NumericalError>(where, ": training diverged, the optimiser step produced a non-finite "
                              "weight; the weights are those from before this step");
      }
}

/// The epoch loop. Model provides: Scalar, next_stream(), train_batch(Xb, Yb, ids, stream) ->
/// loss with gradients, parameters().
template <class Model, class Derived, class Optimizer>
History fit_loop(Model& model, const Eigen::MatrixBase<Derived>& X,
                 const Matrix<typename Model::Scalar>& Y, Optimizer& opt, const FitOptions& options,
                 std::uint64_t seed) {
  using Scalar = typename Model::Scalar;
  options.validate();
  if (options.threads > 0) set_num_threads(options.threads);
  const Index n = X.rows();
  const Index batch = std::min(options.batch_size, n);
  History history;
  Matrix<Scalar> Xb, Yb;
  std::vector<std::uint32_t> ids;
  for (Index epoch = 0; epoch < options.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint32_t stream = model.next_stream();
    std::vector<Index> idx;
    if (options.shuffle) idx = shuffled_indices(n, seed, stream);
    else {
      idx.resize(static_cast<std::size_t>(n));
      std::iota(idx.begin(), idx.end(), Index(0));
    }
    double total = 0;
    for (Index begin = 0; begin < n; begin += batch) {
      const Index end = std::min(n, begin + batch);
      gather_columns(X, idx, begin, end, Xb);
      Yb.resize(Y.rows(), end - begin);
      ids.resize(static_cast<std::size_t>(end - begin));
      for (Index b = begin; b < end; ++b) {
        Yb.col(b - begin) = Y.col(idx[b]);
        ids[b - begin] = std::uint32_t(idx[b]);
      }
      const double loss = model.train_batch(Xb, Yb, ids.data(), stream);
      const auto params = model.parameters();
      guarded_step<Scalar>(std::span<const Parameter<Scalar>>(params), opt, loss,
                           concat("fit (epoch ", epoch + 1, ", batch ", begin / batch + 1, ")"));
      total += loss * double(end - begin);
    }
    history.loss.push_back(total / double(n));
    history.seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return history;
}

}  // namespace nmsnn::detail
