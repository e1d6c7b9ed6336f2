// nmsnn/data/csv.hpp — reading a CSV file into features and a target, the first step of every
// demo. Handles a header row, any one-character delimiter, quoted fields (with "" escapes),
// header names with spaces, and string class labels (mapped to 0..K-1 in sorted order, the
// mapping kept). Malformed input throws IoError naming the file, row and column.
#pragma once

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/memory.hpp"
#include "nmsnn/io/files.hpp"

namespace nmsnn {

struct CsvOptions {
  char delimiter = ',';
  bool header = true;
  /// Target column by name or 0-based index; by default the last column.
  std::variant<std::monostate, std::string, Index> target = std::monostate{};
  /// Every column is a feature (data to predict on): y stays empty and `target` is ignored.
  bool no_target = false;
  /// Longest line accepted (a guard against a file that is not CSV).
  std::size_t max_line_bytes = std::size_t(256) << 20;
  /// A shard of the rows: only data rows i (0-based, blank lines not counted) with
  /// i % row_stride == row_offset are parsed and kept (a distributed fit's rank r of P reads
  /// with stride P, offset r); the others are counted, not parsed. Dataset::total_rows says
  /// how many data rows the file has.
  Index row_stride = 1, row_offset = 0;
};

/// Features X (one row per sample), target y, and the names that go with them.
struct Dataset {
  Eigen::MatrixXd X;
  /// Data rows in the file (X.rows() unless CsvOptions::row_stride > 1).
  Index total_rows = 0;
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

namespace detail {

/// Lines of a regular file, read in blocks, each at most `cap` bytes (IoError beyond: a file
/// with no line ends is not read into one unbounded string).
class LineReader {
 public:
  LineReader(const std::string& path, std::size_t cap) : path_(path), cap_(cap) {
    require_regular_file(path, "read_csv");
    in_.open(path, std::ios::binary);
    if (!in_) raise<IoError>("read_csv: cannot open '", path, "'");
  }
  /// The next line without its '\n' (and '\r'); false at the end of the file.
  bool next(std::string& line, std::size_t line_no) {
    line.clear();
    for (;;) {
      if (pos_ == len_) {
        if (eof_) return !line.empty();
        in_.read(buf_.data(), std::streamsize(buf_.size()));
        if (in_.bad()) raise<IoError>("read_csv: ", path_, ": read error at line ", line_no);
        len_ = std::size_t(in_.gcount());
        pos_ = 0;
        if (len_ == 0) {
          eof_ = true;
          if (line.empty()) return false;
          break;
        }
      }
      const char* b = buf_.data() + pos_;
      const char* nl = static_cast<const char*>(std::memchr(b, '\n', len_ - pos_));
      const std::size_t take = nl ? std::size_t(nl - b) : len_ - pos_;
      if (line.size() + take > cap_)
        raise<IoError>("read_csv: ", path_, ": line ", line_no, " is longer than ", cap_, " bytes (not a CSV file?)");
      line.append(b, take);
      pos_ += take + (nl ? 1 : 0);
      if (nl) break;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

 private:
  std::ifstream in_;
  std::string path_;
  std::size_t cap_;
  std::vector<char> buf_ = std::vector<char>(std::size_t(1) << 16);
  std::size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
};

inline bool is_missing_token(const std::string& s) {
  static const char* const tokens[] = {"", "na", "n/a", "nan", "null", "none", "?", "-", "missing"};
  std::string l;
  for (char c : s) l += char(std::tolower(static_cast<unsigned char>(c)));
  for (const char* t : tokens)
    if (l == t) return true;
  return false;
}

}  // namespace detail

/// Reads a CSV file. Every row must have as many fields as the first; feature fields must be
/// numbers; the target may be numbers or text labels (then mapped to class indices), not a
/// mix (a numeric target with a stray "NA" is an error naming its line). Column names must be
/// distinct. The file must be a regular file (a FIFO or a device is refused before it is
/// opened); the numbers read are counted against memory_limit() (ResourceError above it).
inline Dataset read_csv(const std::string& path, const CsvOptions& options = {}) {
  return detail::allocating("read_csv", "reading '" + path + "'", [&] {
  detail::LineReader reader(path, options.max_line_bytes);
  std::vector<std::string> fields, names;
  std::string line;
  std::size_t line_no = 0;
  auto next_record = [&](std::string& rec) -> bool {
    while (reader.next(rec, line_no + 1)) {
      ++line_no;
      if (line_no == 1 && rec.size() >= 3 && rec.compare(0, 3, "\xEF\xBB\xBF") == 0) rec.erase(0, 3);
      if (detail::trim_copy(rec).empty()) continue;  // blank lines are skipped
      return true;
    }
    return false;
  };
  Index width = -1;
  if (options.header) {
    if (!next_record(line)) detail::raise<IoError>("read_csv: '", path, "' is empty (no header row)");
    if (!detail::split_csv_line(line, options.delimiter, names))
      detail::raise<IoError>("read_csv: ", path, ": line ", line_no, ": unterminated quoted field");
    width = Index(names.size());
    std::map<std::string, std::size_t> first;
    for (std::size_t j = 0; j < names.size(); ++j) {
      const auto [it, fresh] = first.emplace(names[j], j);
      if (!fresh)
        detail::raise<IoError>("read_csv: ", path, ": the column name '", names[j], "' appears more than once (columns ",
                               it->second + 1, " and ", j + 1, "; names must be distinct)");
    }
  }
  // The target's position needs the header (or the first row's width).
  Index target = -1;
  std::string target_name;
  auto locate_target = [&] {
    if (width < (options.no_target ? 1 : 2))
      detail::raise<IoError>("read_csv: ", path, ": need at least 2 columns (features and target), found ", width);
    if (!options.header) {
      names.clear();
      for (Index j = 0; j < width; ++j) names.push_back("x" + std::to_string(j));
    }
    if (options.no_target) return;
    target = width - 1;
    if (const auto* name = std::get_if<std::string>(&options.target)) {
      const auto it = std::find(names.begin(), names.end(), *name);
      if (it == names.end()) {
        std::string known;
        for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
        if (known.size() > 2000) known = known.substr(0, 2000) + ", ...";
        detail::raise<IoError>("read_csv: ", path, ": no column named '", *name, "' (columns: ", known, ")");
      }
      target = Index(it - names.begin());
    } else if (const auto* idx = std::get_if<Index>(&options.target)) {
      if (*idx < 0 || *idx >= width)
        detail::raise<IoError>("read_csv: ", path, ": target column ", *idx, " is outside 0..", width - 1);
      target = *idx;
    }
    target_name = names[std::size_t(target)];
  };
  if (options.header) locate_target();
  std::vector<double> values;            // features, row after row
  std::vector<std::string> target_text;  // the target's fields
  std::vector<std::size_t> row_lines;
  std::size_t text_bytes = 0;
  const std::size_t limit = memory_limit();
  if (options.row_stride < 1 || options.row_offset < 0 || options.row_offset >= options.row_stride)
    detail::raise<ValueError>("read_csv: row_offset must be in 0..row_stride-1 and row_stride >= 1, found ", options.row_offset,
                              " and ", options.row_stride);
  Index data_rows = 0;
  while (next_record(line)) {
    if (options.row_stride > 1 && width >= 0 && data_rows++ % options.row_stride != options.row_offset) continue;
    if (!detail::split_csv_line(line, options.delimiter, fields))
      detail::raise<IoError>("read_csv: ", path, ": line ", line_no, ": unterminated quoted field");
    if (width < 0) {
      width = Index(fields.size());
      locate_target();
      if (options.row_stride > 1 && data_rows++ % options.row_stride != options.row_offset) continue;
    }
    if (Index(fields.size()) != width)
      detail::raise<IoError>("read_csv: ", path, ": line ", line_no, " has ", fields.size(), " fields, ",
                             options.header ? "the header has " : "the first row has ", width);
    for (Index j = 0; j < width; ++j) {
      auto& field = fields[std::size_t(j)];
      if (j == target) {
        text_bytes += field.size() + sizeof(std::string);
        target_text.push_back(std::move(field));
        continue;
      }
      const auto v = detail::parse_number(field);
      if (!v)
        detail::raise<IoError>("read_csv: ", path, ": line ", line_no, ", column '", names[std::size_t(j)], "': ",
                               field.empty() ? std::string("empty field") : "'" + field + "' is not a number");
      if (!std::isfinite(*v))
        detail::raise<IoError>("read_csv: ", path, ": line ", line_no, ", column '", names[std::size_t(j)],
                               "': non-finite value ", field);
      values.push_back(*v);
    }
    row_lines.push_back(line_no);
    if ((row_lines.size() & 1023) == 0) {
      // The values so far, their copy into the matrix and the target's text.
      const std::size_t need = detail::sat_add(detail::sat_mul(values.capacity(), 2 * sizeof(double)), text_bytes);
      detail::check_memory_need(need, limit, "read_csv: " + path, "the rows read so far (" + std::to_string(row_lines.size()) + ")",
                                "raise nmsnn::set_memory_limit or split the file");
    }
  }
  if (row_lines.empty())
    detail::raise<IoError>("read_csv: '", path, "' has no data rows",
                           options.row_stride > 1 ? detail::concat(" for shard ", options.row_offset, " of ", options.row_stride) : "");
  Dataset d;
  d.total_rows = options.row_stride > 1 ? data_rows : Index(row_lines.size());
  const Index n = Index(row_lines.size());
  const Index features = target < 0 ? width : width - 1;
  d.X = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(values.data(), n, features);
  std::vector<double>().swap(values);
  for (Index j = 0; j < width; ++j)
    if (j != target) d.feature_names.push_back(names[std::size_t(j)]);
  if (target < 0) return d;
  d.target_name = target_name;
  d.y.resize(n);
  // Numbers, text labels, or a mix: the mix is an error at the first value of the smaller kind.
  std::size_t numeric = 0;
  for (const auto& t : target_text) numeric += detail::parse_number(t).has_value();
  auto where = [&](std::size_t i) { return detail::concat("read_csv: ", path, ": line ", row_lines[i], ", column '", target_name, "': "); };
  if (numeric > 0 && numeric < target_text.size()) {
    const bool mostly_numbers = 2 * numeric >= target_text.size();
    for (std::size_t i = 0; i < target_text.size(); ++i) {
      const bool is_number = detail::parse_number(target_text[i]).has_value();
      if (is_number == mostly_numbers) continue;
      if (target_text[i].empty()) detail::raise<IoError>(where(i), "empty target");
      if (mostly_numbers)
        detail::raise<IoError>(where(i), "'", target_text[i], "' is not a number, but ", numeric, " of the ", target_text.size(),
                               " target values are", detail::is_missing_token(target_text[i]) ? " (a missing value: fill or remove the row)" : "");
      detail::raise<IoError>(where(i), "the number '", target_text[i], "' among text labels (", target_text.size() - numeric,
                             " of the ", target_text.size(), " target values are text)");
    }
  }
  if (numeric == target_text.size()) {
    for (std::size_t i = 0; i < target_text.size(); ++i) {
      const double v = *detail::parse_number(target_text[i]);
      if (!std::isfinite(v)) detail::raise<IoError>(where(i), "non-finite value ", target_text[i]);
      d.y(Index(i)) = v;
    }
    return d;
  }
  std::map<std::string, int> codes;
  for (std::size_t i = 0; i < target_text.size(); ++i) {
    if (target_text[i].empty()) detail::raise<IoError>(where(i), "empty target");
    codes.emplace(target_text[i], 0);
  }
  int k = 0;
  for (auto& [label, code] : codes) {
    code = k++;
    d.class_names.push_back(label);
  }
  for (std::size_t i = 0; i < target_text.size(); ++i) d.y(Index(i)) = codes[target_text[i]];
  return d;
  });
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
  if (!os) detail::raise<ResourceError>("write_csv: out of memory formatting the table");
  write_file_atomically(path, os.str(), {.where = "write_csv"});
}

}  // namespace nmsnn
