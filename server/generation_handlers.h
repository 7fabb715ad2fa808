// POST /v1/completions and POST /v1/chat/completions: prompt building, submission to the engine,
// and the answer as one JSON body or as an SSE stream.
#pragma once

#include <string>

#include <httplib.h>

#include "server/api_context.h"

namespace jarvis::server {

void handle_completions(ApiContext& ctx, const std::string& body, httplib::Response& res);
void handle_chat_completions(ApiContext& ctx, const std::string& body, httplib::Response& res);

}  // namespace jarvis::server
