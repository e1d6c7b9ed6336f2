// nmsnn/cuda.hpp — the GPU path (opt-in): include it from a CUDA translation unit (.cu,
// compiled by nvcc with --expt-relaxed-constexpr, linked with cuBLAS; CMake: NMSNN_CUDA=ON
// gives the target nmsnn::cuda). CPU-only builds never see it.
//
//   nmsnn::SpikingNetwork<nmsnn::MulticlassClassification> net({...});
//   net.set_engine(std::make_shared<nmsnn::cuda::Engine<decltype(net)>>());   // device 0
//   net.fit(X, y, adam, {.epochs = 10});                                        // the same API
//
//   nmsnn::DenseNetwork<nmsnn::BinaryClassification> mlp({...});                 // the baseline
//   mlp.set_engine(std::make_shared<nmsnn::cuda::DenseEngine<decltype(mlp)>>());
//
// What runs on the GPU: the layer-wise, time-batched scheme of the CPU engine — the input
// encoders drawing the same counter-based (Philox4x32-10) numbers as the CPU, so a seed gives
// the same masks on both; all-steps products with cuBLAS; fused forward scans (leak,
// threshold, reset, one-step delay, readout accumulation) and backward scans; weight and bias
// gradients; in fit and train_step with Sgd or Adam, the task's loss, the finite checks and the
// optimiser's update too (ExternalEngine::step). Per step the batch goes up once and the
// readout, the per-sample losses and the updated parameters and optimiser state come back, so
// a GPU-trained model is an ordinary SpikingNetwork and the optimiser an ordinary optimiser;
// inference runs on the CPU. Scalar must be float. The engine and its kernel bodies are in
// nmsnn/detail/device_engine.hpp, shared with a host device that tests their logic on any
// machine; this file adds the CUDA device (memory, launches, cuBLAS).
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
#include "nmsnn/detail/device_engine.hpp"
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
using detail::check;

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
  void download(T* host, std::size_t n) const { read(0, host, n); }
  /// Elements [at, at + n) from or to the host, within what is reserved.
  void write(std::size_t at, const T* host, std::size_t n) {
    if (at + n > capacity_) throw CudaError("nmsnn::cuda: DeviceArray::write past the array's end");
    if (n) NMSNN_CUDA_CHECK(cudaMemcpy(p_ + at, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void read(std::size_t at, T* host, std::size_t n) const {
    if (at + n > capacity_) throw CudaError("nmsnn::cuda: DeviceArray::read past the array's end");
    if (n) NMSNN_CUDA_CHECK(cudaMemcpy(host, p_ + at, n * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* p_ = nullptr;
  std::size_t capacity_ = 0;
};

/// Runs K::run(i, args...) for i in [0, n), one thread per i (grid-stride).
template <class K, class... A>
__global__ void grid_stride(Index n, A... args) {
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += Index(gridDim.x) * blockDim.x) K::run(i, args...);
}

/// The CUDA device of the engine (nmsnn/detail/device_engine.hpp): cuBLAS products in full
/// fp32 (no TF32, so that results agree with the CPU to float rounding), the kernels of
/// detail::device launched 256 threads a block. With profiling on (set_profiling(true)), each
/// launch and product is timed by CUDA events (which synchronises after each: for
/// measurements only).
class Device : public nmsnn::detail::device::KernelClock {
 public:
  template <class T>
  using Array = DeviceArray<T>;
  using Op = nmsnn::detail::device::Op;

  /// Uses device `device`; throws CudaError when there is none.
  explicit Device(int device = 0) {
    const int n = device_count();
    if (n == 0) throw CudaError("nmsnn::cuda: no CUDA device (cudaGetDeviceCount found none)");
    if (device < 0 || device >= n)
      throw CudaError("nmsnn::cuda: device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " found)");
    NMSNN_CUDA_CHECK(cudaSetDevice(device));
    NMSNN_CUDA_CHECK(cublasCreate(&blas_));
    NMSNN_CUDA_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() {
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
    if (blas_) cublasDestroy(blas_);
  }

  template <class K, class... A>
  void launch(const char* name, Index n, A... args) {
    begin();
    const Index b = std::min<Index>(std::max<Index>((n + 255) / 256, 1), 65535);
    grid_stride<K, A...><<<unsigned(b), 256>>>(n, args...);
    check(cudaGetLastError(), name);
    end(name);
  }

  void gemm(Op ta, Op tb, Index m, Index n, Index k, const float* A, Index lda, const float* B, Index ldb, float beta, float* C,
            Index ldc) {
    const float one = 1.f;
    begin();
    NMSNN_CUDA_CHECK(cublasSgemm(blas_, ta == Op::n ? CUBLAS_OP_N : CUBLAS_OP_T, tb == Op::n ? CUBLAS_OP_N : CUBLAS_OP_T, int(m),
                                 int(n), int(k), &one, A, int(lda), B, int(ldb), &beta, C, int(ldc)));
    end("gemm");
  }

  /// y = A 1 (A: m x n), by cuBLAS's gemv with a vector of ones.
  void row_sums(Index m, Index n, const float* A, Index lda, float* y) {
    if (ones_n_ < n) {
      ones_.reserve(std::size_t(n));
      launch<nmsnn::detail::device::Set<float>>("fill", n, ones_.get(), 1.f);
      ones_n_ = n;
    }
    const float one = 1.f, zero = 0.f;
    begin();
    NMSNN_CUDA_CHECK(cublasSgemv(blas_, CUBLAS_OP_N, int(m), int(n), &one, A, int(lda), ones_.get(), 1, &zero, y, 1));
    end("row_sums");
  }

 private:
  cublasHandle_t blas_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  DeviceArray<float> ones_;
  Index ones_n_ = 0;

  void begin() {
    if (!profiling()) return;
    if (!start_) {
      NMSNN_CUDA_CHECK(cudaEventCreate(&start_));
      NMSNN_CUDA_CHECK(cudaEventCreate(&stop_));
    }
    NMSNN_CUDA_CHECK(cudaEventRecord(start_));
  }
  void end(const char* name) {
    if (!profiling()) return;
    NMSNN_CUDA_CHECK(cudaEventRecord(stop_));
    NMSNN_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    NMSNN_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    add(name, double(ms) * 1e-3);
  }
};

/// The GPU engine of a SpikingNetwork<Task, float> (see the top of this file); the
/// constructor takes the device number (0 by default).
template <class Net>
class Engine : public nmsnn::detail::device::Engine<Net, Device> {
 public:
  explicit Engine(int device = 0) : nmsnn::detail::device::Engine<Net, Device>(device) {}
};

/// The GPU engine of a DenseNetwork<Task, float>: products, bias, ReLU, batch norm and
/// dropout (the CPU's masks) forward and backward on the device; the running statistics'
/// update on the CPU; with Sgd or Adam in fit/train_step, the loss and the optimiser's update
/// on the device too (ExternalEngine::step).
template <class Net>
class DenseEngine : public nmsnn::detail::device::DenseEngine<Net, Device> {
 public:
  explicit DenseEngine(int device = 0) : nmsnn::detail::device::DenseEngine<Net, Device>(device) {}
};

}  // namespace nmsnn::cuda
