#!/usr/bin/env bash
# Runs nmsnn-bench and the PyTorch reference (pynmsnn_reference.py, Debian's python3-torch)
# side by side on the same workloads, alternating the two, and prints the ratios. The LIF
# workloads (lif_512, lif_4096, synaptic_512) run against snnTorch's own neurons instead
# (benchmarks/snntorch_lif.py, with --snntorch pointing at a checkout of snnTorch's repository).
#
#   benchmarks/compare.sh [--bench PATH] [--ref PATH] [--snntorch DIR] [--threads "1 2"] [--batches K]
#                         [--rounds R] [WORKLOAD...]
#
# Defaults: the bench at build-bench/benchmarks/nmsnn-bench (configure with -DNMSNN_NATIVE=ON),
# the reference at ../shared/anchors/pynmsnn_reference.py, threads "1", batches 5, rounds 3,
# and the workloads binary iris regression mnist binary_noisy.
#
# Each round runs the reference, then nmsnn (fresh processes, each timing the median of K
# steps; nmsnn-bench times more while its timed steps add up to under 0.25 s, see its
# --min-time); a row shows the median over the rounds of each side's time, and its largest
# peak memory. On a shared machine one process's K steps can fall into a slow moment; the rounds,
# spread over the run and alternating, keep one such moment from deciding a ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench=$here/build-bench/benchmarks/nmsnn-bench
ref=$here/../shared/anchors/pynmsnn_reference.py
snntorch=${SNNTORCH:-}
threads="1"
batches=5
rounds=3
workloads=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) bench=$2; shift 2 ;;
    --ref) ref=$2; shift 2 ;;
    --snntorch) snntorch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) workloads+=("$1"); shift ;;
  esac
done
[ ${#workloads[@]} -gt 0 ] || workloads=(binary iris regression mnist binary_noisy)
[ -x "$bench" ] || { echo "compare.sh: no bench at $bench (build with -DNMSNN_BUILD_BENCHMARKS=ON)" >&2; exit 2; }
[ -f "$ref" ] || { echo "compare.sh: no reference at $ref" >&2; exit 2; }

[ "$rounds" -ge 1 ] 2>/dev/null || { echo "compare.sh: --rounds must be a number >= 1" >&2; exit 2; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "rounds: $rounds, batches: $batches (a row: the median over the rounds of each side's median step)"
printf '%-14s %7s %12s %12s %8s %10s %10s %8s %9s\n' workload threads ref_s/batch nmsnn_s/batch speedup ref_MiB nmsnn_MiB mem_ratio nmsnn_GF/s
for w in "${workloads[@]}"; do
  for t in $threads; do
    lines=()
    for ((i = 0; i < rounds; ++i)); do
      # Alternate: reference, nmsnn (each a fresh process timing its median step; see above).
      case $w in
        lif_*|synaptic_*)
          [ -n "$snntorch" ] || { echo "compare.sh: $w runs against snnTorch: give --snntorch DIR" >&2; exit 2; }
          r=$(PYTHONPATH=$snntorch /usr/bin/python3 "$here/benchmarks/snntorch_lif.py" "$w" --threads "$t" --batches "$batches") ;;
        *) r=$(/usr/bin/python3 "$ref" "$w" --threads "$t" --batches "$batches") ;;
      esac
      n=$("$bench" "$w" --threads "$t" --batches "$batches")
      echo "# ref:   $r"
      echo "# nmsnn: $n"
      lines+=("$r" "$n")
    done
    python3 - "$w" "$t" "${lines[@]}" <<'PY'
import json, statistics, sys
w, t, rows = sys.argv[1], sys.argv[2], [json.loads(x) for x in sys.argv[3:]]
ref, ours = rows[0::2], rows[1::2]
rs = statistics.median(r["sec_per_batch"] for r in ref)
ns = statistics.median(r["sec_per_batch"] for r in ours)
rm = max(r["peak_rss_mib"] for r in ref)
nm = max(r["peak_rss_mib"] for r in ours)
gf = statistics.median(r.get("gflops", 0.0) for r in ours)
print(f"{w:<14} {t:>7} {rs:>12.5f} {ns:>12.5f} {rs/ns:>7.1f}x {rm:>10.1f} {nm:>10.1f} {rm/nm:>7.1f}x {gf:>9.1f}")
PY
  done
done
