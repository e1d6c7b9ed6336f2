// Saved models: round trip with bit-identical predictions, and every kind of bad file.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
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
  // Single-bit flips all over the file, header and weights: each one is refused (the checksum
  // covers both), never a crash.
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
  CHECK(accepted == 0);
  // Foreign files.
  spit(bad, "x0,x1,target\n1,2,0\n");
  CHECK_THROWS_AS(load_model<SpikingNetwork<BinaryClassification>>(bad), IoError);
  std::string other = good;
  other.replace(other.find("\"nmsnn\""), 7, "\"other\"");
  spit(bad, other);
  CHECK_THROWS_WITH(load_model<SpikingNetwork<BinaryClassification>>(bad), Catch::Contains("not an nmsnn model"));
  // Another format version.
  std::string v2 = good;
  const std::string current = "\"format_version\":\"" + std::to_string(model_format_version) + "\"";
  v2.replace(v2.find(current), current.size(), "\"format_version\":\"9\"");
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

namespace {

/// A saved file taken apart: its header and data section, to alter and seal again (the checksum
/// recomputed, so that the loader's other checks are what refuses the change).
struct Parts {
  nlohmann::json header;
  std::string data;
  explicit Parts(const std::string& bytes) {
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    header = nlohmann::json::parse(bytes.substr(8, n));
    data = bytes.substr(8 + n);
  }
  nlohmann::json description() const { return nlohmann::json::parse(header["__metadata__"]["model"].get<std::string>()); }
  void set_description(const nlohmann::json& m) { header["__metadata__"]["model"] = m.dump(); }
  std::string sealed() const { return detail::seal_safetensors(header, data); }
  /// Removes a tensor and its bytes, moving the later tensors' offsets down.
  void remove_tensor(const std::string& name) {
    const std::uint64_t b = header[name]["data_offsets"][0], e = header[name]["data_offsets"][1];
    header.erase(name);
    data.erase(b, e - b);
    for (auto& [k, v] : header.items())
      if (k != "__metadata__" && v["data_offsets"][0].get<std::uint64_t>() >= e) {
        v["data_offsets"][0] = v["data_offsets"][0].get<std::uint64_t>() - (e - b);
        v["data_offsets"][1] = v["data_offsets"][1].get<std::uint64_t>() - (e - b);
      }
  }
};

template <class Net>
std::string load_error(const std::string& bytes) {
  // A name of the process's own: CTest runs this executable's cases in parallel.
  const std::string path = "nmsnn_test_crafted_" + std::to_string(::getpid()) + ".safetensors";
  spit(path, bytes);
  std::string e;
  try {
    (void)load_model<Net>(path);
  } catch (const IoError& err) {
    e = err.what();
  }
  std::string e2;
  try {
    (void)inspect_model(path);
  } catch (const IoError& err) {
    e2 = err.what();
  }
  std::remove(path.c_str());
  // inspect validates as load does (a wrong kind or task aside).
  if (e.find("holds a") == std::string::npos) CHECK(e2 == e);
  return e;
}

}  // namespace

TEST_CASE("the checksum is zlib's CRC-32 and is verified, and version 1 and 2 files still load") {
  CHECK(detail::crc32("123456789") == 0xCBF43926u);  // the standard check value
  CHECK(detail::crc32("") == 0u);
  CHECK(detail::crc32("56789", detail::crc32("1234")) == 0xCBF43926u);
  for (const std::string v : {"v1", "v2"}) {  // files written by the last commits that wrote them
    INFO("format " << v);
    const nlohmann::json expected = test::load_json("model_" + v + "/expected.json");
    const Eigen::MatrixXd probe = test::to_matrix(expected["probe_rows"]);
    const std::string dir = std::string(NMSNN_TEST_FIXTURES) + "/model_" + v + "/";
    {
      ModelExtras ex;
      const auto net = load_model<SpikingNetwork<MulticlassClassification>>(dir + "spiking_multiclass_" + v + ".safetensors", &ex);
      CHECK(ex.class_names == std::vector<std::string>{"setosa", "versicolor", "virginica"});
      CHECK(net.layer(0).neuron().model == NeuronModel::graded);
      CHECK(test::max_rel_error(net.predict_proba(ex.scaler.transform(probe)).cast<double>(),
                                test::to_matrix(expected["spiking_multiclass"])) < 1e-6);
    }
    {
      ModelExtras ex;
      const auto net = load_model<DenseNetwork<Regression>>(dir + "dense_regression_" + v + ".safetensors", &ex);
      CHECK(test::max_rel_error(net.predict(ex.scaler.transform(probe.leftCols(3))).cast<double>(),
                                test::to_matrix(expected["dense_regression"])) < 1e-6);
    }
    {
      const auto net = load_model<SpikingNetwork<Regression>>(dir + "spiking_regression_" + v + ".safetensors");
      CHECK(net.target_scale().size() == 1);  // its target scaling (without the version 2 flag in v1)
      CHECK(test::max_rel_error(net.predict(probe.leftCols(3)).cast<double>(), test::to_matrix(expected["spiking_regression"])) <
            1e-6);
    }
  }
  // A file of the current version: the checksum is in the metadata and covers the data.
  SpikingNetwork<BinaryClassification> net({.inputs = 3, .hidden = {5}, .time_steps = 4, .seed = 2});
  save_model("nmsnn_test_v2.safetensors", net);
  Parts p(slurp("nmsnn_test_v2.safetensors"));
  std::remove("nmsnn_test_v2.safetensors");
  CHECK(p.header["__metadata__"]["format_version"] == std::to_string(model_format_version));
  CHECK(p.header["__metadata__"]["checksum"].get<std::string>().rfind("crc32:", 0) == 0);
  Parts flipped = p;
  flipped.data[5] = char(flipped.data[5] ^ 0x10);  // one bit of one weight
  std::string bytes = p.sealed();
  bytes[bytes.size() - p.data.size() + 5] = char(bytes[bytes.size() - p.data.size() + 5] ^ 0x10);
  CHECK(load_error<SpikingNetwork<BinaryClassification>>(bytes).find("checksum mismatch") != std::string::npos);
  CHECK(load_error<SpikingNetwork<BinaryClassification>>(flipped.sealed()).empty());  // resealed: a valid file
  Parts no_sum = p;
  no_sum.header["__metadata__"].erase("checksum");
  std::string raw = no_sum.header.dump();
  std::string file(8, '\0');
  const std::uint64_t n = raw.size();
  std::memcpy(file.data(), &n, 8);
  CHECK(load_error<SpikingNetwork<BinaryClassification>>(file + raw + p.data).find("no checksum") != std::string::npos);
}

TEST_CASE("crafted files that pass the checksum: shapes, tensors, names and settings are all checked") {
  using Net = SpikingNetwork<MulticlassClassification>;
  Net net({.inputs = 4, .outputs = 3, .hidden = {100}, .time_steps = 8, .seed = 5});
  ModelExtras ex{StandardScaler(), {"a", "b", "c", "d"}, "y", {"x", "y", "z"}};
  ex.scaler.fit(Eigen::MatrixXd(Eigen::MatrixXd::Random(10, 4)));
  save_model("nmsnn_test_craft.safetensors", net, ex);
  const Parts good(slurp("nmsnn_test_craft.safetensors"));
  std::remove("nmsnn_test_craft.safetensors");
  REQUIRE(load_error<Net>(good.sealed()).empty());
  auto with_shape = [&](const nlohmann::json& shape) {
    Parts p = good;
    p.header["layers.0.weight"]["shape"] = shape;
    return load_error<Net>(p.sealed());
  };
  // The element count is right (400), the shape is not.
  CHECK(with_shape({4, 100}).find("'layers.0.weight' has shape [4, 100], expected [100, 4]") != std::string::npos);
  CHECK(with_shape({400}).find("has shape [400], expected [100, 4]") != std::string::npos);
  CHECK(with_shape({2, 2, 100}).find("has shape [2, 2, 100]") != std::string::npos);
  {  // Overlapping tensors: the bias's offsets moved onto the weights' bytes.
    Parts p = good;
    const std::uint64_t wb = p.header["layers.0.weight"]["data_offsets"][0];
    p.header["layers.0.bias"]["data_offsets"] = {wb, wb + 400};
    const std::string e = load_error<Net>(p.sealed());
    CHECK((e.find("overlaps") != std::string::npos || e.find("gap") != std::string::npos));
  }
  {  // Bytes no tensor claims.
    Parts p = good;
    p.data += std::string(8, '\0');
    CHECK(load_error<Net>(p.sealed()).find("bytes of data after the last tensor") != std::string::npos);
  }
  {  // A tensor the architecture does not have, and a missing one.
    Parts p = good;
    const std::uint64_t end = p.data.size();
    p.header["extra"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {end, end + 4}}};
    p.data += std::string(4, '\0');
    CHECK(load_error<Net>(p.sealed()).find("unexpected tensor 'extra'") != std::string::npos);
    Parts q = good;
    q.remove_tensor("layers.1.bias");
    CHECK(load_error<Net>(q.sealed()).find("tensor 'layers.1.bias' is missing") != std::string::npos);
    Parts r = good;
    r.remove_tensor("scaler.scale");
    CHECK(load_error<Net>(r.sealed()).find("tensor 'scaler.scale' is missing") != std::string::npos);
  }
  {  // A dtype other than the description's scalar.
    Parts p = good;
    p.header["layers.0.bias"]["dtype"] = "F64";
    p.header["layers.0.bias"]["shape"] = {50};
    CHECK(load_error<Net>(p.sealed()).find("'layers.0.bias' is F64, expected F32") != std::string::npos);
  }
  {  // A key twice in the header, and twice in the description (JSON parsers keep one silently).
    const std::string bytes = good.sealed();
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    std::string h = bytes.substr(8, n);
    const std::string entry = "\"layers.0.bias\":" + good.header["layers.0.bias"].dump();
    h.insert(1, entry + ",");
    std::string file(8, '\0');
    const std::uint64_t m = h.size();
    std::memcpy(file.data(), &m, 8);
    CHECK(load_error<Net>(file + h + good.data).find("the key 'layers.0.bias' more than once") != std::string::npos);
    Parts p = good;
    std::string desc = p.header["__metadata__"]["model"];
    desc.insert(1, "\"inputs\":400000,");
    p.header["__metadata__"]["model"] = desc;
    CHECK(load_error<Net>(p.sealed()).find("the key 'inputs' more than once") != std::string::npos);
  }
  auto with = [&](const std::function<void(nlohmann::json&)>& change) {
    Parts p = good;
    nlohmann::json m = p.description();
    change(m);
    p.set_description(m);
    return load_error<Net>(p.sealed());
  };
  struct Case {
    const char* name;
    std::function<void(nlohmann::json&)> change;
    const char* expect;
  };
  const std::vector<Case> cases{
      {"decay 1e300", [](auto& m) { m["layers"][0]["decay"] = 1e300; }, "'layers[0].decay' is 1e+300, outside [0.0, 1.0]"},
      {"negative penalty", [](auto& m) { m["layers"][1]["penalty"] = -1; }, "'layers[1].penalty' is -1"},
      {"zero threshold", [](auto& m) { m["layers"][0]["threshold"] = 0; }, "'layers[0].threshold' must be > 0"},
      {"unknown reset", [](auto& m) { m["layers"][0]["reset"] = "bounce"; }, "'layers[0].reset' is 'bounce'"},
      {"layer inputs", [](auto& m) { m["layers"][1]["inputs"] = 7; }, "'layers[1].inputs' is 7, outside 100..100"},
      {"layer key", [](auto& m) { m["layers"][0]["leak"] = 1; }, "unknown setting 'layers[0].leak'"},
      {"seed -1", [](auto& m) { m["seed"] = "-1"; }, "'seed' is '-1', not a decimal number"},
      {"seed 2^64", [](auto& m) { m["seed"] = "18446744073709551616"; }, "'seed' is '18446744073709551616'"},
      {"seed number", [](auto& m) { m["seed"] = 5; }, "'seed' is not a string"},
      {"inputs 4.5", [](auto& m) { m["inputs"] = 4.5; }, "'inputs' is not an integer (4.5)"},
      {"inputs 0", [](auto& m) { m["inputs"] = 0; }, "'inputs' is 0, outside 1.."},
      {"outputs 1 for multiclass", [](auto& m) { m["outputs"] = 1; }, "'outputs' is 1, outside 2.."},
      {"time_steps 2^40", [](auto& m) { m["time_steps"] = std::int64_t(1) << 40; }, "'time_steps' is 1099511627776"},
      {"begin_eval = T", [](auto& m) { m["begin_eval"] = 8; }, "'begin_eval' is 8, outside 0..7"},
      {"readout", [](auto& m) { m["readout"] = "max"; }, "'readout' is 'max'"},
      {"hidden empty (one layer) with two layers' entries", [](auto& m) { m["hidden"] = nlohmann::json::array(); },
       "'layers' does not list one entry for each of the 1 layers"},
      {"layers short", [](auto& m) { m["layers"].erase(1); }, "'layers' does not list one entry for each of the 2 layers"},
      {"unknown key", [](auto& m) { m["learning_rate"] = 0.1; }, "unknown setting 'learning_rate'"},
      {"missing key", [](auto& m) { m.erase("encoder"); }, "has no 'encoder'"},
      {"class names too few", [](auto& m) { m["class_names"] = {"x", "y"}; }, "'class_names' has 2 names, the model has 3"},
      {"class names repeated", [](auto& m) { m["class_names"] = {"x", "x", "y"}; }, "'class_names' names 'x' more than once"},
      {"feature names too many", [](auto& m) { m["feature_names"] = {"a", "b", "c", "d", "e"}; }, "has 5 names, the model has 4"},
      {"feature names repeated", [](auto& m) { m["feature_names"] = {"a", "b", "a", "d"}; }, "names 'a' more than once"},
      {"scaler unknown", [](auto& m) { m["scaler"] = "robust"; }, "'scaler' is 'robust'"},
      {"kind", [](auto& m) { m["kind"] = "recurrent"; }, "'kind' is 'recurrent'"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const std::string e = with(c.change);
    INFO(e);
    CHECK(e.find(c.expect) != std::string::npos);
    CHECK(e.find("nmsnn_test_crafted_") != std::string::npos);
  }
  // A scaler of kind "none" with no tensors is fine; "standard" without them is not.
  CHECK(with([](auto& m) { m["scaler"] = "minmax"; }).empty());
}

TEST_CASE("a regressor without its target scaling, and a 2 KB file claiming 1024 layers of 16384, are refused") {
  SpikingNetwork<Regression> reg({.inputs = 3, .hidden = {6}, .time_steps = 4, .seed = 1});
  Adam adam;
  const Eigen::MatrixXd X = Eigen::MatrixXd::Random(20, 3);
  reg.fit(X, Eigen::VectorXd(X.col(0) * 100.0), adam, {.epochs = 1, .progress = Progress::off});
  save_model("nmsnn_test_reg.safetensors", reg);
  Parts p(slurp("nmsnn_test_reg.safetensors"));
  std::remove("nmsnn_test_reg.safetensors");
  CHECK(p.description()["target_scaling"] == true);
  p.remove_tensor("target.offset");
  p.remove_tensor("target.scale");
  CHECK(load_error<SpikingNetwork<Regression>>(p.sealed()).find("tensor 'target.offset' is missing") != std::string::npos);
  // Saying there is no scaling (a model trained without it) while the tensors are there.
  Parts q(detail::seal_safetensors(p.header, p.data));
  nlohmann::json m = q.description();
  m["target_scaling"] = false;
  q.set_description(m);
  CHECK(load_error<SpikingNetwork<Regression>>(q.sealed()).empty());  // consistent: no tensors, no scaling

  // 1024 hidden layers of 16384 described, no tensors: refused by the tensor check before the
  // network (1024 x 16384^2 weights, 1 TiB) is allocated.
  SpikingNetwork<BinaryClassification> tiny({.inputs = 3, .hidden = {5}, .time_steps = 4, .seed = 2});
  save_model("nmsnn_test_tiny.safetensors", tiny);
  Parts t(slurp("nmsnn_test_tiny.safetensors"));
  std::remove("nmsnn_test_tiny.safetensors");
  nlohmann::json d = t.description();
  d["hidden"] = std::vector<Index>(1024, 16384);
  nlohmann::json layer = d["layers"][0];
  d["layers"] = nlohmann::json::array();
  for (int l = 0; l <= 1024; ++l) {
    layer["inputs"] = l == 0 ? 3 : 16384;
    layer["outputs"] = l == 1024 ? 1 : 16384;
    d["layers"].push_back(layer);
  }
  t.set_description(d);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = load_error<SpikingNetwork<BinaryClassification>>(t.sealed());
  CHECK(e.find("tensor 'layers.0.bias' has shape [5], expected [16384]") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

TEST_CASE("save_model refuses extras that the file could not hold truthfully") {
  SpikingNetwork<MulticlassClassification> net({.inputs = 2, .outputs = 3, .hidden = {4}, .time_steps = 4, .seed = 1});
  const std::string path = "nmsnn_test_extras.safetensors";
  std::remove(path.c_str());
  auto refused = [&](const ModelExtras& ex, const char* expect) {
    INFO(expect);
    try {
      save_model(path, net, ex);
      FAIL("saved");
    } catch (const ValueError& e) {
      CHECK(std::string(e.what()).find(expect) != std::string::npos);
    }
    CHECK(!std::ifstream(path));  // nothing written
  };
  refused({Scaler(), {"a"}, "", {}}, "1 feature names for 2 inputs");
  refused({Scaler(), {"a", "a"}, "", {}}, "the feature name 'a' appears more than once");
  refused({Scaler(), {}, "", {"p", "q"}}, "2 class names for a model of 3 classes");
  refused({Scaler(), {}, "", {"p", "q", "p"}}, "the class name 'p' appears more than once");
  refused({StandardScaler(), {}, "", {}}, "the standard scaler was not fitted");
  ModelExtras wrong{StandardScaler(), {}, "", {}};
  wrong.scaler.fit(Eigen::MatrixXd(Eigen::MatrixXd::Random(5, 3)));
  refused(wrong, "the scaler has 3 columns, the model 2 inputs");
}

TEST_CASE("crafted LIF layers: a missing per-neuron tensor, an unknown neuron or setting, a graded reset are refused") {
  using Net = SpikingNetwork<BinaryClassification>;
  Net net({.inputs = 3, .hidden = {6}, .time_steps = 5, .seed = 1});
  NeuronOptions syn = NeuronOptions::synaptic(0.5, 0.8);
  syn.learn_alpha = true;
  net.layer(0).set_neuron(syn);
  net.layer(1).set_neuron(NeuronOptions::leaky());
  const std::string path = "nmsnn_test_lif_craft_" + std::to_string(::getpid()) + ".safetensors";
  save_model(path, net);
  const Parts good(slurp(path));
  std::remove(path.c_str());
  REQUIRE(load_error<Net>(good.sealed()).empty());
  {
    Parts p = good;
    p.remove_tensor("layers.0.alpha");
    CHECK(load_error<Net>(p.sealed()).find("tensor 'layers.0.alpha' is missing") != std::string::npos);
  }
  auto with_layer = [&](Index l, const std::string& key, const nlohmann::json& value) {
    Parts p = good;
    nlohmann::json m = p.description();
    if (value.is_null()) m["layers"][std::size_t(l)].erase(key);
    else m["layers"][std::size_t(l)][key] = value;
    p.set_description(m);
    return load_error<Net>(p.sealed());
  };
  CHECK(with_layer(1, "neuron", "izhikevich").find("setting 'layers[1].neuron' is 'izhikevich', not a known value") !=
        std::string::npos);
  CHECK(with_layer(1, "reset", "scale").find("reset 'scale' is the graded neuron's") != std::string::npos);
  CHECK(with_layer(1, "penalty", 1.5).find("unknown setting 'layers[1].penalty'") != std::string::npos);
  CHECK(with_layer(1, "learn_alpha", true).find("unknown setting 'layers[1].learn_alpha'") != std::string::npos);
  CHECK(with_layer(0, "surrogate", nullptr).find("has no 'layers[0].surrogate'") != std::string::npos);
  CHECK(with_layer(0, "alpha", 1.5).find("setting 'layers[0].alpha' is 1.5, outside") != std::string::npos);
  // graded in name, with the LIF tensors still there
  CHECK(with_layer(1, "neuron", "graded").find("'layers[1].") != std::string::npos);
}
