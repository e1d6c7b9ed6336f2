// nmsnn/train/fit_options.hpp — the options of fit() and the history it returns, shared by
// every network of the library.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"

namespace nmsnn {

/// Learning-rate schedule, applied at the start of each epoch e (0-based) of E:
/// step: lr0 * gamma^floor(e / step_size); cosine: min_lr + (lr0 - min_lr)(1 + cos(pi e / E)) / 2.
struct LrSchedule {
  enum Kind { constant, step, cosine } kind = constant;
  Index step_size = 10;
  double gamma = 0.1;
  double min_lr = 0.0;

  double rate(double lr0, Index epoch, Index epochs) const {
    switch (kind) {
      case step: return lr0 * std::pow(gamma, double(epoch / std::max<Index>(1, step_size)));
      case cosine:
        return min_lr + (lr0 - min_lr) * (1 + std::cos(3.14159265358979323846 * double(epoch) / double(std::max<Index>(1, epochs)))) / 2;
      default: return lr0;
    }
  }
};

enum class Progress { automatic, on, off };

/// What a callback sees after each epoch.
struct EpochRecord {
  Index epoch = 0;  ///< 1-based
  double loss = 0, metric = 0;
  std::optional<double> val_loss, val_metric;
  double seconds = 0, learning_rate = 0;
};

struct FitOptions {
  Index epochs = 10;
  /// Samples per mini-batch. A batch size larger than the data gives one batch of all rows.
  Index batch_size = 64;
  bool shuffle = true;
  /// Seed of the shuffles and of the validation split; the network's own seed when unset.
  std::optional<std::uint64_t> seed = std::nullopt;
  /// Threads for this call (0: keep the current setting). Results do not depend on it.
  int threads = 0;
  /// Fraction of the training rows held out for validation (stratified for classifiers),
  /// unless validation data are passed to fit explicitly.
  double validation_fraction = 0.0;
  /// Early stopping: stop after this many epochs without an improvement of the monitored
  /// loss (validation loss when there is validation data, else training loss) by more than
  /// min_delta. 0 turns it off.
  Index patience = 0;
  double min_delta = 0.0;
  /// At the end, put back the weights of the epoch with the best monitored loss.
  bool restore_best = true;
  LrSchedule schedule = {};
  /// Per-class loss weights (classifiers): the loss is sum_b w[y_b] l_b / sum_b w[y_b].
  std::vector<double> class_weights = {};
  /// Called after each epoch; return false to stop training.
  std::function<bool(const EpochRecord&)> callback = {};
  /// A progress bar on standard error: automatic shows it when standard error is a terminal.
  Progress progress = Progress::automatic;
  /// Regression: standardise the targets for training ((y - mean) / (3 sd)) and map
  /// predictions back.
  bool standardize_targets = true;
  /// Resource guard: the most bytes fit may allocate — a batch's buffers, the gradients, the
  /// optimiser's state, the copies of the data and the per-epoch arrays (default:
  /// nmsnn::memory_limit(), what the machine can give; 0: no limit). fit throws ResourceError
  /// before allocating anything when its estimate is larger.
  std::optional<std::size_t> memory_limit = std::nullopt;

  void validate() const {
    if (epochs < 0) detail::raise<ValueError>("fit: epochs must be >= 0, found ", epochs);
    if (batch_size < 1) detail::raise<ValueError>("fit: batch_size must be >= 1, found ", batch_size);
    if (threads < 0) detail::raise<ValueError>("fit: threads must be >= 0, found ", threads);
    if (!(validation_fraction >= 0 && validation_fraction < 1))
      detail::raise<ValueError>("fit: validation_fraction must be in [0, 1), found ", validation_fraction);
    if (patience < 0) detail::raise<ValueError>("fit: patience must be >= 0, found ", patience);
    if (!std::isfinite(min_delta) || min_delta < 0) detail::raise<ValueError>("fit: min_delta must be >= 0");
    if (schedule.kind == LrSchedule::step && (schedule.step_size < 1 || !(schedule.gamma > 0)))
      detail::raise<ValueError>("fit: a step schedule needs step_size >= 1 and gamma > 0");
    if (schedule.kind == LrSchedule::cosine && !(schedule.min_lr >= 0))
      detail::raise<ValueError>("fit: a cosine schedule needs min_lr >= 0");
    for (double w : class_weights)
      if (!std::isfinite(w) || w < 0) detail::raise<ValueError>("fit: class weights must be finite and >= 0");
  }
};

/// Per-epoch record of a fit() call.
struct History {
  std::vector<double> loss;        ///< mean training loss over the epoch's samples
  std::vector<double> metric;      ///< training accuracy (classifiers) or R² (regression)
  std::vector<double> val_loss;    ///< validation loss, when there is validation data
  std::vector<double> val_metric;  ///< validation accuracy or R²
  std::vector<double> seconds;     ///< wall time of each epoch
  std::vector<double> learning_rate;
  Index best_epoch = 0;            ///< 1-based epoch whose weights were kept (0: none)
  bool stopped_early = false;
};

}  // namespace nmsnn
