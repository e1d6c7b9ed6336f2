// GPU tests: the CUDA engine against the CPU engine. Gradients of one step and weights after
// a few epochs agree to float rounding (documented tolerance: 1e-4 relative to the largest
// magnitude for one step, 2e-3 after training); predictions agree. Exits 77 (CTest: skipped)
// with a message when no GPU is present.
#include <nmsnn/cuda.hpp>
#include <nmsnn/nmsnn.hpp>

#include <cstdio>

namespace {
int failures = 0, checks = 0;
void check(bool ok, const char* what, double value = 0) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAILED: %s (%g)\n", what, value);
  }
}
template <class A, class B>
double rel_diff(const A& a, const B& b) {
  const double scale = std::max(1e-6, double(a.cwiseAbs().maxCoeff()));
  return double((a - b).cwiseAbs().maxCoeff()) / scale;
}

template <class Task>
void parity(const char* name, nmsnn::SpikingOptions o, const Eigen::MatrixXd& X, const Eigen::VectorXd& y) {
  using Net = nmsnn::SpikingNetwork<Task>;
  Net cpu(o);
  cpu.layer(0).set_neuron({.reset = nmsnn::Reset::subtract});
  Net gpu = cpu;
  gpu.set_engine(std::make_shared<nmsnn::cuda::Engine<Net>>());
  // One step: loss and every gradient.
  const double lc = cpu.compute_gradients(X, y), lg = gpu.compute_gradients(X, y);
  std::printf("%s: loss cpu %.7f gpu %.7f\n", name, lc, lg);
  check(std::abs(lc - lg) <= 1e-4 * std::max(1.0, std::abs(lc)), "loss", lc - lg);
  for (nmsnn::Index l = 0; l < cpu.num_layers(); ++l) {
    const double dw = rel_diff(cpu.layer(l).weight_gradient(), gpu.layer(l).weight_gradient());
    const double db = rel_diff(cpu.layer(l).bias_gradient(), gpu.layer(l).bias_gradient());
    std::printf("  layer %ld: weight gradient rel. diff %.2e, bias gradient %.2e\n", long(l), dw, db);
    check(dw <= 1e-4, "weight gradient", dw);
    check(db <= 1e-4, "bias gradient", db);
  }
  // A few epochs from the same seed: weights and predictions.
  nmsnn::Adam a1({.learning_rate = 1e-2}), a2({.learning_rate = 1e-2});
  cpu.fit(X, y, a1, {.epochs = 3, .batch_size = 32, .progress = nmsnn::Progress::off});
  gpu.fit(X, y, a2, {.epochs = 3, .batch_size = 32, .progress = nmsnn::Progress::off});
  for (nmsnn::Index l = 0; l < cpu.num_layers(); ++l) {
    const double dw = rel_diff(cpu.layer(l).weights(), gpu.layer(l).weights());
    std::printf("  after 3 epochs, layer %ld weights rel. diff %.2e\n", long(l), dw);
    check(dw <= 2e-3, "weights after training", dw);
  }
  const auto pc = cpu.decision_function(X), pg = gpu.decision_function(X);
  check(rel_diff(pc, pg) <= 5e-3, "decision function", rel_diff(pc, pg));
}
}  // namespace

int main() {
  if (nmsnn::cuda::device_count() == 0) {
    std::printf("no CUDA device: the GPU tests are skipped\n");
    return 77;
  }
  try {
    const auto data = nmsnn::make_classification({.samples = 96, .features = 10, .informative = 5, .classes = 3, .seed = 4});
    const Eigen::MatrixXd X = nmsnn::StandardScaler().fit_transform(data.X);
    parity<nmsnn::MulticlassClassification>("multiclass, rate, 2 hidden layers, begin_eval 3", {.inputs = 10, .outputs = 3, .hidden = {24, 12}, .time_steps = 16, .begin_eval = 3, .seed = 1}, X, data.y);
    const Eigen::VectorXd yb = (data.y.array() > 0).cast<double>();
    parity<nmsnn::BinaryClassification>("binary, bernoulli, sum readout", {.inputs = 10, .hidden = {32}, .time_steps = 20, .encoder = nmsnn::Encoding::bernoulli, .seed = 2}, X, yb);
    parity<nmsnn::Regression>("regression, direct", {.inputs = 10, .hidden = {16}, .time_steps = 12, .encoder = nmsnn::Encoding::direct, .seed = 3}, X, X.col(0));
    bool threw = false;
    try {
      nmsnn::cuda::Engine<nmsnn::SpikingNetwork<nmsnn::Regression>> e(999);
    } catch (const nmsnn::cuda::CudaError& err) {
      threw = std::string(err.what()).find("device 999") != std::string::npos;
    }
    check(threw, "a missing device throws CudaError naming it");
  } catch (const std::exception& e) {
    std::printf("FAILED with exception: %s\n", e.what());
    return 1;
  }
  std::printf("%d of %d checks passed\n", checks - failures, checks);
  return failures ? 1 : 0;
}
