// A user's program: train a small spiking classifier on synthetic data, save it, load it
// back and check that the loaded model predicts the same labels. Exit 0 when it does.
#include <nmsnn/nmsnn.hpp>

#include <cstdio>

int main() {
  const auto data = nmsnn::make_classification({.samples = 400, .features = 6, .informative = 4, .seed = 3});
  nmsnn::SpikingNetwork<nmsnn::BinaryClassification> net({.inputs = 6, .hidden = {32}, .time_steps = 32, .seed = 1});
  nmsnn::Adam adam({.learning_rate = 1e-2});
  net.fit(data.X, data.y, adam, {.epochs = 5, .batch_size = 32, .progress = nmsnn::Progress::off});
  const double acc = net.score(data.X, data.y);
  nmsnn::save_model("embed_model.safetensors", net);
  const auto back = nmsnn::load_model<nmsnn::SpikingNetwork<nmsnn::BinaryClassification>>("embed_model.safetensors");
  const bool same = back.predict(data.X) == net.predict(data.X);
  std::printf("embed: training accuracy %.3f, %s after save and load\n", acc, same ? "same predictions" : "DIFFERENT predictions");
  return same && acc > 0.6 ? 0 : 1;
}
