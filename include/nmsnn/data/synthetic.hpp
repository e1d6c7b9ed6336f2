// nmsnn/data/synthetic.hpp — synthetic data sets in the manner of scikit-learn's
// make_classification and make_regression (same construction, nmsnn's own seeded generator,
// so the numbers differ from scikit-learn's).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"

namespace nmsnn {

struct ClassificationOptions {
  Index samples = 100;
  Index features = 20;
  Index informative = 2;
  Index redundant = 2;
  Index classes = 2;
  Index clusters_per_class = 2;
  double class_sep = 1.0;
  double flip_y = 0.01;  ///< fraction of labels replaced by random ones
  bool shuffle = true;
  std::uint64_t seed = 0;
};

struct SyntheticData {
  Eigen::MatrixXd X;
  Eigen::VectorXd y;
};

/// Gaussian clusters at the vertices of a hypercube in the informative subspace (side
/// 2 class_sep), each with a random covariance; redundant features are random linear
/// combinations of the informative ones; the rest is N(0, 1) noise.
inline SyntheticData make_classification(const ClassificationOptions& o) {
  if (o.samples < 1 || o.classes < 2 || o.informative < 1 || o.clusters_per_class < 1 || o.redundant < 0)
    detail::raise<ValueError>("make_classification: need samples >= 1, classes >= 2, informative >= 1, "
                              "clusters_per_class >= 1, redundant >= 0");
  if (o.informative + o.redundant > o.features)
    detail::raise<ValueError>("make_classification: informative + redundant (", o.informative + o.redundant,
                              ") exceeds features (", o.features, ")");
  if (double(o.classes * o.clusters_per_class) > std::pow(2.0, double(o.informative)))
    detail::raise<ValueError>("make_classification: classes * clusters_per_class must be <= 2^informative");
  if (!(o.flip_y >= 0 && o.flip_y <= 1)) detail::raise<ValueError>("make_classification: flip_y must be in [0, 1]");
  CounterRng rng(o.seed, RandomDomain::split, 100);
  const Index F = o.features, I = o.informative, K = o.classes, C = o.clusters_per_class * K, n = o.samples;
  // Distinct hypercube vertices, in a random order.
  std::vector<std::uint64_t> vertices;
  const std::uint64_t corners = I >= 63 ? ~0ull : (1ull << I);
  while (Index(vertices.size()) < C) {
    const std::uint64_t v = rng.below(corners);
    if (std::find(vertices.begin(), vertices.end(), v) == vertices.end()) vertices.push_back(v);
  }
  SyntheticData d;
  d.X.resize(n, F);
  d.y.resize(n);
  for (Index c = 0, row = 0; c < C; ++c) {
    const Index count = n / C + (c < n % C ? 1 : 0);
    Eigen::MatrixXd A(I, I);
    for (Index i = 0; i < A.size(); ++i) A.data()[i] = rng.uniform(-1, 1);
    Eigen::RowVectorXd centre(I);
    for (Index i = 0; i < I; ++i)
      centre(i) = (i < 64 && ((vertices[std::size_t(c)] >> i) & 1) ? 1.0 : -1.0) * o.class_sep;
    for (Index r = 0; r < count; ++r, ++row) {
      Eigen::RowVectorXd z(I);
      for (Index i = 0; i < I; ++i) z(i) = rng.normal();
      d.X.row(row).head(I) = z * A + centre;
      d.y(row) = double(c % K);
    }
  }
  if (o.redundant > 0) {
    Eigen::MatrixXd Bm(I, o.redundant);
    for (Index i = 0; i < Bm.size(); ++i) Bm.data()[i] = rng.uniform(-1, 1);
    d.X.middleCols(I, o.redundant) = d.X.leftCols(I) * Bm;
  }
  for (Index j = I + o.redundant; j < F; ++j)
    for (Index r = 0; r < n; ++r) d.X(r, j) = rng.normal();
  for (Index r = 0; r < n; ++r)
    if (rng.uniform() < o.flip_y) d.y(r) = double(rng.below(std::uint64_t(K)));
  if (o.shuffle) {
    for (Index i = n - 1; i > 0; --i) {
      const Index j = Index(rng.below(std::uint64_t(i) + 1));
      d.X.row(i).swap(d.X.row(j));
      std::swap(d.y(i), d.y(j));
    }
  }
  return d;
}

struct RegressionOptions {
  Index samples = 100;
  Index features = 10;
  Index informative = 10;
  double bias = 0.0;
  double noise = 0.0;  ///< standard deviation of the Gaussian noise added to the target
  std::uint64_t seed = 0;
};

/// y = X w + bias + noise with X ~ N(0, 1) and w ~ 100 U(0, 1) on the informative features.
inline SyntheticData make_regression(const RegressionOptions& o) {
  if (o.samples < 1 || o.features < 1 || o.informative < 0 || o.informative > o.features || o.noise < 0)
    detail::raise<ValueError>("make_regression: need samples >= 1, 0 <= informative <= features, noise >= 0");
  CounterRng rng(o.seed, RandomDomain::split, 200);
  SyntheticData d;
  d.X.resize(o.samples, o.features);
  for (Index i = 0; i < d.X.size(); ++i) d.X.data()[i] = rng.normal();
  Eigen::VectorXd w = Eigen::VectorXd::Zero(o.features);
  for (Index i = 0; i < o.informative; ++i) w(i) = 100.0 * rng.uniform();
  d.y = d.X * w + Eigen::VectorXd::Constant(o.samples, o.bias);
  for (Index r = 0; r < o.samples; ++r) d.y(r) += o.noise * rng.normal();
  return d;
}

}  // namespace nmsnn
