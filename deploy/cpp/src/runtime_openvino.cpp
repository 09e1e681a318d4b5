// The OpenVINO runtime: an IR (`res2net export --format openvino [--quantize int8]`) on OpenVINO's
// CPU plugin through its C++ API, from the libraries the `openvino` pip wheel ships.
//
// Compiled as res2net.engines.openvino_engine compiles it in Python, so the two agree (and time
// alike): fp32 computation is asked for explicitly (recent releases otherwise run bf16 on CPUs
// that have it), int8 IRs keep their unquantized layers in fp32, one compiled model per batch size
// with static shapes (OpenVINO's fastest kernels), and a batch of several images runs as one share
// per single-threaded stream, in parallel, instead of one multi-threaded pass (no per-layer thread
// barriers; each core keeps its own share's activations hot: measured faster from batch 2 up).

#include <openvino/openvino.hpp>

#include <fstream>
#include <map>
#include <span>
#include <sstream>
#include <tuple>

#include "common.hpp"

namespace r2n {
namespace {

// OpenVINO's messages start with "Exception from src/...cpp:NN:" lines; the reason is what follows.
std::string message(const std::exception& e) {
  std::istringstream in(e.what());
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.empty() || line.rfind("Exception from ", 0) == 0 || line.rfind("Check '", 0) == 0) {
      if (last.empty() && line.rfind("Check '", 0) == 0) last = line;
      continue;
    }
    return line;
  }
  return last.empty() ? first_line(e.what()) : last;
}

class OpenVINORuntime final : public Runtime {
 public:
  OpenVINORuntime(const std::string& path, const RuntimeOptions& options) : path_(path) {
    const fs::path weights = fs::path(path).replace_extension(".bin");
    std::error_code ec;
    if (!fs::is_regular_file(weights, ec))
      throw UserError("--model " + path + ": its weights file " + weights.string() +
                      " is missing (an OpenVINO IR is the .xml and the .bin beside it)");
    // Only IR is read: given anything else, OpenVINO would try its other frontends on it, and the
    // TensorFlow one prints lines of its own to stderr (absl logging) before the error.
    std::string head(4096, '\0');
    std::ifstream(path, std::ios::binary).read(head.data(), static_cast<std::streamsize>(head.size()));
    const size_t net = head.find("<net ");
    if (net == std::string::npos || head.find("version=", net) == std::string::npos)
      throw UserError("--model " + path + ": cannot read as an OpenVINO IR: no <net version=...> element");
    try {
      model_ = core_.read_model(path);
    } catch (const std::exception& e) {
      throw UserError("--model " + path + ": cannot read as an OpenVINO IR: " + message(e));
    }
    if (model_->inputs().size() != 1 || model_->outputs().size() != 1)
      throw UserError("--model " + path + ": expected one input and one output, the IR has " +
                      std::to_string(model_->inputs().size()) + " and " + std::to_string(model_->outputs().size()));
    const ov::PartialShape shape = model_->input().get_partial_shape();
    if (shape.rank().is_dynamic() || shape.rank().get_length() != 4 || shape[1] != 3)
      throw UserError("--model " + path + ": the input is " + shape.to_string() + ", expected [N, 3, S, S]");
    if (shape[2].is_static() && shape[3].is_static()) {
      if (shape[2] != shape[3])
        throw UserError("--model " + path + ": a non-square input (" + shape.to_string() + ") is not supported");
      size_ = static_cast<int>(shape[2].get_length());
    }
    for (const auto& op : model_->get_ops())
      if (std::string(op->get_type_name()) == "FakeQuantize") {
        int8_ = true;
        break;
      }
    threads_ = options.threads > 0 ? options.threads : cpu_count();
    streams_ = options.streams > 0 ? options.streams : threads_;
    const ov::AnyMap base = {
        ov::hint::inference_precision(ov::element::f32),  // int8: the layers NNCF left in float stay f32
        ov::inference_num_threads(threads_),
        // Not pinned, as in Python: the batch-1 and multi-stream compiled models share the cores.
        ov::hint::enable_cpu_pinning(false),
    };
    latency_ = base;
    latency_.emplace(ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY));
    latency_.emplace(ov::num_streams(1));
    streaming_ = base;
    streaming_.emplace(ov::hint::performance_mode(ov::hint::PerformanceMode::THROUGHPUT));
    streaming_.emplace(ov::num_streams(streams_));
  }

  std::string describe() const override {
    const std::string version = ov::get_openvino_version().buildNumber;
    std::string d = "OpenVINO " + version.substr(0, version.find('-')) + " CPU, " + (int8_ ? "int8" : "fp32") + ", " +
                    std::to_string(threads_) + " threads";
    if (streams_ > 1) d += ", batches split over " + std::to_string(streams_) + " streams";
    return d;
  }

  std::optional<std::string> meta(const std::string& key) const override {
    try {
      if (model_->has_rt_info("res2net", key)) return model_->get_rt_info<std::string>("res2net", key);
    } catch (const std::exception&) {
    }
    return std::nullopt;
  }

  int fixed_batch(int) const override { return 0; }  // an IR is reshaped to any batch
  int input_size() const override { return size_; }
  int threads() const override { return threads_; }

  void prepare(int batch, int size) override {
    if (batch == 1 || streams_ == 1)
      requests(false, batch, size);
    else
      requests(true, share(batch), size);
  }

  Scores forward(const float* x, int64_t n, int size) override {
    const size_t per_image = 3ull * size * size;
    if (n == 1 || streams_ == 1) {
      auto& req = requests(false, n, size).front();
      req.set_input_tensor(tensor(x, n, size));
      req.start_async();
      wait(req, n, size);
      return gather({&req, 1}, n);
    }
    const int64_t share = this->share(n);
    const int64_t used = (n + share - 1) / share;  // streams with images
    std::vector<float> padded;
    if (used * share != n) {  // the last share is padded: it runs in parallel with the others anyway
      padded.assign(used * share * per_image, 0.0f);
      std::copy_n(x, n * per_image, padded.data());
      x = padded.data();
    }
    auto& reqs = requests(true, share, size);
    for (int64_t i = 0; i < used; ++i) {
      reqs[i].set_input_tensor(tensor(x + i * share * per_image, share, size));
      reqs[i].start_async();
    }
    for (int64_t i = 0; i < used; ++i) wait(reqs[i], n, size);
    return gather({reqs.data(), static_cast<size_t>(used)}, n);
  }

 private:
  int64_t share(int64_t n) const { return (n + streams_ - 1) / streams_; }  // images per stream

  static ov::Tensor tensor(const float* x, int64_t n, int size) {
    return ov::Tensor(ov::element::f32, ov::Shape{static_cast<size_t>(n), 3, static_cast<size_t>(size),
                                                  static_cast<size_t>(size)},
                      const_cast<float*>(x));
  }

  void wait(ov::InferRequest& req, int64_t n, int size) {
    try {
      req.wait();
    } catch (const std::exception& e) {
      throw UserError("--model " + path_ + ": inference failed on a batch of " + std::to_string(n) + " x 3 x " +
                      std::to_string(size) + " x " + std::to_string(size) + ": " + message(e));
    }
  }

  // The scores of the first `n` rows the requests computed, in order.
  Scores gather(std::span<ov::InferRequest> reqs, int64_t n) {
    Scores s;
    for (auto& req : reqs) {
      const ov::Tensor out = req.get_output_tensor();
      const ov::Shape shape = out.get_shape();
      if (shape.size() != 2)
        throw UserError("--model " + path_ + ": the IR returned " + out.get_shape().to_string() +
                        ", not [batch, classes] scores: not a classification model?");
      s.classes = static_cast<int64_t>(shape[1]);
      const int64_t take = std::min<int64_t>(static_cast<int64_t>(shape[0]), n - s.rows);
      const float* data = out.data<const float>();
      s.values.insert(s.values.end(), data, data + take * s.classes);
      s.rows += take;
    }
    return s;
  }

  // Infer requests of the model compiled for exactly `batch` images of `size`: one (latency) or one
  // per stream.
  std::vector<ov::InferRequest>& requests(bool streams, int64_t batch, int size) {
    const auto key = std::make_tuple(streams, batch, size);
    auto it = compiled_.find(key);
    if (it != compiled_.end()) return it->second.requests;
    try {
      std::shared_ptr<ov::Model> m = model_->clone();
      m->reshape(ov::PartialShape{batch, 3, size, size});
      Compiled c{core_.compile_model(m, "CPU", streams ? streaming_ : latency_), {}};
      for (int i = 0; i < (streams ? streams_ : 1); ++i) c.requests.push_back(c.model.create_infer_request());
      return compiled_.emplace(key, std::move(c)).first->second.requests;
    } catch (const std::exception& e) {
      throw UserError("--model " + path_ + ": OpenVINO cannot compile it for a batch of " + std::to_string(batch) +
                      " x 3 x " + std::to_string(size) + " x " + std::to_string(size) +
                      " (was it exported for another image size? see --crop-size): " + message(e));
    }
  }

  struct Compiled {
    ov::CompiledModel model;
    std::vector<ov::InferRequest> requests;
  };

  std::string path_;
  ov::Core core_;
  std::shared_ptr<ov::Model> model_;
  ov::AnyMap latency_, streaming_;
  std::map<std::tuple<bool, int64_t, int>, Compiled> compiled_;
  int size_ = 0, threads_ = 1, streams_ = 1;
  bool int8_ = false;
};

}  // namespace

std::unique_ptr<Runtime> open_openvino(const std::string& path, const RuntimeOptions& options) {
  return std::make_unique<OpenVINORuntime>(path, options);
}

}  // namespace r2n
