// The Llama-family block, written as its math. One block, for every layer l:
//   h  = x + o_proj(attn(rope(q_proj(rmsnorm(x))), rope(k_proj(...)), v_proj(...)))
//   x' = h + down_proj(silu(gate_proj(rmsnorm(h))) * up_proj(rmsnorm(h)))
// then logits = lm_head(rmsnorm(x)). Covers Llama 2/3, Mistral, Qwen2 (q/k/v bias), SmolLM (tied head).
#include <cmath>
#include <cstring>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/kv_quant.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "qoq/model.h"

namespace qoq {

struct Model::Layer {
  Tensor attn_norm, mlp_norm;  // [hidden] F32
  std::unique_ptr<Linear> q, k, v, o, gate, up, down;
};

namespace {

Tensor f32(const Tensor& t) { return t.dtype() == DType::F32 ? t : t.to(DType::F32); }

// The tensor `name` with exactly `shape` and a float dtype, else an InputError naming both.
const Tensor& expect(const std::map<std::string, Tensor>& tensors, const std::string& source, const std::string& name,
                     const Shape& shape) {
  auto it = tensors.find(name);
  QOQ_CHECK_INPUT(it != tensors.end(), "{}: missing tensor {}", source, name);
  const Tensor& t = it->second;
  QOQ_CHECK_INPUT(t.shape() == shape, "{}: tensor {} has shape {}, the config implies {}", source, name,
                  shape_str(t.shape()), shape_str(shape));
  QOQ_CHECK_INPUT(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
                  "{}: tensor {} has dtype {}, expected a float dtype", source, name, dtype_name(t.dtype()));
  return t;
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

Model::Model(const ModelWeights& w, const LinearFactory& make_linear, const ModelOptions& options)
    : config_(w.config), options_(options) {
  const std::map<std::string, Tensor>& t = w.tensors;
  const std::string& src = w.source_path;
  const bool tied_embed = config_.tie_word_embeddings && !w.has("lm_head.weight");
  init(
      t,
      [&](const std::string& prefix, int64_t out, int64_t in, bool bias) {
        if (prefix == "lm_head" && tied_embed) return make_linear(prefix, embed_, Tensor());
        return make_linear(prefix, expect(t, src, prefix + ".weight", {out, in}),
                           bias ? expect(t, src, prefix + ".bias", {out}) : Tensor());
      },
      src);
}

Model::Model(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, const LinearBuilder& build,
             const ModelOptions& options, const std::string& source)
    : config_(config), options_(options) {
  init(tensors, build, source);
}

void Model::init(const std::map<std::string, Tensor>& t, const LinearBuilder& build, const std::string& src) {
  const ModelConfig& c = config_;
  c.validate(src);
  QOQ_CHECK_INPUT(options_.kv_bits == 4 || options_.kv_bits == 8 || options_.kv_bits == 16,
                  "{}: kv_bits must be 4, 8 or 16, got {}", src, options_.kv_bits);
  QOQ_CHECK_INPUT(options_.kv_bits == 16 || c.head_dim % 2 == 0, "{}: a KV4/KV8 cache needs an even head_dim, got {}",
                  src, c.head_dim);
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  embed_ = f32(expect(t, src, "model.embed_tokens.weight", {V, H}));
  final_norm_ = f32(expect(t, src, "model.norm.weight", {H}));
  auto linear = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    auto lin = build(name, out, in, bias);
    QOQ_CHECK(lin && lin->out_features() == out && lin->in_features() == in,
              "{}: the linear built for {} is not [{}, {}]", src, name, out, in);
    return lin;
  };
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    Layer L;
    L.attn_norm = f32(expect(t, src, p + ".input_layernorm.weight", {H}));
    L.mlp_norm = f32(expect(t, src, p + ".post_attention_layernorm.weight", {H}));
    L.q = linear(p + ".self_attn.q_proj", c.q_dim(), H, c.attention_bias);
    L.k = linear(p + ".self_attn.k_proj", c.kv_dim(), H, c.attention_bias);
    L.v = linear(p + ".self_attn.v_proj", c.kv_dim(), H, c.attention_bias);
    L.o = linear(p + ".self_attn.o_proj", H, c.q_dim(), false);
    L.gate = linear(p + ".mlp.gate_proj", I, H, false);
    L.up = linear(p + ".mlp.up_proj", I, H, false);
    L.down = linear(p + ".mlp.down_proj", H, I, false);
    layers_.push_back(std::move(L));
  }
  lm_head_ = linear("lm_head", V, H, false);
  inv_freq_ = cpu::rope_inv_freq(c);
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;

KVCache Model::new_cache(int context) const {
  return KVCache(config_, context > 0 ? context : config_.max_position_embeddings);
}

Tensor Model::forward_hidden(std::span<const int32_t> tokens, KVCache& cache) const {
  const ModelConfig& c = config_;
  const int64_t T = int64_t(tokens.size()), pos = cache.size();
  QOQ_CHECK_INPUT(T > 0, "forward: no tokens to run");
  QOQ_CHECK_INPUT(pos + T <= cache.capacity(),
                  "context length exceeded: {} cached + {} new tokens > the context of {} positions", pos, T,
                  cache.capacity());
  const int64_t H = c.hidden_size, D = c.head_dim, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
  Tensor x = Tensor::empty(DType::F32, {T, H});
  std::vector<float> h(size_t(T * H)), q(size_t(T * Q)), attn(size_t(T * Q)), gate(size_t(T * I)), up(size_t(T * I));
  float* xs = x.data<float>();
  cpu::embedding(embed_.data<float>(), c.vocab_size, H, tokens.data(), T, xs);
  const float scale = 1.0f / std::sqrt(float(D));

  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[size_t(l)];
    // Attention: new keys/values go straight into the cache rows pos .. pos+T-1, then all T queries attend.
    float* kc = cache.keys(l) + pos * KV;
    float* vc = cache.values(l) + pos * KV;
    cpu::rmsnorm(xs, L.attn_norm.data<float>(), h.data(), T, H, c.rms_norm_eps);
    L.q->forward(h.data(), T, q.data());
    L.k->forward(h.data(), T, kc);
    L.v->forward(h.data(), T, vc);
    cpu::rope_apply(q.data(), T, c.num_heads, D, pos, inv_freq_.data());
    cpu::rope_apply(kc, T, c.num_kv_heads, D, pos, inv_freq_.data());
    if (options_.kv_bits < 16) {
      // The cache holds what a KV4/KV8 cache would return: this step's tokens attend over those values too.
      ref::kv_fake_quant(kc, T * c.num_kv_heads, D, options_.kv_bits);
      ref::kv_fake_quant(vc, T * c.num_kv_heads, D, options_.kv_bits);
    }
    cpu::attention(q.data(), cache.keys(l), cache.values(l), attn.data(), T, pos, c.num_heads, c.num_kv_heads, D,
                   cache.row_stride(), scale);
    L.o->forward(attn.data(), T, h.data());
    add_inplace(xs, h.data(), T * H);

    // SwiGLU MLP.
    cpu::rmsnorm(xs, L.mlp_norm.data<float>(), h.data(), T, H, c.rms_norm_eps);
    L.gate->forward(h.data(), T, gate.data());
    L.up->forward(h.data(), T, up.data());
    cpu::silu_mul(gate.data(), up.data(), gate.data(), T * I);
    L.down->forward(gate.data(), T, h.data());
    add_inplace(xs, h.data(), T * H);
  }
  cache.advance(int(T));
  cpu::rmsnorm(xs, final_norm_.data<float>(), xs, T, H, c.rms_norm_eps);
  return x;
}

void Model::lm_head(const float* hidden, int64_t m, float* logits) const { lm_head_->forward(hidden, m, logits); }

Tensor Model::forward(std::span<const int32_t> tokens, KVCache& cache, Logits which) const {
  Tensor hidden = forward_hidden(tokens, cache);
  const int64_t T = hidden.dim(0), H = config_.hidden_size, V = config_.vocab_size;
  const int64_t first = which == Logits::All ? 0 : T - 1;
  Tensor logits = Tensor::empty(DType::F32, {T - first, V});
  lm_head(hidden.data<float>() + first * H, T - first, logits.data<float>());
  return logits;
}

}  // namespace qoq
