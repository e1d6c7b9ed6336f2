// nmsnn/network/estimator.hpp — what every network of the library offers its users, written
// once (CRTP): input validation, fit (mini-batches, validation data or fraction, target
// standardisation for regression), predict, predict_proba, evaluate and score. A network
// (SpikingNetwork, DenseNetwork) supplies its engine: inputs(), outputs(), seed(),
// parameters(), forward_batch() for inference, and forward_train() / backward_batch() for a
// training step.
#pragma once

#include <cstdint>
#include <numeric>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/encoders/input_encoder.hpp"
#include "nmsnn/optim/optimizers.hpp"
#include "nmsnn/preprocessing/preprocessing.hpp"
#include "nmsnn/tasks/tasks.hpp"
#include "nmsnn/train/fit_options.hpp"
#include "nmsnn/train/trainer.hpp"

namespace nmsnn {

/// What an engine's step() did: the loss, and whether the step was refused (guarded_step's
/// rules: a non-finite loss or gradient refuses it before the update; a non-finite updated
/// weight after it, the optimiser's state then advanced as on the CPU).
struct StepOutcome {
  enum class Status { ok, bad_loss, bad_gradient, bad_weights };
  double loss = 0;
  Status status = Status::ok;
  double bad_gradient = 0;  // the first non-finite gradient (bad_gradient)
};

/// Another engine for a network's training passes (the GPU path of nmsnn/cuda.hpp implements
/// it; set_engine on SpikingNetwork and DenseNetwork). forward() returns the network's output
/// (outputs x B) and keeps what backward() needs; backward() writes every parameter's
/// gradient. A dense network with batch norm asks batch_statistics() after forward() for
/// the batch's mean and (biased) variance of layer l's units, to update its running ones.
template <class Net>
class ExternalEngine {
 public:
  using Scalar = typename Net::Scalar;
  virtual ~ExternalEngine() = default;
  virtual Matrix<Scalar> forward(const Net& net, const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key) = 0;
  virtual void backward(Net& net, const Matrix<Scalar>& Xb, const std::uint32_t* ids, DrawKey key,
                        const Matrix<Scalar>& output_grad) = 0;
  /// False when the last forward() used no batch statistics for layer l.
  virtual bool batch_statistics(Index /*l*/, Vector<double>& /*mean*/, Vector<double>& /*var*/) const { return false; }
  /// Whether step() is available.
  virtual bool can_step() const { return false; }
  /// After forward(), the rest of a training step on the engine's device: the task's loss and
  /// its gradient (targets Yb in engine layout, optional class weights), backward, the finite
  /// checks and the optimiser's update (rule, whose state arrays it reads and writes back);
  /// then the network's parameters are the updated ones (unchanged when refused). The
  /// gradients stay on the device. Estimator::train_and_update uses it.
  virtual StepOutcome step(Net& /*net*/, const Matrix<Scalar>& /*Yb*/, const std::vector<double>* /*class_weights*/,
                           const UpdateRule<Scalar>& /*rule*/) {
    throw Error("ExternalEngine::step: this engine has no device step");
  }
};

template <class Derived, class Task, class ScalarT>
class Estimator {
 public:
  using Scalar = ScalarT;
  using TaskT = Task;

  /// Number of classes (classifiers) or 0 (regression).
  Index classes() const { return Task::classes(self().outputs()); }

  // --- training ----------------------------------------------------------------------
  /// Loss of the batch (X: n x inputs, y: labels or n x outputs targets) and the gradients
  /// of every parameter. Uses fresh random draws (masks, dropout).
  template <class DX, class DY>
  double compute_gradients(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y);

  /// compute_gradients, then one optimiser step. Throws NumericalError, weights untouched,
  /// when the loss or a gradient is not finite.
  template <class DX, class DY, class Optimizer>
  double train_step(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y, Optimizer& opt);

  /// Mini-batch training; returns the per-epoch history (loss, metric, validation figures,
  /// times). Regression targets are standardised for training (options.standardize_targets)
  /// and predictions mapped back; the history's losses are then in standardised units.
  template <class DX, class DY, class Optimizer>
  History fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y, Optimizer& opt,
              const FitOptions& options = {});
  /// The same with explicit validation data.
  template <class DX, class DY, class DXV, class DYV, class Optimizer>
  History fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y, const Eigen::MatrixBase<DXV>& X_val,
              const Eigen::MatrixBase<DYV>& y_val, Optimizer& opt, const FitOptions& options = {});

  /// Regression targets' standardisation: y_model = (y - offset) / scale (identity when unset).
  const Eigen::RowVectorXd& target_offset() const { return target_offset_; }
  const Eigen::RowVectorXd& target_scale() const { return target_scale_; }
  void set_target_scaling(Eigen::RowVectorXd offset, Eigen::RowVectorXd scale);

  // --- inference (deterministic: draws keyed by the row index and a fixed stream) -------
  /// The raw output (n x outputs): logits for classifiers, model-unit values for regression.
  template <class DX>
  Matrix<Scalar> decision_function(const Eigen::MatrixBase<DX>& X) const;
  /// Labels (classifiers) or values n x outputs (regression).
  template <class DX>
  auto predict(const Eigen::MatrixBase<DX>& X) const;
  /// Class probabilities, n x classes (binary: columns P(0), P(1)).
  template <class DX>
  Matrix<Scalar> predict_proba(const Eigen::MatrixBase<DX>& X) const
    requires(Task::is_classifier);
  /// Mean loss on (X, y) without training (regression: in target units).
  template <class DX, class DY>
  double evaluate(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const;
  /// Accuracy (classifiers) or R² (regression), as scikit-learn's score.
  template <class DX, class DY>
  double score(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const;

  /// Loss and gradients of a batch in engine layout (Xb: inputs x B, Yb: target rows x B):
  /// the network's forward_train, the task's loss, the network's backward_batch. Optionally
  /// the readout (outputs x B) and per-class loss weights.
  double train_batch(const Matrix<Scalar>& Xb, const Matrix<Scalar>& Yb, const std::uint32_t* ids,
                     std::uint32_t stream, Matrix<Scalar>* readout = nullptr,
                     const std::vector<double>* class_weights = nullptr) {
    const DrawKey key{self().seed(), stream};
    const Matrix<Scalar> R = self().forward_train(Xb, ids, key);
    Matrix<Scalar> G;
    const double loss = Task::loss(R, Yb, &G, class_weights);
    self().backward_batch(Xb, ids, key, G);
    if (readout) *readout = R;
    return loss;
  }
  /// One guarded training step on a batch in engine layout: train_batch and guarded_model_step,
  /// or, when the network's engine can (ExternalEngine::step) and the optimiser gives its
  /// update as data (update_rule), forward_train and the engine's step: loss, backward and
  /// update on the engine's device. Throws NumericalError as guarded_step (where: the context).
  template <class Optimizer>
  double train_and_update(const Matrix<Scalar>& Xb, const Matrix<Scalar>& Yb, const std::uint32_t* ids, std::uint32_t stream,
                          Optimizer& opt, std::string_view where, Matrix<Scalar>* readout = nullptr,
                          const std::vector<double>* class_weights = nullptr);
  /// Loss and metric on validation rows (targets in engine layout, model units).
  std::pair<double, double> validation_loss_metric(const Eigen::MatrixXd& X, const Matrix<Scalar>& Y,
                                                   const std::vector<double>* class_weights) const;
  /// The stream id of the next training pass (each pass draws fresh random numbers).
  std::uint32_t next_stream() { return stream_counter_++; }
  /// The training passes made so far (the next pass's stream id); a checkpoint saves it and
  /// set_stream_counter puts it back, so a resumed fit draws what the uninterrupted one would.
  std::uint32_t stream_counter() const { return stream_counter_; }
  void set_stream_counter(std::uint32_t c) { stream_counter_ = c; }
  /// What fit does to the targets (engine layout) before training: refuses classification
  /// labels of one class; for regression, standardises Y (and Yv) on Y's rows
  /// (options.standardize_targets) and sets the target scaling. Distributed fits call it on
  /// the targets every rank holds.
  void prepare_training_targets(Matrix<Scalar>& Y, Matrix<Scalar>* Yv, const FitOptions& options);
  /// Bytes a fit allocates (estimate, saturating): a batch's buffers (workspace_bytes), the
  /// gradients, `optimizer_slots` arrays of optimiser state per parameter, the rollback and
  /// best-weights copies, the per-epoch readouts and targets of `rows` training rows, the
  /// `copied_rows` rows of features that fit copies as doubles (the validation split) and the
  /// validation readout.
  std::size_t fit_memory_bytes(Index batch, Index rows, Index validation_rows, Index copied_rows, int optimizer_slots,
                               bool restore_best) const;
  /// Throws ResourceError when `need` bytes exceed limit (0: none).
  void check_memory(std::size_t need, std::size_t limit, std::string_view where, std::string_view what) const;
  /// Stream of inference passes.
  static constexpr std::uint32_t predict_stream = 0xFFFFFFFFu;
  /// Rows of one inference batch (predict, validation).
  static constexpr Index predict_batch = 256;

 protected:
  Derived& self() { return static_cast<Derived&>(*this); }
  const Derived& self() const { return static_cast<const Derived&>(*this); }

  template <class DX>
  void check_features(const Eigen::MatrixBase<DX>& X, std::string_view where) const;
  template <class DX, class DY>
  Matrix<Scalar> check_and_encode(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                  std::string_view where) const;
  template <class DX>
  Matrix<Scalar> readout_rows(const Eigen::MatrixBase<DX>& X) const;  // outputs x n
  /// Readout mapped to target units (regression), outputs x n.
  template <class DX>
  Matrix<Scalar> prediction_rows(const Eigen::MatrixBase<DX>& X) const;
  template <class DX, class Optimizer>
  History fit_encoded(const Eigen::MatrixBase<DX>& X, Matrix<Scalar> Y, const Eigen::MatrixXd* Xv, Matrix<Scalar>* Yv,
                      Optimizer& opt, const FitOptions& options);
  void check_class_weights(const FitOptions& options) const;

  Eigen::RowVectorXd target_offset_, target_scale_;
  std::uint32_t stream_counter_ = 0;
};

template <class Derived, class Task, class S>
std::pair<double, double> Estimator<Derived, Task, S>::validation_loss_metric(
    const Eigen::MatrixXd& X, const Matrix<S>& Y, const std::vector<double>* class_weights) const {
  const Matrix<S> R = readout_rows(X);
  return {Task::loss(R, Y, static_cast<Matrix<S>*>(nullptr), class_weights), Task::metric(R, Y)};
}

template <class Derived, class Task, class S>
void Estimator<Derived, Task, S>::set_target_scaling(Eigen::RowVectorXd offset, Eigen::RowVectorXd scale) {
  if (offset.size() == 0 && scale.size() == 0) {
    target_offset_.resize(0);
    target_scale_.resize(0);
    return;
  }
  if (offset.size() != self().outputs() || scale.size() != self().outputs())
    detail::raise<ShapeError>("set_target_scaling: expected ", self().outputs(), " offsets and scales");
  if (!offset.allFinite() || !scale.allFinite() || (scale.array() <= 0).any())
    detail::raise<ValueError>("set_target_scaling: offsets must be finite and scales finite and > 0");
  target_offset_ = std::move(offset);
  target_scale_ = std::move(scale);
}

template <class Derived, class Task, class S>
template <class DX>
void Estimator<Derived, Task, S>::check_features(const Eigen::MatrixBase<DX>& X, std::string_view where) const {
  if (X.rows() < 1) detail::raise<ShapeError>(where, ": X has no rows (empty batch)");
  if (X.cols() != self().inputs())
    detail::raise<ShapeError>(where, ": X must have ", self().inputs(), " columns (features), found ", X.cols());
  detail::require_finite(X, where, "X");
}

template <class Derived, class Task, class S>
template <class DX, class DY>
Matrix<S> Estimator<Derived, Task, S>::check_and_encode(const Eigen::MatrixBase<DX>& X,
                                                    const Eigen::MatrixBase<DY>& y,
                                                    std::string_view where) const {
  check_features(X, where);
  const Index rows = (y.cols() == 1 || (y.rows() == 1 && X.rows() != 1)) ? y.size() : y.rows();
  if (rows != X.rows())
    detail::raise<ShapeError>(where, ": X has ", X.rows(), " rows but y has ", rows);
  return Task::template encode_targets<S>(y, self().outputs());
}

template <class Derived, class Task, class S>
template <class DX, class DY>
double Estimator<Derived, Task, S>::compute_gradients(const Eigen::MatrixBase<DX>& X,
                                                  const Eigen::MatrixBase<DY>& y) {
  const Matrix<S> Y = check_and_encode(X, y, "compute_gradients");
  const Matrix<S> Xb = X.transpose().template cast<S>();
  std::vector<std::uint32_t> ids(static_cast<std::size_t>(X.rows()));
  std::iota(ids.begin(), ids.end(), 0u);
  return self().train_batch(Xb, Y, ids.data(), next_stream());
}

template <class Derived, class Task, class S>
template <class DX, class DY, class Optimizer>
double Estimator<Derived, Task, S>::train_step(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                           Optimizer& opt) {
  static_assert(OptimizerFor<Optimizer, S>, "train_step: the optimiser needs step(span<const Parameter>)");
  const Matrix<S> Y = check_and_encode(X, y, "train_step");
  const Matrix<S> Xb = X.transpose().template cast<S>();
  std::vector<std::uint32_t> ids(static_cast<std::size_t>(X.rows()));
  std::iota(ids.begin(), ids.end(), 0u);
  return train_and_update(Xb, Y, ids.data(), next_stream(), opt, "train_step");
}

template <class Derived, class Task, class S>
template <class Optimizer>
double Estimator<Derived, Task, S>::train_and_update(const Matrix<S>& Xb, const Matrix<S>& Yb, const std::uint32_t* ids,
                                                     std::uint32_t stream, Optimizer& opt, std::string_view where,
                                                     Matrix<S>* readout, const std::vector<double>* class_weights) {
  if constexpr (UpdateAsData<Optimizer, S>) {
    const auto& engine = self().engine();
    if (engine && engine->can_step()) {
      const DrawKey key{self().seed(), stream};
      Matrix<S> R = self().forward_train(Xb, ids, key);
      try {
        const auto params = self().parameters();
        const StepOutcome out = engine->step(self(), Yb, class_weights,
                                             opt.template update_rule<S>(std::span<const Parameter<S>>(params)));
        switch (out.status) {
          case StepOutcome::Status::ok: opt.count_step(); break;
          case StepOutcome::Status::bad_loss: detail::diverged_loss(where, out.loss);
          case StepOutcome::Status::bad_gradient: detail::diverged_gradient(where, out.bad_gradient);
          case StepOutcome::Status::bad_weights: opt.count_step(); detail::diverged_weights(where);
        }
        if (readout) *readout = std::move(R);
        return out.loss;
      } catch (const NumericalError&) {
        if constexpr (requires { self().rollback_step(); }) self().rollback_step();
        throw;
      }
    }
  }
  const double loss = train_batch(Xb, Yb, ids, stream, readout, class_weights);
  detail::guarded_model_step(self(), opt, loss, where);
  return loss;
}

template <class Derived, class Task, class S>
template <class DX, class DY, class Optimizer>
History Estimator<Derived, Task, S>::fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                     Optimizer& opt, const FitOptions& fo) {
  static_assert(OptimizerFor<Optimizer, S>, "fit: the optimiser needs step(span<const Parameter>)");
  fo.validate();
  Matrix<S> Y = check_and_encode(X, y, "fit");
  check_class_weights(fo);
  {
    // The resource guard, before the copies and buffers are made.
    const Index n = X.rows();
    const Index nv = fo.validation_fraction > 0 ? detail::test_rows(n, fo.validation_fraction) : 0;
    check_memory(fit_memory_bytes(std::min<Index>(fo.batch_size, n - nv), n - nv, nv, nv > 0 ? 2 * n : 0,
                                  detail::optimizer_slots(opt), fo.restore_best),
                 fo.memory_limit ? *fo.memory_limit : memory_limit(), "fit", "training");
  }
  if (fo.validation_fraction > 0) {
    const std::uint64_t seed = fo.seed ? *fo.seed : self().seed();
    Labels strata;
    if constexpr (Task::is_classifier) strata = Y.row(0).transpose().template cast<int>();
    const Split split = train_test_split(X.rows(), fo.validation_fraction, seed, Task::is_classifier ? &strata : nullptr);
    Eigen::MatrixXd Xt, Xv;
    {
      const Eigen::MatrixXd Xd = X.template cast<double>();
      Xt = take_rows(Xd, split.train);
      Xv = take_rows(Xd, split.test);
    }
    Matrix<S> Yt(Y.rows(), Index(split.train.size())), Yv(Y.rows(), Index(split.test.size()));
    for (std::size_t i = 0; i < split.train.size(); ++i) Yt.col(Index(i)) = Y.col(split.train[i]);
    for (std::size_t i = 0; i < split.test.size(); ++i) Yv.col(Index(i)) = Y.col(split.test[i]);
    return fit_encoded(Xt, std::move(Yt), &Xv, &Yv, opt, fo);
  }
  return fit_encoded(X, std::move(Y), nullptr, nullptr, opt, fo);
}

template <class Derived, class Task, class S>
template <class DX, class DY, class DXV, class DYV, class Optimizer>
History Estimator<Derived, Task, S>::fit(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y,
                                     const Eigen::MatrixBase<DXV>& X_val, const Eigen::MatrixBase<DYV>& y_val,
                                     Optimizer& opt, const FitOptions& fo) {
  static_assert(OptimizerFor<Optimizer, S>, "fit: the optimiser needs step(span<const Parameter>)");
  fo.validate();
  Matrix<S> Y = check_and_encode(X, y, "fit");
  Matrix<S> Yv = check_and_encode(X_val, y_val, "fit (validation data)");
  check_class_weights(fo);
  check_memory(fit_memory_bytes(std::min<Index>(fo.batch_size, X.rows()), X.rows(), X_val.rows(), X_val.rows(),
                                detail::optimizer_slots(opt), fo.restore_best),
               fo.memory_limit ? *fo.memory_limit : memory_limit(), "fit", "training");
  Eigen::MatrixXd Xv = X_val.template cast<double>();
  return fit_encoded(X, std::move(Y), &Xv, &Yv, opt, fo);
}

template <class Derived, class Task, class S>
void Estimator<Derived, Task, S>::check_class_weights(const FitOptions& fo) const {
  if (fo.class_weights.empty()) return;
  if constexpr (!Task::is_classifier) detail::raise<ValueError>("fit: class weights apply to classifiers only");
  if (Index(fo.class_weights.size()) != classes())
    detail::raise<ValueError>("fit: expected ", classes(), " class weights, found ", fo.class_weights.size());
}

template <class Derived, class Task, class S>
template <class DX, class Optimizer>
History Estimator<Derived, Task, S>::fit_encoded(const Eigen::MatrixBase<DX>& X, Matrix<S> Y, const Eigen::MatrixXd* Xv,
                                             Matrix<S>* Yv, Optimizer& opt, const FitOptions& fo) {
  prepare_training_targets(Y, Yv, fo);
  return detail::allocating("fit", "allocating the training buffers, gradients and optimiser state", [&] {
    return detail::fit_loop(self(), X, Y, Xv, Yv, opt, fo, fo.seed ? *fo.seed : self().seed());
  });
}

template <class Derived, class Task, class S>
void Estimator<Derived, Task, S>::prepare_training_targets(Matrix<S>& Y, Matrix<S>* Yv, const FitOptions& fo) {
  if constexpr (Task::is_classifier) {
    // A classifier cannot learn from one class: say so rather than return a constant model.
    if ((Y.row(0).array() == Y(0, 0)).all())
      detail::raise<ValueError>("fit: every training label is class ", Index(Y(0, 0)),
                                "; a classifier needs at least two classes");
  }
  if constexpr (!Task::is_classifier) {
    // Standardise the targets on the training rows: the model learns (y - mean) / (3 sd).
    // The factor 3 keeps ±3 sd inside the range a neuron's inner state holds below its
    // threshold (θ = 1): the readout averages states that reset once they cross it.
    if (fo.standardize_targets) {
      const Eigen::MatrixXd Yd = Y.template cast<double>();
      Eigen::RowVectorXd mean = Yd.rowwise().mean().transpose();
      Eigen::RowVectorXd sd = ((Yd.colwise() - mean.transpose()).array().square().rowwise().sum() / double(Yd.cols()))
                                  .sqrt()
                                  .transpose();
      for (Index k = 0; k < sd.size(); ++k) sd(k) = sd(k) > 0 ? 3.0 * sd(k) : 1.0;
      set_target_scaling(mean, sd);
    } else {
      set_target_scaling({}, {});
    }
    if (target_offset_.size()) {
      for (Index k = 0; k < Y.rows(); ++k) {
        Y.row(k) = ((Y.row(k).template cast<double>().array() - target_offset_(k)) / target_scale_(k)).template cast<S>();
        if (Yv)
          Yv->row(k) = ((Yv->row(k).template cast<double>().array() - target_offset_(k)) / target_scale_(k)).template cast<S>();
      }
    }
  }
}

template <class Derived, class Task, class S>
std::size_t Estimator<Derived, Task, S>::fit_memory_bytes(Index batch, Index rows, Index validation_rows, Index copied_rows,
                                                          int optimizer_slots, bool restore_best) const {
  using detail::sat_add, detail::sat_mul, detail::sat_prod, detail::to_size;
  const std::size_t P = to_size(self().parameter_count()), F = to_size(self().inputs()), K = to_size(self().outputs());
  const std::size_t n = to_size(rows), nv = to_size(validation_rows);
  // Gradients, optimiser state, the rollback copy of a guarded step, the best weights.
  std::size_t scalars = sat_mul(P, to_size(2 + optimizer_slots + (restore_best ? 1 : 0)));
  scalars = sat_add(scalars, sat_prod(2 * K, n));                     // the epoch's readouts and targets
  scalars = sat_add(scalars, sat_add(sat_prod(F, to_size(batch)), sat_prod(2 * K, to_size(batch))));  // a batch
  scalars = sat_add(scalars, sat_prod(K, nv));                         // the validation readout
  std::size_t bytes = sat_add(sat_mul(scalars, sizeof(S)), self().workspace_bytes(batch));
  if (validation_rows > 0)  // validation's prediction batches
    bytes = sat_add(bytes, self().workspace_bytes(std::min<Index>(validation_rows, predict_batch)));
  bytes = sat_add(bytes, sat_prod(F, to_size(copied_rows), sizeof(double)));  // fit's copies of the features
  return bytes;
}

template <class Derived, class Task, class S>
void Estimator<Derived, Task, S>::check_memory(std::size_t need, std::size_t limit, std::string_view where,
                                               std::string_view what) const {
  detail::check_memory_need(need, limit, where, what,
                            "use a smaller batch_size or time_steps, or raise FitOptions::memory_limit or nmsnn::set_memory_limit");
}

template <class Derived, class Task, class S>
template <class DX>
Matrix<S> Estimator<Derived, Task, S>::readout_rows(const Eigen::MatrixBase<DX>& X) const {
  check_features(X, "predict");
  const Index n = X.rows();
  const Index batch = predict_batch;
  using detail::sat_add, detail::sat_prod, detail::to_size;
  check_memory(sat_add(self().workspace_bytes(std::min(batch, n)),
                       sat_prod(to_size(self().outputs()) + to_size(self().inputs()), to_size(n), sizeof(S))),
               memory_limit(), "predict", "the readout and the buffers of a batch");
  Matrix<S> R(self().outputs(), n);
  std::vector<std::uint32_t> ids;
  for (Index begin = 0; begin < n; begin += batch) {
    const Index count = std::min(batch, n - begin);
    const Matrix<S> Xb = X.middleRows(begin, count).transpose().template cast<S>();
    ids.resize(std::size_t(count));
    std::iota(ids.begin(), ids.end(), std::uint32_t(begin));
    R.middleCols(begin, count) = self().forward_batch(Xb, ids.data(), DrawKey{self().seed(), predict_stream});
  }
  // Finite weights can still overflow (|w| near FLT_MAX): never a NaN probability or prediction.
  if (!R.allFinite())
    for (Index i = 0; i < n; ++i)
      if (!R.col(i).allFinite())
        detail::raise<NumericalError>("predict: the model's output for row ", i, " is not finite (", R.col(i).transpose(),
                                      "): its weights overflow on this input");
  return R;
}

template <class Derived, class Task, class S>
template <class DX>
Matrix<S> Estimator<Derived, Task, S>::prediction_rows(const Eigen::MatrixBase<DX>& X) const {
  Matrix<S> R = readout_rows(X);
  if (target_offset_.size())
    for (Index k = 0; k < R.rows(); ++k)
      R.row(k) = (R.row(k).template cast<double>().array() * target_scale_(k) + target_offset_(k)).template cast<S>();
  return R;
}

template <class Derived, class Task, class S>
template <class DX>
Matrix<S> Estimator<Derived, Task, S>::decision_function(const Eigen::MatrixBase<DX>& X) const {
  return readout_rows(X).transpose();
}

template <class Derived, class Task, class S>
template <class DX>
auto Estimator<Derived, Task, S>::predict(const Eigen::MatrixBase<DX>& X) const {
  if constexpr (Task::is_classifier) return Task::labels(readout_rows(X));
  else return Matrix<S>(prediction_rows(X).transpose());
}

template <class Derived, class Task, class S>
template <class DX>
Matrix<S> Estimator<Derived, Task, S>::predict_proba(const Eigen::MatrixBase<DX>& X) const
  requires(Task::is_classifier)
{
  return Task::probabilities(readout_rows(X));
}

template <class Derived, class Task, class S>
template <class DX, class DY>
double Estimator<Derived, Task, S>::evaluate(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const {
  const Matrix<S> Y = check_and_encode(X, y, "evaluate");
  return Task::loss(prediction_rows(X), Y, static_cast<Matrix<S>*>(nullptr));
}

template <class Derived, class Task, class S>
template <class DX, class DY>
double Estimator<Derived, Task, S>::score(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DY>& y) const {
  const Matrix<S> Y = check_and_encode(X, y, "score");
  return Task::metric(prediction_rows(X), Y);
}


}  // namespace nmsnn
