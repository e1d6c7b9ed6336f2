// Linked into test_kernels_avx2 and compiled for the default target (no AVX2 instructions of
// its own): exits with 77 (CTest: skipped) on a CPU without AVX2 and FMA, from a constructor
// of priority 101, which runs before every ordinary static initializer of the executable, so
// before any code compiled with -mavx2 -mfma (test_kernels.cpp, and whatever inline function
// of Catch or Eigen the linker takes from it).
#include <cstdio>
#include <cstdlib>

__attribute__((constructor(101))) static void nmsnn_require_avx2_fma() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::puts("test_kernels_avx2: this CPU has no AVX2 or FMA: skipped");
    std::exit(77);
  }
}
