// Collects what an Engine streams back per request id, for the engine tests: tokens, the final
// error, and waits for a number of finished requests or for a request's n-th token.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace jarvis::engine_test {

struct Result {
  std::vector<int32_t> tokens;
  std::string error;
  bool finished = false;
};

class Collector {
 public:
  UpdateCallback callback(const std::string& id) {
    return [this, id](const RequestUpdate& u) {
      std::lock_guard<std::mutex> lock(mu_);
      Result& r = results_[id];
      for (const StreamEvent& e : u.tokens) r.tokens.push_back(e.token);
      if (u.finished) {
        r.finished = true;
        r.error = u.error;
        ++done_;
      }
      cv_.notify_all();
    };
  }
  // Until `n` requests finished (false after `timeout`).
  bool wait(int n, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_ >= n; });
  }
  // Until request `id` has `n` tokens or finished.
  void wait_tokens(const std::string& id, size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(60),
                 [&] { return results_[id].tokens.size() >= n || results_[id].finished; });
  }
  Result get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return results_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Result> results_;
  int done_ = 0;
};

}  // namespace jarvis::engine_test
