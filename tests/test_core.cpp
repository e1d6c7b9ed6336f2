// The counter-based generator, the encoders, the layer scan and the optimisers.
#include <catch2/catch.hpp>

#include <set>

#include "test_helpers.hpp"

using namespace nmsnn;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  // From Random123's kat_vectors (philox4x32_10).
  auto r = Philox4x32::generate({0, 0, 0, 0}, {0, 0});
  CHECK(r == Philox4x32::Counter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  r = Philox4x32::generate({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(r == Philox4x32::Counter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  r = Philox4x32::generate({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  CHECK(r == Philox4x32::Counter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("uniform draws lie in 0..1 with mean 1/2 and variance 1/12") {
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = InputEncoder<float>::draw({7, 1}, std::uint32_t(i % 97), std::uint32_t(i / 97), i % 13);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    sq += u * u;
  }
  CHECK(sum / n == Approx(0.5).margin(0.005));
  CHECK(sq / n - (sum / n) * (sum / n) == Approx(1.0 / 12).margin(0.002));
}

TEST_CASE("the rate encoder's masks depend only on (seed, stream, sample, step, feature)") {
  InputEncoder<float> enc(Encoding::rate);
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(11, 5);
  std::uint32_t ids[5] = {40, 3, 17, 8, 99};
  Matrix<float> all(11, 6 * 5), part(11, 2 * 5);
  enc.encode(x, ids, {5, 2}, 0, 6, all);
  enc.encode(x, ids, {5, 2}, 3, 2, part);  // steps 3..4 alone
  CHECK(part == all.middleCols(3 * 5, 2 * 5));
  // One sample on its own (another batch split) sees the same masks.
  Matrix<float> one(11, 6);
  Eigen::MatrixXf x2 = x.col(2);
  enc.encode(x2, &ids[2], {5, 2}, 0, 6, one);
  for (Index t = 0; t < 6; ++t) CHECK(one.col(t) == all.col(t * 5 + 2));
  // s = m * x with m in [0, 1), and zero features stay zero.
  x(4, 1) = 0;
  enc.encode(x, ids, {5, 2}, 0, 6, all);
  for (Index t = 0; t < 6; ++t) {
    CHECK(all(4, t * 5 + 1) == 0.0f);
    const Eigen::ArrayXf m = all.col(t * 5).array() / x.col(0).array();
    CHECK((m >= 0).all());
    CHECK((m < 1.0001f).all());
  }
  // Another stream or seed gives other masks.
  Matrix<float> other(11, 6 * 5);
  enc.encode(x, ids, {5, 3}, 0, 6, other);
  CHECK((other - all).cwiseAbs().maxCoeff() > 0.01f);
}

TEST_CASE("the Bernoulli encoder fires with probability clamp(x, 0, 1) and Direct repeats x") {
  InputEncoder<double> enc(Encoding::bernoulli);
  Eigen::MatrixXd x(4, 1);
  x << 0.0, 0.25, 0.8, 3.0;
  std::uint32_t id = 0;
  const Index T = 20000;
  Matrix<double> S(4, T);
  enc.encode(x, &id, {1, 0}, 0, T, S);
  CHECK(((S.array() == 0) || (S.array() == 1)).all());
  const Eigen::VectorXd rate = S.rowwise().mean();
  CHECK(rate(0) == 0.0);
  CHECK(rate(1) == Approx(0.25).margin(0.01));
  CHECK(rate(2) == Approx(0.8).margin(0.01));
  CHECK(rate(3) == 1.0);
  InputEncoder<double> direct(Encoding::direct);
  Matrix<double> D(4, 3);
  direct.encode(x, &id, {1, 0}, 0, 3, D);
  for (Index t = 0; t < 3; ++t) CHECK(D.col(t) == x);
}

TEST_CASE("one neuron through time, hand-computed (both resets)") {
  // a_t = 0.6 constant, λ = 0.9, θ = 1, ρ = 1.5:
  // scale: u0 = .6 (no fire, v=.6); u1 = .6+.54 = 1.14 fires, o=.14, v = 1.14-1.5*1.14 = -.57;
  //        u2 = .6 - .513 = .087, o = 0.
  // subtract: u1 = 1.14 fires, v = 1.14 - (1.5 + .14) = -.5; u2 = .6 - .45 = .15.
  for (Reset reset : {Reset::scale, Reset::subtract}) {
    SpikingLayer<double> layer(1, 1, {.reset = reset});
    Matrix<double> A = Matrix<double>::Constant(1, 3, 0.6);
    Matrix<double> R = Matrix<double>::Zero(1, 1);
    layer.scan_forward(A.data(), 3, 1, R.data(), 0, 2);
    CHECK(A(0, 0) == 0.0);
    CHECK(A(0, 1) == Approx(0.14).epsilon(1e-12));
    CHECK(A(0, 2) == 0.0);
    const double v2 = reset == Reset::scale ? 0.6 + 0.9 * -0.57 : 0.6 + 0.9 * -0.5;
    const double v1 = reset == Reset::scale ? -0.57 : -0.5;
    CHECK(R(0, 0) == Approx(0.6 + v1 + v2).epsilon(1e-12));
  }
}

TEST_CASE("layer parameters validate their shapes and values") {
  SpikingLayer<float> layer(3, 2);
  CHECK_THROWS_AS(layer.set_weights(Eigen::MatrixXf::Zero(3, 2)), ShapeError);
  CHECK_THROWS_AS(layer.set_bias(Eigen::VectorXf::Zero(3)), ShapeError);
  Eigen::MatrixXf w = Eigen::MatrixXf::Zero(2, 3);
  w(1, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(layer.set_weights(w), ValueError);
  CHECK_THROWS_AS(layer.set_neuron({.threshold = 0.0}), ValueError);
  CHECK_THROWS_AS(SpikingLayer<float>(0, 2), ValueError);
}

TEST_CASE("Xavier-uniform initialisation stays within its bounds and fills them") {
  SpikingLayer<double> layer(30, 20);
  CounterRng rng(1, RandomDomain::init);
  layer.initialize(rng);
  const double a = std::sqrt(6.0 / 50.0);
  CHECK(layer.weights().cwiseAbs().maxCoeff() < a);
  CHECK(layer.weights().cwiseAbs().maxCoeff() > 0.95 * a);
  CHECK(std::abs(layer.weights().mean()) < 0.05);
  CHECK(layer.bias().cwiseAbs().maxCoeff() < 1.0 / std::sqrt(30.0));
}

namespace {
template <class Opt>
void check_trajectory(Opt opt, const nlohmann::json& fx, const std::string& name) {
  Eigen::VectorXd p = test::to_matrix(fx["start"]);
  Eigen::VectorXd g(p.size());
  const auto& traj = fx["cases"][name]["trajectory"];
  for (std::size_t s = 0; s < traj.size(); ++s) {
    g = test::to_matrix(fx["grads"][s]);
    Parameter<double> param{p.data(), g.data(), p.size()};
    opt.step(std::span<const Parameter<double>>(&param, 1));
    const Eigen::VectorXd expect = test::to_matrix(traj[s]);
    INFO(name << " step " << s + 1);
    CHECK((p - expect).cwiseAbs().maxCoeff() < 1e-14);
  }
}
}  // namespace

TEST_CASE("optimiser steps equal PyTorch's") {
  const auto fx = test::load_json("optimizers.json");
  check_trajectory(Adam({.learning_rate = 0.1}), fx, "adam");
  check_trajectory(Adam({.learning_rate = 0.05, .beta1 = 0.8, .beta2 = 0.99, .epsilon = 1e-6, .weight_decay = 0.01}),
                   fx, "adam_wd");
  check_trajectory(Sgd({.learning_rate = 0.1}), fx, "sgd");
  check_trajectory(Sgd({.learning_rate = 0.1, .momentum = 0.9}), fx, "sgd_momentum");
  check_trajectory(Sgd({.learning_rate = 0.05, .momentum = 0.5, .weight_decay = 0.1}), fx, "sgd_momentum_wd");
  check_trajectory(Sgd({.learning_rate = 0.1, .momentum = 0.9, .nesterov = true}), fx, "sgd_nesterov");
}

TEST_CASE("optimiser steps, hand-computed") {
  // Adam's first step moves each parameter by lr * g / (|g| + eps/…) ≈ lr * sign(g).
  Eigen::VectorXd p(2), g(2);
  p << 1.0, -1.0;
  g << 0.5, -4.0;
  Adam adam({.learning_rate = 0.1});
  Parameter<double> param{p.data(), g.data(), 2};
  adam.step(std::span<const Parameter<double>>(&param, 1));
  // m = 0.1 g, v = 0.001 g^2; bias corrections 0.1 and 0.001: p -= (0.1 / 0.1) m / (|g| + eps).
  CHECK(p(0) == Approx(1.0 - 0.05 / (0.5 + 1e-8)).epsilon(1e-15));
  CHECK(p(1) == Approx(-1.0 + 0.4 / (4.0 + 1e-8)).epsilon(1e-15));
  // SGD with momentum 0.5: v1 = g, v2 = 0.5 g + g; p = 1 - 0.1 (1 + 1.5) g.
  p << 1.0, 1.0;
  g << 2.0, 2.0;
  Sgd sgd({.learning_rate = 0.1, .momentum = 0.5});
  sgd.step(std::span<const Parameter<double>>(&param, 1));
  sgd.step(std::span<const Parameter<double>>(&param, 1));
  CHECK(p(0) == Approx(1.0 - 0.1 * 2.5 * 2.0).epsilon(1e-15));
}

TEST_CASE("optimisers reject bad settings and foreign parameters") {
  CHECK_THROWS_AS(Adam({.learning_rate = std::numeric_limits<double>::quiet_NaN()}), ValueError);
  CHECK_THROWS_AS(Adam({.beta1 = 1.0}), ValueError);
  CHECK_THROWS_AS(Sgd({.learning_rate = -1}), ValueError);
  CHECK_THROWS_AS(Sgd({.momentum = -0.5}), ValueError);
  Eigen::VectorXf p = Eigen::VectorXf::Zero(3), g = Eigen::VectorXf::Ones(3);
  Adam adam;
  Parameter<float> a{p.data(), g.data(), 3};
  adam.step(std::span<const Parameter<float>>(&a, 1));
  Parameter<float> b{p.data(), g.data(), 2};
  CHECK_THROWS_AS(adam.step(std::span<const Parameter<float>>(&b, 1)), ValueError);
  adam.reset();
  CHECK_NOTHROW(adam.step(std::span<const Parameter<float>>(&b, 1)));
}
