// qoq inspect FILE: what a checkpoint holds: format, every ModelConfig field, tokenizer, and the tensors as
// stored (GGUF: ggml types, GGUF names; safetensors: per file; llama2.c: the imported F32 tensors). A QoQ
// checkpoint directory gets its quantization summary instead, read from qoq.json and the safetensors headers only
// (nothing is dequantized, so it is instant even for large models).
#include <cstdio>
#include <filesystem>
#include <map>
#include <vector>

#include "cli/command.h"
#include "io/gguf.h"
#include "io/qoq_checkpoint.h"
#include "io/safetensors.h"
#include "qoq/model_weights.h"

namespace qoq::cli {
namespace {

const char* rope_type_name(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::None:
      return "none";
    case RopeScaling::Type::Linear:
      return "linear";
    case RopeScaling::Type::Llama3:
      return "llama3";
  }
  return "?";
}

const char* tokenizer_kind_name(TokenizerSource::Kind k) {
  switch (k) {
    case TokenizerSource::Kind::None:
      return "none";
    case TokenizerSource::Kind::Llama2c:
      return "llama2.c (SentencePiece-style BPE)";
    case TokenizerSource::Kind::SentencePiece:
      return "SentencePiece model";
    case TokenizerSource::Kind::HfJson:
      return "tokenizer.json (byte-level BPE)";
    case TokenizerSource::Kind::Gguf:
      return "GGUF metadata";
  }
  return "?";
}

void print_config(const ModelConfig& c) {
  std::printf("config:\n");
  std::printf("  architecture             %s\n", c.architecture.c_str());
  std::printf("  model_type               %s\n", c.model_type.c_str());
  std::printf("  hidden_size              %d\n", c.hidden_size);
  std::printf("  num_layers               %d\n", c.num_layers);
  std::printf("  num_heads                %d\n", c.num_heads);
  std::printf("  num_kv_heads             %d\n", c.num_kv_heads);
  std::printf("  head_dim                 %d\n", c.head_dim);
  std::printf("  intermediate_size        %d\n", c.intermediate_size);
  std::printf("  vocab_size               %d\n", c.vocab_size);
  std::printf("  max_position_embeddings  %d\n", c.max_position_embeddings);
  std::printf("  rope_theta               %g\n", double(c.rope_theta));
  std::printf("  rope_scaling             %s", rope_type_name(c.rope_scaling.type));
  if (c.rope_scaling.type == RopeScaling::Type::Linear) std::printf(" (factor %g)", double(c.rope_scaling.factor));
  if (c.rope_scaling.type == RopeScaling::Type::Llama3)
    std::printf(" (factor %g, low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %d)",
                double(c.rope_scaling.factor), double(c.rope_scaling.low_freq_factor),
                double(c.rope_scaling.high_freq_factor), c.rope_scaling.original_max_position_embeddings);
  std::printf("\n");
  std::printf("  rms_norm_eps             %g\n", double(c.rms_norm_eps));
  std::printf("  tie_word_embeddings      %s\n", c.tie_word_embeddings ? "true" : "false");
  std::printf("  attention_bias           %s\n", c.attention_bias ? "true" : "false");
  std::printf("  bos_token_id             %d\n", c.bos_token_id);
  std::printf("  eos_token_ids           ");
  for (int id : c.eos_token_ids) std::printf(" %d", id);
  std::printf("%s\n", c.eos_token_ids.empty() ? " (none)" : "");
}

struct Row {
  std::string name, dtype, shape;
  uint64_t bytes = 0, numel = 0;
};

void print_tensors(const std::string& title, const std::vector<Row>& rows) {
  std::printf("tensors (%s): %zu\n", title.c_str(), rows.size());
  uint64_t bytes = 0, numel = 0;
  for (const Row& r : rows) {
    std::printf("  %-52s %-5s %-16s %12llu bytes\n", r.name.c_str(), r.dtype.c_str(), r.shape.c_str(),
                (unsigned long long)r.bytes);
    bytes += r.bytes;
    numel += r.numel;
  }
  std::printf("total: %zu tensors, %llu parameters, %llu bytes (%.1f MiB)\n", rows.size(), (unsigned long long)numel,
              (unsigned long long)bytes, double(bytes) / (1 << 20));
}

std::string or_none(const std::string& s) { return s.empty() ? "(not recorded)" : s; }

int run_inspect_qoq(const std::string& path) {
  namespace fs = std::filesystem;
  const io::QoqCheckpointLayout L = io::read_qoq_checkpoint_layout(path);
  const io::QoqInfo& info = L.info;
  std::printf("file: %s\nformat: qoq checkpoint (qoq.json version %d)\n", path.c_str(), info.version);
  print_config(L.config);
  std::printf("quantization:\n");
  std::printf("  weight_bits              %d\n", info.weight_bits);
  std::printf("  group_size               %d%s\n", info.group_size, info.group_size < 0 ? " (per-channel)" : "");
  std::printf("  kv_bits                  %d\n", info.kv_bits);
  std::printf("  passes                   %s\n", info.passes.c_str());
  std::printf("  calibration              %s\n", info.calibration.c_str());
  std::printf("  timing                   %s\n", info.timing.c_str());
  std::printf("  source                   %s\n", or_none(info.source_model).c_str());
  std::printf("  source sha256            %s\n", or_none(info.source_sha256).c_str());
  std::printf("tokenizer: %s%s%s\n", tokenizer_kind_name(L.tokenizer.kind), L.tokenizer.path.empty() ? "" : " at ",
              L.tokenizer.path.c_str());
  std::printf("chat template: %s\n", L.tokenizer.chat_template.empty()
                                         ? "none"
                                         : fmt::format("{} chars", L.tokenizer.chat_template.size()).c_str());
  std::printf("weight files:\n");
  for (const std::string& f : L.weight_files) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(path) / f, ec);
    std::printf("  %-40s %14llu bytes\n", f.c_str(), ec ? 0ull : (unsigned long long)size);
  }

  // Per-format counts, and the layers that are not stored as asked (another format or group, or padded K).
  const quant::WeightFormat requested = info.weight_bits == 8 ? quant::WeightFormat::W8PerChannel
                                        : info.group_size > 0 ? quant::WeightFormat::W4Group
                                                              : quant::WeightFormat::W4PerChannel;
  std::map<std::string, int> per_format;
  std::vector<std::string> differing;
  uint64_t packed_bytes = 0, fp16_bytes = 0, weights = 0;
  for (const auto& [name, l] : info.layers) {
    ++per_format[io::weight_format_json_name(l.format)];
    const bool other = l.format != requested ||
                       (requested == quant::WeightFormat::W4Group && l.group_size != info.group_size);
    if (other || l.k_padded != l.in_features) {
      std::string d = fmt::format("{:<48} {}", name, io::weight_format_json_name(l.format));
      if (l.group_size > 0) d += fmt::format(" g{}", l.group_size);
      if (l.k_padded != l.in_features) d += fmt::format(", in_features {} padded to {}", l.in_features, l.k_padded);
      differing.push_back(d);
    }
    for (const char* field : {"qweight", "scales", "zeros", "group_scales", "group_zeros", "weight"})
      if (auto it = L.tensors.find(name + "." + field); it != L.tensors.end()) packed_bytes += it->second.nbytes;
    weights += uint64_t(l.out_features * l.in_features);
    fp16_bytes += 2 * uint64_t(l.out_features * l.in_features);
  }
  std::printf("quantized linears: %zu\n", info.layers.size());
  for (const char* f : {"w4_per_channel", "w4_group", "w8_per_channel"})
    std::printf("  %-22s %d\n", f, per_format.count(f) ? per_format[f] : 0);
  std::printf("layers differing from the requested %s%s: %zu\n", io::weight_format_json_name(requested),
              requested == quant::WeightFormat::W4Group ? fmt::format(" g{}", info.group_size).c_str() : "",
              differing.size());
  for (const std::string& d : differing) std::printf("  %s\n", d.c_str());
  uint64_t float_bytes = 0, total = 0;
  for (const auto& [name, t] : L.tensors) total += t.nbytes;
  float_bytes = total - packed_bytes;
  std::printf("quantized weights: %llu bytes (%.1f MiB, %.2f bits per weight incl. scales and zeros)\n",
              (unsigned long long)packed_bytes, double(packed_bytes) / (1 << 20),
              weights ? 8.0 * double(packed_bytes) / double(weights) : 0.0);
  std::printf("fp16 equivalent:   %llu bytes (%.1f MiB): %.2fx smaller\n", (unsigned long long)fp16_bytes,
              double(fp16_bytes) / (1 << 20), packed_bytes ? double(fp16_bytes) / double(packed_bytes) : 0.0);
  std::printf("float tensors (embeddings, norms, lm_head, biases; F16): %llu bytes (%.1f MiB)\n",
              (unsigned long long)float_bytes, double(float_bytes) / (1 << 20));
  std::printf("total: %zu tensors, %llu bytes (%.1f MiB)\n", L.tensors.size(), (unsigned long long)total,
              double(total) / (1 << 20));
  return 0;
}

int run_inspect(const std::string& path) {
  namespace fs = std::filesystem;
  if (io::is_qoq_checkpoint(path)) return run_inspect_qoq(path);
  LoadOptions lo;
  lo.progress = false;
  const ModelWeights w = load_model(path, lo);
  std::printf("file: %s\nformat: %s\n", path.c_str(), w.source_format.c_str());
  print_config(w.config);
  std::printf("tokenizer: %s%s%s\n", tokenizer_kind_name(w.tokenizer.kind), w.tokenizer.path.empty() ? "" : " at ",
              w.tokenizer.path.c_str());
  std::printf("chat template: %s\n", w.tokenizer.chat_template.empty()
                                         ? "none"
                                         : fmt::format("{} chars", w.tokenizer.chat_template.size()).c_str());

  std::vector<Row> rows;
  if (w.source_format == "gguf") {
    const GgufFile g = GgufFile::open(path);
    std::printf("gguf version: %u, %zu metadata keys\n", g.version(), g.metadata().size());
    for (const auto& t : g.tensors()) {
      Shape hf(t.dims.rbegin(), t.dims.rend());
      rows.push_back({t.name, ggml_type_name(t.type), shape_str(hf), t.nbytes, uint64_t(shape_numel(hf))});
    }
    print_tensors("as stored in the GGUF file", rows);
  } else if (w.source_format == "safetensors") {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.path().extension() != ".safetensors") continue;
      const io::SafetensorsFile f = io::SafetensorsFile::open(entry.path().string());
      for (const auto& [name, t] : f.tensors())
        rows.push_back({entry.path().filename().string() + ": " + name, dtype_name(t.dtype()), shape_str(t.shape()),
                        t.nbytes(), uint64_t(t.numel())});
    }
    print_tensors("as stored in the safetensors files", rows);
  } else {
    for (const auto& [name, t] : w.tensors)
      rows.push_back({name, dtype_name(t.dtype()), shape_str(t.shape()), t.nbytes(), uint64_t(t.numel())});
    print_tensors("as imported, HF names", rows);
  }
  return 0;
}

Register reg{{"inspect", "Show what a checkpoint holds: format, config, tokenizer, tensors",
              [](CLI::App& sub) -> std::function<int()> {
                auto path = std::make_shared<std::string>();
                sub.add_option("file", *path, "GGUF file, HF safetensors directory, llama2.c .bin or QoQ checkpoint directory")->required();
                return [path] { return run_inspect(*path); };
              }}};

}  // namespace
}  // namespace qoq::cli
