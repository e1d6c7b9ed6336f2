#!/usr/bin/env bash
# The GPU path's checks on a machine with an NVIDIA GPU, in one run: builds test_cuda and
# nmsnn-bench-cuda with nvcc directly (no CMake packages needed: Eigen's and nlohmann-json's
# headers are given as folders), runs the parity tests, then times the workloads on the GPU
# engines beside the PyTorch reference on the same GPU, alternating, and prints the ratios and
# the kernels' profile.
#
#   benchmarks/gpu_check.sh [--eigen DIR] [--json DIR] [--ref PATH] [--arch sm_90] [--out DIR]
#                           [--rounds R] [--batches K] [--workloads "mnist binary"]
#                           [--bin DIR] [--build-only] [--sanitize SECONDS]
#
# --build-only builds the two programs into OUT and stops (on a machine with nvcc and no GPU);
# --bin DIR then runs those programs from DIR instead of building, when they load there (any
# missing shared library: they are built as usual); --sanitize S runs test_cuda once more
# under compute-sanitizer's memcheck, for at most S seconds, after the benchmark.
#
# Defaults: /usr/include/eigen3, /usr/include (nlohmann/json.hpp), the reference at
# ../shared/anchors/pynmsnn_reference.py, sm_90 (H100/H200), out ./gpu-check, the workloads
# mnist, binary and their _mlp (the dense engine), 2 rounds of 5 batches (and one with
# --host-update: the loss and the optimiser on the CPU, for comparison); PYTHON (default
# python3) runs the reference. Everything printed is also written to OUT/gpu_check.log.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
eigen=/usr/include/eigen3 json=/usr/include ref=$here/../shared/anchors/pynmsnn_reference.py
arch=sm_90 out=$here/gpu-check rounds=2 batches=5 workloads="mnist binary mnist_mlp binary_mlp"
bin="" build_only=0 sanitize=0
while [ $# -gt 0 ]; do
  case $1 in
    --eigen) eigen=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --ref) ref=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --sanitize) sanitize=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -f "$eigen/Eigen/Core" ] || { echo "gpu_check.sh: no Eigen headers in $eigen" >&2; exit 2; }
[ -f "$json/nlohmann/json.hpp" ] || { echo "gpu_check.sh: no nlohmann/json.hpp under $json" >&2; exit 2; }
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
nvcc --version | tail -2
date -u

loads() { [ -x "$1" ] && ! ldd "$1" 2>&1 | grep -q "not found"; }
if [ -n "$bin" ] && loads "$bin/test_cuda" && loads "$bin/nmsnn-bench-cuda"; then
  echo "== prebuilt programs from $bin"
  cp "$bin/test_cuda" "$bin/nmsnn-bench-cuda" "$out/"
else
  [ -z "$bin" ] || echo "== the programs in $bin are missing or do not load here: building"
  echo "== build (nvcc, $arch)"
  flags=(-std=c++20 -O3 -arch="$arch" --expt-relaxed-constexpr -diag-suppress=20012,20014,20011,20015
         -DEIGEN_DONT_PARALLELIZE -DNDEBUG -I"$here/include" -I"$eigen" -I"$json" -Xcompiler=-O3)
  t0=$(date +%s)
  nvcc "${flags[@]}" "$here/tests/cuda/test_cuda.cu" -lcublas -o "$out/test_cuda" & p1=$!
  cp "$here/benchmarks/nmsnn_bench.cpp" "$out/nmsnn_bench_cuda.cu"
  nvcc "${flags[@]}" -DNMSNN_BENCH_CUDA "$out/nmsnn_bench_cuda.cu" -lcublas -o "$out/nmsnn-bench-cuda" & p2=$!
  wait $p1 && wait $p2
  echo "built in $(( $(date +%s) - t0 )) s"
fi
[ "$build_only" = 0 ] || exit 0

echo "== test_cuda (the GPU engine against the CPU engine)"
rc=0; "$out/test_cuda" || rc=$?
echo "test_cuda exit $rc"

echo "== benchmark: GPU engine against the PyTorch reference on the same GPU"
for w in $workloads; do
  for r in $(seq "$rounds"); do
    echo "# ref   $w round $r: $("${PYTHON:-python3}" "$ref" "$w" --device cuda --batches "$batches" | tail -1)"
    "$out/nmsnn-bench-cuda" "$w" --device cuda --batches "$batches" | sed "s/^/# nmsnn $w round $r: /"
  done
  # The same with the loss and the optimiser's update on the CPU (the passes on the GPU).
  "$out/nmsnn-bench-cuda" "$w" --device cuda --batches "$batches" --host-update | sed "s/^/# nmsnn-host-update $w round 1: /"
done | tee "$out/bench.txt"

python3 - "$out/bench.txt" <<'PY'
import json, statistics, sys
ref, ours, prof, host = {}, {}, {}, {}
for line in open(sys.argv[1]):
    tag, _, payload = line.partition(": ")
    w = tag.split()[2]
    try:
        d = json.loads(payload)
    except ValueError:
        print("not JSON:", line.strip())
        continue
    if tag.startswith("# ref"):
        ref.setdefault(w, []).append(d["sec_per_batch"])
    elif tag.startswith("# nmsnn-host-update"):
        if "sec_per_batch" in d:
            host.setdefault(w, []).append(d["sec_per_batch"])
    elif "profiled_steps" in d:
        prof[w] = d
    else:
        ours.setdefault(w, []).append(d["sec_per_batch"])
print(f"{'workload':10} {'ref_s/batch':>12} {'nmsnn_s/batch':>14} {'speedup':>8} {'host_update_s':>14} "
      f"{'scan_GB/s':>10} {'gemm_TFLOP/s':>13}")
for w in sorted(set(ref) & set(ours)):
    r, o = statistics.median(ref[w]), statistics.median(ours[w])
    h = statistics.median(host[w]) if w in host else float("nan")
    p = prof.get(w, {})
    print(f"{w:10} {r:12.5f} {o:14.6f} {r / o:7.1f}x {h:14.6f} {p.get('scan_gbps', 0):10.1f} "
          f"{p.get('gemm_tflops', 0):13.3f}")
PY

if [ "$sanitize" != 0 ]; then
  echo "== compute-sanitizer memcheck on test_cuda (at most $sanitize s)"
  src=0; timeout "$sanitize" compute-sanitizer --tool memcheck --error-exitcode 3 "$out/test_cuda" || src=$?
  echo "memcheck exit $src"
fi
