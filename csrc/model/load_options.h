// How a model is loaded, beyond which shard: what every tool's `--weights` flag selects
// (tools/model_flags.h declares it) and every rank of a ring is started with.
#pragma once

#include <string>

namespace jarvis {

// kNative: linear layers stay in the block type the file stores them in (the default: a rank holds
// about its share of the file). kF32: dequantized to float32 at load, the reference path.
enum class WeightFormat { kNative, kF32 };

struct LoadOptions {
  WeightFormat weights = WeightFormat::kNative;
};

const char* weight_format_name(WeightFormat f);  // "native" / "f32": the flag's values
// "native" / "f32" -> the format; InvalidArgument naming the text otherwise.
WeightFormat parse_weight_format(const std::string& text);

}  // namespace jarvis
