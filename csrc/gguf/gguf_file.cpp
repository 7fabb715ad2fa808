#include "csrc/gguf/gguf_file.h"

#include <cstring>
#include <limits>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;                   // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 4;
// Each parsed array element costs ~100 bytes of memory however small it is in the file, so a
// crafted file could make parsing allocate 100x its size. Real vocabularies (tokens, scores, types,
// merges) total under 2M elements; this cap keeps the worst case under a gigabyte.
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 23;

// Sequential reader over an untrusted buffer: every read checks the bytes left first.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFileError(name_, "invalid GGUF: " + what + " (at byte " + std::to_string(pos_) + ")");
  }

  template <typename T>
  T read() {
    need(sizeof(T), "value");
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>();
    need(len, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  void need(uint64_t n, const char* what) const {
    if (n > size_ - pos_) {
      fail(std::string("file truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
           std::to_string(size_ - pos_) + " left");
    }
  }

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  // Array elements parsed so far, over all metadata (see kMaxArrayElements).
  void count_array_elements(uint64_t n) {
    if (n > kMaxArrayElements - array_elements_) {
      fail("metadata arrays hold more than " + std::to_string(kMaxArrayElements) + " elements");
    }
    array_elements_ += n;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t array_elements_ = 0;
  const std::string& name_;
};

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING: return 8;  // at least the length prefix
    case GgufValueType::ARRAY: return 12;  // at least type + count
  }
  return 0;
}

GgufValue read_value(Cursor& cur, uint32_t raw_type, int depth) {
  if (raw_type > static_cast<uint32_t>(GgufValueType::FLOAT64)) {
    cur.fail("unknown metadata value type " + std::to_string(raw_type));
  }
  GgufValue v;
  v.type = static_cast<GgufValueType>(raw_type);
  switch (v.type) {
    case GgufValueType::UINT8: v.u = cur.read<uint8_t>(); break;
    case GgufValueType::UINT16: v.u = cur.read<uint16_t>(); break;
    case GgufValueType::UINT32: v.u = cur.read<uint32_t>(); break;
    case GgufValueType::UINT64: v.u = cur.read<uint64_t>(); break;
    case GgufValueType::INT8: v.i = cur.read<int8_t>(); break;
    case GgufValueType::INT16: v.i = cur.read<int16_t>(); break;
    case GgufValueType::INT32: v.i = cur.read<int32_t>(); break;
    case GgufValueType::INT64: v.i = cur.read<int64_t>(); break;
    case GgufValueType::FLOAT32: v.f = cur.read<float>(); break;
    case GgufValueType::FLOAT64: v.f = cur.read<double>(); break;
    case GgufValueType::BOOL: {
      uint8_t b = cur.read<uint8_t>();
      if (b > 1) cur.fail("bool value " + std::to_string(b));
      v.u = b;
      break;
    }
    case GgufValueType::STRING: v.str = cur.read_string("string"); break;
    case GgufValueType::ARRAY: {
      if (depth >= kMaxArrayNesting) cur.fail("arrays nested too deeply");
      uint32_t elem_type = cur.read<uint32_t>();
      uint64_t count = cur.read<uint64_t>();
      if (elem_type > static_cast<uint32_t>(GgufValueType::FLOAT64)) {
        cur.fail("unknown array element type " + std::to_string(elem_type));
      }
      v.array_type = static_cast<GgufValueType>(elem_type);
      // Each element takes at least scalar_size bytes, so the file size bounds the count.
      if (count > cur.left() / scalar_size(v.array_type)) {
        cur.fail("array count " + std::to_string(count) + " past end of file");
      }
      cur.count_array_elements(count);
      v.array.reserve(static_cast<size_t>(count));
      for (uint64_t k = 0; k < count; ++k) v.array.push_back(read_value(cur, elem_type, depth + 1));
      break;
    }
  }
  if (v.type == GgufValueType::UINT8 || v.type == GgufValueType::UINT16 ||
      v.type == GgufValueType::UINT32 || v.type == GgufValueType::UINT64 ||
      v.type == GgufValueType::BOOL) {
    v.i = v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
              ? std::numeric_limits<int64_t>::max()
              : static_cast<int64_t>(v.u);
    v.f = static_cast<double>(v.u);
  } else if (v.is_integer()) {
    v.f = static_cast<double>(v.i);
  }
  return v;
}

const char* kind_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::FLOAT32: case GgufValueType::FLOAT64: return "float";
    default: return "integer";
  }
}

}  // namespace

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::UINT16:
    case GgufValueType::INT16: case GgufValueType::UINT32: case GgufValueType::INT32:
    case GgufValueType::UINT64: case GgufValueType::INT64: return true;
    default: return false;
  }
}

int64_t GgufTensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

GgufFile GgufFile::open(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  GgufFile g = parse(file->data(), file->size(), path);
  g.file_ = std::move(file);
  return g;
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile g;
  g.name_ = name;
  Cursor cur(data, size, g.name_);

  if (size < 4) cur.fail("file truncated: too short for the GGUF magic");
  uint32_t magic = cur.read<uint32_t>();
  if (magic != kGgufMagic) cur.fail("bad magic (not a GGUF file)");
  g.version_ = cur.read<uint32_t>();
  if (g.version_ == 0x02000000 || g.version_ == 0x03000000) {
    cur.fail("big-endian GGUF files are not supported");
  }
  if (g.version_ != 2 && g.version_ != 3) {
    cur.fail("unsupported GGUF version " + std::to_string(g.version_) + " (2 and 3 are)");
  }
  uint64_t n_tensors = cur.read<uint64_t>();
  uint64_t n_kv = cur.read<uint64_t>();
  // Each key/value takes at least 8+4 bytes, each tensor info at least 8+4+4+8.
  if (n_kv > cur.left() / 12) cur.fail("metadata count " + std::to_string(n_kv) + " past end of file");
  if (n_tensors > cur.left() / 24) cur.fail("tensor count " + std::to_string(n_tensors) + " past end of file");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = cur.read_string("metadata key");
    uint32_t type = cur.read<uint32_t>();
    GgufValue value = read_value(cur, type, 0);
    if (!g.metadata_.emplace(key, std::move(value)).second) cur.fail("duplicate metadata key '" + key + "'");
  }

  if (const GgufValue* a = g.find("general.alignment")) {
    // v.i holds signed and unsigned integers alike (the spec says uint32; some writers differ).
    if (!a->is_integer() || a->i <= 0 || a->i > 65536 || (a->i & (a->i - 1)) != 0) {
      cur.fail("general.alignment must be a power of two up to 65536");
    }
    g.alignment_ = static_cast<size_t>(a->i);
  }

  g.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensorInfo info;
    info.name = cur.read_string("tensor name");
    uint32_t n_dims = cur.read<uint32_t>();
    if (n_dims == 0 || n_dims > kMaxDims) {
      cur.fail("tensor '" + info.name + "' has " + std::to_string(n_dims) + " dimensions");
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      int64_t dim = cur.read<int64_t>();
      if (dim <= 0 || dim > (int64_t{1} << 40) || elements > (int64_t{1} << 40) / dim) {
        cur.fail("tensor '" + info.name + "' has an invalid shape");
      }
      elements *= dim;
      info.dims.push_back(dim);
    }
    uint32_t raw_type = cur.read<uint32_t>();
    const GgmlTypeTraits* traits = ggml_type_traits(raw_type);
    if (!traits) cur.fail("tensor '" + info.name + "' has unknown type " + std::to_string(raw_type));
    info.type = static_cast<GgmlType>(raw_type);
    if (info.dims[0] % traits->block_elems != 0) {
      cur.fail("tensor '" + info.name + "' row of " + std::to_string(info.dims[0]) +
               " is not a whole number of " + traits->name + " blocks");
    }
    info.nbytes = static_cast<size_t>(elements / traits->block_elems) * traits->block_bytes;
    info.offset = cur.read<uint64_t>();
    if (info.offset % g.alignment_ != 0) cur.fail("tensor '" + info.name + "' offset is not aligned");
    if (!g.tensor_index_.emplace(info.name, g.tensors_.size()).second) {
      cur.fail("duplicate tensor '" + info.name + "'");
    }
    g.tensors_.push_back(std::move(info));
  }

  size_t data_start = (cur.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  if (n_tensors > 0 && data_start > size) cur.fail("file truncated before the tensor data");
  for (GgufTensorInfo& info : g.tensors_) {
    uint64_t avail = size - data_start;
    if (info.offset > avail || info.nbytes > avail - info.offset) {
      throw ModelFileError(name, "invalid GGUF: tensor '" + info.name + "' data (offset " +
                                     std::to_string(info.offset) + ", " + std::to_string(info.nbytes) +
                                     " bytes) is out of bounds of the file (truncated?)");
    }
    info.data = data + data_start + info.offset;
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
const GgufValue& require(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.find(key);
  if (!v) throw ModelFileError(g.path(), "missing metadata key '" + key + "'");
  return *v;
}
[[noreturn]] void wrong_kind(const GgufFile& g, const std::string& key, const char* want,
                             const GgufValue& v) {
  throw ModelFileError(g.path(), "metadata key '" + key + "' should be " + want + ", is " +
                                     kind_name(v.type));
}
}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::STRING) wrong_kind(*this, key, "a string", v);
  return v.str;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer()) wrong_kind(*this, key, "an integer", v);
  return v.i;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer() && !v.is_float()) wrong_kind(*this, key, "a number", v);
  return v.f;
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::BOOL) wrong_kind(*this, key, "a bool", v);
  return v.u != 0;
}

std::string GgufFile::get_string_or(const std::string& key, const std::string& fallback) const {
  return find(key) ? get_string(key) : fallback;
}
int64_t GgufFile::get_int_or(const std::string& key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}
double GgufFile::get_float_or(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool_or(const std::string& key, bool fallback) const {
  return find(key) ? get_bool(key) : fallback;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::ARRAY || v.array_type != GgufValueType::STRING) {
    throw ModelFileError(path(), "metadata key '" + key + "' should be an array of strings");
  }
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const GgufValue& e : v.array) out.push_back(e.str);
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace jarvis
