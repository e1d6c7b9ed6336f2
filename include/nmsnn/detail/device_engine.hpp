// nmsnn/detail/device_engine.hpp — the GPU path's engine, written once for any "device":
// the CUDA device of nmsnn/cuda.hpp, and HostDevice below, which runs the same kernel bodies
// in plain loops and the same column-major products (cuBLAS's conventions) with Eigen. The
// engine's logic (offsets, leading dimensions, transposes, the order of the passes, the
// counters of the input draws) is thereby tested on every machine, GPU or not
// (tests/test_device_engine.cpp); only the CUDA calls themselves need a GPU.
//
// A device provides:
//   template <class T> using Array = ...;   // reserve(n), upload(p, n), download(p, n), get(),
//                                           // write(at, p, n), read(at, p, n) (within reserve)
//   template <class K, class... A> void launch(const char* name, Index n, A... args);
//                                           // K::run(i, args...) for every i in [0, n)
//   void gemm(Op ta, Op tb, Index m, Index n, Index k, const float* A, Index lda,
//             const float* B, Index ldb, float beta, float* C, Index ldc);
//                                           // C = op(A) op(B) + beta C, column-major; with
//                                           // beta = 0, C's old content is not read
//   void row_sums(Index m, Index n, const float* A, Index lda, float* y);   // y = A 1
// and times its launches and products per name when profiling is on (kernel_seconds()).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "nmsnn/core/random.hpp"
#include "nmsnn/network/dense_network.hpp"
#include "nmsnn/network/spiking_network.hpp"

namespace nmsnn::detail::device {

/// A matrix operand as stored (n) or transposed (t), as cuBLAS's CUBLAS_OP_N / CUBLAS_OP_T.
enum class Op { n, t };

// ---- kernel bodies: element i of n (one GPU thread each, or one iteration of a host loop) ----

/// S (F x T*B, column t*B + b) = layer 1's input for every step: the CPU encoder's draws
/// (Philox counter {t / 4, feature, sample id, stream}, word t % 4, 24-bit uniform). Element
/// i of F*B*ceil(T/4) is feature f of sample b at steps 4q..4q+3: one counter's four words.
struct Encode {
  NMSNN_HOST_DEVICE static void run(Index i, float* S, const float* X, const std::uint32_t* ids, Index F, Index B, Index T,
                                    int kind, std::uint32_t k0, std::uint32_t k1, std::uint32_t stream) {
    const Index f = i % F, rest = i / F, b = rest % B, q = rest / B;
    const float x = X[f + F * b];
    const float p = x < 0.f ? 0.f : (x > 1.f ? 1.f : x);
    const bool draws = kind != int(Encoding::direct);
    std::array<std::uint32_t, 4> r{};
    if (draws) r = Philox4x32::generate({std::uint32_t(q), std::uint32_t(f), ids[b], stream}, {k0, k1});
    for (Index j = 0; j < 4 && 4 * q + j < T; ++j) {
      float s = x;
      if (draws) {
        const float u = uniform01_24(r[std::size_t(j)]);
        s = kind == int(Encoding::rate) ? u * x : (u < p ? 1.f : 0.f);
      }
      S[((4 * q + j) * B + b) * F + f] = s;
    }
  }
};

/// A (n x cols) = the bias broadcast over the columns.
struct FillBias {
  NMSNN_HOST_DEVICE static void run(Index i, float* A, const float* bias, Index n) { A[i] = bias[i % n]; }
};

/// p[i] = v.
template <class T>
struct Set {
  NMSNN_HOST_DEVICE static void run(Index i, T* p, T v) { p[i] = v; }
};

/// Forward scan of element j (a neuron and a sample) of a layer's n x B block per step:
/// A holds a_t on entry and o_t on exit (column-major n x T*B, step t at offset t*nB); v_t
/// is added to R[j] for t in [t_lo, t_hi] when R is set (the readout).
struct ForwardScan {
  NMSNN_HOST_DEVICE static void run(Index j, float* A, Index nB, Index T, float decay, float theta, float penalty, int subtract,
                                    float* R, Index t_lo, Index t_hi) {
    const float kappa = penalty / theta;
    float v = 0, acc = 0;
    for (Index t = 0; t < T; ++t) {
      float* a = A + t * nB + j;
      const float u = *a + v * decay;
      const float g = u > theta ? 1.f : 0.f;
      const float o = (u - theta) * g;
      v = subtract ? u - (penalty + o) * g : u - (kappa * u) * g;
      *a = o;
      if (R && t >= t_lo && t <= t_hi) acc += v;
    }
    if (R) R[j] += acc;
  }
};

/// Backward scan of element j (MODEL.md "Gradients"), t = T-1 down to 0. O holds o_t (its
/// sign is the fire gate); D holds dL/do_t on entry when has_go and dL/du_t on exit; gv
/// (n x B) is dL/dv_t for t in [t_lo, t_hi] when set.
struct BackwardScan {
  NMSNN_HOST_DEVICE static void run(Index j, float* D, const float* O, Index nB, Index T, float decay, float kappa, int subtract,
                                    int has_go, const float* gv, Index t_lo, Index t_hi) {
    float du_next = 0;
    for (Index t = T - 1; t >= 0; --t) {
      const Index idx = t * nB + j;
      float dv = du_next * decay;
      if (gv && t >= t_lo && t <= t_hi) dv += gv[j];
      const float g = O[idx] > 0.f ? 1.f : 0.f;
      float du = subtract ? dv - dv * g : dv - (kappa * dv) * g;
      if (has_go) du += D[idx] * g;
      D[idx] = du;
      du_next = du;
    }
  }
};

/// z = max(z, 0).
struct Relu {
  NMSNN_HOST_DEVICE static void run(Index i, float* z) { z[i] = z[i] > 0.f ? z[i] : 0.f; }
};

/// a *= b, elementwise.
struct Multiply {
  NMSNN_HOST_DEVICE static void run(Index i, float* a, const float* b) { a[i] *= b[i]; }
};

/// Unit i of an n x B block H: the batch's mean and biased variance (double sums, as the
/// CPU) into mean[i] and var[i], or, when batch_stats is 0, the running ones already there;
/// inv_std[i] = 1 / sqrt(var + eps).
struct BatchNormStats {
  NMSNN_HOST_DEVICE static void run(Index i, const float* H, Index n, Index B, int batch_stats, double* mean, double* var,
                                    float* inv_std, double eps) {
    if (batch_stats) {
      double sum = 0;
      for (Index b = 0; b < B; ++b) sum += double(H[i + n * b]);
      const double m = sum / double(B);
      double sq = 0;
      for (Index b = 0; b < B; ++b) {
        const double d = double(H[i + n * b]) - m;
        sq += d * d;
      }
      mean[i] = m;
      var[i] = sq / double(B);
    }
    inv_std[i] = float(1.0 / sqrt(var[i] + eps));
  }
};

/// Element idx of an n x B block: xhat = (h - mean) inv_std, out = xhat gamma + beta.
struct BatchNormApply {
  NMSNN_HOST_DEVICE static void run(Index idx, const float* H, Index n, const double* mean, const float* inv_std,
                                    const float* gamma, const float* beta, float* xhat, float* out) {
    const Index i = idx % n;
    const float x = (H[idx] - float(mean[i])) * inv_std[i];
    xhat[idx] = x;
    out[idx] = x * gamma[i] + beta[i];
  }
};

/// Inverted dropout of element idx (unit i, sample b) of an n x B block: the CPU's mask
/// (dropout_factor), and out = h mask.
struct Dropout {
  NMSNN_HOST_DEVICE static void run(Index idx, const float* H, Index n, const std::uint32_t* ids, std::uint32_t k0,
                                    std::uint32_t k1, std::uint32_t stream, float keep, float* mask, float* out) {
    const Index i = idx % n, b = idx / n;
    const float m = dropout_factor(std::uint32_t(i), ids[b], stream, {k0, k1}, keep);
    mask[idx] = m;
    out[idx] = H[idx] * m;
  }
};

/// Unit i of the gradient G (n x B) reaching a batch norm's output: the gradients of gamma
/// (sum G xhat) and beta (sum G), and the sums of dxhat = G gamma and of dxhat xhat.
struct BatchNormBackwardSums {
  NMSNN_HOST_DEVICE static void run(Index i, const float* G, const float* xhat, Index n, Index B, const float* gamma,
                                    float* gamma_grad, float* beta_grad, float* sum_dxhat, float* sum_dxhat_xhat) {
    float sg = 0, sgx = 0, sd = 0, sdx = 0;
    for (Index b = 0; b < B; ++b) {
      const float g = G[i + n * b], x = xhat[i + n * b], d = g * gamma[i];
      sg += g;
      sgx += g * x;
      sd += d;
      sdx += d * x;
    }
    gamma_grad[i] = sgx;
    beta_grad[i] = sg;
    sum_dxhat[i] = sd;
    sum_dxhat_xhat[i] = sdx;
  }
};

/// Element idx: G (reaching the batch norm's output) becomes the gradient at the ReLU's input
/// (through the batch norm, with batch or running statistics, and the ReLU).
struct BatchNormReluBackward {
  NMSNN_HOST_DEVICE static void run(Index idx, float* G, const float* xhat, const float* relu, Index n, Index B, int batch_stats,
                                    const float* gamma, const float* inv_std, const float* sum_dxhat,
                                    const float* sum_dxhat_xhat) {
    const Index i = idx % n;
    const float dxhat = G[idx] * gamma[i];
    const float g = batch_stats ? inv_std[i] / float(B) * (float(B) * dxhat - sum_dxhat[i] - xhat[idx] * sum_dxhat_xhat[i])
                                : dxhat * inv_std[i];
    G[idx] = relu[idx] > 0.f ? g : 0.f;
  }
};

/// Element idx: the gradient through a ReLU (zero where its output is not positive).
struct ReluBackward {
  NMSNN_HOST_DEVICE static void run(Index idx, float* G, const float* relu) {
    if (!(relu[idx] > 0.f)) G[idx] = 0.f;
  }
};

/// a /= s, elementwise (the mean readout's scaling, as the CPU's division).
struct Divide {
  NMSNN_HOST_DEVICE static void run(Index i, float* a, float s) { a[i] /= s; }
};

/// Sample b's loss (weighted, not yet divided by norm) into losses[b] and its gradient column
/// into G: the task's sample_loss, as the CPU's loss. Z: K x B, Y: rows x B, w: per-sample
/// class weights or null.
template <class Task>
struct TaskLoss {
  NMSNN_HOST_DEVICE static void run(Index b, const float* Z, const float* Y, Index K, Index rows, const double* w, double norm,
                                    float* G, double* losses) {
    losses[b] = Task::sample_loss(Z + K * b, Y + rows * b, K, w ? w[b] : 1.0, norm, G + K * b);
  }
};

/// x is finite: x - x is 0 for finite x and NaN for NaN and the infinities.
NMSNN_HOST_DEVICE inline bool finite(float x) { return x - x == 0.f; }

/// *flag = 1 when a[i] is not finite (every such thread writes the same 1).
struct FlagNonFinite {
  NMSNN_HOST_DEVICE static void run(Index i, const float* a, double* flag) {
    if (!finite(a[i])) *flag = 1;
  }
};

/// SGD's update of element i (Sgd::step's rule: d = g + wd p; buf = d on the first step, then
/// mu buf + d; p -= lr buf, or lr (d + mu buf) with Nesterov); flag = 1 when p is not finite.
struct SgdUpdate {
  NMSNN_HOST_DEVICE static void run(Index i, float* p, const float* g, float* buf, float lr, float mu, float wd, int decay,
                                    int first, int nesterov, float* flag) {
    float d = g[i];
    if (decay) d += wd * p[i];
    if (buf) {
      buf[i] = first ? d : mu * buf[i] + d;
      if (nesterov) d += mu * buf[i];
      else d = buf[i];
    }
    p[i] -= lr * d;
    if (!finite(p[i])) *flag = 1.f;
  }
};

/// Adam's update of element i (Adam::step's rule); flag = 1 when p is not finite.
struct AdamUpdate {
  NMSNN_HOST_DEVICE static void run(Index i, float* p, const float* g0, float* m, float* v, float b1, float b2, float step_size,
                                    float bc2_sqrt, float eps, float wd, int decay, float* flag) {
    const float g = decay ? g0[i] + wd * p[i] : g0[i];
    m[i] = b1 * m[i] + (1.f - b1) * g;
    v[i] = b2 * v[i] + (1.f - b2) * g * g;
    p[i] -= step_size * (m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps));
    if (!finite(p[i])) *flag = 1.f;
  }
};

// ---- the engines ----

/// What both engines share: the device (made from the constructor's arguments, and
/// destroyed after the engine's arrays), the parameters on the device with their gradients,
/// and the device step (ExternalEngine::step): loss, backward, finite checks and the
/// optimiser's update. Float networks only.
///
/// The parameters live in one device array, state_: a flag, then every parameter (each at a
/// 128-byte boundary, zero between), then the optimiser's state arrays laid out the same way;
/// their gradients in another, grads_, at the same offsets. A step thus checks all gradients in
/// one launch and brings the updated parameters and state back in one copy. Parameters are
/// uploaded only when the network's values differ from what the device holds (shadow_, a host
/// copy of state_), so after a device step, whose updated values go into the network, the next
/// forward uploads nothing; a network changed between steps (by the user, a refused step,
/// restored best weights) is uploaded again. The optimiser's state likewise: uploaded when it
/// differs, and copied into the optimiser after each update, so that the optimiser object
/// stays the state's owner and may go on on the CPU.
template <class Net, class Device>
class EngineBase : public ExternalEngine<Net> {
  static_assert(std::is_same_v<typename Net::Scalar, float>, "the GPU engines need a network of float (Scalar = float)");

 public:
  template <class... A>
  explicit EngineBase(A&&... device_args) : dev_(std::forward<A>(device_args)...) {}
  EngineBase(const EngineBase&) = delete;
  EngineBase& operator=(const EngineBase&) = delete;

  Device& device() { return dev_; }

  bool can_step() const override { return true; }

  StepOutcome step(Net& net, const Matrix<float>& Yb, const std::vector<double>* class_weights,
                   const UpdateRule<float>& rule) override {
    using Task = typename Net::TaskT;
    const Index B = batch_, K = net.outputs();
    if (!fresh_ || Yb.cols() != B)
      throw Error("nmsnn GPU engine: step() needs the forward() of the same batch just before it");
    fresh_ = false;
    const auto params = net.parameters();
    NMSNN_ASSERT(params.size() == offsets_.size());
    const double norm = Task::loss_norm(K, Yb, class_weights);
    y_.upload(Yb.data(), std::size_t(Yb.size()));
    const double* w = nullptr;
    if (class_weights && !class_weights->empty()) {
      std::vector<double> wb(static_cast<std::size_t>(B));
      for (Index b = 0; b < B; ++b) wb[std::size_t(b)] = detail::sample_weight(Yb, class_weights, b);
      w_.upload(wb.data(), wb.size());
      w = w_.get();
    }
    // losses_: B per-sample losses, then the flag of a non-finite gradient.
    losses_.reserve(std::size_t(B + 1));
    dev_.template launch<Set<double>>("fill", 1, losses_.get() + B, 0.0);
    dev_.template launch<TaskLoss<Task>>("loss", B, output_for_loss(net), static_cast<const float*>(y_.get()), K, Yb.rows(), w,
                                         norm, output_grad(K * B), losses_.get());
    backward_device(net, false);
    dev_.template launch<FlagNonFinite>("finite_check", end_, static_cast<const float*>(grads_.get()), losses_.get() + B);
    std::vector<double> per(static_cast<std::size_t>(B + 1));
    losses_.download(per.data(), per.size());
    StepOutcome out;
    double total = 0;
    for (Index b = 0; b < B; ++b) total += per[std::size_t(b)];
    out.loss = total / norm;
    if (!std::isfinite(out.loss)) {
      out.status = StepOutcome::Status::bad_loss;
      return out;
    }
    if (per[std::size_t(B)] != 0) {  // the gradients into the network, for the error's value and for inspection
      out.status = StepOutcome::Status::bad_gradient;
      for (std::size_t k = 0; k < params.size(); ++k) {
        auto* g = const_cast<float*>(params[k].gradient);
        download_grad(k, g, params[k].size);
        for (Index i = 0; i < params[k].size && out.bad_gradient == 0; ++i)
          if (!std::isfinite(g[i])) out.bad_gradient = double(g[i]);
      }
      return out;
    }
    const int slots = rule.slots_per_parameter;
    NMSNN_ASSERT(slots >= 0 && slots <= max_slots && rule.slots.size() == params.size() * std::size_t(slots));
    float* state = state_.get();
    dev_.template launch<Set<float>>("fill", 1, state, 0.f);
    for (std::size_t k = 0; k < params.size(); ++k) {
      const Index n = params[k].size;
      auto slot = [&](int s) { return sync(slot_at(s, k), rule.slots[k * std::size_t(slots) + std::size_t(s)], n); };
      if (rule.kind == UpdateRule<float>::Kind::sgd) {
        float* buf = slots ? slot(0) : nullptr;
        dev_.template launch<SgdUpdate>("sgd", n, state + offsets_[k], grads_.get() + offsets_[k], buf, rule.learning_rate,
                                        rule.momentum, rule.weight_decay, int(rule.decay), int(rule.first), int(rule.nesterov),
                                        state);
      } else {
        float* m = slot(0);
        float* v = slot(1);
        dev_.template launch<AdamUpdate>("adam", n, state + offsets_[k], grads_.get() + offsets_[k], m, v, rule.beta1, rule.beta2,
                                         rule.step_size, rule.bc2_sqrt, rule.epsilon, rule.weight_decay, int(rule.decay), state);
      }
    }
    // The flag, the updated values and state in one copy; then into the network (unless
    // refused: the network keeps its values, and the next forward uploads them) and the
    // optimiser (its state advances either way, as on the CPU).
    state_.read(0, shadow_.data(), std::size_t(slot_offset(slots)));
    const bool refused = shadow_[0] != 0.f;
    for (std::size_t k = 0; k < params.size(); ++k) {
      const std::size_t n = std::size_t(params[k].size), at = offsets_[k];
      if (!refused) std::memcpy(params[k].value, shadow_.data() + at, n * sizeof(float));
      for (int s = 0; s < slots; ++s)
        std::memcpy(rule.slots[k * std::size_t(slots) + std::size_t(s)], shadow_.data() + slot_at(s, std::size_t(k)),
                    n * sizeof(float));
    }
    if (refused) out.status = StepOutcome::Status::bad_weights;
    return out;
  }

 protected:
  template <class T>
  using Array = typename Device::template Array<T>;

  /// Begins a forward pass of B samples (step() may follow once) of a network whose
  /// parameters have these sizes (the order of net.parameters()); a new layout zeroes the
  /// parameters, their gradients and the optimiser's state on the device.
  void begin_forward(Index B, const std::vector<Index>& sizes) {
    batch_ = B;
    fresh_ = true;
    if (sizes == sizes_) return;
    sizes_ = sizes;
    offsets_.clear();
    std::size_t at = align;  // state_[0] is the flag of a step's update
    for (const Index n : sizes) {
      offsets_.push_back(at);
      at += (std::size_t(n) + align - 1) / align * align;
    }
    end_ = at;
    const std::size_t total = slot_offset(max_slots);
    state_.reserve(total);
    grads_.reserve(end_);
    dev_.template launch<Set<float>>("fill", Index(total), state_.get(), 0.f);
    dev_.template launch<Set<float>>("fill", Index(end_), grads_.get(), 0.f);
    shadow_.assign(total, 0.f);
  }
  /// Parameter k on the device, made equal to the host's values (uploaded when they differ).
  const float* param(std::size_t k, const float* host, Index n) { return sync(offsets_[k], host, n); }
  /// Parameter k's values on the device, as they are.
  const float* value(std::size_t k) const { return state_.get() + offsets_[k]; }
  /// Parameter k's gradient on the device.
  float* grad(std::size_t k) { return grads_.get() + offsets_[k]; }
  void download_grad(std::size_t k, float* host, Index n) const { grads_.read(offsets_[k], host, std::size_t(n)); }

  /// The engine's part of step(): the output of the last forward (outputs x B) on the device,
  /// as the loss sees it; where the gradient of the loss with respect to it goes; backward
  /// from there (download: the gradients into the network, as backward() does).
  virtual const float* output_for_loss(const Net& net) = 0;
  virtual float* output_grad(Index n) = 0;
  virtual void backward_device(Net& net, bool download) = 0;

  Device dev_;

 private:
  static constexpr std::size_t align = 32;  // floats: 128 bytes
  static constexpr int max_slots = 2;       // Adam's m and v
  /// Where state_'s slot s begins (slot_offset(0): the first optimiser slot; the parameters
  /// are [align, end_)); slot_offset(S) is the end of S slots.
  std::size_t slot_offset(int s) const { return end_ + std::size_t(s) * (end_ - align); }
  /// Where parameter k's part of slot s is.
  std::size_t slot_at(int s, std::size_t k) const { return slot_offset(s) + offsets_[k] - align; }
  /// state_[at, at + n) made equal to host[0, n), uploading only when shadow_ differs.
  float* sync(std::size_t at, const float* host, Index n) {
    const std::size_t m = std::size_t(n);
    if (m && std::memcmp(shadow_.data() + at, host, m * sizeof(float)) != 0) {
      state_.write(at, host, m);
      std::memcpy(shadow_.data() + at, host, m * sizeof(float));
    }
    return state_.get() + at;
  }

  Index batch_ = 0;
  bool fresh_ = false;
  std::vector<Index> sizes_;
  std::vector<std::size_t> offsets_;
  std::size_t end_ = 0;  // past the last parameter
  Array<float> state_, grads_, y_;
  Array<double> w_, losses_;
  std::vector<float> shadow_;
};

/// Runs a SpikingNetwork<Task, float>'s training passes on Device (see the top of this file
/// and nmsnn/cuda.hpp): forward() uploads the batch once, encodes it on the device, runs
/// every layer's all-steps product and scan and returns the readout; backward() runs the
/// scans backwards and the gradient products and downloads the weight and bias gradients;
/// step() (EngineBase) keeps them on the device for the optimiser's update there.
template <class Net, class Device>
class Engine : public EngineBase<Net, Device> {
  using Base = EngineBase<Net, Device>;
  template <class T>
  using Array = typename Base::template Array<T>;
  using Base::dev_;

 public:
  using Base::Base;

  Matrix<float> forward(const Net& net, const Matrix<float>& Xb, const std::uint32_t* ids, DrawKey key) override {
    if (!net.graded_only())
      raise<ValueError>("the device engine runs graded neurons only; the network has LIF layers (train it on the CPU engine)");
    const Index T = net.time_steps(), B = Xb.cols(), F = Xb.rows(), TB = T * B, L = net.num_layers();
    T_ = T, B_ = B, L_ = L, F_ = F;
    std::vector<Index> sizes;
    for (Index l = 0; l < L; ++l) sizes.insert(sizes.end(), {net.layer(l).outputs() * net.layer(l).inputs(), net.layer(l).outputs()});
    this->begin_forward(B, sizes);
    out_.resize(std::size_t(L));
    grad_.resize(std::size_t(L));
    x_.upload(Xb.data(), std::size_t(F * B));
    ids_.upload(ids, std::size_t(B));
    S_.reserve(std::size_t(F * TB));
    const auto k = make_key(key.seed, RandomDomain::input_mask);
    dev_.template launch<Encode>("encode", F * B * ((T + 3) / 4), S_.get(), x_.get(), ids_.get(), F, B, T, int(net.encoder().kind()),
                                 k[0], k[1], key.stream);
    const Index outputs = net.outputs();
    readout_.reserve(std::size_t(outputs * B));
    dev_.template launch<Set<float>>("fill", outputs * B, readout_.get(), 0.f);
    for (Index l = 0; l < L; ++l) {
      const auto& layer = net.layer(l);
      const Index n = layer.outputs(), in = layer.inputs();
      const float* W = this->param(weight_index(l), layer.weights().data(), n * in);
      const float* bias = this->param(weight_index(l) + 1, layer.bias().data(), n);
      auto& A = out_[std::size_t(l)];
      A.reserve(std::size_t(n * TB));
      dev_.template launch<FillBias>("fill_bias", n * TB, A.get(), bias, n);
      if (l == 0) {
        dev_.gemm(Op::n, Op::n, n, TB, in, W, n, S_.get(), in, 1.f, A.get(), n);
      } else if (T > 1) {
        // Layer l reads at step t what layer l-1 emitted, o_{t-1}; step 0 gets the bias alone.
        dev_.gemm(Op::n, Op::n, n, (T - 1) * B, in, W, n, out_[std::size_t(l - 1)].get(), in, 1.f, A.get() + B * n, n);
      }
      const auto& nr = layer.neuron();
      const bool last = l == L - 1;
      dev_.template launch<ForwardScan>("forward_scan", n * B, A.get(), n * B, T, float(nr.decay), float(nr.threshold),
                                        float(nr.penalty), int(nr.reset == Reset::subtract), last ? readout_.get() : nullptr,
                                        net.readout().first_state(), net.readout().last_state());
    }
    if (net.readout().kind() == Readout::mean)  // the readout as the loss sees it (step() reads it there)
      dev_.template launch<Divide>("readout_mean", outputs * B, readout_.get(), float(T - net.begin_eval()));
    Matrix<float> R(outputs, B);
    readout_.download(R.data(), std::size_t(outputs * B));
    return R;
  }

  void backward(Net& net, const Matrix<float>& Xb, const std::uint32_t* /*ids*/, DrawKey /*key*/,
                const Matrix<float>& readout_grad) override {
    if (net.time_steps() != T_ || Xb.cols() != B_ || net.num_layers() != L_ || Xb.rows() != F_)
      throw Error("nmsnn GPU engine: backward() called without the matching forward() (time steps, batch or layers differ)");
    gv_.upload(readout_grad.data(), std::size_t(readout_grad.size()));
    backward_device(net, true);
  }

 protected:
  const float* output_for_loss(const Net& /*net*/) override { return readout_.get(); }
  float* output_grad(Index n) override {
    gv_.reserve(std::size_t(n));
    return gv_.get();
  }

  /// Backward from dL/dreadout in gv_ (outputs x B).
  void backward_device(Net& net, bool download) override {
    const Index T = T_, B = B_, TB = T * B, L = L_, F = F_;
    if (net.readout().kind() == Readout::mean)
      dev_.template launch<Divide>("readout_mean", net.outputs() * B, gv_.get(), float(T - net.begin_eval()));
    // Last layer: dL/du from the readout's dL/dv (it has no dL/do).
    {
      const auto& layer = net.layer(L - 1);
      const Index n = layer.outputs();
      auto& D = grad_[std::size_t(L - 1)];
      D.reserve(std::size_t(n * TB));
      const auto& nr = layer.neuron();
      dev_.template launch<BackwardScan>("backward_scan", n * B, D.get(), out_[std::size_t(L - 1)].get(), n * B, T,
                                         float(nr.decay), float(nr.penalty / nr.threshold), int(nr.reset == Reset::subtract), 0,
                                         static_cast<const float*>(gv_.get()), net.readout().first_state(),
                                         net.readout().last_state());
    }
    for (Index l = L - 1; l >= 0; --l) {
      auto& layer = net.layer(l);
      const Index n = layer.outputs(), in = layer.inputs();
      auto& D = grad_[std::size_t(l)];
      float* dW = this->grad(weight_index(l));
      float* db = this->grad(weight_index(l) + 1);
      dev_.row_sums(n, TB, D.get(), n, db);
      if (l > 0) {
        const auto& below = out_[std::size_t(l - 1)];
        auto& Dbelow = grad_[std::size_t(l - 1)];
        Dbelow.reserve(std::size_t(in * TB));
        if (T > 1) {
          // dW = dU[:, steps 1..T-1] O_{l-1}[:, steps 0..T-2]^T; dL/do_{t-1} of layer l-1 =
          // W^T du_t, and zero at its last step.
          dev_.gemm(Op::n, Op::t, n, in, (T - 1) * B, D.get() + B * n, n, below.get(), in, 0.f, dW, n);
          dev_.gemm(Op::t, Op::n, in, (T - 1) * B, n, this->value(weight_index(l)), n, D.get() + B * n, n, 0.f,
                    Dbelow.get(), in);
          dev_.template launch<Set<float>>("fill", in * B, Dbelow.get() + (T - 1) * B * in, 0.f);
        } else {
          dev_.template launch<Set<float>>("fill", n * in, dW, 0.f);
          dev_.template launch<Set<float>>("fill", in * TB, Dbelow.get(), 0.f);
        }
        const auto& nr = net.layer(l - 1).neuron();
        dev_.template launch<BackwardScan>("backward_scan", in * B, Dbelow.get(), static_cast<const float*>(below.get()), in * B, T,
                                           float(nr.decay), float(nr.penalty / nr.threshold), int(nr.reset == Reset::subtract), 1,
                                           static_cast<const float*>(nullptr), Index(0), Index(-1));
      } else {
        // Layer 1: dW = sum_t du_t s_t^T over the encoded inputs kept from forward().
        dev_.gemm(Op::n, Op::t, n, F, TB, D.get(), n, S_.get(), F, 0.f, dW, n);
      }
      if (download) {
        layer.mutable_weight_gradient().resize(n, in);
        layer.mutable_bias_gradient().resize(n);
        this->download_grad(weight_index(l), layer.mutable_weight_gradient().data(), n * in);
        this->download_grad(weight_index(l) + 1, layer.mutable_bias_gradient().data(), n);
      }
    }
  }

 private:
  /// Layer l's weights are parameter 2 l, its bias 2 l + 1 (SpikingNetwork::parameters()).
  static std::size_t weight_index(Index l) { return 2 * std::size_t(l); }

  Index T_ = 0, B_ = 0, L_ = 0, F_ = 0;
  Array<float> x_, S_, readout_, gv_;
  Array<std::uint32_t> ids_;
  std::vector<Array<float>> out_, grad_;
};


/// Runs a DenseNetwork<Task, float>'s training passes on Device: per layer, the product and
/// bias, ReLU, batch norm with the batch's statistics (or the running ones for a batch of
/// one) and inverted dropout before the output layer, drawing the CPU's dropout masks; and
/// backwards through all of them. The running statistics' update stays on the CPU (from
/// batch_statistics()); step() (EngineBase) runs the loss and the optimiser on the device.
template <class Net, class Device>
class DenseEngine : public EngineBase<Net, Device> {
  using Base = EngineBase<Net, Device>;
  template <class T>
  using Array = typename Base::template Array<T>;
  using Base::dev_;

 public:
  using Base::Base;

  Matrix<float> forward(const Net& net, const Matrix<float>& Xb, const std::uint32_t* ids, DrawKey key) override {
    const Index L = net.num_layers(), B = Xb.cols();
    B_ = B, L_ = L;
    // The parameters (DenseNetwork::parameters(): per layer W, b, then gamma, beta with batch
    // norm) and each layer's first one.
    std::vector<Index> sizes;
    first_param_.assign(std::size_t(L), 0);
    for (Index l = 0; l < L; ++l) {
      const auto& layer = net.layer(l);
      first_param_[std::size_t(l)] = sizes.size();
      sizes.insert(sizes.end(), {layer.weights.size(), layer.bias.size()});
      if (layer.gamma.size()) sizes.insert(sizes.end(), {layer.gamma.size(), layer.beta.size()});
    }
    this->begin_forward(B, sizes);
    for (auto* v : {&z_, &xhat_, &bn_, &inv_std_}) v->resize(std::size_t(L));
    mean_.resize(std::size_t(L));
    var_.resize(std::size_t(L));
    input_.assign(std::size_t(L), nullptr);
    batch_stats_.assign(std::size_t(L), 0);
    units_.assign(std::size_t(L), 0);
    x_.upload(Xb.data(), std::size_t(Xb.size()));
    ids_.upload(ids, std::size_t(B));
    input_[0] = x_.get();
    const bool dropout = net.dropout() > 0;
    for (Index l = 0; l < L; ++l) {
      const auto& layer = net.layer(l);
      const std::size_t u = std::size_t(l), k = first_param_[u];
      const Index n = layer.weights.rows(), in = layer.weights.cols();
      units_[u] = n;
      const float* W = this->param(k, layer.weights.data(), n * in);
      const float* bias = this->param(k + 1, layer.bias.data(), n);
      auto& Z = z_[u];
      Z.reserve(std::size_t(n * B));
      dev_.template launch<FillBias>("fill_bias", n * B, Z.get(), bias, n);
      dev_.gemm(Op::n, Op::n, n, B, in, W, n, input_[u], in, 1.f, Z.get(), n);
      if (l + 1 == L) break;  // the output layer: its product is the output
      dev_.template launch<Relu>("relu", n * B, Z.get());
      const float* h = Z.get();
      if (layer.gamma.size()) {
        const float* gamma = this->param(k + 2, layer.gamma.data(), n);
        const float* beta = this->param(k + 3, layer.beta.data(), n);
        mean_[u].reserve(std::size_t(n));
        var_[u].reserve(std::size_t(n));
        inv_std_[u].reserve(std::size_t(n));
        batch_stats_[u] = B > 1;
        if (!batch_stats_[u]) {  // a batch of one: the running statistics
          mean_[u].upload(layer.running_mean.data(), std::size_t(n));
          var_[u].upload(layer.running_var.data(), std::size_t(n));
        }
        dev_.template launch<BatchNormStats>("batch_norm_stats", n, h, n, B, int(batch_stats_[u]), mean_[u].get(), var_[u].get(),
                                             inv_std_[u].get(), Net::eps);
        xhat_[u].reserve(std::size_t(n * B));
        bn_[u].reserve(std::size_t(n * B));
        dev_.template launch<BatchNormApply>("batch_norm", n * B, h, n, static_cast<const double*>(mean_[u].get()),
                                             static_cast<const float*>(inv_std_[u].get()), gamma, beta, xhat_[u].get(),
                                             bn_[u].get());
        h = bn_[u].get();
      }
      if (l + 2 == L && dropout) {  // inverted dropout on the output layer's input
        const auto dk = make_key(key.seed, RandomDomain::dropout);
        mask_.reserve(std::size_t(n * B));
        drop_.reserve(std::size_t(n * B));
        dev_.template launch<Dropout>("dropout", n * B, h, n, static_cast<const std::uint32_t*>(ids_.get()), dk[0], dk[1],
                                      key.stream, float(1.0 - net.dropout()), mask_.get(), drop_.get());
        h = drop_.get();
      }
      input_[u + 1] = h;
    }
    Matrix<float> out(net.outputs(), B);
    z_.back().download(out.data(), std::size_t(out.size()));
    return out;
  }

  bool batch_statistics(Index l, Vector<double>& mean, Vector<double>& var) const override {
    if (l < 0 || l >= L_ || !batch_stats_[std::size_t(l)]) return false;
    const Index n = units_[std::size_t(l)];
    mean.resize(n);
    var.resize(n);
    mean_[std::size_t(l)].download(mean.data(), std::size_t(n));
    var_[std::size_t(l)].download(var.data(), std::size_t(n));
    return true;
  }

  void backward(Net& net, const Matrix<float>& Xb, const std::uint32_t* /*ids*/, DrawKey /*key*/,
                const Matrix<float>& output_grad) override {
    if (Xb.cols() != B_ || net.num_layers() != L_ || output_grad.cols() != B_)
      throw Error("nmsnn GPU engine: backward() called without the matching forward() (batch or layers differ)");
    g_.upload(output_grad.data(), std::size_t(output_grad.size()));
    backward_device(net, true);
  }

 protected:
  const float* output_for_loss(const Net& /*net*/) override { return z_.back().get(); }
  float* output_grad(Index n) override {
    g_.reserve(std::size_t(n));
    return g_.get();
  }

  /// Backward from dL/doutput in g_ (outputs x B).
  void backward_device(Net& net, bool download) override {
    const Index L = L_, B = B_;
    for (Index l = L - 1; l >= 0; --l) {
      auto& layer = net.layer(l);
      const std::size_t u = std::size_t(l), k = first_param_[u];
      const Index n = layer.weights.rows(), in = layer.weights.cols();
      float* dW = this->grad(k);
      float* db = this->grad(k + 1);
      dev_.gemm(Op::n, Op::t, n, in, B, g_.get(), n, input_[u], in, 0.f, dW, n);
      dev_.row_sums(n, B, g_.get(), n, db);
      if (download) {
        layer.weight_grad.resize(n, in);
        layer.bias_grad.resize(n);
        this->download_grad(k, layer.weight_grad.data(), n * in);
        this->download_grad(k + 1, layer.bias_grad.data(), n);
      }
      if (l == 0) break;
      // The gradient at this layer's input, then back through the layer below's dropout,
      // batch norm and ReLU.
      gh_.reserve(std::size_t(in * B));
      dev_.gemm(Op::t, Op::n, in, B, n, this->value(k), n, g_.get(), n, 0.f, gh_.get(), in);
      if (l + 1 == L && net.dropout() > 0)
        dev_.template launch<Multiply>("dropout_backward", in * B, gh_.get(), static_cast<const float*>(mask_.get()));
      auto& P = net.layer(l - 1);
      const std::size_t p = u - 1, kp = first_param_[p];
      if (P.gamma.size()) {
        for (auto* a : {&sum_dxhat_, &sum_dxhat_xhat_}) a->reserve(std::size_t(in));
        const float* gamma = this->value(kp + 2);
        float* gamma_grad = this->grad(kp + 2);
        float* beta_grad = this->grad(kp + 3);
        dev_.template launch<BatchNormBackwardSums>("batch_norm_backward_sums", in, static_cast<const float*>(gh_.get()),
                                                    static_cast<const float*>(xhat_[p].get()), in, B, gamma, gamma_grad,
                                                    beta_grad, sum_dxhat_.get(), sum_dxhat_xhat_.get());
        if (download) {
          P.gamma_grad.resize(in);
          P.beta_grad.resize(in);
          this->download_grad(kp + 2, P.gamma_grad.data(), in);
          this->download_grad(kp + 3, P.beta_grad.data(), in);
        }
        dev_.template launch<BatchNormReluBackward>(
            "batch_norm_relu_backward", in * B, gh_.get(), static_cast<const float*>(xhat_[p].get()),
            static_cast<const float*>(z_[p].get()), in, B, int(batch_stats_[p]), gamma,
            static_cast<const float*>(inv_std_[p].get()), static_cast<const float*>(sum_dxhat_.get()),
            static_cast<const float*>(sum_dxhat_xhat_.get()));
      } else {
        dev_.template launch<ReluBackward>("relu_backward", in * B, gh_.get(), static_cast<const float*>(z_[p].get()));
      }
      std::swap(g_, gh_);
    }
  }

 private:
  Index B_ = 0, L_ = 0;
  Array<float> x_, mask_, drop_, g_, gh_, sum_dxhat_, sum_dxhat_xhat_;
  Array<std::uint32_t> ids_;
  // Per layer: the product (then its ReLU), batch norm's xhat and output, its statistics and
  // 1 / std (the parameters and their gradients are EngineBase's).
  std::vector<Array<float>> z_, xhat_, bn_, inv_std_;
  std::vector<Array<double>> mean_, var_;
  std::vector<const float*> input_;  // each layer's input (device memory)
  std::vector<char> batch_stats_;
  std::vector<Index> units_;
  std::vector<std::size_t> first_param_;  // each layer's first parameter's index
};

// ---- the host device ----

/// Memory of HostDevice. Like device memory it is not initialised: new elements hold NaN
/// (or all ones for integers), so that an engine that reads what it never wrote fails its
/// tests instead of reading zeros by luck.
template <class T>
class HostArray {
 public:
  T* get() { return v_.data(); }
  const T* get() const { return v_.data(); }
  void reserve(std::size_t n) {
    if (n <= v_.size()) return;
    if constexpr (std::numeric_limits<T>::has_quiet_NaN) v_.assign(n, std::numeric_limits<T>::quiet_NaN());
    else v_.assign(n, T(~T(0)));
  }
  void upload(const T* host, std::size_t n) {
    reserve(n);
    if (n) std::memcpy(v_.data(), host, n * sizeof(T));
  }
  void download(T* host, std::size_t n) const { read(0, host, n); }
  /// Elements [at, at + n) from or to the host, within what is reserved.
  void write(std::size_t at, const T* host, std::size_t n) {
    NMSNN_ASSERT(at + n <= v_.size());
    if (n) std::memcpy(v_.data() + at, host, n * sizeof(T));
  }
  void read(std::size_t at, T* host, std::size_t n) const {
    NMSNN_ASSERT(at + n <= v_.size());
    if (n) std::memcpy(host, v_.data() + at, n * sizeof(T));
  }

 private:
  std::vector<T> v_;
};

/// Times named launches and products when on (a device's kernel_seconds()).
class KernelClock {
 public:
  void set_profiling(bool on) { on_ = on; }
  bool profiling() const { return on_; }
  void add(const char* name, double seconds) {
    auto& e = table_[name];
    e.first += seconds;
    ++e.second;
  }
  /// Seconds and calls per name since the last reset().
  const std::map<std::string, std::pair<double, long>>& kernel_seconds() const { return table_; }
  void reset() { table_.clear(); }

 private:
  bool on_ = false;
  std::map<std::string, std::pair<double, long>> table_;
};

/// The kernels in host loops and the products with Eigen (single-threaded): a reference for
/// the GPU path's logic on any machine. Its loops run i from n-1 down to 0, so that a kernel
/// that depended on its threads' order would show it.
class HostDevice : public KernelClock {
 public:
  template <class T>
  using Array = HostArray<T>;

  template <class K, class... A>
  void launch(const char* name, Index n, A... args) {
    const auto t0 = std::chrono::steady_clock::now();
    for (Index i = n - 1; i >= 0; --i) K::run(i, args...);
    if (profiling()) add(name, seconds_since(t0));
  }

  void gemm(Op ta, Op tb, Index m, Index n, Index k, const float* A, Index lda, const float* B, Index ldb, float beta, float* C,
            Index ldc) {
    const auto t0 = std::chrono::steady_clock::now();
    using Map = Eigen::Map<const Matrix<float>, 0, Eigen::OuterStride<>>;
    NMSNN_ASSERT(lda >= (ta == Op::n ? m : k) && ldb >= (tb == Op::n ? k : n) && ldc >= m);
    const Map a(A, ta == Op::n ? m : k, ta == Op::n ? k : m, Eigen::OuterStride<>(lda));
    const Map b(B, tb == Op::n ? k : n, tb == Op::n ? n : k, Eigen::OuterStride<>(ldb));
    Eigen::Map<Matrix<float>, 0, Eigen::OuterStride<>> c(C, m, n, Eigen::OuterStride<>(ldc));
    Matrix<float> p(m, n);
    if (ta == Op::n && tb == Op::n) p.noalias() = a * b;
    else if (ta == Op::n) p.noalias() = a * b.transpose();
    else if (tb == Op::n) p.noalias() = a.transpose() * b;
    else p.noalias() = a.transpose() * b.transpose();
    if (beta == 0.f) c = p;  // as cuBLAS: C is not read
    else c = p + beta * c;
    if (profiling()) add("gemm", seconds_since(t0));
  }

  void row_sums(Index m, Index n, const float* A, Index lda, float* y) {
    const auto t0 = std::chrono::steady_clock::now();
    Eigen::Map<Vector<float>>(y, m) = Eigen::Map<const Matrix<float>, 0, Eigen::OuterStride<>>(A, m, n, Eigen::OuterStride<>(lda)).rowwise().sum();
    if (profiling()) add("row_sums", seconds_since(t0));
  }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

}  // namespace nmsnn::detail::device
