// Multiclass on digits (8x8 handwritten digits, the MNIST stand-in that ships with the
// repository): T = 64, hidden 100, mean readout, Adam 1e-3, batch 64, 30 epochs, 80/20
// stratified split. With --mnist DIR it trains on MNIST from the four IDX files in DIR
// (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte), pixels scaled to [0, 1], on MNIST's own train/test split.
//
//   nmsnn-digits [--epochs N] [--seeds K] [--mnist DIR] [--report FILE.html] ...
#include <filesystem>

#include "demo.hpp"

int main(int argc, char** argv) {
  return demo::guarded(argv[0], [&] {
    const demo::Args a = demo::parse_args(argc, argv, " [--mnist DIR]");
    demo::Protocol p = demo::protocol("digits");
    demo::Data d;
    if (!a.mnist.empty()) {
      const std::vector<std::string> files{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                           "t10k-labels-idx1-ubyte"};
      for (const auto& f : files)
        if (!std::filesystem::exists(std::filesystem::path(a.mnist) / f)) {
          std::cerr << argv[0] << ": MNIST file '" << f << "' not found in '" << a.mnist
                    << "' (the four IDX files, uncompressed: gunzip them first)\n";
          return 2;
        }
      const auto path = [&](int i) { return (std::filesystem::path(a.mnist) / files[std::size_t(i)]).string(); };
      d.X = nmsnn::read_idx_images(path(0)), d.y = nmsnn::read_idx_labels(path(1));
      d.X_test = nmsnn::read_idx_images(path(2)), d.y_test = nmsnn::read_idx_labels(path(3));
      d.presplit = true;
      d.source = "MNIST (" + a.mnist + ")";
      p = {.name = "mnist", .title = "MNIST (multiclass)", .epochs = 10, .batch_size = 128, .scaling = nmsnn::Scaling::minmax};
    } else {
      d = demo::load_dataset("digits", a);
    }
    return demo::run<nmsnn::MulticlassClassification>(p, a, d);
  });
}
