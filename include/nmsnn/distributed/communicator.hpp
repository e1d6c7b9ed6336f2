// nmsnn/distributed/communicator.hpp — data-parallel training over any number of processes
// (ranks), giving the same model for every number of ranks and threads.
//
// The idea: every global mini-batch is cut into groups of DistributedOptions::group_size
// samples by position, whatever the number of ranks; group u is computed by rank u % P, which
// first receives the rows it needs from the ranks holding them (rank r holds the data rows
// i with i % P == r). A group's gradient therefore does not depend on P. The groups' gradients
// are summed exactly: each parameter tensor's gradients are scaled by a power of two fixed by
// the largest of them (over every group, agreed by a max-reduction) and rounded to 64-bit
// integers, whose sum is associative, so one integer all-reduce gives every rank the same bits
// in any order. Losses, readouts and batch-norm statistics are gathered and combined in group
// order. Every rank then takes the same optimiser step.
//
// Faults: code that may fail on one rank only (its shard of the data, its memory) runs inside
// a collective agreement; when a rank fails, every rank throws the same class of error naming
// that rank and its message. A rank that dies (killed, out of memory) is ended by the MPI
// runtime with the others.
//
// This header needs no MPI: SerialCommunicator runs the same algorithm in one process (and
// gives the same model as MpiCommunicator on any number of ranks); nmsnn/distributed/mpi.hpp
// (CMake option NMSNN_MPI) adds MpiCommunicator.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/io/files.hpp"
#include "nmsnn/io/model_file.hpp"
#include "nmsnn/network/dense_network.hpp"
#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/preprocessing/preprocessing.hpp"
#include "nmsnn/train/trainer.hpp"

namespace nmsnn {

/// The collective operations a distributed fit needs. Every rank calls each operation in the
/// same order (MPI's rule for collectives).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Every rank's bytes, in rank order.
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  /// send[d] goes to rank d; returns what each rank sent to this one, in rank order.
  virtual std::vector<std::string> all_to_all(const std::vector<std::string>& send) = 0;
  /// Element-wise maximum over the ranks, in place.
  virtual void max_in_place(std::span<double> values) = 0;
  /// Element-wise sum over the ranks, in place (exact: integers).
  virtual void sum_in_place(std::span<std::int64_t> values) = 0;
  /// Waits for every rank.
  virtual void barrier() = 0;

  /// What failed on this rank, for agree().
  struct Failure {
    enum Kind : int { none = 0, error, shape, value, numerical, io, resource, other } kind = none;
    std::string message;
  };
  /// Every rank calls it after work that may fail on some ranks only: when any rank failed,
  /// every rank throws the lowest failing rank's error class with "rank r of P: message"
  /// (and agreed_failure() is then true on every rank).
  void agree(const Failure& mine) {
    double flag[1] = {mine.kind == Failure::none ? 0.0 : 1.0};
    max_in_place(flag);
    if (flag[0] == 0) return;
    agreed_ = true;
    std::string payload(1, char(mine.kind));
    payload += mine.message.substr(0, 4000);
    const std::vector<std::string> all = all_gather(payload);
    for (std::size_t r = 0; r < all.size(); ++r) {
      if (all[r].empty() || all[r][0] == char(Failure::none)) continue;
      const std::string msg = detail::concat("rank ", r, " of ", all.size(), ": ", all[r].substr(1));
      switch (Failure::Kind(all[r][0])) {
        case Failure::shape: throw ShapeError(msg);
        case Failure::value: throw ValueError(msg);
        case Failure::numerical: throw NumericalError(msg);
        case Failure::io: throw IoError(msg);
        case Failure::resource: throw ResourceError(msg);
        default: throw Error(msg);
      }
    }
  }
  /// Whether an error thrown by this communicator's agree() was every rank's (a program can
  /// then end normally on every rank; an error of one rank alone must end the job, MPI_Abort).
  bool agreed_failure() const { return agreed_; }
  /// Runs f on this rank, then agree(): f's exception (any rank's) becomes every rank's.
  template <class F>
  void collectively(F&& f) {
    if (size() == 1) {  // one rank: its error is everyone's as it stands
      f();
      return;
    }
    Failure fail;
    try {
      f();
    } catch (const ShapeError& e) {
      fail = {Failure::shape, e.what()};
    } catch (const ValueError& e) {
      fail = {Failure::value, e.what()};
    } catch (const NumericalError& e) {
      fail = {Failure::numerical, e.what()};
    } catch (const IoError& e) {
      fail = {Failure::io, e.what()};
    } catch (const ResourceError& e) {
      fail = {Failure::resource, e.what()};
    } catch (const Error& e) {
      fail = {Failure::error, e.what()};
    } catch (const std::bad_alloc&) {
      fail = {Failure::resource, "out of memory"};
    } catch (const std::exception& e) {
      fail = {Failure::other, e.what()};
    }
    agree(fail);
  }

 private:
  bool agreed_ = false;
};

/// One process: the distributed algorithm without communication (the same model as on P ranks).
class SerialCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<std::string> all_gather(const std::string& mine) override { return {mine}; }
  std::vector<std::string> all_to_all(const std::vector<std::string>& send) override { return send; }
  void max_in_place(std::span<double>) override {}
  void sum_in_place(std::span<std::int64_t>) override {}
  void barrier() override {}
};

/// Where a distributed fit's time went on this rank (DistributedOptions::stats), summed over
/// its training steps: the groups' forward and backward passes and the fixed-point rounding
/// (compute), the collectives including the wait for slower ranks (communicate), and the
/// bytes of the gradients' all-reduce.
struct DistributedStats {
  Index steps = 0;
  double compute_s = 0, communicate_s = 0, update_s = 0;
  std::size_t allreduce_bytes = 0, exchanged_bytes = 0;
};

/// Settings of a distributed fit, beyond FitOptions.
struct DistributedOptions {
  /// Samples per gradient group: the unit of work given to a rank. The model depends on it
  /// (and on FitOptions), never on the number of ranks; a batch of B samples keeps up to
  /// ceil(B / group_size) ranks busy.
  Index group_size = 16;
  /// Write a checkpoint after every this many epochs (0: never), to `checkpoint` (rank 0
  /// writes, atomically; every rank must be able to read it to resume).
  Index checkpoint_every = 0;
  std::string checkpoint;
  /// Continue from the checkpoint file: the same network settings, data, FitOptions and
  /// group size give the model the uninterrupted fit gives.
  bool resume = false;
  /// When set, each training step adds its times to it.
  DistributedStats* stats = nullptr;

  void validate() const {
    if (group_size < 1) detail::raise<ValueError>("fit_distributed: group_size must be >= 1, found ", group_size);
    if (checkpoint_every < 0) detail::raise<ValueError>("fit_distributed: checkpoint_every must be >= 0");
    if ((checkpoint_every > 0 || resume) && checkpoint.empty())
      detail::raise<ValueError>("fit_distributed: checkpoint_every and resume need a checkpoint path");
  }
};

/// Rows i of X with i % comm.size() == comm.rank(): this rank's shard, as a distributed fit
/// takes it (read_csv with CsvOptions::row_stride and row_offset reads the same from a file).
inline Eigen::MatrixXd shard_rows(const Eigen::MatrixXd& X, const Communicator& comm) {
  const Index P = comm.size(), r = comm.rank();
  const Index n = X.rows() > r ? (X.rows() - r + P - 1) / P : 0;
  Eigen::MatrixXd S(n, X.cols());
  for (Index k = 0; k < n; ++k) S.row(k) = X.row(r + k * P);
  return S;
}

namespace detail {

inline std::string pack_doubles(std::span<const double> v) {
  std::string s(v.size() * sizeof(double), '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}
inline std::vector<double> unpack_doubles(const std::string& s) {
  std::vector<double> v(s.size() / sizeof(double));
  if (!v.empty()) std::memcpy(v.data(), s.data(), v.size() * sizeof(double));
  return v;
}

/// Exact sums of per-group gradients: tensor t's values are scaled by 2^shift[t], with shift
/// chosen from the largest magnitude M over every group and rank so that the sum of `groups`
/// rounded terms stays below 2^62, and rounded to integers.
struct FixedPointSum {
  std::vector<int> shift;
  std::vector<std::int64_t> acc;

  /// The smallest k with 2^k >= n: the bits a sum of n terms may add.
  static int ceil_log2(Index n) {
    int k = 0;
    while ((Index(1) << k) < n) ++k;
    return k;
  }
  void prepare(std::span<const double> maxima, Index groups) {
    const int log2g = ceil_log2(groups);
    shift.assign(maxima.size(), 0);
    for (std::size_t t = 0; t < maxima.size(); ++t)
      shift[t] = maxima[t] > 0 ? 61 - log2g - std::ilogb(maxima[t]) : 0;
  }
  template <class Scalar>
  static std::int64_t quantize(Scalar g, int shift) {
    return std::int64_t(std::llrint(std::ldexp(double(g), shift)));
  }
  static double value(std::int64_t q, int shift) { return std::ldexp(double(q), -shift); }
};

/// The network's batch-norm running statistics (dense networks with batch norm), flattened.
template <class Net>
std::vector<double> running_statistics(Net& net) {
  std::vector<double> s;
  if constexpr (requires { net.layer(0).running_mean; net.batch_norm(); }) {
    if (!net.batch_norm()) return s;
    for (Index l = 0; l < net.num_layers(); ++l) {
      const auto& L = net.layer(l);
      s.insert(s.end(), L.running_mean.data(), L.running_mean.data() + L.running_mean.size());
      s.insert(s.end(), L.running_var.data(), L.running_var.data() + L.running_var.size());
    }
  }
  return s;
}
template <class Net>
void set_running_statistics(Net& net, std::span<const double> s) {
  if constexpr (requires { net.layer(0).running_mean; net.batch_norm(); }) {
    std::size_t k = 0;
    if (!net.batch_norm() || s.empty()) return;
    for (Index l = 0; l < net.num_layers(); ++l) {
      auto& L = net.layer(l);
      for (Index i = 0; i < L.running_mean.size(); ++i) L.running_mean(i) = s[k++];
      for (Index i = 0; i < L.running_var.size(); ++i) L.running_var(i) = s[k++];
    }
  }
}

/// The F x m matrices of the units (consecutive runs of unit_size positions of `rows`, global
/// data rows) that this rank computes, unit u on rank u % P; rows travel from their holders.
template <class Scalar>
std::vector<Matrix<Scalar>> exchange_rows(Communicator& comm, const Eigen::MatrixXd& X, const std::vector<Index>& rows,
                                       Index unit_size) {
  const Index P = comm.size(), me = comm.rank(), F = X.cols(), m = Index(rows.size());
  for (Index r : rows)
    if (r < 0) raise<ShapeError>("fit_distributed: row ", r, " is negative");
  std::vector<std::string> send(static_cast<std::size_t>(P));
  for (Index j = 0; j < m; ++j) {
    if (rows[std::size_t(j)] % P != me) continue;
    if (rows[std::size_t(j)] / P >= X.rows())
      raise<ShapeError>("fit_distributed: row ", rows[std::size_t(j)], " is not in this rank's shard of ", X.rows(), " rows");
    const Index dest = (j / unit_size) % P;
    const Eigen::RowVectorXd row = X.row(rows[std::size_t(j)] / P);
    send[std::size_t(dest)].append(reinterpret_cast<const char*>(row.data()), std::size_t(F) * sizeof(double));
  }
  const std::vector<std::string> recv = comm.all_to_all(send);
  std::vector<std::size_t> cursor(std::size_t(P), 0);
  std::vector<Matrix<Scalar>> units;
  for (Index u = me, units_n = (m + unit_size - 1) / unit_size; u < units_n; u += P) {
    const Index b0 = u * unit_size, count = std::min(unit_size, m - b0);
    Matrix<Scalar> Xu(F, count);
    for (Index c = 0; c < count; ++c) {
      const std::size_t holder = std::size_t(rows[std::size_t(b0 + c)] % P);
      const std::string& buf = recv[holder];
      if (cursor[holder] + std::size_t(F) * sizeof(double) > buf.size())
        raise<Error>("fit_distributed: rank ", holder, " sent fewer rows than expected (ranks disagree on the data)");
      for (Index f = 0; f < F; ++f) {
        double v;
        std::memcpy(&v, buf.data() + cursor[holder], sizeof(double));
        cursor[holder] += sizeof(double);
        Xu(f, c) = Scalar(v);
      }
    }
    units.push_back(std::move(Xu));
  }
  return units;
}

/// The epoch loop's batches on P ranks (see the header's comment): training positions p map
/// to global data rows train_rows[p]; rank r holds rows i with i % P == r at X_local.row(i / P).
template <class Net>
class DistributedBatches {
 public:
  using Scalar = typename Net::Scalar;
  using Task = typename Net::TaskT;

  DistributedBatches(Net& net, Communicator& comm, const Eigen::MatrixXd& X_local, std::vector<Index> train_rows,
                     const Matrix<Scalar>& Y, std::vector<Index> val_rows, const Matrix<Scalar>* Yv, Index group_size,
                     DistributedStats* stats = nullptr)
      : net_(net), comm_(comm), X_(X_local), train_rows_(std::move(train_rows)), Y_(Y), val_rows_(std::move(val_rows)),
        Yv_(Yv), group_size_(group_size), stats_(stats) {}

  Index rows() const { return Index(train_rows_.size()); }
  bool has_validation() const { return Yv_ != nullptr; }
  bool primary() const { return comm_.rank() == 0; }

  template <class Optimizer>
  double step(const std::vector<Index>& idx, Index begin, Index end, std::uint32_t stream, Optimizer& opt,
              std::string_view where, Matrix<Scalar>& R, Matrix<Scalar>& Yb, const std::vector<double>* weights) {
    const Index m = end - begin, P = comm_.size(), me = comm_.rank(), K = net_.outputs();
    const Index groups = (m + group_size_ - 1) / group_size_;
    std::vector<Index> rows(static_cast<std::size_t>(m));
    std::vector<std::uint32_t> ids(static_cast<std::size_t>(m));
    Yb.resize(Y_.rows(), m);
    for (Index b = 0; b < m; ++b) {
      const Index p = idx[std::size_t(begin + b)];
      rows[std::size_t(b)] = train_rows_[std::size_t(p)];
      ids[std::size_t(b)] = std::uint32_t(p);
      Yb.col(b) = Y_.col(p);
    }
    // Each group's share of the batch loss: its samples' (class) weights over the batch's.
    std::vector<double> share(std::size_t(groups), 0.0);
    double total_weight = 0;
    for (Index g = 0; g < groups; ++g) {
      for (Index b = g * group_size_; b < std::min(m, (g + 1) * group_size_); ++b)
        share[std::size_t(g)] += weights ? (*weights)[std::size_t(Yb(0, b))] : 1.0;
      total_weight += share[std::size_t(g)];
    }
    for (auto& s : share) s = total_weight > 0 ? s / total_weight : 0.0;

    mark_ = std::chrono::steady_clock::now();
    std::vector<Matrix<Scalar>> units;
    comm_.collectively([&] { units = exchange_rows<Scalar>(comm_, X_, rows, group_size_); });
    if (stats_) stats_->exchanged_bytes += std::size_t(m) * std::size_t(X_.cols()) * sizeof(double);
    lap(&DistributedStats::communicate_s);
    const auto params = net_.parameters();
    const std::size_t T = params.size();
    const std::vector<double> running0 = running_statistics(net_);
    std::vector<std::vector<Scalar>> grads;  // this rank's groups' gradients, parameters concatenated
    std::vector<double> maxima(T + 1, 0.0);  // per tensor; the last: a non-finite gradient seen
    std::string payload;                     // per group: g, loss, readout (K x count), statistics
    comm_.collectively([&] {
      const DrawKey key{net_.seed(), stream};
      for (Index u = 0; u < Index(units.size()); ++u) {
        const Index g = me + u * P, b0 = g * group_size_, count = units[std::size_t(u)].cols();
        set_running_statistics(net_, running0);
        const Matrix<Scalar> Ru = net_.forward_train(units[std::size_t(u)], ids.data() + b0, key);
        Matrix<Scalar> Gu;
        const Matrix<Scalar> Yu = Yb.middleCols(b0, count);
        const double loss = Task::loss(Ru, Yu, &Gu, weights);
        Gu *= Scalar(share[std::size_t(g)]);
        net_.backward_batch(units[std::size_t(u)], ids.data() + b0, key, Gu);
        std::vector<Scalar> flat;
        for (std::size_t t = 0; t < T; ++t) {
          double mx = maxima[t];
          for (Index i = 0; i < params[t].size; ++i) {
            const double a = std::abs(double(params[t].gradient[i]));
            if (!(a <= std::numeric_limits<double>::max())) maxima[T] = 1;  // inf or NaN
            else if (a > mx) mx = a;
          }
          maxima[t] = mx;
          flat.insert(flat.end(), params[t].gradient, params[t].gradient + params[t].size);
        }
        grads.push_back(std::move(flat));
        std::vector<double> rec{double(g), loss};
        for (Index c = 0; c < count; ++c)
          for (Index k = 0; k < K; ++k) rec.push_back(double(Ru(k, c)));
        const std::vector<double> stats = running_statistics(net_);
        rec.insert(rec.end(), stats.begin(), stats.end());
        payload += pack_doubles(rec);
      }
    });
    lap(&DistributedStats::compute_s);
    // Readouts, losses and statistics of every group, in group order.
    const std::vector<std::string> all = comm_.all_gather(payload);
    R.resize(K, m);
    std::vector<double> losses(std::size_t(groups), 0.0);
    std::vector<std::vector<double>> stats(static_cast<std::size_t>(groups));
    for (Index r = 0; r < P; ++r) {
      const std::vector<double> v = unpack_doubles(all[std::size_t(r)]);
      std::size_t k = 0;
      for (Index g = r; g < groups; g += P) {
        const Index b0 = g * group_size_, count = std::min(group_size_, m - b0);
        if (v.size() < k + 2 + std::size_t(K * count) + running0.size() || Index(v[k]) != g)
          raise<Error>("fit_distributed: rank ", r, " sent a malformed record (ranks disagree on the batch)");
        losses[std::size_t(g)] = v[k + 1];
        k += 2;
        for (Index c = 0; c < count; ++c)
          for (Index q = 0; q < K; ++q) R(q, b0 + c) = Scalar(v[k++]);
        stats[std::size_t(g)].assign(v.begin() + std::ptrdiff_t(k), v.begin() + std::ptrdiff_t(k + running0.size()));
        k += running0.size();
      }
    }
    double loss = 0;
    for (Index g = 0; g < groups; ++g) loss += share[std::size_t(g)] * losses[std::size_t(g)];
    // The running statistics: the mean of the groups' updates, in group order.
    auto restore_statistics = [&] { set_running_statistics(net_, running0); };
    if (!running0.empty()) {
      std::vector<double> mean(running0.size(), 0.0);
      for (Index g = 0; g < groups; ++g)
        for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += stats[std::size_t(g)][i];
      for (auto& x : mean) x /= double(groups);
      set_running_statistics(net_, mean);
    }
    comm_.max_in_place(maxima);
    lap(&DistributedStats::communicate_s);
    if (!std::isfinite(loss)) {
      restore_statistics();
      diverged_loss(where, loss);
    }
    if (maxima[T] != 0) {
      restore_statistics();
      diverged_gradient(where, std::numeric_limits<double>::quiet_NaN());
    }
    // The exact sum of the groups' gradients.
    FixedPointSum fx;
    fx.prepare(std::span<const double>(maxima.data(), T), groups);
    std::size_t total = 0;
    for (const auto& p : params) total += std::size_t(p.size);
    fx.acc.assign(total, 0);
    for (const auto& flat : grads) {
      std::size_t k = 0;
      for (std::size_t t = 0; t < T; ++t)
        for (Index i = 0; i < params[t].size; ++i, ++k) fx.acc[k] += FixedPointSum::quantize(flat[k], fx.shift[t]);
    }
    lap(&DistributedStats::compute_s);
    comm_.sum_in_place(fx.acc);
    lap(&DistributedStats::communicate_s);
    if (stats_) stats_->allreduce_bytes += fx.acc.size() * sizeof(std::int64_t), ++stats_->steps;
    sum_.resize(total);
    std::vector<Parameter<Scalar>> summed;
    std::size_t k0 = 0;
    for (std::size_t t = 0; t < T; ++t) {
      for (Index i = 0; i < params[t].size; ++i) sum_[k0 + std::size_t(i)] = Scalar(FixedPointSum::value(fx.acc[k0 + std::size_t(i)], fx.shift[t]));
      summed.push_back({params[t].value, sum_.data() + k0, params[t].size});
      k0 += std::size_t(params[t].size);
    }
    try {
      guarded_step<Scalar>(std::span<const Parameter<Scalar>>(summed), opt, loss, where);
    } catch (const NumericalError&) {
      restore_statistics();
      throw;
    }
    lap(&DistributedStats::update_s);
    return loss;
  }

  /// The readout (outputs x count) of global data rows `rows`, in blocks of the network's
  /// predict batch computed by rank block % P, with ids = positions in `rows` (as predict).
  Matrix<Scalar> readout(const std::vector<Index>& rows) {
    const Index P = comm_.size(), me = comm_.rank(), K = net_.outputs(), n = Index(rows.size());
    constexpr Index block = Net::predict_batch;
    std::vector<Matrix<Scalar>> units;
    comm_.collectively([&] { units = exchange_rows<Scalar>(comm_, X_, rows, block); });
    std::string payload;
    comm_.collectively([&] {
      std::vector<std::uint32_t> ids;
      for (Index u = 0; u < Index(units.size()); ++u) {
        const Index b0 = (me + u * P) * block, count = units[std::size_t(u)].cols();
        ids.resize(static_cast<std::size_t>(count));
        for (Index c = 0; c < count; ++c) ids[std::size_t(c)] = std::uint32_t(b0 + c);
        const Matrix<Scalar> Ru = net_.forward_batch(units[std::size_t(u)], ids.data(), DrawKey{net_.seed(), Net::predict_stream});
        std::vector<double> v(std::size_t(Ru.size()));
        for (Index c = 0, k = 0; c < count; ++c)
          for (Index q = 0; q < K; ++q) v[std::size_t(k++)] = double(Ru(q, c));
        payload += pack_doubles(v);
      }
    });
    const std::vector<std::string> all = comm_.all_gather(payload);
    Matrix<Scalar> R(K, n);
    for (Index r = 0; r < P; ++r) {
      const std::vector<double> v = unpack_doubles(all[std::size_t(r)]);
      std::size_t k = 0;
      for (Index u = r; u * block < n; u += P)
        for (Index c = u * block; c < std::min(n, (u + 1) * block); ++c)
          for (Index q = 0; q < K; ++q) {
            if (k >= v.size()) raise<Error>("fit_distributed: rank ", r, " sent a short readout");
            R(q, c) = Scalar(v[k++]);
          }
    }
    return R;
  }

  std::pair<double, double> validation(const std::vector<double>* weights) {
    const Matrix<Scalar> R = readout(val_rows_);
    return {Task::loss(R, *Yv_, static_cast<Matrix<Scalar>*>(nullptr), weights), Task::metric(R, *Yv_)};
  }

 private:
  Net& net_;
  Communicator& comm_;
  const Eigen::MatrixXd& X_;
  std::vector<Index> train_rows_;
  const Matrix<Scalar>& Y_;
  std::vector<Index> val_rows_;
  const Matrix<Scalar>* Yv_;
  Index group_size_;
  DistributedStats* stats_;
  std::vector<Scalar> sum_;
  std::chrono::steady_clock::time_point mark_;
  /// Adds the time since the last mark to `field` of the stats (when kept).
  void lap(double DistributedStats::*field) {
    const auto t = std::chrono::steady_clock::now();
    if (stats_) stats_->*field += std::chrono::duration<double>(t - mark_).count();
    mark_ = t;
  }
};

// --- checkpoints -----------------------------------------------------------------------------

inline nlohmann::json history_json(const History& h) {
  return {{"loss", h.loss}, {"metric", h.metric}, {"val_loss", h.val_loss}, {"val_metric", h.val_metric},
          {"seconds", h.seconds}, {"learning_rate", h.learning_rate}, {"best_epoch", h.best_epoch}};
}

template <class Scalar>
TensorOut flat_tensor(const std::string& name, const Scalar* v, Index n) {
  return tensor_row_major(name, Eigen::Map<const Vector<Scalar>>(v, n), true);
}

/// What a checkpoint must match to be resumed.
template <class Net>
nlohmann::json checkpoint_fingerprint(Net& net, const FitOptions& fo, const DistributedOptions& d, Index rows,
                                      std::uint64_t seed) {
  nlohmann::json sizes = nlohmann::json::array();
  for (const auto& p : net.parameters()) sizes.push_back(p.size);
  return {{"parameters", sizes}, {"rows", rows}, {"epochs", fo.epochs}, {"batch_size", fo.batch_size},
          {"seed", std::to_string(seed)}, {"group_size", d.group_size}, {"network_seed", std::to_string(net.seed())},
          {"validation_fraction", fo.validation_fraction}, {"scalar", sizeof(typename Net::Scalar) == 4 ? "F32" : "F64"}};
}

template <class Net, class Optimizer>
void write_checkpoint(const std::string& path, Net& net, Optimizer& opt, const LoopState<typename Net::Scalar>& st,
                      const nlohmann::json& fingerprint) {
  using Scalar = typename Net::Scalar;
  const auto params = net.parameters();
  std::vector<TensorOut> tensors;
  for (std::size_t t = 0; t < params.size(); ++t) tensors.push_back(flat_tensor("param." + std::to_string(t), params[t].value, params[t].size));
  const UpdateRule<Scalar> rule = opt.template update_rule<Scalar>(std::span<const Parameter<Scalar>>(params));
  for (std::size_t s = 0; s < rule.slots.size(); ++s)
    tensors.push_back(flat_tensor("slot." + std::to_string(s), rule.slots[s],
                                  params[s / std::size_t(rule.slots_per_parameter)].size));
  for (std::size_t t = 0; t < st.best_weights.size(); ++t)
    tensors.push_back(flat_tensor("best." + std::to_string(t), st.best_weights[t].data(), Index(st.best_weights[t].size())));
  const std::vector<double> stats = running_statistics(net);
  if (!stats.empty()) tensors.push_back(flat_tensor("running", stats.data(), Index(stats.size())));
  nlohmann::json state = {{"kind", "checkpoint"},
                          {"fit", fingerprint},
                          {"next_epoch", st.next_epoch},
                          {"best", std::isfinite(st.best) ? nlohmann::json(st.best) : nlohmann::json()},
                          {"since_best", st.since_best},
                          {"stream_counter", net.stream_counter()},
                          {"optimizer_steps", opt.steps()},
                          {"learning_rate", opt.learning_rate()},
                          {"history", history_json(st.history)}};
  const nlohmann::json meta = {{"format", "nmsnn"}, {"format_version", std::to_string(model_format_version)},
                               {"model", json_dump(state)}};
  write_file_atomically(path, safetensors_bytes(tensors, meta),
                        {.kind = "checkpoint", .replaceable = is_model_file, .where = "fit_distributed (checkpoint)"});
}

inline std::vector<double> json_doubles(const nlohmann::json& j, const char* key) {
  std::vector<double> v;
  for (const auto& x : j.at(key)) v.push_back(x.get<double>());
  return v;
}

template <class Net, class Optimizer>
LoopState<typename Net::Scalar> read_checkpoint(const std::string& path, Net& net, Optimizer& opt,
                                                const nlohmann::json& fingerprint) {
  using Scalar = typename Net::Scalar;
  const std::string where = "fit_distributed (resume from " + path + ")";
  SafetensorsFile f;
  try {
    f = read_safetensors(path);
  } catch (const IoError& e) {
    raise<IoError>(where, ": ", e.what());
  }
  const nlohmann::json& s = f.metadata;
  LoopState<Scalar> st;
  try {
    if (s.value("kind", std::string()) != "checkpoint") raise<IoError>(where, ": a model file, not a checkpoint");
    const nlohmann::json& fp = s.at("fit");
    for (auto it = fingerprint.begin(); it != fingerprint.end(); ++it)
      if (!fp.contains(it.key()) || fp[it.key()] != it.value())
        raise<IoError>(where, ": the checkpoint was made with ", it.key(), " = ", fp.contains(it.key()) ? json_dump(fp[it.key()]) : "?",
                       ", this fit has ", json_dump(it.value()));
    auto tensor = [&](const std::string& name, Scalar* out, Index n) {
      const auto it = f.tensors.find(name);
      if (it == f.tensors.end()) raise<IoError>(where, ": no tensor ", name);
      if (it->second.dtype != (sizeof(Scalar) == 4 ? "F32" : "F64") || it->second.bytes != std::size_t(n) * sizeof(Scalar))
        raise<IoError>(where, ": tensor ", name, " has the wrong type or size");
      std::memcpy(out, it->second.data, it->second.bytes);
    };
    const auto params = net.parameters();
    std::vector<std::vector<Scalar>> values(params.size());
    for (std::size_t t = 0; t < params.size(); ++t) {
      values[t].resize(static_cast<std::size_t>(params[t].size));
      tensor("param." + std::to_string(t), values[t].data(), params[t].size);
    }
    for (std::size_t t = 0; t < params.size(); ++t) {
      if (!f.tensors.count("best." + std::to_string(t))) break;
      st.best_weights.emplace_back(static_cast<std::size_t>(params[t].size));
      tensor("best." + std::to_string(t), st.best_weights.back().data(), params[t].size);
    }
    std::vector<double> stats = running_statistics(net);
    if (!stats.empty()) {
      const auto it = f.tensors.find("running");
      if (it == f.tensors.end() || it->second.dtype != "F64" || it->second.bytes != stats.size() * sizeof(double))
        raise<IoError>(where, ": no batch-norm running statistics of the network's size");
      std::memcpy(stats.data(), it->second.data, it->second.bytes);
    }
    st.next_epoch = s.at("next_epoch").get<Index>();
    st.best = s.at("best").is_null() ? std::numeric_limits<double>::infinity() : s.at("best").get<double>();
    st.since_best = s.at("since_best").get<Index>();
    const nlohmann::json& h = s.at("history");
    st.history.loss = json_doubles(h, "loss");
    st.history.metric = json_doubles(h, "metric");
    st.history.val_loss = json_doubles(h, "val_loss");
    st.history.val_metric = json_doubles(h, "val_metric");
    st.history.seconds = json_doubles(h, "seconds");
    st.history.learning_rate = json_doubles(h, "learning_rate");
    st.history.best_epoch = h.at("best_epoch").get<Index>();
    if (st.next_epoch < 1 || Index(st.history.loss.size()) != st.next_epoch)
      raise<IoError>(where, ": the checkpoint's epoch count and history disagree");
    // Every check passed: the network and the optimiser take the saved state.
    for (std::size_t t = 0; t < params.size(); ++t) std::copy(values[t].begin(), values[t].end(), params[t].value);
    set_running_statistics(net, stats);
    net.set_stream_counter(s.at("stream_counter").get<std::uint32_t>());
    opt.reset();
    opt.restore_steps(s.at("optimizer_steps").get<long long>());
    const UpdateRule<Scalar> rule = opt.template update_rule<Scalar>(std::span<const Parameter<Scalar>>(params));
    for (std::size_t k = 0; k < rule.slots.size(); ++k)
      tensor("slot." + std::to_string(k), rule.slots[k], params[k / std::size_t(rule.slots_per_parameter)].size);
  } catch (const nlohmann::json::exception& e) {
    raise<IoError>(where, ": a malformed checkpoint (", e.what(), ")");
  }
  return st;
}

}  // namespace detail

/// Data-parallel fit on the ranks of `comm`: this rank passes its shard X_local (data rows i
/// with i % P == rank, as shard_rows or read_csv's row_stride give) and the targets y of every
/// row (labels, n, or n x outputs targets, as fit's y). Validation: options.validation_fraction
/// of the rows held out (stratified for classifiers), its metric computed across ranks. The
/// trained network (the same bits on every rank, and for every number of ranks and threads)
/// and the history are returned on every rank; only rank 0 shows progress and writes
/// checkpoints. Throws, on every rank, the error of a rank that failed (see the header).
///
/// `rows` (optional) trains on those global data rows only, in that order, y holding their
/// targets: a training part of a data set whose every row the shards hold (the command line's
/// train/test split).
template <class Net, class Optimizer, class DY>
History fit_distributed(Net& net, Communicator& comm, const Eigen::MatrixXd& X_local, const Eigen::MatrixBase<DY>& y,
                        Optimizer& opt, const FitOptions& fo = {}, const DistributedOptions& d = {},
                        const std::vector<Index>& rows = {}) {
  using Scalar = typename Net::Scalar;
  using Task = typename Net::TaskT;
  static_assert(UpdateAsData<Optimizer, Scalar> && requires(Optimizer o) { o.restore_steps(1LL); o.steps(); o.reset(); },
                "fit_distributed: the optimiser must give its state (Sgd, Adam)");
  const Index P = comm.size(), me = comm.rank();
  const Index n = (y.cols() == 1 || y.rows() == 1) && !(y.rows() == 1 && y.cols() == 1) ? y.size() : y.rows();
  Matrix<Scalar> Y, Yt, Yv;
  std::vector<Index> train_rows, val_rows;
  comm.collectively([&] {
    fo.validate();
    d.validate();
    if (fo.class_weights.size() && !Task::is_classifier)
      detail::raise<ValueError>("fit_distributed: class weights apply to classifiers only");
    if (fo.class_weights.size() && Index(fo.class_weights.size()) != net.classes())
      detail::raise<ValueError>("fit_distributed: expected ", net.classes(), " class weights, found ", fo.class_weights.size());
    if (n < 1) detail::raise<ShapeError>("fit_distributed: no rows");
    if (rows.empty()) {
      const Index held = n > me ? (n - me + P - 1) / P : 0;
      if (X_local.rows() != held)
        detail::raise<ShapeError>("fit_distributed: this rank holds ", X_local.rows(), " rows; of ", n, " rows on ", P,
                                  " ranks it must hold rows i % ", P, " == ", me, ", ", held, " rows");
    } else {
      if (Index(rows.size()) != n) detail::raise<ShapeError>("fit_distributed: ", rows.size(), " rows but ", n, " targets");
      for (Index r : rows)
        if (r < 0 || (r % P == me && r / P >= X_local.rows()))
          detail::raise<ShapeError>("fit_distributed: row ", r, " is not in this rank's shard of ", X_local.rows(), " rows");
    }
    if (X_local.cols() != net.inputs())
      detail::raise<ShapeError>("fit_distributed: X must have ", net.inputs(), " columns (features), found ", X_local.cols());
    detail::require_finite(X_local, "fit_distributed", "X");
    Y = Task::template encode_targets<Scalar>(y, net.outputs());
    const Index nv = fo.validation_fraction > 0 ? detail::test_rows(n, fo.validation_fraction) : 0;
    net.check_memory(net.fit_memory_bytes(std::min<Index>(fo.batch_size, n - nv), n - nv, nv, 0, detail::optimizer_slots(opt),
                                          fo.restore_best),
                     fo.memory_limit ? *fo.memory_limit : memory_limit(), "fit_distributed", "training");
  });
  const std::uint64_t seed = fo.seed ? *fo.seed : net.seed();
  if (fo.validation_fraction > 0) {
    Labels strata;
    if constexpr (Task::is_classifier) strata = Y.row(0).transpose().template cast<int>();
    const Split split = train_test_split(n, fo.validation_fraction, seed, Task::is_classifier ? &strata : nullptr);
    train_rows.assign(split.train.begin(), split.train.end());
    val_rows.assign(split.test.begin(), split.test.end());
  } else {
    train_rows.resize(static_cast<std::size_t>(n));
    std::iota(train_rows.begin(), train_rows.end(), Index(0));
  }
  // Positions of y, then the data rows they are.
  Yt.resize(Y.rows(), Index(train_rows.size()));
  for (std::size_t i = 0; i < train_rows.size(); ++i) Yt.col(Index(i)) = Y.col(train_rows[i]);
  if (!val_rows.empty()) {
    Yv.resize(Y.rows(), Index(val_rows.size()));
    for (std::size_t i = 0; i < val_rows.size(); ++i) Yv.col(Index(i)) = Y.col(val_rows[i]);
  }
  if (!rows.empty()) {
    for (auto& r : train_rows) r = rows[std::size_t(r)];
    for (auto& r : val_rows) r = rows[std::size_t(r)];
  }
  comm.collectively([&] { net.prepare_training_targets(Yt, val_rows.empty() ? nullptr : &Yv, fo); });
  const nlohmann::json fingerprint = detail::checkpoint_fingerprint(net, fo, d, n, seed);
  detail::LoopState<Scalar> state;
  if (d.resume) comm.collectively([&] { state = detail::read_checkpoint(d.checkpoint, net, opt, fingerprint); });
  detail::DistributedBatches<Net> batches(net, comm, X_local, std::move(train_rows), Yt, std::move(val_rows),
                                          Yv.size() ? &Yv : nullptr, d.group_size, d.stats);
  return detail::run_epochs(net, batches, opt, fo, seed, state, [&](const detail::LoopState<Scalar>& st) {
    if (d.checkpoint_every <= 0 || st.next_epoch % d.checkpoint_every != 0) return;
    comm.collectively([&] {
      if (me == 0) detail::write_checkpoint(d.checkpoint, net, opt, st, fingerprint);
    });
  });
}

/// The readout of global data rows `rows` (outputs x count) computed across the ranks, each
/// holding its shard X_local (as for fit_distributed); equal to the network's readout of
/// those rows in one process (the same blocks and draws as predict).
template <class Net>
Matrix<typename Net::Scalar> distributed_readout(Net& net, Communicator& comm, const Eigen::MatrixXd& X_local,
                                                 const std::vector<Index>& rows) {
  Matrix<typename Net::Scalar> none;
  detail::DistributedBatches<Net> b(net, comm, X_local, {}, none, {}, nullptr, 1);
  return b.readout(rows);
}

/// The rows `rows` (global data rows) of the ranks' shards, gathered on rank 0 (rows x
/// features; 0 x features on the other ranks): a report's sample, say.
inline Eigen::MatrixXd gather_rows(Communicator& comm, const Eigen::MatrixXd& X_local, const std::vector<Index>& rows) {
  std::vector<Matrix<double>> units;
  comm.collectively([&] { units = detail::exchange_rows<double>(comm, X_local, rows, std::max<Index>(1, Index(rows.size()))); });
  if (units.empty()) return Eigen::MatrixXd(0, X_local.cols());
  return units[0].transpose();
}

/// A Scaler of the given kind fitted on global data rows `rows` of the ranks' shards, the same
/// for every number of ranks: maxima and minima exactly, the mean and the variance of the
/// standard scaling as exact fixed-point sums (within about 1e-12 of Scaler::fit on one machine).
inline Scaler fit_scaler_distributed(Scaling kind, Communicator& comm, const Eigen::MatrixXd& X_local,
                                     const std::vector<Index>& rows) {
  const Index F = X_local.cols(), P = comm.size(), me = comm.rank(), m = Index(rows.size());
  if (kind == Scaling::none) return Scaler(kind, Eigen::RowVectorXd::Zero(F), Eigen::RowVectorXd::Ones(F));
  std::vector<Index> mine;
  for (Index r : rows)
    if (r % P == me) mine.push_back(r / P);
  if (m < 1) detail::raise<ShapeError>("fit_scaler_distributed: no rows");
  std::vector<double> hi(std::size_t(2 * F), -std::numeric_limits<double>::infinity());
  for (Index i : mine)
    for (Index j = 0; j < F; ++j) {
      hi[std::size_t(j)] = std::max(hi[std::size_t(j)], X_local(i, j));
      hi[std::size_t(F + j)] = std::max(hi[std::size_t(F + j)], -X_local(i, j));
    }
  comm.max_in_place(hi);
  Eigen::RowVectorXd offset(F), scale(F);
  if (kind == Scaling::minmax) {
    for (Index j = 0; j < F; ++j) {
      offset(j) = -hi[std::size_t(F + j)];
      scale(j) = hi[std::size_t(j)] - offset(j);
      if (!std::isfinite(scale(j)))
        detail::raise<ValueError>("Scaler::fit: column ", j, ": its range (max - min) overflows a double; use standard scaling");
      if (!(scale(j) > 0)) scale(j) = 1.0;
    }
    return Scaler(kind, offset, scale);
  }
  // Standard: z = x / p with p the power of two above the column's largest magnitude (|z| <= 1),
  // as Scaler::fit; sums of z and of (z - mean)^2 in fixed point.
  using detail::FixedPointSum;
  const int log2m = FixedPointSum::ceil_log2(m);
  std::vector<double> p(static_cast<std::size_t>(F));
  std::vector<std::int64_t> acc(std::size_t(F), 0);
  for (Index j = 0; j < F; ++j) {
    const double top = std::max(hi[std::size_t(j)], hi[std::size_t(F + j)]);
    int e = 0;
    std::frexp(top, &e);
    p[std::size_t(j)] = top > 0 ? std::ldexp(1.0, e) : 1.0;
  }
  const int s1 = 61 - log2m, s2 = 59 - log2m;  // |z| <= 1; (z - mean)^2 <= 4
  for (Index i : mine)
    for (Index j = 0; j < F; ++j) acc[std::size_t(j)] += FixedPointSum::quantize(X_local(i, j) / p[std::size_t(j)], s1);
  comm.sum_in_place(acc);
  std::vector<double> mean(static_cast<std::size_t>(F));
  for (Index j = 0; j < F; ++j) mean[std::size_t(j)] = FixedPointSum::value(acc[std::size_t(j)], s1) / double(m);
  std::fill(acc.begin(), acc.end(), 0);
  for (Index i : mine)
    for (Index j = 0; j < F; ++j) {
      const double dz = X_local(i, j) / p[std::size_t(j)] - mean[std::size_t(j)];
      acc[std::size_t(j)] += FixedPointSum::quantize(dz * dz, s2);
    }
  comm.sum_in_place(acc);
  for (Index j = 0; j < F; ++j) {
    offset(j) = mean[std::size_t(j)] * p[std::size_t(j)];
    scale(j) = std::sqrt(FixedPointSum::value(acc[std::size_t(j)], s2) / double(m)) * p[std::size_t(j)];
    if (!(scale(j) > 0)) scale(j) = 1.0;
  }
  return Scaler(kind, offset, scale);
}

}  // namespace nmsnn
