// libFuzzer target: GgufFile::parse on arbitrary bytes must either succeed or throw
// ModelFileError; tensors it accepts must be readable, so the first row of each supported one is
// dequantized (ASan then catches any read past the buffer the parser vouched for).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "csrc/gguf/gguf_file.h"
#include "csrc/util/error.h"
#include "kernels/cpu/dequant.h"

namespace {

void exercise_metadata(const jarvis::GgufFile& g) {
  for (const auto& [key, value] : g.metadata()) {
    // Every getter either returns or throws ModelFileError, whatever the value's kind.
    try { (void)g.get_string(key); } catch (const jarvis::ModelFileError&) {}
    try { (void)g.get_int(key); } catch (const jarvis::ModelFileError&) {}
    try { (void)g.get_float(key); } catch (const jarvis::ModelFileError&) {}
    try { (void)g.get_bool(key); } catch (const jarvis::ModelFileError&) {}
    try { (void)g.get_string_array(key); } catch (const jarvis::ModelFileError&) {}
    (void)value;
  }
}

void exercise_tensors(const jarvis::GgufFile& g) {
  std::vector<float> row;
  for (const jarvis::GgufTensorInfo& t : g.tensors()) {
    if (g.find_tensor(t.name) == nullptr) __builtin_trap();
    const jarvis::GgmlTypeTraits* traits = jarvis::ggml_type_traits(static_cast<uint32_t>(t.type));
    if (!traits || !traits->supported) continue;
    const int64_t n = t.dims[0];
    const size_t row_bytes = static_cast<size_t>(n / traits->block_elems) * traits->block_bytes;
    if (row_bytes > t.nbytes) __builtin_trap();  // the parser sized the tensor wrongly
    // The row lies inside the input, so n is bounded by the input size (no huge allocation).
    row.resize(static_cast<size_t>(n));
    if (!jarvis::cpu::dequantize_row(t.type, t.data, row.data(), n)) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    jarvis::GgufFile g = jarvis::GgufFile::parse(data, size, "fuzz.gguf");
    exercise_metadata(g);
    exercise_tensors(g);
  } catch (const jarvis::ModelFileError&) {
    // The expected outcome for malformed input; any other exception escapes and is a finding.
  }
  return 0;
}
