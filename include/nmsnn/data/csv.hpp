// nmsnn/data/csv.hpp — reading a CSV file into features and a target, the first step of every
// demo. Handles a header row, any one-character delimiter, quoted fields (with "" escapes),
// header names with spaces, and string class labels (mapped to 0..K-1 in sorted order, the
// mapping kept). Malformed input throws IoError naming the file, row and column.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/io/atomic_file.hpp"

namespace nmsnn {

struct CsvOptions {
  char delimiter = ',';
  bool header = true;
  /// Target column by name or 0-based index; by default the last column.
  std::variant<std::monostate, std::string, Index> target = std::monostate{};
  /// Every column is a feature (data to predict on): y stays empty and `target` is ignored.
  bool no_target = false;
};

/// Features X (one row per sample), target y, and the names that go with them.
struct Dataset {
  Eigen::MatrixXd X;
  Eigen::VectorXd y;
  std::vector<std::string> feature_names;
  std::string target_name;
  /// When the target held strings: class_names[k] is the label mapped to k.
  std::vector<std::string> class_names;

  Index rows() const { return X.rows(); }
  Index features() const { return X.cols(); }
};

namespace detail {

inline std::string trim_copy(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

/// Splits one CSV record; returns false when a quoted field is left open.
inline bool split_csv_line(const std::string& line, char delim, std::vector<std::string>& out) {
  out.clear();
  std::string field;
  bool quoted = false, was_quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < line.size() && line[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
    } else if (c == '"' && field.find_first_not_of(" \t") == std::string::npos) {
      quoted = was_quoted = true;
      field.clear();
    } else if (c == delim) {
      out.push_back(was_quoted ? field : trim_copy(field));
      field.clear();
      was_quoted = false;
    } else {
      field += c;
    }
  }
  out.push_back(was_quoted ? field : trim_copy(field));
  return !quoted;
}

inline std::optional<double> parse_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  double v = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (*first == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  return v;
}

}  // namespace detail

/// Reads a CSV file. Every row must have as many fields as the first; feature fields must be
/// numbers; the target may be numbers or strings (then mapped to class indices).
inline Dataset read_csv(const std::string& path, const CsvOptions& options = {}) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::raise<IoError>("read_csv: cannot open '", path, "'");
  std::vector<std::string> fields, names;
  std::string line;
  std::size_t line_no = 0;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::size_t> row_lines;
  Index width = -1;
  auto next_record = [&](std::string& rec) -> bool {
    while (std::getline(in, rec)) {
      ++line_no;
      if (!rec.empty() && rec.back() == '\r') rec.pop_back();
      if (line_no == 1 && rec.size() >= 3 && rec.compare(0, 3, "\xEF\xBB\xBF") == 0) rec.erase(0, 3);
      if (detail::trim_copy(rec).empty()) continue;  // blank lines are skipped
      return true;
    }
    return false;
  };
  if (options.header) {
    if (!next_record(line)) detail::raise<IoError>("read_csv: '", path, "' is empty (no header row)");
    if (!detail::split_csv_line(line, options.delimiter, names))
      detail::raise<IoError>("read_csv: ", path, ": line ", line_no, ": unterminated quoted field");
    width = Index(names.size());
  }
  while (next_record(line)) {
    if (!detail::split_csv_line(line, options.delimiter, fields))
      detail::raise<IoError>("read_csv: ", path, ": line ", line_no, ": unterminated quoted field");
    if (width < 0) width = Index(fields.size());
    if (Index(fields.size()) != width)
      detail::raise<IoError>("read_csv: ", path, ": line ", line_no, " has ", fields.size(),
                             " fields, ", options.header ? "the header has " : "the first row has ", width);
    rows.push_back(fields);
    row_lines.push_back(line_no);
  }
  if (rows.empty()) detail::raise<IoError>("read_csv: '", path, "' has no data rows");
  if (width < (options.no_target ? 1 : 2))
    detail::raise<IoError>("read_csv: ", path, ": need at least 2 columns (features and target), found ", width);
  if (!options.header) {
    names.clear();
    for (Index j = 0; j < width; ++j) names.push_back("x" + std::to_string(j));
  }
  Index target = options.no_target ? -1 : width - 1;
  const auto* name = options.no_target ? nullptr : std::get_if<std::string>(&options.target);
  const auto* idx = options.no_target ? nullptr : std::get_if<Index>(&options.target);
  if (name) {
    const auto it = std::find(names.begin(), names.end(), *name);
    if (it == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      detail::raise<IoError>("read_csv: ", path, ": no column named '", *name, "' (columns: ", known, ")");
    }
    if (std::count(names.begin(), names.end(), *name) > 1)
      detail::raise<IoError>("read_csv: ", path, ": the target name '", *name, "' appears more than once in the header");
    target = Index(it - names.begin());
  } else if (idx) {
    if (*idx < 0 || *idx >= width)
      detail::raise<IoError>("read_csv: ", path, ": target column ", *idx, " is outside 0..", width - 1);
    target = *idx;
  }
  Dataset d;
  const Index n = Index(rows.size());
  d.X.resize(n, target < 0 ? width : width - 1);
  d.y.resize(target < 0 ? 0 : n);
  if (target >= 0) d.target_name = names[std::size_t(target)];
  for (Index j = 0; j < width; ++j)
    if (j != target) d.feature_names.push_back(names[std::size_t(j)]);
  bool numeric_target = true;
  for (Index i = 0; i < n && numeric_target && target >= 0; ++i)
    numeric_target = detail::parse_number(rows[std::size_t(i)][std::size_t(target)]).has_value();
  if (!numeric_target) {
    std::map<std::string, int> codes;
    for (Index i = 0; i < n; ++i) {
      const auto& v = rows[std::size_t(i)][std::size_t(target)];
      if (v.empty())
        detail::raise<IoError>("read_csv: ", path, ": line ", row_lines[std::size_t(i)], ", column '",
                               d.target_name, "': empty target");
      codes.emplace(v, 0);
    }
    int k = 0;
    for (auto& [name, code] : codes) {
      code = k++;
      d.class_names.push_back(name);
    }
    for (Index i = 0; i < n; ++i) d.y(i) = codes[rows[std::size_t(i)][std::size_t(target)]];
  }
  for (Index i = 0; i < n; ++i) {
    const auto& r = rows[std::size_t(i)];
    Index c = 0;
    for (Index j = 0; j < width; ++j) {
      if (j == target && !numeric_target) continue;
      const auto v = detail::parse_number(r[std::size_t(j)]);
      if (!v)
        detail::raise<IoError>("read_csv: ", path, ": line ", row_lines[std::size_t(i)], ", column '",
                               names[std::size_t(j)], "': ",
                               r[std::size_t(j)].empty() ? std::string("empty field") : "'" + r[std::size_t(j)] + "' is not a number");
      if (!std::isfinite(*v))
        detail::raise<IoError>("read_csv: ", path, ": line ", row_lines[std::size_t(i)], ", column '",
                               names[std::size_t(j)], "': non-finite value ", r[std::size_t(j)]);
      if (j == target) d.y(i) = *v;
      else d.X(i, c++) = *v;
    }
  }
  return d;
}

namespace detail {
inline std::string csv_field(const std::string& s, char delim) {
  if (s.find_first_of(std::string(1, delim) + "\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
}  // namespace detail

/// Writes a table (one row per sample) with a header row, atomically. Numbers are written
/// with 17 significant digits, so that reading them back gives the same doubles.
inline void write_csv(const std::string& path, const Eigen::MatrixXd& table, const std::vector<std::string>& header,
                      char delimiter = ',') {
  if (!header.empty() && Index(header.size()) != table.cols())
    detail::raise<ShapeError>("write_csv: ", header.size(), " header names for ", table.cols(), " columns");
  std::ostringstream os;
  os.precision(17);
  for (std::size_t j = 0; j < header.size(); ++j)
    os << (j ? std::string(1, delimiter) : "") << detail::csv_field(header[j], delimiter);
  if (!header.empty()) os << "\n";
  for (Index i = 0; i < table.rows(); ++i) {
    for (Index j = 0; j < table.cols(); ++j) os << (j ? std::string(1, delimiter) : "") << table(i, j);
    os << "\n";
  }
  write_file_atomically(path, os.str());
}

}  // namespace nmsnn
