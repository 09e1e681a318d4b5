// res2net_predict: classify images with a package made by `res2net export`: an OpenVINO IR
// (`--format openvino`, fp32 or `--quantize int8`: OpenVINO's C++ API) or a `.pt2` AOTInductor
// package (`--format pt2`, CPU kernels: libtorch); res2net_pte_predict is this same program on
// ExecuTorch for `.pte` programs. The runtime is chosen from the file (common.hpp's Runtime); this
// driver - decoding, batching, output, errors, --benchmark - is the same for all of them.
//
// The preprocessing reproduces res2net.data.transforms.EvalTransform (PaddleClas's eval pipeline)
// step by step, because a predictor that disagrees with Python about pixels disagrees about classes:
//   decode (OpenCV, EXIF orientation applied, alpha dropped, grayscale -> 3 channels) -> RGB
//   -> resize the short side to `resize_short` (scale = resize_short / min(h, w), each side
//      round-half-even(side * scale), cv::INTER_LINEAR)
//   -> center crop `crop_size` at offsets ((W - crop) / 2, (H - crop) / 2), floored (past 50 M resized
//      pixels only the crop window is interpolated, to the same pixels: window_resize.hpp)
//   -> (x - mean * 255) * (1 / (std * 255)) in float32 (no FMA: see CMakeLists.txt), HWC -> CHW.
// Sizes, mean/std, the softmax flag and the class names come from the package's metadata. The
// scores go through softmax; the top-k are printed as PaddleClas's C++ demo does:
//   Top{i}: class_id, score, label
//
// Every error a user can cause (missing or corrupt image, a file that is not a package, a batch
// the package cannot take) ends in one line on stderr and a non-zero exit; the other images of a
// batch are still classified.

#include <opencv2/core/utils/logger.hpp>

#include "common.hpp"
#include "decode_ahead.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

namespace {

using namespace r2n;

constexpr const char* kUsage =
    "usage: %s --model PACKAGE --image FILE_OR_DIR [--image ...] [--topk 5] [--batch-size N]\n"
    "       [--labels FILE] [--threads N] [--streams N] [--decode-threads N] [--json]\n"
    "       [--benchmark [--warmup 5] [--iters 20]]\n"
    "\n"
    "Classify images with a package made by `res2net export`:%s\n"
    "\n"
    "  --model PACKAGE     the package; the runtime is chosen from the file\n"
    "  --image PATH        an image file or a directory (searched recursively); may be repeated\n"
    "  --topk K            classes to print per image (default 5)\n"
    "  --batch-size N      images per forward pass (default 1; a fixed-batch package sets its own)\n"
    "  --labels FILE       class names, one per line ('name' or 'id name'); default: the package's own\n"
    "  --threads N         inference threads (default: the CPUs this process may use)\n"
    "  --streams N         OpenVINO: run a batch of several images as N shares on single-threaded\n"
    "                      streams in parallel (default: one per thread; 1: one multi-threaded pass)\n"
    "  --decode-threads N  threads decoding the next images while a batch infers (default: CPUs + 1,\n"
    "                      at most 4; 0: decode and infer in turn)\n"
    "  --json              one JSON object per image instead of text\n"
    "  --benchmark         time the forward pass on full batches of the first images (after --warmup\n"
    "                      runs, --iters runs); with --json, one {\"benchmark\": ...} line with every sample\n"
    "  --resize-short S, --crop-size C   override the preprocessing sizes (default: the package's)\n"
    "  --dump-input FILE   write every batch's preprocessed input (raw float32, NCHW) to FILE\n";

// The formats this build runs, for the usage text and the "cannot run" message.
constexpr const char* kFormats = ""
#ifdef R2N_WITH_OPENVINO
                                 "\n  OpenVINO IR  MODEL.xml (+ MODEL.bin): --format openvino [--quantize int8]"
#endif
#ifdef R2N_WITH_PT2
                                 "\n  .pt2         AOTInductor package (libtorch, CPU kernels): --format pt2"
#endif
#ifdef R2N_WITH_PTE
                                 "\n  .pte         ExecuTorch program (+ PROGRAM.pte.json): --format pte [--quantize int8]"
#endif
    ;

// The same, on one line (for the error message).
constexpr const char* kFormatsShort = ""
#ifdef R2N_WITH_OPENVINO
                                      " OpenVINO IR .xml (res2net export --format openvino);"
#endif
#ifdef R2N_WITH_PT2
                                      " .pt2 package (res2net export --format pt2);"
#endif
#ifdef R2N_WITH_PTE
                                      " .pte program (res2net export --format pte);"
#endif
    ;

struct Options : CommonOptions {
  int batch_size = 1;
  int threads = 0;
  int streams = 0;
  int decode_threads = -1;  // -1: min(4, CPUs + 1), as res2net.Predictor's decoding workers
  bool benchmark = false;
  int warmup = 5;
  int iters = 20;
  std::string dump_input;  // write each batch's preprocessed float32 NCHW tensor here (parity tests)
};

Options parse_args(int argc, char** argv, const std::string& usage) {
  Options o;
  parse_common_args(argc, argv, usage.c_str(), o, [&](const std::string& a, const FlagValue& value) {
    if (a == "--batch-size")
      o.batch_size = parse_int(a, value(), 1);
    else if (a == "--threads")
      o.threads = parse_int(a, value(), 1);
    else if (a == "--streams")
      o.streams = parse_int(a, value(), 1);
    else if (a == "--decode-threads")
      o.decode_threads = parse_int(a, value(), 0);
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

enum class Format { kOpenVINO, kPt2, kPte };

// Which runtime a package needs, from its name and first bytes.
Format sniff(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw UserError("--model " + path + ": no such file");
  std::string ext = lower(fs::path(path).extension().string());
  char head[8] = {};
  std::ifstream(path, std::ios::binary).read(head, sizeof head);
  if (ext == ".xml" || std::string(head, 5) == "<?xml") return Format::kOpenVINO;
  if (ext == ".pte" || std::string(head + 4, 2) == "ET") return Format::kPte;  // flatbuffer identifier "ET.."
  if (ext == ".pt2" || (head[0] == 'P' && head[1] == 'K')) return Format::kPt2;
  if (ext == ".bin") throw UserError("--model " + path + ": pass the OpenVINO IR's .xml (the .bin beside it is read with it)");
  std::string formats = kFormatsShort;
  formats.pop_back();  // the last ';'
  throw UserError("--model " + path + ": not a package this program runs; it takes:" + formats);
}

// A package this build cannot run: say which program or wheel can.
[[noreturn]] void not_built(const std::string& path, const char* what, const char* hint) {
#ifdef R2N_WITH_PTE
  (void)hint;
  throw UserError("--model " + path + ": this program runs ExecuTorch .pte programs only; res2net_predict runs " +
                  what + " packages");
#else
  throw UserError("--model " + path + ": this build has no " + what + " runtime (" + hint +
                  ", then rerun deploy/cpp/build.sh)");
#endif
}

std::unique_ptr<Runtime> open_runtime(const std::string& path, const RuntimeOptions& options) {
  switch (sniff(path)) {
    case Format::kOpenVINO:
#ifdef R2N_WITH_OPENVINO
      return open_openvino(path, options);
#else
      not_built(path, "OpenVINO IR", "pip install 'res2net[deploy]'");
#endif
    case Format::kPt2:
#ifdef R2N_WITH_PT2
      return open_pt2(path, options);
#else
      not_built(path, ".pt2 (libtorch)", "pip install torch");
#endif
    case Format::kPte:
#ifdef R2N_WITH_PTE
      return open_pte(path, options);
#else
      not_built(path, "ExecuTorch", "res2net_pte_predict runs .pte programs: pip install 'res2net[edge]'");
#endif
  }
  throw UserError("--model " + path + ": unknown format");
}

struct Item {
  std::string path;
  std::string error;  // non-empty: this image failed
  double preprocess_ms = 0;
};

// --benchmark: `iters` timed forward passes of a full batch (the decoded images repeated).
void benchmark(Runtime& rt, const Options& o, const std::vector<float>& decoded, int64_t n, int batch, int c,
               double preprocess_ms_per_image) {
  const size_t per_image = 3ull * c * c;
  std::vector<float> x(static_cast<size_t>(batch) * per_image);
  for (int64_t r = 0; r < batch; ++r)
    std::copy_n(decoded.data() + (r % n) * per_image, per_image, x.data() + r * per_image);
  for (int i = 0; i < o.warmup; ++i) rt.forward(x.data(), batch, c);
  std::vector<double> times;
  for (int i = 0; i < o.iters; ++i) {
    auto t0 = Clock::now();
    rt.forward(x.data(), batch, c);
    times.push_back(ms_since(t0));
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(times.begin(), times.end(), 0.0) / times.size();
  const double median = sorted[sorted.size() / 2];
  if (o.json) {
    std::printf("{\"benchmark\": {\"batch\": %d, \"iters\": %d, \"warmup\": %d, \"threads\": %d, \"mean_ms\": %.4f, "
                "\"median_ms\": %.4f, \"min_ms\": %.4f, \"preprocess_ms_per_image\": %.4f, \"samples_ms\": [",
                batch, o.iters, o.warmup, rt.threads(), mean, median, sorted.front(), preprocess_ms_per_image);
    for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.4f", i ? ", " : "", times[i]);
    std::printf("]}}\n");
  } else {
    std::printf(
        "benchmark: batch %d, %d iters after %d warmup: mean %.2f ms, median %.2f ms, min %.2f ms, "
        "%.1f images/s; decode+preprocess %.2f ms/image, threads %d\n",
        batch, o.iters, o.warmup, mean, median, sorted.front(), 1000.0 * batch / mean, preprocess_ms_per_image,
        rt.threads());
  }
}

int run(const Options& o) {
  std::vector<std::string> paths = find_images(o.images);
  auto t_load = Clock::now();
  std::unique_ptr<Runtime> rt = open_runtime(o.model, {o.threads, o.streams});
  const MetaLookup meta = [&](const std::string& k) { return rt->meta(k); };
  PackageInfo info = package_info(meta, o.model, o.resize_short, o.crop_size);
  if (const int size = rt->input_size()) {  // the program's own input shape wins over metadata defaults
    if (!info.known_shape && !o.crop_size) info.pp.crop_size = size;
    if (info.pp.crop_size != size)
      throw UserError("--crop-size " + std::to_string(info.pp.crop_size) + ": the package takes " +
                      std::to_string(size) + "x" + std::to_string(size) + " inputs");
  }
  const Preprocess& pp = info.pp;
  const int fixed = rt->fixed_batch(info.fixed_batch);
  const int batch_size = fixed ? fixed : o.batch_size;
  const std::vector<std::string> labels = resolve_labels(o.labels, meta, o.model);
  rt->prepare(batch_size, pp.crop_size);
  const double load_ms = ms_since(t_load);

  if (!o.json)
    std::printf("model: %s (%s; loaded in %.1f ms), preprocess: resize short %d, crop %d, %zu image(s), batch %d\n",
                o.model.c_str(), rt->describe().c_str(), load_ms, pp.resize_short, pp.crop_size, paths.size(),
                batch_size);

  const int c = pp.crop_size;
  const size_t per_image = 3ull * c * c;
  int failures = 0, done = 0;
  double total_preprocess_ms = 0, total_infer_ms = 0;
  bool benchmarked = false;
  std::ofstream dump;
  if (!o.dump_input.empty()) {
    dump.open(o.dump_input, std::ios::binary | std::ios::trunc);
    if (!dump) throw UserError("--dump-input " + o.dump_input + ": cannot write");
  }
  const int decoders = o.decode_threads >= 0 ? o.decode_threads : std::min(4, cpu_count() + 1);
  const auto t_run = Clock::now();
  DecodeAhead decoded(paths, pp, decoders, 2ull * batch_size);  // the next two batches, as Python
  // One input buffer, reused by every batch.
  std::vector<float> buffer;
  buffer.reserve(static_cast<size_t>(batch_size) * per_image);
  for (size_t start = 0; start < paths.size(); start += batch_size) {
    const size_t end = std::min(paths.size(), start + static_cast<size_t>(batch_size));
    std::vector<Item> items;
    buffer.clear();
    std::vector<size_t> ok;  // indices into items that decoded
    for (size_t i = start; i < end; ++i) {
      Decoded d = decoded.take(i);
      if (d.error.empty()) {
        buffer.insert(buffer.end(), d.pixels.begin(), d.pixels.end());
        ok.push_back(items.size());
      }
      items.push_back(Item{paths[i], std::move(d.error), d.preprocess_ms});
    }
    for (const auto& it : items)
      if (!it.error.empty()) {
        ++failures;
        std::fprintf(stderr, "error: %s\n", it.error.c_str());
      }
    if (ok.empty()) continue;

    const int64_t n = static_cast<int64_t>(ok.size());
    double pre = 0;
    for (size_t k : ok) pre += items[k].preprocess_ms;
    if (dump) dump.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size() * 4));
    if (o.benchmark && !benchmarked) {
      benchmarked = true;
      benchmark(*rt, o, buffer, n, batch_size, c, pre / n);
    }
    const int64_t rows = fixed ? fixed : n;
    buffer.resize(rows * per_image, 0.0f);  // padding rows (fixed-batch packages) are zeros, results dropped
    auto t0 = Clock::now();
    const Scores out = rt->forward(buffer.data(), rows, c);
    const double infer_ms = ms_since(t0);
    for (int64_t r = 0; r < n; ++r) {
      const Item& it = items[ok[r]];
      print_result(it.path, it.preprocess_ms, infer_ms / n,
                   top_k(out.values.data() + r * out.classes, out.classes, o.topk, info.softmax), labels, o.json);
    }
    std::fflush(stdout);
    done += static_cast<int>(n);
    total_preprocess_ms += pre;
    total_infer_ms += infer_ms;
  }
  if (!o.json && done) {
    const double wall = ms_since(t_run);
    std::printf("total: %d image(s) in %.1f ms, %.1f images/s (decode+preprocess %.2f ms/image, inference %.2f "
                "ms/image)\n",
                done, wall, 1000.0 * done / wall, total_preprocess_ms / done, total_infer_ms / done);
  }
  return exit_status(failures, paths.size());
}

}  // namespace

int main(int argc, char** argv) {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  const std::string program = fs::path(argv[0]).filename().string();
  std::string usage(std::snprintf(nullptr, 0, kUsage, program.c_str(), kFormats), '\0');
  std::snprintf(usage.data(), usage.size() + 1, kUsage, program.c_str(), kFormats);
  return run_main([&] { return run(parse_args(argc, argv, usage)); },
                  [](const std::exception& e) { return first_line(e.what()); });
}
