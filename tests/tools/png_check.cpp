// png_check FILE WIDTH HEIGHT: decodes an 8-bit RGB or RGBA PNG (zlib, no other library) and
// checks that it has the expected size and is not blank: at least 1% of its pixels differ from
// the most common colour and it holds at least 16 distinct colours. Exit 0 when it passes.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace {
std::uint32_t be32(const unsigned char* p) { return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | p[3]; }
int fail(const std::string& m) {
  std::cerr << "png_check: " << m << "\n";
  return 1;
}
int paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return fail("usage: png_check FILE WIDTH HEIGHT");
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) return fail(std::string("cannot open ") + argv[1]);
  const std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* d = reinterpret_cast<const unsigned char*>(s.data());
  if (s.size() < 33 || s.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return fail("not a PNG file");
  std::uint32_t w = 0, h = 0;
  int depth = 0, type = 0, interlace = 0;
  std::string idat;
  for (std::size_t p = 8; p + 12 <= s.size();) {
    const std::uint32_t len = be32(d + p);
    if (p + 12 + len > s.size()) return fail("truncated chunk");
    const std::string tag = s.substr(p + 4, 4);
    if (tag == "IHDR") {
      w = be32(d + p + 8), h = be32(d + p + 12), depth = d[p + 16], type = d[p + 17], interlace = d[p + 20];
    } else if (tag == "IDAT") {
      idat.append(s, p + 8, len);
    } else if (tag == "IEND") {
      break;
    }
    p += 12 + len;
  }
  if (w != std::uint32_t(std::atoi(argv[2])) || h != std::uint32_t(std::atoi(argv[3])))
    return fail("size " + std::to_string(w) + "x" + std::to_string(h) + ", expected " + argv[2] + "x" + argv[3]);
  if (depth != 8 || (type != 2 && type != 6) || interlace) return fail("only 8-bit RGB/RGBA non-interlaced PNGs are checked");
  const std::size_t bpp = type == 6 ? 4 : 3, stride = w * bpp;
  std::vector<unsigned char> raw((stride + 1) * h);
  uLongf n = raw.size();
  if (uncompress(raw.data(), &n, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK || n != raw.size())
    return fail("corrupt image data");
  std::vector<unsigned char> img(stride * h), prev(stride, 0);
  for (std::uint32_t y = 0; y < h; ++y) {
    const unsigned char f = raw[y * (stride + 1)];
    const unsigned char* src = &raw[y * (stride + 1) + 1];
    unsigned char* row = &img[y * stride];
    for (std::size_t x = 0; x < stride; ++x) {
      const int a = x >= bpp ? row[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
      int v = src[x];
      switch (f) {
        case 0: break;
        case 1: v += a; break;
        case 2: v += b; break;
        case 3: v += (a + b) / 2; break;
        case 4: v += paeth(a, b, c); break;
        default: return fail("bad filter type");
      }
      row[x] = static_cast<unsigned char>(v);
    }
    std::copy(row, row + stride, prev.begin());
  }
  std::map<std::uint32_t, std::size_t> colours;
  for (std::size_t i = 0; i < std::size_t(w) * h; ++i) {
    const unsigned char* px = &img[i * bpp];
    ++colours[std::uint32_t(px[0]) << 16 | std::uint32_t(px[1]) << 8 | px[2]];
  }
  std::size_t most = 0;
  for (const auto& [c, k] : colours) most = std::max(most, k);
  const double other = 1.0 - double(most) / (double(w) * h);
  std::printf("png_check: %ux%u, %zu colours, %.1f%% of pixels differ from the background\n", w, h, colours.size(), 100 * other);
  if (colours.size() < 16 || other < 0.01) return fail("the picture is blank");
  return 0;
}
