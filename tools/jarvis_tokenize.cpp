// jarvis-tokenize: the tokenizer and chat templates over JSON lines (exact I/O for reference tests).
//   jarvis-tokenize --model PATH encode  < {"text": "...", "add_bos": false, "parse_special": true}
//                                          (or {"hex": "..."} for raw bytes)    > {"ids": [...]}
//   jarvis-tokenize --model PATH decode  < {"ids": [...], "skip_special": false}
//                                          > {"text": "...", "hex": "..."}
//   jarvis-tokenize --model PATH chat    < {"messages": [...], "add_generation_prompt": true}
//                                          > {"prompt": "...", "format": "chatml"}
//   jarvis-tokenize --model PATH info    > {"model": ..., "pre": ..., "vocab_size": ..., ...}
// PATH is a .gguf file or a Hugging Face directory with tokenizer.json. Decoded text that is not
// valid UTF-8 (a cut through a character) has each bad byte replaced by U+FFFD in "text"; "hex"
// always carries the exact bytes. A line that fails prints {"error": "..."} and the exit status
// is 1 at the end. A chat request may give "template", "bos_token", "eos_token" to override the
// model's own (for templates of families whose model files are not at hand).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "csrc/tokenizer/chat_template.h"
#include "csrc/tokenizer/tokenizer.h"
#include "csrc/tokenizer/tokenizer_loader.h"
#include "csrc/util/error.h"

namespace {

using nlohmann::json;

std::string to_hex(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  if (hex.size() % 2) throw jarvis::InvalidArgument("hex string of odd length");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json handle(const std::string& mode, const jarvis::Tokenizer& tok, const json& req) {
  if (mode == "encode") {
    std::string text = req.contains("hex") ? from_hex(req["hex"].get<std::string>()) : req.at("text").get<std::string>();
    return {{"ids", tok.encode(text, req.value("add_bos", false), req.value("parse_special", true))}};
  }
  if (mode == "decode") {
    std::string text = tok.decode(req.at("ids").get<std::vector<int32_t>>(), req.value("skip_special", false));
    return {{"text", text}, {"hex", to_hex(text)}};
  }
  // chat
  const jarvis::TokenizerData& d = tok.data();
  auto token_or_empty = [&](int32_t id) { return id >= 0 ? d.tokens[id] : std::string(); };
  std::string source = req.value("template", d.chat_template);
  std::vector<jarvis::ChatMessage> messages;
  for (const json& m : req.at("messages")) {
    messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  }
  std::string prompt = jarvis::apply_chat_template(source, messages, req.value("add_generation_prompt", true),
                                                   req.value("bos_token", token_or_empty(d.bos_id)),
                                                   req.value("eos_token", token_or_empty(d.eos_id)));
  return {{"prompt", prompt}, {"format", jarvis::chat_format_name(jarvis::detect_chat_format(source))}};
}

json info(const jarvis::Tokenizer& tok) {
  const jarvis::TokenizerData& d = tok.data();
  return {{"model", d.model},       {"pre", d.pre},         {"vocab_size", tok.vocab_size()},
          {"architecture", d.architecture},
          {"bos_id", d.bos_id},     {"eos_id", d.eos_id},   {"unk_id", d.unk_id},
          {"pad_id", d.pad_id},     {"eot_ids", d.eot_ids}, {"add_bos", d.add_bos},
          {"add_eos", d.add_eos},   {"add_space_prefix", d.add_space_prefix},
          {"chat_template", d.chat_template}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tokenize, detokenize and render chat prompts over JSON lines"};
  std::string model;
  std::string mode;
  app.add_option("--model", model, "GGUF file or Hugging Face directory with tokenizer.json")->required();
  app.add_option("mode", mode, "encode | decode | chat | info")
      ->required()
      ->check(CLI::IsMember({"encode", "decode", "chat", "info"}));
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<jarvis::Tokenizer> tok;
  try {
    tok = jarvis::Tokenizer::create(jarvis::load_tokenizer_data(model));
  } catch (const std::exception& e) {
    std::cerr << "jarvis-tokenize: " << e.what() << "\n";
    return 2;
  }
  if (mode == "info") {
    std::cout << dump(info(*tok)) << "\n";
    return 0;
  }
  bool failed = false;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json out;
    try {
      out = handle(mode, *tok, json::parse(line));
    } catch (const std::exception& e) {
      out = {{"error", e.what()}};
      failed = true;
    }
    std::cout << dump(out) << "\n";
  }
  std::cout.flush();
  return failed ? 1 : 0;
}
