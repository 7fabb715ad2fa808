// An SSE response (`data: {...}\n\n` chunks, then `data: [DONE]\n\n`) fed by a generation run.
// The run lives as long as the response: a client that disconnects ends the stream, and the
// run's destructor cancels what is still generating.
#pragma once

#include <memory>

#include <httplib.h>

#include "csrc/tokenizer/tokenizer.h"
#include "server/generation_run.h"
#include "server/openai_response.h"

namespace jarvis::server {

void start_stream(httplib::Response& res, std::unique_ptr<GenerationRun> run, const ResponseMeta& meta,
                  const OutputOptions& out, bool chat, bool include_usage, const Tokenizer& tok);

}  // namespace jarvis::server
