// libFuzzer target: read_csv on arbitrary bytes, with the target by name, by index and absent.
// Any nmsnn::Error is a correct answer; a crash, a hang or another exception is a bug.
#include <nmsnn/nmsnn.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_temp(data, size, ".csv");
  const nmsnn::CsvOptions opts[] = {{}, {.target = std::string("target")}, {.target = nmsnn::Index(0)},
                                    {.delimiter = ';', .header = false}, {.no_target = true}};
  for (const auto& o : opts) {
    try {
      const nmsnn::Dataset d = nmsnn::read_csv(path, o);
      // What was read must be consistent.
      if (d.X.rows() != d.rows() || (!o.no_target && d.y.size() != d.X.rows())) __builtin_trap();
      if (!d.X.allFinite()) __builtin_trap();
      if (d.feature_names.size() != std::size_t(d.X.cols())) __builtin_trap();
    } catch (const nmsnn::Error&) {
    }
  }
  return 0;
}
