#!/usr/bin/env python3
"""mpi_scaling_model.py FILE... — the predicted step time of a distributed fit on P ranks,
from `nmsnn-bench WORKLOAD --mpi` lines measured on one rank (a model, not a measurement).

Each FILE holds JSON lines of nmsnn-bench --mpi; the line with "mpi_ranks": 1 of each workload
gives the measured compute per step (all G = ceil(batch / group_size) groups on one rank), the
optimiser's update, the bytes all-reduced and the feature bytes exchanged per step. For P ranks:

  compute(P)  = compute(1) * ceil(G / P) / G          (groups go round-robin to the ranks)
  allreduce   = 2 (P - 1) alpha + 2 (P - 1) / P * S / bw   (ring all-reduce of S bytes)
  exchange    = (P - 1) alpha + E / P / bw            (each rank receives its groups' rows)
  small       = 5 ceil(log2 P) alpha + K B 8 / bw     (agreements, maxima, readouts gathered)
  step(P)     = compute(P) + update + allreduce + exchange + small

with the link's bandwidth bw and latency alpha: 10 Gbit/s Ethernet with alpha = 25 us (TCP),
100 Gbit/s InfiniBand with alpha = 2 us (RDMA). Prints a Markdown table.
"""
import json
import math
import sys

LINKS = [("10 Gbit/s", 10e9 / 8, 25e-6), ("100 Gbit/s", 100e9 / 8, 2e-6)]
RANKS = [8, 16, 32, 64, 128, 256, 512, 1024]
OUTPUTS = {"mnist": 10, "iris": 3, "binary": 1, "regression": 1}


def step_time(m, P, bw, alpha):
    G = math.ceil(m["batch"] / m["group_size"])
    compute = m["compute_s"] * math.ceil(G / P) / G
    S, E = m["allreduce_bytes"], m["exchange_bytes"]
    allreduce = 2 * (P - 1) * alpha + 2 * (P - 1) / P * S / bw
    exchange = (P - 1) * alpha + E / P / bw
    small = 5 * math.ceil(math.log2(P)) * alpha + OUTPUTS.get(m["workload"], 10) * m["batch"] * 8 / bw
    return compute + m["update_s"] + allreduce + exchange + small


def main():
    ones = {}
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    m = json.loads(line)
                    if m.get("mpi_ranks") == 1:
                        ones[m["workload"]] = m
    if not ones:
        sys.exit("no nmsnn-bench --mpi line with mpi_ranks 1")
    print("| workload | link | " + " | ".join(f"P={p}" for p in RANKS) + " |")
    print("|---|---|" + "---|" * len(RANKS))
    for name, m in sorted(ones.items()):
        one = m["sec_per_step"]
        for label, bw, alpha in LINKS:
            cells = []
            for P in RANKS:
                t = step_time(m, P, bw, alpha)
                cells.append(f"{t * 1e3:.1f} ms ({one / t:.1f}x)")
            print(f"| {name} (batch {m['batch']}, {math.ceil(m['batch'] / m['group_size'])} groups, "
                  f"{m['allreduce_bytes'] / 1e6:.2f} MB all-reduced; 1 rank {one * 1e3:.1f} ms) | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
