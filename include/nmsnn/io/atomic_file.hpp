// nmsnn/io/atomic_file.hpp — writing a file so that a crash never leaves it half-written: the
// content goes to a temporary file beside the target, which is flushed and then renamed over
// the target (rename is atomic within a file system).
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#endif

#include "nmsnn/core/errors.hpp"

namespace nmsnn {

/// Writes `content` to `path` atomically; throws IoError (and leaves any existing file as it
/// was) when it cannot.
inline void write_file_atomically(const std::string& path, std::string_view content) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.filename().empty()) detail::raise<IoError>("cannot write '", path, "': not a file name");
  std::string tmp = path + ".tmp";
#if defined(__unix__) || defined(__APPLE__)
  tmp += "." + std::to_string(::getpid());
#endif
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) detail::raise<IoError>("cannot write '", path, "': cannot create '", tmp, "'");
    out.write(content.data(), std::streamsize(content.size()));
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      detail::raise<IoError>("cannot write '", path, "': write failed (disk full?)");
    }
  }
#if defined(__unix__) || defined(__APPLE__)
  if (const int fd = ::open(tmp.c_str(), O_RDONLY); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
#endif
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    detail::raise<IoError>("cannot write '", path, "': ", ec.message());
  }
}

}  // namespace nmsnn
