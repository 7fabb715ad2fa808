// GgufFile::parse on hand-built byte buffers: valid files read back exactly, and every kind of
// malformed file is a ModelFileError that names the problem (never a crash or another exception).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "csrc/gguf/gguf_file.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(Bytes& b, T v) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  b.insert(b.end(), raw, raw + sizeof(T));
}

void put_str(Bytes& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// Builds GGUF files field by field; the counts, offsets and version can be overridden to break them.
class GgufBuilder {
 public:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    uint32_t type;
    std::optional<uint64_t> offset;  // default: next aligned position in the data section
  };

  GgufBuilder& version(uint32_t v) { version_ = v; return *this; }
  GgufBuilder& magic(uint32_t m) { magic_ = m; return *this; }
  GgufBuilder& n_kv(uint64_t n) { n_kv_ = n; return *this; }
  GgufBuilder& n_tensors(uint64_t n) { n_tensors_ = n; return *this; }

  // A key/value whose value bytes (after the type) are given raw.
  GgufBuilder& kv_raw(const std::string& key, uint32_t type, const Bytes& value) {
    put_str(kv_, key);
    put<uint32_t>(kv_, type);
    kv_.insert(kv_.end(), value.begin(), value.end());
    ++kv_count_;
    return *this;
  }
  template <typename T>
  GgufBuilder& kv(const std::string& key, GgufValueType type, T v) {
    Bytes b;
    put<T>(b, v);
    return kv_raw(key, static_cast<uint32_t>(type), b);
  }
  GgufBuilder& kv_str(const std::string& key, const std::string& v) {
    Bytes b;
    put_str(b, v);
    return kv_raw(key, static_cast<uint32_t>(GgufValueType::STRING), b);
  }
  GgufBuilder& kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    Bytes b;
    put<uint32_t>(b, static_cast<uint32_t>(GgufValueType::STRING));
    put<uint64_t>(b, v.size());
    for (const std::string& s : v) put_str(b, s);
    return kv_raw(key, static_cast<uint32_t>(GgufValueType::ARRAY), b);
  }
  GgufBuilder& alignment(uint32_t a) {
    alignment_ = a;
    return kv("general.alignment", GgufValueType::UINT32, a);
  }

  GgufBuilder& tensor(const std::string& name, std::vector<int64_t> dims, GgmlType type,
                      std::optional<uint64_t> offset = std::nullopt) {
    return tensor_raw(name, std::move(dims), static_cast<uint32_t>(type), offset);
  }
  GgufBuilder& tensor_raw(const std::string& name, std::vector<int64_t> dims, uint32_t type,
                          std::optional<uint64_t> offset = std::nullopt) {
    tensors_.push_back({name, std::move(dims), type, offset});
    return *this;
  }

  // Tensor data is filled with a byte pattern (index * 7 + 1) and ends exactly at the end of the
  // last tensor placed by default, so that every proper prefix of the result is truncated.
  Bytes build() const {
    Bytes b;
    put<uint32_t>(b, magic_);
    put<uint32_t>(b, version_);
    put<uint64_t>(b, n_tensors_.value_or(tensors_.size()));
    put<uint64_t>(b, n_kv_.value_or(kv_count_));
    b.insert(b.end(), kv_.begin(), kv_.end());
    uint64_t next = 0, data_end = 0;
    for (const Tensor& t : tensors_) {
      put_str(b, t.name);
      put<uint32_t>(b, static_cast<uint32_t>(t.dims.size()));
      for (int64_t d : t.dims) put<int64_t>(b, d);
      put<uint32_t>(b, t.type);
      uint64_t offset = t.offset.value_or(next);
      put<uint64_t>(b, offset);
      uint64_t end = offset + nbytes(t);
      next = (end + alignment_ - 1) / alignment_ * alignment_;
      if (!t.offset) data_end = std::max(data_end, end);  // explicit offsets may point past the end
    }
    if (!tensors_.empty()) {
      while (b.size() % alignment_ != 0) b.push_back(0);
      for (uint64_t i = 0; i < data_end; ++i) b.push_back(static_cast<uint8_t>(i * 7 + 1));
    }
    return b;
  }

  static uint64_t nbytes(const Tensor& t) {
    const GgmlTypeTraits* traits = ggml_type_traits(t.type);
    if (!traits || t.dims.empty() || t.dims.size() > 4) return 0;
    uint64_t n = 1;
    for (int64_t d : t.dims) {
      if (d <= 0 || d > (int64_t{1} << 20)) return 0;  // invalid shapes get no data
      n *= static_cast<uint64_t>(d);
    }
    return n / static_cast<uint64_t>(traits->block_elems) * traits->block_bytes;
  }

 private:
  uint32_t magic_ = 0x46554747;
  uint32_t version_ = 3;
  std::optional<uint64_t> n_kv_, n_tensors_;
  uint64_t kv_count_ = 0;
  Bytes kv_;
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = 32;
};

GgufFile parse(const Bytes& b) { return GgufFile::parse(b.data(), b.size(), "test.gguf"); }

// The ModelFileError message, or a test failure when parsing succeeds.
std::string parse_error(const Bytes& b) {
  try {
    parse(b);
  } catch (const ModelFileError& e) {
    EXPECT_EQ(e.path(), "test.gguf");
    return e.what();
  }
  ADD_FAILURE() << "parse succeeded";
  return "";
}

#define EXPECT_PARSE_ERROR(bytes, text)                                               \
  do {                                                                                \
    const std::string msg_ = parse_error(bytes);                                      \
    EXPECT_NE(msg_.find(text), std::string::npos) << "message: " << msg_;            \
  } while (0)

GgufBuilder small_valid() {
  GgufBuilder g;
  g.kv_str("general.architecture", "llama")
      .kv("llama.block_count", GgufValueType::UINT32, uint32_t{30})
      .kv("general.neg", GgufValueType::INT8, int8_t{-5})
      .kv("general.eps", GgufValueType::FLOAT32, 1e-5f)
      .kv("general.flag", GgufValueType::BOOL, uint8_t{1})
      .kv_str_array("tokenizer.ggml.tokens", {"a", "bc", ""})
      .tensor("w", {32, 2}, GgmlType::Q8_0)
      .tensor("norm", {5}, GgmlType::F32);
  return g;
}

// ---------------------------------------------------------------------------------------------
// Valid files

TEST(GgufParse, SmallValidFile) {
  const Bytes b = small_valid().build();
  GgufFile g = parse(b);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.path(), "test.gguf");
  EXPECT_EQ(g.metadata().size(), 6u);
  ASSERT_EQ(g.tensors().size(), 2u);

  const GgufTensorInfo* w = g.find_tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dims, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(w->type, GgmlType::Q8_0);
  EXPECT_EQ(w->num_elements(), 64);
  EXPECT_EQ(w->nbytes, 68u);
  EXPECT_EQ(w->offset, 0u);
  const GgufTensorInfo* norm = g.find_tensor("norm");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->offset, 96u);  // 68 rounded up to the 32-byte alignment
  EXPECT_EQ(norm->nbytes, 20u);
  // The data pointers point into the caller's buffer, at the aligned data section.
  const size_t data_start = b.size() - 96 - 20;
  EXPECT_EQ(w->data, b.data() + data_start);
  EXPECT_EQ(norm->data, b.data() + data_start + 96);
  EXPECT_EQ(norm->data[0], static_cast<uint8_t>(96 * 7 + 1));
  EXPECT_EQ(g.find_tensor("missing"), nullptr);
}

TEST(GgufParse, Version2AndCustomAlignment) {
  const Bytes b = GgufBuilder().version(2).alignment(64)
                      .tensor("a", {3}, GgmlType::F32).tensor("b", {4}, GgmlType::F16).build();
  GgufFile g = parse(b);
  EXPECT_EQ(g.version(), 2u);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.find_tensor("b")->offset, 64u);
  EXPECT_EQ((g.find_tensor("a")->data - b.data()) % 64, 0);
}

TEST(GgufParse, NoTensorsNoMetadata) {
  GgufFile g = parse(GgufBuilder().build());
  EXPECT_TRUE(g.metadata().empty());
  EXPECT_TRUE(g.tensors().empty());
}

TEST(GgufParse, Getters) {
  GgufFile g = parse(small_valid()
                         .kv("general.big", GgufValueType::UINT64, uint64_t{1} << 40)
                         .kv("general.d", GgufValueType::FLOAT64, 0.25)
                         .kv("general.i16", GgufValueType::INT16, int16_t{-300})
                         .build());
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_int("llama.block_count"), 30);
  EXPECT_EQ(g.get_int("general.neg"), -5);
  EXPECT_EQ(g.get_int("general.i16"), -300);
  EXPECT_EQ(g.get_int("general.big"), int64_t{1} << 40);
  EXPECT_EQ(g.get_float("general.eps"), static_cast<double>(1e-5f));
  EXPECT_EQ(g.get_float("general.d"), 0.25);
  EXPECT_EQ(g.get_float("llama.block_count"), 30.0);  // integers are accepted as numbers
  EXPECT_TRUE(g.get_bool("general.flag"));
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "bc", ""}));

  EXPECT_EQ(g.get_string_or("nope", "x"), "x");
  EXPECT_EQ(g.get_int_or("nope", 7), 7);
  EXPECT_EQ(g.get_int_or("llama.block_count", 7), 30);
  EXPECT_EQ(g.get_float_or("nope", 1.5), 1.5);
  EXPECT_FALSE(g.get_bool_or("nope", false));
  EXPECT_EQ(g.find("nope"), nullptr);
  ASSERT_NE(g.find("general.neg"), nullptr);
  EXPECT_EQ(g.find("general.neg")->type, GgufValueType::INT8);

  auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const ModelFileError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of([&] { g.get_string("nope"); }).find("missing metadata key 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.get_int("general.architecture"); })
                .find("'general.architecture' should be an integer, is string"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.get_int("general.eps"); }).find("should be an integer, is float"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.get_string("llama.block_count"); }).find("should be a string"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.get_bool("llama.block_count"); }).find("should be a bool"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.get_float("general.architecture"); }).find("should be a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.get_string_array("general.architecture"); })
                .find("should be an array of strings"),
            std::string::npos);
  // The _or variants still reject a value of the wrong kind.
  EXPECT_NE(error_of([&] { g.get_int_or("general.architecture", 1); }).find("should be an integer"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Malformed files

TEST(GgufErrors, EveryTruncationThrows) {
  const Bytes full = small_valid().build();
  ASSERT_NO_THROW(parse(full));
  for (size_t n = 0; n < full.size(); ++n) {
    // A fresh allocation of exactly n bytes, so that an overread shows under ASan.
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string msg = parse_error(prefix);
    EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
                msg.find("past end of file") != std::string::npos)
        << "prefix of " << n << " bytes: " << msg;
  }
}

TEST(GgufErrors, BadMagic) {
  EXPECT_PARSE_ERROR(GgufBuilder().magic(0x46554746).build(), "bad magic (not a GGUF file)");
  EXPECT_PARSE_ERROR(Bytes({'G', 'G'}), "too short for the GGUF magic");
}

TEST(GgufErrors, UnsupportedVersion) {
  EXPECT_PARSE_ERROR(GgufBuilder().version(1).build(), "unsupported GGUF version 1");
  EXPECT_PARSE_ERROR(GgufBuilder().version(4).build(), "unsupported GGUF version 4");
  EXPECT_PARSE_ERROR(GgufBuilder().version(0x03000000).build(), "big-endian");
}

TEST(GgufErrors, TensorDataOutOfBounds) {
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("a", {8}, GgmlType::F32)
                         .tensor("far", {8}, GgmlType::F32, uint64_t{1} << 20).build(),
                     "tensor 'far' data (offset 1048576, 32 bytes) is out of bounds");
  // Offset near 2^64: offset + size must not wrap around.
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("a", {8}, GgmlType::F32)
                         .tensor("wrap", {8}, GgmlType::F32, ~uint64_t{31}).build(),
                     "tensor 'wrap' data");
  // Data cut short by one byte.
  Bytes b = GgufBuilder().tensor("a", {8}, GgmlType::F32).build();
  b.pop_back();
  EXPECT_PARSE_ERROR(b, "tensor 'a' data (offset 0, 32 bytes) is out of bounds");
}

TEST(GgufErrors, UnknownTensorType) {
  EXPECT_PARSE_ERROR(GgufBuilder().tensor_raw("t", {32}, 99).build(), "tensor 't' has unknown type 99");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor_raw("t", {32}, 0xffffffffu).build(), "unknown type 4294967295");
}

TEST(GgufErrors, BadDims) {
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {}, GgmlType::F32).build(), "tensor 't' has 0 dimensions");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {1, 1, 1, 1, 1}, GgmlType::F32).build(),
                     "tensor 't' has 5 dimensions");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {4, 0}, GgmlType::F32).build(), "tensor 't' has an invalid shape");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {-4}, GgmlType::F32).build(), "invalid shape");
  // Each dimension fits, the product overflows int64.
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {int64_t{1} << 32, int64_t{1} << 32}, GgmlType::F32).build(),
                     "invalid shape");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {1 << 16, 1 << 16, 1 << 16, 1 << 16}, GgmlType::F32).build(),
                     "invalid shape");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {48}, GgmlType::Q4_0).build(),
                     "row of 48 is not a whole number of Q4_0 blocks");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("t", {128, 2}, GgmlType::Q4_K).build(),
                     "not a whole number of Q4_K blocks");
}

TEST(GgufErrors, Duplicates) {
  EXPECT_PARSE_ERROR(GgufBuilder().kv_str("a", "x").kv_str("a", "y").build(), "duplicate metadata key 'a'");
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("w", {8}, GgmlType::F32).tensor("w", {8}, GgmlType::F32).build(),
                     "duplicate tensor 'w'");
}

TEST(GgufErrors, Alignment) {
  EXPECT_PARSE_ERROR(GgufBuilder().tensor("w", {8}, GgmlType::F32, uint64_t{16}).build(),
                     "tensor 'w' offset is not aligned");
  EXPECT_PARSE_ERROR(GgufBuilder().alignment(0).build(), "general.alignment must be a power of two");
  EXPECT_PARSE_ERROR(GgufBuilder().alignment(48).build(), "general.alignment must be a power of two");
  EXPECT_PARSE_ERROR(GgufBuilder().alignment(1u << 17).build(), "general.alignment must be a power of two");
  EXPECT_PARSE_ERROR(GgufBuilder().kv_str("general.alignment", "32").build(),
                     "general.alignment must be a power of two");
  // A signed integer alignment is accepted.
  EXPECT_EQ(parse(GgufBuilder().kv("general.alignment", GgufValueType::INT32, int32_t{16}).build()).alignment(),
            16u);
}

TEST(GgufErrors, HugeCounts) {
  EXPECT_PARSE_ERROR(GgufBuilder().n_kv(uint64_t{1} << 62).build(), "metadata count 4611686018427387904 past end");
  EXPECT_PARSE_ERROR(GgufBuilder().n_tensors(~uint64_t{0}).build(), "tensor count");
  // A string length far past the end.
  Bytes s;
  put<uint64_t>(s, ~uint64_t{0});
  EXPECT_PARSE_ERROR(GgufBuilder().kv_raw("k", 8, s).build(), "file truncated: string needs");
  // A key length far past the end.
  Bytes b = GgufBuilder().n_kv(1).build();
  put<uint64_t>(b, uint64_t{1} << 60);
  b.resize(b.size() + 16);
  EXPECT_PARSE_ERROR(b, "metadata key needs 1152921504606846976 bytes");
  // Array counts past the end, for scalar, string and nested array elements.
  for (uint32_t elem : {0u, 4u, 12u, 8u, 9u}) {
    Bytes a;
    put<uint32_t>(a, elem);
    put<uint64_t>(a, uint64_t{1} << 61);
    a.resize(a.size() + 64);
    EXPECT_PARSE_ERROR(GgufBuilder().kv_raw("arr", 9, a).build(), "array count 2305843009213693952 past end");
  }
  // Tiny elements, but more in all than the parser keeps in memory.
  Bytes big;
  put<uint32_t>(big, 0u);  // uint8 elements
  put<uint64_t>(big, (uint64_t{1} << 23) + 1);
  big.resize(big.size() + (size_t{1} << 23) + 1);
  EXPECT_PARSE_ERROR(GgufBuilder().kv_raw("arr", 9, big).build(), "metadata arrays hold more than 8388608");
}

TEST(GgufErrors, BadMetadataValues) {
  EXPECT_PARSE_ERROR(GgufBuilder().kv_raw("k", 13, Bytes(8)).build(), "unknown metadata value type 13");
  Bytes a;
  put<uint32_t>(a, 77u);
  put<uint64_t>(a, 1);
  a.resize(a.size() + 8);
  EXPECT_PARSE_ERROR(GgufBuilder().kv_raw("k", 9, a).build(), "unknown array element type 77");
  EXPECT_PARSE_ERROR(GgufBuilder().kv("b", GgufValueType::BOOL, uint8_t{2}).build(), "bool value 2");
  // Arrays of arrays nested past the limit.
  Bytes nested;
  for (int d = 0; d < 6; ++d) {
    put<uint32_t>(nested, 9u);
    put<uint64_t>(nested, 1);
  }
  put<uint32_t>(nested, 0u);
  put<uint64_t>(nested, 0);
  EXPECT_PARSE_ERROR(GgufBuilder().kv_raw("k", 9, nested).build(), "arrays nested too deeply");
}

TEST(GgufErrors, OpenMissingAndEmptyFiles) {
  try {
    GgufFile::open("/nonexistent/dir/model.gguf");
    ADD_FAILURE() << "opened a missing file";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.gguf: cannot open"), std::string::npos);
  }
  const std::string path = ::testing::TempDir() + "jarvis_empty.gguf";
  { std::ofstream(path, std::ios::binary); }
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "opened an empty file";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace jarvis
