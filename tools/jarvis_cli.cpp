// jarvis-cli: generate text from a prompt (or one chat message) with a local model on the CPU or
// one CUDA GPU (--device cuda:N), streaming tokens to stdout and printing speed figures to stderr.
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/tokenizer/chat_template.h"
#include "csrc/tokenizer/tokenizer.h"
#include "csrc/util/error.h"
#include "engine/generator.h"
#include "kernels/cpu/thread_pool.h"
#include "tools/model_flags.h"

namespace {

constexpr int kPageSize = 16;

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

struct Options {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string prompt, chat, system;
  int max_tokens = 256;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int ctx = 4096;
  int chunk = 512;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  jarvis::SamplingParams sampling;
  std::optional<uint64_t> seed;
  std::string device = "cpu";
  std::string gpu_dtype = "f16";
  double gpu_memory_fraction = 0.9;
  std::string cuda_graphs = "on";
  jarvis::LoadOptions load;
};

std::string token_text(const jarvis::Tokenizer& tok, int32_t id) {
  const auto& tokens = tok.data().tokens;
  return id >= 0 && id < static_cast<int32_t>(tokens.size()) ? tokens[id] : std::string();
}

// Prompt token ids: raw text, or one user message through the model's own chat template.
std::vector<int32_t> build_prompt(const Options& o, const jarvis::Model& model, const jarvis::Tokenizer& tok) {
  if (o.chat.empty()) return tok.encode(o.prompt, tok.data().add_bos, /*parse_special=*/true);
  const std::string& tmpl = model.tokenizer_data().chat_template;
  if (tmpl.empty()) throw jarvis::InvalidArgument("--chat: the model ships no chat template; use -p");
  std::vector<jarvis::ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.chat});
  const std::string bos = token_text(tok, tok.bos_id());
  const std::string text = jarvis::apply_chat_template(tmpl, messages, /*add_generation_prompt=*/true, bos,
                                                       token_text(tok, tok.eos_id()));
  // Templates that write the BOS token themselves (Llama 3, Gemma) must not get a second one.
  const bool has_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
  return tok.encode(text, tok.data().add_bos && !has_bos, /*parse_special=*/true);
}

int run(const Options& o) {
  if (o.prompt.empty() == o.chat.empty()) throw jarvis::InvalidArgument("give exactly one of -p/--prompt and --chat");
  if (o.ctx < 1) throw jarvis::InvalidArgument("--ctx must be >= 1");
  if (o.threads < 1) throw jarvis::InvalidArgument("--threads must be >= 1");
  o.sampling.validate();  // before the (slow) model load
  const jarvis::DeviceSpec device = jarvis::parse_device(o.device);
  const jarvis::GpuDType gpu_dtype = jarvis::parse_gpu_dtype(o.gpu_dtype);
  if (device.is_cuda()) jarvis::check_cuda_device(device.index);  // before the (slow) model load

  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<jarvis::Model> model = jarvis::load_model(o.model, jarvis::ShardSpec::full(), o.load);
  std::unique_ptr<jarvis::Tokenizer> tok = jarvis::Tokenizer::create(model->tokenizer_data());
  const jarvis::ModelConfig& c = model->config();
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "model: %s (%s, %d layers, hidden %d, vocab %d), loaded in %.2f s\n",
               c.model_name.empty() ? o.model.c_str() : c.model_name.c_str(), c.arch_name.c_str(), c.n_layers,
               c.hidden, c.vocab_size, load_s);

  const int ctx = c.context_length > 0 ? std::min(o.ctx, c.context_length) : o.ctx;
  jarvis::cpu::ThreadPool pool(o.threads);
  const int num_blocks = (ctx + kPageSize - 1) / kPageSize;
  std::unique_ptr<jarvis::ShardForward> gpu;
  std::unique_ptr<jarvis::Generator> generator;
  if (device.is_cuda()) {
    jarvis::CudaShardOptions co;
    co.device = device.index;
    co.dtype = gpu_dtype;
    co.gpu_memory_fraction = o.gpu_memory_fraction;
    co.page_size = kPageSize;
    co.num_blocks = num_blocks;
    co.max_step_tokens = std::max(1, std::min(o.chunk, ctx));
    co.cuda_graphs = o.cuda_graphs == "on";
    const auto t1 = std::chrono::steady_clock::now();
    gpu = jarvis::make_cuda_shard(*model, co);
    std::fprintf(stderr, "device: %s, uploaded in %.2f s\n", gpu->device_name().c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
    generator = std::make_unique<jarvis::Generator>(*gpu, *tok);
  } else {
    generator = std::make_unique<jarvis::Generator>(*model, *tok, pool, num_blocks, kPageSize);
  }
  jarvis::Generator& gen = *generator;

  const std::vector<int32_t> prompt = build_prompt(o, *model, *tok);
  jarvis::GenerationOptions g;
  g.sampling = o.sampling;
  g.sampling.seed = o.seed;
  g.max_tokens = o.max_tokens;
  g.stop = o.stop;
  g.prefill_chunk = o.chunk;
  g.ignore_eos = o.ignore_eos;

  const jarvis::GenerationResult r = gen.generate(prompt, g, [](const jarvis::StreamEvent& e) {
    std::fwrite(e.text.data(), 1, e.text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);

  const jarvis::GenerationStats& s = r.stats;
  std::fprintf(stderr, "prompt: %d tokens, %.2f tokens/s\n", s.prompt_tokens, s.prompt_tokens_per_second());
  std::fprintf(stderr, "generated: %d tokens, %.2f tokens/s\n", s.generated_tokens, s.decode_tokens_per_second());
  std::fprintf(stderr, "time to first token: %.3f s\n", s.ttft_seconds);
  std::fprintf(stderr, "finish: %s\n", jarvis::openai_finish_reason(r.finish));
  std::fprintf(stderr, "peak RSS: %.1f MiB\n", peak_rss_mib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  jarvis::SamplingParams& sp = o.sampling;
  uint64_t seed = 0;
  CLI::App app{"Generate text with a local model (GGUF file or HF directory) on the CPU or a CUDA GPU"};
  app.add_option("-m,--model", o.model, "GGUF file or HF model directory")->capture_default_str();
  auto* prompt_opt = app.add_option("-p,--prompt", o.prompt, "raw text to continue");
  auto* chat_opt = app.add_option("--chat", o.chat, "one user message, formatted with the model's chat template");
  prompt_opt->excludes(chat_opt);
  app.add_option("--system", o.system, "system message for --chat")->needs(chat_opt);
  app.add_option("-n,--max-tokens", o.max_tokens, "most tokens to generate")->capture_default_str();
  app.add_option("--temperature", sp.temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-k", sp.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str();
  app.add_option("--top-p", sp.top_p, "nucleus sampling mass")->capture_default_str();
  app.add_option("--min-p", sp.min_p, "drop tokens below this fraction of the best")->capture_default_str();
  app.add_option("--repeat-penalty", sp.repetition_penalty, "repetition penalty (1 = off)")->capture_default_str();
  app.add_option("--presence-penalty", sp.presence_penalty, "OpenAI presence penalty")->capture_default_str();
  app.add_option("--frequency-penalty", sp.frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  auto* seed_opt = app.add_option("--seed", seed, "random seed (default: random)");
  app.add_option("--stop", o.stop, "stop string (repeatable)");
  app.add_flag("--ignore-eos", o.ignore_eos, "keep generating past end-of-generation tokens");
  app.add_option("-t,--threads", o.threads, "CPU threads")->capture_default_str();
  jarvis::tools::add_load_flags(app, o.load);
  app.add_option("--ctx", o.ctx, "context size in tokens (KV cache size; capped by the model)")->capture_default_str();
  app.add_option("--chunk", o.chunk, "prefill chunk size in tokens")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--gpu-dtype", o.gpu_dtype, "weights and activations on the GPU: f16, bf16 or f32 (debugging)")
      ->capture_default_str();
  app.add_option("--gpu-memory-fraction", o.gpu_memory_fraction,
                 "most of the GPU's free memory (after weights) the KV cache may take")
      ->capture_default_str();
  app.add_option("--cuda-graphs", o.cuda_graphs, "decode steps replay CUDA graphs: on or off")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  if (seed_opt->count() > 0) o.seed = seed;

  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "jarvis-cli: error: %s\n", e.what());
    return 1;
  }
}
