#!/usr/bin/python3
"""snnTorch's side of the LIF workloads of nmsnn-bench (lif_512, lif_4096, synaptic_512): one
Linear(N -> N) layer of snnTorch's own Leaky (or Synaptic) neurons, batch 16, T = 500, input
spikes with probability 0.1 at every step, the spike count over the steps against a target
(MSE), forward + backward + Adam step, float32 on the CPU.

  PYTHONPATH=<snnTorch checkout> /usr/bin/python3 snntorch_lif.py WORKLOAD [--threads N] [--batches K]

Prints one JSON line as pynmsnn_reference.py does: workload, threads, batch, T,
sec_per_batch (median of K timed steps after one warm-up), sample_steps_per_s, peak_rss_mib,
gflops (the step's products: forward, weight gradient, 2 N^2 B T FLOP each).
Needs Debian's python3-torch and snnTorch's source (its repository; nothing of it is copied).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import snntorch as snn

WORKLOADS = {"lif_512": ("leaky", 512), "lif_4096": ("leaky", 4096), "synaptic_512": ("synaptic", 512)}
B, T, P = 16, 500, 0.1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    kind, n = WORKLOADS[a.workload]
    torch.manual_seed(0)
    fc = torch.nn.Linear(n, n)
    lif = snn.Leaky(beta=0.9) if kind == "leaky" else snn.Synaptic(alpha=0.8, beta=0.9)
    opt = torch.optim.Adam(fc.parameters(), lr=1e-3)
    x = (torch.rand(T, B, n) < P).float()
    target = torch.rand(B, n) * 5

    def step():
        opt.zero_grad()
        count = torch.zeros(B, n)
        if kind == "leaky":
            mem = lif.reset_mem()
            for t in range(T):
                spk, mem = lif(fc(x[t]), mem)
                count = count + spk
        else:
            syn, mem = lif.reset_mem()
            for t in range(T):
                spk, syn, mem = lif(fc(x[t]), syn, mem)
                count = count + spk
        loss = torch.nn.functional.mse_loss(count, target)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(a.batches):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    flops = 2 * 2.0 * n * n * B * T
    print(json.dumps({"workload": a.workload, "threads": a.threads, "batch": B, "T": T, "sec_per_batch": med,
                      "sample_steps_per_s": B * T / med,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "gflops": flops / med * 1e-9}))


if __name__ == "__main__":
    main()
