// Writes the small seed corpora of the fuzzers into <out>/<target>/ (usage: fuzz_make_corpus fuzz/corpus).
// Seeds are tiny valid files of each format plus a few near-misses, so the fuzzers start deep in the parsers.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/gguf_writer.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using qoq::io::GgufWriter;

namespace {

void put(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
void put(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

void gguf_seeds(const fs::path& dir) {
  // A complete tiny llama: hidden 4, 1 layer, 2 heads / 1 kv head, ffn 4, vocab 3; mixed tensor types.
  GgufWriter w(3, 32);
  w.add("general.architecture", GgufWriter::str("llama"));
  w.add("general.alignment", GgufWriter::u32(32));
  for (const char* k : {"llama.embedding_length", "llama.feed_forward_length"}) w.add(k, GgufWriter::u32(4));
  w.add("llama.block_count", GgufWriter::u32(1));
  w.add("llama.attention.head_count", GgufWriter::u32(2));
  w.add("llama.attention.head_count_kv", GgufWriter::u32(1));
  w.add("llama.context_length", GgufWriter::u32(16));
  w.add("llama.rope.freq_base", GgufWriter::f32(10000.0f));
  w.add("llama.attention.layer_norm_rms_epsilon", GgufWriter::f32(1e-5f));
  w.add("tokenizer.ggml.tokens", GgufWriter::str_array({"a", "b", "c"}));
  w.add("tokenizer.ggml.bos_token_id", GgufWriter::u32(1));
  w.add("nested", GgufWriter::array(qoq::kGgufArray, {GgufWriter::array(qoq::kGgufI32, {GgufWriter::i32(-1)})}));
  auto f32 = [&](const std::string& n, std::vector<int64_t> shape) {
    int64_t k = 1;
    for (int64_t d : shape) k *= d;
    w.add_f32(n, shape, std::vector<float>(size_t(k), 0.25f));
  };
  f32("token_embd.weight", {3, 4});
  f32("output_norm.weight", {4});
  f32("blk.0.attn_norm.weight", {4});
  f32("blk.0.ffn_norm.weight", {4});
  f32("blk.0.attn_q.weight", {4, 4});
  f32("blk.0.attn_k.weight", {2, 4});
  f32("blk.0.attn_v.weight", {2, 4});
  f32("blk.0.attn_output.weight", {4, 4});
  f32("blk.0.ffn_gate.weight", {4, 4});
  f32("blk.0.ffn_up.weight", {4, 4});
  f32("blk.0.ffn_down.weight", {4, 4});
  put(dir / "tiny_llama.gguf", w.bytes());

  GgufWriter q(2, 32);  // v2, one tensor of each supported quantized type
  q.add_tensor("q4_0", {32, 1}, qoq::kGgmlQ4_0, std::vector<uint8_t>(18, 0x37));
  q.add_tensor("q4_1", {32, 1}, qoq::kGgmlQ4_1, std::vector<uint8_t>(20, 0x3a));
  q.add_tensor("q8_0", {32, 1}, qoq::kGgmlQ8_0, std::vector<uint8_t>(34, 0x81));
  q.add_tensor("f16", {2}, qoq::kGgmlF16, {0, 0x3c, 0, 0xc0});
  q.add_tensor("bf16", {2}, qoq::kGgmlBF16, {0x80, 0x3f, 0, 0});
  q.add("b", GgufWriter::boolean(true));
  q.add("d", {0.5, qoq::kGgufF64});
  put(dir / "quant_types.gguf", q.bytes());
}

void safetensors_seeds(const fs::path& dir) {
  qoq::io::TensorMap m;
  m["a"] = qoq::Tensor::zeros(qoq::DType::F32, {2, 2});
  m["b"] = qoq::Tensor::zeros(qoq::DType::BF16, {3});
  m["c"] = qoq::Tensor::zeros(qoq::DType::U8, {0});
  m["d"] = qoq::Tensor::zeros(qoq::DType::I32, {});
  qoq::io::write_safetensors((dir / "small.safetensors").string(), m, {{"format", "pt"}});
  const std::string h = R"({"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"y":{"dtype":"I8","shape":[1],)"
                        R"("data_offsets":[4,5]}})";
  std::vector<uint8_t> b(8);
  const uint64_t n = h.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), {1, 2, 3, 4, 5});
  put(dir / "unpadded.safetensors", b);
}

void llama2c_seeds(const fs::path& dir) {
  // dim 4, hidden 4, 1 layer, 2 heads, 1 kv head, vocab 3 (shared and unshared), seq_len 2.
  for (int32_t vocab : {3, -3}) {
    const int32_t hdr[7] = {4, 4, 1, 2, 1, vocab, 2};
    const int64_t floats = 12 + 4 + 16 + 2 * 2 * 4 + 16 + 4 + 3 * 16 + 4 + 2 * 2 + (vocab < 0 ? 12 : 0);
    std::vector<uint8_t> b(28 + size_t(floats) * 4);
    std::memcpy(b.data(), hdr, 28);
    for (int64_t i = 0; i < floats; ++i) {
      const float v = float(i) / 8.0f;
      std::memcpy(b.data() + 28 + i * 4, &v, 4);
    }
    put(dir / (vocab > 0 ? "shared.bin" : "unshared.bin"), b);
  }
}

void hf_config_seeds(const fs::path& dir) {
  put(dir / "llama3.json",
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,)"
      R"("num_key_value_heads":2,"intermediate_size":128,"vocab_size":100,"max_position_embeddings":256,)"
      R"("rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,)"
      R"("high_freq_factor":4.0,"original_max_position_embeddings":128},"rms_norm_eps":1e-05,)"
      R"("tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":[2,3],"hidden_act":"silu"})");
  put(dir / "qwen2.json",
      R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,)"
      R"("intermediate_size":64,"vocab_size":50,"sliding_window":4096,"use_sliding_window":false,)"
      R"("rope_scaling":{"type":"linear","factor":2.0},"eos_token_id":7})");
  put(dir / "mistral.json",
      R"({"model_type":"mistral","hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,"head_dim":8,)"
      R"("intermediate_size":64,"vocab_size":50,"sliding_window":null})");
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path out = argc > 1 ? argv[1] : "fuzz/corpus";
  const std::pair<const char*, void (*)(const fs::path&)> targets[] = {{"fuzz_gguf", gguf_seeds},
                                                                       {"fuzz_safetensors", safetensors_seeds},
                                                                       {"fuzz_llama2c", llama2c_seeds},
                                                                       {"fuzz_hf_config", hf_config_seeds}};
  for (const auto& [name, make] : targets) {
    fs::create_directories(out / name);
    make(out / name);
  }
  return 0;
}
