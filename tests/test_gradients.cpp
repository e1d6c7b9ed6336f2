// Every weight and bias gradient of a whole BPTT run against central finite differences, in
// double precision with the Direct encoder, at points away from the threshold kinks
// (MODEL.md "Gradients"); and the engine's forward pass against a naive transcription of
// MODEL.md for deeper networks than the PyTorch fixtures cover.
#include <catch2/catch.hpp>

#include <iostream>
#include <limits>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {

struct Config {
  std::vector<Index> hidden;
  Reset reset;
  Readout readout;
  Index begin_eval;
};

double worst_overall = 0;

template <class Task>
Eigen::MatrixXd make_targets(CounterRng& rng, Index n, Index outputs) {
  Eigen::MatrixXd y(n, std::is_same_v<Task, Regression> ? outputs : 1);
  for (Index i = 0; i < n; ++i)
    for (Index k = 0; k < y.cols(); ++k) {
      if constexpr (std::is_same_v<Task, Regression>) y(i, k) = 2.0 * rng.normal();
      else y(i, k) = double(rng.below(std::uint64_t(std::is_same_v<Task, BinaryClassification> ? 2 : outputs)));
    }
  return y;
}

template <class Task>
double gradient_check(const Config& cfg, Index outputs) {
  const Index F = 4, B = 3, T = 12;
  // h = 1e-4: the loss is large (sum readouts of strong weights), so smaller steps drown the
  // difference in rounding noise; the margin test below keeps every perturbed point on the
  // same side of every kink (a perturbation moves any u_t by far less than 0.05).
  const double h = 1e-4;
  for (std::uint64_t seed = 1; seed < 200; ++seed) {
    SpikingNetwork<Task, double> net({.inputs = F, .outputs = outputs, .hidden = cfg.hidden,
                                      .time_steps = T, .begin_eval = cfg.begin_eval,
                                      .readout = cfg.readout, .encoder = Encoding::direct,
                                      .neuron = {.reset = cfg.reset}, .seed = seed});
    for (Index l = 0; l < net.num_layers(); ++l)
      net.layer(l).set_weights(net.layer(l).weights() * 3.0);  // strong enough to fire
    CounterRng rng(seed, RandomDomain::split, 99);
    Eigen::MatrixXd X(B, F);
    for (Index i = 0; i < X.size(); ++i) X.reshaped()(i) = 2.0 * rng.normal();
    const Eigen::MatrixXd y = make_targets<Task>(rng, B, outputs);

    // Distance to the kinks, from the independent naive implementation; and its readout.
    const auto naive = test::naive_layers(net);
    double margin = std::numeric_limits<double>::infinity();
    const Eigen::MatrixXd engine_readout = net.decision_function(X);
    for (Index i = 0; i < B; ++i) {
      const Eigen::VectorXd r = test::naive_readout(naive, X.row(i).transpose(), int(T), int(cfg.begin_eval),
                                                    cfg.readout == Readout::mean, nullptr, &margin);
      REQUIRE((r.transpose() - engine_readout.row(i)).cwiseAbs().maxCoeff() < 1e-11);
    }
    if (margin < 0.05) continue;  // too close to a kink for finite differences: next seed

    for (Index l = 0; l < net.num_layers(); ++l) {  // catch gradients that are never written
      net.layer(l).mutable_weight_gradient().setConstant(std::numeric_limits<double>::quiet_NaN());
      net.layer(l).mutable_bias_gradient().setConstant(std::numeric_limits<double>::quiet_NaN());
    }
    net.compute_gradients(X, y);
    // A point where no gradient reaches layer 1 (a silent layer) checks little: next seed.
    if (net.layer(0).weight_gradient().cwiseAbs().maxCoeff() < 1e-4) continue;
    double worst = 0;
    for (Index l = 0; l < net.num_layers(); ++l) {
      auto& layer = net.layer(l);
      Eigen::MatrixXd W = layer.weights();
      Eigen::MatrixXd numeric_W(W.rows(), W.cols());
      for (Index i = 0; i < W.size(); ++i) {
        Eigen::MatrixXd Wp = W, Wm = W;
        Wp.reshaped()(i) += h;
        Wm.reshaped()(i) -= h;
        layer.set_weights(Wp);
        const double lp = net.evaluate(X, y);
        layer.set_weights(Wm);
        const double lm = net.evaluate(X, y);
        numeric_W.reshaped()(i) = (lp - lm) / (2 * h);
      }
      layer.set_weights(W);
      Eigen::VectorXd b = layer.bias();
      Eigen::VectorXd numeric_b(b.size());
      for (Index i = 0; i < b.size(); ++i) {
        Eigen::VectorXd bp = b, bm = b;
        bp(i) += h;
        bm(i) -= h;
        layer.set_bias(bp);
        const double lp = net.evaluate(X, y);
        layer.set_bias(bm);
        const double lm = net.evaluate(X, y);
        numeric_b(i) = (lp - lm) / (2 * h);
      }
      layer.set_bias(b);
      REQUIRE(layer.weight_gradient().allFinite());
      REQUIRE(layer.bias_gradient().allFinite());
      // Relative error |a - n| / max(|a|, |n|, 1e-3): gradients below 1e-3 are compared in
      // absolute terms (finite differences of a loss of size ~1e2 carry ~1e-10 of noise).
      worst = std::max({worst, test::max_rel_error(layer.weight_gradient(), numeric_W, 1e-3),
                        test::max_rel_error(layer.bias_gradient(), numeric_b, 1e-3)});
    }
    std::cout << Task::name << " hidden " << cfg.hidden.size() << " reset " << to_string(cfg.reset)
              << " readout " << to_string(cfg.readout) << " begin_eval " << cfg.begin_eval
              << ": seed " << seed << ", kink margin " << margin << ", worst rel. error " << worst << "\n";
    worst_overall = std::max(worst_overall, worst);
    return worst;
  }
  FAIL("no seed gave a point away from the kinks");
  return 1;
}

const std::vector<Config> configs = {
    {{6}, Reset::scale, Readout::sum, 0},        {{6}, Reset::subtract, Readout::mean, 3},
    {{5, 4}, Reset::scale, Readout::mean, 2},    {{5, 4}, Reset::subtract, Readout::sum, 0},
    {{5, 4}, Reset::subtract, Readout::mean, 5}, {{6}, Reset::scale, Readout::sum, 11},
};

}  // namespace

TEMPLATE_TEST_CASE("BPTT gradients equal central finite differences", "[gradients]",
                   BinaryClassification, MulticlassClassification, Regression) {
  const Index outputs = std::is_same_v<TestType, MulticlassClassification> ? 3
                        : std::is_same_v<TestType, Regression>              ? 2
                                                                            : 1;
  // Default: all 12 steps in one chunk; then chunks of 4 steps (the scans carry their state
  // from chunk to chunk, and backward runs the chunks last first).
  for (std::size_t chunk_bytes : {std::size_t(0), std::size_t(1)}) {
    const test::EngineChunkBytes chunks(chunk_bytes);
    for (const auto& cfg : configs) CHECK(gradient_check<TestType>(cfg, outputs) <= 1e-6);
  }
  std::cout << "worst relative error so far: " << worst_overall << "\n";
}

TEST_CASE("engine forward equals the naive transcription with the rate encoder's masks") {
  // 5 inputs into Eigen's products; 3 inputs and a hidden layer of 3 into the engine's own
  // kernels for layers with few inputs or few outputs.
  for (const Index F : {Index(5), Index(3)}) {
    const std::vector<Index> hidden = F == 5 ? std::vector<Index>{7, 6} : std::vector<Index>{7, 3};
    SpikingNetwork<MulticlassClassification, double> net(
        {.inputs = F, .outputs = 3, .hidden = hidden, .time_steps = 9, .begin_eval = 1, .seed = 3});
    Eigen::MatrixXd X = Eigen::MatrixXd::Random(4, F) * 3;
    const Eigen::MatrixXd R = net.decision_function(X);
    const auto naive = test::naive_layers(net);
    for (Index i = 0; i < X.rows(); ++i) {
      std::vector<Eigen::VectorXd> masks;
      for (int t = 0; t < 9; ++t) {
        Eigen::VectorXd m(F);
        for (Index f = 0; f < F; ++f)
          m(f) = InputEncoder<double>::draw({3, SpikingNetwork<MulticlassClassification, double>::predict_stream},
                                            std::uint32_t(i), std::uint32_t(t), f);
        masks.push_back(m);
      }
      const Eigen::VectorXd r = test::naive_readout(naive, X.row(i).transpose(), 9, 1, true, &masks, nullptr);
      CHECK((r.transpose() - R.row(i)).cwiseAbs().maxCoeff() < 1e-12);
    }
  }
}

TEST_CASE("rate-encoder gradients equal finite differences on the dense and the sparse input path") {
  // L = sum(readout * G) with the masks of one fixed key: forward_train/backward_batch give the
  // gradient, forward_batch with the same key evaluates L at perturbed weights.
  // Chunk bytes 0: T = 10 steps in one chunk, backward reuses the forward's draws; 1: chunks
  // of 4, 4 and 2 steps, backward draws the masks again.
  // 12 inputs and hidden layers of 9 and 7 go through Eigen's products; 3 inputs and a
  // hidden layer of 3 through the engine's kernels for layers with few inputs or outputs; 12
  // inputs and one hidden layer of 9 through the fused layer-1 kernels (forward, and backward
  // below the 3 outputs).
  const std::vector<std::pair<Index, std::vector<Index>>> shapes{{12, {9, 7}}, {3, {9, 3}}, {12, {9}}};
  for (const auto& shape : shapes)
  for (std::size_t chunk_bytes : {std::size_t(0), std::size_t(1)})
  for (double zero_fraction : {0.0, 0.75}) {
    const Index F = shape.first;
    const std::vector<Index>& hidden = shape.second;
    const test::EngineChunkBytes chunks(chunk_bytes);
    using Net = SpikingNetwork<MulticlassClassification, double>;
    double worst = 1;
    for (std::uint64_t seed = 1; seed < 400 && worst > 1e-6; ++seed) {
      Net net({.inputs = F, .outputs = 3, .hidden = hidden, .time_steps = 10, .begin_eval = 1, .seed = seed});
      for (Index l = 0; l < net.num_layers(); ++l) net.layer(l).set_weights(net.layer(l).weights() * 3.0);
      CounterRng rng(seed, RandomDomain::split, 3);
      Matrix<double> Xb(F, 4);  // engine layout: features x samples
      for (Index i = 0; i < Xb.size(); ++i) Xb.data()[i] = rng.uniform() < zero_fraction ? 0.0 : 4.0 * rng.normal();
      if (net.use_sparse_input(Xb) != (zero_fraction > 0.5)) continue;  // a draw with too few zeros, or too many
      Matrix<double> G(3, 4);
      for (Index i = 0; i < G.size(); ++i) G.data()[i] = rng.normal();
      std::uint32_t ids[4] = {3, 1, 4, 1};
      const DrawKey key{seed, 17};
      // Kink margin from the naive implementation with the same masks.
      const auto naive = test::naive_layers(net);
      double margin = std::numeric_limits<double>::infinity();
      const Matrix<double> R = net.forward_train(Xb, ids, key);
      for (Index b = 0; b < 4; ++b) {
        std::vector<Eigen::VectorXd> masks;
        for (int t = 0; t < 10; ++t) {
          Eigen::VectorXd m(F);
          for (Index f = 0; f < F; ++f) m(f) = InputEncoder<double>::draw(key, ids[b], std::uint32_t(t), f);
          masks.push_back(m);
        }
        const Eigen::VectorXd r = test::naive_readout(naive, Xb.col(b), 10, 1, true, &masks, &margin);
        REQUIRE((r - R.col(b)).cwiseAbs().maxCoeff() < 1e-11);
      }
      if (margin < 0.05) continue;
      net.backward_batch(Xb, ids, key, G);
      if (net.layer(0).weight_gradient().cwiseAbs().maxCoeff() < 1e-4) continue;
      const double h = 1e-5;
      auto loss = [&] { return (net.forward_batch(Xb, ids, key).array() * G.array()).sum(); };
      worst = 0;
      for (Index l = 0; l < net.num_layers(); ++l) {
        const Eigen::MatrixXd W = net.layer(l).weights();
        Eigen::MatrixXd numeric(W.rows(), W.cols());
        for (Index i = 0; i < W.size(); ++i) {
          Eigen::MatrixXd Wp = W;
          Wp.reshaped()(i) += h;
          net.layer(l).set_weights(Wp);
          const double lp = loss();
          Wp.reshaped()(i) -= 2 * h;
          net.layer(l).set_weights(Wp);
          numeric.reshaped()(i) = (lp - loss()) / (2 * h);
        }
        net.layer(l).set_weights(W);
        worst = std::max(worst, test::max_rel_error(net.layer(l).weight_gradient(), numeric, 1e-3));
      }
      std::cout << "rate encoder, " << F << " inputs, " << hidden.size() << " hidden layers, chunk bytes " << chunk_bytes << ", zero fraction " << zero_fraction << ": seed " << seed << ", margin " << margin
                << ", worst rel. error " << worst << "\n";
    }
    CHECK(worst <= 1e-6);
  }
}
