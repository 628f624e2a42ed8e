// open_model: FP models through load_model + the FP32 linears; QoQ checkpoints through read_qoq_checkpoint + the
// integer (or fake-quant) linears of model/linear_quant.h.
#include "io/qoq_checkpoint.h"
#include "model/linear_quant.h"
#include "qoq/error.h"
#include "qoq/loader.h"

namespace qoq {

OpenedModel open_model(const std::string& path, const OpenOptions& opt) {
  QOQ_CHECK_INPUT(opt.kv_bits == 0 || opt.kv_bits == 4 || opt.kv_bits == 8 || opt.kv_bits == 16,
                  "--kv-bits must be 4, 8 or 16, got {}", opt.kv_bits);
  OpenedModel out;
  if (!io::is_qoq_checkpoint(path)) {
    LoadOptions lo;
    lo.progress = opt.progress;
    const ModelWeights w = load_model(path, lo);
    ModelOptions mo;
    mo.kv_bits = opt.kv_bits ? opt.kv_bits : 16;
    out.model = std::make_unique<Model>(w, make_cpu_f32_linear, mo);
    out.tokenizer = w.tokenizer;
    out.description = fmt::format("FP32 ({}), KV{}", w.source_format, mo.kv_bits);
    return out;
  }
  const io::QoqCheckpoint ck = io::read_qoq_checkpoint(path);
  ModelOptions mo;
  mo.kv_bits = opt.kv_bits ? opt.kv_bits : ck.info.kv_bits;
  const bool integer = opt.exec == OpenOptions::Exec::Integer;
  auto build = [&](const std::string& prefix, int64_t out_f, int64_t in_f, bool bias) -> std::unique_ptr<Linear> {
    auto it = ck.linears.find(prefix);
    if (it == ck.linears.end()) {  // unquantized (lm_head)
      auto w = ck.float_tensors.find(prefix + ".weight");
      QOQ_CHECK_INPUT(w != ck.float_tensors.end(), "{}: no tensor {}.weight", path, prefix);
      Tensor b;
      if (bias) b = ck.float_tensors.at(prefix + ".bias");
      // Stored as F16 in the checkpoint, so the fp16 copy is exact and decode reads half the bytes.
      return make_cpu_f16_linear(prefix, w->second, b);
    }
    const quant::QuantWeight& q = it->second;
    QOQ_CHECK_INPUT(q.grid.N == out_f && q.grid.K == in_f, "{}: linear {} is [{}, {}], the config implies [{}, {}]",
                    path, prefix, q.grid.N, q.grid.K, out_f, in_f);
    Tensor b;
    if (bias) {
      auto bi = ck.float_tensors.find(prefix + ".bias");
      QOQ_CHECK_INPUT(bi != ck.float_tensors.end(), "{}: no tensor {}.bias", path, prefix);
      b = bi->second.dtype() == DType::F32 ? bi->second : bi->second.to(DType::F32);
    }
    const float* bp = b.defined() ? b.data<float>() : nullptr;
    return integer ? make_cpu_int_linear(prefix, q, bp) : make_cpu_fake_quant_linear(prefix, q, bp);
  };
  out.model = std::make_unique<Model>(ck.config, ck.float_tensors, build, mo, path);
  out.tokenizer = ck.tokenizer;
  const std::string g = ck.info.weight_bits == 8
                            ? ""
                            : (ck.info.group_size > 0 ? fmt::format(" g{}", ck.info.group_size) : " per-channel");
  out.description =
      fmt::format("QoQ W{}A8KV{}{}, {} path", ck.info.weight_bits, mo.kv_bits, g, integer ? "integer" : "fake-quant");
  return out;
}

}  // namespace qoq
