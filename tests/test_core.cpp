// The counter-based generator, the encoders, the layer scan and the optimisers.
#include <catch2/catch.hpp>

#include <set>

#include "test_helpers.hpp"

using namespace nmsnn;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  // From Random123's kat_vectors (philox4x32_10).
  auto r = Philox4x32::generate({0, 0, 0, 0}, {0, 0});
  CHECK(r == Philox4x32::Counter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  r = Philox4x32::generate({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(r == Philox4x32::Counter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  r = Philox4x32::generate({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  CHECK(r == Philox4x32::Counter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("uniform draws lie in 0..1 with mean 1/2 and variance 1/12") {
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = InputEncoder<float>::draw({7, 1}, std::uint32_t(i % 97), std::uint32_t(i / 97), i % 13);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    sq += u * u;
  }
  CHECK(sum / n == Approx(0.5).margin(0.005));
  CHECK(sq / n - (sum / n) * (sum / n) == Approx(1.0 / 12).margin(0.002));
}

TEST_CASE("the rate encoder's masks depend only on (seed, stream, sample, step, feature)") {
  InputEncoder<float> enc(Encoding::rate);
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(11, 5);
  std::uint32_t ids[5] = {40, 3, 17, 8, 99};
  Matrix<float> all(11, 6 * 5), part(11, 2 * 5);
  enc.encode(x, ids, {5, 2}, 0, 6, all);
  enc.encode(x, ids, {5, 2}, 3, 2, part);  // steps 3..4 alone
  CHECK(part == all.middleCols(3 * 5, 2 * 5));
  // One sample on its own (another batch split) sees the same masks.
  Matrix<float> one(11, 6);
  Eigen::MatrixXf x2 = x.col(2);
  enc.encode(x2, &ids[2], {5, 2}, 0, 6, one);
  for (Index t = 0; t < 6; ++t) CHECK(one.col(t) == all.col(t * 5 + 2));
  // s = m * x with m in [0, 1), and zero features stay zero.
  x(4, 1) = 0;
  enc.encode(x, ids, {5, 2}, 0, 6, all);
  for (Index t = 0; t < 6; ++t) {
    CHECK(all(4, t * 5 + 1) == 0.0f);
    const Eigen::ArrayXf m = all.col(t * 5).array() / x.col(0).array();
    CHECK((m >= 0).all());
    CHECK((m < 1.0001f).all());
  }
  // Another stream or seed gives other masks.
  Matrix<float> other(11, 6 * 5);
  enc.encode(x, ids, {5, 3}, 0, 6, other);
  CHECK((other - all).cwiseAbs().maxCoeff() > 0.01f);
}

TEST_CASE("a batch's encoded inputs are the scalar generator's draws, for any feature count") {
  // encode() has two layouts of the generator's lanes (eight features of one sample, or eight
  // adjacent positions of the step's block when F is small and not a multiple of 8); both
  // must give draw(sample, step, feature) * x, from any first step (also mid-group).
  for (Index F : {1, 3, 4, 11, 20, 64, 70}) {
    const Index B = 5, t0 = 2, steps = 7;
    const Eigen::MatrixXf x = Eigen::MatrixXf::Random(F, B);
    const std::uint32_t ids[5] = {40, 3, 17, 8, 99};
    for (Encoding kind : {Encoding::rate, Encoding::bernoulli}) {
      InputEncoder<float> enc(kind);
      Matrix<float> S(F, steps * B);
      enc.encode(x, ids, {5, 2}, t0, steps, S);
      Index wrong = 0;
      for (Index t = 0; t < steps; ++t)
        for (Index b = 0; b < B; ++b)
          for (Index f = 0; f < F; ++f) {
            const float u = InputEncoder<float>::draw({5, 2}, ids[b], std::uint32_t(t0 + t), f);
            const float want = kind == Encoding::rate ? u * x(f, b) : (u < std::clamp(x(f, b), 0.0f, 1.0f) ? 1.0f : 0.0f);
            wrong += S(f, t * B + b) != want;
          }
      INFO("F " << F << " kind " << int(kind));
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("the Bernoulli encoder fires with probability clamp(x, 0, 1) and Direct repeats x") {
  InputEncoder<double> enc(Encoding::bernoulli);
  Eigen::MatrixXd x(4, 1);
  x << 0.0, 0.25, 0.8, 3.0;
  std::uint32_t id = 0;
  const Index T = 20000;
  Matrix<double> S(4, T);
  enc.encode(x, &id, {1, 0}, 0, T, S);
  CHECK(((S.array() == 0) || (S.array() == 1)).all());
  const Eigen::VectorXd rate = S.rowwise().mean();
  CHECK(rate(0) == 0.0);
  CHECK(rate(1) == Approx(0.25).margin(0.01));
  CHECK(rate(2) == Approx(0.8).margin(0.01));
  CHECK(rate(3) == 1.0);
  InputEncoder<double> direct(Encoding::direct);
  Matrix<double> D(4, 3);
  direct.encode(x, &id, {1, 0}, 0, 3, D);
  for (Index t = 0; t < 3; ++t) CHECK(D.col(t) == x);
}

TEST_CASE("one neuron through time, hand-computed (both resets)") {
  // a_t = 0.6 constant, λ = 0.9, θ = 1, ρ = 1.5:
  // scale: u0 = .6 (no fire, v=.6); u1 = .6+.54 = 1.14 fires, o=.14, v = 1.14-1.5*1.14 = -.57;
  //        u2 = .6 - .513 = .087, o = 0.
  // subtract: u1 = 1.14 fires, v = 1.14 - (1.5 + .14) = -.5; u2 = .6 - .45 = .15.
  for (Reset reset : {Reset::scale, Reset::subtract}) {
    SpikingLayer<double> layer(1, 1, {.reset = reset});
    Matrix<double> A = Matrix<double>::Constant(1, 3, 0.6);
    Matrix<double> R = Matrix<double>::Zero(1, 1);
    layer.scan_forward(A.data(), 3, 1, R.data(), 0, 2);
    CHECK(A(0, 0) == 0.0);
    CHECK(A(0, 1) == Approx(0.14).epsilon(1e-12));
    CHECK(A(0, 2) == 0.0);
    const double v2 = reset == Reset::scale ? 0.6 + 0.9 * -0.57 : 0.6 + 0.9 * -0.5;
    const double v1 = reset == Reset::scale ? -0.57 : -0.5;
    CHECK(R(0, 0) == Approx(0.6 + v1 + v2).epsilon(1e-12));
  }
}

TEST_CASE("the engine's product kernels equal the products, computed in double") {
  // gemm_tn_thin (own kernel for 1..4 rows, Eigen beyond), gemm_nt_acc (one block or split
  // over columns), fill_columns; on strided maps, as the engine calls them.
  Matrix<double> ref;
  for (Index k : {1, 2, 3, 4, 5}) {
    for (Index m : {7, 100, 1100}) {
      const Index cols = 300;
      const Matrix<float> A = Matrix<float>::Random(k, m);
      Matrix<float> Bbig = Matrix<float>::Random(k + 2, cols);  // B is the top k rows: stride k + 2
      Matrix<float> C = Matrix<float>::Constant(m, cols, 9.0f);
      detail::gemm_tn_thin<float>(detail::map(C.data(), m, cols), detail::cmap(A.data(), k, m),
                                  detail::cmap(Bbig.data(), k, cols, k + 2));
      ref = A.cast<double>().transpose() * Bbig.topRows(k).cast<double>();
      CHECK((C.cast<double>() - ref).cwiseAbs().maxCoeff() < 1e-5 * (1 + ref.cwiseAbs().maxCoeff()));
    }
  }
  for (Index n : {3, 20, 300}) {
    const Index m = 64, inner = 2000;
    const Matrix<float> A = Matrix<float>::Random(m, inner), B = Matrix<float>::Random(n, inner);
    Matrix<float> C = Matrix<float>::Constant(m, n, 0.5f);
    detail::gemm_nt_acc<float>(detail::map(C.data(), m, n), detail::cmap(A.data(), m, inner),
                               detail::cmap(B.data(), n, inner));
    ref = (A.cast<double>() * B.cast<double>().transpose()).array() + 0.5;
    CHECK((C.cast<double>() - ref).cwiseAbs().maxCoeff() < 1e-4 * ref.cwiseAbs().maxCoeff());
  }
  // gemm_nt_acc_thin: own kernel for B of 2-4 rows (m = 100 leaves rows after the last
  // strip), the fallback for 1 and 5; B and C strided.
  for (Index k : {1, 2, 3, 4, 5}) {
    for (Index m : {5, 100, 129}) {
      const Index inner = 700;
      const Matrix<float> A = Matrix<float>::Random(m, inner);
      const Matrix<float> Bbig = Matrix<float>::Random(k + 1, inner);
      Matrix<float> Cbig = Matrix<float>::Constant(m + 3, k, 0.25f);
      bool fell_back = false;
      detail::gemm_nt_acc_thin<float>(detail::map(Cbig.data(), m, k, m + 3), detail::cmap(A.data(), m, inner),
                                      detail::cmap(Bbig.data(), k, inner, k + 1), [&](auto C, auto A2, auto B2) {
                                        fell_back = true;
                                        detail::gemm_nt_acc<float>(C, A2, B2);
                                      });
      CHECK(fell_back == (k == 1 || k == 5));
      ref = (A.cast<double>() * Bbig.topRows(k).cast<double>().transpose()).array() + 0.25;
      CHECK((Cbig.topRows(m).cast<double>() - ref).cwiseAbs().maxCoeff() < 1e-4 * ref.cwiseAbs().maxCoeff());
      CHECK((Cbig.bottomRows(3).array() == 0.25f).all());
    }
  }
  const Vector<float> v = Vector<float>::LinSpaced(13, -1.0f, 1.0f);
  Matrix<float> F = Matrix<float>::Zero(15, 4);
  detail::fill_columns(detail::map(F.data(), 13, 4, 15), v.data());
  for (Index c = 0; c < 4; ++c) {
    CHECK(F.col(c).head(13) == v);
    CHECK(F.col(c).tail(2).isZero());
  }
}

#if defined(NMSNN_FUSED_SCAN)
namespace {
// Reference of the fused forward: the engine's general path, one product then the layer's scan
// (itself checked against the naive per-sample forward in test_gradients).
template <class S, int K2 = 0>
Index check_forward_product_scan(Index n, Index F, Index B, Index steps, Reset mode, bool readout,
                                 bool last_chunk = false) {
  const Matrix<S> W = Matrix<S>::Random(n, F) * S(1.5), E = (Matrix<S>::Random(F, steps * B).array() + S(1)) / S(2);
  const Vector<S> bias = Vector<S>::Random(n) * S(0.5);
  const Matrix<S> V0 = Matrix<S>::Random(n, B) * S(2), R0 = Matrix<S>::Random(n, B);
  SpikingLayer<S> layer(F, n, {.decay = 0.8, .threshold = 0.7, .penalty = 1.25, .reset = mode});
  layer.set_weights(W);
  layer.set_bias(bias);
  Matrix<S> BT(n, B);
  for (Index b = 0; b < B; ++b) BT.col(b) = bias;
  Matrix<S> A_ref(n, steps * B), V_ref = V0, R_ref = R0;
  A_ref.noalias() = W * E;
  const Index t_lo = readout ? std::min<Index>(1, steps - 1) : 0, t_hi = readout ? steps - 1 : -1;
  layer.scan_forward(A_ref.data(), steps, B, readout ? R_ref.data() : nullptr, t_lo, t_hi, V_ref.data(), BT.data());
  Matrix<S> A = Matrix<S>::Constant(n, steps * B, S(7)), V = V0, R = R0;
  const detail::ScanConstants<S> k{S(0.8), S(0.7), S(1.25), S(1.25) / S(0.7)};
  // The next layer's currents: W2 o_t into column block t + 1 (none after the last chunk's
  // last step: that block keeps its marker).
  const Matrix<S> W2 = Matrix<S>::Random(std::max(K2, 1), n), W2T = W2.transpose();
  Matrix<S> A2 = Matrix<S>::Constant(std::max(K2, 1), (steps + 1) * B, S(-3));
  auto run = [&]<Reset m>() {
    detail::forward_product_scan<S, m, K2>(A.data(), W.data(), n, F, E.data(), bias.data(), steps, B, k, V.data(),
                                           readout ? R.data() : nullptr, t_lo, t_hi, W2T.data(), A2.data(),
                                           last_chunk);
  };
  if (mode == Reset::scale) run.template operator()<Reset::scale>();
  else run.template operator()<Reset::subtract>();
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  INFO("n " << n << " F " << F << " B " << B << " steps " << steps << " readout " << readout);
  CHECK((A - A_ref).cwiseAbs().maxCoeff() <= tol * (1 + A_ref.cwiseAbs().maxCoeff()));
  CHECK((V - V_ref).cwiseAbs().maxCoeff() <= tol * (1 + V_ref.cwiseAbs().maxCoeff()));
  CHECK((R - R_ref).cwiseAbs().maxCoeff() <= tol * (1 + R_ref.cwiseAbs().maxCoeff()));
  if constexpr (K2 > 0) {
    const Index made = last_chunk ? steps - 1 : steps;
    const Eigen::MatrixXd A2_ref = W2.template cast<double>() * A_ref.leftCols(made * B).template cast<double>();
    CHECK((A2.middleCols(B, made * B).template cast<double>() - A2_ref).cwiseAbs().maxCoeff() <=
          tol * (1 + A2_ref.cwiseAbs().maxCoeff()));
    CHECK((A2.leftCols(B).array() == S(-3)).all());  // block 0: the step before the chunk's
    if (last_chunk) CHECK((A2.rightCols(B).array() == S(-3)).all());
  }
  return (A.array() > 0).count();
}

// Reference of the fused backward: MODEL.md's backward written out per neuron, sample and
// step, in double.
template <class S, int K, int F>
void check_backward_fused(Index n, Index B, Index steps, bool last_chunk, Reset mode) {
  const double decay = 0.85, kappa = 1.5 / 0.9;
  Matrix<S> O = Matrix<S>::Random(n, steps * B);
  O = O.cwiseMax(S(0)) * S(0.7);  // outputs o_t: about half the neurons fired
  const Matrix<S> D2 = Matrix<S>::Random(K, (steps + 1) * B), W2 = Matrix<S>::Random(K, n);
  const Matrix<S> E = Matrix<S>::Random(std::max(F, 1), steps * B);
  const Matrix<S> DN0 = Matrix<S>::Random(n, B), SU0 = Matrix<S>::Random(n, B);
  const Matrix<S> dW2T0 = Matrix<S>::Random(n, K), dW10 = Matrix<S>::Random(n, std::max(F, 1));
  Eigen::MatrixXd D_ref(n, steps * B), DN_ref = DN0.template cast<double>(), dW2T_ref = dW2T0.template cast<double>(),
                  dW1_ref = dW10.template cast<double>();
  Eigen::VectorXd db_ref = SU0.template cast<double>().rowwise().sum();
  for (Index h = 0; h < n; ++h)
    for (Index b = 0; b < B; ++b) {
      double du_next = DN0(h, b);
      for (Index t = steps - 1; t >= 0; --t) {
        const Index j = t * B + b;
        const double o = O(h, j), g = o > 0 ? 1 : 0, dv = decay * du_next;
        double du = mode == Reset::scale ? dv * (1 - kappa * g) : dv * (1 - g);
        if (!(last_chunk && t == steps - 1))
          for (int q = 0; q < K; ++q) {
            du += double(W2(q, h)) * D2(q, j + B) * g;
            dW2T_ref(h, q) += o * D2(q, j + B);
          }
        for (int f = 0; f < F; ++f) dW1_ref(h, f) += du * E(f, j);
        D_ref(h, j) = du;
        db_ref(h) += du;
        du_next = du;
      }
      DN_ref(h, b) = du_next;
    }
  Matrix<S> D = O, DN = DN0, SU = SU0, dW2T = dW2T0, dW1 = dW10;
  const Matrix<S> W2T = W2.transpose();
  auto run = [&]<Reset m>() {
    detail::backward_fused<S, m, K, F>({D.data(), n, steps, B, last_chunk, W2T.data(), D2.data(), dW2T.data(),
                                        E.data(), dW1.data(), DN.data(), SU.data(), S(decay), S(kappa)});
  };
  if (mode == Reset::scale) run.template operator()<Reset::scale>();
  else run.template operator()<Reset::subtract>();
  const double tol = std::is_same_v<S, float> ? 2e-5 : 1e-12;
  auto close = [&](const auto& x, const Eigen::MatrixXd& ref) {
    return (x.template cast<double>() - ref).cwiseAbs().maxCoeff() <= tol * (1 + ref.cwiseAbs().maxCoeff());
  };
  INFO("n " << n << " K " << K << " F " << F << " B " << B << " steps " << steps << " last " << last_chunk);
  CHECK(close(DN, DN_ref));
  CHECK(close(dW2T, dW2T_ref));
  CHECK(close(Matrix<S>(SU.rowwise().sum()), Eigen::MatrixXd(db_ref)));
  if constexpr (F > 0) CHECK(close(dW1, dW1_ref));
  else CHECK(close(D, D_ref));
}
}  // namespace

TEST_CASE("the fused forward (currents and scan in one pass) equals product then scan") {
  // Neuron counts around the kernel's tiles (2 vectors, 1, a half, single neurons), sample
  // counts around its blocks of 4, with and without the readout, both resets.
  Index fired = 0, total = 0;
  for (Reset mode : {Reset::scale, Reset::subtract})
    for (Index n : {1, 3, 4, 7, 8, 12, 16, 21, 100})
      for (Index F : {1, 4, 20})
        for (Index B : {1, 6, 9}) {
          fired += check_forward_product_scan<float>(n, F, B, 3, mode, B != 6);
          total += n * B * 3;
          if (n % 4 == 1 || n == 100) check_forward_product_scan<double>(n, F, B, 2, mode, true);
        }
  check_forward_product_scan<float>(64, 64, 64, 4, Reset::scale, false);  // binary's layer at the limit
  // With the currents of a thin next layer (1-4 neurons), in the chunk's middle or at the end.
  for (Index n : {3, 8, 21, 64, 100})
    for (bool last : {false, true}) {
      check_forward_product_scan<float, 1>(n, 20, 9, 3, Reset::scale, false, last);
      check_forward_product_scan<float, 2>(n, 4, 6, 2, Reset::subtract, false, last);
      check_forward_product_scan<float, 3>(n, 4, 9, 4, Reset::scale, false, last);
      check_forward_product_scan<float, 4>(n, 3, 5, 3, Reset::scale, false, last);
      check_forward_product_scan<double, 3>(n, 4, 5, 3, Reset::subtract, false, last);
    }
  CHECK(fired > total / 10);  // the resets were exercised
  CHECK(fired < total * 9 / 10);
}

TEST_CASE("the fused backward of layer 1 below a thin layer equals MODEL.md's backward") {
  // Neuron counts around the vectors (8 floats, a half of 4, single neurons) and the task
  // groups of 4 vectors; samples around the blocks of 8; every thin width K and input count F.
  for (Reset mode : {Reset::scale, Reset::subtract})
    for (Index n : {1, 5, 8, 12, 41, 100})
      for (Index B : {1, 9})
        for (bool last : {false, true}) {
          for (Index k = 1; k <= detail::fused_max_thin; ++k)
            detail::dispatch_thin(k, [&]<int K>() {
              check_backward_fused<float, K, 0>(n, B, 3, last, mode);
              check_backward_fused<float, K, 1>(n, B, 3, last, mode);
              check_backward_fused<float, K, 4>(n, B, 2, last, mode);
            });
          check_backward_fused<float, 3, 4>(n, B, 4, last, mode);  // iris's shape of layers
          check_backward_fused<double, 1, 0>(n, B, 3, last, mode);
          check_backward_fused<double, 2, 3>(n, B, 2, last, mode);
        }
}
#endif

TEST_CASE("layer parameters validate their shapes and values") {
  SpikingLayer<float> layer(3, 2);
  CHECK_THROWS_AS(layer.set_weights(Eigen::MatrixXf::Zero(3, 2)), ShapeError);
  CHECK_THROWS_AS(layer.set_bias(Eigen::VectorXf::Zero(3)), ShapeError);
  Eigen::MatrixXf w = Eigen::MatrixXf::Zero(2, 3);
  w(1, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(layer.set_weights(w), ValueError);
  CHECK_THROWS_AS(layer.set_neuron({.threshold = 0.0}), ValueError);
  CHECK_THROWS_AS(SpikingLayer<float>(0, 2), ValueError);
}

TEST_CASE("Xavier-uniform initialisation stays within its bounds and fills them") {
  SpikingLayer<double> layer(30, 20);
  CounterRng rng(1, RandomDomain::init);
  layer.initialize(rng);
  const double a = std::sqrt(6.0 / 50.0);
  CHECK(layer.weights().cwiseAbs().maxCoeff() < a);
  CHECK(layer.weights().cwiseAbs().maxCoeff() > 0.95 * a);
  CHECK(std::abs(layer.weights().mean()) < 0.05);
  CHECK(layer.bias().cwiseAbs().maxCoeff() < 1.0 / std::sqrt(30.0));
}

namespace {
template <class Opt>
void check_trajectory(Opt opt, const nlohmann::json& fx, const std::string& name) {
  Eigen::VectorXd p = test::to_matrix(fx["start"]);
  Eigen::VectorXd g(p.size());
  const auto& traj = fx["cases"][name]["trajectory"];
  for (std::size_t s = 0; s < traj.size(); ++s) {
    g = test::to_matrix(fx["grads"][s]);
    Parameter<double> param{p.data(), g.data(), p.size()};
    opt.step(std::span<const Parameter<double>>(&param, 1));
    const Eigen::VectorXd expect = test::to_matrix(traj[s]);
    INFO(name << " step " << s + 1);
    CHECK((p - expect).cwiseAbs().maxCoeff() < 1e-14);
  }
}
}  // namespace

TEST_CASE("optimiser steps equal PyTorch's") {
  const auto fx = test::load_json("optimizers.json");
  check_trajectory(Adam({.learning_rate = 0.1}), fx, "adam");
  check_trajectory(Adam({.learning_rate = 0.05, .beta1 = 0.8, .beta2 = 0.99, .epsilon = 1e-6, .weight_decay = 0.01}),
                   fx, "adam_wd");
  check_trajectory(Sgd({.learning_rate = 0.1}), fx, "sgd");
  check_trajectory(Sgd({.learning_rate = 0.1, .momentum = 0.9}), fx, "sgd_momentum");
  check_trajectory(Sgd({.learning_rate = 0.05, .momentum = 0.5, .weight_decay = 0.1}), fx, "sgd_momentum_wd");
  check_trajectory(Sgd({.learning_rate = 0.1, .momentum = 0.9, .nesterov = true}), fx, "sgd_nesterov");
}

TEST_CASE("optimiser steps, hand-computed") {
  // Adam's first step moves each parameter by lr * g / (|g| + eps/…) ≈ lr * sign(g).
  Eigen::VectorXd p(2), g(2);
  p << 1.0, -1.0;
  g << 0.5, -4.0;
  Adam adam({.learning_rate = 0.1});
  Parameter<double> param{p.data(), g.data(), 2};
  adam.step(std::span<const Parameter<double>>(&param, 1));
  // m = 0.1 g, v = 0.001 g^2; bias corrections 0.1 and 0.001: p -= (0.1 / 0.1) m / (|g| + eps).
  CHECK(p(0) == Approx(1.0 - 0.05 / (0.5 + 1e-8)).epsilon(1e-15));
  CHECK(p(1) == Approx(-1.0 + 0.4 / (4.0 + 1e-8)).epsilon(1e-15));
  // SGD with momentum 0.5: v1 = g, v2 = 0.5 g + g; p = 1 - 0.1 (1 + 1.5) g.
  p << 1.0, 1.0;
  g << 2.0, 2.0;
  Sgd sgd({.learning_rate = 0.1, .momentum = 0.5});
  sgd.step(std::span<const Parameter<double>>(&param, 1));
  sgd.step(std::span<const Parameter<double>>(&param, 1));
  CHECK(p(0) == Approx(1.0 - 0.1 * 2.5 * 2.0).epsilon(1e-15));
}

TEST_CASE("optimisers reject bad settings and foreign parameters") {
  CHECK_THROWS_AS(Adam({.learning_rate = std::numeric_limits<double>::quiet_NaN()}), ValueError);
  CHECK_THROWS_AS(Adam({.beta1 = 1.0}), ValueError);
  CHECK_THROWS_AS(Sgd({.learning_rate = -1}), ValueError);
  CHECK_THROWS_AS(Sgd({.momentum = -0.5}), ValueError);
  Eigen::VectorXf p = Eigen::VectorXf::Zero(3), g = Eigen::VectorXf::Ones(3);
  Adam adam;
  Parameter<float> a{p.data(), g.data(), 3};
  adam.step(std::span<const Parameter<float>>(&a, 1));
  Parameter<float> b{p.data(), g.data(), 2};
  CHECK_THROWS_AS(adam.step(std::span<const Parameter<float>>(&b, 1)), ValueError);
  adam.reset();
  CHECK_NOTHROW(adam.step(std::span<const Parameter<float>>(&b, 1)));
}
