// llama2.c legacy checkpoints: stories260K loads with the right config and tensors, q/k rows end in
// rotate-half order (checked through RoPE itself), and bad files give InputErrors naming file and field.
#include <gtest/gtest.h>

#include <random>

#include "io/llama2c.h"
#include "io/model_import.h"
#include "io_test_util.h"
#include "qoq/model_weights.h"

namespace qoq {
namespace {

using testing::expect_input_error;
using testing::TempDir;

std::string stories() { return testing::data_file("stories260K/stories260K.bin"); }

// The float32 array at `float_offset` (in floats, after the 28-byte header) of the raw checkpoint.
std::vector<float> raw_floats(const std::vector<uint8_t>& file, int64_t float_offset, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  std::memcpy(out.data(), file.data() + 28 + float_offset * 4, size_t(n) * 4);
  return out;
}

TEST(Llama2c, Stories260KConfigAndTensors) {
  const ModelWeights w = load_model(stories(), {.dtype = DType::F32, .progress = false});
  const ModelConfig& c = w.config;
  EXPECT_EQ(w.source_format, "llama2c");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_FALSE(w.has("lm_head.weight"));
  EXPECT_EQ(w.get("model.layers.4.self_attn.k_proj.weight").shape(), (Shape{32, 64}));
  EXPECT_EQ(w.get("model.layers.0.mlp.down_proj.weight").shape(), (Shape{64, 172}));
  EXPECT_EQ(w.tokenizer.kind, TokenizerSource::Kind::Llama2c);
  EXPECT_EQ(std::filesystem::path(w.tokenizer.path).filename(), "tok512.bin");

  // Tensors not touched by the permutation are the file's floats, in the documented order.
  const auto file = testing::read_bytes(stories());
  const int64_t V = 512, d = 64, L = 5, kv = 32, f = 172;
  const auto emb = raw_floats(file, 0, V * d);
  const Tensor& e = w.get("model.embed_tokens.weight");
  for (int64_t i = 0; i < V * d; i += 97) ASSERT_EQ(e.at_f32(i), emb[size_t(i)]) << i;
  const int64_t w1 = V * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d;  // start of w1 (gate)
  const auto gate3 = raw_floats(file, w1 + 3 * f * d, f * d);
  const Tensor& g3 = w.get("model.layers.3.mlp.gate_proj.weight");
  for (int64_t i = 0; i < f * d; i += 31) ASSERT_EQ(g3.at_f32(i), gate3[size_t(i)]) << i;
  const auto norm = raw_floats(file, w1 + 3 * L * f * d, d);
  for (int64_t i = 0; i < d; ++i) ASSERT_EQ(w.get("model.norm.weight").at_f32(i), norm[size_t(i)]);
}

// Loaded tensors may be modified in place (the quantizer fuses norms); the file underneath must not change.
TEST(Llama2c, TensorsAreWritableWithoutTouchingTheFile) {
  TempDir dir;
  testing::write_bytes(dir.file("m.bin"), testing::read_bytes(stories()));
  testing::write_bytes(dir.file("tok512.bin"), testing::read_bytes(testing::data_file("stories260K/tok512.bin")));
  const auto before = testing::read_bytes(dir.file("m.bin"));
  {
    ModelWeights w = load_model(dir.file("m.bin"), {.dtype = DType::F32, .progress = false});
    for (auto& [name, t] : w.tensors)
      for (float& v : t.span<float>()) v = 1.0f;
  }
  EXPECT_EQ(testing::read_bytes(dir.file("m.bin")), before);
  const ModelWeights again = load_model(dir.file("m.bin"), {.dtype = DType::F32, .progress = false});
  EXPECT_NE(again.get("model.norm.weight").at_f32(0), 1.0f);
}

TEST(Llama2c, LoadsAsF16) {
  const ModelWeights w = load_model(stories(), {.dtype = DType::F16, .progress = false});
  for (const auto& [name, t] : w.tensors) EXPECT_EQ(t.dtype(), DType::F16) << name;
}

// Interleaved RoPE (llama2.c) on the file's q/k rows gives the same attention scores as rotate-half RoPE on
// the imported rows, and the rotated vectors are the same numbers in the permuted order.
TEST(Llama2c, RopePermutationMatchesInterleavedRope) {
  const ModelWeights w = load_model(stories(), {.dtype = DType::F32, .progress = false});
  const auto file = testing::read_bytes(stories());
  const int d = 64, D = 8, H = 8, KVH = 4, V = 512, L = 5, kv = 32;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(d);
  for (float& v : x) v = nd(rng);
  for (int layer : {0, 4}) {
    const int64_t wq_off = int64_t(V) * d + L * d + int64_t(layer) * d * d;
    const int64_t wk_off = int64_t(V) * d + L * d + int64_t(L) * d * d + int64_t(layer) * kv * d;
    const auto wq = raw_floats(file, wq_off, d * d);
    const auto wk = raw_floats(file, wk_off, kv * d);
    const Tensor& nq = w.get(fmt::format("model.layers.{}.self_attn.q_proj.weight", layer));
    const Tensor& nk = w.get(fmt::format("model.layers.{}.self_attn.k_proj.weight", layer));
    auto matvec = [&](const float* m, int rows) {
      std::vector<float> y(size_t(rows), 0.0f);
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < d; ++c) y[size_t(r)] += m[r * d + c] * x[size_t(c)];
      return y;
    };
    auto q_old = matvec(wq.data(), d), k_old = matvec(wk.data(), kv);
    auto q_new = matvec(nq.data<float>(), d), k_new = matvec(nk.data<float>(), kv);
    const int pq = 37, pk = 11;
    for (int h = 0; h < H; ++h) {
      testing::rope_interleaved(&q_old[size_t(h * D)], D, pq, 10000.0f);
      testing::rope_rotate_half(&q_new[size_t(h * D)], D, pq, 10000.0f);
    }
    for (int h = 0; h < KVH; ++h) {
      testing::rope_interleaved(&k_old[size_t(h * D)], D, pk, 10000.0f);
      testing::rope_rotate_half(&k_new[size_t(h * D)], D, pk, 10000.0f);
    }
    for (int h = 0; h < H; ++h) {
      for (int i = 0; i < D / 2; ++i) {
        EXPECT_NEAR(q_new[size_t(h * D + i)], q_old[size_t(h * D + 2 * i)], 1e-5f);
        EXPECT_NEAR(q_new[size_t(h * D + D / 2 + i)], q_old[size_t(h * D + 2 * i + 1)], 1e-5f);
      }
      const int g = h / (H / KVH);
      float s_old = 0, s_new = 0;
      for (int i = 0; i < D; ++i) {
        s_old += q_old[size_t(h * D + i)] * k_old[size_t(g * D + i)];
        s_new += q_new[size_t(h * D + i)] * k_new[size_t(g * D + i)];
      }
      EXPECT_NEAR(s_new, s_old, 1e-4f * (1 + std::fabs(s_old))) << "layer " << layer << " head " << h;
    }
  }
}

TEST(Llama2c, TruncatedFileNamesPathAndSize) {
  TempDir dir;
  auto bytes = testing::read_bytes(stories());
  bytes.resize(bytes.size() - 4);
  const std::string p = dir.file("stories260K.bin");
  testing::write_bytes(p, bytes);
  expect_input_error([&] { load_model(p, {.progress = false}); }, {p, "truncated", "1056540"});
  testing::write_bytes(p, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 20));
  expect_input_error([&] { load_model(p, {.progress = false}); }, {p, "truncated", "header"});
  bytes.resize(bytes.size() + 8);  // too long is as wrong as too short
  testing::write_bytes(p, bytes);
  expect_input_error([&] { load_model(p, {.progress = false}); }, {p, "implies 1056540 bytes"});
}

TEST(Llama2c, BadHeaderFieldsAreNamed) {
  const auto good = testing::read_bytes(stories());
  struct Case {
    int field;
    int32_t value;
    const char* expect;
  } cases[] = {{0, 0, "dim"},
               {3, 0, "n_heads"},
               {4, 3, "n_kv_heads"},
               {4, 16, "n_kv_heads"},
               {3, 5, "multiple of n_heads"},
               {6, -1, "seq_len"},
               {5, 0, "vocab_size"},
               {2, 1 << 30, "n_layers"},
               {0, 0x616b3432, "ak42"}};
  for (const Case& c : cases) {
    auto b = good;
    std::memcpy(b.data() + 4 * c.field, &c.value, 4);
    expect_input_error([&] { io::parse_llama2c_header(b.data(), b.size(), "x.bin"); }, {"x.bin", c.expect});
  }
}

TEST(Llama2c, MissingTokenizerNamesExpectedFile) {
  TempDir dir;
  const std::string p = dir.file("model.bin");
  testing::write_bytes(p, testing::read_bytes(stories()));
  expect_input_error([&] { load_model(p, {.progress = false}); }, {p, "tok512.bin", dir.path()});
}

// A negative vocab_size means the classifier follows the RoPE tables: lm_head.weight is that array.
TEST(Llama2c, UnsharedClassifier) {
  TempDir dir;
  const int d = 8, f = 12, L = 1, H = 2, KV = 1, V = 6, S = 4, hd = d / H, kv = hd * KV;
  std::vector<int32_t> hdr = {d, f, L, H, KV, -V, S};
  const int64_t n = V * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d + 3 * L * f * d + d + S * hd + V * d;
  std::vector<float> vals(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) vals[size_t(i)] = float(i) * 0.5f;
  std::vector<uint8_t> bytes(28 + size_t(n) * 4);
  std::memcpy(bytes.data(), hdr.data(), 28);
  std::memcpy(bytes.data() + 28, vals.data(), size_t(n) * 4);
  testing::write_bytes(dir.file("m.bin"), bytes);
  testing::write_text(dir.file("tokenizer.bin"), "x");
  const ModelWeights w = load_model(dir.file("m.bin"), {.progress = false});
  EXPECT_FALSE(w.config.tie_word_embeddings);
  ASSERT_TRUE(w.has("lm_head.weight"));
  const Tensor& head = w.get("lm_head.weight");
  EXPECT_EQ(head.shape(), (Shape{V, d}));
  EXPECT_EQ(head.at_f32(0), float(n - V * d) * 0.5f);
  EXPECT_EQ(head.at_f32(V * d - 1), float(n - 1) * 0.5f);
  EXPECT_EQ(std::filesystem::path(w.tokenizer.path).filename(), "tokenizer.bin");
  // The permutation of a single-KV-head k_proj: row 2i -> i, row 2i+1 -> i + hd/2.
  const Tensor& k = w.get("model.layers.0.self_attn.k_proj.weight");
  const int64_t wk_off = V * d + L * d + L * d * d;
  for (int i = 0; i < hd / 2; ++i) {
    EXPECT_EQ(k.at_f32(i * d), vals[size_t(wk_off + 2 * i * d)]);
    EXPECT_EQ(k.at_f32((hd / 2 + i) * d), vals[size_t(wk_off + (2 * i + 1) * d)]);
  }
}

}  // namespace
}  // namespace qoq
