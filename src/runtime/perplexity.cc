#include "runtime/perplexity.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/progress.h"
#include "core/thread_pool.h"
#include "kernels/cpu/softmax.h"

namespace qoq {

std::string wikitext_join(const std::string& raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  size_t start = 0;
  bool first = true;
  while (start < raw.size()) {
    const size_t nl = raw.find('\n', start);
    const size_t end = nl == std::string::npos ? raw.size() : nl + 1;  // a row keeps its "\n"
    if (!first) out += "\n\n";
    // Blank lines (" \n" in wiki.test.raw) are empty rows, as in the HF dataset the literature evaluates.
    const size_t text_end = nl == std::string::npos ? raw.size() : nl;
    if (raw.find_first_not_of(" \t\r", start) < text_end) out.append(raw, start, end - start);
    first = false;
    start = end;
  }
  return out;
}

std::vector<int32_t> perplexity_tokens(const Tokenizer& tok, const std::string& raw) {
  return tok.encode(wikitext_join(raw), tok.adds_bos());
}

PplResult perplexity(const Model& model, std::span<const int32_t> tokens, const PplOptions& opts) {
  QOQ_CHECK_INPUT(opts.ctx >= 2, "perplexity: ctx {} must be at least 2", opts.ctx);
  QOQ_CHECK_INPUT(opts.max_windows >= 0, "perplexity: max_windows {} must be >= 0", opts.max_windows);
  const int64_t ctx = opts.ctx;
  int64_t windows = int64_t(tokens.size()) / ctx;
  QOQ_CHECK_INPUT(windows > 0, "perplexity: the text has {} tokens, fewer than one window of ctx {}", tokens.size(),
                  ctx);
  if (opts.max_windows > 0) windows = std::min<int64_t>(windows, opts.max_windows);

  const auto t0 = std::chrono::steady_clock::now();
  const int64_t V = model.config().vocab_size, H = model.config().hidden_size;
  constexpr int64_t kChunk = 64;  // lm_head rows at a time: bounds the logits buffer to 64 x vocab floats
  std::vector<float> logits(size_t(kChunk * V));
  std::vector<double> row_nll(static_cast<size_t>(kChunk));
  KVCache cache = model.new_cache(int(ctx));
  PplResult r;
  r.tokens_total = int64_t(tokens.size());
  Progress progress("ppl", windows, opts.progress);
  for (int64_t w = 0; w < windows; ++w) {
    const std::span<const int32_t> win = tokens.subspan(size_t(w * ctx), size_t(ctx));
    cache.clear();
    const Tensor hidden = model.forward_hidden(win, cache);
    // Row t predicts token t + 1: ctx - 1 predictions per window.
    for (int64_t t0c = 0; t0c < ctx - 1; t0c += kChunk) {
      const int64_t rows = std::min(kChunk, ctx - 1 - t0c);
      model.lm_head(hidden.data<float>() + t0c * H, rows, logits.data());
      parallel_for(rows, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          row_nll[size_t(i)] = cpu::nll(logits.data() + i * V, V, win[size_t(t0c + i + 1)]);
      });
      for (int64_t i = 0; i < rows; ++i) r.nll_sum += row_nll[size_t(i)];
      r.tokens_scored += rows;
    }
    ++r.windows;
    progress.advance(1, fmt::format("ppl {:.4f}", std::exp(r.nll_sum / double(r.tokens_scored))));
  }
  progress.finish();
  r.ppl = std::exp(r.nll_sum / double(r.tokens_scored));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qoq
