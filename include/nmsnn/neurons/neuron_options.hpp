// nmsnn/neurons/neuron_options.hpp — what a layer's neurons are (MODEL.md): the neuron model
// (pynmsnn's graded neuron, the default, or the LIF family's Leaky and Synaptic), its reset, its
// constants and, for the LIF family, its surrogate gradient and which constants are learnt.
#pragma once

#include <cmath>
#include <string_view>

#include "nmsnn/core/errors.hpp"

namespace nmsnn {

/// How a neuron's state is reset when it fires. The graded neuron takes scale (pynmsnn's
/// library code, its default) or subtract (MODEL.md "One spiking layer"); the LIF family takes
/// subtract (snnTorch's default), zero or none (MODEL.md "Step equations").
enum class Reset { scale, subtract, zero, none };

inline std::string_view to_string(Reset r) {
  switch (r) {
    case Reset::scale: return "scale";
    case Reset::subtract: return "subtract";
    case Reset::zero: return "zero";
    case Reset::none: return "none";
  }
  return "?";
}

inline Reset parse_reset(std::string_view s) {
  if (s == "scale") return Reset::scale;
  if (s == "subtract") return Reset::subtract;
  if (s == "zero") return Reset::zero;
  if (s == "none") return Reset::none;
  detail::raise<ValueError>("reset: expected scale, subtract, zero or none, found '", s, "'");
}

/// Which neuron a layer is made of: pynmsnn's graded neuron (MODEL.md, the default), the LIF
/// family's binary-spike Leaky or Synaptic neuron, or its non-spiking leaky integrator (NIR's
/// LI: the membrane itself is the output; the usual output layer for a membrane readout).
enum class NeuronModel { graded, leaky, synaptic, li };

inline std::string_view to_string(NeuronModel m) {
  switch (m) {
    case NeuronModel::graded: return "graded";
    case NeuronModel::leaky: return "leaky";
    case NeuronModel::synaptic: return "synaptic";
    case NeuronModel::li: return "li";
  }
  return "?";
}

inline NeuronModel parse_neuron_model(std::string_view s) {
  if (s == "graded") return NeuronModel::graded;
  if (s == "leaky") return NeuronModel::leaky;
  if (s == "synaptic") return NeuronModel::synaptic;
  if (s == "li") return NeuronModel::li;
  detail::raise<ValueError>("neuron: expected graded, leaky, synaptic or li, found '", s, "'");
}

/// The derivative that backward uses in place of the Heaviside step's (MODEL.md "Surrogate
/// gradients").
enum class Surrogate { atan, fast_sigmoid, sigmoid, straight_through };

inline std::string_view to_string(Surrogate s) {
  switch (s) {
    case Surrogate::atan: return "atan";
    case Surrogate::fast_sigmoid: return "fast_sigmoid";
    case Surrogate::sigmoid: return "sigmoid";
    case Surrogate::straight_through: return "straight_through";
  }
  return "?";
}

inline Surrogate parse_surrogate(std::string_view s) {
  if (s == "atan") return Surrogate::atan;
  if (s == "fast_sigmoid" || s == "fast-sigmoid") return Surrogate::fast_sigmoid;
  if (s == "sigmoid") return Surrogate::sigmoid;
  if (s == "straight_through" || s == "straight-through") return Surrogate::straight_through;
  detail::raise<ValueError>("surrogate: expected atan, fast_sigmoid, sigmoid or straight_through, found '", s, "'");
}

/// The surrogate's parameter when none is given: atan's α = 2, the sigmoids' slope k = 25
/// (snnTorch's defaults); straight-through has none.
inline double default_slope(Surrogate s) {
  switch (s) {
    case Surrogate::atan: return 2.0;
    case Surrogate::fast_sigmoid:
    case Surrogate::sigmoid: return 25.0;
    case Surrogate::straight_through: return 0.0;
  }
  return 0.0;
}

/// Neuron settings of one layer. The defaults are pynmsnn's graded neuron (MODEL.md); for the
/// LIF family start from NeuronOptions::leaky() or NeuronOptions::synaptic(), which set the
/// reset to subtract (the graded neuron's default reset, scale, has no LIF meaning and is
/// refused there).
struct NeuronOptions {
  NeuronModel model = NeuronModel::graded;
  double decay = 0.9;      ///< λ (graded) or β (LIF): fraction of the state kept from one step to the next
  double threshold = 1.0;  ///< θ: the graded neuron fires when u_t > θ, a LIF neuron when M_t > θ
  double penalty = 1.5;    ///< ρ: the graded neuron's refractory penalty (unused by the LIF family)
  Reset reset = Reset::scale;
  double alpha = 0.8;      ///< α: the synaptic current's decay (Synaptic only)
  Surrogate surrogate = Surrogate::atan;  ///< LIF family: the spike's derivative in backward
  double slope = 0;        ///< the surrogate's parameter (atan's α, the sigmoids' k); 0: its default
  bool learn_decay = false;      ///< LIF family: β is a trained per-neuron parameter
  bool learn_alpha = false;      ///< Synaptic: α is a trained per-neuron parameter
  bool learn_threshold = false;  ///< LIF family: θ is a trained per-neuron parameter

  static NeuronOptions leaky(double beta = 0.9, double threshold = 1.0, Reset reset = Reset::subtract) {
    NeuronOptions o;
    o.model = NeuronModel::leaky, o.decay = beta, o.threshold = threshold, o.reset = reset;
    return o;
  }
  static NeuronOptions synaptic(double alpha = 0.8, double beta = 0.9, double threshold = 1.0,
                                Reset reset = Reset::subtract) {
    NeuronOptions o = leaky(beta, threshold, reset);
    o.model = NeuronModel::synaptic, o.alpha = alpha;
    return o;
  }
  /// The non-spiking leaky integrator: M_t = β M_{t-1} + I_t, emitted as it is (no threshold,
  /// no reset).
  static NeuronOptions li(double beta = 0.9) {
    NeuronOptions o = leaky(beta, 1.0, Reset::none);
    o.model = NeuronModel::li;
    return o;
  }

  /// The LIF family (leaky, synaptic, li): per-neuron constants, emission at the step itself.
  bool lif_family() const { return model != NeuronModel::graded; }
  /// Whether the layer emits binary spikes (leaky, synaptic).
  bool emits_spikes() const { return model == NeuronModel::leaky || model == NeuronModel::synaptic; }
  /// The surrogate's parameter in use.
  double surrogate_slope() const { return slope > 0 ? slope : default_slope(surrogate); }

  void validate(std::string_view where) const {
    if (!std::isfinite(decay) || !std::isfinite(threshold) || !std::isfinite(penalty) || !std::isfinite(alpha) ||
        !std::isfinite(slope))
      detail::raise<ValueError>(where, ": neuron decay, threshold, penalty, alpha and slope must be finite, found ",
                                decay, ", ", threshold, ", ", penalty, ", ", alpha, ", ", slope);
    if (!(threshold > 0))
      detail::raise<ValueError>(where, ": threshold must be > 0, found ", threshold);
    if (!(decay >= 0 && decay <= 1))
      detail::raise<ValueError>(where, ": decay must be in [0, 1] (the fraction of the state kept), found ", decay);
    if (!(penalty >= 0)) detail::raise<ValueError>(where, ": penalty must be >= 0, found ", penalty);
    if (model == NeuronModel::graded) {
      if (reset != Reset::scale && reset != Reset::subtract)
        detail::raise<ValueError>(where, ": the graded neuron resets by scale or subtract, found '", to_string(reset),
                                  "' (zero and none are the LIF family's)");
      if (learn_decay || learn_alpha || learn_threshold)
        detail::raise<ValueError>(where, ": learnable decay, alpha and threshold are the LIF family's "
                                         "(neuron leaky or synaptic), not the graded neuron's");
      return;
    }
    if (model == NeuronModel::li && (reset != Reset::none || learn_threshold || learn_alpha))
      detail::raise<ValueError>(where, ": the li neuron (a leaky integrator) has no threshold, reset or synaptic "
                                       "current: reset must be none, learn_threshold and learn_alpha false");
    if (reset == Reset::scale)
      detail::raise<ValueError>(where, ": reset 'scale' is the graded neuron's; a ", to_string(model),
                                " neuron resets by subtract, zero or none (NeuronOptions::", to_string(model),
                                "() sets subtract)");
    if (!(alpha >= 0 && alpha <= 1))
      detail::raise<ValueError>(where, ": alpha must be in [0, 1] (the fraction of the synaptic current kept), found ",
                                alpha);
    if (!(slope >= 0)) detail::raise<ValueError>(where, ": surrogate slope must be >= 0 (0: the default), found ", slope);
    if (learn_alpha && model != NeuronModel::synaptic)
      detail::raise<ValueError>(where, ": a learnable alpha needs the synaptic neuron (a leaky one has no synaptic current)");
  }
};

}  // namespace nmsnn
