// nmsnn/readout/output_reducer.hpp — the readout (MODEL.md "The network"): the inner state
// that the last layer emits, reduced over steps begin_eval .. T-1 by sum or mean.
//
// The layer emits v_{t-1} at step t, so the reduced states are v_t for
// t = max(begin_eval - 1, 0) .. T-2 (the zeros emitted at step 0 add nothing).
#pragma once

#include <algorithm>
#include <string_view>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"

namespace nmsnn {

/// How the readout reduces what the last layer emits over steps begin_eval .. T-1: sum or mean
/// (any layer; a spiking layer's count or rate), or, for a membrane readout (an li output
/// layer, neurons/neuron_options.hpp), max or last (the membrane at step T-1).
enum class Readout { sum, mean, max, last };

inline std::string_view to_string(Readout r) {
  switch (r) {
    case Readout::sum: return "sum";
    case Readout::mean: return "mean";
    case Readout::max: return "max";
    case Readout::last: return "last";
  }
  return "?";
}

inline Readout parse_readout(std::string_view s) {
  if (s == "sum") return Readout::sum;
  if (s == "mean") return Readout::mean;
  if (s == "max") return Readout::max;
  if (s == "last") return Readout::last;
  detail::raise<ValueError>("readout: expected sum, mean, max or last, found '", s, "'");
}

/// Whether the readout reduces a membrane (max, last), which only an li output layer emits.
inline bool reduces_membrane(Readout r) { return r == Readout::max || r == Readout::last; }

template <FloatingScalar Scalar = float>
class OutputReducer {
 public:
  OutputReducer() = default;
  OutputReducer(Readout kind, Index time_steps, Index begin_eval)
      : kind_(kind), time_steps_(time_steps), begin_eval_(begin_eval) {
    if (time_steps < 1)
      detail::raise<ValueError>("time_steps must be >= 1, found ", time_steps);
    if (begin_eval < 0 || begin_eval >= time_steps)
      detail::raise<ValueError>("begin_eval must be in 0..time_steps-1 = 0..", time_steps - 1,
                                ", found ", begin_eval);
  }

  Readout kind() const { return kind_; }
  Index time_steps() const { return time_steps_; }
  Index begin_eval() const { return begin_eval_; }

  /// First and last index t of the inner states v_t that the readout reduces (empty when
  /// first > last, which happens only for T = 1).
  Index first_state() const { return std::max<Index>(begin_eval_ - 1, 0); }
  Index last_state() const { return time_steps_ - 2; }

  /// Factor applied to the accumulated sum: 1 (sum) or 1 / (T - begin_eval) (mean). The same
  /// factor multiplies the readout gradient on its way back to each v_t.
  Scalar scale() const {
    return kind_ != Readout::mean ? Scalar(1) : Scalar(1) / Scalar(time_steps_ - begin_eval_);
  }

 private:
  Readout kind_ = Readout::sum;
  Index time_steps_ = 1;
  Index begin_eval_ = 0;
};

}  // namespace nmsnn
