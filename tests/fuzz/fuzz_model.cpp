// libFuzzer target: the model loader (safetensors header, metadata, tensors) on arbitrary
// bytes, for a spiking and a dense network, and inspect_model. Only nmsnn::IoError may come out.
#include <nmsnn/nmsnn.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::write_temp(data, size, ".safetensors");
  try {
    nmsnn::ModelExtras ex;
    const auto net = nmsnn::load_model<nmsnn::SpikingNetwork<nmsnn::MulticlassClassification>>(path, &ex);
    // A model that loads must predict without crashing (a small, bounded run).
    if (net.inputs() <= 64 && net.time_steps() <= 64 && net.parameter_count() <= 100000) {
      const Eigen::MatrixXd X = Eigen::MatrixXd::Constant(2, net.inputs(), 0.5);
      (void)net.predict_proba(X);
    }
  } catch (const nmsnn::IoError&) {
  }
  try {
    (void)nmsnn::load_model<nmsnn::DenseNetwork<nmsnn::Regression>>(path);
  } catch (const nmsnn::IoError&) {
  }
  try {
    (void)nmsnn::inspect_model(path);
  } catch (const nmsnn::IoError&) {
  }
  return 0;
}
