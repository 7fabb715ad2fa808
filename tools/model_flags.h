// Model-loading flags every tool that loads weights shares (jarvis-cli, jarvis-serve, jarvis-worker,
// jarvis-logits, jarvis-plan): declared once here, so a value means the same on every rank.
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>

#include "csrc/model/load_options.h"

namespace jarvis::tools {

// --weights native|f32 into options.weights.
inline void add_load_flags(CLI::App& app, LoadOptions& options) {
  const std::map<std::string, WeightFormat> formats{{weight_format_name(WeightFormat::kNative), WeightFormat::kNative},
                                                    {weight_format_name(WeightFormat::kF32), WeightFormat::kF32}};
  app.add_option("--weights", options.weights,
                 "how linear-layer weights are held: native (the file's block types, default) or f32 "
                 "(dequantized at load: the reference path, about 4-7x the memory)")
      ->transform(CLI::CheckedTransformer(formats));
}

}  // namespace jarvis::tools
