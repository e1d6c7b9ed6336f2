// Thread safety: predict, predict_proba and record_activity on a const model from several
// threads at once give exactly the answers of one thread. Run under ThreadSanitizer by
// .ci/run (NMSNN_SANITIZE_THREAD, OpenMP off so that only these threads run).
#include <catch2/catch.hpp>

#include <thread>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {
template <class Net>
void hammer(const Net& net, const Eigen::MatrixXd& X) {
  const auto expected = net.predict_proba(X);
  constexpr int threads = 4;
  std::vector<decltype(net.predict_proba(X))> got(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) got[std::size_t(t)] = net.predict_proba(X);
    });
  for (auto& th : pool) th.join();
  for (const auto& g : got) CHECK(g == expected);
}
}  // namespace

TEST_CASE("predict on a const model from several threads matches one thread") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  const Eigen::MatrixXd X = StandardScaler().fit_transform(d.X);
  SpikingNetwork<MulticlassClassification> snn({.inputs = 4, .outputs = 3, .hidden = {32}, .time_steps = 24, .seed = 1});
  DenseNetwork<MulticlassClassification> mlp({.inputs = 4, .outputs = 3, .seed = 1});
  Adam a1({.learning_rate = 1e-2}), a2({.learning_rate = 1e-2});
  snn.fit(X, d.y, a1, {.epochs = 2, .batch_size = 32, .progress = Progress::off});
  mlp.fit(X, d.y, a2, {.epochs = 2, .batch_size = 32, .progress = Progress::off});
  hammer(std::as_const(snn), X);
  hammer(std::as_const(mlp), X);
  // Recording activity concurrently, too.
  const Recording one = record_activity(snn, X, 5);
  std::vector<Recording> recs(3);
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < recs.size(); ++t) pool.emplace_back([&, t] { recs[t] = record_activity(snn, X, 5); });
  for (auto& th : pool) th.join();
  for (const auto& r : recs) CHECK(r.layers[0].state == one.layers[0].state);
}
