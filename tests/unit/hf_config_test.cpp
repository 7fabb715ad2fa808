// config.json parsing; expected values are the numbers written in each JSON text.
#include "csrc/model/hf_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

const char* kLlama = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
  "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
  "num_key_value_heads": 3, "rms_norm_eps": 1e-05, "rope_theta": 100000, "vocab_size": 49152,
  "max_position_embeddings": 8192, "hidden_act": "silu", "tie_word_embeddings": true,
  "rope_scaling": null, "torch_dtype": "bfloat16"})";

TEST(HfConfig, Llama) {
  ModelConfig c = parse_hf_config(kLlama, "config.json");
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.arch_name, "llama");
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.ffn_hidden, 1536);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.activation, Activation::kSilu);
  EXPECT_FLOAT_EQ(c.embedding_scale, 1.0f);
}

TEST(HfConfig, Llama3RopeScaling) {
  ModelConfig c = parse_hf_config(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})", "c");
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_context, 8192);
  EXPECT_EQ(c.n_kv_heads, 4);  // absent: as many as the query heads
  EXPECT_FALSE(c.tied_embeddings);

  ModelConfig lin = parse_hf_config(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 4096,
    "rope_scaling": {"type": "linear", "factor": 2.0}})", "c");
  EXPECT_EQ(lin.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(lin.rope_scaling.factor, 2.0f);
}

TEST(HfConfig, Qwen2AndGemmaAndMistral) {
  ModelConfig q = parse_hf_config(R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": false,
    "tie_word_embeddings": true, "hidden_act": "silu"})", "c");
  EXPECT_EQ(q.arch, Arch::kQwen2);
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_EQ(q.head_dim, 64);
  EXPECT_EQ(q.context_length, 32768);

  ModelConfig g = parse_hf_config(R"({"architectures": ["GemmaForCausalLM"], "model_type": "gemma",
    "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18, "num_attention_heads": 8,
    "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 256000, "max_position_embeddings": 8192,
    "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh"})", "c");
  EXPECT_EQ(g.arch, Arch::kGemma);
  EXPECT_EQ(g.head_dim, 256);
  EXPECT_EQ(g.q_dim(), 2048);
  EXPECT_TRUE(g.tied_embeddings);  // GemmaConfig's default
  EXPECT_EQ(g.activation, Activation::kGeluTanh);
  EXPECT_FLOAT_EQ(g.embedding_scale, std::sqrt(2048.0f));

  ModelConfig m = parse_hf_config(R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 32768, "sliding_window": 4096,
    "head_dim": null})", "c");
  EXPECT_EQ(m.arch, Arch::kLlama);
  EXPECT_EQ(m.head_dim, 16);
  EXPECT_EQ(m.context_length, 4096);  // bounded by the attention window
}

void expect_error(const std::string& json, const std::string& needle) {
  try {
    parse_hf_config(json, "/m/config.json");
    ADD_FAILURE() << "accepted; expected an error mentioning '" << needle << "'";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/m/config.json"), std::string::npos) << e.what();
  }
}

TEST(HfConfig, Errors) {
  const std::string base = R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 512)";
  expect_error("{", "not valid JSON");
  expect_error("{" + base + "}", "model_type");
  expect_error(R"({"model_type": "gpt2", )" + base + "}", "model_type 'gpt2'");
  expect_error(R"({"model_type": "llama", "architectures": ["Qwen2ForCausalLM"], )" + base + "}", "Qwen2ForCausalLM");
  expect_error(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "vocab_size": 100, "max_position_embeddings": 512})", "num_attention_heads");
  expect_error(R"({"model_type": "llama", "hidden_size": "64", "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 512})", "hidden_size");
  expect_error(R"({"model_type": "llama", "num_key_value_heads": 3, )" + base + "}", "num_key_value_heads");
  expect_error(R"({"model_type": "llama", "hidden_act": "relu", )" + base + "}", "relu");
  expect_error(R"({"model_type": "llama", "rope_scaling": {"type": "yarn", "factor": 4}, )" + base + "}", "yarn");
  expect_error(R"({"model_type": "llama", "rope_scaling": {"type": "linear"}, )" + base + "}", "factor");
  expect_error(R"({"model_type": "llama", "mlp_bias": true, )" + base + "}", "mlp_bias");
}

}  // namespace
}  // namespace jarvis
