// The GPU engines' parity cases, shared by test_cuda (the CUDA device, on a GPU) and
// test_device_engine (the same engines on the host device, on every machine): each case
// trains a network on the CPU engine and a copy of it on the other engine from the same seed
// and measures how far apart they end up. Plain C++ (no Catch2), so that nvcc compiles it.
#pragma once

#include <nmsnn/nmsnn.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace test {

/// How far the other engine is from the CPU engine (relative to the CPU's largest magnitude).
struct ParityResult {
  double loss_cpu = 0, loss_other = 0;
  std::vector<double> weight_grad, bias_grad;  // one step, per layer
  std::vector<double> grad_scale;              // the CPU's largest |weight gradient|, per layer
  std::vector<double> weights;                 // after the epochs of Adam, per layer
  std::vector<double> sgd_weights;             // then 2 epochs of SGD (momentum, Nesterov, weight decay; class weights)
  std::vector<double> continued;               // then 1 epoch on the CPU engine for both, with the same optimisers
  double batch_norm = 0;                       // dense: gamma and beta gradients (one step), running statistics (after)
  double decision = 0;                         // decision_function after the epochs
};

template <class A, class B>
double rel_diff(const A& a, const B& b) {
  const double scale = std::max(1e-6, double(a.cwiseAbs().maxCoeff()));
  return double((a - b).cwiseAbs().maxCoeff()) / scale;
}

// The two kinds of network's parameters and gradients.
template <class T, class S>
constexpr bool is_dense(const nmsnn::DenseNetwork<T, S>*) { return true; }
template <class T, class S>
constexpr bool is_dense(const nmsnn::SpikingNetwork<T, S>*) { return false; }
template <class Net>
constexpr bool dense_v = is_dense(static_cast<const Net*>(nullptr));

template <class Net>
nmsnn::Matrix<float> weights(const Net& n, nmsnn::Index l) {
  if constexpr (dense_v<Net>) return n.layer(l).weights;
  else return n.layer(l).weights();
}
template <class Net>
nmsnn::Matrix<float> weight_grad(const Net& n, nmsnn::Index l) {
  if constexpr (dense_v<Net>) return n.layer(l).weight_grad;
  else return n.layer(l).weight_gradient();
}
template <class Net>
nmsnn::Vector<float> bias_grad(const Net& n, nmsnn::Index l) {
  if constexpr (dense_v<Net>) return n.layer(l).bias_grad;
  else return n.layer(l).bias_gradient();
}

/// One step (loss and every gradient), then `epochs` epochs of Adam, on the CPU engine (a
/// copy of `cpu`) and on an Engine<Net>.
template <template <class> class Engine, class Net>
ParityResult engine_parity(const Net& net, const Eigen::MatrixXd& X, const Eigen::VectorXd& y, int epochs = 3) {
  Net cpu = net, other = net;
  other.set_engine(std::make_shared<Engine<Net>>());
  ParityResult r;
  r.loss_cpu = cpu.compute_gradients(X, y);
  r.loss_other = other.compute_gradients(X, y);
  const auto L = cpu.num_layers();
  for (nmsnn::Index l = 0; l < L; ++l) {
    r.weight_grad.push_back(rel_diff(weight_grad(cpu, l), weight_grad(other, l)));
    r.bias_grad.push_back(rel_diff(bias_grad(cpu, l), bias_grad(other, l)));
    r.grad_scale.push_back(double(weight_grad(cpu, l).cwiseAbs().maxCoeff()));
    if constexpr (dense_v<Net>)
      if (cpu.layer(l).gamma.size())
        r.batch_norm = std::max({r.batch_norm, rel_diff(cpu.layer(l).gamma_grad, other.layer(l).gamma_grad),
                                 rel_diff(cpu.layer(l).beta_grad, other.layer(l).beta_grad)});
  }
  // fit runs on the other engine's device step (loss, backward and the optimiser's update).
  nmsnn::Adam a1({.learning_rate = 1e-2, .weight_decay = 1e-4}), a2({.learning_rate = 1e-2, .weight_decay = 1e-4});
  cpu.fit(X, y, a1, {.epochs = epochs, .batch_size = 32, .progress = nmsnn::Progress::off});
  other.fit(X, y, a2, {.epochs = epochs, .batch_size = 32, .progress = nmsnn::Progress::off});
  for (nmsnn::Index l = 0; l < L; ++l) r.weights.push_back(rel_diff(weights(cpu, l), weights(other, l)));
  std::vector<double> cw;  // class weights (classifiers)
  if (cpu.classes() > 0)
    for (nmsnn::Index k = 0; k < cpu.classes(); ++k) cw.push_back(1.0 + 0.5 * double(k));
  nmsnn::Sgd s1({.learning_rate = 0.02, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}), s2 = s1;
  const nmsnn::FitOptions fo{.epochs = 2, .batch_size = 32, .class_weights = cw, .progress = nmsnn::Progress::off};
  cpu.fit(X, y, s1, fo);
  other.fit(X, y, s2, fo);
  for (nmsnn::Index l = 0; l < L; ++l) r.sgd_weights.push_back(rel_diff(weights(cpu, l), weights(other, l)));
  // The optimisers' state came back from the device: one more epoch on the CPU engine for
  // both agrees only if s2's momentum buffers are the device's.
  other.set_engine(nullptr);
  auto f1 = fo;
  f1.epochs = 1;
  cpu.fit(X, y, s1, f1);
  other.fit(X, y, s2, f1);
  for (nmsnn::Index l = 0; l < L; ++l) {
    r.continued.push_back(rel_diff(weights(cpu, l), weights(other, l)));
    if constexpr (dense_v<Net>)
      if (cpu.layer(l).gamma.size())
        r.batch_norm = std::max({r.batch_norm, rel_diff(cpu.layer(l).running_mean, other.layer(l).running_mean),
                                 rel_diff(cpu.layer(l).running_var, other.layer(l).running_var)});
  }
  r.decision = rel_diff(cpu.decision_function(X), other.decision_function(X));
  return r;
}

/// A refused device step leaves what a refused CPU step leaves (guarded_step's rules).
struct RefusalResult {
  bool same_errors = false;        // both refused with the same message
  long long steps_cpu = -1, steps_other = -1;  // the optimiser's count after the refusal
  double changed = -1;             // largest change of the other network's weights by the refused step
  double after = -1;               // rel. diff of the weights after a good step that follows
  double after_edit = -1;          // ... and after another, the weights edited by hand before it
};

/// A step refused for a non-finite gradient (huge_target: a regression target that makes
/// the loss's gradient overflow float) or for non-finite updated weights (an Adam step size
/// of 1e39), on the CPU engine and on Engine; then good steps, the second after the weights
/// of layer 0 are halved by hand (the device must upload them again).
template <template <class> class Engine, class Net>
RefusalResult refusal(const Net& net, const Eigen::MatrixXd& X, const Eigen::VectorXd& y, bool huge_target) {
  Net cpu = net, other = net;
  other.set_engine(std::make_shared<Engine<Net>>());
  RefusalResult r;
  const Eigen::MatrixXd Xr = huge_target ? Eigen::MatrixXd(X.topRows(1)) : X;
  const Eigen::VectorXd yr = huge_target ? Eigen::VectorXd::Constant(1, 3.4e38) : y;
  nmsnn::Adam o1({.learning_rate = huge_target ? 1e-3 : 1e38}), o2 = o1;
  const auto before = weights(other, 0);
  std::string e1 = "none", e2 = "none";
  try {
    cpu.train_step(Xr, yr, o1);
  } catch (const nmsnn::NumericalError& e) {
    e1 = e.what();
  }
  try {
    other.train_step(Xr, yr, o2);
  } catch (const nmsnn::NumericalError& e) {
    e2 = e.what();
  }
  // The first non-finite gradient's value (inf or nan) may differ with rounding: compare the
  // messages up to it.
  const auto head = [](const std::string& m) { return m.substr(0, m.find(" is ")); };
  r.same_errors = e1 != "none" && head(e1) == head(e2) && (huge_target || e1 == e2);
  r.steps_cpu = o1.steps();
  r.steps_other = o2.steps();
  r.changed = double((weights(other, 0) - before).cwiseAbs().maxCoeff());
  nmsnn::Adam g1({.learning_rate = 1e-2}), g2 = g1;
  cpu.train_step(X, y, g1);
  other.train_step(X, y, g2);
  r.after = rel_diff(weights(cpu, 0), weights(other, 0));
  if constexpr (dense_v<Net>) {
    cpu.layer(0).weights *= 0.5f;
    other.layer(0).weights *= 0.5f;
  } else {
    cpu.layer(0).mutable_weights() *= 0.5f;
    other.layer(0).mutable_weights() *= 0.5f;
  }
  cpu.train_step(X, y, g1);
  other.train_step(X, y, g2);
  r.after_edit = rel_diff(weights(cpu, 0), weights(other, 0));
  return r;
}

/// The cases: visit(name, network, X, y) for each. Spiking: the three encoders, both
/// readouts, begin_eval > 0, one and two hidden layers, both resets and a single time step.
/// Dense: batch norm with dropout, plain, and three hidden layers; and batches of one sample
/// (batch norm with the running statistics) in training.
template <class Visit>
void parity_cases(Visit&& visit) {
  using namespace nmsnn;
  const auto data = make_classification({.samples = 96, .features = 10, .informative = 5, .classes = 3, .seed = 4});
  const Eigen::MatrixXd X = StandardScaler().fit_transform(data.X);
  const Eigen::VectorXd yc = data.y, yb = (data.y.array() > 0).cast<double>(), yr = X.col(0), yr1 = X.col(1);
  auto spiking = [](auto net) {
    net.layer(0).set_neuron({.reset = Reset::subtract});
    return net;
  };
  visit("spiking multiclass, rate, 2 hidden layers, begin_eval 3",
        spiking(SpikingNetwork<MulticlassClassification>(
            {.inputs = 10, .outputs = 3, .hidden = {24, 12}, .time_steps = 16, .begin_eval = 3, .seed = 1})),
        X, yc);
  visit("spiking binary, bernoulli, sum readout",
        spiking(SpikingNetwork<BinaryClassification>(
            {.inputs = 10, .hidden = {32}, .time_steps = 20, .encoder = Encoding::bernoulli, .seed = 2})),
        X, yb);
  visit("spiking regression, direct",
        spiking(SpikingNetwork<Regression>({.inputs = 10, .hidden = {16}, .time_steps = 12, .encoder = Encoding::direct, .seed = 3})),
        X, yr);
  visit("spiking binary, rate, default hidden layer, mean readout",
        spiking(SpikingNetwork<BinaryClassification>({.inputs = 10, .time_steps = 10, .readout = Readout::mean, .seed = 6})), X, yb);
  visit("spiking regression, rate, one time step",
        spiking(SpikingNetwork<Regression>({.inputs = 10, .hidden = {8}, .time_steps = 1, .seed = 5})), X, yr1);
  visit("dense binary, batch norm and dropout 0.1 (defaults)", DenseNetwork<BinaryClassification>({.inputs = 10, .seed = 7}), X, yb);
  visit("dense multiclass, no batch norm (defaults)", DenseNetwork<MulticlassClassification>({.inputs = 10, .outputs = 3, .seed = 8}),
        X, yc);
  visit("dense regression, 3 hidden layers, batch norm and dropout 0.2",
        DenseNetwork<Regression>({.inputs = 10, .batch_norm = true, .dropout = 0.2, .seed = 9}), X, yr);
  visit("dense binary, batch norm, 65 samples (each epoch's last batch has one)",
        DenseNetwork<BinaryClassification>({.inputs = 10, .seed = 10}), Eigen::MatrixXd(X.topRows(65)), Eigen::VectorXd(yb.head(65)));
}

}  // namespace test
