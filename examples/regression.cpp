// Regression on house_price (three features of the real estate valuation data, target the
// price per unit area) with a real spiking regressor: T = 64, hidden 100, mean readout, Adam
// 1e-3, batch 32, 100 epochs, 75/25 split; targets standardised internally. pynmsnn's own
// "spiking" regressor ignores its spiking layers; this one does not.
//
//   nmsnn-regression [--epochs N] [--seeds K] [--data FILE.csv] [--report FILE.html] ...
#include "demo.hpp"

int main(int argc, char** argv) {
  return demo::guarded(argv[0], [&] {
    const demo::Args a = demo::parse_args(argc, argv);
    return demo::run<nmsnn::Regression>(demo::protocol("house_price"), a, demo::load_dataset("house_price", a));
  });
}
