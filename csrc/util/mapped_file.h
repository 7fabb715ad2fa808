// Read-only memory map of a whole file (RAII). Weights are read through it, never copied whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace jarvis {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws ModelFileError
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace jarvis
