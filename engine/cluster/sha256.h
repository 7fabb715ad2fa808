// SHA-256 (FIPS 180-4), incremental. Small and dependency-free: used to fingerprint model files
// at rendezvous, where every rank must prove it holds the same bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace jarvis {

class Sha256 {
 public:
  Sha256() { reset(); }
  void reset();
  void update(const void* data, size_t bytes);
  void update_u64(uint64_t v);       // 8 bytes little-endian: lengths and offsets mixed into a digest
  std::array<uint8_t, 32> finish();  // the object must be reset() before reuse
  std::string finish_hex();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_{};
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t bytes);

}  // namespace jarvis
