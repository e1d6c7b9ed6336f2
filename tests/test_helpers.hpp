// Shared helpers of the tests: fixtures, relative errors, and a naive reference
// implementation of MODEL.md written independently of the engine (per sample, per step).
#pragma once

#include <nmsnn/nmsnn.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace test {

/// The message of the nmsnn::Error that f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const nmsnn::Error& e) {
    return e.what();
  }
  return "";
}

/// Sets nmsnn::set_engine_chunk_bytes for a scope (0: the default).
struct EngineChunkBytes {
  explicit EngineChunkBytes(std::size_t bytes) { nmsnn::set_engine_chunk_bytes(bytes); }
  ~EngineChunkBytes() { nmsnn::set_engine_chunk_bytes(0); }
  EngineChunkBytes(const EngineChunkBytes&) = delete;
  EngineChunkBytes& operator=(const EngineChunkBytes&) = delete;
};

inline nlohmann::json load_json(const std::string& name) {
  std::ifstream in(std::string(NMSNN_TEST_FIXTURES) + "/" + name);
  if (!in) throw std::runtime_error("missing fixture " + name);
  return nlohmann::json::parse(in);
}

inline Eigen::MatrixXd to_matrix(const nlohmann::json& j) {
  if (!j.is_array() || j.empty()) return {};
  if (!j[0].is_array()) {
    Eigen::MatrixXd m(j.size(), 1);
    for (std::size_t i = 0; i < j.size(); ++i) m(i, 0) = j[i].get<double>();
    return m;
  }
  Eigen::MatrixXd m(j.size(), j[0].size());
  for (std::size_t i = 0; i < j.size(); ++i)
    for (std::size_t k = 0; k < j[i].size(); ++k) m(i, k) = j[i][k].get<double>();
  return m;
}

/// max |a - b| / max(|a|, |b|, floor) over all elements.
inline double max_rel_error(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, double floor = 1e-7) {
  double worst = 0;
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    const double x = a.reshaped()(i), y = b.reshaped()(i);
    const double r = std::abs(x - y) / std::max({std::abs(x), std::abs(y), floor});
    if (r > worst && std::getenv("NMSNN_TEST_VERBOSE")) std::cerr << "  elem " << i << ": " << x << " vs " << y << "\n";
    worst = std::max(worst, r);
  }
  return worst;
}

/// Direct transcription of MODEL.md for one sample: returns the readout and, through
/// margin, the smallest |u_t - threshold| seen (distance to the kinks).
struct NaiveLayer {
  Eigen::MatrixXd W;
  Eigen::VectorXd b;
  double decay = 0.9, threshold = 1.0, penalty = 1.5;
  bool subtract = false;
};

inline Eigen::VectorXd naive_readout(const std::vector<NaiveLayer>& layers, const Eigen::VectorXd& x,
                                     int T, int begin_eval, bool mean,
                                     const std::vector<Eigen::VectorXd>* masks, double* margin) {
  const std::size_t L = layers.size();
  std::vector<Eigen::VectorXd> v(L), o(L);
  for (std::size_t l = 0; l < L; ++l) {
    v[l] = Eigen::VectorXd::Zero(layers[l].W.rows());
    o[l] = v[l];
  }
  Eigen::VectorXd out = Eigen::VectorXd::Zero(layers.back().W.rows());
  for (int t = 0; t < T; ++t) {
    Eigen::VectorXd s = masks ? Eigen::VectorXd((*masks)[t].array() * x.array()) : x;
    Eigen::VectorXd emitted_v;
    for (std::size_t l = 0; l < L; ++l) {
      const NaiveLayer& P = layers[l];
      Eigen::VectorXd u = P.W * s + P.b + P.decay * v[l];
      Eigen::VectorXd on(u.size()), vn(u.size());
      for (Eigen::Index i = 0; i < u.size(); ++i) {
        if (margin) *margin = std::min(*margin, std::abs(u(i) - P.threshold));
        on(i) = std::max(u(i) - P.threshold, 0.0);
        const bool g = on(i) > 0;
        if (!P.subtract) vn(i) = g ? u(i) - P.penalty / P.threshold * u(i) : u(i);
        else vn(i) = g ? u(i) - (P.penalty + on(i)) : u(i);
      }
      // emitted one step late
      s = o[l];
      emitted_v = v[l];
      v[l] = vn;
      o[l] = on;
    }
    if (t >= begin_eval) out += emitted_v;
  }
  if (mean) out /= double(T - begin_eval);
  return out;
}

template <class Net>
std::vector<NaiveLayer> naive_layers(const Net& net) {
  std::vector<NaiveLayer> ls;
  for (Eigen::Index l = 0; l < net.num_layers(); ++l) {
    const auto& layer = net.layer(l);
    ls.push_back({layer.weights().template cast<double>(), layer.bias().template cast<double>(),
                  layer.neuron().decay, layer.neuron().threshold, layer.neuron().penalty,
                  layer.neuron().reset == nmsnn::Reset::subtract});
  }
  return ls;
}

}  // namespace test
