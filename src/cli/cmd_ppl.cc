// qoq ppl MODEL --data FILE [--ctx N] [--max-windows W] [--kv-bits B] [--fake-quant]: perplexity by the protocol of DESIGN.md §3.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/command.h"
#include "qoq/loader.h"
#include "qoq/model.h"
#include "qoq/tokenizer.h"
#include "runtime/perplexity.h"

namespace qoq::cli {
namespace {

struct PplArgs {
  std::string model, data;
  int ctx = 2048, max_windows = 0, kv_bits = 0;
  bool fake_quant = false;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QOQ_CHECK_INPUT(in.good(), "--data {}: cannot open the file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_ppl(const PplArgs& a) {
  QOQ_CHECK_INPUT(a.ctx >= 2, "invalid --ctx {}: must be at least 2", a.ctx);
  QOQ_CHECK_INPUT(a.max_windows >= 0, "invalid --max-windows {}: must be >= 0 (0 = all)", a.max_windows);
  const std::string raw = read_text(a.data);
  const auto t0 = std::chrono::steady_clock::now();
  OpenOptions oo;
  oo.kv_bits = a.kv_bits;
  oo.exec = a.fake_quant ? OpenOptions::Exec::FakeQuant : OpenOptions::Exec::Integer;
  const OpenedModel opened = open_model(a.model, oo);
  const Model& model = *opened.model;
  const auto tok = load_tokenizer(opened.tokenizer);
  QOQ_CHECK_INPUT(a.ctx <= model.config().max_position_embeddings,
                  "--ctx {} exceeds the model's max_position_embeddings {}", a.ctx,
                  model.config().max_position_embeddings);
  std::fprintf(stderr, "loaded %s (%s) in %.2f s\n", a.model.c_str(), opened.description.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = perplexity_tokens(*tok, raw);
  std::fprintf(stderr, "tokenized %s: %zu tokens in %.2f s\n", a.data.c_str(), tokens.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  PplOptions opts;
  opts.ctx = a.ctx;
  opts.max_windows = a.max_windows;
  const PplResult r = perplexity(model, tokens, opts);
  std::printf("ppl %.4f\n", r.ppl);
  std::printf("tokens scored %lld, windows %d of %lld (ctx %d, %lld tokens in the text)\n", (long long)r.tokens_scored,
              r.windows, (long long)(r.tokens_total / a.ctx), a.ctx, (long long)r.tokens_total);
  std::printf("%.1f tokens/s (%.1f s)\n", double(r.windows) * a.ctx / r.seconds, r.seconds);
  return 0;
}

Register reg{
    {"ppl", "Perplexity on a text file (WikiText-2 protocol: rows joined by blank lines, fixed windows)",
     [](CLI::App& sub) -> std::function<int()> {
       auto a = std::make_shared<PplArgs>();
       sub.add_option("model", a->model, "Model: GGUF file, HF safetensors directory, llama2.c .bin or QoQ checkpoint directory")
           ->required();
       sub.add_option("--data", a->data, "Text file, e.g. wikitext-2-raw/wiki.test.raw")->required();
       sub.add_option("--ctx", a->ctx, "Window length in tokens")->capture_default_str();
       sub.add_option("--max-windows", a->max_windows, "Score at most W windows (0 = all)")->capture_default_str();
       sub.add_option("--kv-bits", a->kv_bits, "KV cache bits 4, 8 or 16 (default: the checkpoint's; FP models 16)");
       sub.add_flag("--fake-quant", a->fake_quant,
                    "Run a QoQ checkpoint's linears in float (dequantized weights) instead of the integer path");
       return [a] { return run_ppl(*a); };
     }}};

}  // namespace
}  // namespace qoq::cli
