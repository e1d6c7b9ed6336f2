// pynmsnn's binary classification demo: make_classification data (10,000 samples, 20
// features; examples/data/binary_synthetic.csv is that data), T = 500, hidden 64, sum readout,
// Adam 1e-3, batch 64, 50 epochs, 80/20 stratified split; the dense baseline beside it.
// --noise-features N appends N standard-normal noise features (the demo's option: 20000).
//
//   nmsnn-binary [--epochs N] [--seeds K] [--noise-features N] [--report FILE.html] ...
#include "demo.hpp"

int main(int argc, char** argv) {
  return demo::guarded(argv[0], [&] {
    const demo::Args a = demo::parse_args(argc, argv, " [--noise-features N]");
    demo::Data d = demo::load_dataset("binary", a);
    if (a.noise_features > 0) {
      // Noise drawn from the library's counter-based generator: the same columns every run.
      nmsnn::CounterRng rng(1234, nmsnn::RandomDomain::split, 7);
      const nmsnn::Index n = d.X.rows(), f = d.X.cols();
      d.X.conservativeResize(n, f + a.noise_features);
      for (nmsnn::Index j = f; j < f + a.noise_features; ++j)
        for (nmsnn::Index i = 0; i < n; ++i) d.X(i, j) = rng.normal();
      d.source += " + " + std::to_string(a.noise_features) + " noise features";
    }
    return demo::run<nmsnn::BinaryClassification>(demo::protocol("binary"), a, d);
  });
}
