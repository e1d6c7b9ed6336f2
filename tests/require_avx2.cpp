// Linked into test_kernels_avx2 (and, with NMSNN_REQUIRE_AVX512, into test_kernels_avx512) and
// compiled for the default target (no AVX2 instructions of its own): exits with 77 (CTest:
// skipped) on a CPU without the instructions that build uses, from a constructor of priority
// 101, which runs before every ordinary static initializer of the executable, so before any
// code compiled with -mavx2 -mfma (test_kernels.cpp, and whatever inline function of Catch or
// Eigen the linker takes from it).
#include <cstdio>
#include <cstdlib>

__attribute__((constructor(101))) static void nmsnn_require_cpu() {
  __builtin_cpu_init();
  bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#if defined(NMSNN_REQUIRE_AVX512)
  ok = ok && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  const char* what = "test_kernels_avx512: this CPU has no AVX-512 (F, VL, BW, DQ): skipped";
#else
  const char* what = "test_kernels_avx2: this CPU has no AVX2 or FMA: skipped";
#endif
  if (!ok) {
    std::puts(what);
    std::exit(77);
  }
}
