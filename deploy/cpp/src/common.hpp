// Shared by every res2net C++ predictor: image decoding, PaddleClas's eval preprocessing
// (= res2net.data.transforms.EvalTransform, bit for bit), labels, the metadata `res2net export`
// writes, the PaddleClas-style output, the command-line flags, and the Runtime interface that
// main.cpp drives (runtime_pt2.cpp: libtorch AOTInductor, runtime_openvino.cpp: OpenVINO,
// runtime_pte.cpp: ExecuTorch). No runtime's headers here: the ExecuTorch program builds against
// ExecuTorch's own copy of c10, which cannot meet libtorch's in one translation unit.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <sched.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "window_resize.hpp"

namespace r2n {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// An error the user caused: printed as one line, exit code 1 (2 for usage errors).
struct UserError : std::runtime_error {
  int code;
  explicit UserError(const std::string& msg, int code_ = 1) : std::runtime_error(msg), code(code_) {}
};

struct Preprocess {
  int resize_short = 256;
  int crop_size = 224;
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float std[3] = {0.229f, 0.224f, 0.225f};
};

inline int parse_int(const std::string& flag, const std::string& value, int min_value) {
  size_t pos = 0;
  long v = 0;
  try {
    v = std::stol(value, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != value.size() || value.empty() || v < min_value || v > 1'000'000)
    throw UserError(flag + ": expected an integer >= " + std::to_string(min_value) + ", got '" + value + "'", 2);
  return static_cast<int>(v);
}

// The flags both predictors take; res2net_predict extends it with its own (batching, threads, benchmark).
struct CommonOptions {
  std::string model;
  std::vector<std::string> images;
  int topk = 5;
  std::string labels;
  bool json = false;
  int resize_short = 0;  // 0: from the package metadata, else 256
  int crop_size = 0;     // 0: from the package metadata, else 224
};

// Reads the value of the flag at argv[i] (advancing i), or throws the usage error "FLAG: missing value".
using FlagValue = std::function<std::string()>;
// A program's own flags: sets what `flag` means (calling `value` for its argument) and returns true,
// or returns false for a flag it does not know.
using ExtraFlag = std::function<bool(const std::string& flag, const FlagValue& value)>;

// Parses argv into `o`: -h/--help prints `usage` and exits 0; the common flags are handled here,
// any other is offered to `extra`; an unknown flag, a missing value or a missing --model / --image
// is a UserError with exit code 2 (usage).
inline void parse_common_args(int argc, char** argv, const char* usage, CommonOptions& o,
                              const ExtraFlag& extra = {}) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const FlagValue value = [&]() -> std::string {
      if (i + 1 >= argc) throw UserError(std::string(argv[i]) + ": missing value", 2);
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      std::exit(0);
    } else if (a == "--model") {
      o.model = value();
    } else if (a == "--image") {
      o.images.push_back(value());
    } else if (a == "--topk") {
      o.topk = parse_int(a, value(), 1);
    } else if (a == "--labels") {
      o.labels = value();
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--resize-short") {
      o.resize_short = parse_int(a, value(), 1);
    } else if (a == "--crop-size") {
      o.crop_size = parse_int(a, value(), 1);
    } else if (!(extra && extra(a, value))) {
      throw UserError("unknown argument '" + a + "' (see --help)", 2);
    }
  }
  if (o.model.empty()) throw UserError("--model is required (see --help)", 2);
  if (o.images.empty()) throw UserError("--image is required (see --help)", 2);
}

// A run's exit status: 0, or 1 after a summary line on stderr when some images could not be read
// (each was already reported on its own line).
inline int exit_status(int failures, size_t images) {
  if (!failures) return 0;
  std::fprintf(stderr, "error: %d of %zu image(s) could not be read\n", failures, images);
  return 1;
}

// The body of both predictors' main(): every exception ends in one "error: ..." line on stderr and
// a non-zero exit (a UserError's own code, else 1), never a crash. `describe` words an unexpected
// exception (res2net_predict strips c10's backtrace from it).
template <class Run, class Describe>
int run_main(Run run, Describe describe) {
  try {
    return run();
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", std::string(describe(e)).c_str());
    return 1;
  }
}

inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Files, and image files under directories (recursively, sorted), as res2net.data.image.find_images.
inline std::vector<std::string> find_images(const std::vector<std::string>& inputs) {
  static const std::vector<std::string> exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif",
                                                ".tiff", ".gif", ".ppm", ".pgm"};
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(in, fs::directory_options::skip_permission_denied, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (!it->is_regular_file(ec)) continue;
        std::string ext = lower(it->path().extension().string());
        if (std::find(exts.begin(), exts.end(), ext) != exts.end()) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) throw UserError(in + ": directory holds no image files");
      out.insert(out.end(), found.begin(), found.end());
    } else {
      out.push_back(in);  // a missing file is reported when it is read, with its own message
    }
  }
  return out;
}

// The JPEG decoder returns a partly grey image for a truncated file (with only a warning); Python
// refuses such a file, so do we: a JPEG must end with its end-of-image marker (trailing bytes allowed).
inline bool jpeg_is_truncated(const std::vector<unsigned char>& data) {
  size_t start = data.size() > 4096 ? data.size() - 4096 : 2;
  for (size_t i = data.size() - 1; i > start; --i)
    if (data[i - 1] == 0xFF && data[i] == 0xD9) return false;
  return true;
}

// Likewise a PNG must hold its IEND chunk: libpng would otherwise print its own "libpng error" line
// to stderr before OpenCV gives up, and a bad file must make exactly one line.
inline bool png_is_truncated(const std::vector<unsigned char>& data) {
  static const unsigned char iend[] = {'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  size_t start = data.size() > 4096 ? data.size() - 4096 : 8;
  for (size_t i = data.size(); i >= start + sizeof iend; --i)
    if (std::equal(iend, iend + sizeof iend, data.begin() + (i - sizeof iend))) return false;
  return true;
}

// Decode to an RGB uint8 image, or throw UserError naming the file and the reason.
inline cv::Mat load_image(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UserError(path + ": no such file");
  if (!fs::is_regular_file(path, ec)) throw UserError(path + ": not a regular file");
  auto size = fs::file_size(path, ec);
  if (ec) throw UserError(path + ": cannot read (" + ec.message() + ")");
  if (size == 0) throw UserError(path + ": file is empty (0 bytes)");
  std::ifstream f(path, std::ios::binary);
  std::vector<unsigned char> data(size);
  if (!f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size)))
    throw UserError(path + ": cannot read");
  bool is_jpeg = data.size() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
  if (is_jpeg && jpeg_is_truncated(data)) throw UserError(path + ": corrupt or truncated image (JPEG has no end marker)");
  static const unsigned char png_magic[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  const bool is_png = data.size() >= 8 && std::equal(png_magic, png_magic + 8, data.begin());
  if (is_png && png_is_truncated(data)) throw UserError(path + ": corrupt or truncated image (PNG has no IEND chunk)");
  cv::Mat bgr;
  try {
    // IMREAD_COLOR: 3 channels, 8 bits, EXIF orientation applied - what load_image() in Python returns.
    bgr = cv::imdecode(data, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw UserError(path + ": corrupt or truncated image (" + e.err + ")");
  }
  if (bgr.empty()) throw UserError(path + ": not an image, or corrupt (OpenCV could not decode it)");
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

// EvalTransform: resize short side, center crop, normalise into `dst` (3 x crop x crop floats, CHW).
inline void preprocess(const cv::Mat& rgb, const Preprocess& p, float* dst) {
  const int h = rgb.rows, w = rgb.cols;
  const double scale = static_cast<double>(p.resize_short) / std::min(h, w);
  // Python's round() is round-half-to-even, as is nearbyint in the default rounding mode.
  const int new_w = static_cast<int>(std::nearbyint(w * scale));
  const int new_h = static_cast<int>(std::nearbyint(h * scale));
  const int c = p.crop_size;
  if (new_h < c || new_w < c)
    throw UserError("cannot crop " + std::to_string(c) + "x" + std::to_string(c) + " from a " + std::to_string(new_w) +
                    "x" + std::to_string(new_h) + " image");
  const int top = (new_h - c) / 2, left = (new_w - c) / 2;
  cv::Mat window;  // the crop x crop pixels of the resized image
  if (static_cast<int64_t>(new_h) * new_w <= kMaxResizedPixels) {
    cv::Mat resized;
    cv::resize(rgb, resized, cv::Size(new_w, new_h), 0, 0, cv::INTER_LINEAR);
    window = resized(cv::Rect(left, top, c, c));
  } else {  // a sliver: resizing it whole would allocate new_h x new_w pixels for a crop x crop window
    window = resize_window(rgb, new_h, new_w, top, left, c);
  }
  float mean255[3], inv_std255[3];
  for (int k = 0; k < 3; ++k) {
    mean255[k] = p.mean[k] * 255.0f;
    inv_std255[k] = 1.0f / (p.std[k] * 255.0f);
  }
  const size_t plane = static_cast<size_t>(c) * c;
  for (int y = 0; y < c; ++y) {
    const unsigned char* row = window.ptr<unsigned char>(y);
    for (int x = 0; x < c; ++x)
      for (int k = 0; k < 3; ++k)
        dst[k * plane + static_cast<size_t>(y) * c + x] =
            (static_cast<float>(row[3 * x + k]) - mean255[k]) * inv_std255[k];
  }
}

// Labels: "name" per line, or PaddleClas's "id name" per line (ids 0..n-1 in order).
inline std::vector<std::string> parse_labels(const std::string& text, const std::string& source) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) throw UserError(source + ": no labels in it");
  bool numbered = true;
  for (size_t i = 0; i < lines.size() && numbered; ++i) {
    std::string prefix = std::to_string(i);
    numbered = lines[i].size() > prefix.size() && lines[i].compare(0, prefix.size(), prefix) == 0 &&
               (lines[i][prefix.size()] == ' ' || lines[i][prefix.size()] == '\t');
  }
  if (numbered)
    for (size_t i = 0; i < lines.size(); ++i) lines[i] = lines[i].substr(std::to_string(i).size() + 1);
  return lines;
}

inline std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw UserError("--labels " + path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_labels(ss.str(), "--labels " + path);
}

inline std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (ch < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  return out;
}

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Minimal readers for the JSON values `res2net export` stores in the package metadata
// (flat objects and arrays of numbers/strings: no JSON library needed).
inline std::optional<std::string> json_field(const std::string& obj, const std::string& key) {
  auto k = obj.find("\"" + key + "\"");
  if (k == std::string::npos) return std::nullopt;
  auto colon = obj.find(':', k);
  if (colon == std::string::npos) return std::nullopt;
  size_t b = obj.find_first_not_of(" \t\n", colon + 1);
  if (b == std::string::npos) return std::nullopt;
  size_t e = b;
  if (obj[b] == '[') {
    e = obj.find(']', b);
    if (e == std::string::npos) return std::nullopt;
    return obj.substr(b, e - b + 1);
  }
  if (obj[b] == '"') {
    e = obj.find('"', b + 1);
    if (e == std::string::npos) return std::nullopt;
    return obj.substr(b + 1, e - b - 1);
  }
  e = obj.find_first_of(",}", b);
  return obj.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

// "[1, 2.5, \"batch\"]" -> {"1", "2.5", "batch"}; "7" -> {"7"}.
inline std::vector<std::string> json_items(std::string v) {
  std::vector<std::string> out;
  if (!v.empty() && v.front() == '[') v = v.substr(1, v.size() - 2);
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t\n\""), e = item.find_last_not_of(" \t\n\"");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

// A reader for the two JSON shapes `res2net export` writes for C++: a flat object of string values
// (the `.pte.json` sidecar) and an array of strings (the "labels" metadata). \u escapes become UTF-8.
class JsonStrings {
 public:
  explicit JsonStrings(const std::string& text) : t_(text) {}

  // {"k": "v", ...} -> key/value pairs. Throws std::invalid_argument on anything else.
  std::vector<std::pair<std::string, std::string>> object() {
    std::vector<std::pair<std::string, std::string>> out;
    expect('{');
    if (peek() == '}') return ++i_, out;
    while (true) {
      std::string k = string();
      expect(':');
      out.emplace_back(std::move(k), string());
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return out;
    }
  }

  // ["a", "b", ...] -> {"a", "b", ...}. Throws std::invalid_argument on anything else.
  std::vector<std::string> array() {
    std::vector<std::string> out;
    expect('[');
    if (peek() == ']') return ++i_, out;
    while (true) {
      out.push_back(string());
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect(']');
      return out;
    }
  }

 private:
  char peek() {
    while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
    return i_ < t_.size() ? t_[i_] : '\0';
  }
  void expect(char c) {
    if (peek() != c) throw std::invalid_argument(std::string("expected '") + c + "' at offset " + std::to_string(i_));
    ++i_;
  }
  unsigned hex4() {
    if (i_ + 4 > t_.size()) throw std::invalid_argument("bad \\u escape");
    size_t used = 0;
    unsigned v = std::stoul(t_.substr(i_, 4), &used, 16);
    if (used != 4) throw std::invalid_argument("bad \\u escape");
    i_ += 4;
    return v;
  }
  static void utf8(std::string& s, unsigned cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string string() {
    expect('"');
    std::string s;
    while (i_ < t_.size() && t_[i_] != '"') {
      char c = t_[i_++];
      if (c != '\\') {
        s += c;
        continue;
      }
      if (i_ >= t_.size()) break;
      switch (char e = t_[i_++]) {
        case 'n': s += '\n'; break;
        case 't': s += '\t'; break;
        case 'r': s += '\r'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && t_.compare(i_, 2, "\\u") == 0) {  // a surrogate pair
            i_ += 2;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
          }
          utf8(s, cp);
          break;
        }
        default: s += e;
      }
    }
    expect('"');
    return s;
  }

  const std::string& t_;
  size_t i_ = 0;
};

inline std::vector<std::pair<std::string, std::string>> parse_string_object(const std::string& text) {
  return JsonStrings(text).object();
}

using MetaLookup = std::function<std::optional<std::string>(const std::string&)>;

struct PackageInfo {
  Preprocess pp;
  bool softmax = false;      // the model already ends in a softmax
  int fixed_batch = 0;       // 0: dynamic batch dimension
  bool known_shape = false;  // the metadata gave the input shape
};

// What `res2net export` recorded about the model (preprocess, softmax, input_shape), with the
// command line's --resize-short / --crop-size (0: not given) applied on top.
inline PackageInfo package_info(const MetaLookup& meta, const std::string& model, int resize_short, int crop_size) {
  PackageInfo info;
  Preprocess& p = info.pp;
  try {
    if (auto pre = meta("preprocess")) {
      if (auto v = json_field(*pre, "resize_short")) p.resize_short = std::stoi(*v);
      if (auto v = json_field(*pre, "crop_size")) {
        auto hw = json_items(*v);
        if (hw.size() == 2 && hw[0] != hw[1])
          throw UserError("--model " + model + ": a non-square crop (" + hw[0] + "x" + hw[1] + ") is not supported");
        p.crop_size = std::stoi(hw.at(0));
      }
      if (auto v = json_field(*pre, "mean"); v && json_items(*v).size() == 3)
        for (int k = 0; k < 3; ++k) p.mean[k] = std::stof(json_items(*v)[k]);
      if (auto v = json_field(*pre, "std"); v && json_items(*v).size() == 3)
        for (int k = 0; k < 3; ++k) p.std[k] = std::stof(json_items(*v)[k]);
      if (auto v = json_field(*pre, "interpolation"); v && *v != "bilinear")
        throw UserError("--model " + model + ": preprocessing interpolation '" + *v + "' is not supported (bilinear only)");
      if (auto v = json_field(*pre, "channel_order"); v && lower(*v) != "rgb")
        throw UserError("--model " + model + ": channel order '" + *v + "' is not supported (RGB only)");
    }
    if (auto v = meta("softmax")) info.softmax = *v == "true";
    if (auto v = meta("input_shape")) {  // ["batch", 3, H, W] or [B, 3, H, W]
      auto shape = json_items(*v);
      if (shape.size() != 4) throw std::invalid_argument("input_shape");
      if (meta("dynamic_batch").value_or("true") == "false") info.fixed_batch = std::stoi(shape[0]);
      int h = std::stoi(shape[2]), w = std::stoi(shape[3]);
      if (h != w)
        throw UserError("--model " + model + ": a non-square input (" + shape[2] + "x" + shape[3] + ") is not supported");
      if (!meta("preprocess")) p.crop_size = h;
      if (crop_size && crop_size != h)
        throw UserError("--crop-size " + std::to_string(crop_size) + ": the package takes " + shape[2] + "x" + shape[3] +
                        " inputs");
      info.known_shape = true;
    }
  } catch (const UserError&) {
    throw;
  } catch (const std::exception&) {
    throw UserError("--model " + model + ": malformed metadata (preprocess / input_shape)");
  }
  if (resize_short) p.resize_short = resize_short;
  if (crop_size) p.crop_size = crop_size;
  return info;
}

// Softmax (unless the scores already are probabilities) and the k best of one row of scores.
inline std::vector<std::pair<int64_t, float>> top_k(const float* row, int64_t n, int64_t k, bool already_softmax) {
  std::vector<float> p(row, row + n);
  if (!already_softmax) {
    float mx = *std::max_element(p.begin(), p.end());
    double sum = 0;
    for (auto& v : p) sum += (v = std::exp(v - mx));
    for (auto& v : p) v = static_cast<float>(v / sum);
  }
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  k = std::min(k, n);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return p[a] > p[b] || (p[a] == p[b] && a < b);
  });
  std::vector<std::pair<int64_t, float>> out;
  for (int64_t j = 0; j < k; ++j) out.emplace_back(idx[j], p[idx[j]]);
  return out;
}

// One image's result, as PaddleClas's C++ demo prints it ("Top{i}: class_id, score, label"), or JSON.
inline void print_result(const std::string& path, double preprocess_ms, double infer_ms,
                         const std::vector<std::pair<int64_t, float>>& top, const std::vector<std::string>& labels,
                         bool json) {
  auto label = [&](int64_t cls) { return cls < static_cast<int64_t>(labels.size()) ? labels[cls] : std::string(); };
  double total = preprocess_ms + infer_ms;
  if (json) {
    std::printf("{\"image\": \"%s\", \"time_ms\": %.3f, \"preprocess_ms\": %.3f, \"inference_ms\": %.3f, \"topk\": [",
                json_escape(path).c_str(), total, preprocess_ms, infer_ms);
    for (size_t j = 0; j < top.size(); ++j)
      std::printf("%s{\"class_id\": %lld, \"score\": %.8f, \"label\": \"%s\"}", j ? ", " : "",
                  static_cast<long long>(top[j].first), top[j].second, json_escape(label(top[j].first)).c_str());
    std::printf("]}\n");
  } else {
    std::printf("image: %s  time: %.2f ms (preprocess %.2f ms, inference %.2f ms)\n", path.c_str(), total,
                preprocess_ms, infer_ms);
    for (size_t j = 0; j < top.size(); ++j)
      std::printf("  Top%zu: %lld, %.6f, %s\n", j + 1, static_cast<long long>(top[j].first), top[j].second,
                  label(top[j].first).c_str());
  }
}

// The first line of an exception message (libtorch appends a backtrace after it).
inline std::string first_line(const std::string& msg) {
  auto nl = msg.find('\n');
  return nl == std::string::npos ? msg : msg.substr(0, nl);
}

// The CPUs this process may run on (its affinity mask): the default thread count, as in Python
// (res2net.engines.base.default_threads).
inline int cpu_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return 1;
}

// The class names to print: --labels FILE, else the package's own ("labels" metadata: a JSON array
// of strings, which `res2net export` writes for ImageNet-1k models and when given --labels), else none.
inline std::vector<std::string> resolve_labels(const std::string& labels_flag, const MetaLookup& meta,
                                               const std::string& model) {
  if (!labels_flag.empty()) return read_labels(labels_flag);
  auto v = meta("labels");
  if (!v) return {};
  try {
    return JsonStrings(*v).array();
  } catch (const std::exception& e) {
    throw UserError("--model " + model + ": malformed labels metadata (" + e.what() + ")");
  }
}

// ------------------------------------------------------------------------------------- runtimes
struct RuntimeOptions {
  int threads = 0;  // 0: cpu_count()
  int streams = 0;  // OpenVINO: a batch of several images runs as one share per stream (0: one per thread)
};

// The scores of a batch: `rows` x `classes` floats, row-major.
struct Scores {
  std::vector<float> values;
  int64_t rows = 0, classes = 0;
};

// What main.cpp needs from an inference library: the package's metadata, the input it takes, and a
// forward pass on preprocessed images. Implementations throw UserError (one line, naming the
// package) for anything a user can cause: a wrong file, a batch or size the package cannot take.
class Runtime {
 public:
  virtual ~Runtime() = default;
  // e.g. "OpenVINO 2026.4.1 CPU, int8, 2 threads" (the first output line)
  virtual std::string describe() const = 0;
  // a value `res2net export` stored in the package ("preprocess", "labels", "input_shape", ...)
  virtual std::optional<std::string> meta(const std::string& key) const = 0;
  // > 0: every forward pass takes exactly this many images (main pads the last batch); 0: any number.
  // `metadata_batch` is what the metadata says (0: dynamic), for runtimes that cannot tell on their own.
  virtual int fixed_batch(int metadata_batch) const { return metadata_batch; }
  // the side of the square input the program itself declares, 0 when only the metadata says it
  virtual int input_size() const { return 0; }
  virtual int threads() const = 0;
  // Get ready for batches of `batch` images of `size` (OpenVINO compiles for that shape), so that
  // the load time, not the first batch, pays for it.
  virtual void prepare(int /*batch*/, int /*size*/) {}
  // scores for `n` images (n x 3 x size x size floats, NCHW); n is within fixed_batch() when that is set
  virtual Scores forward(const float* x, int64_t n, int size) = 0;
};

// The runtimes a build links (each defined in its runtime_*.cpp; CMake defines R2N_WITH_*).
std::unique_ptr<Runtime> open_pt2(const std::string& path, const RuntimeOptions& options);
std::unique_ptr<Runtime> open_openvino(const std::string& path, const RuntimeOptions& options);
std::unique_ptr<Runtime> open_pte(const std::string& path, const RuntimeOptions& options);

}  // namespace r2n
