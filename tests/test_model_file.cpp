// Saved models: round trip with bit-identical predictions, and every kind of bad file.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {
std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
}  // namespace

TEST_CASE("a saved model loads back and predicts bit-identically") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  ModelExtras extras{StandardScaler(), d.feature_names, d.target_name, {"setosa", "versicolor", "virginica"}};
  const Eigen::MatrixXd X = extras.scaler.fit_transform(d.X);
  SpikingNetwork<MulticlassClassification> net(
      {.inputs = 4, .outputs = 3, .hidden = {12, 7}, .time_steps = 16, .begin_eval = 2, .seed = 9});
  net.layer(1).set_neuron({.decay = 0.8, .threshold = 0.7, .penalty = 1.2, .reset = Reset::subtract});
  Adam adam({.learning_rate = 1e-2});
  net.fit(X, d.y, adam, {.epochs = 2});
  const std::string path = "nmsnn_test_model.safetensors";
  save_model(path, net, extras);
  ModelExtras back;
  const auto loaded = load_model<SpikingNetwork<MulticlassClassification>>(path, &back);
  CHECK(loaded.predict_proba(back.scaler.transform(d.X)) == net.predict_proba(X));  // bit for bit
  CHECK(loaded.layer(1).neuron().reset == Reset::subtract);
  CHECK(loaded.layer(1).neuron().threshold == 0.7);
  CHECK(back.class_names == extras.class_names);
  CHECK(back.feature_names == d.feature_names);
  CHECK(back.scaler.offset() == extras.scaler.offset());
  CHECK(inspect_model(path)["task"] == "multiclass");
  // The wrong task or a foreign file is refused.
  CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>(path), IoError);
  std::remove(path.c_str());

  SpikingNetwork<Regression, double> reg({.inputs = 4, .time_steps = 8, .seed = 1});
  Adam adam2;
  reg.fit(X, d.y * 10.0, adam2, {.epochs = 1});
  save_model(path, reg);
  const auto reg2 = load_model<SpikingNetwork<Regression, double>>(path);
  CHECK(reg2.predict(X) == reg.predict(X));
  CHECK(reg2.target_scale() == reg.target_scale());
  std::remove(path.c_str());
}

TEST_CASE("a saved dense network loads back with its batch-norm statistics and predicts bit-identically") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  ModelExtras extras{MinMaxScaler(), d.feature_names, d.target_name, {"a", "b", "c"}};
  const Eigen::MatrixXd X = extras.scaler.fit_transform(d.X);
  DenseNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {9, 5}, .batch_norm = true, .dropout = 0.2, .seed = 4});
  Adam adam({.learning_rate = 1e-2});
  net.fit(X, d.y, adam, {.epochs = 3, .batch_size = 16});
  const std::string path = "nmsnn_test_dense.safetensors";
  save_model(path, net, extras);
  ModelExtras back;
  const auto loaded = load_model<DenseNetwork<MulticlassClassification>>(path, &back);
  CHECK(loaded.predict_proba(back.scaler.transform(d.X)) == net.predict_proba(X));
  CHECK(loaded.layer(0).running_var == net.layer(0).running_var);
  CHECK(loaded.layer(1).running_mean == net.layer(1).running_mean);
  CHECK(loaded.batch_norm());
  CHECK(loaded.dropout() == 0.2);
  CHECK(back.scaler.kind() == Scaling::minmax);
  CHECK(inspect_model(path)["kind"] == "dense");
  // A dense file is not a spiking network, and the other way round.
  using Spiking = SpikingNetwork<MulticlassClassification>;
  CHECK_THROWS_AS(load_model<Spiking>(path), IoError);
  std::remove(path.c_str());

  DenseNetwork<Regression, double> reg({.inputs = 4, .seed = 1});
  Adam adam2;
  reg.fit(X, d.y * 10.0, adam2, {.epochs = 2});
  save_model(path, reg);
  const auto reg2 = load_model<DenseNetwork<Regression, double>>(path);
  CHECK(reg2.predict(X) == reg.predict(X));
  CHECK(reg2.target_offset() == reg.target_offset());
  using SpikingReg = SpikingNetwork<Regression, double>;
  CHECK_THROWS_AS(load_model<SpikingReg>(path), IoError);
  std::remove(path.c_str());
}

TEST_CASE("truncated, bit-flipped, empty, foreign, wrong-version and gigantic files throw IoError") {
  SpikingNetwork<BinaryClassification> net({.inputs = 3, .hidden = {5}, .time_steps = 4, .seed = 2});
  const std::string path = "nmsnn_test_bad.safetensors", bad = "nmsnn_test_bad2.safetensors";
  save_model(path, net);
  const std::string good = slurp(path);
  int rejected = 0, accepted = 0;
  // Every truncation.
  for (std::size_t n = 0; n < good.size(); n += 7) {
    spit(bad, good.substr(0, n));
    CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>(bad), IoError);
  }
  // Single-bit flips all over the file: either a clear IoError or a model that loads (a flip
  // inside a weight's bytes changes a weight); never a crash.
  for (std::size_t i = 0; i < good.size(); i += 3) {
    std::string s = good;
    s[i] = char(s[i] ^ (1 << (i % 8)));
    spit(bad, s);
    try {
      load_model<SpikingNetwork<BinaryClassification>>(bad);
      ++accepted;
    } catch (const IoError&) {
      ++rejected;
    }
  }
  CHECK(rejected > 0);
  // Foreign files.
  spit(bad, "x0,x1,target\n1,2,0\n");
  CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>(bad), IoError);
  std::string other = good;
  other.replace(other.find("\"nmsnn\""), 7, "\"other\"");
  spit(bad, other);
  CHECK_THROWS_WITH(load_model<SpikingNetwork<BinaryClassification>>(bad), Catch::Contains("not an nmsnn model"));
  // Another format version.
  std::string v2 = good;
  v2.replace(v2.find("\"format_version\":\"1\""), 20, "\"format_version\":\"9\"");
  spit(bad, v2);
  CHECK_THROWS_WITH(load_model<SpikingNetwork<BinaryClassification>>(bad), Catch::Contains("format version 9"));
  // A header that claims a gigantic tensor, and one that claims a gigantic header.
  const std::string giant_header = R"({"__metadata__":{"format":"nmsnn","format_version":"1","model":"{}"},)"
                                   R"("w":{"dtype":"F32","shape":[4000000000,4000000000],"data_offsets":[0,8]}})";
  std::string g(8, '\0');
  const std::uint64_t n = giant_header.size();
  std::memcpy(g.data(), &n, 8);
  spit(bad, g + giant_header + std::string(8, '\0'));
  CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>(bad), IoError);
  std::string h = good;
  const std::uint64_t huge = ~0ull;
  std::memcpy(h.data(), &huge, 8);
  spit(bad, h);
  CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>(bad), IoError);
  CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>("/nonexistent/model"), IoError);
  // Saving over an existing model leaves it whole when the directory is not writable.
  CHECK_THROWS_AS(save_model("/nonexistent/dir/model.safetensors", net), IoError);
  std::remove(path.c_str());
  std::remove(bad.c_str());
  INFO("bit flips: " << rejected << " rejected, " << accepted << " loaded");
}

TEST_CASE("the file is a valid safetensors file that NumPy users can read") {
  SpikingNetwork<MulticlassClassification> net({.inputs = 3, .outputs = 4, .hidden = {5}, .time_steps = 4, .seed = 2});
  const std::string path = "nmsnn_test_st.safetensors";
  save_model(path, net);
  const std::string s = slurp(path);
  std::uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  REQUIRE(n + 8 <= s.size());
  CHECK((n + 8) % 8 == 0);
  const auto header = nlohmann::json::parse(s.substr(8, n));
  const auto& w = header["layers.0.weight"];
  CHECK(w["dtype"] == "F32");
  CHECK(w["shape"] == nlohmann::json::array({5, 3}));
  // Row-major: element (1, 2) of W sits at index 1 * 3 + 2.
  const std::uint64_t off = w["data_offsets"][0];
  float v;
  std::memcpy(&v, s.data() + 8 + n + off + (1 * 3 + 2) * 4, 4);
  CHECK(v == net.layer(0).weights()(1, 2));
  std::remove(path.c_str());
}
