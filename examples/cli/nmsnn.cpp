// nmsnn — the command line: train, evaluate, predict with and inspect spiking (and dense)
// models on CSV files.
//
//   nmsnn fit DATA.csv --target COL [--task auto|binary|multiclass|regression] [--model snn|mlp]
//         [--hidden 100[,50]] [--time-steps 64] [--begin-eval 0] [--encoder rate|direct|bernoulli]
//         [--neuron graded|leaky|synaptic] [--reset scale|subtract|zero|none]
//         [--surrogate atan|fast_sigmoid|sigmoid|straight_through] [--slope K] [--decay B] [--alpha A]
//         [--threshold T] [--learn-decay] [--learn-alpha] [--learn-threshold] [--readout sum|mean|max|last]
//         [--output-neuron li] [--epochs N] [--batch-size B] [--optimizer adam|sgd] [--lr X]
//         [--test-size 0.25] [--scale standard|minmax|none] [--seed S] [--threads N]
//         [--out MODEL] [--report REPORT.html] [--force] [--memory-limit SIZE] [--json]
//         [--distributed] [--group-size 16] [--checkpoint PATH --checkpoint-every N] [--resume]
//   nmsnn evaluate MODEL DATA.csv --target COL [--json] [--report REPORT.html] [--force] [--by-position]
//   nmsnn predict MODEL DATA.csv [--out PREDICTIONS.csv] [--proba] [--force] [--by-position]
//   nmsnn inspect MODEL
//
// Every mistake gets one line on standard error and exit status 2, and so does a failed write
// (standard output included). Outputs are checked before any work: an output may not be an
// input of the same command or another output, must be a regular file or a new one, and an
// existing file that is not an nmsnn file of that kind (model, report, predictions) is replaced
// only with --force.
//
// Distributed training (`mpirun -np P nmsnn fit ... --distributed`, in a build with
// NMSNN_MPI): each rank reads only its rows of the CSV file (rows i % P == rank), the targets
// are shared, the model is the same for any P; rank 0 alone prints, reports and saves. A rank's
// failure stops every rank. --checkpoint-every and --resume work with or without MPI (then the
// distributed algorithm runs in this one process).
#include <CLI/CLI.hpp>
#include <optional>
#include <nmsnn/distributed/communicator.hpp>
#include <nmsnn/nmsnn.hpp>
#if defined(NMSNN_HAVE_MPI)
#include <nmsnn/distributed/mpi.hpp>
#endif

#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace {

using nmsnn::Index;
using Binary = nmsnn::BinaryClassification;
using Multi = nmsnn::MulticlassClassification;
using Reg = nmsnn::Regression;
using AnyModel = std::variant<nmsnn::SpikingNetwork<Binary>, nmsnn::SpikingNetwork<Multi>, nmsnn::SpikingNetwork<Reg>,
                              nmsnn::DenseNetwork<Binary>, nmsnn::DenseNetwork<Multi>, nmsnn::DenseNetwork<Reg>>;

/// A mistake of the user's: reported as one line, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// How a class label of the CSV's target column is written (numbers without trailing zeros).
std::string label_text(double v) { return nmsnn::viz::format_number(v); }

/// The target column: by name, or by 0-based index when COL is a number not in the header.
nmsnn::CsvOptions csv_options(const std::string& target) {
  nmsnn::CsvOptions o;
  Index index = 0;
  const auto [end, ec] = std::from_chars(target.data(), target.data() + target.size(), index);
  if (!target.empty() && target.find_first_not_of("0123456789") == std::string::npos && ec == std::errc() &&
      end == target.data() + target.size()) {
    // An index, unless the header has a column of that name: read the header to decide.
    o.target = index;
  } else {
    o.target = target;  // a name (a number too large for an index is looked up as a name)
  }
  return o;
}

/// A size for --memory-limit: bytes, or with K, M, G or T (powers of 1024); 0 or "none": no limit.
std::size_t parse_size(const std::string& s) {
  if (s == "none") return 0;
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  std::string unit(end, s.data() + s.size());
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() == 2 && unit[1] == 'B') unit.pop_back();
  if (unit == "B") unit.clear();
  const int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : unit == "T" ? 40 : -1;
  if (ec != std::errc() || shift < 0 || !(v >= 0) || !std::isfinite(v) || std::ldexp(v, shift) >= 1.8e19)
    throw UsageError("--memory-limit: '" + s + "' is not a size (e.g. 512M, 2G, 0 for none)");
  return std::size_t(std::ldexp(v, shift));
}

// --- outputs --------------------------------------------------------------------------------

/// One output of a command: its option, path, kind, and how an existing file is recognised as
/// one nmsnn may replace.
struct Output {
  std::string option, path, kind;
  std::function<bool(const std::string&)> replaceable;
  std::string resolved;
};

/// Resolves and checks every output before the command does any work (see the top).
void check_outputs(std::vector<Output>& outs, const std::vector<std::pair<std::string, std::string>>& inputs, bool force) {
  for (auto& o : outs) {
    if (o.path.empty()) continue;
    const nmsnn::ResolvedOutput r = nmsnn::resolve_output(o.path, o.option);
    o.resolved = r.path;
    for (const auto& [what, in] : inputs) {
      std::error_code ec;
      const auto in_path = std::filesystem::weakly_canonical(in, ec);
      if (nmsnn::same_file(in, r.path) || (!ec && in_path.string() == r.path))
        throw UsageError(o.option + " '" + o.path + "' is the " + what + " '" + in + "': an input is never overwritten");
    }
    if (r.exists && !force && !o.replaceable(r.path))
      throw UsageError(o.option + " '" + o.path + "' exists and is not an nmsnn " + o.kind + " file; not replaced (--force replaces it)");
    nmsnn::check_writable(o.path, {.force = true, .where = o.option}, o.option);
  }
  for (std::size_t i = 0; i < outs.size(); ++i)
    for (std::size_t j = i + 1; j < outs.size(); ++j)
      if (!outs[i].path.empty() && !outs[j].path.empty() &&
          (outs[i].resolved == outs[j].resolved || nmsnn::same_file(outs[i].resolved, outs[j].resolved)))
        throw UsageError(outs[i].option + " and " + outs[j].option + " name the same file '" + outs[i].path + "'");
}

/// An existing predictions file nmsnn may replace: its first line is the header it would write.
std::function<bool(const std::string&)> predictions_file(const std::string& header_line) {
  return [header_line](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string first(header_line.size() + 2, '\0');
    in.read(first.data(), std::streamsize(first.size()));
    first.resize(std::size_t(in.gcount()));
    return first == header_line + "\n" || first == header_line + "\r\n" || first.rfind(header_line + "\n", 0) == 0;
  };
}

nmsnn::Dataset read_data(const std::string& path, const std::string& target, const nmsnn::Communicator* comm = nullptr) {
  nmsnn::CsvOptions o = csv_options(target);
  if (comm) o.row_stride = comm->size(), o.row_offset = comm->rank();
  if (std::holds_alternative<Index>(o.target)) {
    try {
      nmsnn::CsvOptions by_name;
      by_name.target = target;
      by_name.row_stride = o.row_stride, by_name.row_offset = o.row_offset;
      return nmsnn::read_csv(path, by_name);
    } catch (const nmsnn::IoError&) {
      // no column of that name: the number is an index
    }
  }
  return nmsnn::read_csv(path, o);
}

/// This rank's shard of the CSV file (rows i % P == rank) with the targets of every row: the
/// ranks exchange their targets (text labels: the union of every rank's, sorted, as read_csv
/// maps them on one machine).
nmsnn::Dataset read_data_distributed(const std::string& path, const std::string& target, nmsnn::Communicator& comm) {
  nmsnn::Dataset d;
  comm.collectively([&] { d = read_data(path, target, &comm); });
  const Index P = comm.size(), n = d.total_rows;
  const bool text = !d.class_names.empty();
  double kinds[2] = {text ? 1.0 : 0.0, text ? 0.0 : 1.0};
  comm.max_in_place(kinds);
  if (kinds[0] != 0 && kinds[1] != 0)
    throw nmsnn::IoError("read_csv: " + path + ": the target '" + d.target_name + "' holds numbers on some ranks' rows and text on others'");
  Eigen::VectorXd local = d.y;
  if (text) {
    std::string mine;
    for (const auto& c : d.class_names) mine += c + '\0';
    const std::vector<std::string> local_names = d.class_names;
    std::set<std::string> all;
    for (const auto& part : comm.all_gather(mine))
      for (std::size_t b = 0, e; b < part.size(); b = e + 1) all.insert(part.substr(b, (e = part.find('\0', b)) - b));
    std::map<std::string, int> code;
    d.class_names.assign(all.begin(), all.end());
    for (const auto& c : d.class_names) code.emplace(c, int(code.size()));
    for (Index i = 0; i < local.size(); ++i) local(i) = code[local_names[std::size_t(local(i))]];
  }
  const auto parts = comm.all_gather(nmsnn::detail::pack_doubles(std::span<const double>(local.data(), std::size_t(local.size()))));
  d.y.resize(n);
  for (Index r = 0; r < P; ++r) {
    const std::vector<double> v = nmsnn::detail::unpack_doubles(parts[std::size_t(r)]);
    for (std::size_t k = 0; k < v.size(); ++k) d.y(r + Index(k) * P) = v[k];
  }
  return d;
}

/// Classification labels as 0..K-1 with their names: string labels as read_csv mapped them,
/// numeric labels (integers) by their sorted distinct values.
struct Classes {
  nmsnn::Labels y;
  std::vector<std::string> names;
};

Classes encode_classes(const nmsnn::Dataset& d) {
  Classes c;
  c.y.resize(d.y.size());
  if (!d.class_names.empty()) {
    c.names = d.class_names;
    c.y = d.y.cast<int>();
    return c;
  }
  std::set<double> values(d.y.data(), d.y.data() + d.y.size());
  for (double v : values)
    if (v != std::round(v))
      throw UsageError("the target '" + d.target_name + "' holds non-integer values (" + label_text(v) +
                       "): use --task regression");
  std::map<double, int> code;
  for (double v : values) code.emplace(v, int(code.size())), c.names.push_back(label_text(v));
  for (Index i = 0; i < d.y.size(); ++i) c.y(i) = code[d.y(i)];
  return c;
}

/// Maps a data set's labels onto a saved model's class names.
nmsnn::Labels labels_for_model(const nmsnn::Dataset& d, const std::vector<std::string>& model_names) {
  nmsnn::Labels y(d.y.size());
  std::map<std::string, int> code;
  for (std::size_t k = 0; k < model_names.size(); ++k) code[model_names[k]] = int(k);
  for (Index i = 0; i < d.y.size(); ++i) {
    const std::string name = d.class_names.empty() ? label_text(d.y(i)) : d.class_names[std::size_t(d.y(i))];
    const auto it = code.find(name);
    if (it == code.end())
      throw UsageError("row " + std::to_string(i + 1) + ": class '" + name + "' of column '" + d.target_name +
                       "' was not among the model's classes");
    y(i) = it->second;
  }
  return y;
}

std::vector<Index> parse_hidden(const std::string& s) {
  std::vector<Index> h;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    char* end = nullptr;
    const long v = std::strtol(part.c_str(), &end, 10);
    if (part.empty() || *end || v < 1 || v > 1000000) throw UsageError("--hidden: '" + s + "' is not a list of widths >= 1 (e.g. 100 or 100,50)");
    h.push_back(v);
  }
  if (h.empty()) throw UsageError("--hidden: empty list");
  return h;
}

struct FitArgs {
  std::string data, target, task = "auto", model = "snn", hidden, encoder = "rate", reset, optimizer = "adam",
                            scale = "standard", out, report, neuron = "graded", surrogate, readout, output_neuron;
  std::optional<double> decay, alpha, threshold, slope;
  bool learn_decay = false, learn_alpha = false, learn_threshold = false;
  Index time_steps = 0, begin_eval = 0, epochs = 20, batch_size = 64;
  double lr = 0, test_size = 0.25;
  std::uint64_t seed = 0;
  int threads = 0;
  bool json = false, force = false;
  // Distributed training, checkpoints.
  bool distributed = false, resume = false;
  Index group_size = 16, checkpoint_every = 0;
  std::string checkpoint;
};

/// Test metrics as (name, value) pairs, from the network's readout R (outputs x n) of the rows
/// whose targets are y.
template <class Net>
std::vector<std::pair<std::string, double>> metrics_of_readout(const Net& net, const nmsnn::Matrix<typename Net::Scalar>& R,
                                                               const Eigen::MatrixXd& y) {
  using Task = typename Net::TaskT;
  std::vector<std::pair<std::string, double>> m;
  if constexpr (Task::is_classifier) {
    const nmsnn::Labels yl = y.col(0).cast<int>(), p = Task::labels(R);
    const auto r = nmsnn::classification_report(yl, p, net.classes());
    m = {{"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}, {"weighted_f1", r.weighted_f1}};
    const Eigen::MatrixXd proba = Task::probabilities(R).template cast<double>();
    bool all = true;
    for (Index k = 0; k < net.classes(); ++k) all = all && (yl.array() == int(k)).any();
    if (all) m.push_back({"roc_auc", net.classes() == 2 ? nmsnn::roc_auc(yl, proba.col(1)) : nmsnn::roc_auc_ovr(yl, proba)});
  } else {
    Eigen::VectorXd pred = R.row(0).transpose().template cast<double>();
    if (net.target_offset().size()) pred = (pred.array() * net.target_scale()(0) + net.target_offset()(0)).matrix();
    pred = pred.cast<typename Net::Scalar>().template cast<double>();  // as predict rounds it
    const auto r = nmsnn::regression_metrics(y.col(0), pred);
    m = {{"r2", r.r2}, {"rmse", r.rmse}, {"mae", r.mae}, {"mape", r.mape}, {"pearson_r", r.pearson_r}};
  }
  return m;
}

template <class Net>
std::vector<std::pair<std::string, double>> metrics_of(const Net& net, const Eigen::MatrixXd& X, const Eigen::MatrixXd& y) {
  return metrics_of_readout(net, nmsnn::Matrix<typename Net::Scalar>(net.decision_function(X).transpose()), y);
}

void print_metrics(const std::vector<std::pair<std::string, double>>& m) {
  for (const auto& [k, v] : m) std::printf("  %-12s %.4f\n", k.c_str(), v);
}

std::string metrics_json(const std::vector<std::pair<std::string, double>>& m) {
  std::string s = "{";
  for (std::size_t i = 0; i < m.size(); ++i) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s\"%s\": %.6g", i ? ", " : "", m[i].first.c_str(), m[i].second);
    s += buf;
  }
  return s + "}";
}

template <class Net>
nmsnn::Report report_for(const Net& net, const Eigen::MatrixXd& X, const Eigen::MatrixXd& y, const nmsnn::ModelExtras& ex,
                         const std::string& title, const nmsnn::History* h, const std::string& source) {
  return nmsnn::make_report(net, X, y, {.title = title, .data_name = source, .class_names = ex.class_names,
                                        .feature_names = ex.feature_names, .target_name = ex.target_name, .history = h});
}

/// comm: the distributed algorithm on its ranks (d.X is then this rank's shard, d.y every
/// row's target); nullptr: fit on this machine.
template <class Net>
int fit_with(const FitArgs& a, const nmsnn::Dataset& d, const Classes* classes, const char* picked, nmsnn::Communicator* comm) {
  using Task = typename Net::TaskT;
  constexpr bool spiking = requires(Net n) { n.time_steps(); };
  const bool primary = !comm || comm->rank() == 0;
  // Split (stratified for classifiers) and scale on the training part.
  const auto split = nmsnn::train_test_split(d.total_rows, a.test_size, a.seed, classes ? &classes->y : nullptr);
  Eigen::VectorXd y = classes ? Eigen::VectorXd(classes->y.cast<double>()) : d.y;
  nmsnn::ModelExtras ex{nmsnn::Scaler(nmsnn::parse_scaling(a.scale)), d.feature_names, d.target_name,
                        classes ? classes->names : std::vector<std::string>{}};
  Eigen::MatrixXd Xtr, Xs;  // the training rows (one machine); this rank's shard, scaled
  try {
    if (comm) {
      ex.scaler = nmsnn::fit_scaler_distributed(nmsnn::parse_scaling(a.scale), *comm, d.X, split.train);
      Xs = ex.scaler.transform(d.X);
    } else {
      Xtr = ex.scaler.fit_transform(nmsnn::take_rows(d.X, split.train));
    }
  } catch (const nmsnn::ValueError& e) {
    long j = -1;
    const char* c = std::strstr(e.what(), "column ");
    if (c && std::sscanf(c, "column %ld", &j) == 1 && j >= 0 && j < long(d.feature_names.size()))
      throw UsageError(std::string(e.what()) + " (column " + std::to_string(j) + " is '" + d.feature_names[std::size_t(j)] + "')");
    throw;
  }
  const Eigen::MatrixXd Xte = comm ? Eigen::MatrixXd() : ex.scaler.transform(nmsnn::take_rows(d.X, split.test));
  const Eigen::VectorXd ytr = nmsnn::take_rows(y, split.train), yte = nmsnn::take_rows(y, split.test);
  const Index train_rows = Index(split.train.size()), test_rows = Index(split.test.size());
  const Index outputs = classes ? (std::is_same_v<Task, Binary> ? 1 : Index(classes->names.size())) : 1;

  auto make = [&]() {
    std::vector<Index> hidden = a.hidden.empty() ? std::vector<Index>{} : parse_hidden(a.hidden);
    if constexpr (spiking) {
      nmsnn::SpikingOptions o{.inputs = d.features(), .outputs = outputs, .hidden = hidden, .begin_eval = a.begin_eval,
                              .encoder = nmsnn::parse_encoding(a.encoder), .seed = a.seed};
      if (a.time_steps) o.time_steps = a.time_steps;
      if (!a.readout.empty()) o.readout = nmsnn::parse_readout(a.readout);
      nmsnn::NeuronOptions& nr = o.neuron;
      nr.model = nmsnn::parse_neuron_model(a.neuron);
      nr.reset = nr.lif_family() ? nmsnn::Reset::subtract : nmsnn::Reset::scale;  // each model's default
      if (!a.reset.empty()) nr.reset = nmsnn::parse_reset(a.reset);
      if (!nr.lif_family() && (!a.surrogate.empty() || a.slope || a.alpha))
        throw UsageError("--surrogate, --slope and --alpha apply to --neuron leaky or synaptic, not to graded neurons");
      if (nr.model != nmsnn::NeuronModel::synaptic && (a.alpha || a.learn_alpha))
        throw UsageError("--alpha and --learn-alpha apply to --neuron synaptic (the synaptic current's decay)");
      if (!a.surrogate.empty()) nr.surrogate = nmsnn::parse_surrogate(a.surrogate);
      if (a.slope) nr.slope = *a.slope;
      if (a.decay) nr.decay = *a.decay;
      if (a.alpha) nr.alpha = *a.alpha;
      if (a.threshold) nr.threshold = *a.threshold;
      nr.learn_decay = a.learn_decay, nr.learn_alpha = a.learn_alpha, nr.learn_threshold = a.learn_threshold;
      try {
        nr.validate("--neuron " + a.neuron);
        if (a.output_neuron == "li") o.output_neuron = nmsnn::NeuronOptions::li(nr.decay);
        else if (!a.output_neuron.empty()) throw UsageError("--output-neuron: only li is an output layer of its own");
        return Net(o);
      } catch (const nmsnn::Error& e) {
        throw UsageError(e.what());
      }
    } else {
      if (a.neuron != "graded" || !a.reset.empty() || a.decay || a.alpha || a.threshold || a.slope || a.learn_decay ||
          a.learn_alpha || a.learn_threshold || !a.readout.empty() || !a.output_neuron.empty())
        throw UsageError("neuron and readout settings apply to spiking models (--model snn), not to --model mlp");
      return Net({.inputs = d.features(), .outputs = outputs, .hidden = hidden, .seed = a.seed});
    }
  };
  Net net = make();
  if (primary)
    std::fprintf(stderr, "nmsnn: task %s%s; %s model, %ld parameters; %ld training and %ld test rows%s\n",
                 std::string(Task::name).c_str(), picked, spiking ? "spiking" : "dense (MLP)", long(net.parameter_count()),
                 long(train_rows), long(test_rows),
                 comm ? (" (distributed over " + std::to_string(comm->size()) + " rank" + (comm->size() > 1 ? "s" : "") + ")").c_str() : "");
  const nmsnn::FitOptions fo{.epochs = a.epochs, .batch_size = std::min<Index>(a.batch_size, train_rows), .seed = a.seed,
                             .threads = a.threads};
  const nmsnn::DistributedOptions dopt{.group_size = a.group_size, .checkpoint_every = a.checkpoint_every,
                                       .checkpoint = a.checkpoint, .resume = a.resume};
  nmsnn::History h;
  const auto t0 = std::chrono::steady_clock::now();
  auto train = [&](auto& opt) {
    if (comm) h = nmsnn::fit_distributed(net, *comm, Xs, ytr, opt, fo, dopt, split.train);
    else h = net.fit(Xtr, ytr, opt, fo);
  };
  if (a.optimizer == "adam") {
    nmsnn::Adam opt({.learning_rate = a.lr > 0 ? a.lr : 1e-3});
    train(opt);
  } else {
    nmsnn::Sgd opt({.learning_rate = a.lr > 0 ? a.lr : 1e-2, .momentum = 0.9});
    train(opt);
  }
  const double train_s = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  const auto m = comm ? metrics_of_readout(net, nmsnn::distributed_readout(net, *comm, Xs, split.test), yte) : metrics_of(net, Xte, yte);
  const double predict_s = seconds_since(t1);
  // The report's test rows: gathered on rank 0 when distributed.
  const Eigen::MatrixXd Xreport = comm && a.report.size() ? nmsnn::gather_rows(*comm, Xs, split.test) : Xte;
  auto write_outputs = [&] {
    if (!primary) return;
    if (a.out.size()) nmsnn::save_model(a.out, net, ex, {.force = a.force});
    if (a.report.size()) report_for(net, Xreport, Eigen::MatrixXd(yte), ex, "nmsnn fit: " + a.data, &h, a.data).save(a.report, a.force);
  };
  if (comm) comm->collectively(write_outputs);
  else write_outputs();
  if (!primary) return 0;
  if (a.json) {
    std::printf("{\"task\": \"%s\", \"model\": \"%s\", \"metrics\": %s, \"timings\": {\"train_s\": %.4f, \"predict_s\": %.4f}, "
                "\"epochs\": %ld, \"train_rows\": %ld, \"test_rows\": %ld}\n",
                std::string(Task::name).c_str(), spiking ? "snn" : "mlp", metrics_json(m).c_str(), train_s, predict_s,
                long(h.loss.size()), long(train_rows), long(test_rows));
  } else {
    std::printf("trained %ld epochs in %.2f s (final training loss %.4f)\ntest metrics (%ld rows, %.3f s):\n", long(h.loss.size()),
                train_s, h.loss.empty() ? 0.0 : h.loss.back(), long(test_rows), predict_s);
    print_metrics(m);
    if (a.out.size()) std::printf("model saved to %s\n", a.out.c_str());
    if (a.report.size()) std::printf("report written to %s\n", a.report.c_str());
  }
  return 0;
}

/// comm: distributed training (--distributed, or the one-process communicator for
/// --checkpoint-every and --resume); nullptr: a plain fit.
int run_fit(const FitArgs& a, nmsnn::Communicator* comm) {
  if (!(a.test_size > 0 && a.test_size < 1)) throw UsageError("--test-size must be in (0, 1)");
  if (std::isnan(a.lr) || a.lr < 0) throw UsageError("--lr must be > 0");
  if ((a.checkpoint_every > 0 || a.resume) && a.checkpoint.empty())
    throw UsageError("--checkpoint-every and --resume need --checkpoint PATH");
  if (!a.checkpoint.empty() && a.checkpoint_every == 0 && !a.resume)
    throw UsageError("--checkpoint PATH needs --checkpoint-every N (write) or --resume (read)");
  if (a.threads) nmsnn::set_num_threads(a.threads);
  // Every output checked before the data are read and the model trained (by rank 0).
  std::vector<Output> outs{{"--out", a.out, "model", nmsnn::detail::is_model_file, {}},
                           {"--report", a.report, "report", nmsnn::Report::is_report_file, {}}};
  if (a.checkpoint_every > 0) outs.push_back({"--checkpoint", a.checkpoint, "checkpoint", nmsnn::detail::is_model_file, {}});
  auto check = [&] { check_outputs(outs, {{"training data", a.data}}, a.force); };
  if (comm) comm->collectively([&] { if (comm->rank() == 0) check(); });
  else check();
  const nmsnn::Dataset d = comm ? read_data_distributed(a.data, a.target, *comm) : read_data(a.data, a.target);
  std::string task = a.task;
  std::string picked;
  if (task == "auto") {
    std::set<double> values(d.y.data(), d.y.data() + d.y.size());
    bool integers = true;
    for (double v : values) integers = integers && v == std::round(v);
    const std::size_t limit = std::max<std::size_t>(2, std::min<std::size_t>(20, std::size_t(d.total_rows) / 5));
    if (!d.class_names.empty() || (integers && values.size() <= limit)) {
      task = values.size() == 2 ? "binary" : "multiclass";
      picked = " (auto: " + std::string(d.class_names.empty() ? "integer" : "text") + " target with " + std::to_string(values.size()) +
               " distinct values)";
    } else {
      task = "regression";
      picked = " (auto: numeric target with " + std::to_string(values.size()) + " distinct values)";
    }
  }
  std::unique_ptr<Classes> classes;
  if (task != "regression") {
    classes = std::make_unique<Classes>(encode_classes(d));
    const std::size_t k = classes->names.size();
    if (k < 2) throw UsageError("the target '" + d.target_name + "' has a single class: nothing to classify");
    if (task == "binary" && k != 2)
      throw UsageError("--task binary, but the target '" + d.target_name + "' has " + std::to_string(k) + " classes");
  } else if (!d.class_names.empty()) {
    throw UsageError("--task regression, but the target '" + d.target_name + "' holds text");
  }
  const bool snn = a.model == "snn";
  if (task == "binary") return snn ? fit_with<nmsnn::SpikingNetwork<Binary>>(a, d, classes.get(), picked.c_str(), comm)
                                   : fit_with<nmsnn::DenseNetwork<Binary>>(a, d, classes.get(), picked.c_str(), comm);
  if (task == "multiclass") return snn ? fit_with<nmsnn::SpikingNetwork<Multi>>(a, d, classes.get(), picked.c_str(), comm)
                                       : fit_with<nmsnn::DenseNetwork<Multi>>(a, d, classes.get(), picked.c_str(), comm);
  return snn ? fit_with<nmsnn::SpikingNetwork<Reg>>(a, d, nullptr, picked.c_str(), comm)
             : fit_with<nmsnn::DenseNetwork<Reg>>(a, d, nullptr, picked.c_str(), comm);
}

AnyModel load_any(const std::string& path, nmsnn::ModelExtras& ex) {
  const auto meta = nmsnn::inspect_model(path);
  const std::string kind = meta.value("kind", ""), task = meta.value("task", "");
  if (meta.value("scalar", "float32") != "float32")
    throw nmsnn::IoError("'" + path + "' holds a float64 model; this command line reads float32 models");
  if (kind == "spiking") {
    if (task == "binary") return nmsnn::load_model<nmsnn::SpikingNetwork<Binary>>(path, &ex);
    if (task == "multiclass") return nmsnn::load_model<nmsnn::SpikingNetwork<Multi>>(path, &ex);
    if (task == "regression") return nmsnn::load_model<nmsnn::SpikingNetwork<Reg>>(path, &ex);
  } else if (kind == "dense") {
    if (task == "binary") return nmsnn::load_model<nmsnn::DenseNetwork<Binary>>(path, &ex);
    if (task == "multiclass") return nmsnn::load_model<nmsnn::DenseNetwork<Multi>>(path, &ex);
    if (task == "regression") return nmsnn::load_model<nmsnn::DenseNetwork<Reg>>(path, &ex);
  }
  throw nmsnn::IoError("'" + path + "' holds an unknown model (kind '" + kind + "', task '" + task + "')");
}

/// The features of a CSV file in the order the model was trained on: matched by name (every
/// feature of the model must be a column, and every column other than the target a feature of
/// the model; a renamed column is an error naming it), or by position with --by-position.
Eigen::MatrixXd model_features(const nmsnn::Dataset& d, const nmsnn::ModelExtras& ex, Index inputs, const std::string& path,
                               bool by_position) {
  if (by_position) {
    if (d.features() != inputs)
      throw UsageError(path + ": " + std::to_string(d.features()) + " feature columns, the model takes " + std::to_string(inputs));
    return ex.scaler.transform(d.X);
  }
  if (ex.feature_names.empty())
    throw UsageError(path + ": the model does not know its features' names; --by-position matches the columns by position");
  auto quoted = [](const std::vector<std::string>& names) {
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < 20; ++i) s += (i ? ", '" : "'") + names[i] + "'";
    return names.size() > 20 ? s + ", ..." : s;
  };
  auto has = [](const std::vector<std::string>& names, const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  std::vector<std::string> missing, unknown;
  for (const auto& n : ex.feature_names)
    if (!has(d.feature_names, n)) missing.push_back(n);
  for (const auto& n : d.feature_names)
    if (!has(ex.feature_names, n)) unknown.push_back(n);
  if (!missing.empty() || !unknown.empty()) {
    std::string msg = path + ": the columns do not match the model's features by name:";
    if (!missing.empty()) msg += " no column " + quoted(missing) + ";";
    if (!unknown.empty()) msg += " unknown column " + quoted(unknown) + " (not a feature of the model);";
    throw UsageError(msg + " the model's features are " + quoted(ex.feature_names) + " (--by-position matches the columns by position)");
  }
  Eigen::MatrixXd X(d.rows(), Index(ex.feature_names.size()));
  for (std::size_t j = 0; j < ex.feature_names.size(); ++j)
    X.col(Index(j)) = d.X.col(Index(std::find(d.feature_names.begin(), d.feature_names.end(), ex.feature_names[j]) - d.feature_names.begin()));
  return ex.scaler.transform(X);
}

int run_evaluate(const std::string& model_path, const std::string& data, const std::string& target, bool json,
                 const std::string& report, bool force, bool by_position) {
  std::vector<Output> outs{{"--report", report, "report", nmsnn::Report::is_report_file, {}}};
  check_outputs(outs, {{"model", model_path}, {"data file", data}}, force);
  nmsnn::ModelExtras ex;
  const AnyModel model = load_any(model_path, ex);
  const nmsnn::Dataset d = read_data(data, target.empty() ? ex.target_name : target);
  return std::visit(
      [&](const auto& net) {
        using Task = typename std::decay_t<decltype(net)>::TaskT;
        const Eigen::MatrixXd X = model_features(d, ex, net.inputs(), data, by_position);
        Eigen::MatrixXd y;
        if constexpr (Task::is_classifier) {
          if (ex.class_names.empty()) throw nmsnn::IoError(model_path + ": a classifier without class names");
          y = labels_for_model(d, ex.class_names).cast<double>();
        } else {
          if (!d.class_names.empty()) throw UsageError("the target '" + d.target_name + "' holds text, the model is a regressor");
          y = d.y;
        }
        const auto t0 = std::chrono::steady_clock::now();
        const auto m = metrics_of(net, X, y);
        const double s = seconds_since(t0);
        if (json) std::printf("{\"task\": \"%s\", \"rows\": %ld, \"metrics\": %s, \"predict_s\": %.4f}\n", std::string(Task::name).c_str(),
                              long(X.rows()), metrics_json(m).c_str(), s);
        else {
          std::printf("%s on %s (%ld rows):\n", model_path.c_str(), data.c_str(), long(X.rows()));
          print_metrics(m);
        }
        if (report.size()) {
          report_for(net, X, y, ex, "nmsnn evaluate: " + model_path + " on " + data, nullptr, data).save(report, force);
          if (!json) std::printf("report written to %s\n", report.c_str());
        }
        return 0;
      },
      model);
}

/// The header line of the predictions a model writes.
std::string predictions_header(const AnyModel& model, const nmsnn::ModelExtras& ex, bool proba) {
  std::string s = nmsnn::detail::csv_field(ex.target_name.empty() ? "prediction" : ex.target_name, ',');
  std::visit(
      [&](const auto& net) {
        using Task = typename std::decay_t<decltype(net)>::TaskT;
        if constexpr (Task::is_classifier) {
          for (Index k = 0; proba && k < net.classes(); ++k)
            s += "," + nmsnn::detail::csv_field(
                           "p_" + (std::size_t(k) < ex.class_names.size() ? ex.class_names[std::size_t(k)] : std::to_string(k)), ',');
        } else if (proba) {
          throw UsageError("--proba: the model is a regressor (no probabilities)");
        }
      },
      model);
  return s;
}

int run_predict(const std::string& model_path, const std::string& data, const std::string& out, bool proba, bool force,
                bool by_position) {
  nmsnn::ModelExtras ex;
  const AnyModel model = load_any(model_path, ex);
  const std::string header = predictions_header(model, ex, proba);
  std::vector<Output> outs{{"--out", out, "predictions", predictions_file(header), {}}};
  check_outputs(outs, {{"model", model_path}, {"data file", data}}, force);
  // When the file still has the target column, leave it out.
  nmsnn::Dataset d;
  bool has_target = false;
  if (!ex.target_name.empty()) {
    try {
      nmsnn::CsvOptions o;
      o.target = ex.target_name;
      d = nmsnn::read_csv(data, o);
      has_target = true;
    } catch (const nmsnn::IoError& e) {
      if (std::string(e.what()).find("no column named") == std::string::npos) throw;
    }
  }
  if (!has_target) {
    nmsnn::CsvOptions o;
    o.no_target = true;
    d = nmsnn::read_csv(data, o);
  }
  std::string csv = std::visit(
      [&](const auto& net) {
        using Task = typename std::decay_t<decltype(net)>::TaskT;
        const Eigen::MatrixXd X = model_features(d, ex, net.inputs(), data, by_position);
        std::string s = header + "\n";
        if constexpr (Task::is_classifier) {
          const nmsnn::Labels p = net.predict(X);
          Eigen::MatrixXf P;
          if (proba) P = net.predict_proba(X);
          for (Index i = 0; i < X.rows(); ++i) {
            s += nmsnn::detail::csv_field(std::size_t(p(i)) < ex.class_names.size() ? ex.class_names[std::size_t(p(i))] : std::to_string(p(i)), ',');
            for (Index k = 0; proba && k < P.cols(); ++k) {
              char buf[32];
              std::snprintf(buf, sizeof buf, ",%.6g", double(P(i, k)));
              s += buf;
            }
            s += "\n";
          }
        } else {
          const auto p = net.predict(X);
          for (Index i = 0; i < X.rows(); ++i) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.9g\n", double(p(i, 0)));
            s += buf;
          }
        }
        return s;
      },
      model);
  if (out.empty()) std::cout << csv;
  else {
    nmsnn::write_file_atomically(out, csv, {.kind = "predictions", .replaceable = predictions_file(header), .force = force, .where = "--out"});
    std::fprintf(stderr, "nmsnn: %ld predictions written to %s\n", long(d.rows()), out.c_str());
  }
  return 0;
}

int run_inspect(const std::string& path) {
  nmsnn::ModelExtras ex;
  const AnyModel model = load_any(path, ex);
  const auto meta = nmsnn::inspect_model(path);
  std::visit([&](const auto& net) { std::printf("parameters: %ld\n", long(net.parameter_count())); }, model);
  std::cout << meta.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // MPI starts before anything else when the job is distributed (MPI_Init may edit argv).
  bool distributed = false;
  for (int i = 1; i < argc; ++i) distributed = distributed || std::strcmp(argv[i], "--distributed") == 0;
#if defined(NMSNN_HAVE_MPI)
  std::optional<nmsnn::MpiSession> mpi_session;
  std::optional<nmsnn::MpiCommunicator> mpi_comm;
  if (distributed) mpi_session.emplace(argc, argv), mpi_comm.emplace();
#endif
  CLI::App app{"nmsnn: spiking neural networks for classification and regression on CSV files"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "nmsnn 0.1.0");

  FitArgs fa;
  auto* fit = app.add_subcommand("fit", "Train a model on a CSV file, print its test metrics, save it");
  fit->add_option("data", fa.data, "CSV file with a header row")->required();
  fit->add_option("--target", fa.target, "Target column: name or 0-based index")->required();
  fit->add_option("--task", fa.task, "auto picks classification for text or few integer values")
      ->check(CLI::IsMember({"auto", "binary", "multiclass", "regression"}));
  fit->add_option("--model", fa.model, "snn (spiking) or mlp (dense baseline)")->check(CLI::IsMember({"snn", "mlp"}));
  fit->add_option("--hidden", fa.hidden, "Hidden widths, e.g. 100 or 100,50 (default: the task's)");
  fit->add_option("--time-steps", fa.time_steps, "Time steps T (default: the task's)")->check(CLI::Range(Index(1), Index(1000000)));
  fit->add_option("--begin-eval", fa.begin_eval, "First step the readout reduces")->check(CLI::NonNegativeNumber);
  fit->add_option("--encoder", fa.encoder, "Input encoder")->check(CLI::IsMember({"rate", "direct", "bernoulli"}));
  fit->add_option("--neuron", fa.neuron, "Neuron model: graded (pynmsnn's, the default), leaky or synaptic (LIF)")
      ->check(CLI::IsMember({"graded", "leaky", "synaptic"}));
  fit->add_option("--reset", fa.reset, "Neuron reset (default: scale for graded, subtract for leaky and synaptic)")
      ->check(CLI::IsMember({"scale", "subtract", "zero", "none"}));
  fit->add_option("--surrogate", fa.surrogate, "LIF surrogate gradient (default atan)")
      ->check(CLI::IsMember({"atan", "fast_sigmoid", "sigmoid", "straight_through"}));
  fit->add_option("--slope", fa.slope, "Surrogate parameter (default: atan 2, sigmoids 25)")->check(CLI::PositiveNumber);
  fit->add_option("--decay", fa.decay, "Membrane decay: lambda (graded) or beta (LIF), default 0.9")->check(CLI::Range(0.0, 1.0));
  fit->add_option("--alpha", fa.alpha, "Synaptic current decay (synaptic neuron), default 0.8")->check(CLI::Range(0.0, 1.0));
  fit->add_option("--threshold", fa.threshold, "Firing threshold, default 1")->check(CLI::PositiveNumber);
  fit->add_flag("--learn-decay", fa.learn_decay, "Train each LIF neuron's beta");
  fit->add_flag("--learn-alpha", fa.learn_alpha, "Train each synaptic neuron's alpha");
  fit->add_flag("--learn-threshold", fa.learn_threshold, "Train each LIF neuron's threshold");
  fit->add_option("--readout", fa.readout,
                  "Reduction over steps: sum or mean (a spiking output layer: spike count or rate); "
                  "max or last (with --output-neuron li: its membrane)")
      ->check(CLI::IsMember({"sum", "mean", "max", "last"}));
  fit->add_option("--output-neuron", fa.output_neuron, "li: a non-spiking leaky-integrator output layer (membrane readout)")
      ->check(CLI::IsMember({"li"}));
  fit->add_option("--epochs", fa.epochs, "Training epochs (default 20)")->check(CLI::Range(Index(0), Index(1000000)));
  fit->add_option("--batch-size", fa.batch_size, "Mini-batch size (default 64)")->check(CLI::Range(Index(1), Index(1) << 40));
  fit->add_option("--optimizer", fa.optimizer, "adam or sgd (momentum 0.9)")->check(CLI::IsMember({"adam", "sgd"}));
  fit->add_option("--lr", fa.lr, "Learning rate (default: adam 1e-3, sgd 1e-2)")->check(CLI::PositiveNumber);
  fit->add_option("--test-size", fa.test_size, "Fraction held out for testing (default 0.25)")->check(CLI::Range(0.0, 1.0));
  fit->add_option("--scale", fa.scale, "Feature scaling")->check(CLI::IsMember({"standard", "minmax", "none"}));
  fit->add_option("--seed", fa.seed, "Seed of the split, the weights and the draws");
  fit->add_option("--threads", fa.threads, "Threads (0: all)")->check(CLI::Range(0, 4096));
  fit->add_option("--out", fa.out, "Save the model here (safetensors)");
  fit->add_option("--report", fa.report, "Write an HTML report here");
  fit->add_flag("--force", fa.force, "Replace an existing --out or --report file that nmsnn did not write");
  fit->add_flag("--json", fa.json, "One JSON line: task, model, metrics, timings");
  fit->add_flag("--distributed", fa.distributed,
                "Train on the ranks of an MPI job (mpirun -np P nmsnn fit ...): the same model for any P; needs a build with NMSNN_MPI");
  fit->add_option("--group-size", fa.group_size, "Distributed: samples per gradient group, the unit of work of a rank (default 16)")
      ->check(CLI::Range(Index(1), Index(1) << 30));
  fit->add_option("--checkpoint", fa.checkpoint, "Checkpoint file (with --checkpoint-every or --resume)");
  fit->add_option("--checkpoint-every", fa.checkpoint_every, "Write the checkpoint every N epochs (distributed training's algorithm)")
      ->check(CLI::Range(Index(1), Index(1000000)));
  fit->add_flag("--resume", fa.resume, "Continue from --checkpoint: the same command gives the model of the uninterrupted run");

  std::string model, data, target, out, report, memory_limit;
  bool json = false, proba = false, force = false, by_position = false;
  auto* eval = app.add_subcommand("evaluate", "Metrics of a saved model on a CSV file");
  eval->add_option("model", model, "Model file")->required();
  eval->add_option("data", data, "CSV file")->required();
  eval->add_option("--target", target, "Target column (default: the model's)");
  eval->add_flag("--json", json, "One JSON line");
  eval->add_option("--report", report, "Write an HTML report here");
  eval->add_flag("--force", force, "Replace an existing --report file that nmsnn did not write");
  auto* pred = app.add_subcommand("predict", "Predictions of a saved model for a CSV file");
  pred->add_option("model", model, "Model file")->required();
  pred->add_option("data", data, "CSV file (the target column, when present, is ignored)")->required();
  pred->add_option("--out", out, "Write the predictions here (default: standard output)");
  pred->add_flag("--proba", proba, "Add class probabilities");
  pred->add_flag("--force", force, "Replace an existing --out file that nmsnn did not write");
  for (auto* sub : {eval, pred})
    sub->add_flag("--by-position", by_position,
                  "Match the CSV's feature columns to the model's by position (default: by name; a missing or unknown column is an error)");
  for (auto* sub : {fit, eval, pred})
    sub->add_option("--memory-limit", memory_limit,
                    "Most memory training or predicting may take, e.g. 512M or 2G; 0: none (default: what the machine has free)");
  auto* insp = app.add_subcommand("inspect", "Describe a saved model");
  insp->add_option("model", model, "Model file")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "nmsnn: " << e.what() << " (see nmsnn --help)\n";
    return 2;
  }
  int status = 0;
  nmsnn::SerialCommunicator serial;
  nmsnn::Communicator* comm = nullptr;
  auto fail = [&](const std::string& msg) {
#if defined(NMSNN_HAVE_MPI)
    // An error of this rank alone (not agreed by every rank) must end the whole job.
    if (comm && comm->size() > 1 && !comm->agreed_failure()) nmsnn::MpiSession::abort("nmsnn: " + msg, 2);
#endif
    if (!comm || comm->rank() == 0) std::cerr << "nmsnn: " << msg << "\n";
    status = 2;
  };
  try {
    if (!memory_limit.empty()) nmsnn::set_memory_limit(parse_size(memory_limit));
    if (*fit && fa.distributed) {
#if defined(NMSNN_HAVE_MPI)
      comm = &*mpi_comm;
#else
      throw UsageError("--distributed: this nmsnn was built without MPI (configure with -DNMSNN_MPI=ON; Debian: libopenmpi-dev)");
#endif
    } else if (*fit && (fa.checkpoint_every > 0 || fa.resume)) {
      comm = &serial;
    }
    if (*fit) status = run_fit(fa, comm);
    else if (*eval) status = run_evaluate(model, data, target, json, report, force, by_position);
    else if (*pred) status = run_predict(model, data, out, proba, force, by_position);
    else status = run_inspect(model);
  } catch (const nmsnn::Error& e) {
    fail(e.what());
  } catch (const UsageError& e) {
    fail(e.what());
  } catch (const std::bad_alloc&) {
    fail("out of memory");
  } catch (const std::exception& e) {
    fail(std::string("internal error: ") + e.what());
  }
  // What went to standard output must have arrived (a full disk, a closed pipe).
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout) {
    std::cerr << "nmsnn: cannot write standard output: " << std::strerror(errno ? errno : EIO) << "\n";
    return 2;
  }
  return status;
}
