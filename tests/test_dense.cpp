// DenseNetwork: gradients (batch norm and dropout included) against central differences in
// double precision, inference against a hand computation, learning, and validation.
#include <catch2/catch.hpp>

#include <iostream>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {
template <class Task>
double dense_gradient_check(DenseOptions o, Index outputs) {
  o.outputs = outputs;
  DenseNetwork<Task, double> net(o);
  CounterRng rng(o.seed, RandomDomain::split, 7);
  const Index B = 6;
  Matrix<double> Xb(o.inputs, B), Y(std::is_same_v<Task, Regression> ? outputs : 1, B);
  for (Index i = 0; i < Xb.size(); ++i) Xb.data()[i] = rng.normal();
  for (Index b = 0; b < B; ++b)
    for (Index k = 0; k < Y.rows(); ++k)
      Y(k, b) = std::is_same_v<Task, Regression> ? rng.normal() : double(rng.below(std::uint64_t(std::max<Index>(2, outputs))));
  std::vector<std::uint32_t> ids = {0, 1, 2, 3, 4, 5};
  const DrawKey key{o.seed, 3};
  auto loss = [&] { return Task::loss(net.forward_train(Xb, ids.data(), key), Y, static_cast<Matrix<double>*>(nullptr)); };
  Matrix<double> G;
  Task::loss(net.forward_train(Xb, ids.data(), key), Y, &G);
  net.backward_batch(Xb, ids.data(), key, G);
  auto params = net.parameters();
  double worst = 0;
  const double h = 1e-6;
  for (auto& p : params) {
    Eigen::VectorXd numeric(p.size);
    for (Index i = 0; i < p.size; ++i) {
      const double v = p.value[i];
      p.value[i] = v + h;
      const double lp = loss();
      p.value[i] = v - h;
      const double lm = loss();
      p.value[i] = v;
      numeric(i) = (lp - lm) / (2 * h);
    }
    const Eigen::VectorXd analytic = Eigen::Map<const Eigen::VectorXd>(p.gradient, p.size);
    worst = std::max(worst, test::max_rel_error(analytic, numeric, 1e-3));
  }
  std::cout << "dense " << Task::name << ": worst rel. error " << worst << "\n";
  return worst;
}
}  // namespace

TEST_CASE("dense gradients (ReLU, batch norm, dropout) equal central finite differences") {
  CHECK(dense_gradient_check<BinaryClassification>({.inputs = 5, .hidden = {7, 6}, .seed = 1}, 1) <= 1e-6);
  CHECK(dense_gradient_check<MulticlassClassification>({.inputs = 5, .hidden = {8}, .batch_norm = true, .dropout = 0.3, .seed = 2}, 3) <= 1e-6);
  CHECK(dense_gradient_check<Regression>({.inputs = 4, .seed = 3}, 2) <= 1e-6);
}

TEST_CASE("dense defaults follow MODEL.md and inference is the hand-computed MLP") {
  DenseNetwork<BinaryClassification> bin({.inputs = 20});
  CHECK(bin.num_layers() == 3);
  CHECK(bin.layer(0).weights.rows() == 64);
  CHECK(bin.layer(1).weights.rows() == 64);
  CHECK(bin.batch_norm());
  CHECK(bin.dropout() == 0.1);
  DenseNetwork<Regression, double> reg({.inputs = 3, .seed = 5});
  CHECK(reg.num_layers() == 4);
  CHECK(!reg.batch_norm());
  Eigen::MatrixXd X = Eigen::MatrixXd::Random(4, 3);
  Eigen::MatrixXd out = reg.decision_function(X);
  for (Index r = 0; r < 4; ++r) {
    Eigen::VectorXd h = X.row(r).transpose();
    for (Index l = 0; l < 4; ++l) {
      h = reg.layer(l).weights * h + reg.layer(l).bias;
      if (l < 3) h = h.cwiseMax(0.0);
    }
    CHECK(std::abs(h(0) - out(r, 0)) < 1e-12);
  }
  CHECK_THROWS_AS(DenseNetwork<MulticlassClassification>({.inputs = 3, .outputs = 1}), ValueError);
  CHECK_THROWS_AS(DenseNetwork<Regression>({.inputs = 3, .dropout = 1.0}), ValueError);
}

TEST_CASE("dense networks learn iris and a regression, deterministically") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  const Eigen::MatrixXd X = StandardScaler().fit_transform(d.X);
  auto train = [&] {
    DenseNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .seed = 4});
    Adam adam({.learning_rate = 1e-2});
    net.fit(X, d.y, adam, {.epochs = 30, .batch_size = 16});
    return net;
  };
  const auto net = train();
  CHECK(net.score(X, d.y) >= 0.93);
  CHECK(train().layer(0).weights == net.layer(0).weights);
  DenseNetwork<BinaryClassification> bin({.inputs = 4, .seed = 1});
  Eigen::VectorXd yb = (d.y.array() == 0).cast<double>();
  Adam adam2({.learning_rate = 1e-2});
  bin.fit(X, yb, adam2, {.epochs = 10, .batch_size = 15});  // 150 = 10 x 15: no batch of one
  CHECK(bin.score(X, yb) >= 0.95);
}
