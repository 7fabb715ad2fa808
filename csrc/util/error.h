// Typed errors of the model layer. Nothing below tools/ exits: it throws these, and the tools
// (or the HTTP layer) turn them into messages.
#pragma once

#include <stdexcept>
#include <string>

namespace jarvis {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model file or directory that cannot be used: names the file and what is wrong with it.
class ModelFileError : public Error {
 public:
  ModelFileError(const std::string& path, const std::string& what)
      : Error(path + ": " + what), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A request the engine cannot serve as asked (bad parameter value, prompt too long, ...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

}  // namespace jarvis
