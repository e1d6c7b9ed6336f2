// libFuzzer target: the model loader (safetensors header, metadata, tensors) on arbitrary
// bytes, for a spiking and a dense network, and inspect_model. Three modes per input:
//  1. the bytes as they are (most fail the checksum, or earlier);
//  2. checksum-aware: when the bytes have a parsable header, the file sealed again with its
//     checksum recomputed, so that mutations of the header and the data reach the checks
//     behind the checksum;
//  3. data region: a valid model whose weights are the input's bytes (XORed over its data
//     section, sealed again), loaded and run: non-finite weights must be refused at load and
//     outputs that overflow reported at predict.
// Only nmsnn::IoError, ResourceError (and, at predict, NumericalError) may come out.
#include <nmsnn/nmsnn.hpp>

#include <cstring>

#include "fuzz_common.hpp"

namespace {

template <class Net>
void try_load(const std::string& path, bool run) {
  try {
    nmsnn::ModelExtras ex;
    const Net net = nmsnn::load_model<Net>(path, &ex);
    // A model that loads must predict without crashing (a small, bounded run).
    bool small = net.inputs() <= 64 && net.parameter_count() <= 100000;
    if constexpr (requires { net.time_steps(); }) small = small && net.time_steps() <= 64;
    if (run && small) {
      const Eigen::MatrixXd X = Eigen::MatrixXd::Constant(2, net.inputs(), 0.5);
      try {
        const auto p = net.predict(ex.scaler.fitted() ? ex.scaler.transform(X) : X);
        if (!p.allFinite()) __builtin_trap();  // a non-finite prediction must have been refused
      } catch (const nmsnn::NumericalError&) {
      } catch (const nmsnn::ValueError&) {  // the scaler made a row non-finite
      }
    }
  } catch (const nmsnn::IoError&) {
  } catch (const nmsnn::ResourceError&) {
  }
}

void try_all(const std::string& path) {
  try_load<nmsnn::SpikingNetwork<nmsnn::MulticlassClassification>>(path, true);
  try_load<nmsnn::DenseNetwork<nmsnn::Regression>>(path, true);
  try {
    (void)nmsnn::inspect_model(path);
  } catch (const nmsnn::IoError&) {
  } catch (const nmsnn::ResourceError&) {
  }
}

void spit(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

/// The header and data of a file's bytes, when its header parses as a JSON object.
bool split(const std::string& bytes, nlohmann::json& header, std::string& data) {
  if (bytes.size() < 8) return false;
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) return false;
  header = nlohmann::json::parse(bytes.substr(8, std::size_t(n)), nullptr, false);
  if (!header.is_object() || !header.contains("__metadata__") || !header["__metadata__"].is_object()) return false;
  data = bytes.substr(8 + std::size_t(n));
  return true;
}

/// Valid files to mutate in mode 3: a spiking classifier and a dense regressor.
const std::vector<std::string>& templates() {
  static const std::vector<std::string> t = [] {
    std::vector<std::string> out;
    const std::string path = "/tmp/nmsnn_fuzz_template_" + std::to_string(::getpid()) + ".safetensors";
    nmsnn::SpikingNetwork<nmsnn::MulticlassClassification> s({.inputs = 4, .outputs = 3, .hidden = {8}, .time_steps = 8, .seed = 1});
    nmsnn::ModelExtras ex{nmsnn::StandardScaler(), {}, "y", {"a", "b", "c"}};
    ex.scaler.fit(Eigen::MatrixXd(Eigen::MatrixXd::Random(6, 4)));
    nmsnn::save_model(path, s, ex, {.force = true});
    std::FILE* f = std::fopen(path.c_str(), "rb");
    auto slurp = [&] {
      std::string b;
      char buf[4096];
      std::size_t k;
      while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) b.append(buf, k);
      std::fclose(f);
      return b;
    };
    out.push_back(slurp());
    nmsnn::DenseNetwork<nmsnn::Regression> d({.inputs = 4, .hidden = {6}, .batch_norm = true, .seed = 2});
    nmsnn::save_model(path, d, {}, {.force = true});
    f = std::fopen(path.c_str(), "rb");
    out.push_back(slurp());
    std::remove(path.c_str());
    return out;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_temp(data, size, ".safetensors");
  try_all(path);  // 1: as they are
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  nlohmann::json header;
  std::string body;
  if (split(bytes, header, body)) {  // 2: sealed again
    spit(path, nmsnn::detail::seal_safetensors(header, body));
    try_all(path);
  }
  if (size > 0) {  // 3: the input's bytes as weights
    const std::string& t = templates()[data[0] % templates().size()];
    nlohmann::json h;
    std::string d;
    if (!split(t, h, d)) __builtin_trap();
    for (std::size_t i = 1; i < size; ++i) d[(i - 1) % d.size()] = char(d[(i - 1) % d.size()] ^ data[i]);
    spit(path, nmsnn::detail::seal_safetensors(h, d));
    try_all(path);
  }
  return 0;
}
