// nmsnn/optim/optimizers.hpp — SGD (momentum, weight decay) and Adam with PyTorch's update
// rules (MODEL.md "Initialisation and optimisers"). Optimisers see parameters and gradients
// only; their state (velocity, moments) is created on first use to match the parameters, so
// one optimiser type serves every network of the library.
#pragma once

#include <cmath>
#include <concepts>
#include <span>
#include <string_view>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"

namespace nmsnn {

/// A trainable tensor seen flat: its values and the gradient of the loss.
template <FloatingScalar Scalar>
struct Parameter {
  Scalar* value;
  const Scalar* gradient;
  Index size;
};

/// An optimiser's next update as data, for an engine that runs it on its own device
/// (ExternalEngine::step, the GPU path): the constants of this step, in the parameters' Scalar
/// as the CPU update uses them, and the optimiser's state (slots_per_parameter arrays per
/// parameter, in the parameters' order: SGD's momentum buffer, Adam's m and v), which the
/// engine reads before and writes back after its update. Sgd::update_rule and
/// Adam::update_rule make it; count_step() then records the step.
template <FloatingScalar Scalar>
struct UpdateRule {
  enum class Kind { sgd, adam };
  Kind kind = Kind::sgd;
  Scalar learning_rate = 0, momentum = 0, weight_decay = 0;  // SGD (and Adam's weight decay)
  bool decay = false;                                        // weight_decay != 0
  bool nesterov = false, first = false;                      // SGD: Nesterov; the first step (buffer = d)
  Scalar beta1 = 0, beta2 = 0, epsilon = 0;                  // Adam
  Scalar step_size = 0, bc2_sqrt = 0;                        // Adam: lr / (1 - beta1^t), sqrt(1 - beta2^t)
  int slots_per_parameter = 0;
  std::vector<Scalar*> slots;
};

namespace detail {

/// Per-parameter optimiser state for float and double networks.
class SlotStore {
 public:
  template <class Scalar>
  std::vector<Eigen::Array<Scalar, Eigen::Dynamic, 1>>& slots(std::span<const Parameter<Scalar>> params,
                                                            int per_param, std::string_view who) {
    auto& s = store<Scalar>();
    const std::size_t needed = params.size() * std::size_t(per_param);
    if (s.empty()) {
      for (const auto& p : params)
        for (int k = 0; k < per_param; ++k) s.emplace_back(Eigen::Array<Scalar, Eigen::Dynamic, 1>::Zero(p.size));
    }
    bool same = s.size() == needed;
    for (std::size_t i = 0; same && i < params.size(); ++i)
      same = s[i * per_param].size() == params[i].size;
    if (!same)
      raise<ValueError>(who, ": the parameters differ from those of earlier steps (another model?); "
                             "call reset() before using this optimiser for a new model");
    return s;
  }
  void clear() {
    f_.clear();
    d_.clear();
  }

 private:
  template <class Scalar>
  auto& store() {
    if constexpr (std::is_same_v<Scalar, float>) return f_;
    else return d_;
  }
  std::vector<Eigen::ArrayXf> f_;
  std::vector<Eigen::ArrayXd> d_;
};

inline void check_hyper(double v, bool positive, std::string_view who, std::string_view what) {
  if (!std::isfinite(v) || v < 0 || (positive && v == 0))
    raise<ValueError>(who, ": ", what, " must be a finite number ", positive ? "> 0" : ">= 0",
                      ", found ", v);
}

}  // namespace detail

struct SgdOptions {
  double learning_rate = 1e-3;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// PyTorch's SGD: d = g + wd p; buf = d on the first step, then buf = μ buf + d; p -= lr buf
/// (or p -= lr (d + μ buf) with Nesterov).
class Sgd {
 public:
  explicit Sgd(SgdOptions o = {}) : options_(o) { validate(); }

  SgdOptions& options() { return options_; }
  const SgdOptions& options() const { return options_; }
  double learning_rate() const { return options_.learning_rate; }
  void set_learning_rate(double lr) {
    options_.learning_rate = lr;
    validate();
  }
  long long steps() const { return steps_; }
  void reset() {
    state_.clear();
    steps_ = 0;
  }
  /// Sets the step count (a resumed checkpoint; its state arrays are put back through
  /// update_rule()'s slots).
  void restore_steps(long long steps) { steps_ = steps; }

  /// This step's update as data (UpdateRule), with the momentum buffers when momentum is set.
  template <FloatingScalar Scalar>
  UpdateRule<Scalar> update_rule(std::span<const Parameter<Scalar>> params) {
    validate();
    UpdateRule<Scalar> r;
    r.kind = UpdateRule<Scalar>::Kind::sgd;
    r.learning_rate = Scalar(options_.learning_rate);
    r.momentum = Scalar(options_.momentum);
    r.weight_decay = Scalar(options_.weight_decay);
    r.decay = options_.weight_decay != 0;
    r.nesterov = options_.nesterov;
    r.first = steps_ == 0;
    if (options_.momentum != 0) {
      r.slots_per_parameter = 1;
      for (auto& b : state_.slots(params, 1, "Sgd")) r.slots.push_back(b.data());
    }
    return r;
  }
  /// Records a step taken by an engine with update_rule()'s data.
  void count_step() { ++steps_; }
  /// Arrays of state per parameter (the momentum buffer, when momentum is set).
  int state_slots() const { return options_.momentum != 0 ? 1 : 0; }

  template <FloatingScalar Scalar>
  void step(std::span<const Parameter<Scalar>> params) {
    validate();
    const Scalar lr = Scalar(options_.learning_rate), mu = Scalar(options_.momentum),
                 wd = Scalar(options_.weight_decay);
    auto* slots = options_.momentum != 0 ? &state_.slots(params, 1, "Sgd") : nullptr;
    for (std::size_t i = 0; i < params.size(); ++i) {
      Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>> p(params[i].value, params[i].size);
      Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>> g(params[i].gradient, params[i].size);
      Eigen::Array<Scalar, Eigen::Dynamic, 1> d = g;
      if (options_.weight_decay != 0) d += wd * p;
      if (slots) {
        auto& buf = (*slots)[i];
        if (steps_ == 0) buf = d;
        else buf = mu * buf + d;
        if (options_.nesterov) d += mu * buf;
        else d = buf;
      }
      p -= lr * d;
    }
    ++steps_;
  }

 private:
  void validate() const {
    detail::check_hyper(options_.learning_rate, false, "Sgd", "learning_rate");
    detail::check_hyper(options_.momentum, false, "Sgd", "momentum");
    detail::check_hyper(options_.weight_decay, false, "Sgd", "weight_decay");
  }
  SgdOptions options_;
  detail::SlotStore state_;
  long long steps_ = 0;
};

struct AdamOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;
};

/// PyTorch's Adam: g += wd p; m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
/// p -= (lr / (1-β1^t)) m / (sqrt(v) / sqrt(1-β2^t) + ε).
class Adam {
 public:
  explicit Adam(AdamOptions o = {}) : options_(o) { validate(); }

  AdamOptions& options() { return options_; }
  const AdamOptions& options() const { return options_; }
  double learning_rate() const { return options_.learning_rate; }
  void set_learning_rate(double lr) {
    options_.learning_rate = lr;
    validate();
  }
  long long steps() const { return steps_; }
  void reset() {
    state_.clear();
    steps_ = 0;
  }
  /// Sets the step count (a resumed checkpoint; its state arrays are put back through
  /// update_rule()'s slots).
  void restore_steps(long long steps) { steps_ = steps; }

  /// This step's update as data (UpdateRule), with the moments m and v of every parameter.
  template <FloatingScalar Scalar>
  UpdateRule<Scalar> update_rule(std::span<const Parameter<Scalar>> params) {
    validate();
    UpdateRule<Scalar> r = constants<Scalar>(steps_ + 1);
    r.slots_per_parameter = 2;
    for (auto& a : state_.slots(params, 2, "Adam")) r.slots.push_back(a.data());
    return r;
  }
  /// Records a step taken by an engine with update_rule()'s data.
  void count_step() { ++steps_; }
  /// Arrays of state per parameter: the moments m and v.
  int state_slots() const { return 2; }

  template <FloatingScalar Scalar>
  void step(std::span<const Parameter<Scalar>> params) {
    validate();
    auto& slots = state_.slots(params, 2, "Adam");
    ++steps_;
    const UpdateRule<Scalar> c = constants<Scalar>(steps_);
    const Scalar b1 = c.beta1, b2 = c.beta2, step_size = c.step_size, bc2_sqrt = c.bc2_sqrt, eps = c.epsilon,
                 wd = c.weight_decay;
    for (std::size_t i = 0; i < params.size(); ++i) {
      Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>> p(params[i].value, params[i].size);
      Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>> g0(params[i].gradient, params[i].size);
      auto& m = slots[2 * i];
      auto& v = slots[2 * i + 1];
      if (options_.weight_decay != 0) {
        const Eigen::Array<Scalar, Eigen::Dynamic, 1> g = g0 + wd * p;
        m = b1 * m + (Scalar(1) - b1) * g;
        v = b2 * v + (Scalar(1) - b2) * g * g;
      } else {
        m = b1 * m + (Scalar(1) - b1) * g0;
        v = b2 * v + (Scalar(1) - b2) * g0 * g0;
      }
      p -= step_size * (m / (v.sqrt() / bc2_sqrt + eps));
    }
  }

 private:
  /// The constants of step t (1-based), as step() and update_rule() use them.
  template <FloatingScalar Scalar>
  UpdateRule<Scalar> constants(long long t) const {
    UpdateRule<Scalar> r;
    r.kind = UpdateRule<Scalar>::Kind::adam;
    const double bc1 = 1.0 - std::pow(options_.beta1, double(t));
    const double bc2 = 1.0 - std::pow(options_.beta2, double(t));
    r.beta1 = Scalar(options_.beta1);
    r.beta2 = Scalar(options_.beta2);
    r.step_size = Scalar(options_.learning_rate / bc1);
    r.bc2_sqrt = Scalar(std::sqrt(bc2));
    r.epsilon = Scalar(options_.epsilon);
    r.weight_decay = Scalar(options_.weight_decay);
    r.decay = options_.weight_decay != 0;
    return r;
  }
  void validate() const {
    detail::check_hyper(options_.learning_rate, false, "Adam", "learning_rate");
    detail::check_hyper(options_.epsilon, true, "Adam", "epsilon");
    detail::check_hyper(options_.weight_decay, false, "Adam", "weight_decay");
    if (!(options_.beta1 >= 0 && options_.beta1 < 1) || !(options_.beta2 >= 0 && options_.beta2 < 1))
      detail::raise<ValueError>("Adam: betas must be in [0, 1), found ", options_.beta1, ", ",
                                options_.beta2);
  }
  AdamOptions options_;
  detail::SlotStore state_;
  long long steps_ = 0;
};

template <class O, class Scalar>
concept OptimizerFor = requires(O o, std::span<const Parameter<Scalar>> p) {
  o.step(p);
  { o.learning_rate() } -> std::convertible_to<double>;
  o.set_learning_rate(1.0);
};

namespace detail {
/// Arrays of state an optimiser keeps per parameter (2, as Adam, when it does not say).
template <class O>
int optimizer_slots(const O& o) {
  if constexpr (requires { { o.state_slots() } -> std::convertible_to<int>; }) return o.state_slots();
  else return 2;
}
}  // namespace detail

/// An optimiser that can give its update as data (UpdateRule) for a device engine's step.
template <class O, class Scalar>
concept UpdateAsData = requires(O o, std::span<const Parameter<Scalar>> p) {
  { o.template update_rule<Scalar>(p) } -> std::same_as<UpdateRule<Scalar>>;
  o.count_step();
};

}  // namespace nmsnn
