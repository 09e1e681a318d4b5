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

#include "common.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

namespace {

using namespace r2n;

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

struct Options : CommonOptions {
  int batch_size = 1;
  int threads = 0;
  bool benchmark = false;
  int warmup = 5;
  int iters = 20;
  std::string dump_input;  // write each batch's preprocessed float32 NCHW tensor here (parity tests)
};

Options parse_args(int argc, char** argv) {
  Options o;
  parse_common_args(argc, argv, kUsage, o, [&](const std::string& a, const FlagValue& value) {
    if (a == "--batch-size")
      o.batch_size = parse_int(a, value(), 1);
    else if (a == "--threads")
      o.threads = parse_int(a, value(), 1);
    else if (a == "--benchmark")
      o.benchmark = true;
    else if (a == "--warmup")
      o.warmup = parse_int(a, value(), 0);
    else if (a == "--iters")
      o.iters = parse_int(a, value(), 1);
    else if (a == "--dump-input")
      o.dump_input = value();
    else
      return false;
    return true;
  });
  return o;
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

// What the package says about itself (`res2net export` records it), overridable by flags.
PackageInfo package_info(const Model& model, const Options& o) {
  return r2n::package_info([&](const std::string& k) { return model.meta(k); }, o.model, o.resize_short, o.crop_size);
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
    at::Tensor out = model.forward(x).to(at::kFloat).slice(0, 0, n).contiguous();
    const double infer_ms = ms_since(t0) / n;
    const int64_t classes = out.size(1);
    const float* scores = out.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) {
      const Item& it = items[ok[r]];
      print_result(it.path, it.preprocess_ms, infer_ms, top_k(scores + r * classes, classes, o.topk, info.softmax),
                   labels, o.json);
    }
    std::fflush(stdout);
  }
  return exit_status(failures, paths.size());
}

}  // namespace

int main(int argc, char** argv) {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  return run_main([&] { return run(parse_args(argc, argv)); }, first_line);
}
