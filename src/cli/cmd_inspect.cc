// qoq inspect FILE: what a checkpoint holds: format, every ModelConfig field, tokenizer, and the tensors as
// stored (GGUF: ggml types, GGUF names; safetensors: per file; llama2.c: the imported F32 tensors).
#include <cstdio>
#include <filesystem>

#include "cli/command.h"
#include "io/gguf.h"
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

int run_inspect(const std::string& path) {
  namespace fs = std::filesystem;
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
                sub.add_option("file", *path, "GGUF file, HF safetensors directory or llama2.c .bin")->required();
                return [path] { return run_inspect(*path); };
              }}};

}  // namespace
}  // namespace qoq::cli
