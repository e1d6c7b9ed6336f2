// nmsnn/viz/svg.hpp — a small SVG drawing kit for nmsnn's plots: a canvas, axes with "nice"
// ticks, colour maps (viridis for magnitudes, a blue-white-red diverging map for signed values)
// and XML escaping. Every plot is a self-contained SVG string (no scripts, no external fonts or
// links), readable in any browser and embeddable inline in HTML.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace nmsnn::viz {

/// Size and labels of one plot.
struct PlotOptions {
  double width = 640, height = 420;
  std::string title = {}, xlabel = {}, ylabel = {};
};

/// Colours for successive series (Tableau 10, colour-blind friendly enough and widely used).
inline const char* series_colour(std::size_t i) {
  static constexpr std::array<const char*, 10> c = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return c[i % c.size()];
}

inline std::string escape_xml(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(ch) >= 0x20 || ch == '\n' || ch == '\t') out += ch;
    }
  }
  return out;
}

/// A number written short: integers without decimals, others with up to 4 significant digits.
inline std::string format_number(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[32];
  if (std::abs(v) < 1e-12) return "0";
  if (std::abs(v - std::round(v)) < 1e-9 * std::max(1.0, std::abs(v)) && std::abs(v) < 1e7)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

inline std::string hex_colour(double r, double g, double b) {
  char buf[8];
  auto c = [](double x) { return int(std::lround(std::clamp(x, 0.0, 1.0) * 255)); };
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c(r), c(g), c(b));
  return buf;
}

/// Viridis (matplotlib's default colour map), t in [0, 1], interpolated between 9 anchors.
inline std::string viridis(double t) {
  static constexpr double a[9][3] = {{0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530},
                                     {0.207, 0.372, 0.553}, {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551},
                                     {0.135, 0.659, 0.518}, {0.477, 0.821, 0.318}, {0.993, 0.906, 0.144}};
  t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.0;
  const double x = t * 8;
  const int i = std::min(7, int(x));
  const double f = x - i;
  return hex_colour(a[i][0] + f * (a[i + 1][0] - a[i][0]), a[i][1] + f * (a[i + 1][1] - a[i][1]),
                    a[i][2] + f * (a[i + 1][2] - a[i][2]));
}

/// Blue (t = 0) - white (t = 0.5) - red (t = 1), for signed values centred on zero.
inline std::string diverging(double t) {
  t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.5;
  if (t < 0.5) {
    const double f = t / 0.5;
    return hex_colour(0.13 + f * 0.87, 0.40 + f * 0.60, 0.67 + f * 0.33);
  }
  const double f = (t - 0.5) / 0.5;
  return hex_colour(1.0 - f * 0.30, 1.0 - f * 0.91, 1.0 - f * 0.85);
}

/// About n round tick values covering [lo, hi] (1, 2, 5 times a power of ten apart).
inline std::vector<double> nice_ticks(double lo, double hi, int n = 5) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-300) return {lo};
  const double raw = (hi - lo) / std::max(1, n);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  const double step = (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

/// An SVG document being built.
class Canvas {
 public:
  Canvas(double width, double height) : w_(width), h_(height) {
    out_ << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w_ << "\" height=\"" << h_
         << "\" viewBox=\"0 0 " << w_ << ' ' << h_ << "\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\">\n"
         << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  }
  double width() const { return w_; }
  double height() const { return h_; }

  void rect(double x, double y, double w, double h, std::string_view fill, std::string_view extra = {}) {
    out_ << "<rect x=\"" << r(x) << "\" y=\"" << r(y) << "\" width=\"" << r(w) << "\" height=\"" << r(h)
         << "\" fill=\"" << fill << '"' << (extra.empty() ? "" : " ") << extra << "/>\n";
  }
  void line(double x1, double y1, double x2, double y2, std::string_view stroke, double width = 1,
            std::string_view extra = {}) {
    out_ << "<line x1=\"" << r(x1) << "\" y1=\"" << r(y1) << "\" x2=\"" << r(x2) << "\" y2=\"" << r(y2)
         << "\" stroke=\"" << stroke << "\" stroke-width=\"" << width << '"' << (extra.empty() ? "" : " ") << extra
         << "/>\n";
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, std::string_view stroke, double width = 1.5,
                std::string_view extra = {}) {
    if (pts.empty()) return;
    out_ << "<polyline fill=\"none\" stroke=\"" << stroke << "\" stroke-width=\"" << width << "\" points=\"";
    for (const auto& [x, y] : pts) out_ << r(x) << ',' << r(y) << ' ';
    out_ << '"' << (extra.empty() ? "" : " ") << extra << "/>\n";
  }
  void circle(double x, double y, double radius, std::string_view fill, std::string_view extra = {}) {
    out_ << "<circle cx=\"" << r(x) << "\" cy=\"" << r(y) << "\" r=\"" << radius << "\" fill=\"" << fill << '"'
         << (extra.empty() ? "" : " ") << extra << "/>\n";
  }
  /// Text; anchor is start, middle or end; rotate in degrees about (x, y).
  void text(double x, double y, std::string_view s, double size = 12, std::string_view anchor = "middle",
            double rotate = 0, std::string_view fill = "#222") {
    out_ << "<text x=\"" << r(x) << "\" y=\"" << r(y) << "\" font-size=\"" << size << "\" text-anchor=\"" << anchor
         << "\" fill=\"" << fill << '"';
    if (rotate != 0) out_ << " transform=\"rotate(" << rotate << ' ' << r(x) << ' ' << r(y) << ")\"";
    out_ << '>' << escape_xml(s) << "</text>\n";
  }
  void raw(std::string_view s) { out_ << s; }
  std::string str() const { return out_.str() + "</svg>\n"; }

 private:
  static std::string r(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    std::string s = buf;
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s == "-0" ? "0" : s;
  }
  double w_, h_;
  std::ostringstream out_;
};

/// A plotting area inside a canvas mapping data coordinates to pixels.
class Axes {
 public:
  /// Margins leave room for the title, tick labels and axis labels.
  Axes(Canvas& c, double x0, double x1, double y0, double y1, double left = 70, double right = 20, double top = 40,
       double bottom = 55)
      : c_(c), left_(left), top_(top), pw_(c.width() - left - right), ph_(c.height() - top - bottom) {
    set_range(x0, x1, y0, y1);
  }
  void set_range(double x0, double x1, double y0, double y1) {
    auto widen = [](double& a, double& b) {
      if (!std::isfinite(a) || !std::isfinite(b)) a = 0, b = 1;
      if (b - a < 1e-12 * std::max(1.0, std::abs(a))) a -= 0.5, b += 0.5;
    };
    widen(x0, x1);
    widen(y0, y1);
    x0_ = x0, x1_ = x1, y0_ = y0, y1_ = y1;
  }
  double x(double v) const { return left_ + (v - x0_) / (x1_ - x0_) * pw_; }
  double y(double v) const { return top_ + ph_ - (v - y0_) / (y1_ - y0_) * ph_; }
  double left() const { return left_; }
  double top() const { return top_; }
  double plot_width() const { return pw_; }
  double plot_height() const { return ph_; }
  double x0() const { return x0_; }
  double x1() const { return x1_; }
  double y0() const { return y0_; }
  double y1() const { return y1_; }

  /// Frame, grid, ticks with labels, axis labels and title.
  void decorate(const PlotOptions& o, bool grid = true, bool xticks = true, bool yticks = true) {
    if (xticks)
      for (double t : nice_ticks(x0_, x1_, std::max(2, int(pw_ / 90)))) {
        if (t < x0_ - 1e-12 || t > x1_ + 1e-12) continue;
        if (grid) c_.line(x(t), top_, x(t), top_ + ph_, "#e6e6e6");
        c_.line(x(t), top_ + ph_, x(t), top_ + ph_ + 5, "#444");
        c_.text(x(t), top_ + ph_ + 18, format_number(t), 11);
      }
    if (yticks)
      for (double t : nice_ticks(y0_, y1_, std::max(2, int(ph_ / 60)))) {
        if (t < y0_ - 1e-12 || t > y1_ + 1e-12) continue;
        if (grid) c_.line(left_, y(t), left_ + pw_, y(t), "#e6e6e6");
        c_.line(left_ - 5, y(t), left_, y(t), "#444");
        c_.text(left_ - 8, y(t) + 4, format_number(t), 11, "end");
      }
    c_.rect(left_, top_, pw_, ph_, "none", "stroke=\"#444\" stroke-width=\"1\"");
    if (!o.title.empty()) c_.text(left_ + pw_ / 2, top_ - 14, o.title, 15);
    if (!o.xlabel.empty()) c_.text(left_ + pw_ / 2, top_ + ph_ + 40, o.xlabel, 13);
    if (!o.ylabel.empty()) c_.text(left_ - 50, top_ + ph_ / 2, o.ylabel, 13, "middle", -90);
  }

  /// A legend box in the corner (top right or bottom right).
  void legend(const std::vector<std::string>& names, bool bottom = false) {
    if (names.empty()) return;
    std::size_t longest = 0;
    for (const auto& n : names) longest = std::max(longest, n.size());
    const double w = 34 + 6.8 * double(longest), h = 18.0 * double(names.size()) + 8;
    const double bx = left_ + pw_ - w - 8, by = bottom ? top_ + ph_ - h - 8 : top_ + 8;
    c_.rect(bx, by, w, h, "white", "fill-opacity=\"0.85\" stroke=\"#999\"");
    for (std::size_t i = 0; i < names.size(); ++i) {
      const double yy = by + 16 + 18.0 * double(i);
      c_.line(bx + 6, yy - 4, bx + 26, yy - 4, series_colour(i), 2.5);
      c_.text(bx + 30, yy, names[i], 11, "start");
    }
  }

 private:
  Canvas& c_;
  double left_, top_, pw_, ph_;
  double x0_ = 0, x1_ = 1, y0_ = 0, y1_ = 1;
};

}  // namespace nmsnn::viz
