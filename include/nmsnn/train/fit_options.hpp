// nmsnn/train/fit_options.hpp — the options of fit() and the history it returns, shared by
// every network of the library.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"

namespace nmsnn {

struct FitOptions {
  Index epochs = 10;
  /// Samples per mini-batch. A batch size larger than the data gives one batch of all rows.
  Index batch_size = 64;
  bool shuffle = true;
  /// Seed of the shuffles; the network's own seed when unset.
  std::optional<std::uint64_t> seed = std::nullopt;
  /// Threads for this call (0: keep the current setting). Results do not depend on it.
  int threads = 0;

  void validate() const {
    if (epochs < 0) detail::raise<ValueError>("fit: epochs must be >= 0, found ", epochs);
    if (batch_size < 1) detail::raise<ValueError>("fit: batch_size must be >= 1, found ", batch_size);
    if (threads < 0) detail::raise<ValueError>("fit: threads must be >= 0, found ", threads);
  }
};

/// Per-epoch record of a fit() call.
struct History {
  std::vector<double> loss;     ///< mean training loss over the epoch's samples
  std::vector<double> seconds;  ///< wall time of each epoch
};

}  // namespace nmsnn
