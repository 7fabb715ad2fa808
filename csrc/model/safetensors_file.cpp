#include "csrc/model/safetensors_file.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "csrc/util/error.h"
#include "kernels/cpu/dequant.h"

namespace jarvis {
namespace {

// The reference implementation refuses headers above 100 MB; a real header is a few hundred KB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr int64_t kMaxElements = int64_t{1} << 40;

// Bytes per element of the dtypes the format defines; 0 for a name it does not define.
size_t dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

}  // namespace

int64_t SafetensorsTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  SafetensorsFile f = parse(file->data(), file->size(), path);
  f.file_ = std::move(file);
  return f;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  auto fail = [&](const std::string& what) -> void {
    throw ModelFileError(name, "invalid safetensors file: " + what);
  };
  if (size < 8) fail("file truncated: " + std::to_string(size) + " bytes, too short for the header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);  // little-endian, as is every host we build for
  if (header_len > size - 8) {
    fail("header length " + std::to_string(header_len) + " past end of file (" + std::to_string(size) + " bytes)");
  }
  if (header_len > kMaxHeaderBytes) fail("header length " + std::to_string(header_len) + " exceeds 100 MB");
  const uint8_t* body = data + 8 + header_len;
  const size_t body_size = size - 8 - static_cast<size_t>(header_len);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, body);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail("header is not a JSON object");

  SafetensorsFile f;
  f.name_ = name;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "': ";
    if (!v.is_object()) fail(where + "entry is not an object");
    auto dtype = v.find("dtype");
    auto shape = v.find("shape");
    auto offsets = v.find("data_offsets");
    if (dtype == v.end() || !dtype->is_string()) fail(where + "missing string 'dtype'");
    if (shape == v.end() || !shape->is_array()) fail(where + "missing array 'shape'");
    if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2) fail(where + "missing 'data_offsets' [begin, end]");

    SafetensorsTensor t;
    t.name = key;
    t.dtype = dtype->get<std::string>();
    const size_t elem = dtype_size(t.dtype);
    if (elem == 0) fail(where + "unknown dtype '" + t.dtype + "'");
    int64_t elements = 1;
    for (const nlohmann::json& d : *shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(where + "shape entries must be integers >= 0");
      const int64_t dim = d.get<int64_t>();
      if (dim > 0 && elements > kMaxElements / dim) fail(where + "shape too large");
      elements *= dim;
      t.shape.push_back(dim);
    }
    for (const nlohmann::json& o : *offsets) {
      if (!o.is_number_unsigned()) fail(where + "data_offsets must be integers >= 0");
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>();
    const uint64_t end = (*offsets)[1].get<uint64_t>();
    if (begin > end || end > body_size) {
      fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] outside the " +
           std::to_string(body_size) + "-byte data section");
    }
    if (end - begin != static_cast<uint64_t>(elements) * elem) {
      fail(where + "holds " + std::to_string(end - begin) + " bytes, its shape and dtype need " +
           std::to_string(static_cast<uint64_t>(elements) * elem));
    }
    t.data = body + begin;
    t.nbytes = static_cast<size_t>(end - begin);
    f.index_[t.name] = f.tensors_.size();
    f.tensors_.push_back(std::move(t));
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::to_float(const SafetensorsTensor& tensor, float* dst) const {
  const int64_t n = tensor.num_elements();
  if (tensor.dtype == "F32") {
    std::memcpy(dst, tensor.data, static_cast<size_t>(n) * sizeof(float));
  } else if (tensor.dtype == "F16" || tensor.dtype == "BF16") {
    const bool half = tensor.dtype == "F16";
    for (int64_t i = 0; i < n; ++i) {
      uint16_t bits;  // the data section is not necessarily 2-byte aligned
      std::memcpy(&bits, tensor.data + 2 * i, 2);
      dst[i] = half ? cpu::fp16_to_fp32(bits) : cpu::bf16_to_fp32(bits);
    }
  } else {
    throw ModelFileError(name_, "tensor '" + tensor.name + "' has dtype " + tensor.dtype +
                                    "; only F32, F16 and BF16 are supported");
  }
}

}  // namespace jarvis
