// nmsnn/cuda.hpp — the GPU path (opt-in): include it from a CUDA translation unit (.cu,
// compiled by nvcc with --expt-relaxed-constexpr, linked with cuBLAS; CMake: NMSNN_CUDA=ON
// gives the target nmsnn::cuda). CPU-only builds never see it.
//
//   nmsnn::SpikingNetwork<nmsnn::MulticlassClassification> net({...});
//   net.set_engine(std::make_shared<nmsnn::cuda::Engine<decltype(net)>>());   // device 0
//   net.fit(X, y, adam, {.epochs = 10});                                        // the same API
//
// What runs on the GPU: the layer-wise, time-batched scheme of the CPU engine — the input
// encoders drawing the same counter-based (Philox4x32-10) numbers as the CPU, so a seed gives
// the same masks on both; all-steps products with cuBLAS; fused forward scans (leak,
// threshold, reset, one-step delay, readout accumulation) and backward scans; weight and bias
// gradients. The input batch is uploaded once per step and the readout and gradients come
// back; the optimiser, the losses and inference stay on the CPU (so a GPU-trained model is an
// ordinary SpikingNetwork). Scalar must be float.
//
// Errors: no device, out of device memory or any failing CUDA or cuBLAS call throws
// nmsnn::cuda::CudaError naming the call; there is no silent fallback to the CPU.
#pragma once

#if !defined(__CUDACC__)
#error "nmsnn/cuda.hpp is for CUDA translation units (.cu files compiled by nvcc)"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/network/spiking_network.hpp"

namespace nmsnn::cuda {

/// A failing CUDA runtime or cuBLAS call (the message names it), or no usable device.
class CudaError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw CudaError(std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
inline void check(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) throw CudaError(std::string(call) + " failed: cuBLAS status " + std::to_string(int(s)));
}
}  // namespace detail

#define NMSNN_CUDA_CHECK(call) ::nmsnn::cuda::detail::check((call), #call)

/// Number of CUDA devices (0 when there is no driver or no device).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

/// A device array of T (RAII, grows on demand, never shrinks).
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), capacity_(o.capacity_) { o.p_ = nullptr, o.capacity_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(capacity_, o.capacity_);
    return *this;
  }
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  T* get() { return p_; }
  const T* get() const { return p_; }
  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    if (p_) cudaFree(p_);
    p_ = nullptr;
    capacity_ = 0;
    NMSNN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    capacity_ = n;
  }
  void upload(const T* host, std::size_t n) {
    reserve(n);
    NMSNN_CUDA_CHECK(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, std::size_t n) const {
    NMSNN_CUDA_CHECK(cudaMemcpy(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* p_ = nullptr;
  std::size_t capacity_ = 0;
};

namespace kernels {

/// S (F x T*B, column t*B + b) = layer 1's input for every step: the CPU encoder's draws
/// (Philox counter {t / 4, feature, sample id, stream}, word t % 4, 24-bit uniform).
__global__ void encode(float* S, const float* X, const std::uint32_t* ids, Index F, Index B, Index T, int kind,
                       std::uint32_t k0, std::uint32_t k1, std::uint32_t stream) {
  const Index n = F * B * T;
  for (Index idx = Index(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += Index(gridDim.x) * blockDim.x) {
    const Index f = idx % F, col = idx / F, b = col % B, t = col / B;
    const float x = X[f + F * b];
    float s = x;
    if (kind != int(Encoding::direct)) {
      const auto r = Philox4x32::generate({std::uint32_t(t >> 2), std::uint32_t(f), ids[b], stream}, {k0, k1});
      const float u = uniform01_24(r[t & 3]);
      s = kind == int(Encoding::rate) ? u * x : (u < fminf(fmaxf(x, 0.f), 1.f) ? 1.f : 0.f);
    }
    S[idx] = s;
  }
}

/// A (n x cols) = bias broadcast over the columns.
__global__ void fill_bias(float* A, const float* bias, Index n, Index cols) {
  for (Index idx = Index(blockIdx.x) * blockDim.x + threadIdx.x; idx < n * cols; idx += Index(gridDim.x) * blockDim.x)
    A[idx] = bias[idx % n];
}

/// Forward scan, one thread per neuron and sample (grid-stride) (element j of a step's n x B block): A holds
/// a_t on entry and o_t on exit; v_t is added to R (n x B) for t in [t_lo, t_hi] when R is set.
__global__ void forward_scan(float* A, Index nB, Index T, float decay, float theta, float penalty, int subtract, float* R,
                             Index t_lo, Index t_hi) {
  const float kappa = penalty / theta;
  for (Index j = Index(blockIdx.x) * blockDim.x + threadIdx.x; j < nB; j += Index(gridDim.x) * blockDim.x) {
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
}

/// Backward scan (MODEL.md "Gradients"), t = T-1 down to 0. O holds o_t (its sign is the fire
/// gate); D holds dL/do_t on entry when has_go and dL/du_t on exit; gv (n x B) is dL/dv_t for t
/// in [t_lo, t_hi] when set.
__global__ void backward_scan(float* D, const float* O, Index nB, Index T, float decay, float kappa, int subtract, int has_go,
                              const float* gv, Index t_lo, Index t_hi) {
  for (Index j = Index(blockIdx.x) * blockDim.x + threadIdx.x; j < nB; j += Index(gridDim.x) * blockDim.x) {
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
}

__global__ void fill(float* p, Index n, float v) {
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += Index(gridDim.x) * blockDim.x) p[i] = v;
}

inline unsigned blocks(Index n, unsigned threads = 256) {
  const Index b = (n + threads - 1) / threads;
  return unsigned(std::min<Index>(std::max<Index>(b, 1), 65535));
}

}  // namespace kernels

/// The GPU engine of a SpikingNetwork<Task, float> (see the top of this file).
template <class Net>
class Engine : public ExternalEngine<Net> {
  static_assert(std::is_same_v<typename Net::Scalar, float>, "nmsnn::cuda::Engine: the network's Scalar must be float");

 public:
  /// Uses device `device`; throws CudaError when there is none.
  explicit Engine(int device = 0) {
    const int n = device_count();
    if (n == 0) throw CudaError("nmsnn::cuda::Engine: no CUDA device (cudaGetDeviceCount found none)");
    if (device < 0 || device >= n)
      throw CudaError("nmsnn::cuda::Engine: device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " found)");
    NMSNN_CUDA_CHECK(cudaSetDevice(device));
    NMSNN_CUDA_CHECK(cublasCreate(&blas_));
    // Products in full fp32 (no TF32), so that results agree with the CPU to float rounding.
    NMSNN_CUDA_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine() override {
    if (blas_) cublasDestroy(blas_);
  }

  Matrix<float> forward(const Net& net, const Matrix<float>& Xb, const std::uint32_t* ids, DrawKey key) override {
    const Index T = net.time_steps(), B = Xb.cols(), F = Xb.rows(), TB = T * B, L = net.num_layers();
    T_ = T, B_ = B;
    out_.resize(std::size_t(L));
    grad_.resize(std::size_t(L));
    weights_.resize(std::size_t(L));
    bias_.resize(std::size_t(L));
    x_.upload(Xb.data(), std::size_t(F * B));
    ids_.upload(ids, std::size_t(B));
    S_.reserve(std::size_t(F * TB));
    const auto k = make_key(key.seed, RandomDomain::input_mask);
    kernels::encode<<<kernels::blocks(F * TB), 256>>>(S_.get(), x_.get(), ids_.get(), F, B, T, int(net.encoder().kind()), k[0], k[1],
                                                    key.stream);
    NMSNN_CUDA_CHECK(cudaGetLastError());
    const Index outputs = net.outputs();
    readout_.reserve(std::size_t(outputs * B));
    kernels::fill<<<kernels::blocks(outputs * B), 256>>>(readout_.get(), outputs * B, 0.f);
    const float one = 1.f;
    for (Index l = 0; l < L; ++l) {
      const auto& layer = net.layer(l);
      const Index n = layer.outputs(), in = layer.inputs();
      weights_[std::size_t(l)].upload(layer.weights().data(), std::size_t(n * in));
      bias_[std::size_t(l)].upload(layer.bias().data(), std::size_t(n));
      auto& A = out_[std::size_t(l)];
      A.reserve(std::size_t(n * TB));
      kernels::fill_bias<<<kernels::blocks(n * TB), 256>>>(A.get(), bias_[std::size_t(l)].get(), n, TB);
      if (l == 0) {
        NMSNN_CUDA_CHECK(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(TB), int(in), &one, weights_[0].get(), int(n),
                                     S_.get(), int(in), &one, A.get(), int(n)));
      } else if (T > 1) {
        // Layer l reads at step t what layer l-1 emitted, o_{t-1}; step 0 gets the bias alone.
        NMSNN_CUDA_CHECK(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int((T - 1) * B), int(in), &one,
                                     weights_[std::size_t(l)].get(), int(n), out_[std::size_t(l - 1)].get(), int(in), &one,
                                     A.get() + B * n, int(n)));
      }
      const auto& nr = layer.neuron();
      const bool last = l == L - 1;
      kernels::forward_scan<<<kernels::blocks(n * B), 256>>>(A.get(), n * B, T, float(nr.decay), float(nr.threshold), float(nr.penalty),
                                                           nr.reset == Reset::subtract, last ? readout_.get() : nullptr,
                                                           net.readout().first_state(), net.readout().last_state());
      NMSNN_CUDA_CHECK(cudaGetLastError());
    }
    Matrix<float> R(outputs, B);
    readout_.download(R.data(), std::size_t(outputs * B));
    if (net.readout().kind() == Readout::mean) R /= float(T - net.begin_eval());
    return R;
  }

  void backward(Net& net, const Matrix<float>& Xb, const std::uint32_t* /*ids*/, DrawKey /*key*/,
                const Matrix<float>& readout_grad) override {
    const Index T = net.time_steps(), B = Xb.cols(), TB = T * B, L = net.num_layers(), F = Xb.rows();
    if (T != T_ || B != B_ || out_.size() != std::size_t(L))
      throw CudaError("nmsnn::cuda::Engine::backward: called without the matching forward()");
    Matrix<float> gv = readout_grad;
    if (net.readout().kind() == Readout::mean) gv /= float(T - net.begin_eval());
    gv_.upload(gv.data(), std::size_t(gv.size()));
    ones_.reserve(std::size_t(TB));
    kernels::fill<<<kernels::blocks(TB), 256>>>(ones_.get(), TB, 1.f);
    const float one = 1.f, zero = 0.f;
    // Last layer: dL/du from the readout's dL/dv.
    {
      const auto& layer = net.layer(L - 1);
      const Index n = layer.outputs();
      auto& D = grad_[std::size_t(L - 1)];
      D.reserve(std::size_t(n * TB));
      const auto& nr = layer.neuron();
      kernels::backward_scan<<<kernels::blocks(n * B), 256>>>(D.get(), out_[std::size_t(L - 1)].get(), n * B, T, float(nr.decay),
                                                            float(nr.penalty / nr.threshold), nr.reset == Reset::subtract, 0,
                                                            gv_.get(), net.readout().first_state(), net.readout().last_state());
      NMSNN_CUDA_CHECK(cudaGetLastError());
    }
    for (Index l = L - 1; l >= 0; --l) {
      auto& layer = net.layer(l);
      const Index n = layer.outputs(), in = layer.inputs();
      auto& D = grad_[std::size_t(l)];
      dW_.reserve(std::size_t(n * in));
      db_.reserve(std::size_t(n));
      NMSNN_CUDA_CHECK(cublasSgemv(blas_, CUBLAS_OP_N, int(n), int(TB), &one, D.get(), int(n), ones_.get(), 1, &zero, db_.get(), 1));
      if (l > 0) {
        const auto& below = out_[std::size_t(l - 1)];
        auto& Dbelow = grad_[std::size_t(l - 1)];
        Dbelow.reserve(std::size_t(in * TB));
        kernels::fill<<<kernels::blocks(in * TB), 256>>>(Dbelow.get(), in * TB, 0.f);
        if (T > 1) {
          // dW = dU[:, steps 1..T-1] O_{l-1}[:, steps 0..T-2]^T; dL/do_{t-1} of layer l-1 = W^T du_t.
          NMSNN_CUDA_CHECK(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_T, int(n), int(in), int((T - 1) * B), &one, D.get() + B * n,
                                       int(n), below.get(), int(in), &zero, dW_.get(), int(n)));
          NMSNN_CUDA_CHECK(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(in), int((T - 1) * B), int(n), &one,
                                       weights_[std::size_t(l)].get(), int(n), D.get() + B * n, int(n), &zero, Dbelow.get(),
                                       int(in)));
        } else {
          kernels::fill<<<kernels::blocks(n * in), 256>>>(dW_.get(), n * in, 0.f);
        }
        const auto& nr = net.layer(l - 1).neuron();
        kernels::backward_scan<<<kernels::blocks(in * B), 256>>>(Dbelow.get(), below.get(), in * B, T, float(nr.decay),
                                                               float(nr.penalty / nr.threshold), nr.reset == Reset::subtract, 1,
                                                               nullptr, 0, -1);
        NMSNN_CUDA_CHECK(cudaGetLastError());
      } else {
        // Layer 1: dW = sum_t du_t s_t^T over the encoded inputs kept from forward().
        NMSNN_CUDA_CHECK(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_T, int(n), int(F), int(TB), &one, D.get(), int(n), S_.get(),
                                     int(F), &zero, dW_.get(), int(n)));
      }
      layer.mutable_weight_gradient().resize(n, in);
      layer.mutable_bias_gradient().resize(n);
      dW_.download(layer.mutable_weight_gradient().data(), std::size_t(n * in));
      db_.download(layer.mutable_bias_gradient().data(), std::size_t(n));
    }
  }

 private:
  cublasHandle_t blas_ = nullptr;
  Index T_ = 0, B_ = 0;
  DeviceArray<float> x_, S_, readout_, gv_, ones_, dW_, db_;
  DeviceArray<std::uint32_t> ids_;
  std::vector<DeviceArray<float>> out_, grad_, weights_, bias_;
};

}  // namespace nmsnn::cuda
