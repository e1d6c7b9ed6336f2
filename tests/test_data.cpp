// read_csv on the shipped data and on small files the tests write.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include "test_helpers.hpp"

using namespace nmsnn;

namespace {
std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = "nmsnn_test_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}
}  // namespace

TEST_CASE("read_csv reads the shipped data sets") {
  const Dataset house = read_csv(std::string(NMSNN_TEST_DATA) + "/house_price.csv",
                                 {.target = std::string("house_price")});
  CHECK(house.rows() == 414);
  CHECK(house.features() == 3);
  CHECK(house.feature_names[1] == "distance_to_nearest_MRT station");
  CHECK(house.y(0) == 37.9);
  CHECK(house.X(0, 1) == 84.87882);
  const Dataset digits = read_csv(std::string(NMSNN_TEST_DATA) + "/digits.csv");
  CHECK(digits.rows() == 1797);
  CHECK(digits.features() == 64);
  CHECK(digits.target_name == "target");
  CHECK(digits.y.maxCoeff() == 9);
}

TEST_CASE("read_csv: quotes, string labels, delimiter, target by index") {
  const auto p = write_file("a.csv",
                            "\"sepal, length\";w;species\n1.5;2;setosa\n\"3\";4e-1;virginica\n\n-1;+2;setosa\r\n");
  const Dataset d = read_csv(p, {.delimiter = ';', .target = Index(2)});
  CHECK(d.rows() == 3);
  CHECK(d.feature_names[0] == "sepal, length");
  CHECK(d.class_names == std::vector<std::string>{"setosa", "virginica"});
  CHECK(d.y(1) == 1);
  CHECK(d.X(1, 0) == 3.0);
  CHECK(d.X(1, 1) == 0.4);
  CHECK(d.X(2, 1) == 2.0);
  std::remove(p.c_str());
}

TEST_CASE("read_csv: malformed files throw IoError naming file, line and column") {
  auto expect = [](const std::string& text, const std::string& needle, CsvOptions o = {}) {
    const auto p = write_file("bad.csv", text);
    try {
      read_csv(p, o);
      FAIL("no throw for: " << text);
    } catch (const IoError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
    std::remove(p.c_str());
  };
  expect("", "empty");
  expect("a,b\n", "no data rows");
  expect("a,b\n1,2\n3\n", "line 3 has 1 fields");
  expect("a,b\nx,1\n", "'x' is not a number");
  expect("a,b\n,1\n", "empty field");
  expect("a,b\n1,\n2,x\n", "empty target");
  expect("a,b\n1,nan\n", "non-finite");
  expect("a,b\n1,2\n", "no column named 'c'", {.target = std::string("c")});
  expect("a,a\n1,2\n", "more than once", {.target = std::string("a")});
  expect("a,b\n\"1,2\n", "unterminated");
  CHECK_THROWS_AS(read_csv("/nonexistent/file.csv"), IoError);
}

TEST_CASE("IDX files: images and labels, and malformed files") {
  // A 2-image 2x3 file and its labels, written the way MNIST's are.
  std::string img = std::string("\0\0\x08\x03", 4) + std::string("\0\0\0\x02\0\0\0\x02\0\0\0\x03", 12);
  for (int i = 0; i < 12; ++i) img += char(i * 20);
  const auto pi = write_file("img.idx", img);
  const Eigen::MatrixXd X = read_idx_images(pi);
  CHECK(X.rows() == 2);
  CHECK(X.cols() == 6);
  CHECK(X(1, 5) == Approx(220.0 / 255.0));
  const auto pl = write_file("lab.idx", std::string("\0\0\x08\x01\0\0\0\x02\x07\x03", 10));
  const Eigen::VectorXd y = read_idx_labels(pl);
  CHECK(y(0) == 7);
  CHECK(y(1) == 3);
  CHECK_THROWS_AS(read_idx_labels(pi), IoError);  // images are not labels
  // Truncated, foreign, and a header that claims more than the file holds.
  const auto t = write_file("t.idx", img.substr(0, img.size() - 1));
  CHECK_THROWS_AS(read_idx(t), IoError);
  const auto f = write_file("f.idx", "hello world");
  CHECK_THROWS_AS(read_idx(f), IoError);
  const auto g = write_file("g.idx", std::string("\0\0\x08\x02\x7f\xff\xff\xff\x7f\xff\xff\xff", 12));
  CHECK_THROWS_AS(read_idx(g), IoError);
  for (const auto& p : {pi, pl, t, f, g}) std::remove(p.c_str());
}

TEST_CASE("write_csv round-trips through read_csv and replaces files atomically") {
  Eigen::MatrixXd M(3, 2);
  M << 0.1, 1e-30, -2.5, 3.0, 1.0 / 3.0, 42;
  const std::string path = "nmsnn_test_out.csv";
  write_csv(path, M, {"a, quoted", "target"});
  const Dataset d = read_csv(path);
  CHECK(d.feature_names[0] == "a, quoted");
  CHECK(d.X.col(0) == M.col(0));
  CHECK(d.y == M.col(1));
  CHECK_THROWS_AS(write_csv("/nonexistent-dir/x.csv", M, {"a", "b"}), IoError);
  CHECK_THROWS_AS(write_csv(path, M, {"only one"}), ShapeError);
  std::remove(path.c_str());
}
