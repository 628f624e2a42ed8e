// The perplexity protocol (DESIGN.md §3) on a random tiny model and a fake byte tokenizer: row joining, BOS,
// windowing with the tail dropped, and the mean NLL against logits computed here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cpu/softmax.h"
#include "qoq/model.h"
#include "qoq/tokenizer.h"
#include "runtime/perplexity.h"

using namespace qoq;

namespace {

// One token per byte, offset by 3 (0 unk, 1 BOS, 2 EOS), vocabulary 259.
class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(bool bos) : bos_(bos) {}
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(1);
    for (unsigned char c : text) ids.push_back(int32_t(c) + 3);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += char(id - 3);
    return s;
  }
  int vocab_size() const override { return 259; }
  int bos_id() const override { return 1; }
  int eos_id() const override { return 2; }
  bool adds_bos() const override { return bos_; }
  std::string token_text(int id) const override { return decode({id}); }
  std::string apply_chat_template(const std::vector<ChatMessage>&) const override { return ""; }
  std::vector<int32_t> stop_ids() const override { return {2}; }

 private:
  bool bos_;
};

ModelWeights tiny_model() {
  ModelConfig c;
  c.hidden_size = 16;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 8;
  c.intermediate_size = 24;
  c.vocab_size = 259;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = true;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  ModelWeights w;
  w.config = c;
  auto add = [&](const std::string& name, Shape s, bool ones = false) {
    Tensor t = Tensor::empty(DType::F32, s);
    for (float& x : t.span<float>()) x = ones ? 1.0f : nd(rng);
    w.tensors[name] = t;
  };
  add("model.embed_tokens.weight", {259, 16});
  add("model.norm.weight", {16}, true);
  const std::string p = "model.layers.0.";
  add(p + "input_layernorm.weight", {16}, true);
  add(p + "post_attention_layernorm.weight", {16}, true);
  add(p + "self_attn.q_proj.weight", {16, 16});
  add(p + "self_attn.k_proj.weight", {8, 16});
  add(p + "self_attn.v_proj.weight", {8, 16});
  add(p + "self_attn.o_proj.weight", {16, 16});
  add(p + "mlp.gate_proj.weight", {24, 16});
  add(p + "mlp.up_proj.weight", {24, 16});
  add(p + "mlp.down_proj.weight", {16, 24});
  return w;
}

}  // namespace

TEST(Perplexity, JoinsRowsWithBlankLines) {
  // Rows keep their "\n"; a blank line (" \n" in wiki.test.raw) is an empty row; rows are joined with "\n\n".
  EXPECT_EQ(wikitext_join("a\n \nb\n"), "a\n\n\n\n\nb\n");
  EXPECT_EQ(wikitext_join("a\n\nb\n"), "a\n\n\n\n\nb\n");
  EXPECT_EQ(wikitext_join(" \n = T = \n"), "\n\n = T = \n");
  EXPECT_EQ(wikitext_join("x\ny"), "x\n\n\ny");  // a last row without "\n" stays as it is
  EXPECT_EQ(wikitext_join(""), "");
}

TEST(Perplexity, TokenizesOnceWithBosWhenTheTokenizerAddsOne) {
  const ByteTokenizer with(true), without(false);
  EXPECT_EQ(perplexity_tokens(with, "a\nb\n"), (std::vector<int32_t>{1, 'a' + 3, 13, 13, 13, 'b' + 3, 13}));
  EXPECT_EQ(perplexity_tokens(without, "a\n").size(), 2u);
}

TEST(Perplexity, MeanNllOverNonOverlappingWindowsDropsTheTail) {
  const ModelWeights w = tiny_model();
  const Model model(w);
  std::vector<int32_t> tokens(37);
  std::mt19937 rng(8);
  for (auto& t : tokens) t = int32_t(rng() % 259);
  PplOptions o;
  o.ctx = 10;
  o.progress = false;
  const PplResult r = perplexity(model, tokens, o);
  // 3 windows of 10 (7 tail tokens dropped), 9 predictions each.
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens_scored, 27);
  EXPECT_EQ(r.tokens_total, 37);
  double sum = 0;
  for (int win = 0; win < 3; ++win) {
    KVCache cache = model.new_cache(10);
    const std::vector<int32_t> ids(tokens.begin() + win * 10, tokens.begin() + win * 10 + 10);
    const Tensor logits = model.forward(ids, cache, Model::Logits::All);
    for (int t = 0; t + 1 < 10; ++t) {
      const float* row = logits.data<float>() + t * 259;
      double lse = 0, mx = -1e300;
      for (int v = 0; v < 259; ++v) mx = std::max(mx, double(row[v]));
      for (int v = 0; v < 259; ++v) lse += std::exp(row[v] - mx);
      sum += mx + std::log(lse) - row[ids[size_t(t) + 1]];
    }
  }
  // perplexity() may run lm_head on other row counts than forward(All), and the matmul's blocking (so its float
  // summation order) depends on the row count: agreement to float rounding, not bit for bit.
  EXPECT_NEAR(r.nll_sum, sum, 1e-6 * std::fabs(sum));
  EXPECT_NEAR(r.ppl, std::exp(sum / 27), 1e-6 * r.ppl);
  EXPECT_GT(r.ppl, 1.0);
  // --max-windows 2 scores the first two windows only.
  o.max_windows = 2;
  const PplResult r2 = perplexity(model, tokens, o);
  EXPECT_EQ(r2.windows, 2);
  EXPECT_EQ(r2.tokens_scored, 18);
  EXPECT_LT(r2.nll_sum, r.nll_sum);
}

TEST(Perplexity, RejectsTooFewTokensAndBadCtx) {
  const ModelWeights w = tiny_model();
  const Model model(w);
  const std::vector<int32_t> tokens(5, 7);
  PplOptions o;
  o.progress = false;
  o.ctx = 6;
  try {
    perplexity(model, tokens, o);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("5 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ctx 6"), std::string::npos) << e.what();
  }
  o.ctx = 1;
  EXPECT_THROW(perplexity(model, tokens, o), InputError);
}
