// GPU tests: the CUDA engines (spiking and dense) against the CPU engine (the cases of engine_parity.hpp).
// Gradients of one step and weights after a few epochs agree to float rounding (documented
// tolerance: 1e-4 relative to the largest magnitude for one step, 2e-3 after training);
// predictions agree. Exits 77 (CTest: skipped) with a message when no GPU is present.
#include <nmsnn/cuda.hpp>
#include <nmsnn/nmsnn.hpp>

#include <cstdio>

#include "../engine_parity.hpp"

namespace {
// The spiking or the dense engine, as the network.
template <class Net>
using CudaEngine = std::conditional_t<test::dense_v<Net>, nmsnn::cuda::DenseEngine<Net>, nmsnn::cuda::Engine<Net>>;

int failures = 0, checks = 0;
void check(bool ok, const char* what, double value = 0) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAILED: %s (%g)\n", what, value);
  }
}
}  // namespace

int main() {
  if (nmsnn::cuda::device_count() == 0) {
    std::printf("no CUDA device: the GPU tests are skipped\n");
    return 77;
  }
  try {
    test::parity_cases([](const char* name, const auto& net, const Eigen::MatrixXd& X, const Eigen::VectorXd& y) {
      const auto r = test::engine_parity<CudaEngine>(net, X, y);
      std::printf("%s: loss cpu %.7f gpu %.7f\n", name, r.loss_cpu, r.loss_other);
      check(std::abs(r.loss_cpu - r.loss_other) <= 1e-4 * std::max(1.0, std::abs(r.loss_cpu)), "loss", r.loss_cpu - r.loss_other);
      for (std::size_t l = 0; l < r.weights.size(); ++l) {
        std::printf("  layer %zu: weight gradient rel. diff %.2e, bias gradient %.2e, weights after 3 epochs %.2e\n", l,
                    r.weight_grad[l], r.bias_grad[l], r.weights[l]);
        check(r.weight_grad[l] <= 1e-4, "weight gradient", r.weight_grad[l]);
        check(r.bias_grad[l] <= 1e-4, "bias gradient", r.bias_grad[l]);
        check(r.weights[l] <= 2e-3, "weights after training", r.weights[l]);
      }
      std::printf("  batch norm rel. diff %.2e, decision function %.2e\n", r.batch_norm, r.decision);
      check(r.batch_norm <= 2e-3, "batch norm", r.batch_norm);
      check(r.decision <= 5e-3, "decision function", r.decision);
    });
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
