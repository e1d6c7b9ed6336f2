// nmsnn/distributed/mpi.hpp — the distributed fit of nmsnn/distributed/communicator.hpp on MPI
// (OpenMPI from Debian: libopenmpi-dev, openmpi-bin; CMake option NMSNN_MPI, target
// nmsnn::mpi). A program runs under `mpirun -np P`, opens an MpiSession, and passes an
// MpiCommunicator to fit_distributed.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "nmsnn/distributed/communicator.hpp"

namespace nmsnn {

/// MPI_Init_thread on construction (funneled: only the main thread calls MPI), MPI_Finalize on
/// destruction; nothing when MPI is already initialised.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int done = 0;
    MPI_Initialized(&done);
    if (done) return;
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    owner_ = true;
  }
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  /// Ends every rank of the job now (MPI_Abort) after printing `message` on standard error:
  /// for a failure outside the collective agreements (a program's own error on one rank).
  [[noreturn]] static void abort(const std::string& message, int code = 1) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
  }

 private:
  bool owner_ = false;
};

/// The collectives of a distributed fit on an MPI communicator (MPI_COMM_WORLD by default).
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::vector<std::string> all_gather(const std::string& mine) override {
    const int n = count(mine.size());
    std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(static_cast<std::size_t>(size_));
    MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_);
    std::string all(total(counts, offsets), '\0');
    MPI_Allgatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), offsets.data(), MPI_CHAR, comm_);
    return split(all, counts, offsets);
  }

  std::vector<std::string> all_to_all(const std::vector<std::string>& send) override {
    std::vector<int> scounts(static_cast<std::size_t>(size_)), soffsets(static_cast<std::size_t>(size_)), rcounts(static_cast<std::size_t>(size_)),
        roffsets(static_cast<std::size_t>(size_));
    std::string sbuf;
    for (int r = 0; r < size_; ++r) {
      soffsets[std::size_t(r)] = count(sbuf.size());
      scounts[std::size_t(r)] = count(send[std::size_t(r)].size());
      sbuf += send[std::size_t(r)];
    }
    MPI_Alltoall(scounts.data(), 1, MPI_INT, rcounts.data(), 1, MPI_INT, comm_);
    std::string rbuf(total(rcounts, roffsets), '\0');
    MPI_Alltoallv(sbuf.data(), scounts.data(), soffsets.data(), MPI_CHAR, rbuf.data(), rcounts.data(), roffsets.data(),
                  MPI_CHAR, comm_);
    return split(rbuf, rcounts, roffsets);
  }

  void max_in_place(std::span<double> v) override {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), count(v.size()), MPI_DOUBLE, MPI_MAX, comm_);
  }
  void sum_in_place(std::span<std::int64_t> v) override {
    // In pieces below INT_MAX elements; integer sums are exact in any order.
    for (std::size_t b = 0; b < v.size(); b += std::size_t(1) << 30)
      MPI_Allreduce(MPI_IN_PLACE, v.data() + b, int(std::min(v.size() - b, std::size_t(1) << 30)), MPI_INT64_T, MPI_SUM,
                    comm_);
  }
  void barrier() override { MPI_Barrier(comm_); }

 private:
  static int count(std::size_t n) {
    if (n > std::size_t(INT_MAX))
      detail::raise<ResourceError>("MpiCommunicator: a message of ", n, " bytes is over MPI's int count (2^31 - 1)");
    return int(n);
  }
  static std::size_t total(const std::vector<int>& counts, std::vector<int>& offsets) {
    std::size_t t = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      offsets[r] = count(t);
      t += std::size_t(counts[r]);
    }
    count(t);
    return t;
  }
  static std::vector<std::string> split(const std::string& all, const std::vector<int>& counts, const std::vector<int>& offsets) {
    std::vector<std::string> out(counts.size());
    for (std::size_t r = 0; r < counts.size(); ++r) out[r] = all.substr(std::size_t(offsets[r]), std::size_t(counts[r]));
    return out;
  }
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace nmsnn
