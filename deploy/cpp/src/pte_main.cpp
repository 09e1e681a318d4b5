// res2net_pte_predict: classify images with a `.pte` ExecuTorch program made by
// `res2net export --format pte [--quantize int8]` — the edge runtime an app links (no Python, no
// libtorch): ExecuTorch's Module API with the XNNPACK delegate and the optimized/quantized kernels.
//
// Same preprocessing and output as res2net_predict (common.hpp). The program's input shape is fixed
// ([B, 3, H, W], read from the program); the last batch is padded. Preprocessing comes from the
// `NAME.pte.json` sidecar that `res2net export` writes, else PaddleClas's defaults.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common.hpp"

namespace {

using namespace r2n;
using executorch::extension::from_blob;
using executorch::extension::Module;
using Options = CommonOptions;  // this program takes only the flags both predictors share

constexpr const char* kUsage =
    "usage: res2net_pte_predict --model PROGRAM.pte --image FILE_OR_DIR [--image ...] [--topk 5] [--labels FILE]\n"
    "                           [--json] [--resize-short S] [--crop-size C]\n"
    "\n"
    "Classify images with an ExecuTorch program made by `res2net export --format pte [--quantize int8]`.\n"
    "Preprocessing is read from PROGRAM.pte.json when present. The program's batch size is fixed.\n";

Options parse_args(int argc, char** argv) {
  Options o;
  parse_common_args(argc, argv, kUsage, o);
  return o;
}

std::vector<std::pair<std::string, std::string>> read_sidecar(const std::string& program) {
  std::ifstream f(program + ".json");
  if (!f) return {};
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return parse_string_object(ss.str());
  } catch (const std::exception& e) {
    throw UserError(program + ".json: not res2net export metadata (" + e.what() + ")");
  }
}

int run(const Options& o) {
  std::error_code ec;
  if (!fs::is_regular_file(o.model, ec)) throw UserError("--model " + o.model + ": no such file");
  std::vector<std::string> paths = find_images(o.images);

  auto t_load = Clock::now();
  Module module(o.model);
  if (module.load() != executorch::runtime::Error::Ok || module.load_method("forward") != executorch::runtime::Error::Ok)
    throw UserError("--model " + o.model + ": not a loadable ExecuTorch program with a 'forward' method");
  auto method = module.method_meta("forward");
  if (!method.ok() || method->num_inputs() != 1)
    throw UserError("--model " + o.model + ": 'forward' must take one tensor");
  auto input_meta = method->input_tensor_meta(0);
  if (!input_meta.ok() || input_meta->sizes().size() != 4)
    throw UserError("--model " + o.model + ": 'forward' must take one [N, 3, H, W] tensor");
  auto sizes = input_meta->sizes();
  const int batch = static_cast<int>(sizes[0]);
  const int h = static_cast<int>(sizes[2]), w = static_cast<int>(sizes[3]);
  if (sizes[1] != 3 || h != w) throw UserError("--model " + o.model + ": expected a [N, 3, S, S] input");
  double load_ms = ms_since(t_load);

  auto sidecar = read_sidecar(o.model);
  MetaLookup meta = [&](const std::string& key) -> std::optional<std::string> {
    for (const auto& [k, v] : sidecar)
      if (k == key) return v;
    return std::nullopt;
  };
  PackageInfo info = package_info(meta, o.model, o.resize_short, o.crop_size);
  if (!info.known_shape) info.pp.crop_size = o.crop_size ? o.crop_size : h;
  if (info.pp.crop_size != h)
    throw UserError("--crop-size " + std::to_string(info.pp.crop_size) + ": the program takes " + std::to_string(h) +
                    "x" + std::to_string(w) + " inputs");
  const Preprocess& pp = info.pp;

  std::vector<std::string> labels;
  if (!o.labels.empty()) labels = read_labels(o.labels);
  if (!o.json)
    std::printf("model: %s (loaded in %.1f ms), preprocess: resize short %d, crop %d, %zu image(s), batch %d\n",
                o.model.c_str(), load_ms, pp.resize_short, pp.crop_size, paths.size(), batch);

  const size_t per_image = 3ull * h * w;
  int failures = 0;
  for (size_t start = 0; start < paths.size(); start += batch) {
    size_t end = std::min(paths.size(), start + static_cast<size_t>(batch));
    std::vector<float> buffer(batch * per_image, 0.0f);  // padding rows stay zero, their results are dropped
    std::vector<std::pair<std::string, double>> ok;      // (path, preprocess ms) of the decoded images
    for (size_t i = start; i < end; ++i) {
      auto t0 = Clock::now();
      try {
        preprocess(load_image(paths[i]), pp, buffer.data() + ok.size() * per_image);
        ok.emplace_back(paths[i], ms_since(t0));
      } catch (const UserError& e) {
        ++failures;
        std::fprintf(stderr, "error: %s\n", e.what());
      }
    }
    if (ok.empty()) continue;
    auto tensor = from_blob(buffer.data(), {batch, 3, h, w});
    auto t0 = Clock::now();
    auto result = module.forward(tensor);
    if (!result.ok())
      throw UserError("--model " + o.model + ": forward failed (ExecuTorch error " +
                      std::to_string(static_cast<int>(result.error())) + ")");
    const double infer_ms = ms_since(t0) / ok.size();
    const auto& out = result->at(0).toTensor();
    if (out.dim() != 2 || out.size(0) != batch)
      throw UserError("--model " + o.model + ": the program returned no [batch, classes] scores");
    const int64_t classes = out.size(1);
    const float* scores = out.const_data_ptr<float>();
    for (size_t r = 0; r < ok.size(); ++r)
      print_result(ok[r].first, ok[r].second, infer_ms, top_k(scores + r * classes, classes, o.topk, info.softmax),
                   labels, o.json);
    std::fflush(stdout);
  }
  return exit_status(failures, paths.size());
}

}  // namespace

int main(int argc, char** argv) {
  return run_main([&] { return run(parse_args(argc, argv)); }, [](const std::exception& e) { return e.what(); });
}
