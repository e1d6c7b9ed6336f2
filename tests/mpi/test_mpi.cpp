// tests/mpi/test_mpi.cpp — the distributed fit on real MPI ranks, driven by run_mpi_tests.sh
// under `mpirun -np P`:
//   test_mpi digest [--threads T] [--serial]   rank 0 prints one line per training setting: its
//                                              name and a hash of the trained weights' bits and
//                                              of the losses (--serial: SerialCommunicator, no
//                                              ranks); the script compares them across P and T
//   test_mpi fault bad-shard|memory|kill|throw rank 1 fails in the given way; the job must stop
//   test_mpi resume PATH                       an interrupted fit resumed from its checkpoint
//                                              equals the uninterrupted one (prints "resume ok")
#include <nmsnn/distributed/mpi.hpp>
#include <nmsnn/nmsnn.hpp>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

using namespace nmsnn;

namespace {

std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

template <class Net>
std::uint64_t digest(Net& net, const History& h) {
  std::uint64_t x = 1469598103934665603ull;
  for (const auto& p : net.parameters()) x = fnv1a(p.value, std::size_t(p.size) * sizeof(*p.value), x);
  x = fnv1a(h.loss.data(), h.loss.size() * sizeof(double), x);
  x = fnv1a(h.val_loss.data(), h.val_loss.size() * sizeof(double), x);
  const auto stats = detail::running_statistics(net);
  return fnv1a(stats.data(), stats.size() * sizeof(double), x);
}

struct Data {
  Eigen::MatrixXd X;
  Eigen::VectorXd y;
};

Data classification(Index classes, Index n, std::uint64_t seed) {
  auto d = make_classification({.samples = n, .features = 8, .informative = 4, .redundant = 1, .classes = classes, .seed = seed});
  return {d.X, d.y};
}

template <class Net, class Opt>
void run_setting(const char* name, Communicator& comm, Net net, const Data& d, Opt opt, const FitOptions& fo) {
  const History h = fit_distributed(net, comm, shard_rows(d.X, comm), d.y, opt, fo);
  if (comm.rank() == 0) std::printf("%-28s %016llx epochs %zu loss %.6f\n", name, (unsigned long long)digest(net, h), h.loss.size(), h.loss.back());
}

void digests(Communicator& comm, int threads) {
  FitOptions fo{.epochs = 3, .batch_size = 64, .threads = threads, .progress = Progress::off};
  const Data multi = classification(4, 400, 1), binary = classification(2, 300, 2);
  auto reg = make_regression({.samples = 300, .features = 8, .informative = 6, .noise = 2.0, .seed = 3});
  const Data regression{reg.X / 2, reg.y};
  FitOptions val = fo;
  val.validation_fraction = 0.2;
  val.patience = 2;
  run_setting("spiking multiclass adam", comm,
              SpikingClassifier<double>({.inputs = 8, .outputs = 4, .hidden = {32}, .time_steps = 8, .seed = 1}), multi,
              Adam({.learning_rate = 5e-3}), val);
  run_setting("spiking multiclass float", comm,
              SpikingClassifier<float>({.inputs = 8, .outputs = 4, .hidden = {32, 16}, .time_steps = 8, .seed = 2}), multi,
              Sgd({.learning_rate = 2e-2, .momentum = 0.9}), fo);
  FitOptions weighted = fo;
  weighted.class_weights = {1.0, 3.0};
  run_setting("spiking binary weighted", comm,
              SpikingBinaryClassifier<double>({.inputs = 8, .outputs = 1, .hidden = {24}, .time_steps = 6, .seed = 3}), binary,
              Adam({.learning_rate = 1e-2}), weighted);
  SpikingOptions lif{.inputs = 8, .outputs = 1, .hidden = {24}, .time_steps = 8, .seed = 4};
  lif.neuron = NeuronOptions::synaptic(0.9, 0.8);
  lif.neuron.learn_threshold = true;
  lif.output_neuron = NeuronOptions::li(0.9);
  lif.readout = Readout::mean;
  run_setting("spiking regression synaptic", comm, SpikingRegressor<double>(lif), regression, Adam({.learning_rate = 1e-2}), val);
  run_setting("dense binary batch norm", comm,
              DenseBinaryClassifier<double>({.inputs = 8, .outputs = 1, .hidden = {32, 16}, .batch_norm = true, .seed = 5}), binary,
              Adam({.learning_rate = 1e-2}), val);
  run_setting("dense regression sgd", comm, DenseRegressor<float>({.inputs = 8, .outputs = 1, .hidden = {32}, .seed = 6}),
              regression, Sgd({.learning_rate = 1e-2, .momentum = 0.9}), fo);
}

int fault(Communicator& comm, const std::string& kind) {
  Data d = classification(2, 400, 4);
  const bool me = comm.rank() == 1 % comm.size();
  if (kind == "bad-shard" && me) d.X(1, 3) = std::numeric_limits<double>::infinity();
  FitOptions fo{.epochs = 50, .batch_size = 32, .threads = 1, .progress = Progress::off};
  if (kind == "kill" || kind == "throw")
    fo.callback = [&](const EpochRecord& r) {
      if (r.epoch == 2 && me) {
        if (kind == "kill") std::raise(SIGKILL);
        throw std::runtime_error("a failure of the program's own code on this rank");
      }
      return true;
    };
  SpikingBinaryClassifier<double> net({.inputs = 8, .outputs = 1, .hidden = {32}, .time_steps = 8, .seed = 1});
  Adam opt;
  const Eigen::MatrixXd Xs = shard_rows(d.X, comm);
  if (kind == "memory" && me) set_memory_limit(4096);  // this rank's machine has no memory to spare
  fit_distributed(net, comm, Xs, d.y, opt, fo);
  return 0;
}

int resume(Communicator& comm, const std::string& path) {
  const Data d = classification(3, 240, 5);
  auto make = [] { return SpikingClassifier<double>({.inputs = 8, .outputs = 3, .hidden = {16}, .time_steps = 6, .seed = 9}); };
  FitOptions fo{.epochs = 5, .batch_size = 40, .threads = 1, .validation_fraction = 0.2, .progress = Progress::off};
  auto whole = make();
  Adam a1({.learning_rate = 1e-2});
  const History hw = fit_distributed(whole, comm, shard_rows(d.X, comm), d.y, a1, fo);
  FitOptions cut = fo;
  cut.callback = [](const EpochRecord& r) { return r.epoch < 4; };
  auto first = make();
  Adam a2({.learning_rate = 1e-2});
  fit_distributed(first, comm, shard_rows(d.X, comm), d.y, a2, cut, {.checkpoint_every = 3, .checkpoint = path});
  auto second = make();
  Adam a3({.learning_rate = 1e-2});
  const History hr = fit_distributed(second, comm, shard_rows(d.X, comm), d.y, a3, fo, {.checkpoint = path, .resume = true});
  const bool same = digest(whole, hw) == digest(second, hr);
  if (comm.rank() == 0) std::printf(same ? "resume ok\n" : "resume MISMATCH\n");
  return same ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession session(argc, argv);
  MpiCommunicator mpi;
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "digest") {
      int threads = 1;
      bool serial = false;
      for (int i = 2; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
        if (!std::strcmp(argv[i], "--serial")) serial = true;
      }
      SerialCommunicator one;
      digests(serial ? static_cast<Communicator&>(one) : mpi, threads);
      return 0;
    }
    if (mode == "fault" && argc > 2) return fault(mpi, argv[2]);
    if (mode == "resume" && argc > 2) return resume(mpi, argv[2]);
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d stopped: %s\n", mpi.rank(), e.what());
    return 3;
  } catch (const std::exception& e) {
    // Not agreed with the other ranks (the program's own code): end the job.
    MpiSession::abort(std::string("unexpected error: ") + e.what());
  }
  std::fprintf(stderr, "usage: test_mpi digest [--threads T] [--serial] | fault KIND | resume PATH\n");
  return 2;
}
