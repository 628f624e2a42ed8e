// The Llama forward on random tiny models built in memory: against a naive re-implementation written here
// (double precision, HF formulas spelled out), batched prefill == incremental decode, and input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "qoq/model.h"

using namespace qoq;

namespace {

ModelConfig tiny_config(bool bias, bool tied) {
  ModelConfig c;
  c.hidden_size = 48;
  c.num_layers = 2;
  c.num_heads = 6;
  c.num_kv_heads = 2;  // GQA: 3 query heads per KV head
  c.head_dim = 8;
  c.intermediate_size = 40;
  c.vocab_size = 37;
  c.max_position_embeddings = 32;
  c.rope_theta = 1000.0f;
  c.rms_norm_eps = 1e-5f;
  c.attention_bias = bias;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelWeights random_model(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  ModelWeights w;
  w.config = c;
  w.source_path = "<random tiny model>";
  auto add = [&](const std::string& name, Shape shape, float scale, float offset = 0.0f) {
    Tensor t = Tensor::empty(DType::F32, shape);
    for (float& x : t.span<float>()) x = offset + scale * nd(rng);
    w.tensors[name] = t;
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  add("model.embed_tokens.weight", {c.vocab_size, H}, 1.0f);
  add("model.norm.weight", {H}, 0.1f, 1.0f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H}, 0.2f);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    add(p + ".input_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + ".post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + ".self_attn.q_proj.weight", {c.q_dim(), H}, 0.3f);
    add(p + ".self_attn.k_proj.weight", {c.kv_dim(), H}, 0.3f);
    add(p + ".self_attn.v_proj.weight", {c.kv_dim(), H}, 0.3f);
    if (c.attention_bias) {
      add(p + ".self_attn.q_proj.bias", {c.q_dim()}, 0.5f);
      add(p + ".self_attn.k_proj.bias", {c.kv_dim()}, 0.5f);
      add(p + ".self_attn.v_proj.bias", {c.kv_dim()}, 0.5f);
    }
    add(p + ".self_attn.o_proj.weight", {H, c.q_dim()}, 0.2f);
    add(p + ".mlp.gate_proj.weight", {I, H}, 0.2f);
    add(p + ".mlp.up_proj.weight", {I, H}, 0.2f);
    add(p + ".mlp.down_proj.weight", {H, I}, 0.2f);
  }
  return w;
}

using Mat = std::vector<std::vector<double>>;  // [rows][cols]

// y = x W^T (+ b) with W [out, in] read from a tensor.
Mat linear(const Mat& x, const Tensor& w, const Tensor* b = nullptr) {
  const int64_t out = w.dim(0), in = w.dim(1);
  Mat y(x.size(), std::vector<double>(static_cast<size_t>(out)));
  for (size_t t = 0; t < x.size(); ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? b->data<float>()[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[t][size_t(i)] * w.data<float>()[o * in + i];
      y[t][size_t(o)] = s;
    }
  return y;
}

Mat rmsnorm(const Mat& x, const Tensor& g, double eps) {
  Mat y = x;
  for (auto& row : y) {
    double ss = 0;
    for (double v : row) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / double(row.size()) + eps);
    for (size_t i = 0; i < row.size(); ++i) row[i] *= inv * g.data<float>()[i];
  }
  return y;
}

// HF apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1).
void rope(Mat& x, int heads, int D, double theta) {
  for (size_t t = 0; t < x.size(); ++t)
    for (int h = 0; h < heads; ++h) {
      std::vector<double> v(x[t].begin() + h * D, x[t].begin() + (h + 1) * D), r(static_cast<size_t>(D));
      for (int i = 0; i < D; ++i) {
        const int j = i % (D / 2);
        const double ang = double(t) * std::pow(theta, -2.0 * j / D);
        const double rot = i < D / 2 ? -v[size_t(i + D / 2)] : v[size_t(i - D / 2)];
        r[size_t(i)] = v[size_t(i)] * std::cos(ang) + rot * std::sin(ang);
      }
      std::copy(r.begin(), r.end(), x[t].begin() + h * D);
    }
}

// The whole model over a sequence starting at position 0, every position's logits.
Mat naive_forward(const ModelWeights& w, const std::vector<int32_t>& ids) {
  const ModelConfig& c = w.config;
  const int H = c.hidden_size, D = c.head_dim, T = int(ids.size());
  Mat x(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(H)));
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i) x[t][i] = w.get("model.embed_tokens.weight").data<float>()[ids[t] * H + i];
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto bias = [&](const std::string& n) { return c.attention_bias ? &w.get(p + n) : nullptr; };
    Mat h = rmsnorm(x, w.get(p + "input_layernorm.weight"), c.rms_norm_eps);
    Mat q = linear(h, w.get(p + "self_attn.q_proj.weight"), bias("self_attn.q_proj.bias"));
    Mat k = linear(h, w.get(p + "self_attn.k_proj.weight"), bias("self_attn.k_proj.bias"));
    Mat v = linear(h, w.get(p + "self_attn.v_proj.weight"), bias("self_attn.v_proj.bias"));
    rope(q, c.num_heads, D, c.rope_theta);
    rope(k, c.num_kv_heads, D, c.rope_theta);
    Mat a(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(c.q_dim())));
    for (int t = 0; t < T; ++t)
      for (int hd = 0; hd < c.num_heads; ++hd) {
        const int g = hd / (c.num_heads / c.num_kv_heads);
        std::vector<double> s(static_cast<size_t>(t + 1));
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < D; ++i) d += q[t][hd * D + i] * k[j][g * D + i];
          mx = std::max(mx, s[j] = d / std::sqrt(double(D)));
        }
        for (double& e : s) sum += e = std::exp(e - mx);
        for (int i = 0; i < D; ++i)
          for (int j = 0; j <= t; ++j) a[t][hd * D + i] += s[j] / sum * v[j][g * D + i];
      }
    Mat o = linear(a, w.get(p + "self_attn.o_proj.weight"));
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < H; ++i) x[t][i] += o[t][i];
    h = rmsnorm(x, w.get(p + "post_attention_layernorm.weight"), c.rms_norm_eps);
    Mat gate = linear(h, w.get(p + "mlp.gate_proj.weight")), up = linear(h, w.get(p + "mlp.up_proj.weight"));
    for (size_t t = 0; t < gate.size(); ++t)
      for (size_t i = 0; i < gate[t].size(); ++i) gate[t][i] = gate[t][i] / (1 + std::exp(-gate[t][i])) * up[t][i];
    Mat d = linear(gate, w.get(p + "mlp.down_proj.weight"));
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < H; ++i) x[t][i] += d[t][i];
  }
  x = rmsnorm(x, w.get("model.norm.weight"), c.rms_norm_eps);
  return linear(x, c.tie_word_embeddings ? w.get("model.embed_tokens.weight") : w.get("lm_head.weight"));
}

std::vector<int32_t> random_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
  return ids;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.span<const float>()) m = std::max(m, double(std::fabs(v)));
  return m;
}

}  // namespace

TEST(Llama, MatchesNaiveForwardWithBiasAndUntiedHead) {
  for (bool tied : {false, true}) {
    const ModelWeights w = random_model(tiny_config(/*bias=*/!tied, tied), 42);
    const Model model(w);
    const auto ids = random_ids(13, w.config.vocab_size, 9);
    KVCache cache = model.new_cache();
    const Tensor logits = model.forward(ids, cache, Model::Logits::All);
    ASSERT_EQ(logits.shape(), (Shape{13, w.config.vocab_size}));
    const Mat want = naive_forward(w, ids);
    const double range = max_abs(logits);
    ASSERT_GT(range, 1.0);  // a degenerate model would make the comparison meaningless
    for (size_t t = 0; t < want.size(); ++t)
      for (size_t v = 0; v < want[t].size(); ++v)
        ASSERT_NEAR(logits.data<float>()[t * want[t].size() + v], want[t][v], 2e-5 * range)
            << "tied=" << tied << " position " << t << " token " << v;
    EXPECT_EQ(cache.size(), 13);
  }
}

TEST(Llama, BatchedPrefillEqualsIncrementalDecode) {
  const ModelWeights w = random_model(tiny_config(/*bias=*/true, /*tied=*/false), 7);
  const Model model(w);
  const auto ids = random_ids(20, w.config.vocab_size, 3);
  KVCache batch = model.new_cache();
  const Tensor all = model.forward(ids, batch, Model::Logits::All);
  const int64_t V = w.config.vocab_size;
  const double tol = 1e-5 * max_abs(all);
  // One token at a time.
  KVCache inc = model.new_cache();
  for (size_t t = 0; t < ids.size(); ++t) {
    const Tensor one = model.forward(std::span<const int32_t>(&ids[t], 1), inc);
    ASSERT_EQ(one.shape(), (Shape{1, V}));
    for (int64_t v = 0; v < V; ++v) ASSERT_NEAR(one.data<float>()[v], all.data<float>()[t * V + v], tol) << t;
  }
  // Chunked prefill (7 + 13): the last logits of each chunk.
  KVCache chunked = model.new_cache(20);
  const Tensor a = model.forward(std::span<const int32_t>(ids.data(), 7), chunked);
  const Tensor b = model.forward(std::span<const int32_t>(ids.data() + 7, 13), chunked);
  for (int64_t v = 0; v < V; ++v) {
    ASSERT_NEAR(a.data<float>()[v], all.data<float>()[6 * V + v], tol);
    ASSERT_NEAR(b.data<float>()[v], all.data<float>()[19 * V + v], tol);
  }
  // Re-running after truncate reproduces the same numbers.
  chunked.truncate(7);
  const Tensor b2 = model.forward(std::span<const int32_t>(ids.data() + 7, 13), chunked);
  for (int64_t v = 0; v < V; ++v) ASSERT_EQ(b2.data<float>()[v], b.data<float>()[v]);
}

TEST(Llama, ContextOverflowNamesTheLimit) {
  const ModelWeights w = random_model(tiny_config(false, false), 1);
  const Model model(w);
  KVCache cache = model.new_cache(8);
  EXPECT_EQ(cache.capacity(), 8);
  const auto ids = random_ids(6, w.config.vocab_size, 2);
  model.forward(ids, cache);
  try {
    model.forward(ids, cache);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("context of 8 positions"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.size(), 6);                     // the failed call changed nothing
  EXPECT_THROW(model.new_cache(33), InputError);  // beyond max_position_embeddings 32
  const std::vector<int32_t> bad = {5, 37};
  KVCache c2 = model.new_cache();
  EXPECT_THROW(model.forward(bad, c2), InputError);  // token id outside the vocabulary
}

TEST(Llama, MissingOrMisshapedTensorIsNamed) {
  ModelWeights w = random_model(tiny_config(true, false), 1);
  ModelWeights missing = w;
  missing.tensors.erase("model.layers.1.self_attn.k_proj.bias");
  try {
    Model m(missing);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.k_proj.bias"), std::string::npos) << e.what();
  }
  ModelWeights wrong = w;
  wrong.tensors["model.layers.0.mlp.up_proj.weight"] = Tensor::zeros(DType::F32, {41, 48});
  try {
    Model m(wrong);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[40, 48]"), std::string::npos) << e.what();
  }
}

TEST(Llama, Fp16WeightsAreConverted) {
  ModelWeights w = random_model(tiny_config(true, false), 5);
  ModelWeights h = w;
  for (auto& [name, t] : h.tensors) t = t.to(DType::F16);
  ModelWeights back = h;  // the fp16-rounded weights in fp32: the exact model the fp16 one must equal
  for (auto& [name, t] : back.tensors) t = t.to(DType::F32);
  const auto ids = random_ids(5, w.config.vocab_size, 4);
  KVCache c1 = Model(h).new_cache(), c2 = Model(back).new_cache();
  const Tensor a = Model(h).forward(ids, c1), b = Model(back).forward(ids, c2);
  for (int64_t v = 0; v < w.config.vocab_size; ++v) EXPECT_EQ(a.data<float>()[v], b.data<float>()[v]);
}
