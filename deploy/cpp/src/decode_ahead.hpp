// DecodeAhead: decode and preprocess images on worker threads while the runtime infers.
//
// Decoding a JPEG and resizing it costs a few ms per image; a batch of 8 is as long as an int8
// forward pass. Done in turn with inference, it adds to every batch; done on other threads, the
// next batch is ready when the current one finishes (what res2net.Predictor.iter_predict does with
// its decoding threads). Workers stay at most `lookahead` images ahead of the consumer, so memory
// is bounded whatever the number of images, and images are handed out in their order.

#pragma once

#include "common.hpp"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace r2n {

struct Decoded {
  std::vector<float> pixels;  // 3 x crop x crop, CHW; empty when `error` is set
  std::string error;          // non-empty: this image failed (one line naming it)
  double preprocess_ms = 0;   // decode + preprocess time on its worker
  std::exception_ptr failure;  // anything else (a bug): rethrown by take(), ending the run
};

inline Decoded decode_one(const std::string& path, const Preprocess& pp) {
  Decoded d;
  const auto t0 = Clock::now();
  try {
    cv::Mat rgb = load_image(path);
    std::vector<float> pixels(3ull * pp.crop_size * pp.crop_size);
    preprocess(rgb, pp, pixels.data());
    d.pixels = std::move(pixels);
  } catch (const UserError& e) {
    d.error = e.what();
  } catch (const cv::Exception& e) {  // OpenCV out of memory, or a limit of its decoders: this image's error
    d.error = path + ": cannot decode or resize it (" + e.err + ")";
  } catch (const std::bad_alloc&) {
    d.error = path + ": out of memory decoding or resizing it";
  } catch (...) {
    d.failure = std::current_exception();
  }
  d.preprocess_ms = ms_since(t0);
  return d;
}

class DecodeAhead {
 public:
  // threads == 0: decode in the caller's thread, on demand (no workers).
  DecodeAhead(const std::vector<std::string>& paths, const Preprocess& pp, int threads, size_t lookahead)
      : paths_(paths), pp_(pp), lookahead_(std::max<size_t>(1, lookahead)), slots_(paths.size()) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~DecodeAhead() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    space_.notify_all();
    for (auto& w : workers_) w.join();
  }

  DecodeAhead(const DecodeAhead&) = delete;
  DecodeAhead& operator=(const DecodeAhead&) = delete;

  // Image i, waiting for its worker if need be. Call with i = 0, 1, 2, ... in order.
  Decoded take(size_t i) {
    Decoded d = workers_.empty() ? decode_one(paths_[i], pp_) : wait_for(i);
    if (d.failure) std::rethrow_exception(d.failure);
    return d;
  }

 private:
  Decoded wait_for(size_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    ready_.wait(lock, [&] { return slots_[i].has_value(); });
    Decoded d = std::move(*slots_[i]);
    slots_[i].reset();
    consumed_ = i + 1;
    lock.unlock();
    space_.notify_all();
    return d;
  }

  void work() {
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lock(mu_);
        space_.wait(lock, [&] { return stop_ || (next_ < paths_.size() && next_ < consumed_ + lookahead_); });
        if (stop_) return;
        i = next_++;
      }
      Decoded d = decode_one(paths_[i], pp_);  // failures are results: a worker never throws
      {
        std::lock_guard<std::mutex> lock(mu_);
        slots_[i] = std::move(d);
      }
      ready_.notify_all();
    }
  }

  const std::vector<std::string>& paths_;
  const Preprocess pp_;
  const size_t lookahead_;
  std::vector<std::optional<Decoded>> slots_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  size_t next_ = 0, consumed_ = 0;
  bool stop_ = false;
};

}  // namespace r2n
