// The distributed fit (nmsnn/distributed/communicator.hpp) without MPI: P ranks as P threads
// (thread_communicator.hpp). The model must be the same bits for every number of ranks; the
// groups' exact sum must be the whole batch's gradient; checkpoints resume to the
// uninterrupted model; a rank's failure must reach every rank.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "test_helpers.hpp"
#include "thread_communicator.hpp"

using namespace nmsnn;
using nmsnn_test::ThreadWorld;

namespace {

/// Every parameter's bits and the history's losses, for comparing models bit for bit.
struct Outcome {
  std::vector<double> weights, losses, val_losses;
  std::vector<double> running;
  bool operator==(const Outcome&) const = default;
};

template <class Net>
Outcome outcome_of(Net& net, const History& h) {
  Outcome o;
  for (const auto& p : net.parameters())
    for (Index i = 0; i < p.size; ++i) o.weights.push_back(double(p.value[i]));
  o.losses = h.loss;
  o.val_losses = h.val_loss;
  o.running = detail::running_statistics(net);
  return o;
}

struct Data {
  Eigen::MatrixXd X;
  Eigen::VectorXd y;
};

Data classification(Index classes, Index n = 150) {
  auto d = make_classification({.samples = n, .features = 6, .informative = 3, .redundant = 1, .classes = classes, .seed = 7});
  return {d.X, d.y};
}

/// Trains `make()`'s network on P thread-ranks; rank 0's outcome (every rank's must agree).
template <class Make, class Opt>
Outcome train_on(int P, const Make& make, const Data& d, Opt opt0, const FitOptions& fo, const DistributedOptions& dopt = {}) {
  std::vector<Outcome> out(static_cast<std::size_t>(P));
  ThreadWorld world(P);
  world.run([&](int r, Communicator& comm) {
    auto net = make();
    Opt opt = opt0;
    const Eigen::MatrixXd Xs = shard_rows(d.X, comm);
    const History h = fit_distributed(net, comm, Xs, d.y, opt, fo, dopt);
    out[std::size_t(r)] = outcome_of(net, h);
  });
  for (int r = 1; r < P; ++r) REQUIRE(out[std::size_t(r)] == out[0]);
  return out[0];
}

template <class Make, class Opt>
void same_for_every_rank_count(const Make& make, const Data& d, Opt opt, FitOptions fo) {
  fo.progress = Progress::off;
  fo.threads = 1;
  const Outcome one = train_on(1, make, d, opt, fo);
  REQUIRE(one.losses.size() > 0);
  REQUIRE(std::isfinite(one.losses.back()));
  for (int P : {2, 3, 4}) {
    INFO("ranks " << P);
    CHECK(train_on(P, make, d, opt, fo) == one);
  }
  // The comparison sees a change of summation order: other groups give other bits.
  DistributedOptions groups_of_8;
  groups_of_8.group_size = 8;
  const Outcome other_groups = train_on(2, make, d, opt, fo, groups_of_8);
  CHECK(other_groups.weights != one.weights);
  // The serial communicator, with 1 and 2 threads: the same model again.
  for (int threads : {1, 2}) {
    INFO("serial, threads " << threads);
    auto net = make();
    Opt o = opt;
    SerialCommunicator serial;
    fo.threads = threads;
    const History h = fit_distributed(net, serial, d.X, d.y, o, fo);
    CHECK(outcome_of(net, h) == one);
  }
  set_num_threads(0);
}

}  // namespace

TEST_CASE("distributed fit: the same spiking model on 1 to 4 ranks and 1 or 2 threads") {
  const Data d = classification(3);
  auto make = [] {
    return SpikingClassifier<double>({.inputs = 6, .outputs = 3, .hidden = {12}, .time_steps = 6, .seed = 3});
  };
  same_for_every_rank_count(make, d, Adam({.learning_rate = 5e-3}),
                            {.epochs = 3, .batch_size = 40, .validation_fraction = 0.2, .patience = 2});
}

TEST_CASE("distributed fit: binary spiking network, float, SGD with momentum and class weights") {
  const Data d = classification(2);
  auto make = [] { return SpikingBinaryClassifier<float>({.inputs = 6, .outputs = 1, .hidden = {10}, .time_steps = 5, .seed = 4}); };
  same_for_every_rank_count(make, d, Sgd({.learning_rate = 1e-2, .momentum = 0.9}),
                            {.epochs = 2, .batch_size = 50, .class_weights = {1.0, 2.5}});
}

TEST_CASE("distributed fit: LIF regression network with learnt decays") {
  auto r = make_regression({.samples = 120, .features = 5, .informative = 4, .noise = 1.0, .seed = 2});
  const Data d{r.X / 2, r.y};
  auto make = [] {
    SpikingOptions o{.inputs = 5, .outputs = 1, .hidden = {8}, .time_steps = 6, .seed = 5};
    o.neuron = NeuronOptions::leaky(0.85);
    o.neuron.learn_decay = true;
    o.output_neuron = NeuronOptions::li(0.9);
    o.readout = Readout::mean;
    return SpikingRegressor<double>(o);
  };
  same_for_every_rank_count(make, d, Adam({.learning_rate = 1e-2}), {.epochs = 2, .batch_size = 32, .validation_fraction = 0.25});
}

TEST_CASE("distributed fit: dense network with batch norm (statistics combined in group order)") {
  const Data d = classification(2, 130);
  auto make = [] { return DenseBinaryClassifier<double>({.inputs = 6, .outputs = 1, .hidden = {16, 8}, .batch_norm = true, .seed = 6}); };
  same_for_every_rank_count(make, d, Adam({.learning_rate = 1e-2}), {.epochs = 3, .batch_size = 48});
}

TEST_CASE("distributed fit: the groups' exact sum is the whole batch's gradient") {
  const Data d = classification(3, 96);
  auto make = [] { return SpikingClassifier<double>({.inputs = 6, .outputs = 3, .hidden = {12}, .time_steps = 6, .seed = 9}); };
  // Plain gradients of the batch of every row (draws keyed by ids 0..n-1 and stream 0).
  auto ref = make();
  ref.compute_gradients(d.X, d.y);
  std::vector<double> g, w0;
  for (const auto& p : ref.parameters())
    for (Index i = 0; i < p.size; ++i) g.push_back(p.gradient[i]), w0.push_back(p.value[i]);
  // One distributed SGD step with learning rate 1 on the same batch (3 ranks, groups of 16):
  // the weights move by exactly minus the summed gradient.
  std::vector<double> w1;
  ThreadWorld world(3);
  world.run([&](int r, Communicator& comm) {
    auto net = make();
    Sgd opt({.learning_rate = 1.0});
    fit_distributed(net, comm, shard_rows(d.X, comm), d.y, opt,
                    {.epochs = 1, .batch_size = 96, .shuffle = false, .threads = 1, .progress = Progress::off});
    if (r == 0)
      for (const auto& p : net.parameters())
        for (Index i = 0; i < p.size; ++i) w1.push_back(p.value[i]);
  });
  set_num_threads(0);
  REQUIRE(w1.size() == g.size());
  double worst = 0, gmax = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    worst = std::max(worst, std::abs((w0[i] - w1[i]) - g[i]));
    gmax = std::max(gmax, std::abs(g[i]));
  }
  REQUIRE(gmax > 1e-3);
  CHECK(worst <= 1e-12 * gmax);
}

TEST_CASE("distributed fit: the readout across ranks is predict's") {
  const Data d = classification(3, 600);
  SpikingClassifier<double> net({.inputs = 6, .outputs = 3, .hidden = {12}, .time_steps = 6, .seed = 1});
  const Eigen::MatrixXd want = net.decision_function(d.X).transpose();
  std::vector<Index> rows(600);
  std::iota(rows.begin(), rows.end(), Index(0));
  Eigen::MatrixXd got;
  ThreadWorld world(3);
  world.run([&](int r, Communicator& comm) {
    auto copy = net;
    const auto R = distributed_readout(copy, comm, shard_rows(d.X, comm), rows);
    if (r == 2) got = R.template cast<double>();
  });
  REQUIRE(got.rows() == want.rows());
  CHECK((got.array() == want.array()).all());
}

TEST_CASE("distributed fit: a checkpoint resumes to the uninterrupted model, on another number of ranks") {
  const Data d = classification(3);
  auto make = [] { return SpikingClassifier<double>({.inputs = 6, .outputs = 3, .hidden = {12}, .time_steps = 5, .seed = 8}); };
  const std::string path = "ckpt_" + std::to_string(::getpid()) + ".safetensors";
  FitOptions fo{.epochs = 6, .batch_size = 32, .threads = 1, .validation_fraction = 0.2, .patience = 10, .progress = Progress::off};
  const Outcome whole = train_on(1, make, d, Adam({.learning_rate = 1e-2}), fo);
  // Interrupted after epoch 3 on 2 ranks: the checkpoint of epoch 2 stays.
  FitOptions cut = fo;
  cut.callback = [](const EpochRecord& r) { return r.epoch < 3; };
  train_on(2, make, d, Adam({.learning_rate = 1e-2}), cut, {.checkpoint_every = 2, .checkpoint = path});
  // Resumed on 3 ranks.
  const Outcome resumed = train_on(3, make, d, Adam({.learning_rate = 1e-2}), fo, {.checkpoint = path, .resume = true});
  CHECK(resumed == whole);
  // A checkpoint of other settings is refused, naming the setting.
  FitOptions other = fo;
  other.batch_size = 16;
  auto net = make();
  Adam opt;
  SerialCommunicator serial;
  const std::string msg = test::error_of([&] { fit_distributed(net, serial, d.X, d.y, opt, other, {.checkpoint = path, .resume = true}); });
  CHECK_THAT(msg, Catch::Contains("batch_size"));
  std::remove(path.c_str());
  set_num_threads(0);
}

TEST_CASE("distributed fit: a rank's bad shard stops every rank with its error") {
  Data d = classification(2, 90);
  d.X(4, 2) = std::numeric_limits<double>::quiet_NaN();  // row 4: rank 1's of 3
  std::vector<std::string> messages(3);
  std::vector<int> valueerr(3, 0);
  ThreadWorld world(3);
  world.run([&](int r, Communicator& comm) {
    SpikingBinaryClassifier<double> net({.inputs = 6, .outputs = 1, .hidden = {8}, .time_steps = 4, .seed = 1});
    Adam opt;
    try {
      fit_distributed(net, comm, shard_rows(d.X, comm), d.y, opt, {.epochs = 1, .threads = 1, .progress = Progress::off});
    } catch (const ValueError& e) {
      messages[std::size_t(r)] = e.what();
      valueerr[std::size_t(r)] = 1;
    }
  });
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r << ": " << messages[std::size_t(r)]);
    CHECK(valueerr[std::size_t(r)] == 1);
    CHECK_THAT(messages[std::size_t(r)], Catch::Contains("rank 1 of 3") && Catch::Contains("must be finite"));
  }
  // A shard of the wrong size: a ShapeError on every rank, naming the rank.
  d.X(4, 2) = 0;
  std::vector<int> shape(2, 0);
  ThreadWorld two(2);
  two.run([&](int r, Communicator& comm) {
    SpikingBinaryClassifier<double> net({.inputs = 6, .outputs = 1, .hidden = {8}, .time_steps = 4, .seed = 1});
    Adam opt;
    Eigen::MatrixXd Xs = shard_rows(d.X, comm);
    if (r == 1) Xs = Xs.topRows(Xs.rows() - 1).eval();
    try {
      fit_distributed(net, comm, Xs, d.y, opt, {.epochs = 1, .threads = 1, .progress = Progress::off});
    } catch (const ShapeError& e) {
      shape[std::size_t(r)] = std::string(e.what()).find("rank 1 of 2") != std::string::npos;
    }
  });
  CHECK(shape[0] == 1);
  CHECK(shape[1] == 1);
  set_num_threads(0);
}

TEST_CASE("read_csv: a shard of the rows (row_stride, row_offset)") {
  const std::string path = "shard_" + std::to_string(::getpid()) + ".csv";
  {
    std::ofstream f(path);
    f << "a,b,y\n";
    for (int i = 0; i < 10; ++i) f << i << "," << 10 * i << "," << (i % 2) << "\n" << (i == 4 ? "\n" : "");
  }
  const Dataset d = read_csv(path, {.row_stride = 3, .row_offset = 1});
  CHECK(d.total_rows == 10);
  REQUIRE(d.X.rows() == 3);
  CHECK(d.X(0, 0) == 1);
  CHECK(d.X(1, 0) == 4);
  CHECK(d.X(2, 1) == 70);
  CHECK(d.y(2) == 1);
  CHECK(read_csv(path).total_rows == 10);
  CHECK_THROWS_AS(read_csv(path, {.row_stride = 2, .row_offset = 2}), ValueError);
  std::remove(path.c_str());
}

TEST_CASE("read_idx: a shard of the records, the others skipped") {
  const std::string path = "shard_" + std::to_string(::getpid()) + ".idx";
  {
    std::ofstream f(path, std::ios::binary);
    const unsigned char head[] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 2};
    f.write(reinterpret_cast<const char*>(head), sizeof head);
    for (int i = 0; i < 20; ++i) f.put(char(i * 10));
  }
  const Eigen::MatrixXd all = read_idx_images(path), odd = read_idx_images(path, 2, 1);
  REQUIRE(all.rows() == 5);
  REQUIRE(odd.rows() == 2);
  CHECK(odd.row(0) == all.row(1));
  CHECK(odd.row(1) == all.row(3));
  CHECK(read_idx(path, 3, 2).total_records == 5);
  CHECK(read_idx(path, 3, 2).dims[0] == 1);
  CHECK_THROWS_AS(read_idx(path, 2, 5), ValueError);
  std::remove(path.c_str());
}
