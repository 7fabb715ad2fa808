#include "transport/frame.h"

#include <cstring>
#include <string>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace jarvis::transport {
namespace {

constexpr size_t kCrcOffset = 32;

template <typename T>
void put(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
}

template <typename T>
T get(const uint8_t* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<T>(v);
}

#if !defined(__SSE4_2__)
struct CrcTable {
  uint32_t t[256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli
      t[i] = c;
    }
  }
};
#endif

// Checksum of the header with its crc field taken as zero, continued over the payload.
uint32_t frame_crc(const uint8_t* header, const void* payload, size_t bytes) {
  uint8_t copy[kFrameHeaderBytes];
  std::memcpy(copy, header, kFrameHeaderBytes);
  put<uint32_t>(copy + kCrcOffset, 0);
  uint32_t crc = crc32c(0, copy, kFrameHeaderBytes);
  return crc32c(crc, payload, bytes);
}

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
#if defined(__SSE4_2__)
  uint64_t c = crc;
  for (; bytes >= 8; bytes -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
  }
  crc = static_cast<uint32_t>(c);
  for (; bytes > 0; --bytes, ++p) crc = _mm_crc32_u8(crc, *p);
#else
  static const CrcTable table;
  for (; bytes > 0; --bytes, ++p) crc = table.t[(crc ^ *p) & 0xff] ^ (crc >> 8);
#endif
  return ~crc;
}

FrameHeaderBytes encode_frame_header(MessageType type, uint32_t tag, uint64_t seq, const void* payload,
                                     size_t bytes) {
  FrameHeaderBytes h{};
  put<uint32_t>(h.data() + 0, kFrameMagic);
  put<uint16_t>(h.data() + 4, kFrameVersion);
  put<uint16_t>(h.data() + 6, static_cast<uint16_t>(type));
  put<uint32_t>(h.data() + 8, tag);
  put<uint64_t>(h.data() + 16, seq);
  put<uint64_t>(h.data() + 24, bytes);
  put<uint32_t>(h.data() + kCrcOffset, frame_crc(h.data(), payload, bytes));
  return h;
}

FrameHeader decode_frame_header(const uint8_t* b) {
  if (get<uint32_t>(b) != kFrameMagic) throw FrameError("frame: bad magic (not a Jarvis link frame)");
  const auto version = get<uint16_t>(b + 4);
  if (version != kFrameVersion)
    throw FrameError("frame: unsupported version " + std::to_string(version));
  const auto type = get<uint16_t>(b + 6);
  if (type < static_cast<uint16_t>(MessageType::kData) || type > static_cast<uint16_t>(MessageType::kClose))
    throw FrameError("frame: unknown message type " + std::to_string(type));
  if (get<uint32_t>(b + 12) != 0 || get<uint32_t>(b + 36) != 0) throw FrameError("frame: reserved bytes set");
  FrameHeader h;
  h.type = static_cast<MessageType>(type);
  h.tag = get<uint32_t>(b + 8);
  h.seq = get<uint64_t>(b + 16);
  h.length = get<uint64_t>(b + 24);
  h.crc = get<uint32_t>(b + kCrcOffset);
  if (h.length > kMaxFramePayload) throw FrameError("frame: payload length " + std::to_string(h.length) + " too large");
  return h;
}

void verify_frame(const uint8_t* header_bytes, const void* payload, size_t bytes) {
  const uint32_t want = get<uint32_t>(header_bytes + kCrcOffset);
  const uint32_t got = frame_crc(header_bytes, payload, bytes);
  if (want != got) throw FrameError("frame: checksum mismatch (corrupt header or payload)");
}

}  // namespace jarvis::transport
