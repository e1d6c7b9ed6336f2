// Pictures: recordings against hand-computed traces and the engine's readout, every plot kind
// well-formed XML, and the report holding the plots that apply to its task. The SVGs and
// reports written here (into viz_out/) are checked again by xmllint and, rendered by headless
// Chromium, by the browser test (tests/browser_check.sh).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "test_helpers.hpp"

using namespace nmsnn;


namespace {

// A strict little XML well-formedness checker: balanced, properly nested tags, quoted
// attributes, no stray '<' or '&' in text, known entities only. Returns "" when well-formed.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  std::size_t i = 0;
  auto entity_ok = [&](std::size_t p) {
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
      if (s.compare(p, std::strlen(e), e) == 0) return true;
    return false;
  };
  while (i < s.size()) {
    if (s[i] == '&' && !entity_ok(i)) return "bad entity at " + std::to_string(i);
    if (s[i] != '<') {
      ++i;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      const auto e = s.find("-->", i);
      if (e == std::string::npos) return "unterminated comment";
      i = e + 3;
      continue;
    }
    if (s.compare(i, 2, "<?") == 0 || s.compare(i, 2, "<!") == 0) {
      const auto e = s.find('>', i);
      if (e == std::string::npos) return "unterminated declaration";
      i = e + 1;
      continue;
    }
    const bool closing = s[i + 1] == '/';
    std::size_t j = i + (closing ? 2 : 1);
    std::string name;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == ':' || s[j] == '_')) name += s[j++];
    if (name.empty()) return "empty tag name at " + std::to_string(i);
    bool self_closing = false;
    while (j < s.size() && s[j] != '>') {
      if (s[j] == '"' || s[j] == '\'') {
        const auto e = s.find(s[j], j + 1);
        if (e == std::string::npos) return "unterminated attribute in <" + name + ">";
        if (s.substr(j + 1, e - j - 1).find('<') != std::string::npos) return "'<' in an attribute of <" + name + ">";
        j = e + 1;
        continue;
      }
      if (s[j] == '=' && j + 1 < s.size() && s[j + 1] != '"' && s[j + 1] != '\'') return "unquoted attribute in <" + name + ">";
      if (s[j] == '/' && j + 1 < s.size() && s[j + 1] == '>') self_closing = true;
      if (s[j] == '<') return "'<' inside tag <" + name + ">";
      ++j;
    }
    if (j >= s.size()) return "unterminated tag <" + name + ">";
    if (closing) {
      if (stack.empty() || stack.back() != name) return "</" + name + "> does not close <" + (stack.empty() ? "" : stack.back()) + ">";
      stack.pop_back();
    } else if (!self_closing) {
      stack.push_back(name);
    }
    i = j + 1;
  }
  if (!stack.empty()) return "<" + stack.back() + "> is never closed";
  return "";
}

std::string out_dir() {
  const std::string d = "viz_out";
  std::filesystem::create_directories(d);
  return d;
}

void save(const std::string& name, const std::string& svg) {
  std::ofstream(out_dir() + "/" + name) << svg;
}

}  // namespace

TEST_CASE("the XML checker rejects malformed documents") {
  CHECK(xml_problem("<svg><rect x=\"1\"/></svg>").empty());
  CHECK_FALSE(xml_problem("<svg><rect x=\"1\"></svg>").empty());
  CHECK_FALSE(xml_problem("<svg><text>a < b</text></svg>").empty());
  CHECK_FALSE(xml_problem("<svg><text>a & b</text></svg>").empty());
  CHECK_FALSE(xml_problem("<svg><rect x=1/></svg>").empty());
  CHECK(xml_problem("<svg><text>a &amp; b</text></svg>").empty());
}

TEST_CASE("a recording matches a hand-computed trace") {
  // One input, one neuron, direct encoding: a_t = w x + b = 0.6 at every step.
  SpikingNetwork<Regression, double> net({.inputs = 1, .outputs = 1, .hidden = {1}, .time_steps = 5,
                                          .readout = Readout::sum, .encoder = Encoding::direct});
  net.layer(0).set_weights(Eigen::MatrixXd::Constant(1, 1, 1.0));
  net.layer(0).set_bias(Eigen::VectorXd::Zero(1));
  net.layer(1).set_weights(Eigen::MatrixXd::Constant(1, 1, 2.0));
  net.layer(1).set_bias(Eigen::VectorXd::Constant(1, 0.1));
  const Eigen::MatrixXd X = Eigen::MatrixXd::Constant(1, 1, 0.6);
  const Recording r = record_activity(net, X, 0);
  // Layer 1: u0 = 0.6, v0 = 0.6; u1 = 0.6 + 0.54 = 1.14 fires: o1 = 0.14, v1 = 1.14 - 1.5 * 1.14 = -0.57;
  // u2 = 0.6 - 0.513 = 0.087, v2 = 0.087; u3 = 0.6 + 0.0783 = 0.6783. Emitted one step late.
  const auto& L = r.layers[0];
  CHECK(L.state(0, 0) == 0.0);
  CHECK(L.state(0, 1) == Approx(0.6));
  CHECK(L.state(0, 2) == Approx(-0.57));
  CHECK(L.state(0, 3) == Approx(0.087));
  CHECK(L.state(0, 4) == Approx(0.6783));
  CHECK(L.output(0, 2) == Approx(0.14));
  CHECK(L.output(0, 1) == 0.0);
  CHECK(L.output(0, 3) == 0.0);
  CHECK(L.firing_rate(0) == Approx(0.2));  // one step of five
  // Layer 2 reads layer 1's emitted output: a_t = 2 o + 0.1, so a = 0.1 except a_2 = 0.38.
  // v: 0.1, 0.19, 0.551, 0.5959 (at t = 0..3), emitted at t = 1..4.
  const auto& O = r.layers[1];
  CHECK(O.state(0, 1) == Approx(0.1));
  CHECK(O.state(0, 2) == Approx(0.19));
  CHECK(O.state(0, 3) == Approx(0.551));
  CHECK(O.state(0, 4) == Approx(0.5959));
  CHECK(r.readout(0) == Approx(0.1 + 0.19 + 0.551 + 0.5959));
}

TEST_CASE("a recording reproduces the engine's readout with random masks") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  const Eigen::MatrixXd X = StandardScaler().fit_transform(d.X);
  SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {20, 10}, .time_steps = 30, .begin_eval = 5, .seed = 3});
  Adam adam({.learning_rate = 1e-2});
  net.fit(X, d.y, adam, {.epochs = 2});
  const Eigen::MatrixXf D = net.decision_function(X);
  for (Index row : {0, 57, 149}) {
    const Recording r = record_activity(net, X, row);
    REQUIRE(r.layers.size() == 3);
    CHECK(r.layers[0].state.rows() == 20);
    CHECK(r.layers[2].state.cols() == 30);
    for (Index k = 0; k < 3; ++k) CHECK(r.readout(k) == Approx(D(row, k)).margin(1e-4));
  }
  SpikingNetwork<BinaryClassification> bin({.inputs = 4, .hidden = {16}, .time_steps = 40, .seed = 5});
  const Eigen::MatrixXf Db = bin.decision_function(X);
  const Recording rb = record_activity(bin, X, 77);
  CHECK(rb.readout(0) == Approx(Db(77, 0)).epsilon(1e-4).margin(1e-4));
  CHECK_THROWS_AS(record_activity(net, X, 150), ValueError);
  CHECK_THROWS_AS(record_activity(net, Eigen::MatrixXd(2, 3), 0), ShapeError);
}

TEST_CASE("every plot kind is a well-formed SVG with its labels") {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  const Eigen::MatrixXd X = StandardScaler().fit_transform(d.X);
  SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {24}, .time_steps = 32, .seed = 1});
  Adam adam({.learning_rate = 1e-2});
  const History h = net.fit(X, d.y, adam, {.epochs = 4, .validation_fraction = 0.2});
  const Recording rec = record_activity(net, X, 10);
  const Labels y = d.y.cast<int>();
  const Labels p = net.predict(X);
  const Eigen::MatrixXd proba = net.predict_proba(X).cast<double>();
  const std::vector<std::string> names{"setosa", "versicolor", "virginica"};
  Eigen::VectorXd yr = X.col(2), pr = X.col(2) * 0.9 + X.col(3) * 0.1;

  std::map<std::string, std::string> plots{
      {"heatmap_state.svg", viz::layer_heatmap(rec, 0, false)},
      {"heatmap_output.svg", viz::layer_heatmap(rec, 0, true)},
      {"trace.svg", viz::neuron_trace(rec, 0, 3)},
      {"raster.svg", viz::layer_raster(rec, 0)},
      {"firing_rates.svg", viz::firing_rate_histogram(rec, 0)},
      {"loss.svg", viz::loss_curves(h)},
      {"accuracy.svg", viz::metric_curves(h, "accuracy")},
      {"confusion.svg", viz::confusion_matrix_plot(confusion_matrix(y, p, 3), names)},
      {"confusion_normalized.svg", viz::confusion_matrix_plot(confusion_matrix(y, p, 3), names, true)},
      {"roc.svg", viz::roc_plot(y, proba, names)},
      {"pr.svg", viz::precision_recall_plot(y, proba, names)},
      {"classes.svg", viz::class_distribution(y, 3, names)},
      {"regression_fit.svg", viz::regression_fit(yr, pr)},
      {"residuals.svg", viz::residual_plot(yr, pr)},
      {"errors.svg", viz::error_histogram(yr, pr)},
  };
  for (const auto& [name, svg] : plots) {
    INFO(name);
    CHECK(xml_problem(svg).empty());
    CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
    CHECK(svg.find("<script") == std::string::npos);
    CHECK(svg.find("<text") != std::string::npos);  // title, ticks, labels
    save(name, svg);
  }
  CHECK(plots["confusion.svg"].find("versicolor") != std::string::npos);
  CHECK(plots["roc.svg"].find("AUC") != std::string::npos);
  CHECK(plots["pr.svg"].find("AP ") != std::string::npos);
  CHECK(plots["trace.svg"].find("threshold") != std::string::npos);
  CHECK(plots["loss.svg"].find("validation") != std::string::npos);
  CHECK(plots["regression_fit.svg"].find("R²") != std::string::npos);
  // Text that needs escaping is escaped.
  CHECK(xml_problem(viz::bar_chart({"a<b", "c&d"}, {1, 2}, {.title = "\"x\" & 'y'"})).empty());
  // Two-class confusion matrices carry precision, recall and F1.
  Eigen::MatrixXi C2(2, 2);
  C2 << 5, 1, 2, 7;
  const std::string c2 = viz::confusion_matrix_plot(C2);
  CHECK(c2.find("precision 0.875") != std::string::npos);  // 7 / 8
  CHECK(c2.find("recall 0.778") != std::string::npos);     // 7 / 9
  CHECK(c2.find("accuracy 0.800") != std::string::npos);   // 12 / 15
  CHECK_THROWS_AS(viz::bar_chart({"a"}, {1, 2}, {}), ShapeError);
}

TEST_CASE("reports hold the plots of their task and are written atomically") {
  const Dataset iris = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv");
  const Eigen::MatrixXd X = StandardScaler().fit_transform(iris.X);
  SpikingNetwork<MulticlassClassification> snn({.inputs = 4, .outputs = 3, .hidden = {30}, .time_steps = 32, .seed = 2});
  Adam adam({.learning_rate = 1e-2});
  const History h = snn.fit(X, iris.y, adam, {.epochs = 3, .validation_fraction = 0.2});
  Report r = make_report(snn, X, iris.y, {.title = "iris <test>", .data_name = "iris.csv",
                                           .class_names = {"setosa", "versicolor", "virginica"}, .history = &h});
  const std::string html = r.html();
  CHECK(xml_problem(html.substr(html.find("<html"))).empty());
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == html.find("http://www.w3.org/2000/svg"));  // no link but the SVG namespace
  CHECK(html.find("iris &lt;test&gt;") != std::string::npos);
  CHECK(html.find("Neuron activity") != std::string::npos);
  CHECK(r.figures() == 2 + 5 + 2 * 2 + 3);  // training, classification, heat maps per layer, trace/raster/rates
  const std::string path = out_dir() + "/report_multiclass.html";
  r.save(path);
  CHECK(std::filesystem::file_size(path) == html.size());

  const Dataset house = read_csv(std::string(NMSNN_TEST_DATA) + "/house_price.csv", {.target = std::string("house_price")});
  const Eigen::MatrixXd Xh = StandardScaler().fit_transform(house.X);
  DenseNetwork<Regression> mlp({.inputs = Xh.cols(), .seed = 1});
  Adam adam2({.learning_rate = 1e-2});
  const History hh = mlp.fit(Xh, house.y, adam2, {.epochs = 5, .batch_size = 32});
  Report rr = make_report(mlp, Xh, house.y, {.title = "house prices", .target_name = "house_price", .history = &hh});
  const std::string hr = rr.html();
  CHECK(xml_problem(hr.substr(hr.find("<html"))).empty());
  CHECK(hr.find("Predicted vs actual") != std::string::npos);
  CHECK(hr.find("Neuron activity") == std::string::npos);
  CHECK(rr.figures() == 2 + 3);
  rr.save(out_dir() + "/report_regression.html");

  SpikingNetwork<BinaryClassification> bin({.inputs = 4, .hidden = {16}, .time_steps = 20, .seed = 3});
  const Eigen::VectorXd yb = (iris.y.array() > 0.5).cast<double>();
  Report rb = make_report(bin, X, yb, {.title = "binary"});
  CHECK(rb.html().find("ROC AUC") != std::string::npos);
  CHECK(rb.figures() == 5 + 2 * 2 + 3);
  CHECK_THROWS_AS(make_report(bin, X, yb.head(10)), ShapeError);
}
