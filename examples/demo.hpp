// examples/demo.hpp — what every pynmsnn demo does, once: split (seeded, stratified for
// classifiers), scale on the training part, train the spiking network and the dense baseline
// with the demo's protocol, print test metrics, times and the work each model does, write an
// HTML report, and with --seeds K repeat over K seeds and print mean ± sd (the README's table).
#pragma once

#include <nmsnn/nmsnn.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace demo {

using nmsnn::Index;

/// A pynmsnn demo's settings.
struct Protocol {
  std::string name;        ///< used for the report's file name and the JSON line
  std::string title;
  double test_size = 0.2;
  Index time_steps = 64;
  Index hidden = 100;
  Index epochs = 100;
  Index batch_size = 0;    ///< 0: the whole training set in one batch
  double learning_rate = 1e-3;
  nmsnn::Scaling scaling = nmsnn::Scaling::standard;
};

struct Args {
  std::string data;                 ///< CSV file (the demo's own by default)
  std::optional<Index> epochs;      ///< overrides the protocol
  int seeds = 1, first_seed = 0;
  std::string report;               ///< default: <name>_report.html; "none" for no report
  bool json = false, mlp = true, progress = false;
  int threads = 0;
  // demo-specific
  Index noise_features = 0;         ///< binary: extra noise features (pynmsnn's demo option: 20000)
  std::string mnist;                ///< digits: a folder with MNIST's IDX files
};

inline void usage(const char* prog, const std::string& extra) {
  std::cout << "usage: " << prog
            << " [--data FILE.csv] [--epochs N] [--seeds K] [--seed S] [--threads N]\n"
               "       [--report FILE.html|none] [--no-mlp] [--json] [--progress]"
            << extra << "\n";
}

/// Parses the shared options (and the demo-specific ones named in `extra`); exits with a
/// message and status 2 on a mistake, 0 after --help.
inline Args parse_args(int argc, char** argv, const std::string& extra = {}) {
  Args a;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::cerr << argv[0] << ": " << argv[i] << " needs a value\n";
      std::exit(2);
    }
    return argv[++i];
  };
  auto integer = [&](int& i, long lo) {
    const std::string opt = argv[i], v = need(i);
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || x < lo) {
      std::cerr << argv[0] << ": " << opt << " needs an integer >= " << lo << ", found '" << v << "'\n";
      std::exit(2);
    }
    return x;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      usage(argv[0], extra);
      std::exit(0);
    } else if (s == "--data") a.data = need(i);
    else if (s == "--epochs") a.epochs = integer(i, 0);
    else if (s == "--seeds") a.seeds = int(integer(i, 1));
    else if (s == "--seed") a.first_seed = int(integer(i, 0));
    else if (s == "--threads") a.threads = int(integer(i, 0));
    else if (s == "--report") a.report = need(i);
    else if (s == "--no-mlp") a.mlp = false;
    else if (s == "--json") a.json = true;
    else if (s == "--progress") a.progress = true;
    else if (s == "--noise-features" && extra.find("--noise-features") != std::string::npos) a.noise_features = integer(i, 0);
    else if (s == "--mnist" && extra.find("--mnist") != std::string::npos) a.mnist = need(i);
    else {
      std::cerr << argv[0] << ": unknown option '" << s << "' (see --help)\n";
      std::exit(2);
    }
  }
  return a;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Summary {
  std::vector<double> metric, train_s, infer_s;
  void add(double m, double t, double i) {
    metric.push_back(m), train_s.push_back(t), infer_s.push_back(i);
  }
  static double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
  }
  static double sd(const std::vector<double>& v) {  // sample standard deviation
    if (v.size() < 2) return 0;
    const double m = mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
  }
};

/// Published energy per operation, 45 nm CMOS, 32-bit floating point (M. Horowitz, "Computing's
/// energy problem (and what we can do about it)", ISSCC 2014): add 0.9 pJ, multiply 3.7 pJ.
inline constexpr double pj_add = 0.9, pj_mac = 0.9 + 3.7;

/// Data already split (MNIST's own train/test files) or to be split by the demo.
struct Data {
  Eigen::MatrixXd X, X_test;
  Eigen::VectorXd y, y_test;
  bool presplit = false;
  std::vector<std::string> class_names, feature_names;
  std::string target_name, source;
};

template <class Net>
Net make_net(const Protocol& p, Index inputs, Index outputs, std::uint64_t seed) {
  if constexpr (requires(Net n) { n.time_steps(); })
    return Net({.inputs = inputs, .outputs = outputs, .hidden = {p.hidden}, .time_steps = p.time_steps, .seed = seed});
  else
    return Net({.inputs = inputs, .outputs = outputs, .seed = seed});  // pynmsnn's dense baseline of the task
}

/// Test accuracy (classifiers) or R² from a model's predictions.
template <class Task, class P>
double test_metric(const P& predictions, const Eigen::VectorXd& y) {
  if constexpr (Task::is_classifier) return nmsnn::accuracy(y.cast<int>(), predictions);
  else return nmsnn::regression_metrics(y, predictions.col(0).template cast<double>()).r2;
}

/// Runs the demo; returns the process exit status.
template <class Task>
int run(const Protocol& p, const Args& a, const Data& d) {
  using Snn = nmsnn::SpikingNetwork<Task>;
  using Mlp = nmsnn::DenseNetwork<Task>;
  constexpr bool classifier = Task::is_classifier;
  const char* metric_name = classifier ? "accuracy" : "R2";
  if (a.threads) nmsnn::set_num_threads(a.threads);
  const Index epochs = a.epochs ? *a.epochs : p.epochs;
  const Index classes = classifier ? Index(d.y.maxCoeff()) + 1 : 0;
  const Index outputs = std::is_same_v<Task, nmsnn::BinaryClassification> || !classifier ? 1 : classes;
  const Index n_all = d.X.rows() + (d.presplit ? d.X_test.rows() : 0);
  std::printf("%s: %ld samples, %ld features%s; SNN: hidden %ld, T = %ld; %ld epochs, batch %s, Adam lr %g; %d thread(s)\n",
              p.title.c_str(), long(n_all), long(d.X.cols()), classifier ? (", " + std::to_string(classes) + " classes").c_str() : "",
              long(p.hidden), long(p.time_steps), long(epochs),
              p.batch_size ? std::to_string(p.batch_size).c_str() : "full", p.learning_rate, nmsnn::num_threads());
  Summary snn_sum, mlp_sum;
  for (int s = a.first_seed; s < a.first_seed + a.seeds; ++s) {
    // Split and scale.
    Eigen::MatrixXd Xtr, Xte;
    Eigen::VectorXd ytr, yte;
    if (d.presplit) {
      Xtr = d.X, ytr = d.y, Xte = d.X_test, yte = d.y_test;
    } else {
      const nmsnn::Labels strata = d.y.cast<int>();
      const auto split = nmsnn::train_test_split(d.X.rows(), p.test_size, std::uint64_t(s), classifier ? &strata : nullptr);
      Xtr = nmsnn::take_rows(d.X, split.train), ytr = nmsnn::take_rows(d.y, split.train);
      Xte = nmsnn::take_rows(d.X, split.test), yte = nmsnn::take_rows(d.y, split.test);
    }
    nmsnn::Scaler scaler(p.scaling);
    Xtr = scaler.fit_transform(Xtr);
    Xte = scaler.transform(Xte);
    const nmsnn::FitOptions fo{.epochs = epochs, .batch_size = p.batch_size ? p.batch_size : Xtr.rows(),
                               .seed = std::uint64_t(s),
                               .progress = a.progress ? nmsnn::Progress::on : nmsnn::Progress::off};

    Snn snn = make_net<Snn>(p, Xtr.cols(), outputs, std::uint64_t(s));
    nmsnn::Adam adam({.learning_rate = p.learning_rate});
    auto t0 = std::chrono::steady_clock::now();
    const nmsnn::History h = snn.fit(Xtr, ytr, adam, fo);
    const double snn_train = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    const auto snn_pred = snn.predict(Xte);
    const double snn_infer = seconds_since(t0);
    const double snn_metric = test_metric<Task>(snn_pred, yte);
    snn_sum.add(snn_metric, snn_train, snn_infer);

    double mlp_metric = 0, mlp_train = 0, mlp_infer = 0;
    std::optional<Mlp> mlp;
    if (a.mlp) {
      mlp.emplace(make_net<Mlp>(p, Xtr.cols(), outputs, std::uint64_t(s)));
      nmsnn::Adam adam2({.learning_rate = p.learning_rate});
      t0 = std::chrono::steady_clock::now();
      mlp->fit(Xtr, ytr, adam2, fo);
      mlp_train = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      const auto mlp_pred = mlp->predict(Xte);
      mlp_infer = seconds_since(t0);
      mlp_metric = test_metric<Task>(mlp_pred, yte);
      mlp_sum.add(mlp_metric, mlp_train, mlp_infer);
    }
    std::printf("seed %d: SNN test %s %.4f (train %.2f s, predict %.3f s)", s, metric_name, snn_metric, snn_train, snn_infer);
    if (a.mlp) std::printf(" | MLP test %s %.4f (train %.2f s, predict %.3f s)", metric_name, mlp_metric, mlp_train, mlp_infer);
    std::printf("\n");

    if (s == a.first_seed) {
      // The work of one inference per sample, and an energy estimate.
      const nmsnn::OperationCount ops = nmsnn::count_operations(snn, Xte, 100);
      const double snn_pj = ops.binary_ops * pj_add + (ops.synaptic_ops - ops.binary_ops) * pj_mac;
      std::printf("work per test sample (mean of %ld): SNN %.3g synaptic ops on non-zero inputs (%.1f%% of the %.3g of a dense run, ~%.3g nJ)",
                  long(ops.samples), ops.synaptic_ops, 100 * ops.synaptic_ops / ops.dense_ops, ops.dense_ops, snn_pj * 1e-3);
      if (mlp) std::printf(" | MLP %.3g multiply-accumulates (~%.3g nJ)", double(mlp->macs_per_sample()), double(mlp->macs_per_sample()) * pj_mac * 1e-3);
      std::printf("\n  energy: %.1f pJ per multiply-accumulate, %.1f pJ per accumulate (32-bit float, 45 nm; Horowitz, ISSCC 2014)\n", pj_mac, pj_add);
      if constexpr (classifier) std::cout << nmsnn::classification_report(yte.cast<int>(), snn_pred, classes, d.class_names.size() == std::size_t(classes) ? d.class_names : std::vector<std::string>{}).to_string();
      else {
        const auto m = nmsnn::regression_metrics(yte, snn_pred.col(0).template cast<double>());
        std::printf("SNN: R2 %.4f  RMSE %.4f  MAE %.4f  MAPE %.4f  Pearson r %.4f\n", m.r2, m.rmse, m.mae, m.mape, m.pearson_r);
      }
      const std::string path = a.report.empty() ? p.name + "_report.html" : a.report;
      if (path != "none") {
        std::vector<std::pair<std::string, std::string>> notes{
            {"training", std::to_string(epochs) + " epochs, Adam lr " + nmsnn::detail::num(p.learning_rate, 4) + ", " +
                             nmsnn::detail::num(snn_train, 2) + " s"},
            {"synaptic ops per sample", nmsnn::detail::num(ops.synaptic_ops, 0) + " (dense run: " + nmsnn::detail::num(ops.dense_ops, 0) + ")"}};
        nmsnn::Report r = nmsnn::make_report(snn, Xte, yte, {.title = p.title + " (seed " + std::to_string(s) + ")",
                                                             .data_name = d.source, .class_names = d.class_names,
                                                             .feature_names = d.feature_names, .target_name = d.target_name,
                                                             .history = &h, .notes = notes});
        if (mlp) {
          r.add_section("Spiking network vs dense MLP (same split)");
          r.add_table({"model", std::string("test ") + metric_name, "training (s)", "prediction (s)", "operations per sample"},
                      {{"SNN", nmsnn::detail::num(snn_metric), nmsnn::detail::num(snn_train, 2), nmsnn::detail::num(snn_infer, 3),
                        nmsnn::detail::num(ops.synaptic_ops, 0)},
                       {"MLP", nmsnn::detail::num(mlp_metric), nmsnn::detail::num(mlp_train, 2), nmsnn::detail::num(mlp_infer, 3),
                        std::to_string(mlp->macs_per_sample())}});
        }
        r.save(path);
        std::printf("report written to %s\n", path.c_str());
      }
    }
  }
  using S = Summary;
  std::printf("summary over %d seed(s): SNN %s %.4f ± %.4f, train %.2f s", a.seeds, metric_name, S::mean(snn_sum.metric),
              S::sd(snn_sum.metric), S::mean(snn_sum.train_s));
  if (a.mlp) std::printf(" | MLP %s %.4f ± %.4f, train %.2f s", metric_name, S::mean(mlp_sum.metric), S::sd(mlp_sum.metric), S::mean(mlp_sum.train_s));
  std::printf("\n");
  if (a.json) {
    std::printf("{\"demo\": \"%s\", \"seeds\": %d, \"epochs\": %ld, \"metric\": \"%s\", \"snn\": {\"mean\": %.6f, \"sd\": %.6f, \"train_s\": %.4f, \"predict_s\": %.4f}",
                p.name.c_str(), a.seeds, long(epochs), metric_name, S::mean(snn_sum.metric), S::sd(snn_sum.metric), S::mean(snn_sum.train_s),
                S::mean(snn_sum.infer_s));
    if (a.mlp)
      std::printf(", \"mlp\": {\"mean\": %.6f, \"sd\": %.6f, \"train_s\": %.4f, \"predict_s\": %.4f}", S::mean(mlp_sum.metric), S::sd(mlp_sum.metric),
                  S::mean(mlp_sum.train_s), S::mean(mlp_sum.infer_s));
    std::printf("}\n");
  }
  return 0;
}

/// Reads a demo's CSV file (target by name), the repository's copy unless --data says otherwise.
inline Data load_csv(const Args& a, const std::string& file, const std::string& target) {
  Data d;
  d.source = a.data.empty() ? std::string(NMSNN_DATA_DIR) + "/" + file : a.data;
  const nmsnn::Dataset ds = nmsnn::read_csv(d.source, {.target = target});
  d.X = ds.X, d.y = ds.y, d.class_names = ds.class_names, d.feature_names = ds.feature_names, d.target_name = ds.target_name;
  return d;
}

/// pynmsnn's demo protocols, by data set name: binary, iris, digits, house_price.
inline Protocol protocol(const std::string& name) {
  if (name == "binary")
    return {.name = "binary", .title = "Binary classification (make_classification)", .time_steps = 500, .hidden = 64,
            .epochs = 50, .batch_size = 64};
  if (name == "iris") return {.name = "iris", .title = "Iris (multiclass)"};
  if (name == "digits") return {.name = "digits", .title = "Digits (multiclass)", .epochs = 30, .batch_size = 64};
  if (name == "house_price")
    return {.name = "house_price", .title = "House prices (regression)", .test_size = 0.25, .batch_size = 32};
  throw nmsnn::ValueError("unknown data set '" + name + "' (binary, iris, digits, house_price)");
}

/// The repository's copy of a demo's data set (or --data's file), target column by name.
inline Data load_dataset(const std::string& name, const Args& a) {
  if (name == "binary") return load_csv(a, "binary_synthetic.csv", "target");
  if (name == "house_price") return load_csv(a, "house_price.csv", "house_price");
  Data d = load_csv(a, name + ".csv", "target");
  if (name == "iris" && d.class_names.empty() && a.data.empty()) d.class_names = {"setosa", "versicolor", "virginica"};
  return d;
}

/// main()'s body: runs f, turning nmsnn's errors into one line on stderr and exit status 2.
template <class F>
int guarded(const char* prog, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    std::cerr << prog << ": " << e.what() << "\n";
    return 2;
  }
}

}  // namespace demo
