// safetensors container reader: 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw data. Memory-mapped; every offset and size is
// checked against the file, so a malformed file is a ModelFileError, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "csrc/util/mapped_file.h"

namespace jarvis {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // as the file writes it: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;  // row-major, slowest dimension first (PyTorch order)
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t num_elements() const;
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);  // maps and parses; throws ModelFileError
  // Parses a buffer the caller keeps alive (tests, fuzzing). `name` is used in errors.
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return name_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"

  // Converts an F32, F16 or BF16 tensor of this file to float32 (dst holds num_elements()).
  // Other dtypes are a ModelFileError naming the tensor and the dtype.
  void to_float(const SafetensorsTensor& tensor, float* dst) const;

 private:
  std::shared_ptr<MappedFile> file_;  // null when parsing a caller's buffer
  std::string name_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace jarvis
