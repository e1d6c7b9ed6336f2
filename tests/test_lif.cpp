// The LIF family (Leaky, Synaptic; resets, surrogates, learnable β, α, θ) against snnTorch's own
// code: fixtures/snntorch/lif_cases.json, made by fixtures/snntorch/make_snntorch_fixtures.py
// from snnTorch's repository at the commit it names, in double precision.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {

const nlohmann::json& cases() {
  static const nlohmann::json j = test::load_json("snntorch/lif_cases.json");
  return j;
}

Eigen::VectorXd vec(const nlohmann::json& j) {
  Eigen::VectorXd v(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) v(Eigen::Index(i)) = j[i].get<double>();
  return v;
}

NeuronOptions options_of(const std::string& kind, const nlohmann::json& c) {
  if (kind == "li") {
    NeuronOptions o = NeuronOptions::li();
    o.learn_decay = true;
    return o;
  }
  NeuronOptions o = kind == "leaky" ? NeuronOptions::leaky() : NeuronOptions::synaptic();
  o.reset = parse_reset(c["reset"].get<std::string>());
  o.surrogate = parse_surrogate(c["surrogate"].get<std::string>());
  o.slope = c["slope"].get<double>();
  o.learn_decay = o.learn_threshold = true;
  o.learn_alpha = kind == "synaptic";
  return o;
}

// Worst relative error of each quantity over all cases, for the summary line.
std::map<std::string, double>& worst() {
  static std::map<std::string, double> w;
  return w;
}

double rel(const std::string& what, const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, double floor = 1e-9) {
  REQUIRE(a.size() == b.size());
  const double e = test::max_rel_error(a, b, floor);
  worst()[what] = std::max(worst()[what], e);
  return e;
}

void print_worst(const char* title) {
  std::cout << title << ":";
  for (const auto& [k, v] : worst()) std::cout << " " << k << " " << v;
  std::cout << "\n";
  worst().clear();
}

// One neuron layer over the case's currents, in chunks of `chunk` steps (the state carried
// across), with the loss sum(cS S) + sum(cM M) + sum(cJ J) driven back through the layer.
void run_neuron_case(const nlohmann::json& c, Index chunk) {
  const Index T = c["T"], B = c["B"], n = c["n"], nB = n * B;
  const std::string kind = c["neuron"];
  const bool syn = kind == "synaptic";
  SpikingLayer<double> layer(1, n, options_of(kind, c));
  layer.set_beta(vec(c["beta"]));
  if (syn) layer.set_alpha(vec(c["alpha"]));
  layer.set_thresholds(vec(c["threshold"]));
  // The fixture's T x B x n arrays are the engine's layout already: element (t*B + b)*n + i.
  Eigen::VectorXd A = vec(c["current"]), M(T * nB), J(T * nB);
  Eigen::VectorXd m = Eigen::VectorXd::Zero(nB), j = Eigen::VectorXd::Zero(nB);
  for (Index t0 = 0; t0 < T; t0 += chunk) {
    const Index steps = std::min(chunk, T - t0);
    layer.lif_scan_forward(A.data() + t0 * nB, M.data() + t0 * nB, syn ? J.data() + t0 * nB : nullptr, steps, B,
                           m.data(), syn ? j.data() : nullptr);
  }
  const Eigen::VectorXd cS = vec(c["cS"]), cM = vec(c["cM"]), cJ = vec(c["cJ"]);
  CHECK(rel("spikes", A, vec(c["spk"])) == 0);
  CHECK(rel("membranes", M, vec(c["mem"])) < 1e-13);
  double loss = cS.dot(A) + cM.dot(M);
  if (syn) {
    CHECK(rel("synaptic", J, vec(c["syn"])) < 1e-13);
    loss += cJ.dot(J);
  }
  CHECK(rel("loss", Eigen::MatrixXd::Constant(1, 1, loss), Eigen::MatrixXd::Constant(1, 1, c["loss"].get<double>())) <
        1e-12);

  Eigen::VectorXd D(T * nB), dm = Eigen::VectorXd::Zero(nB), dj = Eigen::VectorXd::Zero(nB);
  Eigen::VectorXd bias = Eigen::VectorXd::Zero(nB), sb = bias, sa = bias, st = bias;
  for (Index t0 = (T - 1) / chunk * chunk; t0 >= 0; t0 -= chunk) {
    const Index steps = std::min(chunk, T - t0), o = t0 * nB;
    neuron::BackwardChunk<double> bc;
    bc.D = D.data() + o;
    bc.M = M.data() + o;
    bc.M_before = t0 > 0 ? M.data() + o - nB : nullptr;
    bc.J = syn ? J.data() + o : nullptr;
    bc.J_before = syn && t0 > 0 ? J.data() + o - nB : nullptr;
    bc.GS = cS.data() + o, bc.GM = cM.data() + o, bc.GJ = syn ? cJ.data() + o : nullptr;
    bc.dm = dm.data(), bc.dj = syn ? dj.data() : nullptr;
    bc.bias_sum = bias.data(), bc.beta_sum = sb.data(), bc.alpha_sum = syn ? sa.data() : nullptr;
    bc.theta_sum = st.data();
    layer.lif_scan_backward(bc, steps, B);
  }
  auto per_neuron = [&](const Eigen::VectorXd& s) { return Eigen::VectorXd(s.reshaped(n, B).rowwise().sum()); };
  layer.set_decay_gradients(per_neuron(sb), syn ? per_neuron(sa) : Eigen::VectorXd(), per_neuron(st));
  CHECK(rel("d_current", D, vec(c["d_current"])) < 1e-11);
  CHECK(rel("d_beta", layer.beta_gradient(), vec(c["d_beta"])) < 1e-11);
  CHECK(rel("d_threshold", layer.threshold_gradient(), vec(c["d_threshold"])) < 1e-11);
  if (syn) CHECK(rel("d_alpha", layer.alpha_gradient(), vec(c["d_alpha"])) < 1e-11);
  // the bias sum is the current's gradient summed over steps
  CHECK(rel("bias_sum", per_neuron(bias), per_neuron(D.reshaped(nB, T).rowwise().sum())) < 1e-12);
}

template <class Task>
void run_network_case(const nlohmann::json& c) {
  const Index T = c["T"];
  const std::vector<std::string> kinds = c["neurons"];
  SpikingNetwork<Task, double> net({.inputs = c["inputs"].get<Index>(),
                                    .outputs = c["outputs"].get<Index>(),
                                    .hidden = {c["hidden"].get<Index>()},
                                    .time_steps = T,
                                    .begin_eval = c["begin_eval"].get<Index>(),
                                    .readout = parse_readout(c["readout"].get<std::string>()),
                                    .encoder = Encoding::direct,
                                    .neuron = options_of(kinds[0], c),
                                    .output_neuron = options_of(kinds[1], c)});
  for (Index l = 0; l < 2; ++l) {
    const auto& lj = c["layers"][std::size_t(l)];
    auto& layer = net.layer(l);
    layer.set_neuron(options_of(kinds[std::size_t(l)], c));
    layer.set_weights(test::to_matrix(lj["W"]));
    layer.set_bias(vec(lj["b"]));
    layer.set_beta(vec(lj["beta"]));
    layer.set_thresholds(vec(lj["threshold"]));
    if (lj.contains("alpha")) layer.set_alpha(vec(lj["alpha"]));
  }
  const Eigen::MatrixXd X = test::to_matrix(c["x"]), y = test::to_matrix(c["y"]);
  CHECK(rel("readout", net.decision_function(X), test::to_matrix(c["readout_value"]), 1e-12) < 1e-14);
  double loss = 0;
  if (c["loss_name"] == "dot") {
    const Eigen::MatrixXd Xb = X.transpose();
    std::vector<std::uint32_t> ids(std::size_t(X.rows()));
    const Eigen::MatrixXd R = net.forward_train(Xb, ids.data(), {});
    loss = (R.transpose().array() * y.array()).sum();
    net.backward_batch(Xb, ids.data(), {}, y.transpose());
  } else {
    loss = net.compute_gradients(X, y);
  }
  CHECK(rel("loss", Eigen::MatrixXd::Constant(1, 1, loss), Eigen::MatrixXd::Constant(1, 1, c["loss"].get<double>())) <
        1e-12);
  for (Index l = 0; l < 2; ++l) {
    const auto& lj = c["layers"][std::size_t(l)];
    const auto& layer = net.layer(l);
    CHECK(rel("dW", layer.weight_gradient(), test::to_matrix(lj["dW"])) < 1e-10);
    CHECK(rel("db", layer.bias_gradient(), vec(lj["db"])) < 1e-10);
    CHECK(rel("d_beta", layer.beta_gradient(), vec(lj["d_beta"])) < 1e-10);
    if (lj.contains("d_threshold")) CHECK(rel("d_threshold", layer.threshold_gradient(), vec(lj["d_threshold"])) < 1e-10);
    if (lj.contains("alpha")) CHECK(rel("d_alpha", layer.alpha_gradient(), vec(lj["d_alpha"])) < 1e-10);
  }
}

}  // namespace

TEST_CASE("Leaky and Synaptic neurons equal snnTorch's for every reset and surrogate, in chunks or not", "[lif]") {
  const auto& all = cases();
  INFO("snnTorch " << all["snntorch_version"].get<std::string>() << " at " << all["snntorch_commit"].get<std::string>());
  int n = 0;
  for (const auto& c : all["cases"]) {
    if (c["kind"] != "neuron") continue;
    INFO(c["neuron"].get<std::string>() << " reset " << c["reset"].get<std::string>() << " surrogate "
                                        << c["surrogate"].get<std::string>() << " slope " << c["slope"].get<double>());
    for (Index chunk : {Index(16), Index(5), Index(1)}) run_neuron_case(c, chunk);
    ++n;
  }
  CHECK(n == 42);
  print_worst("snnTorch neuron cases, worst relative error");
}

TEST_CASE("Networks of LIF layers equal snnTorch's: readout (spike count or rate, or an li layer's membrane by max "
          "or mean or last) and loss and every gradient", "[lif]") {
  int n = 0;
  for (const auto& c : cases()["cases"]) {
    if (c["kind"] != "network") continue;
    INFO(c["neurons"].dump() << " " << c["loss_name"].get<std::string>() << " reset " << c["reset"].get<std::string>()
                             << " surrogate " << c["surrogate"].get<std::string>());
    for (std::size_t chunk : {std::size_t(0), std::size_t(256)}) {  // one chunk of all steps, and chunks of 4
      test::EngineChunkBytes bytes(chunk);
      const std::string loss = c["loss_name"];
      if (loss == "ce" || loss == "ce_max" || loss == "ce_membrane") run_network_case<MulticlassClassification>(c);
      else if (loss == "bce") run_network_case<BinaryClassification>(c);
      else run_network_case<Regression>(c);
    }
    ++n;
  }
  CHECK(n == 10);
  print_worst("snnTorch network cases, worst relative error");
}

namespace {

Eigen::MatrixXd iris_scaled(Eigen::VectorXd* y) {
  const Dataset d = read_csv(std::string(NMSNN_TEST_DATA) + "/iris.csv", {.target = std::string("target")});
  *y = d.y;
  auto s = StandardScaler();
  return s.fit_transform(d.X);
}

}  // namespace

TEST_CASE("a leaky network with learnt beta and threshold trains on iris, and beta and theta move", "[lif]") {
  Eigen::VectorXd y;
  const Eigen::MatrixXd X = iris_scaled(&y);
  NeuronOptions nr = NeuronOptions::leaky(0.8);
  nr.learn_decay = nr.learn_threshold = true;
  SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {32}, .time_steps = 16,
                                                .encoder = Encoding::direct, .neuron = nr, .seed = 3});
  CHECK(net.parameter_count() == (4 * 32 + 32 + 2 * 32) + (32 * 3 + 3 + 2 * 3));
  Adam adam({.learning_rate = 2e-2});
  const auto h = net.fit(X, y, adam, {.epochs = 60, .batch_size = 16, .seed = 1});
  const double acc = net.score(X, y);
  INFO("leaky iris training accuracy " << acc << ", loss " << h.loss.front() << " -> " << h.loss.back());
  CHECK(acc >= 0.93);
  CHECK(h.loss.back() < 0.7 * h.loss.front());
  CHECK((net.layer(0).beta().array() != 0.8f).any());
  CHECK((net.layer(0).thresholds().array() != 1.0f).any());
}

TEST_CASE("LIF training gives the same model whatever the thread count", "[lif]") {
  Eigen::VectorXd y;
  const Eigen::MatrixXd X = iris_scaled(&y);
  auto train = [&](int threads) {
    NeuronOptions nr = NeuronOptions::synaptic(0.7, 0.85);
    nr.learn_decay = nr.learn_alpha = nr.learn_threshold = true;
    nr.surrogate = Surrogate::fast_sigmoid;
    SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {40}, .time_steps = 24,
                                                  .encoder = Encoding::rate, .neuron = nr, .seed = 5});
    Adam adam({.learning_rate = 1e-2});
    net.fit(X, y, adam, {.epochs = 3, .batch_size = 50, .seed = 2, .threads = threads});
    return net;
  };
  const auto a = train(1), b = train(2);
  for (Index l = 0; l < a.num_layers(); ++l) {
    CHECK(a.layer(l).weights() == b.layer(l).weights());
    CHECK(a.layer(l).beta() == b.layer(l).beta());
    CHECK(a.layer(l).alpha() == b.layer(l).alpha());
    CHECK(a.layer(l).thresholds() == b.layer(l).thresholds());
  }
}

TEST_CASE("a network mixing graded, leaky and synaptic layers saves, loads and predicts bit-identically", "[lif]") {
  Eigen::VectorXd y;
  const Eigen::MatrixXd X = iris_scaled(&y);
  SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {16, 12}, .time_steps = 20,
                                                .begin_eval = 3, .seed = 11});
  NeuronOptions leaky = NeuronOptions::leaky(0.9, 0.8, Reset::zero);
  leaky.learn_threshold = true;
  leaky.surrogate = Surrogate::sigmoid;
  leaky.slope = 7;
  NeuronOptions syn = NeuronOptions::synaptic(0.6, 0.75, 1.1, Reset::none);
  syn.learn_alpha = true;
  net.layer(1).set_neuron(leaky);
  net.layer(2).set_neuron(syn);
  Adam adam({.learning_rate = 1e-2});
  net.fit(X, y, adam, {.epochs = 2, .batch_size = 30});
  CHECK((net.layer(2).alpha().array() != 0.6f).any());  // learnt
  const std::string path = "nmsnn_test_lif_model_" + std::to_string(::getpid()) + ".safetensors";
  save_model(path, net);
  const auto back = load_model<SpikingNetwork<MulticlassClassification>>(path);
  std::remove(path.c_str());
  CHECK(back.predict_proba(X) == net.predict_proba(X));
  CHECK(back.layer(0).neuron().model == NeuronModel::graded);
  CHECK(back.layer(1).neuron().model == NeuronModel::leaky);
  CHECK(back.layer(1).neuron().reset == Reset::zero);
  CHECK(back.layer(1).neuron().surrogate == Surrogate::sigmoid);
  CHECK(back.layer(1).neuron().slope == 7);
  CHECK(back.layer(1).neuron().learn_threshold);
  CHECK(back.layer(1).thresholds() == net.layer(1).thresholds());
  CHECK(back.layer(2).neuron().model == NeuronModel::synaptic);
  CHECK(back.layer(2).neuron().learn_alpha);
  CHECK(back.layer(2).alpha() == net.layer(2).alpha());
  CHECK(back.layer(2).beta() == net.layer(2).beta());
  // the recording replays the same network: its readout is decision_function's row
  const Recording rec = record_activity(net, X, 7);
  CHECK(rec.layers[1].spikes);
  CHECK(!rec.layers[0].spikes);
  CHECK((rec.layers[2].output.array() == 0 || rec.layers[2].output.array() == 1).all());
  const Eigen::VectorXd row = net.decision_function(X.row(7)).row(0).transpose().cast<double>();
  CHECK((rec.readout - row).cwiseAbs().maxCoeff() < 1e-5);
}

TEST_CASE("a graded layer below a LIF layer: the engine's gradients equal a per-step transcription", "[lif]") {
  // Graded layer 1 (emits one step late), leaky layer 2 reading it, spike count readout; the
  // reference below is written from MODEL.md step by step, for one sample, without the engine.
  const Index F = 3, H = 4, K = 2, T = 9;
  SpikingNetwork<Regression, double> net({.inputs = F, .outputs = K, .hidden = {H}, .time_steps = T,
                                          .readout = Readout::sum, .encoder = Encoding::direct, .seed = 4});
  NeuronOptions lk = NeuronOptions::leaky(0.7, 0.5);
  lk.learn_decay = lk.learn_threshold = true;
  net.layer(1).set_neuron(lk);
  net.layer(1).set_weights(net.layer(1).weights() * 3.0);
  Eigen::MatrixXd x(1, F);
  x << 1.2, -0.4, 0.9;
  Eigen::MatrixXd G(1, K);
  G << 0.7, -1.3;  // L = sum(G * readout)
  const Eigen::MatrixXd xb = x.transpose();
  const std::uint32_t id = 0;
  const Eigen::MatrixXd R = net.forward_train(xb, &id, {});
  net.backward_batch(xb, &id, {}, G.transpose());

  // forward, keeping everything
  const auto& L1 = net.layer(0);
  const auto& L2 = net.layer(1);
  std::vector<Eigen::VectorXd> u(T), o(T), v(T), M(T), S(T);
  Eigen::VectorXd vp = Eigen::VectorXd::Zero(H), mp = Eigen::VectorXd::Zero(K);
  const double lam = 0.9, th = 1.0, kappa = 1.5 / 1.0;
  for (Index t = 0; t < T; ++t) {
    u[t] = L1.weights() * x.transpose() + L1.bias() + lam * vp;
    o[t] = (u[t].array() - th).max(0.0);
    const Eigen::ArrayXd g = (u[t].array() > th).cast<double>();
    v[t] = (u[t].array() - kappa * u[t].array() * g).matrix();
    vp = v[t];
    const Eigen::VectorXd in = t > 0 ? o[t - 1] : Eigen::VectorXd::Zero(H);  // emitted one step late
    const Eigen::ArrayXd r = (mp.array() - L2.thresholds().array() > 0).cast<double>();
    M[t] = (L2.beta().array() * mp.array() + (L2.weights() * in + L2.bias()).array() - r * L2.thresholds().array()).matrix();
    S[t] = (M[t].array() - L2.thresholds().array() > 0).cast<double>().matrix();
    mp = M[t];
  }
  Eigen::VectorXd count = Eigen::VectorXd::Zero(K);
  for (Index t = 0; t < T; ++t) count += S[t];
  CHECK((R.col(0) - count).cwiseAbs().maxCoeff() == 0);
  // backward
  auto atan_grad = [](double z) { const double a = 2.0, q = std::numbers::pi / 2 * a * z; return (a / 2) / (1 + q * q); };
  Eigen::MatrixXd dW1 = Eigen::MatrixXd::Zero(H, F), dW2 = Eigen::MatrixXd::Zero(K, H);
  Eigen::VectorXd db1 = Eigen::VectorXd::Zero(H), db2 = Eigen::VectorXd::Zero(K), dbeta = db2, dtheta = db2;
  Eigen::VectorXd dM_next = Eigen::VectorXd::Zero(K), du_next = Eigen::VectorXd::Zero(H);
  std::vector<Eigen::VectorXd> dI(T);
  for (Index t = T - 1; t >= 0; --t) {
    Eigen::VectorXd dM(K);
    for (Index k = 0; k < K; ++k) {
      const double th2 = L2.thresholds()(k), z = M[t](k) - th2, sg = atan_grad(z);
      const double r_now = (t > 0 ? M[t - 1](k) : 0.0) - th2 > 0 ? 1.0 : 0.0;
      dM(k) = G(0, k) * sg + L2.beta()(k) * dM_next(k);
      dtheta(k) += -G(0, k) * sg - r_now * dM(k);
      dbeta(k) += dM(k) * (t > 0 ? M[t - 1](k) : 0.0);
    }
    dI[t] = dM;
    dM_next = dM;
    db2 += dM;
    if (t > 0) dW2 += dM * o[t - 1].transpose();
  }
  for (Index t = T - 1; t >= 0; --t) {
    const Eigen::VectorXd go = t + 1 < T ? Eigen::VectorXd(L2.weights().transpose() * dI[t + 1]) : Eigen::VectorXd::Zero(H);
    const Eigen::ArrayXd g = (u[t].array() > th).cast<double>();
    const Eigen::VectorXd dv = lam * du_next;
    const Eigen::VectorXd du = (dv.array() * (1 - kappa * g) + go.array() * g).matrix();
    du_next = du;
    db1 += du;
    dW1 += du * x;
  }
  CHECK(test::max_rel_error(net.layer(1).weight_gradient(), dW2) < 1e-12);
  CHECK(test::max_rel_error(net.layer(1).bias_gradient(), db2) < 1e-12);
  CHECK(test::max_rel_error(net.layer(1).beta_gradient(), dbeta) < 1e-12);
  CHECK(test::max_rel_error(net.layer(1).threshold_gradient(), dtheta) < 1e-12);
  CHECK(test::max_rel_error(net.layer(0).weight_gradient(), dW1) < 1e-12);
  CHECK(test::max_rel_error(net.layer(0).bias_gradient(), db1) < 1e-12);
  CHECK(dW1.cwiseAbs().maxCoeff() > 0);  // the gradient reached layer 1 through the spikes
}

TEST_CASE("LIF settings that make no sense are refused with a clear error", "[lif]") {
  NeuronOptions bad = NeuronOptions::leaky();
  bad.reset = Reset::scale;
  CHECK(test::error_of([&] { bad.validate("x"); }).find("reset 'scale' is the graded neuron's") != std::string::npos);
  NeuronOptions graded;
  graded.reset = Reset::zero;
  CHECK(test::error_of([&] { graded.validate("x"); }).find("graded neuron resets by scale or subtract") != std::string::npos);
  graded.reset = Reset::scale;
  graded.learn_decay = true;
  CHECK(test::error_of([&] { graded.validate("x"); }).find("LIF family's") != std::string::npos);
  NeuronOptions la = NeuronOptions::leaky();
  la.learn_alpha = true;
  CHECK(test::error_of([&] { la.validate("x"); }).find("needs the synaptic neuron") != std::string::npos);
  NeuronOptions s = NeuronOptions::synaptic();
  s.alpha = 1.5;
  CHECK(test::error_of([&] { s.validate("x"); }).find("alpha must be in [0, 1]") != std::string::npos);
  SpikingLayer<float> g(3, 2);
  CHECK(test::error_of([&] { g.set_beta(Eigen::VectorXf::Ones(2)); }).find("no such per-neuron value") != std::string::npos);
  SpikingLayer<float> l(3, 2, NeuronOptions::leaky());
  CHECK(test::error_of([&] { l.set_thresholds(Eigen::VectorXf::Ones(3)); }).find("expected 2 values") != std::string::npos);
  CHECK(test::error_of([] { parse_surrogate("relu"); }).find("expected atan, fast_sigmoid") != std::string::npos);
}

TEST_CASE("the sigmoid surrogate is finite far below threshold, where the literal formula overflows", "[lif]") {
  // k e^{-kx} / (1 + e^{-kx})^2 at k = 25, x = -40 divides inf by inf
  const double g = neuron::surrogate_derivative<Surrogate::sigmoid>(-40.0, 25.0);
  CHECK(std::isfinite(g));
  CHECK(g == Approx(25 * std::exp(-1000.0)).margin(1e-300));
  CHECK(neuron::surrogate_derivative<Surrogate::sigmoid>(0.1, 25.0) ==
        Approx(25 * std::exp(-2.5) / std::pow(1 + std::exp(-2.5), 2)).epsilon(1e-14));
}

TEST_CASE("a network of one layer (hidden {0}): LIF and graded, trained, saved and loaded bit-identically", "[lif]") {
  Eigen::VectorXd y;
  const Eigen::MatrixXd X = iris_scaled(&y);
  for (const NeuronOptions& nr : {NeuronOptions::leaky(0.85), NeuronOptions{}}) {
    SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {0}, .time_steps = 10,
                                                  .encoder = Encoding::direct, .neuron = nr, .seed = 2});
    REQUIRE(net.num_layers() == 1);
    CHECK(net.options().hidden.empty());
    CHECK(net.parameter_count() == 4 * 3 + 3);
    Adam adam({.learning_rate = 2e-2});
    const auto h = net.fit(X, y, adam, {.epochs = 20, .batch_size = 30});
    CHECK(h.loss.back() < h.loss.front());
    const std::string path = "nmsnn_test_one_layer_" + std::to_string(::getpid()) + ".safetensors";
    save_model(path, net);
    const auto back = load_model<SpikingNetwork<MulticlassClassification>>(path);
    std::remove(path.c_str());
    REQUIRE(back.num_layers() == 1);
    CHECK(back.predict_proba(X) == net.predict_proba(X));
  }
  CHECK(test::error_of([] { SpikingNetwork<BinaryClassification>({.inputs = 2, .hidden = {0, 3}}); })
            .find("hidden layer 1 must have >= 1 neuron") != std::string::npos);
}

TEST_CASE("max and last reduce a membrane: they need an li output layer, and say so", "[lif]") {
  const std::string e = test::error_of([] {
    SpikingNetwork<MulticlassClassification>({.inputs = 2, .outputs = 3, .readout = Readout::max});
  });
  CHECK(e.find("readout 'max' reduces a membrane: the output layer must be li") != std::string::npos);
  SpikingNetwork<MulticlassClassification> net({.inputs = 2, .outputs = 3, .readout = Readout::last,
                                                .neuron = NeuronOptions::leaky(),
                                                .output_neuron = NeuronOptions::li()});
  net.layer(1).set_neuron(NeuronOptions::leaky());  // no longer an li layer: predict refuses
  CHECK(test::error_of([&] { net.predict(Eigen::MatrixXd::Zero(2, 2)); }).find("must be li") != std::string::npos);
  NeuronOptions li = NeuronOptions::li();
  li.reset = Reset::subtract;
  CHECK(test::error_of([&] { li.validate("x"); }).find("reset must be none") != std::string::npos);
}

TEST_CASE("recomputing segments in backward gives bit-identical gradients and models", "[lif]") {
  Eigen::VectorXd y;
  const Eigen::MatrixXd X = iris_scaled(&y);
  test::EngineChunkBytes bytes(2048);  // chunks of 4 steps: 13 chunks, segments of 4 chunks
  auto make = [](NeuronOptions out, Readout r) {
    NeuronOptions syn = NeuronOptions::synaptic(0.7, 0.85);
    syn.learn_alpha = syn.learn_decay = syn.learn_threshold = true;
    SpikingNetwork<MulticlassClassification> net({.inputs = 4, .outputs = 3, .hidden = {9, 7}, .time_steps = 50,
                                                  .begin_eval = 3, .readout = r, .encoder = Encoding::rate,
                                                  .neuron = NeuronOptions::leaky(0.8), .output_neuron = out, .seed = 8});
    net.layer(1).set_neuron(syn);
    return net;
  };
  NeuronOptions li = NeuronOptions::li(0.9);
  li.learn_decay = true;
  NeuronOptions lk = NeuronOptions::leaky(0.75, 0.6, Reset::zero);
  lk.learn_threshold = true;
  for (const auto& [out, r] : {std::pair{li, Readout::max}, std::pair{li, Readout::last}, std::pair{lk, Readout::sum}}) {
    INFO("output " << to_string(out.model) << ", readout " << to_string(r));
    auto keep = make(out, r), again = make(out, r);
    keep.set_recompute(decltype(keep)::Recompute::never);
    again.set_recompute(decltype(again)::Recompute::always);
    CHECK(keep.recompute_segment_steps(40) == 0);
    CHECK(again.recompute_segment_steps(40) == 16);  // round(sqrt(13)) = 4 chunks of 4 steps
    CHECK(again.workspace_bytes(40) < keep.workspace_bytes(40));
    const Eigen::MatrixXd Xb = X.topRows(40);
    const Eigen::VectorXd yb = y.head(40);
    CHECK(keep.compute_gradients(Xb, yb) == again.compute_gradients(Xb, yb));
    for (Index l = 0; l < 3; ++l) {
      CHECK(keep.layer(l).weight_gradient() == again.layer(l).weight_gradient());
      CHECK(keep.layer(l).bias_gradient() == again.layer(l).bias_gradient());
      CHECK(keep.layer(l).beta_gradient() == again.layer(l).beta_gradient());
      CHECK(keep.layer(l).threshold_gradient() == again.layer(l).threshold_gradient());
      CHECK(keep.layer(l).alpha_gradient() == again.layer(l).alpha_gradient());
      CHECK(keep.activity(l) == again.activity(l));
    }
    CHECK(keep.layer(1).alpha_gradient().cwiseAbs().maxCoeff() > 0);
    Adam a1({.learning_rate = 1e-2}), a2({.learning_rate = 1e-2});
    keep.fit(X, y, a1, {.epochs = 2, .batch_size = 32});
    again.fit(X, y, a2, {.epochs = 2, .batch_size = 32});
    for (Index l = 0; l < 3; ++l) CHECK(keep.layer(l).weights() == again.layer(l).weights());
  }
  // a graded layer reads the step before: such networks keep every step
  SpikingNetwork<MulticlassClassification> mixed({.inputs = 4, .outputs = 3, .hidden = {5}, .time_steps = 50,
                                                  .neuron = NeuronOptions{}, .output_neuron = NeuronOptions::leaky()});
  mixed.set_recompute(decltype(mixed)::Recompute::always);
  CHECK(mixed.recompute_segment_steps(40) == 0);
}

TEST_CASE("products with sparse spike inputs equal the dense products", "[lif]") {
  // Bernoulli input spikes (about 30% of inputs) into a leaky layer whose spikes feed a
  // synaptic one: the sparse kernels (columns of W of the non-zero inputs) against dense products.
  const Index F = 40, B = 6;
  Eigen::MatrixXd X = (Eigen::MatrixXd::Random(B, F).array() * 0.3 + 0.3).matrix();
  Eigen::VectorXd y(B);
  y << 0, 1, 2, 1, 0, 2;
  auto grads = [&](double density) {
    detail::sparse_spike_density_ref() = density;
    NeuronOptions lk = NeuronOptions::leaky(0.9, 0.5);
    lk.learn_decay = true;
    SpikingNetwork<MulticlassClassification, double> net({.inputs = F, .outputs = 3, .hidden = {30}, .time_steps = 30,
                                                          .encoder = Encoding::bernoulli, .neuron = lk,
                                                          .output_neuron = NeuronOptions::synaptic(0.6, 0.8, 0.3),
                                                          .seed = 6});
    net.layer(0).set_weights(net.layer(0).weights() * 2.0);
    const double loss = net.compute_gradients(X, y);
    detail::sparse_spike_density_ref() = 0.25;
    return std::make_pair(loss, net);
  };
  const auto [l_sparse, sparse] = grads(1.0);  // always sparse
  const auto [l_dense, dense] = grads(0.0);    // never
  CHECK(l_sparse == Approx(l_dense).epsilon(1e-13));
  for (Index l = 0; l < 2; ++l) {
    CHECK(test::max_rel_error(sparse.layer(l).weight_gradient(), dense.layer(l).weight_gradient()) < 1e-11);
    CHECK(test::max_rel_error(sparse.layer(l).bias_gradient(), dense.layer(l).bias_gradient()) < 1e-11);
  }
  CHECK(test::max_rel_error(sparse.layer(0).beta_gradient(), dense.layer(0).beta_gradient()) < 1e-11);
  CHECK(dense.layer(0).weight_gradient().cwiseAbs().maxCoeff() > 0);
  CHECK(sparse.activity(0) == dense.activity(0));
  CHECK(sparse.activity(0) > 0);
}
