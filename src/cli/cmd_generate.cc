// qoq generate MODEL [--prompt TEXT] [--chat] [--system TEXT] [--max-tokens N] [--temperature T] [--top-k K]
//   [--top-p P] [--seed S] [--ctx N]: streams the continuation to stdout, timings to stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "qoq/engine.h"
#include "qoq/loader.h"
#include "qoq/model.h"
#include "qoq/tokenizer.h"

namespace qoq::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt, system;
  bool have_prompt = false, chat = false;
  int max_tokens = 256, ctx = 0, kv_bits = 0;
  bool fake_quant = false;
  SamplingParams sampling;
};

std::vector<int32_t> build_prompt(const Tokenizer& tok, const GenerateArgs& a) {
  if (a.chat) {
    std::vector<ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", a.prompt});
    const std::string text = tok.apply_chat_template(msgs);
    // Templates that spell out BOS themselves (Llama 3) must not get a second one.
    const bool has_bos = tok.bos_id() >= 0 && text.starts_with(tok.token_text(tok.bos_id()));
    return tok.encode(text, tok.adds_bos() && !has_bos);
  }
  if (!a.have_prompt || a.prompt.empty()) {
    QOQ_CHECK_INPUT(tok.bos_id() >= 0, "{}: no --prompt given and the tokenizer has no BOS token to start from",
                    a.model);
    return {tok.bos_id()};
  }
  return tok.encode(a.prompt, tok.adds_bos());
}

int run_generate(const GenerateArgs& a) {
  a.sampling.validate();  // before the (slow) load, so a bad flag fails at once
  QOQ_CHECK_INPUT(a.max_tokens >= 0, "invalid --max-tokens {}: must be >= 0", a.max_tokens);
  QOQ_CHECK_INPUT(a.ctx >= 0, "invalid --ctx {}: must be > 0", a.ctx);
  const auto t0 = std::chrono::steady_clock::now();
  OpenOptions oo;
  oo.kv_bits = a.kv_bits;
  oo.exec = a.fake_quant ? OpenOptions::Exec::FakeQuant : OpenOptions::Exec::Integer;
  const OpenedModel opened = open_model(a.model, oo);
  const Model& model = *opened.model;
  const auto tok = load_tokenizer(opened.tokenizer);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "loaded %s (%s, %d layers, hidden %d, vocab %d) in %.2f s\n", a.model.c_str(),
               opened.description.c_str(), model.config().num_layers, model.config().hidden_size,
               model.config().vocab_size, load_s);

  const int ctx = a.ctx > 0 ? a.ctx : model.config().max_position_embeddings;
  QOQ_CHECK_INPUT(ctx <= model.config().max_position_embeddings,
                  "--ctx {} exceeds the model's max_position_embeddings {}", ctx,
                  model.config().max_position_embeddings);
  const std::vector<int32_t> prompt = build_prompt(*tok, a);
  QOQ_CHECK_INPUT(int64_t(prompt.size()) <= ctx, "the prompt has {} tokens, more than the context of {} (--ctx)",
                  prompt.size(), ctx);
  KVCache cache = model.new_cache(ctx);

  GenerateOptions opts;
  opts.sampling = a.sampling;
  opts.max_tokens = a.max_tokens;
  opts.stop_ids = tok->stop_ids();
  for (int id : model.config().eos_token_ids)
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), id) == opts.stop_ids.end()) opts.stop_ids.push_back(id);

  StreamDecoder stream(*tok);
  const GenerateStats st = generate(model, cache, prompt, opts, [&](int32_t id) {
    const std::string piece = stream.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  const std::string rest = stream.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  std::fprintf(stderr, "prompt: %d tokens, prefill %.1f tokens/s (%.3f s)\n", st.prompt_tokens,
               st.prefill_seconds > 0 ? st.prompt_tokens / st.prefill_seconds : 0.0, st.prefill_seconds);
  std::fprintf(stderr, "generated: %d tokens (%s), decode %.1f tokens/s (%d steps, %.3f s)\n", st.generated_tokens,
               st.stopped ? "stop token" : (cache.size() >= cache.capacity() ? "context full" : "max tokens"),
               st.decode_seconds > 0 ? st.decode_steps / st.decode_seconds : 0.0, st.decode_steps, st.decode_seconds);
  return 0;
}

Register reg{
    {"generate", "Generate text from a prompt (greedy by default), streaming to stdout",
     [](CLI::App& sub) -> std::function<int()> {
       auto a = std::make_shared<GenerateArgs>();
       sub.add_option("model", a->model,
                      "Model: GGUF file, HF safetensors directory, llama2.c .bin or QoQ checkpoint directory")
           ->required();
       sub.add_option("--prompt,-p", a->prompt, "Prompt text (default: start from BOS alone)");
       sub.add_flag("--chat", a->chat, "Wrap the prompt in the model's chat template");
       sub.add_option("--system", a->system, "System message for --chat");
       sub.add_option("--max-tokens,-n", a->max_tokens, "New tokens at most")->capture_default_str();
       sub.add_option("--temperature,-t", a->sampling.temperature, "0 = greedy")->capture_default_str();
       sub.add_option("--top-k", a->sampling.top_k, "0 = no limit")->capture_default_str();
       sub.add_option("--top-p", a->sampling.top_p, "Nucleus mass in (0, 1]")->capture_default_str();
       sub.add_option("--seed", a->sampling.seed, "Sampling seed")->capture_default_str();
       sub.add_option("--ctx", a->ctx, "Context length (default: the model's max positions)");
       sub.add_option("--kv-bits", a->kv_bits, "KV cache bits 4, 8 or 16 (default: the checkpoint's; FP models 16)");
       sub.add_flag("--fake-quant", a->fake_quant,
                    "Run a QoQ checkpoint's linears in float (dequantized weights) instead of the integer path");
       return [a, &sub] {
         a->have_prompt = sub.count("--prompt") > 0;
         return run_generate(*a);
       };
     }}};

}  // namespace
}  // namespace qoq::cli
