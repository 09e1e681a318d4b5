// The .pt2 runtime: an AOTInductor package (`res2net export --format pt2`) on libtorch, CPU kernels.
//
// Speed: the package runs the kernels AOTInductor compiled at export; `res2net export` freezes the
// weights into them (Inductor's freezing: BatchNorm folded, oneDNN weights prepacked), see
// docs/deploy.md for what that buys and where the package still stands against OpenVINO on CPU.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdlib>
#include <fstream>
#include <unordered_map>

#include "common.hpp"

namespace r2n {
namespace {

// The first line of an exception message, without c10's backtrace.
std::string message(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return first_line(ce->what_without_backtrace());
  return first_line(e.what());
}

class Pt2Runtime final : public Runtime {
 public:
  Pt2Runtime(const std::string& path, const RuntimeOptions& options) : path_(path) {
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {0, 0, 0, 0};
    f.read(magic, 4);
    if (!(magic[0] == 'P' && magic[1] == 'K'))
      throw UserError("--model " + path + ": not a .pt2 package (not a zip archive); make one with `res2net export --format pt2`");
    at::set_num_threads(options.threads > 0 ? options.threads : cpu_count());
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
      metadata_ = loader_->get_metadata();
    } catch (const std::exception& e) {
      throw UserError("--model " + path +
                      ": cannot load as an AOTInductor package (a `torch.export.save` file or a package for "
                      "another device or torch version?): " + message(e));
    }
    auto dev = metadata_.find("AOTI_DEVICE_KEY");
    if (dev != metadata_.end() && dev->second != "cpu")
      throw UserError("--model " + path + ": the package was compiled for '" + dev->second + "', this program runs on CPU");
    // The compiled model checks its input shapes (at its first run) and throws instead of reading
    // out of bounds when AOTI_RUNTIME_CHECK_INPUTS is set. Not for a res2net package with a dynamic
    // batch: its shape is known and checked by main, and those checks would enforce torch.export's
    // batch lower bound of 2 (logits() pads instead).
    if (!meta("input_shape") || meta("dynamic_batch").value_or("true") == "false")
      setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", 0);
  }

  std::string describe() const override {
    return "libtorch AOTInductor CPU, " + meta("dtype").value_or("float32") + ", " + std::to_string(threads()) +
           " threads";
  }

  std::optional<std::string> meta(const std::string& key) const override {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) return std::nullopt;
    return it->second;
  }

  int threads() const override { return at::get_num_threads(); }

  Scores forward(const float* x, int64_t n, int size) override {
    at::Tensor input = at::from_blob(const_cast<float*>(x), {n, 3, size, size}, at::kFloat);
    at::Tensor out = logits(input).to(at::kFloat).contiguous();
    Scores s;
    s.rows = n;
    s.classes = out.size(1);
    s.values.assign(out.data_ptr<float>(), out.data_ptr<float>() + n * s.classes);
    return s;
  }

 private:
  // Logits [N, classes] for x [N, 3, H, W]. A package whose dynamic batch dimension starts at 2
  // (torch.export's default lower bound, enforced by the shape check) gets small batches padded.
  at::Tensor logits(const at::Tensor& x) {
    const int64_t n = x.size(0);
    if (n < min_batch_) return logits(pad(x, min_batch_)).slice(0, 0, n);
    std::vector<at::Tensor> out;
    try {
      out = loader_->run({x});
    } catch (const std::exception& e) {
      std::string msg = message(e);
      const std::string tag = "dim value is too small at 0, expected it to be >= ";
      if (auto at = msg.find(tag); at != std::string::npos && min_batch_ <= 1) {
        int64_t k = std::atoll(msg.c_str() + at + tag.size());
        if (k > n && k <= 64) {
          min_batch_ = k;
          return logits(x);
        }
      }
      throw UserError("the package rejected a batch of shape [" + std::to_string(n) + ", 3, " +
                      std::to_string(x.size(2)) + ", " + std::to_string(x.size(3)) +
                      "] (was it exported for another batch or image size? see --batch-size, --crop-size): " + msg);
    }
    if (out.empty() || out[0].dim() != 2 || out[0].size(0) != n)
      throw UserError("--model " + path_ + ": the package returned no [batch, classes] logits: not a classification model?");
    return out[0];
  }

  static at::Tensor pad(const at::Tensor& x, int64_t rows) {
    at::Tensor y = at::zeros({rows, x.size(1), x.size(2), x.size(3)}, x.options());
    y.slice(0, 0, x.size(0)).copy_(x);
    return y;
  }

  std::string path_;
  int64_t min_batch_ = 1;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::unordered_map<std::string, std::string> metadata_;
};

}  // namespace

std::unique_ptr<Runtime> open_pt2(const std::string& path, const RuntimeOptions& options) {
  return std::make_unique<Pt2Runtime>(path, options);
}

}  // namespace r2n
