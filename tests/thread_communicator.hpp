// tests/thread_communicator.hpp — P ranks as P threads of one process, for testing the
// distributed fit without MPI: every collective meets at a barrier, exchanges through shared
// slots, and meets again.
#pragma once

#include <barrier>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <nmsnn/distributed/communicator.hpp>

namespace nmsnn_test {

class ThreadWorld {
 public:
  explicit ThreadWorld(int P) : P_(P), sync_(P), strings_(static_cast<std::size_t>(P)), matrix_(std::size_t(P) * std::size_t(P)),
                                doubles_(static_cast<std::size_t>(P)), ints_(std::size_t(P)) {}
  int size() const { return P_; }
  std::barrier<>& sync() { return sync_; }

 private:
  int P_;
  std::barrier<> sync_;

 public:
  std::vector<std::string> strings_;
  std::vector<std::string> matrix_;  // [from * P + to]
  std::vector<std::vector<double>> doubles_;
  std::vector<std::vector<std::int64_t>> ints_;

  /// Runs body(rank, comm) on P threads; rethrows the first exception a thread let out.
  template <class Body>
  void run(Body body);
};

class ThreadCommunicator final : public nmsnn::Communicator {
 public:
  ThreadCommunicator(ThreadWorld& w, int rank) : w_(w), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return w_.size(); }
  std::vector<std::string> all_gather(const std::string& mine) override {
    w_.strings_[std::size_t(rank_)] = mine;
    w_.sync().arrive_and_wait();
    std::vector<std::string> all = w_.strings_;
    w_.sync().arrive_and_wait();
    return all;
  }
  std::vector<std::string> all_to_all(const std::vector<std::string>& send) override {
    const std::size_t P = std::size_t(w_.size());
    for (std::size_t d = 0; d < P; ++d) w_.matrix_[std::size_t(rank_) * P + d] = send[d];
    w_.sync().arrive_and_wait();
    std::vector<std::string> recv(P);
    for (std::size_t s = 0; s < P; ++s) recv[s] = w_.matrix_[s * P + std::size_t(rank_)];
    w_.sync().arrive_and_wait();
    return recv;
  }
  void max_in_place(std::span<double> v) override {
    w_.doubles_[std::size_t(rank_)].assign(v.begin(), v.end());
    w_.sync().arrive_and_wait();
    for (const auto& o : w_.doubles_)
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::max(v[i], o[i]);
    w_.sync().arrive_and_wait();
  }
  void sum_in_place(std::span<std::int64_t> v) override {
    w_.ints_[std::size_t(rank_)].assign(v.begin(), v.end());
    w_.sync().arrive_and_wait();
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::int64_t s = 0;
      for (const auto& o : w_.ints_) s += o[i];
      v[i] = s;
    }
    w_.sync().arrive_and_wait();
  }
  void barrier() override { w_.sync().arrive_and_wait(); }

 private:
  ThreadWorld& w_;
  int rank_;
};

template <class Body>
void ThreadWorld::run(Body body) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(P_));
  for (int r = 0; r < P_; ++r)
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(*this, r);
      try {
        body(r, comm);
      } catch (...) {
        errors[std::size_t(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace nmsnn_test
