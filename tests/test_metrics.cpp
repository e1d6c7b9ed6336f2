// Metrics against scikit-learn's values on fixed inputs (fixtures/make_metrics_fixture.py),
// and the preprocessing helpers.
#include <catch2/catch.hpp>

#include "test_helpers.hpp"

#include <Eigen/Dense>

using namespace nmsnn;

namespace {
Labels labels(const nlohmann::json& j) {
  Labels l(Index(j.size()));
  for (std::size_t i = 0; i < j.size(); ++i) l(Index(i)) = j[i].get<int>();
  return l;
}
Eigen::VectorXd vec(const nlohmann::json& j) { return test::to_matrix(j).col(0); }
std::vector<double> stdvec(const nlohmann::json& j) { return j.get<std::vector<double>>(); }
}  // namespace

TEST_CASE("classification metrics equal scikit-learn's") {
  const auto fx = test::load_json("metrics.json")["multiclass"];
  const Labels y = labels(fx["y_true"]), p = labels(fx["y_pred"]);
  CHECK(accuracy(y, p) == Approx(fx["accuracy"].get<double>()).epsilon(1e-12));
  const Eigen::MatrixXi C = confusion_matrix(y, p);
  CHECK(C == test::to_matrix(fx["confusion"]).cast<int>());
  const ClassificationReport r = classification_report(y, p);
  CHECK((r.precision - vec(fx["precision"])).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((r.recall - vec(fx["recall"])).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((r.f1 - vec(fx["f1"])).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(r.support == vec(fx["support"]).cast<int>());
  CHECK(r.macro_precision == Approx(fx["macro"][0].get<double>()).epsilon(1e-12));
  CHECK(r.macro_recall == Approx(fx["macro"][1].get<double>()).epsilon(1e-12));
  CHECK(r.macro_f1 == Approx(fx["macro"][2].get<double>()).epsilon(1e-12));
  CHECK(r.weighted_precision == Approx(fx["weighted"][0].get<double>()).epsilon(1e-12));
  CHECK(r.weighted_recall == Approx(fx["weighted"][1].get<double>()).epsilon(1e-12));
  CHECK(r.weighted_f1 == Approx(fx["weighted"][2].get<double>()).epsilon(1e-12));
  CHECK(r.to_string() == test::load_json("metrics.json")["report"].get<std::string>());
}

TEST_CASE("ROC, precision-recall, AUC and average precision equal scikit-learn's (with tied scores)") {
  const auto fx = test::load_json("metrics.json");
  const Labels y = labels(fx["binary"]["y_true"]);
  const Eigen::VectorXd s = vec(fx["binary"]["score"]);
  const Curve roc = roc_curve(y, s);
  CHECK(roc.x == stdvec(fx["binary"]["roc"][0]));
  CHECK(roc.y == stdvec(fx["binary"]["roc"][1]));
  CHECK(roc_auc(y, s) == Approx(fx["binary"]["roc_auc"].get<double>()).epsilon(1e-12));
  const Curve pr = precision_recall_curve(y, s);
  const auto sk_precision = stdvec(fx["binary"]["pr"][0]), sk_recall = stdvec(fx["binary"]["pr"][1]);
  REQUIRE(pr.y.size() == sk_precision.size());
  for (std::size_t i = 0; i < pr.y.size(); ++i) {
    CHECK(pr.y[i] == Approx(sk_precision[i]).epsilon(1e-12));
    CHECK(pr.x[i] == Approx(sk_recall[i]).epsilon(1e-12));
  }
  CHECK(average_precision(y, s) == Approx(fx["binary"]["average_precision"].get<double>()).epsilon(1e-12));
  const Eigen::MatrixXd proba = test::to_matrix(fx["ovr"]["proba"]);
  CHECK(roc_auc_ovr(labels(fx["ovr"]["y_true"]), proba) == Approx(fx["ovr"]["roc_auc"].get<double>()).epsilon(1e-12));
  CHECK_THROWS_AS(roc_curve(Labels::Zero(5), Eigen::VectorXd::Random(5)), ValueError);  // one class only
}

TEST_CASE("regression metrics equal scikit-learn's") {
  const auto fx = test::load_json("metrics.json")["regression"];
  const RegressionMetrics m = regression_metrics(vec(fx["y_true"]), vec(fx["y_pred"]));
  CHECK(m.mse == Approx(fx["mse"].get<double>()).epsilon(1e-12));
  CHECK(m.rmse == Approx(std::sqrt(fx["mse"].get<double>())).epsilon(1e-12));
  CHECK(m.mae == Approx(fx["mae"].get<double>()).epsilon(1e-12));
  CHECK(m.mape == Approx(fx["mape"].get<double>()).epsilon(1e-12));
  CHECK(m.r2 == Approx(fx["r2"].get<double>()).epsilon(1e-12));
  CHECK(m.pearson_r == Approx(fx["pearson_r"].get<double>()).epsilon(1e-12));
  CHECK(m.rmsre == Approx(fx["rmsre"].get<double>()).epsilon(1e-12));
  CHECK_THROWS_AS(regression_metrics(Eigen::VectorXd::Zero(3), Eigen::VectorXd::Zero(2)), ShapeError);
}

TEST_CASE("scalers: closed forms, inverse, constant columns, errors") {
  Eigen::MatrixXd X(4, 3);
  X << 1, 10, 5, 2, 20, 5, 3, 30, 5, 4, 40, 5;
  Scaler std_scaler = StandardScaler();
  const Eigen::MatrixXd Z = std_scaler.fit_transform(X);
  CHECK(std_scaler.offset()(0) == 2.5);
  CHECK(std_scaler.scale()(0) == Approx(std::sqrt(1.25)));  // population sd, as scikit-learn
  CHECK(Z.col(2).isZero());                                 // a constant column maps to 0
  CHECK((std_scaler.inverse_transform(Z) - X).cwiseAbs().maxCoeff() < 1e-12);
  Scaler mm = MinMaxScaler();
  const Eigen::MatrixXd M = mm.fit_transform(X);
  CHECK(M.col(1).minCoeff() == 0.0);
  CHECK(M.col(1).maxCoeff() == 1.0);
  CHECK(M(1, 0) == Approx(1.0 / 3));
  CHECK_THROWS_AS(mm.transform(Eigen::MatrixXd::Zero(2, 2)), ShapeError);
  CHECK_THROWS_AS(StandardScaler().transform(X), ValueError);  // not fitted
}

TEST_CASE("train_test_split: sizes, disjoint cover, stratification, seeds") {
  Labels y(100);
  for (Index i = 0; i < 100; ++i) y(i) = i < 80 ? 0 : 1;
  const Split s = train_test_split(100, 0.25, 3, &y);
  CHECK(s.test.size() == 25);
  CHECK(s.train.size() == 75);
  std::vector<Index> all = s.train;
  all.insert(all.end(), s.test.begin(), s.test.end());
  std::sort(all.begin(), all.end());
  for (Index i = 0; i < 100; ++i) CHECK(all[std::size_t(i)] == i);
  Index ones = 0;
  for (Index i : s.test) ones += y(i);
  CHECK(ones == 5);  // 20% of the test part, as in the data
  CHECK(train_test_split(100, 0.25, 3).test == train_test_split(100, 0.25, 3).test);
  CHECK(train_test_split(100, 0.25, 3).test != train_test_split(100, 0.25, 4).test);
  CHECK_THROWS_AS(train_test_split(100, 1.0, 0), ValueError);
  const auto folds = kfold(10, 3, 1);
  REQUIRE(folds.size() == 3);
  CHECK(folds[0].test.size() == 4);
  CHECK(folds[2].test.size() == 3);
  CHECK(folds[1].train.size() == 7);
  CHECK_THROWS_AS(kfold(3, 5, 0), ValueError);
}

TEST_CASE("make_classification and make_regression") {
  const SyntheticData d = make_classification({.samples = 1000, .features = 10, .informative = 3, .redundant = 2,
                                               .classes = 3, .flip_y = 0.0, .seed = 4});
  CHECK(d.X.rows() == 1000);
  CHECK(d.X.cols() == 10);
  CHECK(d.y.minCoeff() == 0);
  CHECK(d.y.maxCoeff() == 2);
  // Redundant features are exact linear combinations of the informative ones.
  const Eigen::MatrixXd inf = d.X.leftCols(3);
  const Eigen::MatrixXd coef = inf.colPivHouseholderQr().solve(d.X.middleCols(3, 2));
  CHECK((inf * coef - d.X.middleCols(3, 2)).cwiseAbs().maxCoeff() < 1e-8);
  // Classes separate well: a spiking classifier is not needed to see it; class means differ.
  const SyntheticData r = make_regression({.samples = 200, .features = 5, .informative = 2, .bias = 3.0, .seed = 1});
  const Eigen::VectorXd w = (Eigen::MatrixXd(r.X.rowwise().homogeneous())).colPivHouseholderQr().solve(r.y);
  CHECK(std::abs(w(5) - 3.0) < 1e-8);                  // the bias
  CHECK(w.segment(2, 3).cwiseAbs().maxCoeff() < 1e-8);  // non-informative features
  CHECK_THROWS_AS(make_classification({.features = 3, .informative = 3, .redundant = 1}), ValueError);
}
