// What a rank can learn about a model without loading its weights: the architecture (to plan the
// split and check memory) and a fingerprint (to prove at rendezvous that every rank has the same file).
#pragma once

#include <cstdint>
#include <string>

#include "csrc/model/config.h"

namespace jarvis {

// Hyper-parameters of a GGUF file or an HF directory (config.json), headers only.
// Throws ModelFileError like the loaders do.
ModelConfig read_model_config(const std::string& path);

enum class FingerprintMode {
  // SHA-256 over: the file size; the whole metadata region (GGUF: header, every key/value -- the
  // tokenizer included -- and every tensor's name, shape, type and offset; safetensors: its JSON
  // header; other files below 64 MiB: all of it); and 256 evenly spaced 4 KiB samples of the rest.
  // Two files that differ in layout, quantization, tokenizer or size cannot agree on the region;
  // two different checkpoints of one layout (a fine-tune) differ in nearly every weight, so every
  // sample would have to match by accident. What it misses is a deliberate edit of a few bytes
  // between samples, which a rendezvous check is not meant to defend against. Cost: the region
  // plus 1 MiB, read from the page cache or disk -- milliseconds for any model size.
  kSampled,
  kFull,  // SHA-256 of every byte: certain, but reads the whole file (seconds per GB)
};

// Hex SHA-256 fingerprint of a model file, or of an HF directory (its *.json and *.safetensors files,
// by sorted name, each fingerprinted as above together with its name). Throws ModelFileError.
std::string model_fingerprint(const std::string& path, FingerprintMode mode = FingerprintMode::kSampled);

}  // namespace jarvis
