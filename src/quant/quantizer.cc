#include "quant/quantizer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/sha256.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/kv_quant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "model/linear_quant.h"
#include "qoq/error.h"
#include "quant/gptq.h"
#include "quant/grid.h"
#include "quant/hadamard.h"
#include "quant/hessian.h"
#include "quant/reorder.h"
#include "quant/rotation.h"
#include "quant/rtn.h"
#include "quant/smooth.h"

namespace qoq::quant {

using json = nlohmann::json;

namespace {
// Floats recorded in qoq.json with 4 decimals (0.3, not 0.30000001192092896).
double r4(double v) { return std::round(v * 1e4) / 1e4; }
std::vector<double> r4(const std::vector<float>& v) {
  std::vector<double> out;
  for (float x : v) out.push_back(r4(x));
  return out;
}
}  // namespace

void validate(const QuantizeOptions& o) {
  QOQ_CHECK_INPUT(o.weight_bits == 4 || o.weight_bits == 8, "--weights must be 4 or 8, got {}", o.weight_bits);
  QOQ_CHECK_INPUT(
      o.weight_bits == 8 || o.group_size == -1 || o.group_size == 32 || o.group_size == 64 || o.group_size == 128,
      "--group-size must be 128, 64, 32 or -1 (per-channel), got {}", o.group_size);
  QOQ_CHECK_INPUT(o.kv_bits == 4 || o.kv_bits == 8 || o.kv_bits == 16, "--kv-bits must be 4, 8 or 16, got {}",
                  o.kv_bits);
  QOQ_CHECK_INPUT(!o.rotate || o.fuse_norms,
                  "--no-fuse-norms needs --no-rotate: RMSNorm weights do not commute with the rotation");
  QOQ_CHECK_INPUT(o.smooth_attention_alpha > 0 && o.smooth_attention_alpha <= 1,
                  "--smooth-attention-alpha must be in (0, 1], got {}", o.smooth_attention_alpha);
  QOQ_CHECK_INPUT(o.smooth_alpha < 0 || o.smooth_alpha <= 1, "--smooth-alpha must be in [0, 1], got {}",
                  o.smooth_alpha);
  QOQ_CHECK_INPUT(!o.alpha_grid.empty(), "the α grid is empty");
  QOQ_CHECK_INPUT(o.search_tokens >= 16, "--search-tokens must be at least 16, got {}", o.search_tokens);
  QOQ_CHECK_INPUT(o.clip_ratios >= 1 && o.clip_ratios <= 81, "--clip-ratios must be in [1, 81], got {}", o.clip_ratios);
  QOQ_CHECK_INPUT(o.gptq_damp > 0 && o.gptq_damp < 1, "--gptq-damp must be in (0, 1), got {}", o.gptq_damp);
  QOQ_CHECK_INPUT(o.gptq_block >= 1, "--gptq-block must be positive, got {}", o.gptq_block);
}

namespace {

using Clock = std::chrono::steady_clock;

// Accumulates seconds per pass name, in order of first use.
class Timer {
 public:
  explicit Timer(QuantizeReport& r) : r_(r) {}
  template <class F>
  auto run(const std::string& name, F&& f) {
    const auto t0 = Clock::now();
    struct Add {
      Timer* t;
      const std::string& n;
      Clock::time_point t0;
      ~Add() { t->add(n, std::chrono::duration<double>(Clock::now() - t0).count()); }
    } add{this, name, t0};
    return f();
  }
  void add(const std::string& name, double s) {
    for (auto& [n, v] : r_.seconds)
      if (n == name) {
        v += s;
        return;
      }
    r_.seconds.emplace_back(name, s);
  }

 private:
  QuantizeReport& r_;
};

Tensor f32_copy(const Tensor& t) { return t.to(DType::F32); }

// y = fq(x) Q(W)ᵀ + b through the fake-quant backend (model/linear_quant.h): the integer path's activation codes
// and weights, in float.
void fq_linear(const float* x, int64_t m, const QuantWeight& q, const float* bias, float* y) {
  make_cpu_fake_quant_linear("calibration", q, bias)->forward(x, m, y);
}

void matmul_t(const float* x, int64_t m, const Tensor& w, const Tensor* bias, float* y) {
  cpu::matmul(x, w.data<float>(), bias && bias->defined() ? bias->data<float>() : nullptr, y, m, w.dim(0), w.dim(1));
}

std::vector<float> col_absmax(const float* x, int64_t m, int64_t k) {
  std::vector<float> mx(size_t(k), 0.0f);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t i = 0; i < k; ++i) mx[size_t(i)] = std::max(mx[size_t(i)], std::fabs(x[r * k + i]));
  return mx;
}

// Gathers columns: out[:, i] = x[:, perm[i]], in place.
void permute_cols(std::vector<float>& x, int64_t m, int64_t k, std::span<const int32_t> perm) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < m; ++r) {
    float* p = x.data() + r * k;
    for (int64_t i = 0; i < k; ++i) row[size_t(i)] = p[perm[size_t(i)]];
    std::copy(row.begin(), row.end(), p);
  }
}
template <class T>
std::vector<T> permute_vec(const std::vector<T>& v, std::span<const int32_t> perm) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[size_t(perm[i])];
  return out;
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

class Quantizer {
 public:
  Quantizer(const ModelWeights& w, const QuantizeOptions& o, QuantizeReport& rep)
      : w_(w), o_(o), c_(w.config), rep_(rep), timer_(rep) {
    layout_ = HeadLayout{c_.num_heads, c_.num_kv_heads, c_.head_dim};
    grouped_ = o_.weight_bits == 4 && o_.group_size > 0;
    alpha_ = o_.smooth_alpha >= 0 ? o_.smooth_alpha : (grouped_ ? 0.3f : 0.05f);
    const std::vector<float> all = default_clip_ratios();
    for (int i = 0; i < o_.clip_ratios; ++i)
      ratios_.push_back(all[size_t(o_.clip_ratios == 1 ? 0 : int64_t(i) * 80 / (o_.clip_ratios - 1))]);
  }

  io::QoqCheckpoint run(std::span<const int32_t> calib, int64_t windows, int64_t T);
  // The α the search chose per layer for o_proj and down_proj (empty without smoothing).
  const std::vector<float>& o_alpha() const { return o_alpha_; }
  const std::vector<float>& down_alpha() const { return down_alpha_; }

 private:
  struct LayerW {
    Tensor attn_norm, mlp_norm, q, k, v, o, gate, up, down, bq, bk, bv;
  };
  void load_weights();
  void global_passes();
  void attention_half(int l, std::vector<float>& x);
  void mlp_half(int l, std::vector<float>& x);
  // Grid + codes for w (its calibration Hessian h), per the options; records the layer in the checkpoint.
  // h may be null when no pass needs calibration (plain round-to-nearest).
  const QuantWeight& quantize_linear(const std::string& prefix, const Tensor& w, const Hessian* h, bool has_bias);
  bool needs_calibration() const {
    return o_.gptq || (o_.clip_search && o_.weight_bits == 4 && !grouped_) || o_.smooth_attention || o_.smooth_linear ||
           (grouped_ && o_.reorder);
  }
  // A quick RTN quantization of w (the α search's stand-in for the final grid).
  QuantWeight rtn(const float* w, int64_t n, int64_t k) const;
  WeightGrid grid_for(const float* w, int64_t n, int64_t k, const Hessian* h) const;
  void attention(const float* q, const float* k, const float* v, float* out);
  // The α of `alpha_grid` whose input scales s = scales_for(α) [k] minimize the consumer's output error
  // ||fq(x ÷ s) Q(W ⊙ s)ᵀ − x Wᵀ||² (W [n, k]) over search_tokens rows of x [M_, k] spread over all windows.
  float search_alpha(const float* x, int64_t k, const Tensor& w,
                     const std::function<std::vector<float>(float)>& scales_for) const;

  const ModelWeights& w_;
  const QuantizeOptions& o_;
  ModelConfig c_;
  QuantizeReport& rep_;
  Timer timer_;
  HeadLayout layout_;
  bool grouped_ = false;
  float alpha_ = 0.05f;
  std::vector<float> ratios_;
  int64_t windows_ = 0, T_ = 0, M_ = 0;
  std::vector<float> inv_freq_;
  Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerW> layers_;
  std::string rotation_desc_ = "off";
  std::vector<float> o_alpha_, down_alpha_;
  io::QoqCheckpoint ck_;
};

void Quantizer::load_weights() {
  embed_ = f32_copy(w_.get("model.embed_tokens.weight"));
  final_norm_ = f32_copy(w_.get("model.norm.weight"));
  lm_head_ = w_.has("lm_head.weight") ? f32_copy(w_.get("lm_head.weight")) : embed_.clone();
  for (int l = 0; l < c_.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    LayerW L;
    L.attn_norm = f32_copy(w_.get(p + ".input_layernorm.weight"));
    L.mlp_norm = f32_copy(w_.get(p + ".post_attention_layernorm.weight"));
    L.q = f32_copy(w_.get(p + ".self_attn.q_proj.weight"));
    L.k = f32_copy(w_.get(p + ".self_attn.k_proj.weight"));
    L.v = f32_copy(w_.get(p + ".self_attn.v_proj.weight"));
    L.o = f32_copy(w_.get(p + ".self_attn.o_proj.weight"));
    L.gate = f32_copy(w_.get(p + ".mlp.gate_proj.weight"));
    L.up = f32_copy(w_.get(p + ".mlp.up_proj.weight"));
    L.down = f32_copy(w_.get(p + ".mlp.down_proj.weight"));
    if (c_.attention_bias) {
      L.bq = f32_copy(w_.get(p + ".self_attn.q_proj.bias"));
      L.bk = f32_copy(w_.get(p + ".self_attn.k_proj.bias"));
      L.bv = f32_copy(w_.get(p + ".self_attn.v_proj.bias"));
    }
    layers_.push_back(std::move(L));
  }
}

void Quantizer::global_passes() {
  if (o_.fuse_norms)
    timer_.run("fuse norms", [&] {
      auto fuse = [](Tensor& gamma, std::initializer_list<Tensor*> readers) {
        for (Tensor* r : readers) fuse_norm(*r, gamma.span<const float>());
        std::fill(gamma.data<float>(), gamma.data<float>() + gamma.numel(), 1.0f);
      };
      for (auto& L : layers_) {
        fuse(L.attn_norm, {&L.q, &L.k, &L.v});
        fuse(L.mlp_norm, {&L.gate, &L.up});
      }
      fuse(final_norm_, {&lm_head_});
    });
  if (o_.rotate)
    timer_.run("rotate", [&] {
      const Rotation r = make_rotation(c_.hidden_size);
      rotation_desc_ = r.describe();
      rotate_reader(embed_, r);
      rotate_reader(lm_head_, r);
      for (auto& L : layers_) {
        for (Tensor* t : {&L.q, &L.k, &L.v, &L.gate, &L.up}) rotate_reader(*t, r);
        rotate_writer(L.o, nullptr, r);
        rotate_writer(L.down, nullptr, r);
      }
    });
}

WeightGrid Quantizer::grid_for(const float* w, int64_t n, int64_t k, const Hessian* h) const {
  if (o_.weight_bits == 8) return w8_grid(w, n, k);
  if (grouped_) return w4_group_grid(w, n, k, o_.group_size);
  if (o_.clip_search && h) return search_clip_w4_per_channel(w, n, k, h, ratios_).grid;
  return w4_per_channel_minmax_grid(w, n, k);
}

QuantWeight Quantizer::rtn(const float* w, int64_t n, int64_t k) const {
  return round_to_grid(grid_for(w, n, k, nullptr), w);
}

const QuantWeight& Quantizer::quantize_linear(const std::string& prefix, const Tensor& w, const Hessian* h,
                                              bool has_bias) {
  const int64_t n = w.dim(0), k = w.dim(1);
  const float* wp = w.data<float>();
  WeightGrid grid = timer_.run(o_.clip_search && !grouped_ && o_.weight_bits == 4 ? "clip search" : "grid",
                               [&] { return grid_for(wp, n, k, h); });
  QuantWeight q = o_.gptq && h ? timer_.run("gptq",
                                            [&] {
                                              GptqOptions g;
                                              g.act_order = o_.act_order;
                                              g.damp = o_.gptq_damp;
                                              g.block = o_.gptq_block;
                                              return gptq_quantize(wp, grid, *h, g);
                                            })
                               : round_to_grid(grid, wp);
  io::QuantLayerInfo info;
  info.format = q.grid.format;
  info.out_features = n;
  info.in_features = k;
  info.k_padded = q.grid.K_pad;
  info.group_size = q.grid.format == WeightFormat::W4Group ? q.grid.group : -1;
  info.has_bias = has_bias;
  ck_.info.layers[prefix] = info;
  return ck_.linears[prefix] = std::move(q);
}

// Causal attention of every calibration window, each its own sequence at positions 0..T-1.
void Quantizer::attention(const float* q, const float* k, const float* v, float* out) {
  const int64_t Q = c_.q_dim(), KV = c_.kv_dim(), D = c_.head_dim;
  const float scale = 1.0f / std::sqrt(float(D));
  for (int64_t w = 0; w < windows_; ++w)
    cpu::attention(q + w * T_ * Q, k + w * T_ * KV, v + w * T_ * KV, out + w * T_ * Q, T_, 0, c_.num_heads,
                   c_.num_kv_heads, D, KV, scale);
}

void rope_windows(float* x, int64_t windows, int64_t T, int64_t heads, int64_t D, const float* inv_freq) {
  for (int64_t w = 0; w < windows; ++w) cpu::rope_apply(x + w * T * heads * D, T, heads, D, 0, inv_freq);
}

float Quantizer::search_alpha(const float* x, int64_t k, const Tensor& w,
                              const std::function<std::vector<float>(float)>& scales_for) const {
  const int64_t n = w.dim(0), m = std::min<int64_t>(o_.search_tokens, M_);
  std::vector<float> xs(size_t(m * k));
  for (int64_t r = 0; r < m; ++r) std::copy_n(x + (r * M_ / m) * k, k, xs.data() + r * k);
  std::vector<float> y_ref(size_t(m * n)), y(size_t(m * n)), xd(xs.size()), ws(size_t(n * k));
  cpu::matmul(xs.data(), w.data<float>(), nullptr, y_ref.data(), m, n, k);
  float alpha = o_.alpha_grid.front();
  double best = INFINITY;
  for (float a : o_.alpha_grid) {
    const std::vector<float> s = scales_for(a);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < k; ++i) ws[size_t(r * k + i)] = w.data<float>()[r * k + i] * s[size_t(i)];
    for (int64_t r = 0; r < m; ++r)
      for (int64_t i = 0; i < k; ++i) xd[size_t(r * k + i)] = xs[size_t(r * k + i)] / s[size_t(i)];
    fq_linear(xd.data(), m, rtn(ws.data(), n, k), nullptr, y.data());
    double e = 0;
    for (size_t i = 0; i < y.size(); ++i) e += double(y[i] - y_ref[i]) * double(y[i] - y_ref[i]);
    if (e < best) best = e, alpha = a;
  }
  return alpha;
}

void Quantizer::attention_half(int l, std::vector<float>& x) {
  LayerW& L = layers_[size_t(l)];
  const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
  const int64_t H = c_.hidden_size, Q = c_.q_dim(), KV = c_.kv_dim(), D = c_.head_dim, M = M_;
  std::vector<float> h(size_t(M * H)), q(size_t(M * Q)), k(size_t(M * KV)), v(size_t(M * KV)), o_in(size_t(M * Q));
  Hessian h_qkv(H);
  timer_.run("calibration forward",
             [&] { cpu::rmsnorm(x.data(), L.attn_norm.data<float>(), h.data(), M, H, c_.rms_norm_eps); });
  timer_.run("hessians", [&] { h_qkv.add(h.data(), M); });

  const bool need_fp = o_.smooth_attention || o_.smooth_linear || (grouped_ && o_.reorder);
  if (need_fp) {
    timer_.run("calibration forward", [&] {
      matmul_t(h.data(), M, L.q, &L.bq, q.data());
      matmul_t(h.data(), M, L.k, &L.bk, k.data());
      matmul_t(h.data(), M, L.v, &L.bv, v.data());
      rope_windows(q.data(), windows_, T_, c_.num_heads, D, inv_freq_.data());
      rope_windows(k.data(), windows_, T_, c_.num_kv_heads, D, inv_freq_.data());
      attention(q.data(), k.data(), v.data(), o_in.data());
    });
    if (o_.smooth_attention)
      timer_.run("smooth attention", [&] {
        const std::vector<float> lambda =
            smooth_attention_scales(col_absmax(k.data(), M, KV), layout_, o_.smooth_attention_alpha);
        apply_smooth_attention(L.q, L.bq.defined() ? &L.bq : nullptr, L.k, L.bk.defined() ? &L.bk : nullptr, lambda,
                               layout_);
      });
    std::vector<float> ranges = col_absmax(o_in.data(), M, Q);
    if (grouped_ && o_.reorder)
      timer_.run("reorder", [&] {
        const std::vector<int32_t> kv_perm = head_channel_order(ranges, layout_);
        apply_attention_reorder(L.v, L.bv.defined() ? &L.bv : nullptr, L.o, kv_perm, layout_);
        const std::vector<int32_t> qp = expand_kv_perm_to_q(kv_perm, layout_);
        permute_cols(o_in, M, Q, qp);
        ranges = permute_vec(ranges, qp);
      });
    if (o_.smooth_linear)
      timer_.run("smooth o_proj", [&] {
        const float alpha = !o_.alpha_search ? alpha_ : search_alpha(o_in.data(), Q, L.o, [&](float a) {
          return expand_kv_to_q(smooth_o_proj_scales(ranges, L.o, layout_, a, 1.0f - a), layout_);
        });
        o_alpha_.push_back(alpha);
        const std::vector<float> s = smooth_o_proj_scales(ranges, L.o, layout_, alpha, 1.0f - alpha);
        apply_smooth_v_o(L.v, L.bv.defined() ? &L.bv : nullptr, L.o, s, layout_);
      });
  }

  // Quantize q/k/v, then recompute the attention through them (and the KV cache quantization) for o_proj.
  const QuantWeight& qq = quantize_linear(p + "q_proj", L.q, &h_qkv, L.bq.defined());
  const QuantWeight& qk = quantize_linear(p + "k_proj", L.k, &h_qkv, L.bk.defined());
  const QuantWeight& qv = quantize_linear(p + "v_proj", L.v, &h_qkv, L.bv.defined());
  Hessian h_o(Q);
  timer_.run("calibration forward", [&] {
    auto bias = [](const Tensor& b) { return b.defined() ? b.data<float>() : nullptr; };
    fq_linear(h.data(), M, qq, bias(L.bq), q.data());
    fq_linear(h.data(), M, qk, bias(L.bk), k.data());
    fq_linear(h.data(), M, qv, bias(L.bv), v.data());
    rope_windows(q.data(), windows_, T_, c_.num_heads, D, inv_freq_.data());
    rope_windows(k.data(), windows_, T_, c_.num_kv_heads, D, inv_freq_.data());
    if (o_.kv_bits < 16) {
      ref::kv_fake_quant(k.data(), M * c_.num_kv_heads, D, o_.kv_bits);
      ref::kv_fake_quant(v.data(), M * c_.num_kv_heads, D, o_.kv_bits);
    }
    attention(q.data(), k.data(), v.data(), o_in.data());
  });
  timer_.run("hessians", [&] { h_o.add(o_in.data(), M); });
  const QuantWeight& qo = quantize_linear(p + "o_proj", L.o, &h_o, false);
  timer_.run("calibration forward", [&] {
    fq_linear(o_in.data(), M, qo, nullptr, h.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += h[i];
  });
}

void Quantizer::mlp_half(int l, std::vector<float>& x) {
  LayerW& L = layers_[size_t(l)];
  const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
  const int64_t H = c_.hidden_size, I = c_.intermediate_size, M = M_;
  std::vector<float> h(size_t(M * H)), g(size_t(M * I)), u(size_t(M * I));
  Hessian h_gu(H);
  timer_.run("calibration forward",
             [&] { cpu::rmsnorm(x.data(), L.mlp_norm.data<float>(), h.data(), M, H, c_.rms_norm_eps); });
  timer_.run("hessians", [&] { h_gu.add(h.data(), M); });

  if (o_.smooth_linear || (grouped_ && o_.reorder)) {
    timer_.run("calibration forward", [&] {
      matmul_t(h.data(), M, L.gate, nullptr, g.data());
      matmul_t(h.data(), M, L.up, nullptr, u.data());
      cpu::silu_mul(g.data(), u.data(), g.data(), M * I);
    });
    std::vector<float> ranges = col_absmax(g.data(), M, I);
    if (grouped_ && o_.reorder)
      timer_.run("reorder", [&] {
        const std::vector<int32_t> perm = ascending_order(ranges);
        apply_mlp_reorder(L.gate, L.up, L.down, perm);
        permute_cols(g, M, I, perm);
        ranges = permute_vec(ranges, perm);
      });
    if (o_.smooth_linear)
      timer_.run("smooth down_proj", [&] {
        const std::vector<float> wmax = column_absmax(L.down);
        const float alpha = !o_.alpha_search ? alpha_ : search_alpha(g.data(), I, L.down, [&](float a) {
          return smooth_linear_scales(ranges, wmax, a, 1.0f - a);
        });
        down_alpha_.push_back(alpha);
        apply_smooth_linear(L.up, nullptr, L.down, smooth_linear_scales(ranges, wmax, alpha, 1.0f - alpha));
      });
  }
  const QuantWeight& qg = quantize_linear(p + "gate_proj", L.gate, &h_gu, false);
  const QuantWeight& qu = quantize_linear(p + "up_proj", L.up, &h_gu, false);
  Hessian h_d(I);
  timer_.run("calibration forward", [&] {
    fq_linear(h.data(), M, qg, nullptr, g.data());
    fq_linear(h.data(), M, qu, nullptr, u.data());
    cpu::silu_mul(g.data(), u.data(), g.data(), M * I);
  });
  timer_.run("hessians", [&] { h_d.add(g.data(), M); });
  const QuantWeight& qd = quantize_linear(p + "down_proj", L.down, &h_d, false);
  timer_.run("calibration forward", [&] {
    fq_linear(g.data(), M, qd, nullptr, h.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += h[i];
  });
}

io::QoqCheckpoint Quantizer::run(std::span<const int32_t> calib, int64_t windows, int64_t T) {
  windows_ = windows;
  T_ = T;
  M_ = windows * T;
  inv_freq_ = cpu::rope_inv_freq(c_);
  timer_.run("load", [&] { load_weights(); });
  global_passes();
  Progress bar("quantize", c_.num_layers, o_.progress);
  if (needs_calibration()) {
    std::vector<float> x(size_t(M_ * c_.hidden_size));
    cpu::embedding(embed_.data<float>(), c_.vocab_size, c_.hidden_size, calib.data(), M_, x.data());
    for (int l = 0; l < c_.num_layers; ++l) {
      attention_half(l, x);
      mlp_half(l, x);
      bar.advance(1, fmt::format("layer {}", l));
    }
  } else {  // round-to-nearest on min/max grids: nothing to calibrate
    for (int l = 0; l < c_.num_layers; ++l) {
      LayerW& L = layers_[size_t(l)];
      const std::string p = "model.layers." + std::to_string(l);
      quantize_linear(p + ".self_attn.q_proj", L.q, nullptr, L.bq.defined());
      quantize_linear(p + ".self_attn.k_proj", L.k, nullptr, L.bk.defined());
      quantize_linear(p + ".self_attn.v_proj", L.v, nullptr, L.bv.defined());
      quantize_linear(p + ".self_attn.o_proj", L.o, nullptr, false);
      quantize_linear(p + ".mlp.gate_proj", L.gate, nullptr, false);
      quantize_linear(p + ".mlp.up_proj", L.up, nullptr, false);
      quantize_linear(p + ".mlp.down_proj", L.down, nullptr, false);
      bar.advance(1, fmt::format("layer {}", l));
    }
  }
  bar.finish();
  // Unquantized tensors. The head is always written untied: fusion and rotation make it differ from the embedding.
  ck_.config = c_;
  ck_.config.tie_word_embeddings = false;
  ck_.float_tensors["model.embed_tokens.weight"] = embed_;
  ck_.float_tensors["model.norm.weight"] = final_norm_;
  ck_.float_tensors["lm_head.weight"] = lm_head_;
  for (int l = 0; l < c_.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    const LayerW& L = layers_[size_t(l)];
    ck_.float_tensors[p + ".input_layernorm.weight"] = L.attn_norm;
    ck_.float_tensors[p + ".post_attention_layernorm.weight"] = L.mlp_norm;
    if (L.bq.defined()) {
      ck_.float_tensors[p + ".self_attn.q_proj.bias"] = L.bq;
      ck_.float_tensors[p + ".self_attn.k_proj.bias"] = L.bk;
      ck_.float_tensors[p + ".self_attn.v_proj.bias"] = L.bv;
    }
  }
  return std::move(ck_);
}

}  // namespace

io::QoqCheckpoint quantize_model(const ModelWeights& w, const Tokenizer& tok, const QuantizeOptions& o,
                                 const std::string& source, QuantizeReport* report) {
  validate(o);
  const ModelConfig& c = w.config;
  QOQ_CHECK_INPUT(o.kv_bits == 16 || c.head_dim % 2 == 0, "--kv-bits {}: head_dim {} must be even", o.kv_bits,
                  c.head_dim);
  QuantizeReport local;
  QuantizeReport& rep = report ? *report : local;
  rep = QuantizeReport{};
  const auto t0 = Clock::now();
  Timer timer(rep);
  const std::vector<int32_t> calib =
      timer.run("calibration data", [&] { return draw_calibration_windows(tok, o.calibration); });
  for (int32_t id : calib)
    QOQ_CHECK_INPUT(id >= 0 && id < c.vocab_size, "calibration: token id {} is outside the model's vocabulary of {}",
                    id, c.vocab_size);
  QOQ_CHECK_INPUT(o.calibration.window_len <= c.max_position_embeddings,
                  "calibration window of {} tokens exceeds max_position_embeddings {}", o.calibration.window_len,
                  c.max_position_embeddings);
  rep.calibration_tokens = int64_t(calib.size());

  Quantizer qz(w, o, rep);
  io::QoqCheckpoint ck = qz.run(calib, o.calibration.windows, o.calibration.window_len);
  ck.tokenizer = w.tokenizer;

  io::QoqInfo& info = ck.info;
  info.weight_bits = o.weight_bits;
  info.group_size = o.weight_bits == 8 ? -1 : o.group_size;
  info.kv_bits = o.kv_bits;
  const bool grouped = o.weight_bits == 4 && o.group_size > 0;
  json passes;
  passes["fuse_norms"] = o.fuse_norms;
  passes["rotate"] = o.rotate ? json(make_rotation(c.hidden_size).describe()) : json(false);
  passes["reorder"] = grouped && o.reorder;
  passes["smooth_attention"] = o.smooth_attention ? json{{"alpha", r4(o.smooth_attention_alpha)}} : json(false);
  if (o.smooth_linear) {
    const float a = o.smooth_alpha >= 0 ? o.smooth_alpha : (grouped ? 0.3f : 0.05f);
    passes["smooth_linear"] = {{"alpha", r4(a)}, {"beta", r4(1.0f - a)}, {"alpha_search", o.alpha_search}};
    if (o.alpha_search) {
      passes["smooth_linear"]["alpha_grid"] = r4(o.alpha_grid);
      passes["smooth_linear"]["search_tokens"] = o.search_tokens;
      passes["smooth_linear"]["o_proj_alpha"] = r4(qz.o_alpha());
      passes["smooth_linear"]["down_proj_alpha"] = r4(qz.down_alpha());
    }
  } else {
    passes["smooth_linear"] = false;
  }
  passes["clip_search"] =
      o.weight_bits == 4 && !grouped && o.clip_search ? json{{"ratios", o.clip_ratios}} : json(false);
  passes["gptq"] =
      o.gptq ? json{{"act_order", o.act_order}, {"damp", r4(o.gptq_damp)}, {"block", o.gptq_block}} : json(false);
  info.passes = passes.dump();
  json cal;
  cal["files"] = o.calibration.files;
  cal["windows"] = o.calibration.windows;
  cal["window_len"] = o.calibration.window_len;
  cal["seed"] = o.calibration.seed;
  info.calibration = cal.dump();
  rep.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  json timing = json::object();
  for (const auto& [n, s] : rep.seconds) timing[n] = std::round(s * 100) / 100;
  timing["total"] = std::round(rep.total_seconds * 100) / 100;
  info.timing = timing.dump();
  info.source_model = source;
  info.source_sha256 = io::sha256_source(source);
  rep.peak_rss_bytes = peak_rss_bytes();
  return ck;
}

}  // namespace qoq::quant
