#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "transport/frame.h"

using namespace jarvis::transport;

// The CRC-32C check value from RFC 3720 / the Castagnoli catalogue: crc32c("123456789").
TEST(TransportFrame, Crc32cMatchesPublishedCheckValue) {
  EXPECT_EQ(crc32c(0, "123456789", 9), 0xE3069283u);
  // RFC 3720 B.4: 32 bytes of zeros.
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(crc32c(0, zeros.data(), zeros.size()), 0x8A9136AAu);
  // Incremental use equals one pass.
  EXPECT_EQ(crc32c(crc32c(0, "12345", 5), "6789", 4), 0xE3069283u);
}

TEST(TransportFrame, RoundTrip) {
  std::vector<uint8_t> payload(1000);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  const auto h = encode_frame_header(MessageType::kPing, 0xdeadbeef, 123456789012ull, payload.data(), payload.size());
  const FrameHeader d = decode_frame_header(h.data());
  EXPECT_EQ(d.type, MessageType::kPing);
  EXPECT_EQ(d.tag, 0xdeadbeefu);
  EXPECT_EQ(d.seq, 123456789012ull);
  EXPECT_EQ(d.length, payload.size());
  EXPECT_NO_THROW(verify_frame(h.data(), payload.data(), payload.size()));
  const auto empty = encode_frame_header(MessageType::kHeartbeat, 0, 0, nullptr, 0);
  EXPECT_EQ(decode_frame_header(empty.data()).length, 0u);
  EXPECT_NO_THROW(verify_frame(empty.data(), nullptr, 0));
}

// Flipping any single byte of header or payload must be caught by decode or checksum.
TEST(TransportFrame, AnyFlippedByteIsDetected) {
  std::vector<uint8_t> payload(257);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i ^ 0x5a);
  const auto good = encode_frame_header(MessageType::kData, 7, 3, payload.data(), payload.size());
  for (size_t i = 0; i < good.size() + payload.size(); ++i) {
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      auto h = good;
      auto p = payload;
      if (i < h.size()) h[i] ^= flip; else p[i - h.size()] ^= flip;
      EXPECT_THROW(
          {
            decode_frame_header(h.data());
            verify_frame(h.data(), p.data(), p.size());
          },
          FrameError)
          << "byte " << i << " flip " << int(flip);
    }
  }
}

TEST(TransportFrame, RejectsAbsurdLength) {
  auto h = encode_frame_header(MessageType::kData, 0, 0, nullptr, 0);
  h[31] = 0x7f;  // length's top byte: ~2^62 bytes
  EXPECT_THROW(decode_frame_header(h.data()), FrameError);
}
