// safetensors parsing on hand-built buffers: the byte layout follows the format's spec
// (u64 little-endian header size, JSON header, data section), written here byte by byte.
#include "csrc/model/safetensors_file.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

std::vector<uint8_t> build(const std::string& header, const std::vector<uint8_t>& data, int64_t size_override = -1) {
  std::vector<uint8_t> out(8);
  const uint64_t n = size_override >= 0 ? static_cast<uint64_t>(size_override) : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(SafetensorsFile, ParsesAndConverts) {
  std::vector<uint8_t> data = f32_bytes({1.5f, -2.0f, 0.25f, 3.0f, 4.0f, 5.0f});
  // F16 1.0 = 0x3C00, -2.0 = 0xC000; BF16 1.0 = 0x3F80, 3.140625 = 0x4049 (little-endian bytes).
  for (uint8_t b : {0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x49, 0x40}) data.push_back(b);
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("h":{"dtype":"F16","shape":[2],"data_offsets":[24,28]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[28,32]}})";
  const auto buf = build(header, data);
  SafetensorsFile f = SafetensorsFile::parse(buf.data(), buf.size(), "t.safetensors");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const SafetensorsTensor* w = f.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->num_elements(), 6);
  std::vector<float> out(6);
  f.to_float(*w, out.data());
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f, 0.25f, 3.0f, 4.0f, 5.0f}));
  f.to_float(*f.find("h"), out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  f.to_float(*f.find("b"), out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 3.140625f);
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(SafetensorsFile, ScalarAndEmptyTensors) {
  const auto buf = build(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                         R"("e":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]}})",
                         f32_bytes({7.0f}));
  SafetensorsFile f = SafetensorsFile::parse(buf.data(), buf.size(), "t");
  EXPECT_EQ(f.find("s")->num_elements(), 1);
  EXPECT_EQ(f.find("e")->num_elements(), 0);
}

void expect_error(const std::vector<uint8_t>& buf, const std::string& needle) {
  try {
    SafetensorsFile::parse(buf.data(), buf.size(), "bad.safetensors");
    ADD_FAILURE() << "parsed; expected an error mentioning '" << needle << "'";
  } catch (const ModelFileError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(SafetensorsFile, MalformedFilesAreModelFileErrors) {
  const std::vector<uint8_t> four = f32_bytes({1.0f});
  expect_error({1, 2, 3}, "too short");
  expect_error(build("{}", {}, 1000), "past end of file");
  expect_error(build("{not json", {}), "not valid JSON");
  expect_error(build("[1,2]", {}), "not a JSON object");
  expect_error(build(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", four), "dtype");
  expect_error(build(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", four), "shape");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[1]}})", four), "data_offsets");
  expect_error(build(R"({"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", four), "unknown dtype 'Q4'");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four), "shape entries");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four), "outside the 4-byte data section");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four), "data_offsets");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four), "need 8");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", four),
               "too large");
  expect_error(build(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", four), "data_offsets");
  expect_error(build(R"({"__metadata__":{"k":1}})", {}), "__metadata__");
}

TEST(SafetensorsFile, UnsupportedDtypeOnConversion) {
  const auto buf = build(R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", std::vector<uint8_t>(8, 0));
  SafetensorsFile f = SafetensorsFile::parse(buf.data(), buf.size(), "i.safetensors");
  std::vector<float> out(1);
  try {
    f.to_float(*f.find("t"), out.data());
    FAIL() << "converted I64";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find("dtype I64"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsFile, OpenMissingFile) {
  EXPECT_THROW(SafetensorsFile::open("/nonexistent/model.safetensors"), ModelFileError);
}

}  // namespace
}  // namespace jarvis
