// The forward pass, loss and gradients against the PyTorch reference of pynmsnn's model
// (shared/anchors/pynmsnn_reference.py; fixtures made by fixtures/make_fixtures.sh), in double
// precision with the Direct encoder and the reference's own weights.
#include <catch2/catch.hpp>

#include <iostream>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {

struct Result {
  double readout_diff, loss_diff, grad_rel;
};

template <class Task>
Result run_fixture(const std::string& file) {
  const auto j = test::load_json(file);
  const auto& c = j["config"];
  SpikingNetwork<Task, double> net({.inputs = c["inputs"].get<Index>(),
                                    .outputs = c["outputs"].get<Index>(),
                                    .hidden = {c["hidden"].get<Index>()},
                                    .time_steps = c["time_steps"].get<Index>(),
                                    .begin_eval = c["begin_eval"].get<Index>(),
                                    .readout = parse_readout(c["readout"].get<std::string>()),
                                    .encoder = Encoding::direct,
                                    .neuron = {.decay = c["decay"], .threshold = c["threshold"],
                                               .penalty = c["penalty"],
                                               .reset = parse_reset(c["reset"].get<std::string>())}});
  net.layer(0).set_weights(test::to_matrix(j["W1"]));
  net.layer(0).set_bias(test::to_matrix(j["b1"]));
  net.layer(1).set_weights(test::to_matrix(j["W2"]));
  net.layer(1).set_bias(test::to_matrix(j["b2"]));
  const Eigen::MatrixXd X = test::to_matrix(j["x"]);
  const Eigen::MatrixXd y = test::to_matrix(j["y"]);
  const Eigen::MatrixXd readout_ref = test::to_matrix(j["readout"]);

  Result r{};
  const Eigen::MatrixXd readout = net.decision_function(X);
  r.readout_diff = (readout - readout_ref).cwiseAbs().maxCoeff();
  double loss = 0;
  if (c["loss"] == "dot") {
    // L = sum(readout * G): drive the engine with dL/dreadout = G directly.
    const Eigen::MatrixXd Xb = X.transpose();
    std::vector<std::uint32_t> ids(X.rows());
    const Eigen::MatrixXd R = net.forward_train(Xb, ids.data(), {});
    loss = (R.transpose().array() * y.array()).sum();
    net.backward_batch(Xb, ids.data(), {}, y.transpose());
  } else {
    loss = net.compute_gradients(X, y);
  }
  r.loss_diff = std::abs(loss - j["loss"].get<double>());
  r.grad_rel = std::max({test::max_rel_error(net.layer(0).weight_gradient(), test::to_matrix(j["dW1"])),
                         test::max_rel_error(net.layer(0).bias_gradient(), test::to_matrix(j["db1"])),
                         test::max_rel_error(net.layer(1).weight_gradient(), test::to_matrix(j["dW2"])),
                         test::max_rel_error(net.layer(1).bias_gradient(), test::to_matrix(j["db2"]))});
  std::cout << file << ": max |readout diff| " << r.readout_diff << ", |loss diff| " << r.loss_diff
            << ", max gradient rel. error " << r.grad_rel << "\n";
  return r;
}

void check(const Result& r) {
  CHECK(r.readout_diff < 1e-12);
  CHECK(r.loss_diff < 1e-12);
  CHECK(r.grad_rel < 1e-10);
}

}  // namespace

TEST_CASE("forward and gradients match PyTorch: CE, scale reset, mean readout, begin_eval 2") {
  check(run_fixture<MulticlassClassification>("ref_ce_scale_mean_e2.json"));
}
TEST_CASE("forward and gradients match PyTorch: CE, subtract reset, sum readout") {
  check(run_fixture<MulticlassClassification>("ref_ce_subtract_sum_e0.json"));
}
TEST_CASE("forward and gradients match PyTorch: BCE, subtract reset, sum readout") {
  check(run_fixture<BinaryClassification>("ref_bce_subtract_sum_e0.json"));
}
TEST_CASE("forward and gradients match PyTorch: MSE, scale reset, sum readout, begin_eval 3") {
  check(run_fixture<Regression>("ref_mse_scale_sum_e3.json"));
}
TEST_CASE("forward and gradients match PyTorch: dot loss, subtract reset, mean, begin_eval 1") {
  check(run_fixture<MulticlassClassification>("ref_dot_subtract_mean_e1.json"));
}
TEST_CASE("forward and gradients match PyTorch: dot loss, scale reset, sum, begin_eval T-1") {
  check(run_fixture<MulticlassClassification>("ref_dot_scale_sum_e9.json"));
}

TEST_CASE("the naive transcription of MODEL.md agrees with PyTorch too") {
  const auto j = test::load_json("ref_ce_scale_mean_e2.json");
  std::vector<test::NaiveLayer> ls{{test::to_matrix(j["W1"]), test::to_matrix(j["b1"])},
                                   {test::to_matrix(j["W2"]), test::to_matrix(j["b2"])}};
  const Eigen::MatrixXd X = test::to_matrix(j["x"]);
  const Eigen::MatrixXd ref = test::to_matrix(j["readout"]);
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    const Eigen::VectorXd r = test::naive_readout(ls, X.row(i).transpose(), 10, 2, true, nullptr, nullptr);
    CHECK((r.transpose() - ref.row(i)).cwiseAbs().maxCoeff() < 1e-12);
  }
}
