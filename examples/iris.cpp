// The main demo: pynmsnn's multiclass demo on iris (T = 64, hidden 100, mean readout, full
// batch, Adam 1e-3, 100 epochs, 80/20 stratified split), the dense baseline beside it, and an
// HTML report (iris_report.html) with the metrics, the training curves and every neuron.
//
//   nmsnn-iris [--epochs N] [--seeds K] [--report FILE.html] [--data iris.csv] ...
#include "demo.hpp"

int main(int argc, char** argv) {
  return demo::guarded(argv[0], [&] {
    const demo::Args a = demo::parse_args(argc, argv);
    return demo::run<nmsnn::MulticlassClassification>(demo::protocol("iris"), a, demo::load_dataset("iris", a));
  });
}
