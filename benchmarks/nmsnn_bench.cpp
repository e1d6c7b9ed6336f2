// nmsnn-bench — training-step timings on the workloads of the PyTorch reference
// (shared/anchors/pynmsnn_reference.py), with the same interface and output:
//
//   nmsnn-bench WORKLOAD [--threads N] [--batches K] [--min-time S] [--chunk-bytes N]
//                        [--device cpu|cuda|emulate] [--host-update] [--T STEPS]
//                        [--recompute automatic|always|never] [--mpi]
//
// --mpi (a build with NMSNN_MPI, under mpirun -np P): K global batches trained by
// fit_distributed on the P ranks; prints the step time, its compute, communication and update
// parts, and the all-reduce's bytes and bus bandwidth (see run_mpi).
//
// --T replaces the workload's number of time steps; --recompute sets whether a LIF network's
// backward recomputes segments of its forward instead of keeping every step
// (SpikingNetwork::set_recompute); the JSON line says which ("recompute_segment": steps, 0 none).
//
// --device cuda (the program built with NMSNN_CUDA=ON, nmsnn-bench-cuda) runs the training
// passes on the GPU engines of nmsnn/cuda.hpp (Engine, or DenseEngine for the _mlp
// workloads); --device emulate runs those engines' code on the CPU (its host device: a check of the GPU path, not a speed). Both
// print, after the timed steps, one more JSON line from K profiled steps: each kernel's and
// product's seconds per step, the scans' bytes per step and bandwidth (GB/s), and the
// products' arithmetic per step and rate (TFLOP/s). A device engine's step runs the loss and
// the optimiser's update on the device too; --host-update runs them on the CPU instead (the
// passes on the device, the gradients downloaded): the comparison of the two.
//
// WORKLOAD: binary, binary_noisy, iris, mnist, regression, and each with _mlp (the dense
// network of the same width: Linear, ReLU, Linear, T = 1); lif_512, lif_4096, synaptic_512 (one
// Linear(N -> N) layer of Leaky or Synaptic neurons, batch 16, T = 500, 10% input spikes, spike
// count MSE, Adam: the Open Neuromorphic benchmark's shape; snnTorch's side is
// benchmarks/snntorch_lif.py). Prints one JSON line:
// workload, threads, batch, T, sec_per_batch (median of the timed steps after one warm-up: K of
// them, and more while they add up to less than S seconds, 0.25 by default; timed_steps says how many),
// sample_steps_per_s, peak_rss_mib, and gflops (arithmetic actually performed per second),
// dense_equivalent_gflops (the dense model's arithmetic per second), input_density and
// sparse_input_path, density (fraction of hidden outputs > 0, i.e. spikes), generator_share
// (time spent drawing input masks, as a fraction of a step).
//
// WORKLOAD gemm: Eigen's own large product (float, 2048 x 2048 by 2048 x 2048; nmsnn builds
// Eigen without its own threads, so with --threads N > 1 the columns are split over N threads
// as the engine splits its products), the machine's reference figure for the gflops above; prints
// workload, threads, n, sec (median of K after one warm-up) and gflops.
#include <nmsnn/detail/device_engine.hpp>
#include <nmsnn/nmsnn.hpp>
#if defined(NMSNN_BENCH_CUDA)
#include <nmsnn/cuda.hpp>
#endif
#if defined(NMSNN_HAVE_MPI)
#include <nmsnn/distributed/mpi.hpp>
#endif

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

struct Workload {
  Eigen::Index inputs, hidden, outputs, T, batch;  // hidden 0: one layer, inputs to outputs
  const char* loss;
  const char* optimiser;
  nmsnn::Readout readout;
  nmsnn::NeuronModel neuron = nmsnn::NeuronModel::graded;
};

const std::map<std::string, Workload> workloads = {
    {"binary", {20, 64, 1, 500, 64, "bce", "adam", nmsnn::Readout::sum}},
    {"binary_noisy", {20020, 64, 1, 500, 64, "bce", "adam", nmsnn::Readout::sum}},
    {"iris", {4, 100, 3, 64, 120, "ce", "adam", nmsnn::Readout::mean}},
    {"mnist", {784, 100, 10, 128, 1000, "ce", "sgd", nmsnn::Readout::mean}},
    {"regression", {3, 100, 1, 64, 64, "mse", "sgd", nmsnn::Readout::mean}},
    // The Open Neuromorphic benchmark's shape: one Linear(N -> N) layer of LIF neurons, batch 16,
    // T = 500, input spikes with probability 0.1 (Bernoulli encoding of 0.1), spike count MSE, Adam.
    {"lif_512", {512, 0, 512, 500, 16, "mse", "adam", nmsnn::Readout::sum, nmsnn::NeuronModel::leaky}},
    {"lif_4096", {4096, 0, 4096, 500, 16, "mse", "adam", nmsnn::Readout::sum, nmsnn::NeuronModel::leaky}},
    {"synaptic_512", {512, 0, 512, 500, 16, "mse", "adam", nmsnn::Readout::sum, nmsnn::NeuronModel::synaptic}},
};

bool lif_workload(const Workload& w) { return w.neuron != nmsnn::NeuronModel::graded; }

std::string device = "cpu";  // --device
std::string recompute;       // --recompute (empty: the network's automatic choice)
bool host_update = false;    // --host-update
bool mpi_mode = false;       // --mpi

/// One training step: the passes and the optimiser's update (on a device engine, all of it
/// on the device: ExternalEngine::step).
template <class Net, class Opt>
void train_step(Net& net, Opt& opt, const nmsnn::Matrix<float>& Xb, const nmsnn::Matrix<float>& Yb,
                const std::vector<std::uint32_t>& ids) {
  if (host_update) {
    const double loss = net.train_batch(Xb, Yb, ids.data(), net.next_stream());
    nmsnn::detail::guarded_model_step(net, opt, loss, "bench");
  } else {
    net.train_and_update(Xb, Yb, ids.data(), net.next_stream(), opt, "bench");
  }
}

/// Arithmetic of the products of one training step on a device engine (every input at every
/// step: the device does not skip zeros). Spiking: each layer's forward and weight gradient,
/// and the gradient passed down from each layer above the first, layer l >= 2 over T-1 steps.
/// Dense: 3 x its multiply-adds per sample, 2 FLOP each.
template <class Net>
double device_step_flops(const Net& net, const Workload& w) {
  if constexpr (requires { net.time_steps(); }) {
    double flops = 0;
    for (nmsnn::Index l = 0; l < net.num_layers(); ++l) {
      const double n = double(net.layer(l).outputs()), in = double(net.layer(l).inputs());
      const double cols = double((l == 0 ? w.T : w.T - 1) * w.batch);
      flops += 2 * n * in * cols * (l == 0 ? 2 : 3);
    }
    return flops;
  } else {
    return 2.0 * 3.0 * double(net.macs_per_sample()) * double(w.batch);
  }
}

/// Prints the profile of K training steps on a device engine (see the top of this file).
template <class Net, class Opt>
void device_profile(const std::string& name, const Workload& w, Net& net, Opt& opt, nmsnn::detail::device::KernelClock& clock,
                    const nmsnn::Matrix<float>& Xb, const nmsnn::Matrix<float>& Yb, const std::vector<std::uint32_t>& ids,
                    int steps) {
  clock.reset();
  clock.set_profiling(true);
  for (int i = 0; i < steps; ++i) train_step(net, opt, Xb, Yb, ids);
  clock.set_profiling(false);
  // Bytes the scans move per step: forward reads a_t and writes o_t (8 bytes per neuron,
  // sample and step); backward reads o_t and writes dL/du_t, and reads dL/do_t too below the
  // last layer (8 or 12 bytes). A dense network has no scans.
  double scan_bytes = 0;
  if constexpr (requires { net.time_steps(); })
    for (nmsnn::Index l = 0; l < net.num_layers(); ++l) {
      const double cells = double(net.layer(l).outputs()) * double(w.T * w.batch);
      scan_bytes += 8 * cells + (l + 1 == net.num_layers() ? 8 : 12) * cells;
    }
  const double gemm_flops = device_step_flops(net, w);
  std::printf("{\"workload\": \"%s\", \"device\": \"%s\", \"profiled_steps\": %d, \"kernels\": {", name.c_str(),
              device.c_str(), steps);
  double scan_s = 0, gemm_s = 0;
  bool first = true;
  for (const auto& [kernel, entry] : clock.kernel_seconds()) {
    std::printf("%s\"%s\": {\"sec_per_step\": %.6f, \"calls_per_step\": %.1f}", first ? "" : ", ", kernel.c_str(),
                entry.first / steps, double(entry.second) / steps);
    first = false;
    if (kernel == "forward_scan" || kernel == "backward_scan") scan_s += entry.first / steps;
    if (kernel == "gemm") gemm_s += entry.first / steps;
  }
  std::printf("}, \"scan_bytes_per_step\": %.0f, \"scan_gbps\": %.2f, \"gemm_flops_per_step\": %.0f, \"gemm_tflops\": %.4f}\n",
              scan_bytes, scan_s > 0 ? scan_bytes / scan_s * 1e-9 : 0.0, gemm_flops, gemm_s > 0 ? gemm_flops / gemm_s * 1e-12 : 0.0);
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class Net>
Net make_net(const Workload& w) {
  if constexpr (requires { Net::predict_stream; } && requires(Net n) { n.time_steps(); })
    return Net({.inputs = w.inputs, .outputs = w.outputs, .hidden = {w.hidden}, .time_steps = w.T,
                .readout = w.readout,
                .encoder = lif_workload(w) ? nmsnn::Encoding::bernoulli : nmsnn::Encoding::rate,
                .neuron = w.neuron == nmsnn::NeuronModel::leaky      ? nmsnn::NeuronOptions::leaky()
                          : w.neuron == nmsnn::NeuronModel::synaptic ? nmsnn::NeuronOptions::synaptic()
                                                                     : nmsnn::NeuronOptions{},
                .seed = 0});
  else  // the reference's MLP: Linear, ReLU, Linear
    return Net({.inputs = w.inputs, .outputs = w.outputs, .hidden = {w.hidden}, .batch_norm = false,
                .dropout = 0.0, .seed = 0});
}

#if defined(NMSNN_HAVE_MPI)
/// --mpi (under mpirun -np P): `batches` global batches of the workload trained by
/// fit_distributed on the P ranks after one warm-up batch. Rank 0 prints one JSON line: the
/// wall time per step, each part of it on rank 0 and the largest over the ranks (compute:
/// the groups' passes; communicate: the collectives, waits included; update: the optimiser),
/// the bytes all-reduced per step, and the all-reduce alone on a buffer of that size timed
/// apart (its bus bandwidth: 2 (P - 1) / P x bytes / time, the ring algorithm's traffic).
template <class Net, class Opt>
int run_mpi(const std::string& name, const Workload& w, Net& net, Opt& opt, int threads, int batches,
            nmsnn::CounterRng& rng) {
  nmsnn::MpiCommunicator comm;
  const Eigen::Index n = w.batch * (batches + 1), F = w.inputs;
  constexpr bool regression = std::is_same_v<typename Net::TaskT, nmsnn::Regression>;
  Eigen::MatrixXd X(n, F), y(n, regression ? w.outputs : 1);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < F; ++j)
      X(i, j) = lif_workload(w) ? 0.1 : name.rfind("mnist", 0) == 0 ? (rng.uniform() < 0.19 ? rng.uniform() : 0.0) : rng.normal();
    for (Eigen::Index k = 0; k < y.cols(); ++k)
      y(i, k) = std::strcmp(w.loss, "bce") == 0 ? double(rng.uniform() > 0.5)
                : std::strcmp(w.loss, "ce") == 0 ? double(rng.below(std::uint64_t(w.outputs)))
                                                 : rng.normal();
  }
  const Eigen::MatrixXd Xs = nmsnn::shard_rows(X, comm);
  nmsnn::DistributedStats warm, stats;
  const nmsnn::FitOptions fo{.epochs = 1, .batch_size = w.batch, .shuffle = false, .threads = threads,
                             .progress = nmsnn::Progress::off};
  {
    // One batch to warm up (first touch of the buffers).
    const Eigen::MatrixXd Xw = nmsnn::shard_rows(Eigen::MatrixXd(X.topRows(w.batch)), comm);
    const Eigen::MatrixXd yw = y.topRows(w.batch);
    nmsnn::fit_distributed(net, comm, Xw, yw, opt, fo, {.stats = &warm});
  }
  comm.barrier();
  const double t0 = now();
  nmsnn::fit_distributed(net, comm, Xs, y, opt, fo, {.stats = &stats});
  comm.barrier();
  const double wall = (now() - t0) / double(stats.steps);
  double worst[3] = {stats.compute_s, stats.communicate_s, stats.update_s};
  comm.max_in_place(worst);
  // The all-reduce alone, on the gradients' bytes.
  std::vector<std::int64_t> buf(stats.allreduce_bytes / std::size_t(stats.steps) / sizeof(std::int64_t), 1);
  const int reps = 20;
  comm.barrier();
  const double a0 = now();
  for (int r = 0; r < reps; ++r) comm.sum_in_place(buf);
  const double ar = (now() - a0) / reps;
  const double P = comm.size(), bytes = double(buf.size() * sizeof(std::int64_t));
  if (comm.rank() == 0)
    std::printf("{\"workload\": \"%s\", \"mpi_ranks\": %d, \"threads\": %d, \"batch\": %ld, \"group_size\": 16, \"steps\": %ld, "
                "\"sec_per_step\": %.5f, \"compute_s\": %.5f, \"compute_s_max\": %.5f, \"communicate_s\": %.5f, "
                "\"communicate_s_max\": %.5f, \"update_s\": %.5f, \"allreduce_bytes\": %.0f, \"exchange_bytes\": %.0f, "
                "\"allreduce_s\": %.6f, \"allreduce_bus_gbps\": %.3f}\n",
                name.c_str(), comm.size(), threads, long(w.batch), long(stats.steps), wall, stats.compute_s / double(stats.steps),
                worst[0] / double(stats.steps), stats.communicate_s / double(stats.steps), worst[1] / double(stats.steps),
                worst[2] / double(stats.steps), bytes, double(stats.exchanged_bytes) / double(stats.steps), ar,
                P > 1 ? 2.0 * (P - 1) / P * bytes / ar * 1e-9 : 0.0);
  return 0;
}
#endif

template <class Net, class Opt>
int run(const std::string& name, const Workload& w, Opt& opt, int threads, int batches, double min_seconds) {
  constexpr bool spiking = requires(Net n) { n.time_steps(); };
  Net net = make_net<Net>(w);
  if constexpr (spiking) {
    if (recompute == "always") net.set_recompute(Net::Recompute::always);
    else if (recompute == "never") net.set_recompute(Net::Recompute::never);
  }
  nmsnn::detail::device::KernelClock* clock = nullptr;  // the device engine's, if any
  if (device != "cpu") {
    namespace dev = nmsnn::detail::device;
    auto attach = [&](auto engine) {
      clock = &engine->device();
      net.set_engine(engine);
    };
    if (device == "emulate") {
      if constexpr (spiking) attach(std::make_shared<dev::Engine<Net, dev::HostDevice>>());
      else attach(std::make_shared<dev::DenseEngine<Net, dev::HostDevice>>());
    } else {
#if defined(NMSNN_BENCH_CUDA)
      if constexpr (spiking) attach(std::make_shared<nmsnn::cuda::Engine<Net>>());
      else attach(std::make_shared<nmsnn::cuda::DenseEngine<Net>>());
#else
      throw nmsnn::ValueError("--device cuda: this nmsnn-bench was built without CUDA (use nmsnn-bench-cuda, NMSNN_CUDA=ON)");
#endif
    }
  }
  [[maybe_unused]] const Eigen::Index T = spiking ? w.T : 1;
  // Synthetic data of the reference's distribution.
  nmsnn::CounterRng rng(0, nmsnn::RandomDomain::split, 1);
  if (mpi_mode) {
#if defined(NMSNN_HAVE_MPI)
    return run_mpi(name, w, net, opt, threads, batches, rng);
#else
    throw nmsnn::ValueError("--mpi: this nmsnn-bench was built without MPI (configure with -DNMSNN_MPI=ON)");
#endif
  }
  nmsnn::Matrix<float> Xb(w.inputs, w.batch);
  for (Eigen::Index i = 0; i < Xb.size(); ++i) {
    if (lif_workload(w)) {
      Xb.data()[i] = 0.1f;  // spike probability per input and step
    } else if (name.rfind("mnist", 0) == 0) {
      const double v = rng.uniform();
      Xb.data()[i] = float(rng.uniform() < 0.19 ? v : 0.0);
    } else {
      Xb.data()[i] = float(rng.normal());
    }
  }
  nmsnn::Matrix<float> Yb(std::strcmp(w.loss, "mse") == 0 ? w.outputs : 1, w.batch);
  for (Eigen::Index b = 0; b < w.batch; ++b) {
    if (std::strcmp(w.loss, "bce") == 0) Yb(0, b) = rng.uniform() > 0.5 ? 1.f : 0.f;
    else if (std::strcmp(w.loss, "ce") == 0) Yb(0, b) = float(rng.below(std::uint64_t(w.outputs)));
    else Yb(0, b) = float(rng.normal());
  }
  std::vector<std::uint32_t> ids(std::size_t(w.batch));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::uint32_t(i);

  // K timed steps after one warm-up, and more while the timed ones add up to less than
  // min_seconds: a fast step's median then spans that much of the machine's time (as the
  // reference's K steps of 30 ms and more do), not a few milliseconds that one busy moment
  // of a shared machine can fill.
  std::vector<double> times;
  double timed = 0;
  for (int i = 0; i <= batches || (timed < min_seconds && i < 1000000); ++i) {
    const double t0 = now();
    train_step(net, opt, Xb, Yb, ids);
    if (i > 0) {
      times.push_back(now() - t0);
      timed += times.back();
    }
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  if constexpr (spiking) {
    if (clock) {
      const double flops = device_step_flops(net, w);
      std::printf("{\"workload\": \"%s\", \"device\": \"%s\", \"update\": \"%s\", \"threads\": %d, \"batch\": %ld, \"T\": %ld, "
                  "\"sec_per_batch\": %.6f, \"sample_steps_per_s\": %.1f, \"peak_rss_mib\": %.1f, \"tflops\": %.3f, "
                  "\"timed_steps\": %zu}\n",
                  name.c_str(), device.c_str(), host_update || !clock ? "host" : "device", threads, long(w.batch), long(w.T), med, double(w.batch * w.T) / med,
                  double(ru.ru_maxrss) / 1024.0, flops / med * 1e-12, times.size());
      device_profile(name, w, net, opt, *clock, Xb, Yb, ids, batches);
      return 0;
    }
  }
  if constexpr (!spiking) {
    const double flops = device_step_flops(net, w);  // the CPU's dense products too
    std::printf("{\"workload\": \"%s\", \"device\": \"%s\", \"update\": \"%s\", \"threads\": %d, \"batch\": %ld, \"T\": 1, "
                "\"sec_per_batch\": %.6f, \"sample_steps_per_s\": %.1f, \"peak_rss_mib\": %.1f, \"gflops\": %.2f, "
                "\"timed_steps\": %zu}\n",
                name.c_str(), device.c_str(), host_update || !clock ? "host" : "device", threads, long(w.batch), med, double(w.batch) / med, double(ru.ru_maxrss) / 1024.0,
                flops / med * 1e-9, times.size());
    if (clock) device_profile(name, w, net, opt, *clock, Xb, Yb, ids, batches);
    return 0;
  } else {

  // Share of a step spent drawing masks: every mask the step draws, twice (forward and
  // backward, unless reused), on the path the engine takes (all features, or each sample's non-zeros).
  const bool sparse = net.use_sparse_input(Xb);
  double nnz = double((Xb.array() != 0.0f).count());
  // Timed like the step: one warm-up round (first touch of the buffers), then the median of
  // K rounds.
  double gen = 0;
  {
    nmsnn::detail::SparseColumn<float> col;
    nmsnn::Matrix<float> Sc;
    const Eigen::Index chunk = net.input_chunk_steps(w.batch);
    nmsnn::Matrix<float> S(w.inputs, chunk * w.batch);
    // Backward reuses the forward's draws when all T steps fit in one chunk (dense path).
    const int passes = !sparse && chunk >= w.T ? 1 : 2;
    std::vector<double> gt;
    for (int round = 0; round <= batches; ++round) {
      const double t0 = now();
      for (int pass = 0; pass < passes; ++pass) {
        if (sparse) {
          for (Eigen::Index b = 0; b < w.batch; ++b) {
            nmsnn::detail::nonzeros(Xb.data() + b * w.inputs, w.inputs, col);
            const auto k = Eigen::Index(col.features.size());
            const auto sc = nmsnn::detail::sparse_chunk_steps(k, w.T);
            for (Eigen::Index s0 = 0; s0 < w.T; s0 += sc) {
              const auto steps = std::min(sc, w.T - s0);
              Sc.resize(k, steps);
              net.encoder().encode_sample(col.values.data(), col.features.data(), k, ids[std::size_t(b)],
                                          {0, 7}, s0, steps, Sc.data(), k);
            }
          }
        } else {
          for (Eigen::Index s0 = 0; s0 < w.T; s0 += chunk)
            net.encoder().encode(Xb, ids.data(), {0, 7}, s0, std::min(chunk, w.T - s0), S);
        }
      }
      if (round > 0) gt.push_back(now() - t0);
    }
    std::sort(gt.begin(), gt.end());
    gen = gt[gt.size() / 2] / med;
  }
  // Density of the hidden layer's outputs (spikes) on one forward pass.
  net.forward_train(Xb, ids.data(), {0, 9});
  const double density = net.activity(0);
  // Multiply-adds of one step: layer 1 forward and dW (2 x H x nnz x T; nnz = F B on the
  // dense path), layer 2 forward, dW and input gradient (3 x K H (T-1) B).
  // (One layer: its forward and weight-gradient products.)
  const Eigen::Index n1 = w.hidden > 0 ? w.hidden : w.outputs;
  const double layer1 = 2.0 * double(n1) * (sparse ? nnz : double(w.inputs * w.batch)) * double(w.T);
  const double layer1_dense = 2.0 * double(n1 * w.inputs * w.T * w.batch);
  const double rest = w.hidden > 0 ? 3.0 * double(w.outputs * w.hidden * (w.T - 1) * w.batch) : 0.0;
  const double flops = 2.0 * (layer1 + rest), dense_flops = 2.0 * (layer1_dense + rest);
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"workload\": \"%s\", \"device\": \"cpu\", \"threads\": %d, \"batch\": %ld, \"T\": %ld, "
      "\"sec_per_batch\": %.5f, \"sample_steps_per_s\": %.1f, \"peak_rss_mib\": %.1f, "
      "\"gflops\": %.2f, \"dense_equivalent_gflops\": %.2f, \"input_density\": %.4f, "
      "\"sparse_input_path\": %s, \"density\": %.4f, \"generator_share\": %.3f, \"timed_steps\": %zu, "
      "\"recompute_segment\": %ld}\n",
      name.c_str(), threads, long(w.batch), long(w.T), med, double(w.batch * w.T) / med,
      double(ru.ru_maxrss) / 1024.0, flops / med * 1e-9, dense_flops / med * 1e-9,
      nnz / double(Xb.size()), sparse ? "true" : "false", density, gen, times.size(),
      long(net.recompute_segment_steps(w.batch)));
  return 0;
  }
}

}  // namespace

int main(int argc, char** argv) try {
#if defined(NMSNN_HAVE_MPI)
  std::optional<nmsnn::MpiSession> mpi_session;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--mpi") == 0 && !mpi_session) mpi_session.emplace(argc, argv);
#endif
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    std::cerr << "usage: nmsnn-bench WORKLOAD [--threads N] [--batches K] [--min-time S] [--chunk-bytes N] [--host-update]\n"
                 "                   [--device cpu|cuda|emulate] [--T STEPS] [--recompute automatic|always|never] [--mpi]\n"
                 "WORKLOAD: binary, binary_noisy, iris, mnist, regression, each also with _mlp;\n"
                 "          lif_512, lif_4096, synaptic_512 (one LIF layer; no _mlp);\n"
                 "          gemm (Eigen's own large product, for reference)\n";
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  int threads = 1, batches = 5;
  long T_override = 0;
  double min_seconds = 0.25;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = std::stoi(argv[++i]);
    else if (std::strcmp(argv[i], "--batches") == 0 && i + 1 < argc) batches = std::stoi(argv[++i]);
    else if (std::strcmp(argv[i], "--min-time") == 0 && i + 1 < argc) min_seconds = std::stod(argv[++i]);
    else if (std::strcmp(argv[i], "--chunk-bytes") == 0 && i + 1 < argc)  // nmsnn::set_engine_chunk_bytes
      nmsnn::set_engine_chunk_bytes(std::stoul(argv[++i]));
    else if (std::strcmp(argv[i], "--host-update") == 0) host_update = true;
    else if (std::strcmp(argv[i], "--mpi") == 0) mpi_mode = true;
    else if (std::strcmp(argv[i], "--T") == 0 && i + 1 < argc) T_override = std::stol(argv[++i]);
    else if (std::strcmp(argv[i], "--recompute") == 0 && i + 1 < argc) recompute = argv[++i];
    else if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      device = argv[++i];
      if (device != "cpu" && device != "cuda" && device != "emulate") {
        std::cerr << "nmsnn-bench: --device must be cpu, cuda or emulate\n";
        return 2;
      }
    } else {
      std::cerr << "nmsnn-bench: unknown argument '" << argv[i] << "'\n";
      return 2;
    }
  }
  if (threads < 1 || batches < 1) {
    std::cerr << "nmsnn-bench: --threads and --batches must be >= 1\n";
    return 2;
  }
  if (!(min_seconds >= 0 && min_seconds <= 3600)) {
    std::cerr << "nmsnn-bench: --min-time must be between 0 and 3600 seconds\n";
    return 2;
  }
  if (name == "gemm") {
    nmsnn::set_num_threads(threads);
    const Eigen::Index n = 2048;
    const nmsnn::Matrix<float> A = nmsnn::Matrix<float>::Random(n, n), B = nmsnn::Matrix<float>::Random(n, n);
    nmsnn::Matrix<float> C(n, n);
    std::vector<double> times;
    for (int i = 0; i <= batches; ++i) {
      const double t0 = now();
      if (threads == 1)
        C.noalias() = A * B;
      else
        nmsnn::detail::gemm_nn<float>(nmsnn::detail::map(C.data(), n, n), nmsnn::detail::cmap(A.data(), n, n),
                                      nmsnn::detail::cmap(B.data(), n, n), false);
      if (i > 0) times.push_back(now() - t0);
    }
    std::sort(times.begin(), times.end());
    const double med = times[times.size() / 2];
    std::printf("{\"workload\": \"gemm\", \"threads\": %d, \"n\": %ld, \"sec\": %.5f, \"gflops\": %.2f, \"check\": %.3f}\n",
                threads, long(n), med, 2.0 * double(n) * double(n) * double(n) / med * 1e-9, double(C(7, 3)));
    return 0;
  }
  const bool mlp = name.size() > 4 && name.compare(name.size() - 4, 4, "_mlp") == 0;
  const auto it = workloads.find(mlp ? name.substr(0, name.size() - 4) : name);
  if (it == workloads.end()) {
    std::cerr << "nmsnn-bench: unknown workload '" << name << "'\n";
    return 2;
  }
  nmsnn::set_num_threads(threads);
  Workload w = it->second;
  if (T_override > 0) w.T = T_override;
  const std::string base = it->first;
  using namespace nmsnn;
  if (mlp && lif_workload(w)) {
    std::cerr << "nmsnn-bench: " << base << " has no _mlp variant\n";
    return 2;
  }
  if (std::strcmp(w.optimiser, "adam") == 0) {
    Adam opt({.learning_rate = 1e-3});
    if (std::strcmp(w.loss, "mse") == 0) return run<SpikingNetwork<Regression>>(name, w, opt, threads, batches, min_seconds);
    if (std::strcmp(w.loss, "bce") == 0)
      return mlp ? run<DenseNetwork<BinaryClassification>>(name, w, opt, threads, batches, min_seconds)
                 : run<SpikingNetwork<BinaryClassification>>(name, w, opt, threads, batches, min_seconds);
    return mlp ? run<DenseNetwork<MulticlassClassification>>(name, w, opt, threads, batches, min_seconds)
               : run<SpikingNetwork<MulticlassClassification>>(name, w, opt, threads, batches, min_seconds);
  }
  Sgd opt({.learning_rate = base == "mnist" ? 0.1 : 1e-3, .momentum = base == "mnist" ? 0.5 : 0.0});
  if (std::strcmp(w.loss, "mse") == 0)
    return mlp ? run<DenseNetwork<Regression>>(name, w, opt, threads, batches, min_seconds)
               : run<SpikingNetwork<Regression>>(name, w, opt, threads, batches, min_seconds);
  return mlp ? run<DenseNetwork<MulticlassClassification>>(name, w, opt, threads, batches, min_seconds)
             : run<SpikingNetwork<MulticlassClassification>>(name, w, opt, threads, batches, min_seconds);
} catch (const std::exception& e) {
  std::cerr << "nmsnn-bench: " << e.what() << "\n";
  return 2;
}
