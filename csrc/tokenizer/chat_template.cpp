// Each family's official template rendered by hand. The Jinja sources are only inspected for the
// family markers and the few details that vary between models of one family.
#include "csrc/tokenizer/chat_template.h"

#include "csrc/tokenizer/unicode.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

std::string strip(const std::string& s) { return std::string(unicode::python_strip(s)); }

// The Jinja string literal whose opening quote is at s[quote]: unescaped value and the position
// after the closing quote; npos when it does not close.
size_t read_literal(const std::string& s, size_t quote, std::string* value) {
  char q = s[quote];
  value->clear();
  for (size_t i = quote + 1; i < s.size(); ++i) {
    char c = s[i];
    if (c == q) return i + 1;
    if (c == '\\' && i + 1 < s.size()) {
      char e = s[++i];
      switch (e) {
        case 'n': value->push_back('\n'); break;
        case 't': value->push_back('\t'); break;
        case 'r': value->push_back('\r'); break;
        default: value->push_back(e); break;  // \\ \' \" and anything else taken literally
      }
      continue;
    }
    value->push_back(c);
  }
  return std::string::npos;
}

// ChatML templates that insert a system turn when the conversation has none carry it as one whole
// literal, '<|im_start|>system\n...<|im_end|>\n' (not followed by `+`, which would make it the
// prefix of the user's system message).
std::string chatml_default_system(const std::string& src) {
  static const std::string kHead = "<|im_start|>system";
  for (size_t at = src.find(kHead); at != std::string::npos; at = src.find(kHead, at + 1)) {
    if (at == 0 || (src[at - 1] != '\'' && src[at - 1] != '"')) continue;
    std::string value;
    size_t end = read_literal(src, at - 1, &value);
    if (end == std::string::npos) continue;
    size_t next = src.find_first_not_of(" \t\r\n", end);
    if (next != std::string::npos && src[next] == '+') continue;
    static const std::string kTail = "<|im_end|>\n";
    if (value.size() > kHead.size() + 1 + kTail.size() && value.compare(value.size() - kTail.size(), kTail.size(), kTail) == 0) {
      return value;
    }
  }
  return {};
}

// Templates that start with "{{ bos_token }}" (any spacing and whitespace control).
bool starts_with_bos(const std::string& src) {
  size_t open = src.find_first_not_of(" \t\r\n");
  if (open == std::string::npos || src.compare(open, 2, "{{") != 0) return false;
  size_t close = src.find("}}", open);
  if (close == std::string::npos) return false;
  std::string inner = src.substr(open + 2, close - open - 2);
  size_t a = inner.find_first_not_of(" -+");
  size_t b = inner.find_last_not_of(" -+");
  return a != std::string::npos && inner.substr(a, b - a + 1) == "bos_token";
}

void check_alternating(const std::vector<ChatMessage>& messages, size_t first) {
  for (size_t i = first; i < messages.size(); ++i) {
    if ((messages[i].role == "user") != ((i - first) % 2 == 0)) {
      throw InvalidArgument("Conversation roles must alternate user/assistant/user/assistant/...");
    }
  }
}

std::string render_chatml(const std::string& src, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::string& bos_token) {
  std::string out;
  if (starts_with_bos(src)) {
    out += bos_token;
  } else if (contains(src, "bos_token")) {
    throw Error("unsupported ChatML template variant: uses bos_token other than at the start");
  }
  if (messages[0].role != "system") out += chatml_default_system(src);
  for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// meta-llama/Llama-2-*-chat: system folded into the first user turn inside <<SYS>>.
std::string render_llama2(const std::vector<ChatMessage>& messages, const std::string& bos_token,
                          const std::string& eos_token) {
  bool has_system = messages[0].role == "system";
  size_t first = has_system ? 1 : 0;
  check_alternating(messages, first);
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::string content = m.content;
    if (i == first && has_system) content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + content;
    if (m.role == "user") {
      out += bos_token + "[INST] " + strip(content) + " [/INST]";
    } else if (m.role == "assistant") {
      out += " " + strip(content) + " " + eos_token;
    }
  }
  return out;
}

// meta-llama/Meta-Llama-3-*-Instruct.
std::string render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::string& bos_token) {
  std::string out = bos_token;
  for (const ChatMessage& m : messages) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// google/gemma-*-it: assistant is "model"; a system message is merged into the first user turn
// (Gemma 3's template) or rejected (Gemma 1 and 2).
std::string render_gemma(const std::string& src, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         const std::string& bos_token) {
  bool merges_system = contains(src, "first_user_prefix");
  std::string prefix;
  size_t first = 0;
  if (messages[0].role == "system") {
    if (!merges_system) throw InvalidArgument("System role not supported");
    prefix = messages[0].content + "\n\n";
    first = 1;
  }
  check_alternating(messages, first);
  std::string out = bos_token;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const std::string role = m.role == "assistant" ? "model" : m.role;
    out += "<start_of_turn>" + role + "\n" + (i == first ? prefix : std::string()) + strip(m.content) + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

// HuggingFaceH4/zephyr-7b-beta, TinyLlama-1.1B-Chat: each turn ends with EOS and a newline.
std::string render_zephyr(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::string& eos_token) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || m.role == "system" || m.role == "assistant") {
      out += "<|" + m.role + "|>\n" + m.content + eos_token + "\n";
    }
    if (i + 1 == messages.size() && add_generation_prompt) out += "<|assistant|>\n";
  }
  return out;
}

// google/gemma-2b-it and gemma-2-2b-it: a system message is an error.
constexpr const char* kGemmaTemplate =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

// google/gemma-3-*-it (the model card's tokenizer_config.json): a system message opens the first
// user turn. Images become <start_of_image>; our messages are text, so that path never renders.
constexpr const char* kGemma3Template = R"jinja({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)jinja";

}  // namespace

std::string default_chat_template(const std::string& architecture) {
  if (architecture == "gemma" || architecture == "gemma2") return kGemmaTemplate;
  if (architecture == "gemma3") return kGemma3Template;
  return {};
}

ChatFormat detect_chat_format(const std::string& src) {
  if (contains(src, "<|im_start|>")) return ChatFormat::kChatML;
  if (contains(src, "<|start_header_id|>")) {
    if (contains(src, "Cutting Knowledge Date")) {
      throw Error("unsupported chat template: Llama 3.1+ (date/tools system header); only the Llama 3 template is supported");
    }
    return ChatFormat::kLlama3;
  }
  if (contains(src, "<start_of_turn>")) return ChatFormat::kGemma;
  if (contains(src, "[INST]")) {
    if (contains(src, "<<SYS>>")) return ChatFormat::kLlama2;
    throw Error("unsupported chat template: [INST] without <<SYS>> (Mistral style)");
  }
  if (contains(src, "<|user|>") && contains(src, "<|assistant|>")) return ChatFormat::kZephyr;
  throw Error("unrecognised chat template (none of <|im_start|>, <|start_header_id|>, <start_of_turn>, "
              "[INST]+<<SYS>>, <|user|>+<|assistant|>): " + src.substr(0, 160));
}

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatML: return "chatml";
    case ChatFormat::kLlama2: return "llama2";
    case ChatFormat::kLlama3: return "llama3";
    case ChatFormat::kGemma: return "gemma";
    case ChatFormat::kZephyr: return "zephyr";
  }
  return "unknown";
}

std::string apply_chat_template(const std::string& src, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token, const std::string& eos_token) {
  ChatFormat format = detect_chat_format(src);
  if (messages.empty()) throw InvalidArgument("a chat needs at least one message");
  switch (format) {
    case ChatFormat::kChatML: return render_chatml(src, messages, add_generation_prompt, bos_token);
    case ChatFormat::kLlama2: return render_llama2(messages, bos_token, eos_token);
    case ChatFormat::kLlama3: return render_llama3(messages, add_generation_prompt, bos_token);
    case ChatFormat::kGemma: return render_gemma(src, messages, add_generation_prompt, bos_token);
    case ChatFormat::kZephyr: return render_zephyr(messages, add_generation_prompt, eos_token);
  }
  throw Error("unreachable chat format");
}

}  // namespace jarvis
