// libFuzzer target: the MNIST IDX readers on arbitrary bytes. Only nmsnn::Error may come out.
#include <nmsnn/nmsnn.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_temp(data, size, ".idx");
  try {
    (void)nmsnn::read_idx(path);
  } catch (const nmsnn::Error&) {
  }
  try {
    const Eigen::MatrixXd X = nmsnn::read_idx_images(path);
    if (!X.allFinite()) __builtin_trap();
  } catch (const nmsnn::Error&) {
  }
  try {
    (void)nmsnn::read_idx_labels(path);
  } catch (const nmsnn::Error&) {
  }
  return 0;
}
