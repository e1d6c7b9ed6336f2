// The GPU path's engine (nmsnn/detail/device_engine.hpp) on the host device: the same
// engine code and kernel bodies that nmsnn/cuda.hpp runs on a GPU, here in host loops and
// Eigen products, against the CPU engine. This tests the GPU path's logic on every machine;
// test_cuda runs the same cases on a GPU.
#include <nmsnn/detail/device_engine.hpp>
#include <nmsnn/nmsnn.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "engine_parity.hpp"

namespace dev = nmsnn::detail::device;
using nmsnn::Index;

namespace {
// The spiking or the dense engine, as the network.
template <class Net>
using HostEngine = std::conditional_t<test::dense_v<Net>, dev::DenseEngine<Net, dev::HostDevice>, dev::Engine<Net, dev::HostDevice>>;
}

TEST_CASE("host device: gemm follows cuBLAS's column-major conventions", "[device]") {
  dev::HostDevice d;
  const Index m = 5, n = 4, k = 3, pad = 2;
  const nmsnn::Matrix<float> A = nmsnn::Matrix<float>::Random(m + pad, k + pad), B = nmsnn::Matrix<float>::Random(k + pad, n + pad);
  for (auto ta : {dev::Op::n, dev::Op::t})
    for (auto tb : {dev::Op::n, dev::Op::t}) {
      // op(A) is m x k and op(B) k x n, stored with leading dimensions larger than their rows.
      nmsnn::Matrix<float> a = ta == dev::Op::n ? nmsnn::Matrix<float>(A.topLeftCorner(m, k))
                                                : nmsnn::Matrix<float>(A.topLeftCorner(k, m));
      nmsnn::Matrix<float> b = tb == dev::Op::n ? nmsnn::Matrix<float>(B.topLeftCorner(k, n))
                                                : nmsnn::Matrix<float>(B.topLeftCorner(n, k));
      const nmsnn::Matrix<float> opa = ta == dev::Op::n ? a : nmsnn::Matrix<float>(a.transpose());
      const nmsnn::Matrix<float> opb = tb == dev::Op::n ? b : nmsnn::Matrix<float>(b.transpose());
      nmsnn::Matrix<float> As = nmsnn::Matrix<float>::Constant(a.rows() + pad, a.cols(), 99.f);
      nmsnn::Matrix<float> Bs = nmsnn::Matrix<float>::Constant(b.rows() + pad, b.cols(), 99.f);
      As.topRows(a.rows()) = a;
      Bs.topRows(b.rows()) = b;
      // beta = 0: C's old content (NaN) is not read; the rows past m are left alone.
      nmsnn::Matrix<float> C = nmsnn::Matrix<float>::Constant(m + pad, n, std::numeric_limits<float>::quiet_NaN());
      d.gemm(ta, tb, m, n, k, As.data(), As.rows(), Bs.data(), Bs.rows(), 0.f, C.data(), C.rows());
      CHECK((C.topRows(m) - opa * opb).cwiseAbs().maxCoeff() < 1e-5f);
      CHECK(C.bottomRows(pad).array().isNaN().all());
      // beta = 1 accumulates.
      C.topRows(m).setOnes();
      d.gemm(ta, tb, m, n, k, As.data(), As.rows(), Bs.data(), Bs.rows(), 1.f, C.data(), C.rows());
      CHECK((C.topRows(m).array() - 1.f - (opa * opb).array()).abs().maxCoeff() < 1e-5f);
    }
  nmsnn::Matrix<float> S = nmsnn::Matrix<float>::Random(m + pad, n);
  nmsnn::Vector<float> y(m);
  d.row_sums(m, n, S.data(), S.rows(), y.data());
  CHECK((y - S.topRows(m).rowwise().sum()).cwiseAbs().maxCoeff() < 1e-5f);
}

TEST_CASE("device encode kernel draws the CPU encoder's inputs exactly", "[device]") {
  const Index F = 5, B = 3, T = 9;
  nmsnn::Matrix<float> X(F, B);
  X << 0.2f, -0.5f, 1.5f, 0.7f, 0.f, 0.9f, 0.1f, 0.3f, -1.f, 2.f, 0.5f, 0.5f, 0.5f, 0.99f, 0.01f;
  const std::uint32_t ids[B] = {7, 0, 123456};
  const nmsnn::DrawKey key{.seed = 42, .stream = 3};
  const auto k = nmsnn::make_key(key.seed, nmsnn::RandomDomain::input_mask);
  for (auto kind : {nmsnn::Encoding::rate, nmsnn::Encoding::bernoulli, nmsnn::Encoding::direct}) {
    CAPTURE(nmsnn::to_string(kind));
    nmsnn::Matrix<float> expected(F, T * B), got(F, T * B);
    nmsnn::InputEncoder<float>(kind).encode(X, ids, key, 0, T, expected);
    dev::HostDevice d;
    d.launch<dev::Encode>("encode", F * B * ((T + 3) / 4), got.data(), static_cast<const float*>(X.data()), ids, F, B, T, int(kind),
                          k[0], k[1], key.stream);
    CHECK(got == expected);
  }
}

TEST_CASE("GPU engines on the host device: the CPU engine's gradients and training", "[device]") {
  test::parity_cases([](const char* name, const auto& net, const Eigen::MatrixXd& X, const Eigen::VectorXd& y) {
    INFO(name);
    const auto r = test::engine_parity<HostEngine>(net, X, y);
    CAPTURE(r.loss_cpu, r.loss_other);
    // The tolerances of test_cuda (float rounding: the products sum in another order).
    CHECK(std::abs(r.loss_cpu - r.loss_other) <= 1e-4 * std::max(1.0, std::abs(r.loss_cpu)));
    for (std::size_t l = 0; l < r.weights.size(); ++l) {
      CAPTURE(l, r.weight_grad[l], r.bias_grad[l], r.weights[l], r.grad_scale[l]);
      CHECK(r.weight_grad[l] <= 1e-4);
      CHECK(r.bias_grad[l] <= 1e-4);
      CHECK(r.weights[l] <= 2e-3);
      CAPTURE(r.sgd_weights[l], r.continued[l]);
      CHECK(r.sgd_weights[l] <= 2e-3);
      CHECK(r.continued[l] <= 2e-3);
      // Not a comparison of zeros (but with one time step a spiking network's output layer
      // sees only its bias, MODEL.md's one-step delay, and no layer has a weight gradient).
      if (std::string(name).find("one time step") == std::string::npos) CHECK(r.grad_scale[l] > 1e-6);
    }
    CAPTURE(r.batch_norm, r.decision);
    CHECK(r.batch_norm <= 2e-3);
    CHECK(r.decision <= 5e-3);
  });
}

TEST_CASE("GPU engines' device step refuses a diverged step as the CPU does", "[device]") {
  const auto data = nmsnn::make_classification({.samples = 40, .features = 6, .informative = 3, .classes = 3, .seed = 2});
  const Eigen::VectorXd yb = (data.y.array() > 0).cast<double>();
  auto checks = [](const char* name, const test::RefusalResult& r, long long steps) {
    INFO(name);
    CAPTURE(r.steps_cpu, r.steps_other, r.changed, r.after, r.after_edit);
    CHECK(r.same_errors);
    CHECK(r.steps_cpu == steps);
    CHECK(r.steps_other == steps);
    CHECK(r.changed == 0);
    CHECK(r.after <= 1e-4);
    CHECK(r.after_edit <= 1e-4);
  };
  // A gradient overflows: refused before the update (the optimiser counts no step).
  checks("spiking regression, gradient",
         test::refusal<HostEngine>(nmsnn::SpikingNetwork<nmsnn::Regression>({.inputs = 6, .hidden = {8}, .time_steps = 6, .seed = 1}),
                                   data.X, data.X.col(0), true),
         0);
  // The update overflows: refused after it (the optimiser counts the step, as on the CPU).
  checks("spiking multiclass, weights",
         test::refusal<HostEngine>(
             nmsnn::SpikingNetwork<nmsnn::MulticlassClassification>({.inputs = 6, .outputs = 3, .hidden = {8}, .time_steps = 6, .seed = 1}),
             data.X, data.y, false),
         1);
  checks("dense binary (batch norm, dropout), weights",
         test::refusal<HostEngine>(nmsnn::DenseNetwork<nmsnn::BinaryClassification>({.inputs = 6, .seed = 3}), data.X, yb, false), 1);
}

TEST_CASE("GPU engine: backward without its forward is an error, and profiling names the kernels", "[device]") {
  using Net = nmsnn::SpikingNetwork<nmsnn::BinaryClassification>;
  Net net({.inputs = 4, .hidden = {6}, .time_steps = 5, .seed = 1});
  auto engine = std::make_shared<HostEngine<Net>>();
  const nmsnn::Matrix<float> Xb = nmsnn::Matrix<float>::Random(4, 8);
  const std::vector<std::uint32_t> ids = {0, 1, 2, 3, 4, 5, 6, 7};
  CHECK_THROWS_AS(engine->backward(net, Xb, ids.data(), {}, nmsnn::Matrix<float>::Zero(1, 8)), nmsnn::Error);
  engine->device().set_profiling(true);
  const auto R = engine->forward(net, Xb, ids.data(), {});
  CHECK(R.rows() == 1);
  CHECK(R.cols() == 8);
  engine->backward(net, Xb, ids.data(), {}, nmsnn::Matrix<float>::Ones(1, 8));
  const auto& t = engine->device().kernel_seconds();
  for (const char* k : {"encode", "fill_bias", "forward_scan", "backward_scan", "gemm", "row_sums"}) {
    INFO(k);
    CHECK(t.count(k) == 1);
  }
  CHECK(t.at("forward_scan").second == 2);  // one per layer
  CHECK(t.at("backward_scan").second == 2);
  CHECK(t.at("gemm").second == 5);  // forward: 2 layers; backward: dW of both, dL/do of layer 1
  const nmsnn::Matrix<float> X9 = nmsnn::Matrix<float>::Random(4, 9);
  CHECK_THROWS_AS(engine->backward(net, X9, ids.data(), {}, nmsnn::Matrix<float>::Ones(1, 9)), nmsnn::Error);
}
