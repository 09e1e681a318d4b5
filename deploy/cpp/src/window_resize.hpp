// The center crop of a bilinear short-side resize, computed without resizing the whole image.
//
// Resizing a 4000x3 image to short side 256 makes 341333x256 pixels (262 MB) to keep a 224x224
// crop; a 100000x1 PNG of a few hundred bytes would ask for 19 GB. Past kMaxResizedPixels only the
// crop window is interpolated, from the source pixels under it, with cv::resize's own sampling
// positions and its uint8 fixed-point arithmetic, so the pixels are those of the plain path. This
// is res2net.data.transforms.resize_center_crop's bilinear uint8 case, step for step.

#pragma once

#include <opencv2/core.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace r2n {

// The Python side's MAX_RESIZED_PIXELS: up to this, the whole image is resized (cv::resize).
constexpr int64_t kMaxResizedPixels = 50'000'000;

// Source indices and 11-bit weights of outputs start .. start+count of a 1-D src -> dst bilinear
// resize, as cv::resize sets them up: single-precision half-pixel positions, borders replicated, and
// for columns (not rows) a position outside the image clamped to the edge pixel.
struct LinearTaps {
  std::vector<int> index;      // count x 2
  std::vector<int64_t> weight;  // count x 2, summing to 2048
};

inline LinearTaps linear_taps(int src, int dst, int start, int count, bool columns) {
  const double scale = 1.0 / (static_cast<double>(dst) / src);
  LinearTaps t{std::vector<int>(2 * count), std::vector<int64_t>(2 * count)};
  for (int k = 0; k < count; ++k) {
    const float f = static_cast<float>((static_cast<double>(start + k) + 0.5) * scale - 0.5);
    const float fi = std::floor(f);
    double frac = static_cast<double>(f - fi);
    int64_t i = static_cast<int64_t>(fi);
    if (columns && (i < 0 || i >= src - 1)) frac = 0;
    auto clamp = [&](int64_t v) { return static_cast<int>(std::clamp<int64_t>(v, 0, src - 1)); };
    t.index[2 * k] = clamp(i);
    t.index[2 * k + 1] = clamp(i + 1);
    t.weight[2 * k] = static_cast<int64_t>(std::nearbyint((1 - frac) * 2048));  // half to even, as np.rint
    t.weight[2 * k + 1] = static_cast<int64_t>(std::nearbyint(frac * 2048));
  }
  return t;
}

// The crop x crop window at (top, left) of `rgb` (CV_8UC3) resized to new_h x new_w, bilinear.
inline cv::Mat resize_window(const cv::Mat& rgb, int new_h, int new_w, int top, int left, int crop) {
  const LinearTaps rows = linear_taps(rgb.rows, new_h, top, crop, false);
  const LinearTaps cols = linear_taps(rgb.cols, new_w, left, crop, true);
  // The horizontal pass of one source row, exact in integers (as cv::resize's), shifted by 4 as its
  // vertical SIMD kernel takes it.
  auto across = [&](int r, std::vector<int64_t>& out) {
    const unsigned char* row = rgb.ptr<unsigned char>(r);
    for (int x = 0; x < crop; ++x)
      for (int c = 0; c < 3; ++c)
        out[3 * x + c] = (cols.weight[2 * x] * row[3 * cols.index[2 * x] + c] +
                          cols.weight[2 * x + 1] * row[3 * cols.index[2 * x + 1] + c]) >>
                         4;
  };
  cv::Mat out(crop, crop, CV_8UC3);
  std::vector<int64_t> upper(3 * crop), lower(3 * crop);
  for (int y = 0; y < crop; ++y) {
    across(rows.index[2 * y], upper);
    across(rows.index[2 * y + 1], lower);
    const int64_t b0 = rows.weight[2 * y], b1 = rows.weight[2 * y + 1];
    unsigned char* dst = out.ptr<unsigned char>(y);
    for (int i = 0; i < 3 * crop; ++i) {
      const int64_t v = ((upper[i] * b0) >> 16) + ((lower[i] * b1) >> 16);  // VResizeLinearVec_32s8u
      dst[i] = static_cast<unsigned char>(std::clamp<int64_t>((v + 2) >> 2, 0, 255));
    }
  }
  return out;
}

}  // namespace r2n
