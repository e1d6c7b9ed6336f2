// nmsnn/io/model_file.hpp — saving and loading a whole model in one file: the safetensors
// format (8-byte little-endian header length, a JSON header, raw little-endian tensors), so
// that NumPy and PyTorch users can read the weights with the `safetensors` package. The
// model's description (task, architecture, neuron and encoder settings, scaler, class names)
// sits in the header's "__metadata__" with a format version.
//
// Saving writes a temporary file and renames it (never a half-written model). Loading checks
// every size against the file before allocating and throws IoError on a truncated, corrupted,
// wrong-version or foreign file.
#pragma once

#include <nlohmann/json.hpp>

#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "nmsnn/core/errors.hpp"
#include "nmsnn/io/atomic_file.hpp"
#include "nmsnn/network/dense_network.hpp"
#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/preprocessing/preprocessing.hpp"

namespace nmsnn {

inline constexpr int model_format_version = 1;
/// Largest JSON header accepted when loading (a guard against absurd allocations).
inline constexpr std::uint64_t max_model_header_bytes = 64ull << 20;

/// What travels with a model besides its network: the feature scaler and the names.
struct ModelExtras {
  Scaler scaler;
  std::vector<std::string> feature_names;
  std::string target_name;
  std::vector<std::string> class_names;
};

namespace detail {

static_assert(std::endian::native == std::endian::little, "nmsnn model files assume a little-endian host");

struct TensorOut {
  std::string name, dtype;
  std::vector<Index> shape;
  std::string bytes;
};

template <class D>
TensorOut tensor_row_major(const std::string& name, const Eigen::MatrixBase<D>& m, bool vector) {
  using Scalar = typename D::Scalar;
  TensorOut t{name, std::is_same_v<Scalar, float> ? "F32" : "F64", {}, {}};
  if (vector) t.shape = {m.size()};
  else t.shape = {m.rows(), m.cols()};
  t.bytes.resize(std::size_t(m.size()) * sizeof(Scalar));
  std::size_t k = 0;
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j, k += sizeof(Scalar)) {
      const Scalar v = m(i, j);
      std::memcpy(t.bytes.data() + k, &v, sizeof(Scalar));
    }
  return t;
}

inline std::string safetensors_bytes(const std::vector<TensorOut>& tensors, const nlohmann::json& metadata) {
  nlohmann::json header;
  std::map<std::string, std::string> meta;
  for (auto it = metadata.begin(); it != metadata.end(); ++it) meta[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  header["__metadata__"] = meta;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';  // align the data section, as the format recommends
  std::string out(8, '\0');
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  for (const auto& t : tensors) out += t.bytes;
  return out;
}

struct TensorIn {
  std::string dtype;
  std::vector<Index> shape;
  const char* data = nullptr;
  std::size_t bytes = 0;
};

struct SafetensorsFile {
  std::string content;
  nlohmann::json metadata;
  std::map<std::string, TensorIn> tensors;
};

inline SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) raise<IoError>("load_model: cannot open '", path, "'");
  SafetensorsFile f;
  f.content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  const std::uint64_t size = f.content.size();
  if (size < 8) raise<IoError>("load_model: ", path, ": not an nmsnn model (", size, " bytes, too short)");
  std::uint64_t n = 0;
  std::memcpy(&n, f.content.data(), 8);
  if (n > size - 8 || n > max_model_header_bytes || n < 2)
    raise<IoError>("load_model: ", path, ": not an nmsnn model (header length ", n, " does not fit the file)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f.content.begin() + 8, f.content.begin() + 8 + std::ptrdiff_t(n));
  } catch (const std::exception& e) {
    raise<IoError>("load_model: ", path, ": corrupted header (", e.what(), ")");
  }
  if (!header.is_object() || !header.contains("__metadata__") || !header["__metadata__"].is_object())
    raise<IoError>("load_model: ", path, ": not an nmsnn model (no metadata)");
  const auto& meta = header["__metadata__"];
  if (!meta.contains("format") || meta["format"] != "nmsnn")
    raise<IoError>("load_model: ", path, ": a safetensors file, but not an nmsnn model");
  if (!meta.contains("format_version") || meta["format_version"] != std::to_string(model_format_version))
    raise<IoError>("load_model: ", path, ": format version ", meta.value("format_version", std::string("?")),
                   ", this nmsnn reads version ", model_format_version);
  try {
    f.metadata = nlohmann::json::parse(meta.value("model", std::string("{}")));
  } catch (const std::exception& e) {
    raise<IoError>("load_model: ", path, ": corrupted model description (", e.what(), ")");
  }
  const std::uint64_t data_size = size - 8 - n;
  const char* data = f.content.data() + 8 + n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& t = it.value();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets") ||
        !t["shape"].is_array() || !t["data_offsets"].is_array() || t["data_offsets"].size() != 2 ||
        !t["dtype"].is_string())
      raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has a malformed entry");
    TensorIn ti;
    ti.dtype = t["dtype"].get<std::string>();
    const std::uint64_t elem = ti.dtype == "F32" ? 4 : ti.dtype == "F64" ? 8 : 0;
    if (!elem) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has unsupported dtype ", ti.dtype);
    std::uint64_t count = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has a bad shape");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v > data_size) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' claims more data than the file holds");
      count *= v;
      if (count > data_size) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' claims more data than the file holds");
      ti.shape.push_back(Index(v));
    }
    if (!t["data_offsets"][0].is_number_unsigned() || !t["data_offsets"][1].is_number_unsigned())
      raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has bad offsets");
    const std::uint64_t b = t["data_offsets"][0], e = t["data_offsets"][1];
    if (b > e || e > data_size || e - b != count * elem)
      raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' offsets [", b, ", ", e,
                     ") do not match its shape or the file (truncated?)");
    ti.data = data + b;
    ti.bytes = std::size_t(e - b);
    f.tensors[it.key()] = ti;
  }
  return f;
}

template <class Scalar>
Matrix<Scalar> tensor_matrix(const SafetensorsFile& f, const std::string& name, Index rows, Index cols,
                             const std::string& path) {
  const auto it = f.tensors.find(name);
  if (it == f.tensors.end()) raise<IoError>("load_model: ", path, ": tensor '", name, "' is missing");
  const TensorIn& t = it->second;
  Index count = 1;
  for (Index d : t.shape) count *= d;
  if (count != rows * cols)
    raise<IoError>("load_model: ", path, ": tensor '", name, "' has ", count, " values, expected ", rows * cols);
  Matrix<Scalar> m(rows, cols);
  std::size_t k = 0;
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) {
      if (t.dtype == "F32") {
        float v;
        std::memcpy(&v, t.data + k, 4);
        k += 4;
        m(i, j) = Scalar(v);
      } else {
        double v;
        std::memcpy(&v, t.data + k, 8);
        k += 8;
        m(i, j) = Scalar(v);
      }
    }
  if (!m.allFinite()) raise<IoError>("load_model: ", path, ": tensor '", name, "' holds non-finite values");
  return m;
}

}  // namespace detail

namespace detail {

template <class Net>
inline constexpr bool is_spiking_v = false;
template <class Task, class Scalar>
inline constexpr bool is_spiking_v<SpikingNetwork<Task, Scalar>> = true;
template <class Net>
inline constexpr bool is_dense_v = false;
template <class Task, class Scalar>
inline constexpr bool is_dense_v<DenseNetwork<Task, Scalar>> = true;

/// What both network kinds store: the task, the scaler, the names and the target scaling.
template <class Net>
void describe_common(const Net& net, const ModelExtras& extras, nlohmann::json& model, std::vector<TensorOut>& tensors) {
  using Scalar = typename Net::Scalar;
  model["task"] = Net::TaskT::name;
  model["scalar"] = std::is_same_v<Scalar, float> ? "float32" : "float64";
  model["inputs"] = net.inputs();
  model["outputs"] = net.outputs();
  model["seed"] = std::to_string(net.seed());
  model["scaler"] = to_string(extras.scaler.kind());
  model["feature_names"] = extras.feature_names;
  model["target_name"] = extras.target_name;
  model["class_names"] = extras.class_names;
  if (extras.scaler.offset().size()) {
    tensors.push_back(tensor_row_major("scaler.offset", extras.scaler.offset(), true));
    tensors.push_back(tensor_row_major("scaler.scale", extras.scaler.scale(), true));
  }
  if (net.target_offset().size()) {
    tensors.push_back(tensor_row_major("target.offset", net.target_offset(), true));
    tensors.push_back(tensor_row_major("target.scale", net.target_scale(), true));
  }
}

template <class Net>
void restore_common(const SafetensorsFile& f, const std::string& path, Net& net, Index inputs, ModelExtras* extras) {
  const auto& m = f.metadata;
  if (f.tensors.count("target.offset"))
    net.set_target_scaling(tensor_matrix<double>(f, "target.offset", 1, net.outputs(), path),
                           tensor_matrix<double>(f, "target.scale", 1, net.outputs(), path));
  if (!extras) return;
  const Scaling kind = parse_scaling(m.at("scaler").get<std::string>());
  if (f.tensors.count("scaler.offset"))
    extras->scaler = Scaler(kind, tensor_matrix<double>(f, "scaler.offset", 1, inputs, path),
                            tensor_matrix<double>(f, "scaler.scale", 1, inputs, path));
  else
    extras->scaler = Scaler(kind);
  extras->feature_names = m.value("feature_names", std::vector<std::string>{});
  extras->target_name = m.value("target_name", std::string());
  extras->class_names = m.value("class_names", std::vector<std::string>{});
}

inline void check_architecture(const std::string& path, Index inputs, const std::vector<Index>& hidden) {
  if (inputs < 1 || inputs > (Index(1) << 28) || hidden.size() > 1024)
    raise<IoError>("load_model: ", path, ": implausible architecture");
  for (Index h : hidden)
    if (h < 1 || h > (Index(1) << 24)) raise<IoError>("load_model: ", path, ": implausible layer width ", h);
}

inline void write_model(const std::string& path, const nlohmann::json& model, const std::vector<TensorOut>& tensors) {
  const nlohmann::json meta = {{"format", "nmsnn"}, {"format_version", std::to_string(model_format_version)}, {"model", model.dump()}};
  write_file_atomically(path, safetensors_bytes(tensors, meta));
}

}  // namespace detail

/// Writes a spiking network and its extras to `path` (safetensors), atomically.
template <class Task, class Scalar>
void save_model(const std::string& path, const SpikingNetwork<Task, Scalar>& net, const ModelExtras& extras = {}) {
  using nlohmann::json;
  json layers = json::array();
  std::vector<detail::TensorOut> tensors;
  for (Index l = 0; l < net.num_layers(); ++l) {
    const auto& layer = net.layer(l);
    const auto& nr = layer.neuron();
    layers.push_back({{"inputs", layer.inputs()}, {"outputs", layer.outputs()}, {"decay", nr.decay},
                      {"threshold", nr.threshold}, {"penalty", nr.penalty}, {"reset", to_string(nr.reset)}});
    tensors.push_back(detail::tensor_row_major("layers." + std::to_string(l) + ".weight", layer.weights(), false));
    tensors.push_back(detail::tensor_row_major("layers." + std::to_string(l) + ".bias", layer.bias(), true));
  }
  json model = {{"kind", "spiking"},
                {"hidden", net.options().hidden},
                {"time_steps", net.time_steps()},
                {"begin_eval", net.begin_eval()},
                {"readout", to_string(net.readout().kind())},
                {"encoder", to_string(net.encoder().kind())},
                {"layers", layers}};
  detail::describe_common(net, extras, model, tensors);
  detail::write_model(path, model, tensors);
}

/// Writes a dense network (weights, batch-norm parameters and running statistics) and its
/// extras to `path` (safetensors), atomically.
template <class Task, class Scalar>
void save_model(const std::string& path, const DenseNetwork<Task, Scalar>& net, const ModelExtras& extras = {}) {
  using nlohmann::json;
  std::vector<detail::TensorOut> tensors;
  for (Index l = 0; l < net.num_layers(); ++l) {
    const auto& L = net.layer(l);
    const std::string p = "layers." + std::to_string(l);
    tensors.push_back(detail::tensor_row_major(p + ".weight", L.weights, false));
    tensors.push_back(detail::tensor_row_major(p + ".bias", L.bias, true));
    if (L.gamma.size()) {
      tensors.push_back(detail::tensor_row_major(p + ".bn.weight", L.gamma, true));
      tensors.push_back(detail::tensor_row_major(p + ".bn.bias", L.beta, true));
      tensors.push_back(detail::tensor_row_major(p + ".bn.running_mean", L.running_mean, true));
      tensors.push_back(detail::tensor_row_major(p + ".bn.running_var", L.running_var, true));
    }
  }
  json model = {{"kind", "dense"},
                {"hidden", net.options().hidden},
                {"batch_norm", net.batch_norm()},
                {"dropout", net.dropout()}};
  detail::describe_common(net, extras, model, tensors);
  detail::write_model(path, model, tensors);
}

/// The model description stored in a file (kind, task, architecture), without loading it.
inline nlohmann::json inspect_model(const std::string& path) { return detail::read_safetensors(path).metadata; }

/// Loads a network saved by save_model. Net is SpikingNetwork<Task, Scalar> or
/// DenseNetwork<Task, Scalar>; its kind and task must match the file's (IoError otherwise).
template <class Net>
Net load_model(const std::string& path, ModelExtras* extras = nullptr) {
  static_assert(detail::is_spiking_v<Net> || detail::is_dense_v<Net>, "load_model: Net must be a SpikingNetwork or a DenseNetwork");
  using Task = typename Net::TaskT;
  using Scalar = typename Net::Scalar;
  const detail::SafetensorsFile f = detail::read_safetensors(path);
  const auto& m = f.metadata;
  constexpr const char* kind = detail::is_spiking_v<Net> ? "spiking" : "dense";
  try {
    if (m.value("kind", "") != kind)
      detail::raise<IoError>("load_model: ", path, ": holds a '", m.value("kind", "?"), "' model, not a ", kind, " network");
    if (m.value("task", "") != Task::name)
      detail::raise<IoError>("load_model: ", path, ": holds a ", m.value("task", "?"), " model, not ", Task::name);
    const Index inputs = m.at("inputs").get<Index>(), outputs = m.at("outputs").get<Index>();
    const auto hidden = m.at("hidden").get<std::vector<Index>>();
    const std::uint64_t seed = std::stoull(m.at("seed").get<std::string>());
    detail::check_architecture(path, inputs, hidden);
    if constexpr (detail::is_spiking_v<Net>) {
      SpikingOptions o;
      o.inputs = inputs;
      o.outputs = outputs;
      o.hidden = hidden;
      o.time_steps = m.at("time_steps").get<Index>();
      o.begin_eval = m.at("begin_eval").get<Index>();
      o.readout = parse_readout(m.at("readout").get<std::string>());
      o.encoder = parse_encoding(m.at("encoder").get<std::string>());
      o.seed = seed;
      const auto& layers = m.at("layers");
      if (!layers.is_array() || layers.size() != o.hidden.size() + 1)
        detail::raise<IoError>("load_model: ", path, ": the layer list does not match the architecture");
      Net net(o);
      for (Index l = 0; l < net.num_layers(); ++l) {
        const auto& L = layers[std::size_t(l)];
        net.layer(l).set_neuron({.decay = L.at("decay"), .threshold = L.at("threshold"), .penalty = L.at("penalty"),
                                 .reset = parse_reset(L.at("reset").get<std::string>())});
        const std::string p = "layers." + std::to_string(l);
        net.layer(l).set_weights(detail::tensor_matrix<Scalar>(f, p + ".weight", net.layer(l).outputs(), net.layer(l).inputs(), path));
        net.layer(l).set_bias(detail::tensor_matrix<Scalar>(f, p + ".bias", net.layer(l).outputs(), 1, path));
      }
      detail::restore_common(f, path, net, inputs, extras);
      return net;
    } else {
      Net net({.inputs = inputs, .outputs = outputs, .hidden = hidden, .batch_norm = m.at("batch_norm").get<bool>(),
               .dropout = m.at("dropout").get<double>(), .seed = seed});
      for (Index l = 0; l < net.num_layers(); ++l) {
        auto& L = net.layer(l);
        const std::string p = "layers." + std::to_string(l);
        L.weights = detail::tensor_matrix<Scalar>(f, p + ".weight", L.weights.rows(), L.weights.cols(), path);
        L.bias = detail::tensor_matrix<Scalar>(f, p + ".bias", L.bias.size(), 1, path);
        if (L.gamma.size()) {
          const Index n = L.gamma.size();
          L.gamma = detail::tensor_matrix<Scalar>(f, p + ".bn.weight", n, 1, path);
          L.beta = detail::tensor_matrix<Scalar>(f, p + ".bn.bias", n, 1, path);
          L.running_mean = detail::tensor_matrix<double>(f, p + ".bn.running_mean", n, 1, path);
          L.running_var = detail::tensor_matrix<double>(f, p + ".bn.running_var", n, 1, path);
          if ((L.running_var.array() < 0).any())
            detail::raise<IoError>("load_model: ", path, ": negative running variance in layer ", l);
        }
      }
      detail::restore_common(f, path, net, inputs, extras);
      return net;
    }
  } catch (const IoError&) {
    throw;
  } catch (const nlohmann::json::exception& e) {
    detail::raise<IoError>("load_model: ", path, ": corrupted model description (", e.what(), ")");
  } catch (const std::logic_error& e) {  // std::stoull on a corrupted seed
    detail::raise<IoError>("load_model: ", path, ": corrupted model description (", e.what(), ")");
  } catch (const Error& e) {
    detail::raise<IoError>("load_model: ", path, ": invalid model (", e.what(), ")");
  }
}

}  // namespace nmsnn
