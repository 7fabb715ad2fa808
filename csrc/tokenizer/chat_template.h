// Chat prompt formatting for the families we serve, chosen from the model's own Jinja template.
#pragma once

#include <string>
#include <vector>

namespace jarvis {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFormat { kChatML, kLlama2, kLlama3, kGemma, kZephyr };

// Recognises the family from the template source the model ships (GGUF tokenizer.chat_template
// or tokenizer_config.json). Throws jarvis::Error when it matches none (names what it saw).
ChatFormat detect_chat_format(const std::string& jinja_source);
const char* chat_format_name(ChatFormat format);

// Renders messages the way the model's Jinja template does (byte for byte), optionally ending
// with the assistant turn header so generation continues as the assistant.
// `default_system` is what the template inserts when no system message is given (ChatML in
// SmolLM2 does); it is read from the template source by detect-time helpers.
std::string apply_chat_template(const std::string& jinja_source, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token);

}  // namespace jarvis
