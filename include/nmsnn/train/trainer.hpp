// nmsnn/train/trainer.hpp — the mini-batch training loop shared by every network: shuffles
// with a counter-based generator (so a seed gives the same order on any machine), gathers
// batches into the engine's layout (one column per sample), applies one optimiser step per
// batch and stops with NumericalError, weights untouched, when a step would diverge.
#pragma once

#include <chrono>
#include <cstdio>
#include <limits>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/optim/optimizers.hpp"
#include "nmsnn/train/fit_options.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

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

/// The errors of a refused training step (guarded_step, and the device engines' steps).
[[noreturn]] inline void diverged_loss(std::string_view where, double loss) {
  raise<NumericalError>(where, ": training diverged, the loss is ", loss, "; the weights are those from before this step");
}
[[noreturn]] inline void diverged_gradient(std::string_view where, double g) {
  raise<NumericalError>(where, ": training diverged, a gradient is ", g, "; the weights are those from before this step");
}
[[noreturn]] inline void diverged_weights(std::string_view where) {
  raise<NumericalError>(where, ": training diverged, the optimiser step produced a non-finite "
                        "weight; the weights are those from before this step");
}

/// One optimiser step on parameters whose gradients are already computed. When the loss, a
/// gradient or an updated parameter is not finite, restores the parameters and throws.
template <class Scalar, class Optimizer>
void guarded_step(std::span<const Parameter<Scalar>> params, Optimizer& opt, double loss,
                  std::string_view where) {
  if (!std::isfinite(loss)) diverged_loss(where, loss);
  for (const auto& p : params)
    for (Index i = 0; i < p.size; ++i)
      if (!std::isfinite(p.gradient[i])) diverged_gradient(where, double(p.gradient[i]));
  std::vector<std::vector<Scalar>> backup;
  backup.reserve(params.size());
  for (const auto& p : params) backup.emplace_back(p.value, p.value + p.size);
  opt.step(params);
  for (std::size_t k = 0; k < params.size(); ++k)
    for (Index i = 0; i < params[k].size; ++i)
      if (!std::isfinite(params[k].value[i])) {
        for (std::size_t r = 0; r < params.size(); ++r)
          std::copy(backup[r].begin(), backup[r].end(), params[r].value);
        diverged_weights(where);
      }
}

/// guarded_step on a model's parameters; a refused step also undoes the model's other state
/// changes of that step (a dense network's batch-norm running statistics: rollback_step()).
template <class Model, class Optimizer>
void guarded_model_step(Model& model, Optimizer& opt, double loss, std::string_view where) {
  using Scalar = typename Model::Scalar;
  const auto params = model.parameters();
  try {
    guarded_step<Scalar>(std::span<const Parameter<Scalar>>(params), opt, loss, where);
  } catch (const NumericalError&) {
    if constexpr (requires { model.rollback_step(); }) model.rollback_step();
    throw;
  }
}

/// Draws a progress bar on standard error when asked to, or when it is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(Progress mode) {
#if defined(__unix__) || defined(__APPLE__)
    on_ = mode == Progress::on || (mode == Progress::automatic && ::isatty(::fileno(stderr)));
#else
    on_ = mode == Progress::on;
#endif
  }
  void update(Index epoch, Index epochs, Index done, Index total, double loss) {
    if (!on_) return;
    const int width = 30, filled = int(double(width) * double(done) / double(std::max<Index>(1, total)));
    std::fprintf(stderr, "\repoch %ld/%ld [%.*s%*s] %3d%% loss %.4f", long(epoch), long(epochs), filled,
                 "==============================", width - filled, "", int(100.0 * double(done) / double(total)), loss);
    std::fflush(stderr);
  }
  void end_epoch(const EpochRecord& r) {
    if (!on_) return;
    std::fprintf(stderr, "\repoch %ld: loss %.4f metric %.4f", long(r.epoch), r.loss, r.metric);
    if (r.val_loss) std::fprintf(stderr, "  val_loss %.4f val_metric %.4f", *r.val_loss, *r.val_metric);
    std::fprintf(stderr, "  %.2fs%20s\n", r.seconds, "");
  }

 private:
  bool on_ = false;
};

template <class Scalar>
std::vector<std::vector<Scalar>> snapshot(std::span<const Parameter<Scalar>> params) {
  std::vector<std::vector<Scalar>> s;
  for (const auto& p : params) s.emplace_back(p.value, p.value + p.size);
  return s;
}

/// What the epoch loop carries from one epoch to the next: enough to continue a fit where it
/// stopped (a distributed fit's checkpoint saves it).
template <class Scalar>
struct LoopState {
  Index next_epoch = 0;  ///< 0-based: the epoch the loop runs next
  double best = std::numeric_limits<double>::infinity();
  Index since_best = 0;
  std::vector<std::vector<Scalar>> best_weights;
  History history;
};

/// The epoch loop's batches on one machine: the rows of X and Y (targets in engine layout),
/// and the validation rows Xv, Yv when given. A source of batches provides rows(),
/// step(idx, begin, end, stream, opt, where, R, Yb, weights) -> loss (one guarded step on
/// the training positions idx[begin..end), its readout in R and targets in Yb),
/// has_validation(), validation(weights) -> {loss, metric} and primary() (whether this
/// process prints).
template <class Model, class Derived>
class LocalBatches {
 public:
  using Scalar = typename Model::Scalar;
  LocalBatches(Model& model, const Eigen::MatrixBase<Derived>& X, const Matrix<Scalar>& Y, const Eigen::MatrixXd* Xv,
               const Matrix<Scalar>* Yv)
      : model_(model), X_(X), Y_(Y), Xv_(Xv), Yv_(Yv) {}
  Index rows() const { return X_.rows(); }
  template <class Optimizer>
  double step(const std::vector<Index>& idx, Index begin, Index end, std::uint32_t stream, Optimizer& opt, std::string_view where,
              Matrix<Scalar>& R, Matrix<Scalar>& Yb, const std::vector<double>* weights) {
    gather_columns(X_, idx, begin, end, Xb_);
    Yb.resize(Y_.rows(), end - begin);
    ids_.resize(static_cast<std::size_t>(end - begin));
    for (Index b = begin; b < end; ++b) {
      Yb.col(b - begin) = Y_.col(idx[b]);
      ids_[b - begin] = std::uint32_t(idx[b]);
    }
    return model_.train_and_update(Xb_, Yb, ids_.data(), stream, opt, where, &R, weights);
  }
  bool has_validation() const { return Xv_ != nullptr; }
  std::pair<double, double> validation(const std::vector<double>* weights) const {
    return model_.validation_loss_metric(*Xv_, *Yv_, weights);
  }
  bool primary() const { return true; }

 private:
  Model& model_;
  const Eigen::MatrixBase<Derived>& X_;
  const Matrix<Scalar>& Y_;
  const Eigen::MatrixXd* Xv_;
  const Matrix<Scalar>* Yv_;
  Matrix<Scalar> Xb_;
  std::vector<std::uint32_t> ids_;
};

/// The epoch loop over a source of batches (LocalBatches, a distributed fit's): shuffles,
/// steps, the epoch's record and metric, validation, early stopping, the best weights, the
/// callback; `state` says where to start (a resumed checkpoint) and after_epoch(state) runs
/// after each epoch that does not end the fit. Model provides Scalar, TaskT, outputs(),
/// next_stream() and parameters().
template <class Model, class Batches, class Optimizer, class AfterEpoch>
History run_epochs(Model& model, Batches& batches, Optimizer& opt, const FitOptions& options, std::uint64_t seed,
                   LoopState<typename Model::Scalar>& state, AfterEpoch&& after_epoch) {
  using Scalar = typename Model::Scalar;
  using Task = typename Model::TaskT;
  options.validate();
  if (options.threads > 0) set_num_threads(options.threads);
  const Index n = batches.rows();
  const Index batch = std::min(options.batch_size, n);
  const std::vector<double>* weights = options.class_weights.empty() ? nullptr : &options.class_weights;
  const double lr0 = opt.learning_rate();
  History& history = state.history;
  ProgressBar bar(batches.primary() ? options.progress : Progress::off);
  Matrix<Scalar> Yb, R, Rall(model.outputs(), n), Yall;
  for (Index epoch = state.next_epoch; epoch < options.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = options.schedule.rate(lr0, epoch, options.epochs);
    opt.set_learning_rate(lr);
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
      const double loss = batches.step(idx, begin, end, stream, opt,
                                       concat("fit (epoch ", epoch + 1, ", batch ", begin / batch + 1, ")"), R, Yb, weights);
      if (Yall.size() == 0) Yall.resize(Yb.rows(), n);
      Rall.middleCols(begin, end - begin) = R;
      Yall.middleCols(begin, end - begin) = Yb;
      total += loss * double(end - begin);
      bar.update(epoch + 1, options.epochs, end, n, total / double(end));
    }
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.loss = total / double(n);
    rec.metric = Task::metric(Rall, Yall);
    rec.learning_rate = lr;
    history.loss.push_back(rec.loss);
    history.metric.push_back(rec.metric);
    history.learning_rate.push_back(lr);
    if (batches.has_validation()) {
      const auto [vl, vm] = batches.validation(weights);
      rec.val_loss = vl;
      rec.val_metric = vm;
      history.val_loss.push_back(vl);
      history.val_metric.push_back(vm);
    }
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.seconds.push_back(rec.seconds);
    bar.end_epoch(rec);
    const double monitored = rec.val_loss ? *rec.val_loss : rec.loss;
    if (monitored < state.best - options.min_delta) {
      state.best = monitored;
      history.best_epoch = epoch + 1;
      state.since_best = 0;
      if (options.restore_best && (options.patience > 0 || batches.has_validation())) {
        const auto params = model.parameters();
        state.best_weights = snapshot<Scalar>(std::span<const Parameter<Scalar>>(params));
      }
    } else {
      ++state.since_best;
    }
    state.next_epoch = epoch + 1;
    if (options.callback && !options.callback(rec)) {
      history.stopped_early = true;
      break;
    }
    if (options.patience > 0 && state.since_best >= options.patience) {
      history.stopped_early = true;
      break;
    }
    if (epoch + 1 < options.epochs) after_epoch(static_cast<const LoopState<Scalar>&>(state));
  }
  if (!state.best_weights.empty() && history.best_epoch != Index(history.loss.size())) {
    const auto params = model.parameters();
    for (std::size_t k = 0; k < params.size(); ++k)
      std::copy(state.best_weights[k].begin(), state.best_weights[k].end(), params[k].value);
  }
  opt.set_learning_rate(lr0);
  return history;
}

/// The epoch loop on one machine (Estimator::fit). Y (and Yv) are targets in the engine's
/// layout (rows x n).
template <class Model, class Derived, class Optimizer>
History fit_loop(Model& model, const Eigen::MatrixBase<Derived>& X, const Matrix<typename Model::Scalar>& Y,
                 const Eigen::MatrixXd* Xv, const Matrix<typename Model::Scalar>* Yv, Optimizer& opt,
                 const FitOptions& options, std::uint64_t seed) {
  LocalBatches<Model, Derived> batches(model, X, Y, Xv, Yv);
  LoopState<typename Model::Scalar> state;
  return run_epochs(model, batches, opt, options, seed, state, [](const auto&) {});
}

}  // namespace nmsnn::detail
