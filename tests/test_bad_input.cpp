// The bad-input battery: every kind of bad data, file and option a user can hand the library
// gets a clear nmsnn::Error (or the documented sane result), never a crash, a hang or an absurd
// allocation. Saved-model files (truncated, bit-flipped, empty, foreign, wrong version,
// gigantic claims) are covered in test_model_file.cpp, the command line in examples/.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {
struct TempCsv {
  std::string path;
  // The default name is the process's own: CTest runs this executable's cases in parallel.
  explicit TempCsv(const std::string& content, const std::string& name = "nmsnn_bad_" + std::to_string(::getpid()) + ".csv")
      : path(name) {
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempCsv() { std::remove(path.c_str()); }
};
using test::error_of;
const Eigen::MatrixXd X4 = (Eigen::MatrixXd(4, 2) << 0, 1, 1, 0, 0.5, 0.5, 1, 1).finished();
}  // namespace

TEST_CASE("bad CSV files: each error names the file and says what is wrong") {
  struct Case {
    const char* name;
    std::string content;
    std::string expect;
  };
  const std::vector<Case> cases{
      {"empty file", "", "is empty"},
      {"header only", "a,b,target\n", "no data rows"},
      {"ragged row", "a,b,target\n1,2,0\n1,2\n", "line 3 has 2 fields"},
      {"non-numeric field", "a,b,target\n1,x,0\n", "'x' is not a number"},
      {"empty field", "a,b,target\n1,,0\n", "empty field"},
      {"NaN value", "a,b,target\nnan,1,0\n", "non-finite"},
      {"Inf value", "a,b,target\n1,inf,0\n", "non-finite"},
      {"missing target column", "a,b,c\n1,2,0\n", "no column named 'target'"},
      {"duplicate target column", "a,target,target\n1,2,0\n", "more than once"},
      {"unterminated quote", "a,b,target\n\"1,2,0\n", "unterminated"},
      {"single column", "target\n1\n", "at least 2 columns"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    TempCsv f(c.content);
    const std::string e = error_of([&] { read_csv(f.path, {.target = std::string("target")}); });
    CHECK(e.find(c.expect) != std::string::npos);
    CHECK(e.find(f.path) != std::string::npos);
  }
  CHECK(error_of([] { read_csv("/nonexistent/nmsnn.csv"); }).find("cannot open") != std::string::npos);
}

TEST_CASE("very wide rows (20,000+ columns) are read and trained on") {
  const Index F = 20001;
  std::string s;
  for (Index j = 0; j < F; ++j) s += "f" + std::to_string(j) + ",";
  s += "target\n";
  for (int r = 0; r < 4; ++r) {
    for (Index j = 0; j < F; ++j) s += (j + r) % 7 == 0 ? "1," : "0,";
    s += std::to_string(r % 2) + "\n";
  }
  TempCsv f(s);
  const Dataset d = read_csv(f.path);
  REQUIRE(d.X.cols() == F);
  SpikingNetwork<BinaryClassification> net({.inputs = F, .hidden = {8}, .time_steps = 4, .seed = 1});
  Adam adam;
  net.fit(d.X, d.y, adam, {.epochs = 1, .progress = Progress::off});
  CHECK(net.predict_proba(d.X).allFinite());
}

TEST_CASE("labels that do not fit the task, and a single class, are refused") {
  SpikingNetwork<BinaryClassification> bin({.inputs = 2, .hidden = {4}, .time_steps = 4});
  SpikingNetwork<MulticlassClassification> multi({.inputs = 2, .outputs = 3, .hidden = {4}, .time_steps = 4});
  Adam adam;
  const FitOptions fo{.epochs = 1, .progress = Progress::off};
  CHECK_THROWS_AS(bin.fit(X4, Eigen::Vector4d(0, 1, 2, 0), adam, fo), ValueError);    // 2 in a binary task
  CHECK_THROWS_AS(bin.fit(X4, Eigen::Vector4d(0, 1, -1, 0), adam, fo), ValueError);   // negative
  CHECK_THROWS_AS(multi.fit(X4, Eigen::Vector4d(0, 1, 3, 0), adam, fo), ValueError);  // class 3 of 3
  CHECK_THROWS_AS(multi.fit(X4, Eigen::Vector4d(0, 0.5, 1, 2), adam, fo), ValueError);  // not an integer
  const std::string single = error_of([&] { bin.fit(X4, Eigen::Vector4d(1, 1, 1, 1), adam, fo); });
  CHECK(single.find("at least two classes") != std::string::npos);
  CHECK_THROWS_AS(multi.fit(X4, Eigen::Vector4d(2, 2, 2, 2), adam, fo), ValueError);
  // NaN or Inf in X or y never reaches training.
  Eigen::MatrixXd Xn = X4;
  Xn(1, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(bin.fit(Xn, Eigen::Vector4d(0, 1, 1, 0), adam, fo), ValueError);
  SpikingNetwork<Regression> reg({.inputs = 2, .hidden = {4}, .time_steps = 4});
  CHECK_THROWS_AS(reg.fit(X4, Eigen::Vector4d(0, 1, std::numeric_limits<double>::infinity(), 0), adam, fo), ValueError);
  CHECK_THROWS_AS(bin.predict(Xn), ValueError);
  CHECK_THROWS_AS(bin.fit(X4, Eigen::Vector3d(0, 1, 1), adam, fo), ShapeError);  // 4 rows, 3 labels
}

TEST_CASE("a zero-variance feature and one-row data give documented sane results") {
  // A constant column scales to zeros (scale 1, as scikit-learn), and training stays finite.
  Eigen::MatrixXd X(6, 2);
  X << 1, 5, 2, 5, 3, 5, 4, 5, 5, 5, 6, 5;
  Scaler sc = StandardScaler();
  const Eigen::MatrixXd Xs = sc.fit_transform(X);
  CHECK(sc.scale()(1) == 1.0);
  CHECK(Xs.col(1).isZero());
  SpikingNetwork<Regression> reg({.inputs = 2, .hidden = {4}, .time_steps = 8, .seed = 2});
  Adam adam;
  reg.fit(Xs, X.col(0), adam, {.epochs = 2, .batch_size = 2, .progress = Progress::off});
  CHECK(reg.predict(Xs).allFinite());
  // One row: regression trains (the target's sd is 0: no scaling); a classifier has one class.
  SpikingNetwork<Regression> one({.inputs = 2, .hidden = {4}, .time_steps = 8, .seed = 2});
  one.fit(Xs.topRows(1), X.col(0).head(1), adam, {.epochs = 2, .progress = Progress::off});
  CHECK(one.predict(Xs.topRows(1)).allFinite());
  SpikingNetwork<BinaryClassification> bin({.inputs = 2, .hidden = {4}, .time_steps = 8});
  CHECK_THROWS_AS(bin.fit(Xs.topRows(1), Eigen::VectorXd::Ones(1), adam, {.epochs = 1}), ValueError);
  CHECK_THROWS_AS(train_test_split(1, 0.25, 0), ValueError);
  // A batch larger than the data is one batch of all of it.
  SpikingNetwork<Regression> big({.inputs = 2, .hidden = {4}, .time_steps = 8, .seed = 3});
  Adam adam2;
  const History h = big.fit(Xs, X.col(0), adam2, {.epochs = 1, .batch_size = 1000, .progress = Progress::off});
  CHECK(h.loss.size() == 1);
}

TEST_CASE("options out of range are refused at once") {
  using Net = SpikingNetwork<BinaryClassification>;
  CHECK_THROWS_AS(Net({.inputs = 2, .time_steps = 0}), ValueError);
  CHECK_THROWS_AS(Net({.inputs = 2, .time_steps = -5}), ValueError);
  CHECK_THROWS_AS(Net({.inputs = 0}), ValueError);
  CHECK_THROWS_AS(Net({.inputs = 2, .hidden = {4, 0}}), ValueError);  // ({0} alone: no hidden layer)
  CHECK_THROWS_AS(Net({.inputs = 2, .time_steps = 8, .begin_eval = 8}), ValueError);
  CHECK_THROWS_AS(Adam({.learning_rate = std::numeric_limits<double>::quiet_NaN()}), ValueError);
  CHECK_THROWS_AS(Adam({.learning_rate = -1}), ValueError);
  CHECK_THROWS_AS(Sgd({.learning_rate = std::numeric_limits<double>::infinity()}), ValueError);
  Net net({.inputs = 2, .hidden = {4}, .time_steps = 4});
  Adam adam;
  const Eigen::Vector4d y(0, 1, 1, 0);
  CHECK_THROWS_AS(net.fit(X4, y, adam, {.epochs = -1}), ValueError);
  CHECK_THROWS_AS(net.fit(X4, y, adam, {.batch_size = 0}), ValueError);
  CHECK_THROWS_AS(net.fit(X4, y, adam, {.validation_fraction = 1.5}), ValueError);
  CHECK_THROWS_AS(net.fit(X4, y, adam, {.class_weights = {1.0}}), ValueError);
  CHECK_THROWS_AS(DenseNetwork<BinaryClassification>({.inputs = 2, .dropout = 1.0}), ValueError);
}

TEST_CASE("divergence stops fit with an error that says so and keeps the last good weights") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/house_price.csv", {.target = std::string("house_price")});
  const Eigen::MatrixXd X = StandardScaler().fit_transform(d.X);
  {
    DenseNetwork<Regression> mlp({.inputs = X.cols(), .seed = 1});
    Sgd sgd({.learning_rate = 1e30});  // blows up within a few steps
    std::string e;
    try {
      mlp.fit(X, d.y, sgd, {.epochs = 50, .batch_size = 16, .progress = Progress::off});
    } catch (const NumericalError& err) {
      e = err.what();
    }
    CHECK(e.find("training diverged") != std::string::npos);
    CHECK(e.find("epoch 1") != std::string::npos);
  }
  // Step by step: when a step is refused, every weight and batch-norm statistic is exactly what
  // it was after the last step that was accepted.
  DenseNetwork<BinaryClassification> mlp({.inputs = X.cols(), .seed = 2});  // batch norm on
  SpikingNetwork<BinaryClassification> snn({.inputs = X.cols(), .hidden = {16}, .time_steps = 16, .seed = 2});
  const Eigen::VectorXd y = (d.y.array() > d.y.mean()).cast<double>();
  auto check = [&](auto& net) {
    Sgd sgd({.learning_rate = 1e32});
    bool refused = false;
    for (int step = 0; step < 40 && !refused; ++step) {
      std::vector<std::vector<float>> before;
      for (const auto& p : net.parameters()) before.emplace_back(p.value, p.value + p.size);
      std::vector<Eigen::VectorXd> stats;
      if constexpr (requires { net.layer(0).running_mean; })
        for (Index l = 0; l < net.num_layers(); ++l) stats.push_back(net.layer(l).running_mean), stats.push_back(net.layer(l).running_var);
      try {
        net.train_step(X.topRows(64), y.head(64), sgd);
      } catch (const NumericalError&) {
        refused = true;
        const auto params = net.parameters();
        for (std::size_t k = 0; k < params.size(); ++k)
          CHECK(std::equal(before[k].begin(), before[k].end(), params[k].value));
        if constexpr (requires { net.layer(0).running_mean; })
          for (Index l = 0; l < net.num_layers(); ++l) {
            CHECK(stats[std::size_t(2 * l)] == net.layer(l).running_mean);
            CHECK(stats[std::size_t(2 * l + 1)] == net.layer(l).running_var);
          }
      }
    }
    CHECK(refused);
  };
  check(mlp);
  check(snn);
}

TEST_CASE("the resource guard refuses a training or prediction batch above the memory limit") {
  SpikingNetwork<MulticlassClassification> net({.inputs = 64, .outputs = 10, .hidden = {100}, .time_steps = 1000, .seed = 1});
  const Eigen::MatrixXd X = Eigen::MatrixXd::Constant(300, 64, 0.5);
  Eigen::VectorXd y(300);
  for (Index i = 0; i < 300; ++i) y(i) = double(i % 10);
  Adam adam;
  const std::size_t need = net.workspace_bytes(256);
  CHECK(need > (std::size_t(100) << 20));  // 100 neurons x 1000 steps x 256 samples, floats
  const std::string e = error_of([&] { net.fit(X, y, adam, {.epochs = 1, .batch_size = 256, .memory_limit = std::size_t(64) << 20}); });
  CHECK(e.find("more than the memory limit of 64 MiB") != std::string::npos);
  CHECK_THROWS_AS(net.fit(X, y, adam, {.epochs = 1, .batch_size = 256, .memory_limit = std::size_t(64) << 20}), ResourceError);
  set_memory_limit(std::size_t(16) << 20);
  CHECK_THROWS_AS(net.predict(X), ResourceError);
  reset_memory_limit();
  // Below the limit the same calls run.
  CHECK(net.predict(X.topRows(2)).size() == 2);
}

TEST_CASE("a numeric target with a stray NA, or a number among text labels, is an error naming the line") {
  std::string s = "a,b,price\n";
  for (int i = 0; i < 270; ++i) s += std::to_string(i) + ",1," + std::to_string(1000 + 7 * i) + ".5\n";
  s += "3,4,NA\n";
  TempCsv f(s);
  const std::string e = error_of([&] { read_csv(f.path, {.target = std::string("price")}); });
  CHECK(e.find("line 272, column 'price': 'NA' is not a number, but 270 of the 271 target values are") != std::string::npos);
  CHECK(e.find("a missing value") != std::string::npos);
  TempCsv g("a,label\n1,cat\n2,dog\n3,7\n4,cat\n", "nmsnn_bad_labels.csv");
  CHECK(error_of([&] { read_csv(g.path); }).find("line 4, column 'label': the number '7' among text labels") != std::string::npos);
  // Text labels alone and numbers alone are read as before.
  TempCsv h("a,label\n1,cat\n2,dog\n", "nmsnn_ok_labels.csv");
  CHECK(read_csv(h.path).class_names == std::vector<std::string>{"cat", "dog"});
}

TEST_CASE("duplicate column names are refused") {
  TempCsv f("a,b,a,target\n1,2,3,0\n");
  const std::string e = error_of([&] { read_csv(f.path); });
  CHECK(e.find("the column name 'a' appears more than once (columns 1 and 3") != std::string::npos);
}

TEST_CASE("a feature in units of 1e300 (or 1e-300) is scaled like any other, and its model saves and loads") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  Eigen::MatrixXd big = d.X, small = d.X;
  big.col(2) *= 1e300;
  small.col(2) *= 1e-300;
  Scaler s0 = StandardScaler(), s1 = StandardScaler(), s2 = StandardScaler();
  const Eigen::MatrixXd z0 = s0.fit_transform(d.X), z1 = s1.fit_transform(big), z2 = s2.fit_transform(small);
  REQUIRE(s1.scale().allFinite());
  REQUIRE(s2.scale().allFinite());
  CHECK((s2.scale().array() > 0).all());
  CHECK(test::max_rel_error(z1, z0) < 1e-12);
  CHECK(test::max_rel_error(z2, z0) < 1e-12);
  // A column of ordinary values gets the same bits as the plain formula.
  const Eigen::RowVectorXd mean = d.X.colwise().mean();
  CHECK(s0.offset() == mean);
  // Min-max scaling whose range itself overflows is refused, naming the column.
  Eigen::MatrixXd wide = d.X;
  wide(0, 1) = 1.5e308;
  wide(1, 1) = -1.5e308;
  CHECK(error_of([&] { MinMaxScaler().fit(wide); }).find("column 1") != std::string::npos);
  SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {8}, .time_steps = 8, .seed = 1});
  Adam adam({.learning_rate = 1e-2});
  net.fit(z1, d.y, adam, {.epochs = 2, .progress = Progress::off});
  const std::string path = "nmsnn_test_1e300.safetensors";
  save_model(path, net, {s1, d.feature_names, d.target_name, {"a", "b", "c"}});
  ModelExtras back;
  const auto loaded = load_model<SpikingNetwork<MulticlassClassification>>(path, &back);
  CHECK(loaded.predict(back.scaler.transform(big)) == net.predict(z1));
  std::remove(path.c_str());
}
