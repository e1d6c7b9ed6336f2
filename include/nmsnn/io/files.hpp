// nmsnn/io/files.hpp — how nmsnn touches the file system, so that nothing a user has is lost
// or half-written and no input can hang or flood a reader.
//
// Reading: an input must be a regular file (directories, FIFOs, devices and sockets are refused
// by type before anything is opened, so a FIFO cannot block and /dev/zero cannot grow a buffer
// without bound); it is read with every error checked.
//
// Writing (write_file_atomically): the output path is resolved through symbolic links and must
// name a regular file or nothing; the content goes to a temporary file created exclusively in
// the target's directory (a fresh random name, O_CREAT | O_EXCL | O_NOFOLLOW: a planted link is
// never followed), with the permissions (and, where allowed, the owner) of the file it
// replaces; it is written with every error checked, flushed to disk, renamed over the target
// (atomic within a file system) and the directory is synced. On failure, and on SIGINT, SIGTERM
// or SIGHUP while it is being written, the temporary file is removed. Two threads or processes
// saving to one path each write their own temporary file: the target is always one complete
// content, never a mix.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <string_view>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#define NMSNN_POSIX_FILES 1
#else
#include <fstream>
#endif

#include "nmsnn/core/errors.hpp"

namespace nmsnn {

/// How write_file_atomically may replace an existing file.
struct WriteOptions {
  /// What is written, for messages ("model", "report", "predictions", ...).
  std::string_view kind = "file";
  /// When set, an existing regular file at the target is replaced only when this returns true
  /// for it (it is a file of the kind written), or with `force`.
  std::function<bool(const std::string& existing)> replaceable = {};
  /// Replace an existing regular file even when `replaceable` says it is of another kind.
  bool force = false;
  /// Starts every error message (the calling function).
  std::string_view where = "write_file_atomically";
};

/// An output path after resolution: the regular file (or the place of a new one) it names.
struct ResolvedOutput {
  std::string path;  ///< symbolic links resolved; absolute
  bool exists = false;
#if defined(NMSNN_POSIX_FILES)
  struct stat st = {};
#endif
};

namespace detail {

inline std::string errno_text(int e) { return std::strerror(e); }

#if defined(NMSNN_POSIX_FILES)
inline const char* file_type_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}
#endif

// --- temporary files removed on a signal -----------------------------------------------------
// A fixed table (no allocation, async-signal-safe to walk) of the temporary files being
// written; the handler unlinks them and lets the signal do what it did before (the default:
// the process ends with that signal).
struct TempSlot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 holds a path
  char path[4096] = {};
};
inline constexpr int temp_slot_count = 64;
inline TempSlot* temp_slots() {
  static TempSlot slots[temp_slot_count];
  return slots;
}

/// Unlinks every temporary file being written (async-signal-safe).
inline void unlink_registered_temporaries() {
#if defined(NMSNN_POSIX_FILES)
  TempSlot* s = temp_slots();
  for (int i = 0; i < temp_slot_count; ++i)
    if (s[i].state.load(std::memory_order_acquire) == 2) ::unlink(s[i].path);
#endif
}

#if defined(NMSNN_POSIX_FILES)
inline void temp_cleanup_handler(int sig) {
  const int saved = errno;
  unlink_registered_temporaries();
  errno = saved;
  // SA_RESETHAND restored the default action: raised again, it ends the process as before.
  ::raise(sig);
}

/// Installs the cleanup handler for SIGINT, SIGTERM and SIGHUP where the program has the
/// default action now (a program's own handler, or an ignored signal, is left alone). Checked
/// at every save (three sigaction calls), so a program that resets its handlers is covered.
inline void install_temp_cleanup_handlers() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old = {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;
    struct sigaction sa = {};
    sa.sa_handler = temp_cleanup_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    ::sigaction(sig, &sa, nullptr);
  }
}
#endif

/// A registered temporary file: listed for the signal handler while it lives.
class TempRegistration {
 public:
  explicit TempRegistration(const std::string& path) {
    if (path.size() >= sizeof(TempSlot::path)) return;
    TempSlot* s = temp_slots();
    for (int i = 0; i < temp_slot_count; ++i) {
      int expected = 0;
      if (s[i].state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        std::memcpy(s[i].path, path.c_str(), path.size() + 1);
        s[i].state.store(2, std::memory_order_release);
        slot_ = i;
        return;
      }
    }
  }
  ~TempRegistration() {
    if (slot_ >= 0) temp_slots()[slot_].state.store(0, std::memory_order_release);
  }
  TempRegistration(const TempRegistration&) = delete;
  TempRegistration& operator=(const TempRegistration&) = delete;

 private:
  int slot_ = -1;
};

/// Called after the temporary file is written and before it is renamed (tests interrupt a save
/// here); null in normal use.
inline void (*&atomic_write_hook())(const std::string& temp_path) {
  static void (*hook)(const std::string&) = nullptr;
  return hook;
}

inline std::string random_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 gen{std::random_device{}() ^ (std::uint64_t(std::random_device{}()) << 32)};
  std::uint64_t v = gen() ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string s;
  for (int i = 0; i < 12; ++i, v /= 36) s += digits[v % 36];
  return s;
}

}  // namespace detail

/// Checks that `path` names a regular file that can be read (symbolic links followed) and
/// returns its size; throws IoError saying why not (missing, a directory, a FIFO, a device...).
/// `where` starts the message (the calling function).
inline std::uint64_t require_regular_file(const std::string& path, std::string_view where) {
#if defined(NMSNN_POSIX_FILES)
  struct stat st = {};
  if (::stat(path.c_str(), &st) != 0) detail::raise<IoError>(where, ": cannot open '", path, "': ", detail::errno_text(errno));
  if (!S_ISREG(st.st_mode))
    detail::raise<IoError>(where, ": '", path, "' is ", detail::file_type_name(st.st_mode), ", not a regular file");
  return std::uint64_t(st.st_size);
#else
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) detail::raise<IoError>(where, ": cannot open '", path, "'");
  if (!std::filesystem::is_regular_file(status)) detail::raise<IoError>(where, ": '", path, "' is not a regular file");
  return std::filesystem::file_size(path);
#endif
}

/// Reads a whole regular file (at most `max_bytes`, IoError above); every read checked.
inline std::string read_regular_file(const std::string& path, std::string_view where,
                                     std::uint64_t max_bytes = ~std::uint64_t(0)) {
  const std::uint64_t size = require_regular_file(path, where);
  if (size > max_bytes)
    detail::raise<IoError>(where, ": '", path, "' has ", size, " bytes, more than the ", max_bytes, " this reader accepts");
  std::string content;
#if defined(NMSNN_POSIX_FILES)
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) detail::raise<IoError>(where, ": cannot open '", path, "': ", detail::errno_text(errno));
  struct stat st = {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {  // swapped since the check
    ::close(fd);
    detail::raise<IoError>(where, ": '", path, "' is not a regular file");
  }
  try {
    content.resize(std::size_t(st.st_size));
  } catch (const std::bad_alloc&) {
    ::close(fd);
    detail::raise<ResourceError>(where, ": out of memory reading '", path, "' (", st.st_size, " bytes)");
  }
  std::size_t got = 0;
  while (got < content.size()) {
    const ssize_t n = ::read(fd, content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      detail::raise<IoError>(where, ": cannot read '", path, "': ", detail::errno_text(e));
    }
    if (n == 0) break;  // shrank while read
    got += std::size_t(n);
  }
  ::close(fd);
  content.resize(got);
#else
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::raise<IoError>(where, ": cannot open '", path, "'");
  content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) detail::raise<IoError>(where, ": cannot read '", path, "'");
#endif
  return content;
}

/// Resolves an output path: symbolic links followed to the file they name; the result must be
/// a regular file or not exist yet, in an existing directory. Throws IoError otherwise.
inline ResolvedOutput resolve_output(const std::string& path, std::string_view where) {
  namespace fs = std::filesystem;
  if (path.empty() || path.back() == '/' || fs::path(path).filename().empty() || fs::path(path).filename() == "." ||
      fs::path(path).filename() == "..")
    detail::raise<IoError>(where, ": cannot write '", path, "': not a file name");
  ResolvedOutput r;
  std::error_code ec;
  fs::path p = fs::absolute(fs::path(path), ec);
  if (ec) detail::raise<IoError>(where, ": cannot write '", path, "': ", ec.message());
  const auto link = fs::symlink_status(p, ec);
  if (!ec && fs::is_symlink(link)) {
    const fs::path target = fs::canonical(p, ec);
    if (ec) detail::raise<IoError>(where, ": cannot write '", path, "': a symbolic link to nothing (", ec.message(), ")");
    p = target;
  } else {
    // The directory's own links resolved, the name kept.
    const fs::path dir = fs::canonical(p.parent_path(), ec);
    if (ec) detail::raise<IoError>(where, ": cannot write '", path, "': no directory '", p.parent_path().string(), "'");
    p = dir / p.filename();
  }
  r.path = p.string();
#if defined(NMSNN_POSIX_FILES)
  if (::stat(r.path.c_str(), &r.st) == 0) {
    if (!S_ISREG(r.st.st_mode))
      detail::raise<IoError>(where, ": cannot write '", path, "': it is ", detail::file_type_name(r.st.st_mode),
                             ", not a regular file");
    r.exists = true;
  } else if (errno != ENOENT) {
    detail::raise<IoError>(where, ": cannot write '", path, "': ", detail::errno_text(errno));
  }
  struct stat dst = {};
  const std::string dir = p.parent_path().string();
  if (::stat(dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode))
    detail::raise<IoError>(where, ": cannot write '", path, "': no directory '", dir, "'");
#else
  const auto status = fs::status(p, ec);
  if (fs::exists(status)) {
    if (!fs::is_regular_file(status)) detail::raise<IoError>(where, ": cannot write '", path, "': not a regular file");
    r.exists = true;
  }
#endif
  return r;
}

/// Whether two paths name the same file (the same inode, through links); false when either is
/// missing.
inline bool same_file(const std::string& a, const std::string& b) {
#if defined(NMSNN_POSIX_FILES)
  struct stat sa = {}, sb = {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
#else
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec);
#endif
}

/// Checks, before any work, that write_file_atomically(path, ..., options) could write: the
/// path resolves to a regular file or a new one, an existing file may be replaced (options),
/// and a temporary file can be created beside it (then removed). Returns the resolved path.
namespace detail {
/// resolve_output, and an existing file refused unless `options` allow replacing it.
inline ResolvedOutput resolve_replaceable(const std::string& path, const WriteOptions& options, std::string_view where) {
  ResolvedOutput r = resolve_output(path, where);
  if (r.exists && options.replaceable && !options.force && !options.replaceable(r.path))
    raise<IoError>(where, ": '", path, "' exists and is not an nmsnn ", options.kind,
                   " file; not replaced (remove it, choose another name, or force the replacement)");
  return r;
}
}  // namespace detail

inline ResolvedOutput check_writable(const std::string& path, const WriteOptions& options, std::string_view where) {
  ResolvedOutput r = detail::resolve_replaceable(path, options, where);
#if defined(NMSNN_POSIX_FILES)
  const std::string dir = std::filesystem::path(r.path).parent_path().string();
  for (int attempt = 0;; ++attempt) {
    const std::string probe = dir + "/.nmsnn-probe-" + detail::random_suffix();
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      ::unlink(probe.c_str());
      break;
    }
    if (errno == EEXIST && attempt < 100) continue;
    detail::raise<IoError>(where, ": cannot write '", path, "': cannot create a file in '", dir, "': ",
                           detail::errno_text(errno));
  }
#endif
  return r;
}

/// Writes `content` to `path` atomically (see the top of this file); throws IoError, leaving
/// any existing file as it was and no temporary file behind, when it cannot.
inline void write_file_atomically(const std::string& path, std::string_view content, const WriteOptions& options = {}) {
  const std::string_view where = options.where;
  // No probe file here: creating the temporary file is the test of the directory.
  const ResolvedOutput r = detail::resolve_replaceable(path, options, where);
#if defined(NMSNN_POSIX_FILES)
  detail::install_temp_cleanup_handlers();
  namespace fs = std::filesystem;
  const std::string dir = fs::path(r.path).parent_path().string();
  const std::string base = fs::path(r.path).filename().string();
  const mode_t mode = r.exists ? (r.st.st_mode & 07777) : 0666;  // a new file: 0666 less the umask
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    tmp = dir + "/." + base.substr(0, 200) + ".nmsnn-tmp-" + detail::random_suffix();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 && (errno != EEXIST || attempt >= 100))
      detail::raise<IoError>(where, ": cannot write '", path, "': cannot create a temporary file in '", dir, "': ",
                             detail::errno_text(errno));
  }
  detail::TempRegistration registration(tmp);
  // Whatever happens before the rename (an error, an exception from the hook), the temporary
  // file goes.
  struct Cleanup {
    int& fd;
    const std::string& tmp;
    bool armed = true;
    ~Cleanup() {
      if (!armed) return;
      if (fd >= 0) ::close(fd);
      ::unlink(tmp.c_str());
    }
  } cleanup{fd, tmp};
  auto fail = [&](const std::string& what, int e) {
    detail::raise<IoError>(where, ": cannot write '", path, "': ", what, e ? ": " + detail::errno_text(e) : std::string());
  };
  if (r.exists) {
    // The replaced file's permissions (open applied the umask) and, where allowed, its owner.
    if (::fchmod(fd, mode) != 0) fail("cannot set the permissions", errno);
    if (r.st.st_uid != ::geteuid() || r.st.st_gid != ::getegid()) (void)!::fchown(fd, r.st.st_uid, r.st.st_gid);
  }
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write failed", n < 0 ? errno : ENOSPC);
    done += std::size_t(n);
  }
  if (::fsync(fd) != 0) fail("cannot flush to disk", errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("write failed on close", errno);
  if (auto hook = detail::atomic_write_hook()) hook(tmp);
  if (::rename(tmp.c_str(), r.path.c_str()) != 0) fail("cannot rename the temporary file", errno);
  cleanup.armed = false;
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
#else
  const std::string tmp = r.path + ".nmsnn-tmp-" + detail::random_suffix();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) detail::raise<IoError>(where, ": cannot write '", path, "': cannot create '", tmp, "'");
    out.write(content.data(), std::streamsize(content.size()));
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      detail::raise<IoError>(where, ": cannot write '", path, "': write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, r.path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    detail::raise<IoError>(where, ": cannot write '", path, "': ", ec.message());
  }
#endif
}

/// Removes the temporary files of saves in progress: for a program's own SIGINT/SIGTERM
/// handler (nmsnn installs one itself only where the program left the default action).
/// Async-signal-safe.
inline void remove_temporary_files() { detail::unlink_registered_temporaries(); }

}  // namespace nmsnn
