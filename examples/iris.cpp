// The main demo: pynmsnn's multiclass demo on iris (T = 64, hidden 100, mean readout, Adam),
// trained on a seeded 80/20 split, with the test accuracy and a confusion matrix.
//
//   nmsnn-iris [path/to/iris.csv] [--epochs N]
#include <nmsnn/nmsnn.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

int main(int argc, char** argv) try {
  std::string path = std::string(NMSNN_DATA_DIR) + "/iris.csv";
  long epochs = 100;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--epochs") == 0 && i + 1 < argc) epochs = std::stol(argv[++i]);
    else if (std::strcmp(argv[i], "--help") == 0) {
      std::cout << "usage: nmsnn-iris [iris.csv] [--epochs N]\n";
      return 0;
    } else path = argv[i];
  }
  const nmsnn::Dataset data = nmsnn::read_csv(path, {.target = std::string("target")});

  // Seeded shuffle, 80% train / 20% test, features standardised on the training part.
  const auto order = nmsnn::detail::shuffled_indices(data.rows(), 42, 0);
  const Eigen::Index n_train = data.rows() * 4 / 5, n_test = data.rows() - n_train;
  Eigen::MatrixXd Xtr(n_train, data.features()), Xte(n_test, data.features());
  Eigen::VectorXd ytr(n_train), yte(n_test);
  for (Eigen::Index i = 0; i < data.rows(); ++i) {
    const auto r = order[std::size_t(i)];
    if (i < n_train) Xtr.row(i) = data.X.row(r), ytr(i) = data.y(r);
    else Xte.row(i - n_train) = data.X.row(r), yte(i - n_train) = data.y(r);
  }
  const Eigen::RowVectorXd mean = Xtr.colwise().mean();
  const Eigen::RowVectorXd sd =
      ((Xtr.rowwise() - mean).array().square().colwise().sum() / double(n_train)).sqrt();
  Xtr = (Xtr.rowwise() - mean).array().rowwise() / sd.array();
  Xte = (Xte.rowwise() - mean).array().rowwise() / sd.array();

  nmsnn::SpikingNetwork<nmsnn::MulticlassClassification> net(
      {.inputs = data.features(), .outputs = 3, .hidden = {100}, .time_steps = 64, .seed = 1});
  nmsnn::Adam adam({.learning_rate = 1e-3});
  std::cout << "nmsnn iris demo: " << n_train << " training and " << n_test << " test samples, "
            << net.parameter_count() << " parameters, T = " << net.time_steps() << ", "
            << nmsnn::num_threads() << " thread(s)\n";
  const auto t0 = std::chrono::steady_clock::now();
  const nmsnn::History h = net.fit(Xtr, ytr, adam, {.epochs = epochs, .batch_size = n_train});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (std::size_t e = 0; e < h.loss.size(); e += std::max<std::size_t>(1, h.loss.size() / 5))
    std::printf("  epoch %4zu  loss %.4f\n", e + 1, h.loss[e]);
  std::printf("  epoch %4zu  loss %.4f\n", h.loss.size(), h.loss.back());

  const Eigen::VectorXi pred = net.predict(Xte);
  Eigen::Matrix3i confusion = Eigen::Matrix3i::Zero();
  for (Eigen::Index i = 0; i < n_test; ++i) confusion(int(yte(i)), pred(i)) += 1;
  std::printf("training time %.2f s; train accuracy %.3f; test accuracy %.3f\n", seconds,
              net.score(Xtr, ytr), net.score(Xte, yte));
  std::cout << "confusion matrix (rows: true class, columns: predicted)\n" << confusion << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "nmsnn-iris: " << e.what() << "\n";
  return 2;
}
