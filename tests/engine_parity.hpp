// The GPU engine's parity cases, shared by test_cuda (the CUDA device, on a GPU) and
// test_device_engine (the same engine on the host device, on every machine): each case
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
  std::vector<double> weights;                 // after the epochs, per layer
  double decision = 0;                         // decision_function after the epochs
};

template <class A, class B>
double rel_diff(const A& a, const B& b) {
  const double scale = std::max(1e-6, double(a.cwiseAbs().maxCoeff()));
  return double((a - b).cwiseAbs().maxCoeff()) / scale;
}

/// One step (loss and every gradient), then `epochs` epochs of Adam, on the CPU engine and
/// on an Engine<SpikingNetwork<Task>>.
template <class Task, template <class> class Engine>
ParityResult engine_parity(const nmsnn::SpikingOptions& o, const Eigen::MatrixXd& X, const Eigen::VectorXd& y, int epochs = 3) {
  using Net = nmsnn::SpikingNetwork<Task>;
  Net cpu(o);
  cpu.layer(0).set_neuron({.reset = nmsnn::Reset::subtract});
  Net other = cpu;
  other.set_engine(std::make_shared<Engine<Net>>());
  ParityResult r;
  r.loss_cpu = cpu.compute_gradients(X, y);
  r.loss_other = other.compute_gradients(X, y);
  for (nmsnn::Index l = 0; l < cpu.num_layers(); ++l) {
    r.weight_grad.push_back(rel_diff(cpu.layer(l).weight_gradient(), other.layer(l).weight_gradient()));
    r.bias_grad.push_back(rel_diff(cpu.layer(l).bias_gradient(), other.layer(l).bias_gradient()));
    r.grad_scale.push_back(double(cpu.layer(l).weight_gradient().cwiseAbs().maxCoeff()));
  }
  nmsnn::Adam a1({.learning_rate = 1e-2}), a2({.learning_rate = 1e-2});
  cpu.fit(X, y, a1, {.epochs = epochs, .batch_size = 32, .progress = nmsnn::Progress::off});
  other.fit(X, y, a2, {.epochs = epochs, .batch_size = 32, .progress = nmsnn::Progress::off});
  for (nmsnn::Index l = 0; l < cpu.num_layers(); ++l) r.weights.push_back(rel_diff(cpu.layer(l).weights(), other.layer(l).weights()));
  r.decision = rel_diff(cpu.decision_function(X), other.decision_function(X));
  return r;
}

/// The cases: visit(name, std::type_identity<Task>{}, options, X, y) for each. They cover
/// the three encoders, both readouts, begin_eval > 0, one and two hidden layers, both
/// resets and a single time step.
template <class Visit>
void parity_cases(Visit&& visit) {
  const auto data = nmsnn::make_classification({.samples = 96, .features = 10, .informative = 5, .classes = 3, .seed = 4});
  const Eigen::MatrixXd X = nmsnn::StandardScaler().fit_transform(data.X);
  const Eigen::VectorXd yb = (data.y.array() > 0).cast<double>();
  visit("multiclass, rate, 2 hidden layers, begin_eval 3", std::type_identity<nmsnn::MulticlassClassification>{},
        nmsnn::SpikingOptions{.inputs = 10, .outputs = 3, .hidden = {24, 12}, .time_steps = 16, .begin_eval = 3, .seed = 1}, X,
        Eigen::VectorXd(data.y));
  visit("binary, bernoulli, sum readout", std::type_identity<nmsnn::BinaryClassification>{},
        nmsnn::SpikingOptions{.inputs = 10, .hidden = {32}, .time_steps = 20, .encoder = nmsnn::Encoding::bernoulli, .seed = 2}, X,
        yb);
  visit("regression, direct", std::type_identity<nmsnn::Regression>{},
        nmsnn::SpikingOptions{.inputs = 10, .hidden = {16}, .time_steps = 12, .encoder = nmsnn::Encoding::direct, .seed = 3}, X,
        Eigen::VectorXd(X.col(0)));
  visit("binary, rate, default hidden layer, mean readout", std::type_identity<nmsnn::BinaryClassification>{},
        nmsnn::SpikingOptions{.inputs = 10, .time_steps = 10, .readout = nmsnn::Readout::mean, .seed = 6}, X, yb);
  visit("regression, rate, one time step", std::type_identity<nmsnn::Regression>{},
        nmsnn::SpikingOptions{.inputs = 10, .hidden = {8}, .time_steps = 1, .seed = 5}, X, Eigen::VectorXd(X.col(1)));
}

}  // namespace test
