// nmsnn/preprocessing/preprocessing.hpp — scalers (fit / transform / inverse, saved with a
// model), seeded train/test splits with optional stratification, and k-fold indices.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string_view>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"

namespace nmsnn {

enum class Scaling { none, standard, minmax };

inline std::string_view to_string(Scaling s) {
  return s == Scaling::standard ? "standard" : s == Scaling::minmax ? "minmax" : "none";
}
inline Scaling parse_scaling(std::string_view s) {
  if (s == "standard") return Scaling::standard;
  if (s == "minmax") return Scaling::minmax;
  if (s == "none") return Scaling::none;
  detail::raise<ValueError>("scaling: expected standard, minmax or none, found '", s, "'");
}

/// x' = (x - offset) / scale, column by column. StandardScaler: offset = mean, scale = std
/// (population, as scikit-learn; 1 for a constant column). MinMaxScaler: offset = min,
/// scale = max - min (1 for a constant column), mapping to [0, 1].
class Scaler {
 public:
  Scaler() = default;
  explicit Scaler(Scaling kind) : kind_(kind) {}
  Scaler(Scaling kind, Eigen::RowVectorXd offset, Eigen::RowVectorXd scale)
      : kind_(kind), offset_(std::move(offset)), scale_(std::move(scale)) {
    if (offset_.size() != scale_.size())
      detail::raise<ShapeError>("Scaler: offset and scale sizes differ");
    if (!offset_.allFinite() || !scale_.allFinite() || (scale_.array() == 0).any())
      detail::raise<ValueError>("Scaler: offsets must be finite and scales finite and non-zero");
  }

  Scaling kind() const { return kind_; }
  bool fitted() const { return kind_ == Scaling::none || offset_.size() > 0; }
  const Eigen::RowVectorXd& offset() const { return offset_; }
  const Eigen::RowVectorXd& scale() const { return scale_; }

  template <class D>
  Scaler& fit(const Eigen::MatrixBase<D>& X) {
    if (X.rows() < 1) detail::raise<ShapeError>("Scaler::fit: no rows");
    const Eigen::MatrixXd Xd = X.template cast<double>();  // evaluated once (an expression such as Random may differ per read)
    if (!Xd.allFinite()) detail::raise<ValueError>("Scaler::fit: X has non-finite values");
    if (kind_ == Scaling::standard) {
      // Each column's statistics on the column divided by a power of two near its largest
      // magnitude, then multiplied back: exact scalings, so the same bits as the plain formula
      // wherever that does not overflow, and finite for values up to the largest double (the
      // squares of 1e300 overflowed, and the column silently became 0).
      offset_.resize(Xd.cols());
      scale_.resize(Xd.cols());
      for (Index j = 0; j < Xd.cols(); ++j) {
        const double top = Xd.col(j).cwiseAbs().maxCoeff();
        int e = 0;
        std::frexp(top, &e);
        const double p = top > 0 ? std::ldexp(1.0, e) : 1.0;
        const Eigen::ArrayXd z = Xd.col(j).array() / p;
        const double mean = z.mean();
        offset_(j) = mean * p;
        scale_(j) = std::sqrt((z - mean).square().sum() / double(Xd.rows())) * p;
      }
    } else if (kind_ == Scaling::minmax) {
      offset_ = Xd.colwise().minCoeff();
      scale_ = Xd.colwise().maxCoeff() - offset_;
      for (Index j = 0; j < scale_.size(); ++j)
        if (!std::isfinite(scale_(j)))
          detail::raise<ValueError>("Scaler::fit: column ", j, ": its range (max - min) overflows a double; use standard scaling");
    } else {
      offset_ = Eigen::RowVectorXd::Zero(Xd.cols());
      scale_ = Eigen::RowVectorXd::Ones(Xd.cols());
    }
    for (Index j = 0; j < scale_.size(); ++j)
      if (!(scale_(j) > 0)) scale_(j) = 1.0;  // a constant column maps to 0
    return *this;
  }

  template <class D>
  Eigen::MatrixXd transform(const Eigen::MatrixBase<D>& X) const {
    check(X.cols(), "transform");
    if (kind_ == Scaling::none && offset_.size() == 0) return X.template cast<double>();
    return (X.template cast<double>().rowwise() - offset_).array().rowwise() / scale_.array();
  }
  template <class D>
  Eigen::MatrixXd fit_transform(const Eigen::MatrixBase<D>& X) {
    fit(X);
    return transform(X);
  }
  template <class D>
  Eigen::MatrixXd inverse_transform(const Eigen::MatrixBase<D>& X) const {
    check(X.cols(), "inverse_transform");
    if (kind_ == Scaling::none && offset_.size() == 0) return X.template cast<double>();
    return (X.template cast<double>().array().rowwise() * scale_.array()).rowwise() + offset_.array();
  }

 private:
  void check(Index cols, std::string_view what) const {
    if (kind_ != Scaling::none && offset_.size() == 0)
      detail::raise<ValueError>("Scaler::", what, ": call fit first");
    if (offset_.size() > 0 && cols != offset_.size())
      detail::raise<ShapeError>("Scaler::", what, ": expected ", offset_.size(), " columns, found ", cols);
  }
  Scaling kind_ = Scaling::none;
  Eigen::RowVectorXd offset_, scale_;
};

inline Scaler StandardScaler() { return Scaler(Scaling::standard); }
inline Scaler MinMaxScaler() { return Scaler(Scaling::minmax); }

/// Row indices of a train/test split.
struct Split {
  std::vector<Index> train, test;
};

namespace detail {
/// Rows train_test_split puts in the test part of n: ceil(test_size * n), at least 1 and at
/// most n - 1.
inline Index test_rows(Index n, double test_size) {
  return std::clamp<Index>(Index(std::ceil(test_size * double(n))), 1, n - 1);
}
}  // namespace detail

/// Seeded shuffle split; test_size is a fraction in (0, 1) (the test part gets
/// ceil(test_size * n) rows, as scikit-learn). With stratify, each class keeps its proportion
/// in both parts (labels in `strata`).
inline Split train_test_split(Index n, double test_size, std::uint64_t seed, const Labels* strata = nullptr) {
  if (!(test_size > 0 && test_size < 1))
    detail::raise<ValueError>("train_test_split: test_size must be in (0, 1), found ", test_size);
  if (n < 2) detail::raise<ValueError>("train_test_split: need at least 2 rows, found ", n);
  const Index n_test = detail::test_rows(n, test_size);
  Split s;
  CounterRng rng(seed, RandomDomain::split);
  auto shuffle = [&](std::vector<Index>& v) {
    for (Index i = Index(v.size()) - 1; i > 0; --i) std::swap(v[std::size_t(i)], v[rng.below(std::uint64_t(i) + 1)]);
  };
  if (!strata) {
    std::vector<Index> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), Index(0));
    shuffle(idx);
    s.test.assign(idx.begin(), idx.begin() + n_test);
    s.train.assign(idx.begin() + n_test, idx.end());
  } else {
    if (strata->size() != n) detail::raise<ShapeError>("train_test_split: ", strata->size(), " labels for ", n, " rows");
    std::map<int, std::vector<Index>> by_class;
    for (Index i = 0; i < n; ++i) by_class[(*strata)(i)].push_back(i);
    // Largest-remainder allocation of the test rows to the classes.
    std::vector<std::pair<double, int>> rem;
    std::map<int, Index> take;
    Index assigned = 0;
    for (auto& [k, rows] : by_class) {
      const double exact = double(n_test) * double(rows.size()) / double(n);
      take[k] = Index(std::floor(exact));
      assigned += take[k];
      rem.push_back({exact - std::floor(exact), k});
    }
    std::stable_sort(rem.begin(), rem.end(), [](auto& a, auto& b) { return a.first > b.first; });
    for (std::size_t i = 0; assigned < n_test && i < rem.size(); ++i, ++assigned) take[rem[i].second] += 1;
    for (auto& [k, rows] : by_class) {
      shuffle(rows);
      s.test.insert(s.test.end(), rows.begin(), rows.begin() + take[k]);
      s.train.insert(s.train.end(), rows.begin() + take[k], rows.end());
    }
    shuffle(s.test);
    shuffle(s.train);
  }
  return s;
}

/// k folds of a seeded shuffle of 0..n-1: fold i's test rows and the remaining train rows.
inline std::vector<Split> kfold(Index n, Index k, std::uint64_t seed, bool shuffle = true) {
  if (k < 2 || k > n) detail::raise<ValueError>("kfold: k must be in 2..", n, ", found ", k);
  std::vector<Index> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), Index(0));
  if (shuffle) {
    CounterRng rng(seed, RandomDomain::split, 1);
    for (Index i = n - 1; i > 0; --i) std::swap(idx[std::size_t(i)], idx[rng.below(std::uint64_t(i) + 1)]);
  }
  std::vector<Split> folds(static_cast<std::size_t>(k));
  Index start = 0;
  for (Index f = 0; f < k; ++f) {
    const Index size = n / k + (f < n % k ? 1 : 0);  // scikit-learn's fold sizes
    for (Index i = 0; i < n; ++i)
      (i >= start && i < start + size ? folds[std::size_t(f)].test : folds[std::size_t(f)].train).push_back(idx[std::size_t(i)]);
    start += size;
  }
  return folds;
}

/// Rows of a matrix or vector selected by index.
template <class D>
Eigen::Matrix<typename D::Scalar, Eigen::Dynamic, D::ColsAtCompileTime> take_rows(const Eigen::MatrixBase<D>& M,
                                                                                   const std::vector<Index>& rows) {
  Eigen::Matrix<typename D::Scalar, Eigen::Dynamic, D::ColsAtCompileTime> out(Index(rows.size()), M.cols());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= M.rows()) detail::raise<ValueError>("take_rows: row ", rows[i], " out of range");
    out.row(Index(i)) = M.row(rows[i]);
  }
  return out;
}

}  // namespace nmsnn
