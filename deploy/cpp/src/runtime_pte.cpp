// The ExecuTorch runtime of res2net_pte_predict: a `.pte` program (`res2net export --format pte
// [--quantize int8]`) on ExecuTorch's Module API with the XNNPACK delegate and the optimized /
// quantized kernels - the edge runtime an app links (no Python, no libtorch). The program's input
// shape is fixed ([B, 3, H, W], read from the program; main pads the last batch). A `.pte` has no
// room for free-form metadata: `res2net export` writes it to the `NAME.pte.json` sidecar.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <fstream>
#include <sstream>

#include "common.hpp"

namespace r2n {
namespace {

using executorch::extension::Module;

class PteRuntime final : public Runtime {
 public:
  PteRuntime(const std::string& path, const RuntimeOptions& options) : path_(path), module_(path) {
    if (module_.load() != executorch::runtime::Error::Ok ||
        module_.load_method("forward") != executorch::runtime::Error::Ok)
      throw UserError("--model " + path + ": not a loadable ExecuTorch program with a 'forward' method");
    auto method = module_.method_meta("forward");
    if (!method.ok() || method->num_inputs() != 1) throw UserError("--model " + path + ": 'forward' must take one tensor");
    auto input = method->input_tensor_meta(0);
    if (!input.ok() || input->sizes().size() != 4)
      throw UserError("--model " + path + ": 'forward' must take one [N, 3, H, W] tensor");
    auto sizes = input->sizes();
    batch_ = static_cast<int>(sizes[0]);
    size_ = static_cast<int>(sizes[2]);
    if (sizes[1] != 3 || sizes[2] != sizes[3]) throw UserError("--model " + path + ": expected a [N, 3, S, S] input");
    threads_ = options.threads;
    read_sidecar();
  }

  std::string describe() const override {
    return "ExecuTorch XNNPACK CPU, " + (meta("precision").value_or("fp32")) + ", fixed batch " +
           std::to_string(batch_);
  }

  std::optional<std::string> meta(const std::string& key) const override {
    for (const auto& [k, v] : sidecar_)
      if (k == key) return v;
    return std::nullopt;
  }

  int fixed_batch(int) const override { return batch_; }
  int input_size() const override { return size_; }
  int threads() const override { return threads_; }  // 0: XNNPACK's own thread pool

  Scores forward(const float* x, int64_t n, int size) override {
    auto tensor = executorch::extension::from_blob(const_cast<float*>(x), {static_cast<int>(n), 3, size, size});
    auto result = module_.forward(tensor);
    if (!result.ok())
      throw UserError("--model " + path_ + ": forward failed (ExecuTorch error " +
                      std::to_string(static_cast<int>(result.error())) + ")");
    const auto& out = result->at(0).toTensor();
    if (out.dim() != 2 || out.size(0) != n)
      throw UserError("--model " + path_ + ": the program returned no [batch, classes] scores");
    Scores s;
    s.rows = n;
    s.classes = out.size(1);
    const float* data = out.const_data_ptr<float>();
    s.values.assign(data, data + n * s.classes);
    return s;
  }

 private:
  void read_sidecar() {
    std::ifstream f(path_ + ".json");
    if (!f) return;
    std::stringstream ss;
    ss << f.rdbuf();
    try {
      sidecar_ = parse_string_object(ss.str());
    } catch (const std::exception& e) {
      throw UserError(path_ + ".json: not res2net export metadata (" + e.what() + ")");
    }
  }

  std::string path_;
  Module module_;
  std::vector<std::pair<std::string, std::string>> sidecar_;
  int batch_ = 1, size_ = 0, threads_ = 0;
};

}  // namespace

std::unique_ptr<Runtime> open_pte(const std::string& path, const RuntimeOptions& options) {
  return std::make_unique<PteRuntime>(path, options);
}

}  // namespace r2n
