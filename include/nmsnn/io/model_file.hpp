// nmsnn/io/model_file.hpp — saving and loading a whole model in one file: the safetensors
// format (8-byte little-endian header length, a JSON header, raw little-endian tensors), so
// that NumPy and PyTorch users can read the weights with the `safetensors` package. The
// model's description (task, architecture, neuron and encoder settings, scaler, class names)
// sits in the header's "__metadata__" with a format version and, from version 2, a checksum.
//
// Saving validates the model's extras, then writes atomically (nmsnn/io/files.hpp); an existing
// file is replaced only when it is an nmsnn model (SaveOptions::force otherwise). Loading
// validates the whole file before it allocates the network: the checksum; the safetensors rules
// (no duplicated key, tensors that tile the data section without gap or overlap); the
// description (every key known, every setting in its range, names counted against the
// architecture); and the exact name, dtype and shape of every tensor the description implies.
// Any failure is an IoError that names the file and what is wrong.
//
// The checksum (format version 2) is "crc32:" and 8 hex digits: the CRC-32 of zlib (Python's
// zlib.crc32) over the header JSON without the checksum entry, as nlohmann::json dumps it
// (compact, keys sorted), followed by the data section. Version 1 files load without one.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/memory.hpp"
#include "nmsnn/io/files.hpp"
#include "nmsnn/network/dense_network.hpp"
#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/preprocessing/preprocessing.hpp"

namespace nmsnn {

/// The version save_model writes. Versions 1 (no checksum) and 2 (graded neurons only, no
/// "neuron" key in a layer's description) still load.
inline constexpr int model_format_version = 3;
/// Largest JSON header accepted when loading (a guard against absurd allocations).
inline constexpr std::uint64_t max_model_header_bytes = 64ull << 20;

/// What travels with a model besides its network: the feature scaler and the names.
struct ModelExtras {
  Scaler scaler;
  std::vector<std::string> feature_names;
  std::string target_name;
  std::vector<std::string> class_names;
};

/// How save_model may replace an existing file.
struct SaveOptions {
  /// Replace an existing file that is not an nmsnn model (never a directory, device or FIFO).
  bool force = false;
};

namespace detail {

static_assert(std::endian::native == std::endian::little, "nmsnn model files assume a little-endian host");

// --- CRC-32 (the polynomial of zlib, PNG and Python's zlib.crc32) ------------------------------
inline constexpr std::array<std::uint32_t, 256> crc32_table = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}();

/// CRC-32 of `data`, continuing from `crc` (0 to start).
constexpr std::uint32_t crc32(std::string_view data, std::uint32_t crc = 0) {
  crc = ~crc;
  for (const char ch : data) crc = crc32_table[(crc ^ std::uint8_t(ch)) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/// nlohmann::json's compact dump, with invalid UTF-8 in a string (a Latin-1 CSV header)
/// replaced rather than thrown.
inline std::string json_dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

/// The checksum of a header (without its checksum entry) and a data section.
inline std::string model_checksum(const nlohmann::json& header, std::string_view data) {
  const std::uint32_t c = crc32(data, crc32(json_dump(header)));
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", unsigned(c));
  return std::string("crc32:") + buf;
}

/// Parses JSON, refusing a key repeated within one object (nlohmann would keep the last).
inline nlohmann::json parse_json_strict(std::string_view text, const std::string& path, const char* what) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  const nlohmann::json::parser_callback_t cb = [&](int, nlohmann::json::parse_event_t e, nlohmann::json& v) {
    using E = nlohmann::json::parse_event_t;
    if (e == E::object_start) keys.emplace_back();
    else if (e == E::object_end && !keys.empty()) keys.pop_back();
    else if (e == E::key && !keys.empty() && v.is_string() && !keys.back().insert(v.get<std::string>()).second && duplicate.empty())
      duplicate = v.get<std::string>();
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    raise<IoError>("load_model: ", path, ": corrupted ", what, " (", e.what(), ")");
  }
  if (!duplicate.empty()) raise<IoError>("load_model: ", path, ": the ", what, " has the key '", duplicate, "' more than once");
  return j;
}

// --- writing --------------------------------------------------------------------------------

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

/// A file's bytes from its header (any checksum in it replaced by that of the header and
/// `data`) and its data section. The writer's last step; tests and the fuzzer use it to make
/// altered files that still pass the checksum.
inline std::string seal_safetensors(nlohmann::json header, std::string_view data) {
  header["__metadata__"].erase("checksum");
  header["__metadata__"]["checksum"] = model_checksum(header, data);
  std::string h = json_dump(header);
  while ((h.size() + 8) % 8) h += ' ';  // align the data section, as the format recommends
  std::string out(8, '\0');
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  out += data;
  return out;
}

inline std::string safetensors_bytes(const std::vector<TensorOut>& tensors, const nlohmann::json& metadata) {
  nlohmann::json header;
  std::map<std::string, std::string> meta;
  for (auto it = metadata.begin(); it != metadata.end(); ++it)
    meta[it.key()] = it.value().is_string() ? it.value().get<std::string>() : json_dump(it.value());
  header["__metadata__"] = meta;
  std::uint64_t offset = 0;
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
    data += t.bytes;
  }
  return seal_safetensors(std::move(header), data);
}

// --- reading --------------------------------------------------------------------------------

struct TensorIn {
  std::string dtype;
  std::vector<Index> shape;
  const char* data = nullptr;
  std::size_t bytes = 0;
};

struct SafetensorsFile {
  std::string content;
  int version = 0;
  nlohmann::json metadata;  // the model description
  std::map<std::string, TensorIn> tensors;
};

inline SafetensorsFile read_safetensors(const std::string& path) {
  SafetensorsFile f;
  const std::uint64_t file_size = require_regular_file(path, "load_model");
  check_memory_need(to_size(file_size), memory_limit(), "load_model: " + path, "the file's bytes");
  f.content = allocating("load_model", "reading the file", [&] { return read_regular_file(path, "load_model"); });
  const std::uint64_t size = f.content.size();
  if (size < 8) raise<IoError>("load_model: ", path, ": not an nmsnn model (", size, " bytes, too short)");
  std::uint64_t n = 0;
  std::memcpy(&n, f.content.data(), 8);
  if (n > size - 8 || n > max_model_header_bytes || n < 2)
    raise<IoError>("load_model: ", path, ": not an nmsnn model (header length ", n, " does not fit the file)");
  nlohmann::json header = parse_json_strict(std::string_view(f.content).substr(8, n), path, "header");
  if (!header.is_object() || !header.contains("__metadata__") || !header["__metadata__"].is_object())
    raise<IoError>("load_model: ", path, ": not an nmsnn model (no metadata)");
  auto& meta = header["__metadata__"];
  if (meta.value("format", nlohmann::json()) != "nmsnn")
    raise<IoError>("load_model: ", path, ": a safetensors file, but not an nmsnn model");
  for (auto it = meta.begin(); it != meta.end(); ++it) {
    if (!it.value().is_string())
      raise<IoError>("load_model: ", path, ": metadata '", it.key(), "' is not a string (the safetensors rules)");
    if (it.key() != "format" && it.key() != "format_version" && it.key() != "model" && it.key() != "checksum")
      raise<IoError>("load_model: ", path, ": unknown metadata '", it.key(), "'");
  }
  const std::string version = meta.value("format_version", std::string("?"));
  f.version = 0;
  for (int v = 1; v <= model_format_version; ++v)
    if (version == std::to_string(v)) f.version = v;
  if (f.version == 0)
    raise<IoError>("load_model: ", path, ": format version ", version, ", this nmsnn reads versions 1 to ", model_format_version);
  const std::string_view data(f.content.data() + 8 + n, size - 8 - n);
  if (f.version >= 2) {
    if (!meta.contains("checksum"))
      raise<IoError>("load_model: ", path, ": no checksum (a version ", f.version, " file has one)");
    const std::string stored = meta["checksum"].get<std::string>();
    meta.erase("checksum");
    const std::string computed = model_checksum(header, data);
    if (stored != computed)
      raise<IoError>("load_model: ", path, ": checksum mismatch (stored ", stored, ", computed ", computed,
                     "): the file is corrupted or was changed");
  } else if (meta.contains("checksum")) {
    raise<IoError>("load_model: ", path, ": a version 1 file with a checksum");
  }
  if (!meta.contains("model")) raise<IoError>("load_model: ", path, ": no model description");
  f.metadata = parse_json_strict(meta["model"].get<std::string>(), path, "model description");
  if (!f.metadata.is_object()) raise<IoError>("load_model: ", path, ": the model description is not a JSON object");

  // Tensors: well-formed entries that tile the data section, in offset order, with no gap or
  // overlap (the safetensors rules), each exactly as long as its shape says.
  const std::uint64_t data_size = data.size();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  std::vector<std::string> span_names;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& t = it.value();
    if (!t.is_object() || t.size() != 3 || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets") ||
        !t["shape"].is_array() || !t["data_offsets"].is_array() || t["data_offsets"].size() != 2 || !t["dtype"].is_string())
      raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has a malformed entry");
    TensorIn ti;
    ti.dtype = t["dtype"].get<std::string>();
    const std::uint64_t elem = ti.dtype == "F32" ? 4 : ti.dtype == "F64" ? 8 : 0;
    if (!elem) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has unsupported dtype ", ti.dtype);
    std::uint64_t count = 1;
    if (t["shape"].size() > 8) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has ", t["shape"].size(), " dimensions");
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has a bad shape");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v > data_size || sat_mul(count, v) > data_size)
        raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' claims more data than the file holds");
      count *= v;
      ti.shape.push_back(Index(v));
    }
    if (!t["data_offsets"][0].is_number_unsigned() || !t["data_offsets"][1].is_number_unsigned())
      raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' has bad offsets");
    const std::uint64_t b = t["data_offsets"][0], e = t["data_offsets"][1];
    if (b > e || e > data_size || e - b != count * elem)
      raise<IoError>("load_model: ", path, ": tensor '", it.key(), "' offsets [", b, ", ", e,
                     ") do not match its shape or the file (truncated?)");
    ti.data = data.data() + b;
    ti.bytes = std::size_t(e - b);
    f.tensors[it.key()] = ti;
    spans.emplace_back(b, e);
    span_names.push_back(it.key());
  }
  std::vector<std::size_t> order(spans.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return spans[a] < spans[b]; });
  std::uint64_t end = 0;
  for (std::size_t i : order) {
    if (spans[i].first < end)
      raise<IoError>("load_model: ", path, ": tensor '", span_names[i], "' overlaps another tensor's data");
    if (spans[i].first > end) raise<IoError>("load_model: ", path, ": a gap in the data before tensor '", span_names[i], "'");
    end = spans[i].second;
  }
  if (end != data_size)
    raise<IoError>("load_model: ", path, ": ", data_size - end, " bytes of data after the last tensor");
  return f;
}

// --- the description, validated --------------------------------------------------------------

/// A model description that passed every check: what load_model builds.
struct ModelSpec {
  std::string kind, task, scalar;
  Index inputs = 0, outputs = 0;
  std::vector<Index> hidden;
  std::uint64_t seed = 0;
  Index time_steps = 1, begin_eval = 0;  // spiking
  Readout readout = Readout::sum;
  Encoding encoder = Encoding::rate;
  std::vector<NeuronOptions> neurons;
  bool batch_norm = false;  // dense
  double dropout = 0;
  Scaling scaler = Scaling::none;
  std::vector<std::string> feature_names, class_names;
  std::string target_name;
  /// Expected tensors: name -> (dtype, shape).
  std::map<std::string, std::pair<std::string, std::vector<Index>>> tensors;
};

class DescriptionReader {
 public:
  DescriptionReader(const nlohmann::json& m, const std::string& path, std::string prefix = {})
      : m_(m), path_(path), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    raise<IoError>("load_model: ", path_, ": setting '", prefix_, key, "' ", what);
  }
  const nlohmann::json& at(const std::string& key) {
    seen_.insert(key);
    if (!m_.contains(key)) raise<IoError>("load_model: ", path_, ": the model description has no '", prefix_, key, "'");
    return m_[key];
  }
  bool has(const std::string& key) const { return m_.contains(key); }
  Index integer(const std::string& key, Index lo, Index hi) { return integer_of(at(key), key, lo, hi); }
  Index integer_of(const nlohmann::json& v, const std::string& key, Index lo, Index hi) const {
    if (!v.is_number_integer()) fail(key, "is not an integer (" + json_dump(v) + ")");
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() > std::uint64_t(hi) : (v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi))
      fail(key, "is " + json_dump(v) + ", outside " + std::to_string(lo) + ".." + std::to_string(hi));
    const Index x = v.get<Index>();
    if (x < lo) fail(key, "is " + json_dump(v) + ", outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  double number(const std::string& key, double lo, double hi, bool hi_open = false) { return number_of(at(key), key, lo, hi, hi_open); }
  double number_of(const nlohmann::json& v, const std::string& key, double lo, double hi, bool hi_open = false) const {
    if (!v.is_number()) fail(key, "is not a number (" + json_dump(v) + ")");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (hi_open && x == hi))
      fail(key, "is " + json_dump(v) + ", outside [" + json_dump(lo) + ", " + json_dump(hi) + (hi_open ? ")" : "]"));
    return x;
  }
  std::string string(const std::string& key) {
    const auto& v = at(key);
    if (!v.is_string()) fail(key, "is not a string");
    return v.get<std::string>();
  }
  bool boolean(const std::string& key) {
    const auto& v = at(key);
    if (!v.is_boolean()) fail(key, "is not true or false");
    return v.get<bool>();
  }
  /// A list of distinct strings: empty, or exactly `count` of them.
  std::vector<std::string> names(const std::string& key, Index count) {
    const auto& v = at(key);
    if (!v.is_array()) fail(key, "is not a list");
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (const auto& e : v) {
      if (!e.is_string()) fail(key, "holds a value that is not a string");
      if (!seen.insert(e.get<std::string>()).second) fail(key, "names '" + e.get<std::string>() + "' more than once");
      out.push_back(e.get<std::string>());
    }
    if (!out.empty() && Index(out.size()) != count)
      fail(key, "has " + std::to_string(out.size()) + " names, the model has " + std::to_string(count));
    return out;
  }
  template <class E, class Parse>
  E choice(const std::string& key, Parse parse) {
    const std::string s = string(key);
    try {
      return parse(s);
    } catch (const Error&) {
      fail(key, "is '" + s + "', not a known value");
    }
  }
  /// Every key of the description must have been read.
  void no_unknown_keys() const {
    for (auto it = m_.begin(); it != m_.end(); ++it)
      if (!seen_.count(it.key()))
        raise<IoError>("load_model: ", path_, ": unknown setting '", prefix_, it.key(), "' in the model description");
  }

 private:
  const nlohmann::json& m_;
  const std::string& path_;
  std::string prefix_;
  std::set<std::string> seen_;
};

/// Validates a file's description and the tensors it implies (names, dtypes, exact shapes),
/// before anything is allocated.
inline ModelSpec check_description(const SafetensorsFile& f, const std::string& path) {
  DescriptionReader r(f.metadata, path);
  ModelSpec s;
  s.kind = r.string("kind");
  if (s.kind != "spiking" && s.kind != "dense") r.fail("kind", "is '" + s.kind + "', not spiking or dense");
  s.task = r.string("task");
  if (s.task != "binary" && s.task != "multiclass" && s.task != "regression")
    r.fail("task", "is '" + s.task + "', not binary, multiclass or regression");
  s.scalar = r.string("scalar");
  if (s.scalar != "float32" && s.scalar != "float64") r.fail("scalar", "is '" + s.scalar + "', not float32 or float64");
  const std::string dt = s.scalar == "float32" ? "F32" : "F64";
  s.inputs = r.integer("inputs", 1, Index(1) << 28);
  s.outputs = s.task == "binary" ? r.integer("outputs", 1, 1)
              : s.task == "multiclass" ? r.integer("outputs", 2, Index(1) << 20)
                                       : r.integer("outputs", 1, Index(1) << 20);
  const auto& hidden = r.at("hidden");
  // (a spiking network may have no hidden layer: one layer from the inputs to the outputs)
  if (!hidden.is_array() || (hidden.empty() && s.kind != "spiking") || hidden.size() > 1024)
    r.fail("hidden", s.kind == "spiking" ? "is not a list of 0 to 1024 widths" : "is not a list of 1 to 1024 widths");
  for (const auto& h : hidden) s.hidden.push_back(r.integer_of(h, "hidden", 1, Index(1) << 24));
  {
    const std::string seed = r.string("seed");
    const auto [p, ec] = std::from_chars(seed.data(), seed.data() + seed.size(), s.seed);
    if (seed.empty() || ec != std::errc() || p != seed.data() + seed.size())
      r.fail("seed", "is '" + seed + "', not a decimal number in 0.." + std::to_string(~std::uint64_t(0)));
  }
  s.scaler = r.choice<Scaling>("scaler", parse_scaling);
  s.feature_names = r.names("feature_names", s.inputs);
  s.target_name = r.string("target_name");
  const Index classes = s.task == "binary" ? 2 : s.task == "multiclass" ? s.outputs : 0;
  s.class_names = r.names("class_names", classes);
  if (s.task == "regression" && !s.class_names.empty()) r.fail("class_names", "are given for a regressor");

  std::vector<Index> widths = s.hidden;
  widths.push_back(s.outputs);
  auto expect = [&](const std::string& name, const std::string& dtype, std::vector<Index> shape) {
    s.tensors[name] = {dtype, std::move(shape)};
  };
  if (s.kind == "spiking") {
    s.time_steps = r.integer("time_steps", 1, Index(1) << 24);
    s.begin_eval = r.integer("begin_eval", 0, s.time_steps - 1);
    s.readout = r.choice<Readout>("readout", parse_readout);
    s.encoder = r.choice<Encoding>("encoder", parse_encoding);
    const auto& layers = r.at("layers");
    if (!layers.is_array() || layers.size() != widths.size())
      r.fail("layers", "does not list one entry for each of the " + std::to_string(widths.size()) + " layers");
    Index in = s.inputs;
    for (std::size_t l = 0; l < widths.size(); ++l) {
      const auto& L = layers[l];
      const std::string key = "layers[" + std::to_string(l) + "]";
      if (!L.is_object()) r.fail(key, "is not an object");
      DescriptionReader layer(L, path, key + ".");
      layer.integer("inputs", in, in);
      layer.integer("outputs", widths[l], widths[l]);
      NeuronOptions n;
      // (version 3 names the neuron model; earlier files have graded neurons only)
      n.model = f.version >= 3 ? layer.choice<NeuronModel>("neuron", parse_neuron_model) : NeuronModel::graded;
      n.decay = layer.number("decay", 0, 1);
      n.threshold = layer.number("threshold", 0, 1e6);
      if (!(n.threshold > 0)) layer.fail("threshold", "must be > 0");
      n.reset = layer.choice<Reset>("reset", parse_reset);
      if (n.lif_family()) {
        n.surrogate = layer.choice<Surrogate>("surrogate", parse_surrogate);
        n.slope = layer.number("slope", 0, 1e6);
        n.learn_decay = layer.boolean("learn_decay");
        n.learn_threshold = layer.boolean("learn_threshold");
        if (n.model == NeuronModel::synaptic) {
          n.alpha = layer.number("alpha", 0, 1);
          n.learn_alpha = layer.boolean("learn_alpha");
        }
      } else {
        n.penalty = layer.number("penalty", 0, 1e6);
      }
      try {
        n.validate("neuron");
      } catch (const Error& e) {
        layer.fail("neuron", std::string("is not valid: ") + e.what());
      }
      layer.no_unknown_keys();
      s.neurons.push_back(n);
      const std::string p = "layers." + std::to_string(l);
      expect(p + ".weight", dt, {widths[l], in});
      expect(p + ".bias", dt, {widths[l]});
      if (n.lif_family()) {  // the per-neuron constants in use (trained or not)
        expect(p + ".beta", dt, {widths[l]});
        expect(p + ".threshold", dt, {widths[l]});
        if (n.model == NeuronModel::synaptic) expect(p + ".alpha", dt, {widths[l]});
      }
      in = widths[l];
    }
    if (reduces_membrane(s.readout) && s.neurons.back().model != NeuronModel::li)
      r.fail("readout", "is '" + std::string(to_string(s.readout)) + "': it reduces a membrane, and the output layer is " +
                            std::string(to_string(s.neurons.back().model)) + ", not li");
  } else {
    s.batch_norm = r.boolean("batch_norm");
    s.dropout = r.number("dropout", 0, 1, true);
    Index in = s.inputs;
    for (std::size_t l = 0; l < widths.size(); ++l) {
      const std::string p = "layers." + std::to_string(l);
      expect(p + ".weight", dt, {widths[l], in});
      expect(p + ".bias", dt, {widths[l]});
      if (s.batch_norm && l + 1 < widths.size()) {
        expect(p + ".bn.weight", dt, {widths[l]});
        expect(p + ".bn.bias", dt, {widths[l]});
        expect(p + ".bn.running_mean", "F64", {widths[l]});
        expect(p + ".bn.running_var", "F64", {widths[l]});
      }
      in = widths[l];
    }
  }
  // The scaler: required when it scales; for "none", both tensors or neither.
  if (s.scaler != Scaling::none || f.tensors.count("scaler.offset") || f.tensors.count("scaler.scale")) {
    expect("scaler.offset", "F64", {s.inputs});
    expect("scaler.scale", "F64", {s.inputs});
  }
  // The target scaling of a regressor: required when the description says so (version 2);
  // a version 1 file has both tensors or neither.
  bool target_scaling = false;
  if (s.task == "regression") {
    if (f.version >= 2) target_scaling = r.boolean("target_scaling");
    else target_scaling = f.tensors.count("target.offset") || f.tensors.count("target.scale");
  }
  if (target_scaling) {
    expect("target.offset", "F64", {s.outputs});
    expect("target.scale", "F64", {s.outputs});
  }
  r.no_unknown_keys();
  for (const auto& [name, want] : s.tensors) {
    const auto it = f.tensors.find(name);
    if (it == f.tensors.end()) raise<IoError>("load_model: ", path, ": tensor '", name, "' is missing");
    if (it->second.dtype != want.first)
      raise<IoError>("load_model: ", path, ": tensor '", name, "' is ", it->second.dtype, ", expected ", want.first);
    if (it->second.shape != want.second) {
      auto text = [](const std::vector<Index>& v) {
        std::string t = "[";
        for (std::size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + std::to_string(v[i]);
        return t + "]";
      };
      raise<IoError>("load_model: ", path, ": tensor '", name, "' has shape ", text(it->second.shape), ", expected ",
                     text(want.second));
    }
  }
  for (const auto& [name, t] : f.tensors)
    if (!s.tensors.count(name)) raise<IoError>("load_model: ", path, ": unexpected tensor '", name, "'");
  return s;
}

/// A tensor whose name, dtype and shape check_description verified, as a rows x cols matrix
/// (row-major in the file); non-finite values refused.
template <class Scalar>
Matrix<Scalar> tensor_matrix(const SafetensorsFile& f, const std::string& name, Index rows, Index cols,
                             const std::string& path) {
  const auto it = f.tensors.find(name);
  if (it == f.tensors.end()) raise<IoError>("load_model: ", path, ": tensor '", name, "' is missing");
  const TensorIn& t = it->second;
  const std::size_t elem = t.dtype == "F32" ? 4 : 8;
  if (t.bytes != sat_prod(to_size(rows), to_size(cols), elem))
    raise<IoError>("load_model: ", path, ": tensor '", name, "' has ", t.bytes / elem, " values, expected ", rows * cols);
  Matrix<Scalar> m(rows, cols);
  std::size_t k = 0;
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) {
      if (elem == 4) {
        float v;
        std::memcpy(&v, t.data + k, 4);
        m(i, j) = Scalar(v);
      } else {
        double v;
        std::memcpy(&v, t.data + k, 8);
        m(i, j) = Scalar(v);
      }
      k += elem;
    }
  if (!m.allFinite()) raise<IoError>("load_model: ", path, ": tensor '", name, "' holds non-finite values");
  return m;
}

template <class Net>
inline constexpr bool is_spiking_v = false;
template <class Task, class Scalar>
inline constexpr bool is_spiking_v<SpikingNetwork<Task, Scalar>> = true;
template <class Net>
inline constexpr bool is_dense_v = false;
template <class Task, class Scalar>
inline constexpr bool is_dense_v<DenseNetwork<Task, Scalar>> = true;

/// Refuses extras that would make a file load_model refuses: names not matching the model,
/// a scaler not fitted or of another width.
template <class Net>
void check_extras(const Net& net, const ModelExtras& extras) {
  auto distinct = [](const std::vector<std::string>& v, const char* what) {
    std::set<std::string> seen;
    for (const auto& n : v)
      if (!seen.insert(n).second) raise<ValueError>("save_model: the ", what, " name '", n, "' appears more than once");
  };
  if (!extras.feature_names.empty() && Index(extras.feature_names.size()) != net.inputs())
    raise<ValueError>("save_model: ", extras.feature_names.size(), " feature names for ", net.inputs(), " inputs");
  distinct(extras.feature_names, "feature");
  const Index classes = Net::TaskT::is_classifier ? net.classes() : 0;
  if (!extras.class_names.empty() && Index(extras.class_names.size()) != classes)
    raise<ValueError>("save_model: ", extras.class_names.size(), " class names for a model of ", classes, " classes");
  distinct(extras.class_names, "class");
  const auto& sc = extras.scaler;
  if (sc.kind() != Scaling::none && sc.offset().size() == 0)
    raise<ValueError>("save_model: the ", to_string(sc.kind()), " scaler was not fitted");
  if (sc.offset().size() && sc.offset().size() != net.inputs())
    raise<ValueError>("save_model: the scaler has ", sc.offset().size(), " columns, the model ", net.inputs(), " inputs");
}

/// What both network kinds store: the task, the scaler, the names and the target scaling.
template <class Net>
void describe_common(const Net& net, const ModelExtras& extras, nlohmann::json& model, std::vector<TensorOut>& tensors) {
  using Scalar = typename Net::Scalar;
  check_extras(net, extras);
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
  if constexpr (!Net::TaskT::is_classifier) model["target_scaling"] = net.target_offset().size() > 0;
  if (net.target_offset().size()) {
    tensors.push_back(tensor_row_major("target.offset", net.target_offset(), true));
    tensors.push_back(tensor_row_major("target.scale", net.target_scale(), true));
  }
}

template <class Net>
void restore_common(const SafetensorsFile& f, const ModelSpec& s, const std::string& path, Net& net, ModelExtras* extras) {
  if (f.tensors.count("target.offset"))
    net.set_target_scaling(tensor_matrix<double>(f, "target.offset", 1, net.outputs(), path),
                           tensor_matrix<double>(f, "target.scale", 1, net.outputs(), path));
  if (!extras) return;
  if (f.tensors.count("scaler.offset"))
    extras->scaler = Scaler(s.scaler, tensor_matrix<double>(f, "scaler.offset", 1, s.inputs, path),
                            tensor_matrix<double>(f, "scaler.scale", 1, s.inputs, path));
  else
    extras->scaler = Scaler(s.scaler);
  extras->feature_names = s.feature_names;
  extras->target_name = s.target_name;
  extras->class_names = s.class_names;
}

/// An nmsnn model file: what save_model may replace without SaveOptions::force.
inline bool is_model_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::uint64_t n = 0;
  if (!in.read(reinterpret_cast<char*>(&n), 8) || n < 2 || n > max_model_header_bytes) return false;
  std::string h(std::size_t(n), '\0');
  if (!in.read(h.data(), std::streamsize(n))) return false;
  const nlohmann::json j = nlohmann::json::parse(h, nullptr, false);
  return j.is_object() && j.contains("__metadata__") && j["__metadata__"].is_object() &&
         j["__metadata__"].value("format", nlohmann::json()) == "nmsnn";
}

inline void write_model(const std::string& path, const nlohmann::json& model, const std::vector<TensorOut>& tensors,
                        const SaveOptions& options) {
  const nlohmann::json meta = {{"format", "nmsnn"}, {"format_version", std::to_string(model_format_version)}, {"model", json_dump(model)}};
  write_file_atomically(path, safetensors_bytes(tensors, meta),
                        {.kind = "model", .replaceable = is_model_file, .force = options.force, .where = "save_model"});
}

/// The file read and validated (IoError, ResourceError; never a foreign exception).
inline std::pair<SafetensorsFile, ModelSpec> read_model_file(const std::string& path) {
  SafetensorsFile f = read_safetensors(path);
  try {
    ModelSpec s = check_description(f, path);
    return {std::move(f), std::move(s)};
  } catch (const nlohmann::json::exception& e) {
    raise<IoError>("load_model: ", path, ": corrupted model description (", e.what(), ")");
  }
}

}  // namespace detail

/// Writes a spiking network and its extras to `path` (safetensors), atomically. Throws
/// ValueError for extras that do not fit the network, IoError when the path cannot be written
/// or is a file other than an nmsnn model (without options.force).
template <class Task, class Scalar>
void save_model(const std::string& path, const SpikingNetwork<Task, Scalar>& net, const ModelExtras& extras = {},
                const SaveOptions& options = {}) {
  using nlohmann::json;
  json layers = json::array();
  std::vector<detail::TensorOut> tensors;
  for (Index l = 0; l < net.num_layers(); ++l) {
    const auto& layer = net.layer(l);
    const auto& nr = layer.neuron();
    json d = {{"neuron", to_string(nr.model)}, {"inputs", layer.inputs()}, {"outputs", layer.outputs()},
              {"decay", nr.decay}, {"threshold", nr.threshold}, {"reset", to_string(nr.reset)}};
    const std::string p = "layers." + std::to_string(l);
    tensors.push_back(detail::tensor_row_major(p + ".weight", layer.weights(), false));
    tensors.push_back(detail::tensor_row_major(p + ".bias", layer.bias(), true));
    if (nr.lif_family()) {
      d.update({{"surrogate", to_string(nr.surrogate)}, {"slope", nr.slope}, {"learn_decay", nr.learn_decay},
                {"learn_threshold", nr.learn_threshold}});
      if (nr.model == NeuronModel::synaptic) d.update({{"alpha", nr.alpha}, {"learn_alpha", nr.learn_alpha}});
      tensors.push_back(detail::tensor_row_major(p + ".beta", layer.beta(), true));
      tensors.push_back(detail::tensor_row_major(p + ".threshold", layer.thresholds(), true));
      if (nr.model == NeuronModel::synaptic) tensors.push_back(detail::tensor_row_major(p + ".alpha", layer.alpha(), true));
    } else {
      d["penalty"] = nr.penalty;
    }
    layers.push_back(std::move(d));
  }
  json model = {{"kind", "spiking"},
                {"hidden", net.options().hidden},
                {"time_steps", net.time_steps()},
                {"begin_eval", net.begin_eval()},
                {"readout", to_string(net.readout().kind())},
                {"encoder", to_string(net.encoder().kind())},
                {"layers", layers}};
  detail::describe_common(net, extras, model, tensors);
  detail::write_model(path, model, tensors, options);
}

/// Writes a dense network (weights, batch-norm parameters and running statistics) and its
/// extras to `path` (safetensors), atomically; as the spiking overload.
template <class Task, class Scalar>
void save_model(const std::string& path, const DenseNetwork<Task, Scalar>& net, const ModelExtras& extras = {},
                const SaveOptions& options = {}) {
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
  detail::write_model(path, model, tensors, options);
}

/// The model description stored in a file (kind, task, architecture), without loading the
/// weights; the file is validated as load_model validates it.
inline nlohmann::json inspect_model(const std::string& path) { return detail::read_model_file(path).first.metadata; }

/// Loads a network saved by save_model. Net is SpikingNetwork<Task, Scalar> or
/// DenseNetwork<Task, Scalar>; its kind and task must match the file's (IoError otherwise).
template <class Net>
Net load_model(const std::string& path, ModelExtras* extras = nullptr) {
  static_assert(detail::is_spiking_v<Net> || detail::is_dense_v<Net>, "load_model: Net must be a SpikingNetwork or a DenseNetwork");
  using Task = typename Net::TaskT;
  using Scalar = typename Net::Scalar;
  const auto file = detail::read_model_file(path);  // (no structured binding: clang 14 cannot capture one)
  const detail::SafetensorsFile& f = file.first;
  const detail::ModelSpec& s = file.second;
  constexpr const char* kind = detail::is_spiking_v<Net> ? "spiking" : "dense";
  if (s.kind != kind) detail::raise<IoError>("load_model: ", path, ": holds a '", s.kind, "' model, not a ", kind, " network");
  if (s.task != Task::name) detail::raise<IoError>("load_model: ", path, ": holds a ", s.task, " model, not ", Task::name);
  // Every size was checked against the file: the network's arrays are as large as its tensors.
  return detail::allocating("load_model", "allocating the network", [&]() -> Net {
    try {
      if constexpr (detail::is_spiking_v<Net>) {
        SpikingOptions o;
        o.inputs = s.inputs;
        o.outputs = s.outputs;
        o.hidden = s.hidden.empty() ? std::vector<Index>{0} : s.hidden;
        o.time_steps = s.time_steps;
        o.begin_eval = s.begin_eval;
        o.readout = s.readout;
        o.encoder = s.encoder;
        o.seed = s.seed;
        o.neuron = s.neurons.front();
        o.output_neuron = s.neurons.back();  // (the readout may need it: max and last need li)
        Net net(o);
        for (Index l = 0; l < net.num_layers(); ++l) {
          net.layer(l).set_neuron(s.neurons[std::size_t(l)]);
          const std::string p = "layers." + std::to_string(l);
          net.layer(l).set_weights(detail::tensor_matrix<Scalar>(f, p + ".weight", net.layer(l).outputs(), net.layer(l).inputs(), path));
          net.layer(l).set_bias(detail::tensor_matrix<Scalar>(f, p + ".bias", net.layer(l).outputs(), 1, path));
          const auto& nr = net.layer(l).neuron();
          const Index n = net.layer(l).outputs();
          if (nr.lif_family()) {
            net.layer(l).set_beta(detail::tensor_matrix<Scalar>(f, p + ".beta", n, 1, path));
            net.layer(l).set_thresholds(detail::tensor_matrix<Scalar>(f, p + ".threshold", n, 1, path));
            if (nr.model == NeuronModel::synaptic)
              net.layer(l).set_alpha(detail::tensor_matrix<Scalar>(f, p + ".alpha", n, 1, path));
          }
        }
        detail::restore_common(f, s, path, net, extras);
        return net;
      } else {
        Net net({.inputs = s.inputs, .outputs = s.outputs, .hidden = s.hidden, .batch_norm = s.batch_norm,
                 .dropout = s.dropout, .seed = s.seed});
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
        detail::restore_common(f, s, path, net, extras);
        return net;
      }
    } catch (const IoError&) {
      throw;
    } catch (const ResourceError&) {
      throw;
    } catch (const Error& e) {
      detail::raise<IoError>("load_model: ", path, ": invalid model (", e.what(), ")");
    }
  });
}

}  // namespace nmsnn
