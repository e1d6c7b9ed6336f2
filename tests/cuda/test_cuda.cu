// GPU tests: the CUDA engines (spiking and dense) against the CPU engine (the cases of engine_parity.hpp).
// Gradients of one step and weights after a few epochs agree to float rounding (documented
// tolerance: 1e-4 relative to the largest magnitude for one step, 2e-3 after training);
// predictions agree. Exits 77 (CTest: skipped) with a message when no GPU is present.
#include <nmsnn/cuda.hpp>
#include <nmsnn/nmsnn.hpp>

#include <cstdio>
#include <string>
#include <vector>

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
        std::printf("           then SGD (device step) %.2e, then 1 CPU epoch with the same optimiser %.2e\n",
                    r.sgd_weights[l], r.continued[l]);
        check(r.sgd_weights[l] <= 2e-3, "weights after SGD", r.sgd_weights[l]);
        check(r.continued[l] <= 2e-3, "weights after a CPU epoch with the device's optimiser state", r.continued[l]);
      }
      std::printf("  batch norm rel. diff %.2e, decision function %.2e\n", r.batch_norm, r.decision);
      check(r.batch_norm <= 2e-3, "batch norm", r.batch_norm);
      check(r.decision <= 5e-3, "decision function", r.decision);
    });
    const auto data = nmsnn::make_classification({.samples = 40, .features = 6, .informative = 3, .classes = 3, .seed = 2});
    const Eigen::VectorXd yb = (data.y.array() > 0).cast<double>();
    auto refusal = [](const char* name, const test::RefusalResult& r, long long steps) {
      std::printf("refused step, %s: same error %d, optimiser steps cpu %lld gpu %lld, weights changed by %.1e; "
                  "next steps rel. diff %.2e, after editing the weights %.2e\n",
                  name, int(r.same_errors), r.steps_cpu, r.steps_other, r.changed, r.after, r.after_edit);
      check(r.same_errors, "a refused step's error");
      check(r.steps_cpu == steps && r.steps_other == steps, "a refused step's optimiser count");
      check(r.changed == 0, "a refused step leaves the weights", r.changed);
      check(r.after <= 1e-4, "the step after a refused one", r.after);
      check(r.after_edit <= 1e-4, "a step after editing the weights", r.after_edit);
    };
    refusal("spiking regression, gradient",
            test::refusal<CudaEngine>(nmsnn::SpikingNetwork<nmsnn::Regression>({.inputs = 6, .hidden = {8}, .time_steps = 6, .seed = 1}),
                                      data.X, data.X.col(0), true),
            0);
    refusal("spiking multiclass, weights",
            test::refusal<CudaEngine>(nmsnn::SpikingNetwork<nmsnn::MulticlassClassification>(
                                          {.inputs = 6, .outputs = 3, .hidden = {8}, .time_steps = 6, .seed = 1}),
                                      data.X, data.y, false),
            1);
    refusal("dense binary (batch norm, dropout), weights",
            test::refusal<CudaEngine>(nmsnn::DenseNetwork<nmsnn::BinaryClassification>({.inputs = 6, .seed = 3}), data.X, yb, false),
            1);
    {  // Out of device memory: the encoded inputs of 100000 steps of 2000 samples of 784 features
       // (627 GB) cannot be allocated; the error names the call.
      using Net = nmsnn::SpikingNetwork<nmsnn::MulticlassClassification>;
      Net big({.inputs = 784, .outputs = 10, .time_steps = 100000, .seed = 1});
      nmsnn::cuda::Engine<Net> engine;
      const nmsnn::Matrix<float> Xb = nmsnn::Matrix<float>::Zero(784, 2000);
      std::vector<std::uint32_t> ids(2000, 0);
      std::string what = "none";
      try {
        engine.forward(big, Xb, ids.data(), {});
      } catch (const nmsnn::cuda::CudaError& err) {
        what = err.what();
      }
      std::printf("out of device memory: %s\n", what.c_str());
      check(what.find("cudaMalloc") != std::string::npos && what.find("cudaErrorMemoryAllocation") != std::string::npos,
            "out of device memory throws CudaError naming cudaMalloc");
    }
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
