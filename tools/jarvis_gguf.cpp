// jarvis-gguf: inspect a GGUF file and dump dequantized tensors (for reference tests and debugging).
//   jarvis-gguf info FILE
//   jarvis-gguf dequant FILE TENSOR OUT.f32   (raw little-endian float32, GGUF dims[0] fastest)
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/gguf/gguf_file.h"
#include "csrc/util/error.h"
#include "kernels/cpu/dequant.h"

namespace {

constexpr size_t kArrayPreview = 8;  // array elements printed before "..."

const char* value_type_name(jarvis::GgufValueType t) {
  using T = jarvis::GgufValueType;
  switch (t) {
    case T::UINT8: return "u8";
    case T::INT8: return "i8";
    case T::UINT16: return "u16";
    case T::INT16: return "i16";
    case T::UINT32: return "u32";
    case T::INT32: return "i32";
    case T::FLOAT32: return "f32";
    case T::BOOL: return "bool";
    case T::STRING: return "str";
    case T::ARRAY: return "arr";
    case T::UINT64: return "u64";
    case T::INT64: return "i64";
    case T::FLOAT64: return "f64";
  }
  return "?";
}

std::string format_value(const jarvis::GgufValue& v) {
  using T = jarvis::GgufValueType;
  std::ostringstream os;
  switch (v.type) {
    case T::STRING: {
      std::string s = v.str.size() > 80 ? v.str.substr(0, 80) + "..." : v.str;
      for (char& c : s) {
        if (c == '\n') c = ' ';
      }
      os << '"' << s << '"';
      break;
    }
    case T::ARRAY: {
      os << value_type_name(v.array_type) << "[" << v.array.size() << "] [";
      for (size_t k = 0; k < v.array.size() && k < kArrayPreview; ++k) {
        os << (k ? ", " : "") << format_value(v.array[k]);
      }
      os << (v.array.size() > kArrayPreview ? ", ...]" : "]");
      break;
    }
    case T::BOOL: os << (v.u ? "true" : "false"); break;
    case T::FLOAT32: case T::FLOAT64: os << v.f; break;
    case T::UINT8: case T::UINT16: case T::UINT32: case T::UINT64: os << v.u; break;
    default: os << v.i; break;
  }
  return os.str();
}

void print_info(const jarvis::GgufFile& g) {
  std::cout << "version: " << g.version() << "\nalignment: " << g.alignment() << "\nmetadata: "
            << g.metadata().size() << "\n";
  for (const auto& [key, value] : g.metadata()) {
    std::cout << "  " << key << " (" << value_type_name(value.type) << ") = " << format_value(value)
              << "\n";
  }
  std::cout << "tensors: " << g.tensors().size() << "\n";
  for (const jarvis::GgufTensorInfo& t : g.tensors()) {
    const jarvis::GgmlTypeTraits* traits = jarvis::ggml_type_traits(static_cast<uint32_t>(t.type));
    std::cout << "  " << t.name << " " << (traits ? traits->name : "?") << " [";
    for (size_t d = 0; d < t.dims.size(); ++d) std::cout << (d ? ", " : "") << t.dims[d];
    std::cout << "]\n";
  }
}

void dump_tensor(const jarvis::GgufFile& g, const std::string& name, const std::string& out_path) {
  const jarvis::GgufTensorInfo* t = g.find_tensor(name);
  if (!t) throw jarvis::ModelFileError(g.path(), "no tensor named '" + name + "'");
  const int64_t row = t->dims[0];
  const int64_t rows = t->num_elements() / row;
  const jarvis::GgmlTypeTraits* traits = jarvis::ggml_type_traits(static_cast<uint32_t>(t->type));
  const size_t row_bytes = static_cast<size_t>(row / traits->block_elems) * traits->block_bytes;
  std::ofstream out(out_path, std::ios::binary);
  if (!out) throw jarvis::Error("cannot write " + out_path);
  std::vector<float> buf(static_cast<size_t>(row));
  for (int64_t r = 0; r < rows; ++r) {
    if (!jarvis::cpu::dequantize_row(t->type, t->data + r * row_bytes, buf.data(), row)) {
      throw jarvis::ModelFileError(g.path(), "tensor '" + name + "' has type " + traits->name +
                                                 ", which cannot be dequantized");
    }
    out.write(reinterpret_cast<const char*>(buf.data()),
              static_cast<std::streamsize>(buf.size() * sizeof(float)));
  }
  if (!out.flush()) throw jarvis::Error("error writing " + out_path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Inspect GGUF files"};
  app.require_subcommand(1);
  std::string file, tensor, out;
  CLI::App* info = app.add_subcommand("info", "print header, metadata and tensor list");
  info->add_option("FILE", file, "GGUF file")->required();
  CLI::App* deq = app.add_subcommand("dequant", "write a tensor as raw float32");
  deq->add_option("FILE", file, "GGUF file")->required();
  deq->add_option("TENSOR", tensor, "tensor name")->required();
  deq->add_option("OUT", out, "output file (.f32)")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    jarvis::GgufFile g = jarvis::GgufFile::open(file);
    if (info->parsed()) print_info(g);
    if (deq->parsed()) dump_tensor(g, tensor, out);
  } catch (const jarvis::Error& e) {
    std::cerr << "jarvis-gguf: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
