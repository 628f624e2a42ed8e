// The Llama-family forward pass (Llama, Mistral, Qwen2, SmolLM): a Model built once from ModelWeights, a
// KVCache per sequence, and forward(tokens, cache) -> logits. The FP32 CPU backend is the reference;
// linear layers go through the small Linear interface so a quantized or CUDA backend can be plugged in.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qoq/model_config.h"
#include "qoq/model_weights.h"
#include "qoq/tensor.h"

namespace qoq {

// y[m, out] = x[m, in] * W^T (+ bias). Activations are FP32 row-major on the CPU.
class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual void forward(const float* x, int64_t m, float* y) const = 0;
};

// Builds a Linear from an HF weight [out, in] (any float dtype) and an optional bias [out] (undefined Tensor
// when absent). `name` is the HF tensor name, so a backend can pick per layer. The default is FP32 on the CPU.
using LinearFactory =
    std::function<std::unique_ptr<Linear>(const std::string& name, const Tensor& weight, const Tensor& bias)>;
std::unique_ptr<Linear> make_cpu_f32_linear(const std::string& name, const Tensor& weight, const Tensor& bias);
// The same with the weight held in fp16 (converted once; exact for weights that are fp16 values, e.g. a QoQ
// checkpoint's lm_head): half the bytes per decode step, the FP32 result up to summation order.
std::unique_ptr<Linear> make_cpu_f16_linear(const std::string& name, const Tensor& weight, const Tensor& bias);

// Builds the linear with HF prefix `prefix` (e.g. "model.layers.0.self_attn.q_proj", or "lm_head") of shape
// [out, in], with a bias when `bias` is set: the general hook, used for quantized checkpoints whose linears are not
// float tensors.
using LinearBuilder =
    std::function<std::unique_ptr<Linear>(const std::string& prefix, int64_t out, int64_t in, bool bias)>;

struct ModelOptions {
  // 16: the cache holds the float keys/values. 4 or 8: each key (after RoPE) and value entering the cache is
  // quantized per token and KV head and the cache holds x̂, the dequantized stored value (DESIGN §3; the same
  // numbers as dequantizing packed codes, see kernels/cpu/kv_quant.h). Attention always reads the cache, so the
  // current tokens attend over their own x̂ too.
  int kv_bits = 16;
};

// The keys and values of one sequence, every layer, positions [0, size()). Capacity is fixed at creation.
class KVCache {
 public:
  KVCache(const ModelConfig& config, int capacity);
  int capacity() const { return capacity_; }
  int size() const { return size_; }  // positions filled
  void clear() { size_ = 0; }
  // Drops positions >= n (n <= size()), e.g. to re-run a suffix.
  void truncate(int n);

  // Layer l rows: [capacity, kv_dim] each.
  float* keys(int layer) { return k_[size_t(layer)].get(); }
  float* values(int layer) { return v_[size_t(layer)].get(); }
  int64_t row_stride() const { return kv_dim_; }
  void advance(int n) { size_ += n; }

 private:
  int capacity_ = 0, size_ = 0;
  int64_t kv_dim_ = 0;
  // Uninitialized: rows are written before they are read, and untouched pages of a long context cost nothing.
  std::vector<std::unique_ptr<float[]>> k_, v_;
};

class Model {
 public:
  enum class Logits { Last, All };

  // Takes the tensors of `weights` (sharing their storage; FP32 copies are made for other dtypes).
  // Throws InputError naming a missing or misshaped tensor.
  explicit Model(const ModelWeights& weights, const LinearFactory& linear_factory = make_cpu_f32_linear,
                 const ModelOptions& options = {});
  // From a config, the unquantized tensors (embeddings, norms, and any float linear weights the builder reads) and a
  // builder for every linear (lm_head too, as "lm_head"). `source` names the origin in errors.
  Model(const ModelConfig& config, const std::map<std::string, Tensor>& float_tensors, const LinearBuilder& build,
        const ModelOptions& options, const std::string& source);
  ~Model();
  Model(Model&&) noexcept;

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }

  // A cache for one sequence; context 0 means config().max_position_embeddings.
  KVCache new_cache(int context = 0) const;

  // Runs `tokens` at positions cache.size() .. cache.size() + n - 1 (appending their keys/values) and returns
  // logits F32 [n, vocab] (Logits::All) or [1, vocab] for the last token. Exceeding the cache capacity is an
  // InputError naming the capacity. A batch of n tokens gives the same logits as n single-token calls.
  Tensor forward(std::span<const int32_t> tokens, KVCache& cache, Logits which = Logits::Last) const;

  // Like forward, but returns the final-normed hidden states F32 [n, hidden]; apply lm_head() to any rows.
  Tensor forward_hidden(std::span<const int32_t> tokens, KVCache& cache) const;
  // logits [m, vocab] of hidden rows [m, hidden].
  void lm_head(const float* hidden, int64_t m, float* logits) const;

 private:
  struct Layer;
  void init(const std::map<std::string, Tensor>& tensors, const LinearBuilder& build, const std::string& source);

  ModelConfig config_;
  ModelOptions options_;
  Tensor embed_;       // [vocab, hidden] F32
  Tensor final_norm_;  // [hidden]
  std::unique_ptr<Linear> lm_head_;
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;
};

}  // namespace qoq
