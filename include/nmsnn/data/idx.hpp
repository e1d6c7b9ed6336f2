// nmsnn/data/idx.hpp — MNIST's IDX file format (big-endian header: two zero bytes, a type
// code, the number of dimensions, then each dimension as a 32-bit integer, then the data).
// Only unsigned-byte data (MNIST's images and labels) is read. A truncated or inconsistent
// file throws IoError; sizes are checked against the file's length before any allocation.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/memory.hpp"
#include "nmsnn/io/files.hpp"

namespace nmsnn {

struct IdxArray {
  std::vector<Index> dims;
  std::vector<std::uint8_t> data;
  Index total_records = 0;  ///< the file's first dimension
};

/// The file's array; with row_stride > 1 only the records (entries of the first dimension)
/// i with i % row_stride == row_offset are read (a distributed fit's shard: dims[0] then
/// counts the records read, total_records the file's), the others are skipped unread.
inline IdxArray read_idx(const std::string& path, Index row_stride = 1, Index row_offset = 0) {
  if (row_stride < 1 || row_offset < 0 || row_offset >= row_stride)
    detail::raise<ValueError>("read_idx: row_offset must be in 0..row_stride-1 and row_stride >= 1, found ", row_offset, " and ",
                              row_stride);
  require_regular_file(path, "read_idx");  // a FIFO or a device refused before it is opened
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::raise<IoError>("read_idx: cannot open '", path, "'");
  in.seekg(0, std::ios::end);
  const std::uint64_t size = std::uint64_t(in.tellg());
  in.seekg(0);
  unsigned char head[4];
  if (size < 4 || !in.read(reinterpret_cast<char*>(head), 4))
    detail::raise<IoError>("read_idx: ", path, ": too short for an IDX header");
  if (head[0] != 0 || head[1] != 0) detail::raise<IoError>("read_idx: ", path, ": not an IDX file (bad magic)");
  if (head[2] != 0x08)
    detail::raise<IoError>("read_idx: ", path, ": only unsigned-byte data (type 0x08) is supported, found 0x",
                           std::hex, int(head[2]));
  const int nd = head[3];
  if (nd < 1 || nd > 4) detail::raise<IoError>("read_idx: ", path, ": unsupported number of dimensions ", nd);
  IdxArray a;
  std::uint64_t count = 1;
  for (int i = 0; i < nd; ++i) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) detail::raise<IoError>("read_idx: ", path, ": truncated header");
    const std::uint64_t d = (std::uint64_t(b[0]) << 24) | (std::uint64_t(b[1]) << 16) | (std::uint64_t(b[2]) << 8) | b[3];
    if (d == 0) detail::raise<IoError>("read_idx: ", path, ": dimension ", i, " is zero");
    count *= d;
    if (count > size) detail::raise<IoError>("read_idx: ", path, ": header claims more data than the file holds");
    a.dims.push_back(Index(d));
  }
  const std::uint64_t header = 4 + 4 * std::uint64_t(nd);
  if (size != header + count)
    detail::raise<IoError>("read_idx: ", path, ": expected ", header + count, " bytes, the file has ", size);
  const std::uint64_t records = std::uint64_t(a.dims[0]), record = count / records;
  const std::uint64_t kept = records > std::uint64_t(row_offset) ? (records - std::uint64_t(row_offset) + std::uint64_t(row_stride) - 1) / std::uint64_t(row_stride) : 0;
  a.total_records = a.dims[0];
  a.dims[0] = Index(kept);
  detail::check_memory_need(detail::sat_mul(detail::to_size(kept * record), 9), memory_limit(), "read_idx: " + path,
                            "the file's values (and their copy as doubles)");
  detail::allocating("read_idx", "reading '" + path + "'", [&] { a.data.resize(kept * record); });
  if (row_stride == 1) {
    if (!in.read(reinterpret_cast<char*>(a.data.data()), std::streamsize(count)))
      detail::raise<IoError>("read_idx: ", path, ": truncated data");
    return a;
  }
  for (std::uint64_t k = 0; k < kept; ++k) {
    in.seekg(std::streamoff(header + (std::uint64_t(row_offset) + k * std::uint64_t(row_stride)) * record));
    if (!in.read(reinterpret_cast<char*>(a.data.data() + k * record), std::streamsize(record)))
      detail::raise<IoError>("read_idx: ", path, ": truncated data");
  }
  return a;
}

/// Images as rows of pixel values scaled to [0, 1] (n x (rows * cols)).
/// With row_stride > 1: only images i with i % row_stride == row_offset (read_idx's shard).
inline Eigen::MatrixXd read_idx_images(const std::string& path, Index row_stride = 1, Index row_offset = 0) {
  const IdxArray a = read_idx(path, row_stride, row_offset);
  if (a.dims.size() != 3) detail::raise<IoError>("read_idx_images: ", path, ": expected 3 dimensions, found ", a.dims.size());
  const Index n = a.dims[0], p = a.dims[1] * a.dims[2];
  Eigen::MatrixXd X(n, p);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < p; ++j) X(i, j) = double(a.data[std::size_t(i * p + j)]) / 255.0;
  return X;
}

inline Eigen::VectorXd read_idx_labels(const std::string& path, Index row_stride = 1, Index row_offset = 0) {
  const IdxArray a = read_idx(path, row_stride, row_offset);
  if (a.dims.size() != 1) detail::raise<IoError>("read_idx_labels: ", path, ": expected 1 dimension, found ", a.dims.size());
  Eigen::VectorXd y(a.dims[0]);
  for (Index i = 0; i < y.size(); ++i) y(i) = a.data[std::size_t(i)];
  return y;
}

}  // namespace nmsnn
