#include "server/generation_run.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>

namespace jarvis::server {

// Hands updates from the engine thread to the HTTP thread. Shared with the engine's callbacks,
// so it outlives a run that ended before the engine's last update.
struct GenerationRun::Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, RequestUpdate>> queue;

  void push(int choice, const RequestUpdate& update) {
    {
      std::lock_guard<std::mutex> lock(mu);
      queue.emplace_back(choice, update);
    }
    cv.notify_one();
  }
};

GenerationRun::GenerationRun(Engine& engine, std::string id)
    : engine_(engine), id_(std::move(id)), channel_(std::make_shared<Channel>()) {}

GenerationRun::~GenerationRun() {
  for (size_t i = 0; i < submitted_; ++i) {
    if (!states_[i].finished) engine_.cancel(requests_[i].id);
  }
}

void GenerationRun::add_choice(std::vector<int32_t> prompt, std::string prompt_text, const RequestOptions& options) {
  Request r;
  r.id = id_ + "-" + std::to_string(requests_.size());
  r.prompt = prompt;
  r.options = options;
  requests_.push_back(std::move(r));
  ChoiceState s;
  s.prompt = std::move(prompt);
  s.prompt_text = std::move(prompt_text);
  s.prompt_tokens = static_cast<int>(s.prompt.size());
  states_.push_back(std::move(s));
  groups_.push_back(static_cast<int>(groups_.size()));
}

void GenerationRun::start() {
  try {
    for (; submitted_ < requests_.size(); ++submitted_) {
      const int choice = static_cast<int>(submitted_);
      std::shared_ptr<Channel> channel = channel_;
      engine_.submit(requests_[submitted_],
                     [channel, choice](const RequestUpdate& u) { channel->push(choice, u); });
    }
  } catch (...) {
    for (size_t i = 0; i < submitted_; ++i) engine_.cancel(requests_[i].id);
    for (auto& s : states_) s.finished = true;  // nothing left for the destructor to cancel
    throw;
  }
}

std::vector<std::pair<int, RequestUpdate>> GenerationRun::poll(std::chrono::milliseconds timeout) {
  std::vector<std::pair<int, RequestUpdate>> got;
  {
    std::unique_lock<std::mutex> lock(channel_->mu);
    channel_->cv.wait_for(lock, timeout, [&] { return !channel_->queue.empty(); });
    while (!channel_->queue.empty()) {
      got.push_back(std::move(channel_->queue.front()));
      channel_->queue.pop_front();
    }
  }
  for (const auto& [choice, u] : got) {
    ChoiceState& s = states_.at(static_cast<size_t>(choice));
    if (s.finished) continue;
    for (const StreamEvent& e : u.tokens) {
      s.text += e.text;
      s.tokens.push_back(e);
    }
    if (!u.prompt_logprobs.empty()) s.prompt_logprobs = u.prompt_logprobs;
    if (u.prompt_tokens > 0) s.prompt_tokens = u.prompt_tokens;
    s.generated_tokens = std::max(s.generated_tokens, u.generated_tokens);
    s.generated_tokens = std::max(s.generated_tokens, static_cast<int>(s.tokens.size()));
    if (u.finished) {
      s.finished = true;
      s.finish = u.finish;
      s.error = u.error;
    }
  }
  return got;
}

bool GenerationRun::all_finished() const {
  for (const auto& s : states_) {
    if (!s.finished) return false;
  }
  return true;
}

int GenerationRun::prompt_tokens() const {
  std::set<int> seen;
  int total = 0;
  for (size_t i = 0; i < states_.size(); ++i) {
    if (seen.insert(groups_[i]).second) total += states_[i].prompt_tokens;
  }
  return total;
}

int GenerationRun::completion_tokens() const {
  int total = 0;
  for (const auto& s : states_) total += s.generated_tokens;
  return total;
}

}  // namespace jarvis::server
