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
// or tokenizer_config.json) by its markers: <|im_start|> ChatML, <|start_header_id|> Llama 3,
// <start_of_turn> Gemma, [INST] with <<SYS>> Llama 2, <|user|> with <|assistant|> Zephyr.
// Throws jarvis::Error when it matches none, or a variant we cannot render exactly (Llama 3.1's
// date header, Mistral's [INST] without <<SYS>>).
ChatFormat detect_chat_format(const std::string& jinja_source);
const char* chat_format_name(ChatFormat format);

// The family's official template for a model file that ships none, chosen by its architecture
// (GGUF general.architecture): Gemma's for "gemma" and "gemma2", Gemma 3's for "gemma3" (the
// llama.cpp converter leaves it out of Gemma 3 GGUF files). "" for any other architecture.
std::string default_chat_template(const std::string& architecture);

// Renders messages the way the model's Jinja template does (byte for byte, as transformers renders
// it: jinja2 with trim_blocks and lstrip_blocks), optionally ending with the assistant turn header
// so generation continues as the assistant. Details read from the source: ChatML's default system
// turn (SmolLM2, Qwen2 insert one when the first message is not a system message), Gemma's
// handling of a system message (merged into the first user turn, or an error).
// Throws InvalidArgument where the template raises (roles not alternating, a system message
// Gemma rejects) and for an empty message list.
std::string apply_chat_template(const std::string& jinja_source, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token);

}  // namespace jarvis
