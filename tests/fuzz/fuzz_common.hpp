// Shared by the fuzz targets: the library's readers take paths, so each input is written to a
// per-process temporary file first.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace fuzz {
inline std::string write_temp(const std::uint8_t* data, std::size_t size, const char* ext) {
  static const std::string path = "/tmp/nmsnn_fuzz_" + std::to_string(::getpid()) + ext;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}
}  // namespace fuzz
