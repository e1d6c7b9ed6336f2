// "SNN vs dense MLP" on one of the demo data sets (default digits), with pynmsnn's protocol:
// test accuracy (or R²), training and prediction time, and the work each model does per
// sample — synaptic operations the spiking network actually performs (non-zero inputs times
// fan-out, every step) against the MLP's multiply-accumulates — with an energy estimate from
// published per-operation figures (Horowitz, ISSCC 2014; printed with the results).
//
//   nmsnn-snn-vs-mlp [binary|iris|digits|house_price] [--epochs N] [--seeds K] ...
#include "demo.hpp"

int main(int argc, char** argv) {
  return demo::guarded(argv[0], [&] {
    std::string name = "digits";
    if (argc > 1 && argv[1][0] != '-') {
      name = argv[1];
      --argc, ++argv;
    }
    const demo::Args a = demo::parse_args(argc, argv, " (first argument: binary, iris, digits or house_price)");
    demo::Protocol p = demo::protocol(name);
    p.name += "_snn_vs_mlp";
    const demo::Data d = demo::load_dataset(name, a);
    if (name == "binary") return demo::run<nmsnn::BinaryClassification>(p, a, d);
    if (name == "house_price") return demo::run<nmsnn::Regression>(p, a, d);
    return demo::run<nmsnn::MulticlassClassification>(p, a, d);
  });
}
