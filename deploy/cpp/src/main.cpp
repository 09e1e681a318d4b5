// res2net_predict: classify images with a `.pt2` AOTInductor package made by `res2net export --format pt2`.
//
// The preprocessing reproduces res2net.data.transforms.EvalTransform (PaddleClas's eval pipeline)
// step by step, because a predictor that disagrees with Python about pixels disagrees about classes:
//   decode (OpenCV, EXIF orientation applied, alpha dropped, grayscale -> 3 channels) -> RGB
//   -> resize the short side to `resize_short` (scale = resize_short / min(h, w), each side
//      round-half-even(side * scale), cv::INTER_LINEAR)
//   -> center crop `crop_size` at offsets ((W - crop) / 2, (H - crop) / 2), floored
//   -> (x - mean * 255) * (1 / (std * 255)) in float32 (no FMA: see CMakeLists.txt), HWC -> CHW.
// The model's logits go through softmax; the top-k are printed as PaddleClas's C++ demo does:
//   Top{i}: class_id, score, label
//
// Every error a user can cause (missing or corrupt image, a file that is not an AOTInductor
// package, a batch the package cannot take) ends in one line on stderr and a non-zero exit.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kUsage =
    "usage: res2net_predict --model PKG.pt2 --image FILE_OR_DIR [--image ...] [--topk 5] [--batch-size N]\n"
    "                       [--labels FILE] [--threads N] [--json] [--benchmark [--warmup 5] [--iters 20]]\n"
    "\n"
    "Classify images with a .pt2 AOTInductor package made by `res2net export --format pt2`.\n"
    "\n"
    "  --model PKG.pt2     the package (CPU)\n"
    "  --image PATH        an image file or a directory (searched recursively); may be repeated\n"
    "  --topk K            classes to print per image (default 5)\n"
    "  --batch-size N      images per forward pass (default 1)\n"
    "  --labels FILE       class names, one per line ('name' or 'id name'); default: the package's own,\n"
    "                      if it has them, else none\n"
    "  --threads N         intra-op threads (default: all cores)\n"
    "  --json              one JSON object per image instead of text\n"
    "  --benchmark         time the forward pass on the first batch (after --warmup runs, --iters runs)\n"
    "  --resize-short S, --crop-size C   override the preprocessing sizes (default: the package's, else 256/224)\n"
    "  --dump-input FILE   append every batch's preprocessed input (raw float32, NCHW) to FILE\n";

// An error the user caused: printed as one line, exit code 1 (2 for usage errors).
struct UserError : std::runtime_error {
  int code;
  explicit UserError(const std::string& msg, int code_ = 1) : std::runtime_error(msg), code(code_) {}
};

struct Options {
  std::string model;
  std::vector<std::string> images;
  int topk = 5;
  int batch_size = 1;
  std::string labels;
  int threads = 0;
  bool json = false;
  bool benchmark = false;
  int warmup = 5;
  int iters = 20;
  int resize_short = 0;  // 0: from the package metadata, else 256
  int crop_size = 0;     // 0: from the package metadata, else 224
  std::string dump_input;  // write each batch's preprocessed float32 NCHW tensor here (parity tests)
};

struct Preprocess {
  int resize_short = 256;
  int crop_size = 224;
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float std[3] = {0.229f, 0.224f, 0.225f};
};

int parse_int(const std::string& flag, const std::string& value, int min_value) {
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

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw UserError(std::string(argv[i]) + ": missing value", 2);
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--model") {
      o.model = value(i);
    } else if (a == "--image") {
      o.images.push_back(value(i));
    } else if (a == "--topk") {
      o.topk = parse_int(a, value(i), 1);
    } else if (a == "--batch-size") {
      o.batch_size = parse_int(a, value(i), 1);
    } else if (a == "--labels") {
      o.labels = value(i);
    } else if (a == "--threads") {
      o.threads = parse_int(a, value(i), 1);
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--benchmark") {
      o.benchmark = true;
    } else if (a == "--warmup") {
      o.warmup = parse_int(a, value(i), 0);
    } else if (a == "--iters") {
      o.iters = parse_int(a, value(i), 1);
    } else if (a == "--resize-short") {
      o.resize_short = parse_int(a, value(i), 1);
    } else if (a == "--crop-size") {
      o.crop_size = parse_int(a, value(i), 1);
    } else if (a == "--dump-input") {
      o.dump_input = value(i);
    } else {
      throw UserError("unknown argument '" + a + "' (see --help)", 2);
    }
  }
  if (o.model.empty()) throw UserError("--model is required (see --help)", 2);
  if (o.images.empty()) throw UserError("--image is required (see --help)", 2);
  return o;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Files, and image files under directories (recursively, sorted), as res2net.data.image.find_images.
std::vector<std::string> find_images(const std::vector<std::string>& inputs) {
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
bool jpeg_is_truncated(const std::vector<unsigned char>& data) {
  size_t start = data.size() > 4096 ? data.size() - 4096 : 2;
  for (size_t i = data.size() - 1; i > start; --i)
    if (data[i - 1] == 0xFF && data[i] == 0xD9) return false;
  return true;
}

// Decode to an RGB uint8 image, or throw UserError naming the file and the reason.
cv::Mat load_image(const std::string& path) {
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
void preprocess(const cv::Mat& rgb, const Preprocess& p, float* dst) {
  const int h = rgb.rows, w = rgb.cols;
  const double scale = static_cast<double>(p.resize_short) / std::min(h, w);
  // Python's round() is round-half-to-even, as is nearbyint in the default rounding mode.
  const int new_w = static_cast<int>(std::nearbyint(w * scale));
  const int new_h = static_cast<int>(std::nearbyint(h * scale));
  cv::Mat resized;
  cv::resize(rgb, resized, cv::Size(new_w, new_h), 0, 0, cv::INTER_LINEAR);
  const int c = p.crop_size;
  if (new_h < c || new_w < c)
    throw UserError("cannot crop " + std::to_string(c) + "x" + std::to_string(c) + " from a " + std::to_string(new_w) +
                    "x" + std::to_string(new_h) + " image");
  const int top = (new_h - c) / 2, left = (new_w - c) / 2;
  float mean255[3], inv_std255[3];
  for (int k = 0; k < 3; ++k) {
    mean255[k] = p.mean[k] * 255.0f;
    inv_std255[k] = 1.0f / (p.std[k] * 255.0f);
  }
  const size_t plane = static_cast<size_t>(c) * c;
  for (int y = 0; y < c; ++y) {
    const unsigned char* row = resized.ptr<unsigned char>(top + y) + 3 * left;
    for (int x = 0; x < c; ++x)
      for (int k = 0; k < 3; ++k)
        dst[k * plane + static_cast<size_t>(y) * c + x] =
            (static_cast<float>(row[3 * x + k]) - mean255[k]) * inv_std255[k];
  }
}

// Labels: "name" per line, or PaddleClas's "id name" per line (ids 0..n-1 in order).
std::vector<std::string> parse_labels(const std::string& text, const std::string& source) {
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

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw UserError("--labels " + path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_labels(ss.str(), "--labels " + path);
}

std::string json_escape(const std::string& s) {
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

// The first line of an exception message, without c10's backtrace.
std::string first_line(const std::exception& e) {
  std::string msg;
  if (auto* ce = dynamic_cast<const c10::Error*>(&e))
    msg = ce->what_without_backtrace();
  else
    msg = e.what();
  auto nl = msg.find('\n');
  return nl == std::string::npos ? msg : msg.substr(0, nl);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class Model {
 public:
  explicit Model(const std::string& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw UserError("--model " + path + ": no such file");
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {0, 0, 0, 0};
    f.read(magic, 4);
    if (!(magic[0] == 'P' && magic[1] == 'K'))
      throw UserError("--model " + path + ": not a .pt2 package (not a zip archive); make one with `res2net export --format pt2`");
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
      metadata_ = loader_->get_metadata();
    } catch (const std::exception& e) {
      throw UserError("--model " + path +
                      ": cannot load as an AOTInductor package (a `torch.export.save` file or a package for "
                      "another device or torch version?): " + first_line(e));
    }
    auto dev = metadata_.find("AOTI_DEVICE_KEY");
    if (dev != metadata_.end() && dev->second != "cpu")
      throw UserError("--model " + path + ": the package was compiled for '" + dev->second + "', this program runs on CPU");
  }

  std::optional<std::string> meta(const std::string& key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) return std::nullopt;
    return it->second;
  }

  // Logits [N, classes] for x [N, 3, H, W]. A package whose dynamic batch dimension starts at 2
  // (torch.export's default lower bound, enforced by the shape check) gets small batches padded.
  at::Tensor forward(const at::Tensor& x) {
    const int64_t n = x.size(0);
    if (n < min_batch_) return forward(pad(x, min_batch_)).slice(0, 0, n);
    std::vector<at::Tensor> out;
    try {
      out = loader_->run({x});
    } catch (const std::exception& e) {
      std::string msg = first_line(e);
      const std::string tag = "dim value is too small at 0, expected it to be >= ";
      if (auto at = msg.find(tag); at != std::string::npos && min_batch_ <= 1) {
        int64_t k = std::atoll(msg.c_str() + at + tag.size());
        if (k > n && k <= 64) {
          min_batch_ = k;
          return forward(x);
        }
      }
      throw UserError("the package rejected a batch of shape [" + std::to_string(n) + ", 3, " +
                      std::to_string(x.size(2)) + ", " + std::to_string(x.size(3)) +
                      "] (was it exported for another batch or image size? see --batch-size, --crop-size): " + msg);
    }
    if (out.empty() || out[0].dim() != 2 || out[0].size(0) != n)
      throw UserError("the package returned no [batch, classes] logits: not a classification model?");
    return out[0];
  }

 private:
  static at::Tensor pad(const at::Tensor& x, int64_t rows) {
    at::Tensor y = at::zeros({rows, x.size(1), x.size(2), x.size(3)}, x.options());
    y.slice(0, 0, x.size(0)).copy_(x);
    return y;
  }

  int64_t min_batch_ = 1;
 std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::unordered_map<std::string, std::string> metadata_;
};

// Minimal readers for the JSON values `res2net export` stores in the package metadata
// (flat objects and arrays of numbers/strings: no JSON library needed).
std::optional<std::string> json_field(const std::string& obj, const std::string& key) {
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
std::vector<std::string> json_items(std::string v) {
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

struct PackageInfo {
  Preprocess pp;
  bool softmax = false;      // the package already ends in a softmax
  int fixed_batch = 0;       // 0: dynamic batch dimension
  bool known_shape = false;  // the metadata gave the input shape, so this program checks it itself
};

// What the package says about itself (`res2net export` records it), overridable by flags.
PackageInfo package_info(const Model& model, const Options& o) {
  PackageInfo info;
  Preprocess& p = info.pp;
  try {
    if (auto pre = model.meta("preprocess")) {
      if (auto v = json_field(*pre, "resize_short")) p.resize_short = std::stoi(*v);
      if (auto v = json_field(*pre, "crop_size")) {
        auto hw = json_items(*v);
        if (hw.size() == 2 && hw[0] != hw[1])
          throw UserError("--model " + o.model + ": a non-square crop (" + hw[0] + "x" + hw[1] + ") is not supported");
        p.crop_size = std::stoi(hw.at(0));
      }
      if (auto v = json_field(*pre, "mean"); v && json_items(*v).size() == 3)
        for (int k = 0; k < 3; ++k) p.mean[k] = std::stof(json_items(*v)[k]);
      if (auto v = json_field(*pre, "std"); v && json_items(*v).size() == 3)
        for (int k = 0; k < 3; ++k) p.std[k] = std::stof(json_items(*v)[k]);
      if (auto v = json_field(*pre, "interpolation"); v && *v != "bilinear")
        throw UserError("--model " + o.model + ": preprocessing interpolation '" + *v + "' is not supported (bilinear only)");
      if (auto v = json_field(*pre, "channel_order"); v && lower(*v) != "rgb")
        throw UserError("--model " + o.model + ": channel order '" + *v + "' is not supported (RGB only)");
    }
    if (auto v = model.meta("softmax")) info.softmax = *v == "true";
    if (auto v = model.meta("input_shape")) {  // ["batch", 3, H, W] or [B, 3, H, W]
      auto shape = json_items(*v);
      if (shape.size() != 4) throw std::invalid_argument("input_shape");
      if (model.meta("dynamic_batch").value_or("true") == "false") info.fixed_batch = std::stoi(shape[0]);
      int h = std::stoi(shape[2]), w = std::stoi(shape[3]);
      if (h != w) throw UserError("--model " + o.model + ": a non-square input (" + shape[2] + "x" + shape[3] + ") is not supported");
      if (!model.meta("preprocess")) p.crop_size = h;
      if (o.crop_size && o.crop_size != h)
        throw UserError("--crop-size " + std::to_string(o.crop_size) + ": the package takes " + shape[2] + "x" + shape[3] + " inputs");
      info.known_shape = true;
    }
  } catch (const UserError&) {
    throw;
  } catch (const std::exception&) {
    throw UserError("--model " + o.model + ": malformed metadata (preprocess / input_shape)");
  }
  if (o.resize_short) p.resize_short = o.resize_short;
  if (o.crop_size) p.crop_size = o.crop_size;
  return info;
}

struct Item {
  std::string path;
  std::string error;  // non-empty: this image failed
  double preprocess_ms = 0;
};

int run(const Options& o) {
  if (o.threads > 0) at::set_num_threads(o.threads);

  std::vector<std::string> paths = find_images(o.images);
  auto t_load = Clock::now();
  Model model(o.model);
  double load_ms = ms_since(t_load);
  PackageInfo info = package_info(model, o);
  const Preprocess& pp = info.pp;
  // The compiled model checks its input shapes and throws (instead of reading out of bounds) when
  // AOTI_RUNTIME_CHECK_INPUTS is set. Not for a res2net package with a dynamic batch: its shape is
  // known and checked here, and those checks would enforce torch.export's batch lower bound of 2.
  if (!info.known_shape || info.fixed_batch) setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", 0);
  // A package exported with a fixed batch size takes exactly that many images: pad the last batch.
  const int batch_size = info.fixed_batch ? info.fixed_batch : o.batch_size;

  std::vector<std::string> labels;
  if (!o.labels.empty())
    labels = read_labels(o.labels);
  else if (auto v = model.meta("labels"))
    labels = parse_labels(*v, "--model " + o.model + " (its labels)");

  if (!o.json)
    std::printf("model: %s (loaded in %.1f ms), preprocess: resize short %d, crop %d, %zu image(s), batch %d\n",
                o.model.c_str(), load_ms, pp.resize_short, pp.crop_size, paths.size(), batch_size);

  const int c = pp.crop_size;
  const size_t per_image = 3ull * c * c;
  int failures = 0;
  bool benchmarked = false;
  std::ofstream dump;
  if (!o.dump_input.empty()) {
    dump.open(o.dump_input, std::ios::binary | std::ios::trunc);
    if (!dump) throw UserError("--dump-input " + o.dump_input + ": cannot write");
  }
  for (size_t start = 0; start < paths.size(); start += batch_size) {
    size_t end = std::min(paths.size(), start + static_cast<size_t>(batch_size));
    std::vector<Item> items;
    std::vector<float> buffer;
    buffer.reserve((end - start) * per_image);
    std::vector<size_t> ok;  // indices into items that decoded
    for (size_t i = start; i < end; ++i) {
      Item it{paths[i], "", 0};
      auto t0 = Clock::now();
      try {
        cv::Mat rgb = load_image(paths[i]);
        size_t off = buffer.size();
        buffer.resize(off + per_image);
        preprocess(rgb, pp, buffer.data() + off);
        ok.push_back(items.size());
      } catch (const UserError& e) {
        it.error = e.what();
      }
      it.preprocess_ms = ms_since(t0);
      items.push_back(std::move(it));
    }
    for (const auto& it : items)
      if (!it.error.empty()) {
        ++failures;
        std::fprintf(stderr, "error: %s\n", it.error.c_str());
      }
    if (ok.empty()) continue;

    const int64_t n = static_cast<int64_t>(ok.size());
    if (dump) dump.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size() * 4));
    const int64_t rows = info.fixed_batch ? info.fixed_batch : n;
    buffer.resize(rows * per_image, 0.0f);  // padding rows (fixed-batch packages) are zeros, results dropped
    at::Tensor x = at::from_blob(buffer.data(), {rows, 3, c, c}, at::kFloat);
    if (o.benchmark && !benchmarked) {
      benchmarked = true;
      // Time full batches: repeat the decoded images when there are fewer than --batch-size.
      std::vector<float> bench(static_cast<size_t>(batch_size) * per_image);
      for (int64_t r = 0; r < batch_size; ++r)
        std::copy_n(buffer.data() + (r % n) * per_image, per_image, bench.data() + r * per_image);
      at::Tensor xb = at::from_blob(bench.data(), {batch_size, 3, c, c}, at::kFloat);
      for (int i = 0; i < o.warmup; ++i) model.forward(xb);
      std::vector<double> times;
      for (int i = 0; i < o.iters; ++i) {
        auto t0 = Clock::now();
        model.forward(xb);
        times.push_back(ms_since(t0));
      }
      std::sort(times.begin(), times.end());
      double mean = std::accumulate(times.begin(), times.end(), 0.0) / times.size();
      double pre = 0;
      for (size_t k : ok) pre += items[k].preprocess_ms;
      std::printf(
          "benchmark: batch %d, %d iters after %d warmup: mean %.2f ms, median %.2f ms, min %.2f ms, "
          "%.1f images/s; decode+preprocess %.2f ms/image, threads %d\n",
          batch_size, o.iters, o.warmup, mean, times[times.size() / 2], times.front(), 1000.0 * batch_size / mean,
          pre / n, at::get_num_threads());
    }
    auto t0 = Clock::now();
    at::Tensor out = model.forward(x).to(at::kFloat).slice(0, 0, n);
    at::Tensor probs = info.softmax ? out : at::softmax(out, 1);
    double infer_ms = ms_since(t0) / n;
    const int64_t k = std::min<int64_t>(o.topk, probs.size(1));
    auto [scores, ids] = probs.topk(k, 1);
    auto s = scores.accessor<float, 2>();
    auto id = ids.accessor<int64_t, 2>();
    for (int64_t r = 0; r < n; ++r) {
      const Item& it = items[ok[r]];
      double total = it.preprocess_ms + infer_ms;
      if (o.json) {
        std::printf("{\"image\": \"%s\", \"time_ms\": %.3f, \"preprocess_ms\": %.3f, \"inference_ms\": %.3f, \"topk\": [",
                    json_escape(it.path).c_str(), total, it.preprocess_ms, infer_ms);
        for (int64_t j = 0; j < k; ++j) {
          int64_t cls = id[r][j];
          std::string label = cls < static_cast<int64_t>(labels.size()) ? labels[cls] : "";
          std::printf("%s{\"class_id\": %lld, \"score\": %.8f, \"label\": \"%s\"}", j ? ", " : "",
                      static_cast<long long>(cls), s[r][j], json_escape(label).c_str());
        }
        std::printf("]}\n");
      } else {
        std::printf("image: %s  time: %.2f ms (preprocess %.2f ms, inference %.2f ms)\n", it.path.c_str(), total,
                    it.preprocess_ms, infer_ms);
        for (int64_t j = 0; j < k; ++j) {
          int64_t cls = id[r][j];
          std::string label = cls < static_cast<int64_t>(labels.size()) ? labels[cls] : "";
          std::printf("  Top%lld: %lld, %.6f, %s\n", static_cast<long long>(j + 1), static_cast<long long>(cls),
                      s[r][j], label.c_str());
        }
      }
    }
    std::fflush(stdout);
  }
  if (failures) {
    std::fprintf(stderr, "error: %d of %zu image(s) could not be read\n", failures, paths.size());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  try {
    return run(parse_args(argc, argv));
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", first_line(e).c_str());
    return 1;
  }
}
