// Wire framing shared by the byte-moving backends: a fixed 40-byte little-endian header followed by
// the payload. The CRC32C covers the header (with its crc field zeroed) and the payload, so any
// flipped byte in either is caught.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "transport/link.h"

namespace jarvis::transport {

inline constexpr uint32_t kFrameMagic = 0x4b4c564a;  // "JVLK" read little-endian
inline constexpr uint16_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 40;
// Refuse absurd lengths before allocating: a corrupt length must not become a 2^64-byte vector.
inline constexpr uint64_t kMaxFramePayload = uint64_t{1} << 34;  // 16 GiB

struct FrameHeader {
  MessageType type = MessageType::kData;
  uint32_t tag = 0;
  uint64_t seq = 0;
  uint64_t length = 0;  // payload bytes
  uint32_t crc = 0;     // CRC32C of header (crc field zero) + payload
};

using FrameHeaderBytes = std::array<uint8_t, kFrameHeaderBytes>;

// CRC32C (Castagnoli), continuing from `crc` (start with 0). Hardware instruction when built for
// SSE4.2, table otherwise.
uint32_t crc32c(uint32_t crc, const void* data, size_t bytes);

// Header bytes for a payload; computes the checksum over both.
FrameHeaderBytes encode_frame_header(MessageType type, uint32_t tag, uint64_t seq, const void* payload,
                                     size_t bytes);

// Parses and checks magic, version, type and length; throws FrameError. Does not check the CRC
// (the payload is not there yet): call verify_frame once it is.
FrameHeader decode_frame_header(const uint8_t* bytes);

// Throws FrameError when the checksum of `header_bytes` + payload does not match.
void verify_frame(const uint8_t* header_bytes, const void* payload, size_t bytes);

}  // namespace jarvis::transport
