// nmsnn/core/memory.hpp — the resource guard: how much memory a computation may take, sizes
// computed without overflow, and allocation failures turned into ResourceError.
//
// Before fit, predict, read_csv and load_model allocate, they estimate what they will need with
// saturating arithmetic (a size that cannot exist becomes SIZE_MAX, never a small wrapped
// number) and refuse, with ResourceError, an estimate above memory_limit(). The limit is, unless
// set, what the machine can give now: the smallest of the memory available (MemAvailable), the
// room left under the process's control group (cgroup v2 or v1) and under its address-space and
// data limits (RLIMIT_AS, RLIMIT_DATA), less a tenth for everything else; 8 GiB where none of
// these can be read.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#if defined(__linux__)
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "nmsnn/core/errors.hpp"

namespace nmsnn {

namespace detail {

inline constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

/// a * b, saturating at SIZE_MAX.
constexpr std::size_t sat_mul(std::size_t a, std::size_t b) {
  std::size_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? size_max : r;
}
/// a + b, saturating at SIZE_MAX.
constexpr std::size_t sat_add(std::size_t a, std::size_t b) {
  std::size_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? size_max : r;
}
/// The product of any number of sizes, saturating.
template <class... T>
constexpr std::size_t sat_prod(std::size_t a, T... rest) {
  ((a = sat_mul(a, std::size_t(rest))), ...);
  return a;
}

/// A non-negative count as a size (negative counts are 0).
template <class I>
constexpr std::size_t to_size(I v) {
  return v > 0 ? std::size_t(v) : 0;
}

#if defined(__linux__)
/// The first number after `key` in a /proc-style file ("MemAvailable:   123 kB"), or -1.
inline long long read_proc_number(const char* file, std::string_view key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) {
      try {
        return std::stoll(line.substr(key.size()));
      } catch (...) {
        return -1;
      }
    }
  return -1;
}
/// The number in a one-line file ("max" and unreadable files give -1).
inline long long read_single_number(const std::string& file) {
  std::ifstream in(file);
  std::string s;
  if (!(in >> s) || s == "max") return -1;
  try {
    return std::stoll(s);
  } catch (...) {
    return -1;
  }
}
/// The process's cgroup directory (v2), or "" when it has none.
inline std::string cgroup_v2_dir() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 3, "0::") == 0) return "/sys/fs/cgroup" + line.substr(3);
  return "";
}
#endif

/// Bytes the machine can give this process now (see the top of this file); 0 when unknown.
inline std::size_t available_memory_bytes() {
#if defined(__linux__)
  std::size_t avail = size_max;
  bool known = false;
  auto take = [&](long long v) {
    if (v >= 0) {
      avail = std::min(avail, std::size_t(v));
      known = true;
    }
  };
  const long long mem = read_proc_number("/proc/meminfo", "MemAvailable:");
  if (mem >= 0) take(mem * 1024);
  for (const std::string& dir : {cgroup_v2_dir(), std::string("/sys/fs/cgroup")}) {
    const long long max = dir.empty() ? -1 : read_single_number(dir + "/memory.max");
    if (max >= 0) {
      take(std::max(0ll, max - std::max(0ll, read_single_number(dir + "/memory.current"))));
      break;
    }
  }
  const long long v1 = read_single_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  if (v1 >= 0 && v1 < (1ll << 60)) take(std::max(0ll, v1 - std::max(0ll, read_single_number("/sys/fs/cgroup/memory/memory.usage_in_bytes"))));
  const long page = ::sysconf(_SC_PAGESIZE);
  for (int res : {RLIMIT_AS, RLIMIT_DATA}) {
    struct rlimit rl = {};
    if (::getrlimit(res, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) continue;
    // In use now (pages): the virtual size (statm's 1st field) for RLIMIT_AS, data and stack
    // (its 6th) for RLIMIT_DATA.
    long long f[6] = {}, used = 0;
    if (std::ifstream statm("/proc/self/statm"); statm >> f[0] >> f[1] >> f[2] >> f[3] >> f[4] >> f[5])
      used = (res == RLIMIT_AS ? f[0] : f[5]) * page;
    take(std::max(0ll, static_cast<long long>(rl.rlim_cur) - used));
  }
  return known ? avail : 0;
#else
  return 0;
#endif
}

/// The default limit: nine tenths of the available memory, re-read at most once a second
/// (predict on one row must not read /proc each time); 8 GiB where it cannot be read.
inline std::size_t automatic_memory_limit() {
  static std::atomic<std::size_t> cached{0};
  static std::atomic<std::int64_t> stamp{0};
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (cached.load(std::memory_order_relaxed) == 0 || now - stamp.load(std::memory_order_relaxed) >= 1000) {
    const std::size_t avail = available_memory_bytes();
    cached.store(avail ? avail / 10 * 9 : std::size_t(8) << 30, std::memory_order_relaxed);
    stamp.store(now, std::memory_order_relaxed);
  }
  return cached.load(std::memory_order_relaxed);
}

inline std::atomic<std::size_t>& memory_limit_setting() {
  static std::atomic<std::size_t> limit{size_max};  // size_max: automatic
  return limit;
}

}  // namespace detail

/// Largest number of bytes one training or prediction call, or one file read, may allocate
/// (the resource guard: they estimate first and throw ResourceError above it). Unless set with
/// set_memory_limit, what the machine can give now (see the top of this file). 0: no limit.
/// FitOptions::memory_limit overrides it for one fit.
inline std::size_t memory_limit() {
  const std::size_t s = detail::memory_limit_setting().load(std::memory_order_relaxed);
  return s == detail::size_max ? detail::automatic_memory_limit() : s;
}
/// Sets the limit in bytes (0: none).
inline void set_memory_limit(std::size_t bytes) { detail::memory_limit_setting().store(bytes == detail::size_max ? bytes - 1 : bytes); }
/// Back to the automatic limit (what the machine can give).
inline void reset_memory_limit() { detail::memory_limit_setting().store(detail::size_max); }

namespace detail {

/// A size for messages: bytes, KiB, MiB or GiB.
inline std::string size_text(std::size_t b) {
  if (b == size_max) return "more than can be addressed";
  if (b < (std::size_t(1) << 10)) return std::to_string(b) + " bytes";
  if (b < (std::size_t(1) << 20)) return std::to_string(b >> 10) + " KiB";
  if (b < (std::size_t(1) << 30)) return std::to_string(b >> 20) + " MiB";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", double(b) / double(std::size_t(1) << 30));
  return buf;
}

/// Throws ResourceError when `need` bytes exceed `limit` (0: no limit). `what` says what the
/// bytes are for, `hint` what the caller can change.
inline void check_memory_need(std::size_t need, std::size_t limit, std::string_view where, std::string_view what,
                              std::string_view hint = {}) {
  if (limit == 0 || need <= limit) return;
  raise<ResourceError>(where, ": ", what, ": about ", size_text(need), " needed, more than the memory limit of ", size_text(limit),
                       hint.empty() ? "" : " (", hint, hint.empty() ? "" : ")");
}

/// Runs f(); an allocation failure inside becomes ResourceError("where: out of memory while what").
template <class F>
decltype(auto) allocating(std::string_view where, std::string_view what, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const std::bad_alloc&) {
    raise<ResourceError>(where, ": out of memory while ", what);
  } catch (const std::length_error&) {
    raise<ResourceError>(where, ": a size too large while ", what);
  }
}

}  // namespace detail

}  // namespace nmsnn
