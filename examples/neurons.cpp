// Neuron visualisation (pynmsnn's visualize_all_neurons and visualize_neuron): trains the iris
// network briefly, records every layer on one test sample and writes SVG pictures: heat maps
// of each layer's inner state and output through time, one neuron's trace, the spike raster
// and the firing-rate histogram.
//
//   nmsnn-neurons [--out DIR] [--sample I] [--layer L] [--neuron N] [--epochs E]
#include <filesystem>

#include "demo.hpp"

using nmsnn::Index;

int main(int argc, char** argv) {
  return demo::guarded(argv[0], [&] {
    std::string out = "neurons";
    Index sample = 0, layer = 0, epochs = 100;
    std::optional<Index> neuron;
    for (int i = 1; i < argc; ++i) {
      const std::string s = argv[i];
      if (s == "--help") {
        std::cout << "usage: nmsnn-neurons [--out DIR] [--sample I] [--layer L] [--neuron N] [--epochs E]\n";
        return 0;
      }
      if (i + 1 >= argc) throw nmsnn::ValueError("unknown option or missing value: '" + s + "' (see --help)");
      const std::string v = argv[++i];
      if (s == "--out") out = v;
      else if (s == "--sample") sample = std::stol(v);
      else if (s == "--layer") layer = std::stol(v);
      else if (s == "--neuron") neuron = std::stol(v);
      else if (s == "--epochs") epochs = std::stol(v);
      else throw nmsnn::ValueError("unknown option '" + s + "' (see --help)");
    }
    const demo::Data d = demo::load_dataset("iris", {});
    const auto split = nmsnn::train_test_split(d.X.rows(), 0.2, 0);
    nmsnn::Scaler scaler = nmsnn::StandardScaler();
    const Eigen::MatrixXd Xtr = scaler.fit_transform(nmsnn::take_rows(d.X, split.train));
    const Eigen::MatrixXd Xte = scaler.transform(nmsnn::take_rows(d.X, split.test));
    nmsnn::SpikingNetwork<nmsnn::MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {100}, .seed = 0});
    nmsnn::Adam adam;
    net.fit(Xtr, nmsnn::take_rows(d.y, split.train), adam, {.epochs = epochs, .batch_size = Xtr.rows(), .progress = nmsnn::Progress::off});
    if (layer < 0 || layer >= net.num_layers()) throw nmsnn::ValueError("--layer must be in 0.." + std::to_string(net.num_layers() - 1));
    const nmsnn::Recording rec = nmsnn::record_activity(net, Xte, sample);
    if (!neuron) rec.layers[std::size_t(layer)].firing_rate.maxCoeff(&neuron.emplace());
    std::filesystem::create_directories(out);
    auto write = [&](const std::string& name, const std::string& svg) {
      nmsnn::write_file_atomically((std::filesystem::path(out) / name).string(), svg);
      std::cout << "wrote " << (std::filesystem::path(out) / name).string() << "\n";
    };
    for (Index l = 0; l < net.num_layers(); ++l) {
      write("layer" + std::to_string(l + 1) + "_state.svg", nmsnn::viz::layer_heatmap(rec, l, false));
      write("layer" + std::to_string(l + 1) + "_output.svg", nmsnn::viz::layer_heatmap(rec, l, true));
      std::printf("layer %ld: %ld neurons, mean firing rate %.1f%%\n", long(l + 1), long(rec.layers[std::size_t(l)].state.rows()),
                  100 * rec.layers[std::size_t(l)].mean_firing_rate);
    }
    write("neuron_trace.svg", nmsnn::viz::neuron_trace(rec, layer, *neuron, net.layer(layer).neuron().threshold));
    write("raster.svg", nmsnn::viz::layer_raster(rec, layer));
    write("firing_rates.svg", nmsnn::viz::firing_rate_histogram(rec, layer));
    return 0;
  });
}
