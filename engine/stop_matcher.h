// Stop strings over streamed text: finds the first occurrence of any stop string and holds back
// text that could still turn into one, so a client never sees part of a stop string.
#pragma once

#include <string>
#include <vector>

namespace jarvis {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);  // empty stop strings: InvalidArgument

  // Adds generated text; returns the text safe to show now. When a stop string completes, the
  // returned text ends just before it, stopped() turns true, and later pushes return nothing.
  std::string push(const std::string& text);
  // At the end of generation: the held-back text (a prefix of a stop string that never completed).
  std::string flush();

  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }  // the stop string found

 private:
  std::vector<std::string> stops_;
  std::string held_;
  std::string matched_;
  bool stopped_ = false;
};

}  // namespace jarvis
