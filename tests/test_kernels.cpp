// The engine's own kernels (nmsnn/detail): the thin and tiled products and the fused layer-1
// passes, against products and MODEL.md's equations computed in double. Built twice: for the
// default target and, as test_kernels_avx2, with AVX2 and FMA (the width and the kernels a
// -march=native build takes), which skips with exit code 77 on a CPU without them
// (require_avx2.cpp).
#include <catch2/catch.hpp>

#include <nmsnn/nmsnn.hpp>

using namespace nmsnn;

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

TEST_CASE("one sample's encoded chosen features are the scalar generator's draws") {
  // The sparse path's call: the features given by index (16, two groups of eight, and 5),
  // from a first step in the middle of a group of four.
  const std::uint32_t features[21] = {0, 3, 7, 8, 20, 21, 22, 100, 101, 103, 200, 300, 301, 302, 999, 1000,
                                      1001, 4000, 4001, 4002, 70000};
  Eigen::VectorXf x = Eigen::VectorXf::Random(21);
  const InputEncoder<float> enc(Encoding::rate);
  for (Index nf : {16, 21}) {
    const Index t0 = 3, steps = 6;
    Matrix<float> S = Matrix<float>::Constant(nf, steps, -1.0f);
    enc.encode_sample(x.data(), features, nf, 77, {9, 4}, t0, steps, S.data(), nf);
    Index wrong = 0;
    for (Index t = 0; t < steps; ++t)
      for (Index i = 0; i < nf; ++i)
        wrong += S(i, t) != InputEncoder<float>::draw({9, 4}, 77, std::uint32_t(t0 + t), features[i]) * x(i);
    INFO("nf " << nf);
    CHECK(wrong == 0);
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
#if defined(NMSNN_TILED_GRADIENT_KERNEL)
      CHECK(fell_back == (k == 1 || (k == 5 && m < detail::thin_vector_bytes / 4)));
#else
      CHECK(fell_back == (k == 1 || k == 5));
#endif
      ref = (A.cast<double>() * Bbig.topRows(k).cast<double>().transpose()).array() + 0.25;
      CHECK((Cbig.topRows(m).cast<double>() - ref).cwiseAbs().maxCoeff() < 1e-4 * ref.cwiseAbs().maxCoeff());
      CHECK((Cbig.bottomRows(3).array() == 0.25f).all());
    }
  }
  // gemm_nt_acc_tiled (taken with FMA for B of 5..64 rows and C of up to 200): C's rows
  // around its tiles (2 vectors, 1, a half, single rows), B's around its groups of 5 columns
  // of C, inner lengths around its blocks of 128 and none at all; strided, float and double.
  auto check_tiled = [&]<class S>(Index m, Index k, Index inner) {
    const Matrix<S> A = Matrix<S>::Random(m + 2, inner), B = Matrix<S>::Random(k + 1, inner);
    Matrix<S> C = Matrix<S>::Constant(m + 3, k, S(-0.5));
    bool fell_back = false;
    detail::gemm_nt_acc_thin<S>(detail::map(C.data(), m, k, m + 3), detail::cmap(A.data(), m, inner, m + 2),
                                detail::cmap(B.data(), k, inner, k + 1), [&](auto C2, auto A2, auto B2) {
                                  fell_back = true;
                                  detail::gemm_nt_acc<S>(C2, A2, B2);
                                });
    const Eigen::MatrixXd ref =
        (A.topRows(m).template cast<double>() * B.topRows(k).template cast<double>().transpose()).array() - 0.5;
    const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-13;
    INFO("m " << m << " k " << k << " inner " << inner);
    CHECK((C.topRows(m).template cast<double>() - ref).cwiseAbs().maxCoeff() <= tol * (1 + ref.cwiseAbs().maxCoeff()));
    CHECK((C.bottomRows(3).array() == S(-0.5)).all());
    return fell_back;
  };
  for (Index m : {8, 12, 16, 21, 37, 64, 100, 200})
    for (Index k : {5, 7, 10, 20, 23, 64})
      for (Index inner : {0, 1, 130, 700}) {
        [[maybe_unused]] const bool fell_back = check_tiled.operator()<float>(m, k, inner);
#if defined(NMSNN_TILED_GRADIENT_KERNEL)
        CHECK(fell_back == (m < detail::thin_vector_bytes / 4));  // C shorter than a vector: Eigen's
#endif
        if (inner == 130) check_tiled.operator()<double>(m, k, inner);
      }
  CHECK(check_tiled.operator()<float>(201, 20, 300));  // beyond the limits: Eigen's product
  CHECK(check_tiled.operator()<float>(64, 65, 300));
  CHECK(check_tiled.operator()<float>(4, 20, 300));
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
  // Neuron counts around the kernel's tiles (2 vectors, 1, narrower vectors, single neurons;
  // vectors of 4, 8 or 16 floats by the target), sample counts around its blocks of 8, with
  // and without the readout, both resets.
  Index fired = 0, total = 0;
  for (Reset mode : {Reset::scale, Reset::subtract})
    for (Index n : {1, 3, 4, 7, 8, 12, 16, 21, 29, 40, 100})
      for (Index F : {1, 4, 20})
        for (Index B : {1, 6, 9}) {
          fired += check_forward_product_scan<float>(n, F, B, 3, mode, B != 6);
          total += n * B * 3;
          if (n % 4 == 1 || n == 100) check_forward_product_scan<double>(n, F, B, 2, mode, true);
        }
  check_forward_product_scan<float>(64, 64, 64, 4, Reset::scale, false);  // binary's layer at the limit
  // With the currents of a thin next layer (1-4 neurons), in the chunk's middle or at the end.
  for (Index n : {3, 8, 16, 21, 29, 40, 48, 64, 100})
    for (bool last : {false, true}) {
      check_forward_product_scan<float, 3>(n, 4, 16, 2, Reset::subtract, true, last);  // two full blocks
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
  // Neuron counts around the vectors (16, 8 or 4 floats by the target, narrower ones, single
  // neurons) and the task groups of 2 vectors; samples around the blocks of 8; every thin
  // width K and input count F.
  for (Reset mode : {Reset::scale, Reset::subtract})
    for (Index n : {1, 5, 8, 12, 29, 41, 100})
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

