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
  std::vector<double> weights;                 // after the epochs, per layer
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
  nmsnn::Adam a1({.learning_rate = 1e-2}), a2({.learning_rate = 1e-2});
  cpu.fit(X, y, a1, {.epochs = epochs, .batch_size = 32, .progress = nmsnn::Progress::off});
  other.fit(X, y, a2, {.epochs = epochs, .batch_size = 32, .progress = nmsnn::Progress::off});
  for (nmsnn::Index l = 0; l < L; ++l) {
    r.weights.push_back(rel_diff(weights(cpu, l), weights(other, l)));
    if constexpr (dense_v<Net>)
      if (cpu.layer(l).gamma.size())
        r.batch_norm = std::max({r.batch_norm, rel_diff(cpu.layer(l).running_mean, other.layer(l).running_mean),
                                 rel_diff(cpu.layer(l).running_var, other.layer(l).running_var)});
  }
  r.decision = rel_diff(cpu.decision_function(X), other.decision_function(X));
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
