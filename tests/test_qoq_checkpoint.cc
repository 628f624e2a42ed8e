// QoQ checkpoint directory (DESIGN §5): exact write/read round trips for every weight format, strict qoq.json
// parsing, one negative test per contradiction the reader must catch (each naming the file and the tensor or
// field), all-or-nothing writes, tokenizer copies that encode like the original, and SHA-256 helpers.
#include "io/qoq_checkpoint.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/gguf_writer.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "io_test_util.h"
#include "qoq/tokenizer.h"
#include "quant_test_util.h"

namespace qoq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using qoq::testing::expect_input_error;
using qoq::testing::read_bytes;
using qoq::testing::TempDir;
using qoq::testing::write_bytes;
using qoq::testing::write_text;
using quant::WeightFormat;

ModelConfig tiny_config(bool bias = false, bool tied = false) {
  ModelConfig c;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 172;  // not a multiple of 128: down_proj g128 pads K to 256
  c.vocab_size = 64;
  c.max_position_embeddings = 128;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.attention_bias = bias;
  c.tie_word_embeddings = tied;
  if (bias) {
    c.architecture = "Qwen2ForCausalLM";
    c.model_type = "qwen2";
  }
  c.validate("tiny_config");
  return c;
}

Tensor rand_tensor(const Shape& shape, uint32_t seed) {
  return Tensor::from_vector(quant_test::randn(size_t(shape_numel(shape)), seed, 0.5f), shape);
}

// A mix of every format: group 128 (with padding), group 32, per-channel and W8.
WeightFormat format_for(const std::string& name, int64_t* group) {
  *group = 0;
  if (name.find("layers.1.mlp.down_proj") != std::string::npos) return WeightFormat::W8PerChannel;
  if (name.find("gate_proj") != std::string::npos || name.find("up_proj") != std::string::npos)
    return WeightFormat::W4PerChannel;
  *group = name.find("layers.1.") != std::string::npos ? 32 : 128;
  return WeightFormat::W4Group;
}

io::QoqCheckpoint tiny_checkpoint(bool bias = false, bool tied = false) {
  io::QoqCheckpoint ck;
  ck.config = tiny_config(bias, tied);
  const ModelConfig& c = ck.config;
  ck.info.weight_bits = 4;
  ck.info.group_size = 128;
  ck.info.kv_bits = 4;
  ck.info.passes = R"({"fuse_norms":true,"rotate":{"kind":"hadamard"},"smooth_attention":{"alpha":0.5}})";
  ck.info.calibration = R"({"files":["a.txt"],"windows":4,"window_len":16,"seed":1234})";
  ck.info.timing = R"({"gptq":1.25})";
  ck.info.source_model = "/models/tiny";
  ck.info.source_sha256 = io::sha256_hex("tiny");
  uint32_t seed = 1;
  ck.float_tensors["model.embed_tokens.weight"] = rand_tensor({c.vocab_size, c.hidden_size}, seed++);
  ck.float_tensors["model.norm.weight"] = rand_tensor({c.hidden_size}, seed++);
  if (!tied) ck.float_tensors["lm_head.weight"] = rand_tensor({c.vocab_size, c.hidden_size}, seed++);
  for (int i = 0; i < c.num_layers; ++i) {
    ck.float_tensors[fmt::format("model.layers.{}.input_layernorm.weight", i)] = rand_tensor({c.hidden_size}, seed++);
    ck.float_tensors[fmt::format("model.layers.{}.post_attention_layernorm.weight", i)] =
        rand_tensor({c.hidden_size}, seed++);
  }
  for (const auto& [name, nk] : io::expected_linears(c)) {
    const auto [N, K] = nk;
    const std::vector<float> w = quant_test::randn(size_t(N * K), seed++, 0.05f);
    int64_t group;
    const WeightFormat f = format_for(name, &group);
    const quant::WeightGrid grid = f == WeightFormat::W4Group        ? quant::w4_group_grid(w.data(), N, K, group)
                                   : f == WeightFormat::W4PerChannel ? quant::w4_per_channel_minmax_grid(w.data(), N, K)
                                                                     : quant::w8_grid(w.data(), N, K);
    ck.linears[name] = quant::round_to_grid(grid, w.data());
    if (bias && name.find("self_attn") != std::string::npos && name.find("o_proj") == std::string::npos)
      ck.float_tensors[name + ".bias"] = rand_tensor({N}, seed++);
  }
  return ck;
}

void expect_same_quant(const quant::QuantWeight& a, const quant::QuantWeight& b, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(a.grid.format, b.grid.format);
  EXPECT_EQ(a.grid.N, b.grid.N);
  EXPECT_EQ(a.grid.K, b.grid.K);
  EXPECT_EQ(a.grid.K_pad, b.grid.K_pad);
  EXPECT_EQ(a.grid.group, b.grid.group);
  EXPECT_EQ(a.grid.scales, b.grid.scales);
  EXPECT_EQ(a.grid.zeros, b.grid.zeros);
  EXPECT_EQ(a.grid.gscales, b.grid.gscales);
  EXPECT_EQ(a.grid.gzeros, b.grid.gzeros);
  EXPECT_EQ(a.codes, b.codes);
}

void expect_same_checkpoint(const io::QoqCheckpoint& w, const io::QoqCheckpoint& r) {
  EXPECT_EQ(r.config.to_hf_json(), w.config.to_hf_json());
  EXPECT_EQ(r.info.version, w.info.version);
  EXPECT_EQ(r.info.weight_bits, w.info.weight_bits);
  EXPECT_EQ(r.info.group_size, w.info.group_size);
  EXPECT_EQ(r.info.kv_bits, w.info.kv_bits);
  EXPECT_EQ(json::parse(r.info.passes), json::parse(w.info.passes));
  EXPECT_EQ(json::parse(r.info.calibration), json::parse(w.info.calibration));
  EXPECT_EQ(json::parse(r.info.timing), json::parse(w.info.timing));
  EXPECT_EQ(r.info.source_model, w.info.source_model);
  EXPECT_EQ(r.info.source_sha256, w.info.source_sha256);
  ASSERT_EQ(r.linears.size(), w.linears.size());
  for (const auto& [name, q] : w.linears) {
    ASSERT_TRUE(r.linears.count(name)) << name;
    expect_same_quant(q, r.linears.at(name), name);
    const io::QuantLayerInfo& l = r.info.layers.at(name);
    EXPECT_EQ(l.format, q.grid.format);
    EXPECT_EQ(l.k_padded, q.grid.K_pad);
    EXPECT_EQ(l.has_bias, w.float_tensors.count(name + ".bias") != 0);
  }
  ASSERT_EQ(r.float_tensors.size(), w.float_tensors.size());
  for (const auto& [name, t] : w.float_tensors) {
    ASSERT_TRUE(r.float_tensors.count(name)) << name;
    const Tensor& got = r.float_tensors.at(name);
    ASSERT_EQ(got.dtype(), DType::F32) << name;
    ASSERT_EQ(got.shape(), t.shape()) << name;
    const Tensor want = t.to(DType::F16).to(DType::F32);
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << name;
  }
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Rewrites model.safetensors of `dir` after `edit` changes its tensors (copied out of the mapping first).
template <typename Fn>
void rewrite_weights(const std::string& dir, Fn&& edit) {
  const std::string path = dir + "/model.safetensors";
  io::TensorMap t;
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  for (const auto& [name, v] : f.tensors()) t[name] = v.clone();
  edit(t);
  io::write_safetensors(path, t, {{"format", "qoq"}});
}

template <typename Fn>
void edit_json(const std::string& path, Fn&& edit) {
  json j = json::parse(io::read_text_file(path));
  edit(j);
  write_text(path, j.dump(2));
}

// A written tiny checkpoint in a fresh temp dir.
struct Written {
  TempDir tmp;
  std::string dir;
  io::QoqCheckpoint ckpt;
  Written(bool bias = false, bool tied = false) : dir(tmp.file("ckpt")), ckpt(tiny_checkpoint(bias, tied)) {
    io::write_qoq_checkpoint(dir, ckpt);
  }
  std::string file(const std::string& f) const { return dir + "/" + f; }
};

// ---- round trips ----

TEST(QoqCheckpoint, RoundTripIsExactForEveryFormat) {
  Written w;
  EXPECT_TRUE(io::is_qoq_checkpoint(w.dir));
  EXPECT_FALSE(io::is_qoq_checkpoint(w.file("qoq.json")));
  EXPECT_EQ(dir_entries(w.dir), (std::vector<std::string>{"config.json", "model.safetensors", "qoq.json"}));
  EXPECT_EQ(dir_entries(w.tmp.path()), (std::vector<std::string>{"ckpt"})) << "no temp dir may linger";
  const io::QoqCheckpoint r = io::read_qoq_checkpoint(w.dir);
  expect_same_checkpoint(w.ckpt, r);
  EXPECT_EQ(r.path, w.dir);
  EXPECT_EQ(r.tokenizer.kind, TokenizerSource::Kind::None);
  // The padded layer is recorded as such.
  const io::QuantLayerInfo& down = r.info.layers.at("model.layers.0.mlp.down_proj");
  EXPECT_EQ(down.format, WeightFormat::W4Group);
  EXPECT_EQ(down.in_features, 172);
  EXPECT_EQ(down.k_padded, 256);
  EXPECT_EQ(down.group_size, 128);
  EXPECT_EQ(r.info.layers.at("model.layers.1.mlp.down_proj").format, WeightFormat::W8PerChannel);
  EXPECT_EQ(r.info.layers.at("model.layers.0.mlp.up_proj").group_size, -1);
}

TEST(QoqCheckpoint, RoundTripWithBiasAndTiedEmbeddings) {
  Written w(/*bias=*/true, /*tied=*/true);
  const io::QoqCheckpoint r = io::read_qoq_checkpoint(w.dir);
  expect_same_checkpoint(w.ckpt, r);
  EXPECT_TRUE(r.info.layers.at("model.layers.1.self_attn.k_proj").has_bias);
  EXPECT_FALSE(r.info.layers.at("model.layers.1.self_attn.o_proj").has_bias);
  EXPECT_FALSE(r.float_tensors.count("lm_head.weight"));
}

TEST(QoqCheckpoint, ShardedWeightsReadThroughTheIndex) {
  Written w;
  const std::string single = w.file("model.safetensors");
  io::TensorMap t;
  const io::SafetensorsFile sf = io::SafetensorsFile::open(single);
  for (const auto& [name, v] : sf.tensors()) t[name] = v.clone();
  fs::remove(single);
  const auto files = io::write_safetensors_sharded(w.dir, t, {}, 8192);
  ASSERT_GT(files.size(), 2u);
  expect_same_checkpoint(w.ckpt, io::read_qoq_checkpoint(w.dir));
  const io::QoqCheckpointLayout L = io::read_qoq_checkpoint_layout(w.dir);
  EXPECT_EQ(L.weight_files.front(), "model.safetensors.index.json");
  EXPECT_EQ(L.weight_files.size(), files.size());
  // A shard holding a tensor its index does not list is not what was written.
  const std::string shard = w.file(L.tensors.at("model.norm.weight").file);
  io::TensorMap s;
  {
    const io::SafetensorsFile f = io::SafetensorsFile::open(shard);
    for (const auto& [name, v] : f.tensors()) s[name] = v.clone();
  }
  s["stowaway"] = Tensor::zeros(DType::F16, {4});
  io::write_safetensors(shard, s);
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); }, {shard, "stowaway", "index"});
}

TEST(QoqCheckpoint, LayoutReadsHeadersOnly) {
  Written w;
  const io::QoqCheckpointLayout L = io::read_qoq_checkpoint_layout(w.dir);
  EXPECT_EQ(L.info.layers.size(), 14u);
  const io::QoqTensorEntry& q = L.tensors.at("model.layers.0.mlp.down_proj.qweight");
  EXPECT_EQ(q.file, "model.safetensors");
  EXPECT_EQ(q.dtype, DType::U8);
  EXPECT_EQ(q.shape, (Shape{64, 128}));
  EXPECT_EQ(q.nbytes, 64u * 128u);
  EXPECT_EQ(L.tensors.at("model.layers.1.mlp.down_proj.weight").dtype, DType::I8);
  EXPECT_EQ(L.tensors.at("model.embed_tokens.weight").dtype, DType::F16);
}

// ---- qoq.json ----

TEST(QoqJson, RoundTripsAndIsStable) {
  io::QoqCheckpoint ck = tiny_checkpoint();
  io::QoqInfo info = ck.info;
  info.layers["model.layers.0.mlp.down_proj"] = {WeightFormat::W4Group, 64, 172, 256, 128, false};
  info.layers["model.layers.0.self_attn.q_proj"] = {WeightFormat::W4PerChannel, 64, 63, 64, -1, true};
  info.layers["model.layers.0.mlp.up_proj"] = {WeightFormat::W8PerChannel, 172, 64, 64, -1, false};
  info.tokenizer_kind = "gguf";
  info.tokenizer_file = "tokenizer.gguf";
  const std::string text = io::qoq_info_to_json(info);
  const json j = json::parse(text);
  EXPECT_EQ(j["format"], "qoq");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["passes"]["smooth_attention"]["alpha"], 0.5);
  EXPECT_EQ(j["layers"]["model.layers.0.mlp.down_proj"]["format"], "w4_group");
  EXPECT_EQ(j["layers"]["model.layers.0.mlp.down_proj"]["k_padded"], 256);
  const io::QoqInfo back = io::qoq_info_from_json(text, "x/qoq.json");
  EXPECT_EQ(back.layers, info.layers);
  EXPECT_EQ(back.tokenizer_kind, "gguf");
  EXPECT_EQ(back.tokenizer_file, "tokenizer.gguf");
  EXPECT_EQ(io::qoq_info_to_json(back), text);
  // Empty pass texts are recorded as empty objects.
  io::QoqInfo bare;
  EXPECT_EQ(json::parse(io::qoq_info_to_json(bare))["timing"], json::object());
  bare.passes = "[1, 2]";
  expect_input_error([&] { io::qoq_info_to_json(bare); }, {"qoq.json", "passes", "object"});
}

TEST(QoqJson, StrictFieldsAreNamed) {
  io::QoqInfo info;
  info.layers["L"] = {WeightFormat::W4Group, 8, 172, 256, 128, false};
  const json good = json::parse(io::qoq_info_to_json(info));
  struct Case {
    std::function<void(json&)> edit;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["format"] = "gptq"; }, {"'format'", "gptq"}},
      {[](json& j) { j["version"] = 2; }, {"'version'", "2"}},
      {[](json& j) { j["version"] = "1"; }, {"'version'", "integer"}},
      {[](json& j) { j["weight_bits"] = 3; }, {"'weight_bits'", "3"}},
      {[](json& j) { j["weight_bits"] = 4.0; }, {"'weight_bits'", "integer"}},
      {[](json& j) { j["kv_bits"] = 2; }, {"'kv_bits'", "2"}},
      {[](json& j) { j["group_size"] = 100; }, {"'group_size'", "100"}},
      {[](json& j) {
         j["weight_bits"] = 8;
         j["group_size"] = 128;
       },
       {"'group_size'", "8-bit"}},
      {[](json& j) { j.erase("calibration"); }, {"missing field 'calibration'"}},
      {[](json& j) { j["passes"] = "rotate"; }, {"'passes'", "object"}},
      {[](json& j) { j["extra"] = 1; }, {"unknown field 'extra'"}},
      {[](json& j) { j["source"]["sha256"] = "abc"; }, {"'source.sha256'"}},
      {[](json& j) { j["tokenizer"]["kind"] = "tiktoken"; }, {"'tokenizer.kind'", "tiktoken"}},
      {[](json& j) { j["tokenizer"] = {{"kind", "llama2c"}, {"file", "../x.bin"}}; }, {"'tokenizer.file'"}},
      {[](json& j) { j["tokenizer"] = {{"kind", "llama2c"}, {"file", "qoq.json"}}; }, {"'tokenizer.file'"}},
      {[](json& j) { j["layers"]["L"]["format"] = "w3"; }, {"'layers.L.format'", "w3"}},
      {[](json& j) { j["layers"]["L"]["group_size"] = 100; }, {"'layers.L.group_size'", "100"}},
      {[](json& j) { j["layers"]["L"]["group_size"] = -1; }, {"'layers.L.group_size'", "w4_group"}},
      {[](json& j) { j["layers"]["L"]["k_padded"] = 128; }, {"'layers.L.k_padded'", "below in_features"}},
      {[](json& j) { j["layers"]["L"]["k_padded"] = 300; }, {"'layers.L.k_padded'", "multiple"}},
      {[](json& j) { j["layers"]["L"]["k_padded"] = 384; }, {"'layers.L.k_padded'", "rounded up"}},
      {[](json& j) { j["layers"]["L"]["format"] = "w8_per_channel"; }, {"'layers.L.group_size'", "no group"}},
      {[](json& j) { j["layers"]["L"]["group_size"] = 64; }, {"'layers.L.k_padded'", "192"}},
      {[](json& j) {
         j["layers"]["L"]["format"] = "w4_per_channel";
         j["layers"]["L"]["group_size"] = -1;
         j["layers"]["L"]["k_padded"] = 173;
       },
       {"'layers.L.k_padded'", "multiple of 2"}},
      {[](json& j) { j["layers"]["L"]["out_features"] = 0; }, {"'layers.L.out_features'"}},
      {[](json& j) { j["layers"]["L"]["in_features"] = 18446744073709551615ull; }, {"'layers.L.in_features'"}},
      {[](json& j) { j["layers"]["L"].erase("bias"); }, {"missing field 'layers.L.bias'"}},
      {[](json& j) { j["layers"]["L"]["bias"] = 1; }, {"'layers.L.bias'"}},
      {[](json& j) { j["layers"]["L"]["scale"] = 1; }, {"unknown field 'layers.L.scale'"}},
      {[](json& j) { j["layers"] = json::array(); }, {"'layers'", "object"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    json j = good;
    cases[i].edit(j);
    auto parts = cases[i].parts;
    parts.push_back("dir/qoq.json");
    expect_input_error([&] { io::qoq_info_from_json(j.dump(), "dir/qoq.json"); }, parts);
  }
  expect_input_error([&] { io::qoq_info_from_json("{\"format\": ", "dir/qoq.json"); }, {"dir/qoq.json", "JSON"});
  expect_input_error([&] { io::qoq_info_from_json("[]", "dir/qoq.json"); }, {"dir/qoq.json", "object"});
}

// ---- the reader catches every contradiction, naming file and tensor/field ----

TEST(QoqCheckpointErrors, WrongGroupSizeInQoqJson) {
  Written w;
  const std::string q = w.file("qoq.json");
  // Not a legal group size at all.
  edit_json(q, [](json& j) { j["layers"]["model.layers.0.mlp.down_proj"]["group_size"] = 100; });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {q, "layers.model.layers.0.mlp.down_proj.group_size", "100"});
  // Legal and self-consistent (64, K_pad 192), but the stored tensors were made with 128.
  edit_json(q, [](json& j) {
    j["layers"]["model.layers.0.mlp.down_proj"]["group_size"] = 64;
    j["layers"]["model.layers.0.mlp.down_proj"]["k_padded"] = 192;
  });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("model.safetensors"), "model.layers.0.mlp.down_proj.", "[64, 3]"});
}

TEST(QoqCheckpointErrors, MissingLinear) {
  Written w;
  edit_json(w.file("qoq.json"), [](json& j) { j["layers"].erase("model.layers.1.mlp.up_proj"); });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("qoq.json"), "missing linear 'model.layers.1.mlp.up_proj'", w.file("config.json")});
  // The same linear's tensors gone from the file while qoq.json still lists it.
  Written w2;
  rewrite_weights(w2.dir, [](io::TensorMap& t) { t.erase("model.layers.1.mlp.up_proj.zeros"); });
  expect_input_error([&] { io::read_qoq_checkpoint(w2.dir); },
                     {w2.file("model.safetensors"), "missing tensor 'model.layers.1.mlp.up_proj.zeros'"});
}

TEST(QoqCheckpointErrors, ExtraLinearInQoqJson) {
  Written w;
  edit_json(w.file("qoq.json"), [](json& j) {
    j["layers"]["model.layers.2.mlp.up_proj"] = j["layers"]["model.layers.1.mlp.up_proj"];
  });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("qoq.json"), "layers.model.layers.2.mlp.up_proj", "not a linear"});
}

TEST(QoqCheckpointErrors, ExtraTensor) {
  Written w;
  rewrite_weights(w.dir, [](io::TensorMap& t) { t["model.layers.0.self_attn.rotary_emb.inv_freq"] = Tensor::zeros(DType::F32, {8}); });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("model.safetensors"), "unexpected tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'"});
  // A bias qoq.json does not announce is an extra tensor too.
  Written w2;
  rewrite_weights(w2.dir, [](io::TensorMap& t) { t["model.layers.0.mlp.up_proj.bias"] = Tensor::zeros(DType::F16, {172}); });
  expect_input_error([&] { io::read_qoq_checkpoint(w2.dir); }, {"unexpected tensor 'model.layers.0.mlp.up_proj.bias'"});
}

TEST(QoqCheckpointErrors, WrongDtype) {
  Written w;
  rewrite_weights(w.dir, [](io::TensorMap& t) {
    Tensor& z = t["model.layers.0.mlp.gate_proj.zeros"];
    Tensor i8 = Tensor::empty(DType::I8, z.shape());
    std::memcpy(i8.raw(), z.raw(), z.nbytes());
    z = i8;
    t["model.norm.weight"] = t["model.norm.weight"].to(DType::F32);
  });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("model.safetensors"), "model.layers.0.mlp.gate_proj.zeros", "I8[172]", "expected U8[172]"});
  rewrite_weights(w.dir, [](io::TensorMap& t) {
    Tensor& z = t["model.layers.0.mlp.gate_proj.zeros"];
    Tensor u8 = Tensor::empty(DType::U8, z.shape());
    std::memcpy(u8.raw(), z.raw(), z.nbytes());
    z = u8;
  });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("model.safetensors"), "model.norm.weight", "F32[64]", "expected F16[64]"});
}

TEST(QoqCheckpointErrors, WrongShape) {
  Written w;
  rewrite_weights(w.dir, [](io::TensorMap& t) { t["model.layers.1.self_attn.k_proj.scales"] = Tensor::zeros(DType::F16, {31}); });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("model.safetensors"), "model.layers.1.self_attn.k_proj.scales", "F16[31]", "F16[32]"});
}

// Patches one byte of a stored tensor in place.
void patch_byte(const std::string& file, const std::string& tensor, size_t index, uint8_t value) {
  std::vector<uint8_t> b = read_bytes(file);
  uint64_t hlen;
  std::memcpy(&hlen, b.data(), 8);
  const json h = json::parse(std::string(b.begin() + 8, b.begin() + 8 + long(hlen)));
  const size_t at = 8 + hlen + h[tensor]["data_offsets"][0].get<size_t>() + index;
  b.at(at) = value;
  write_bytes(file, b);
}

TEST(QoqCheckpointErrors, CodeOutOfRange) {
  Written w;
  const std::string st = w.file("model.safetensors");
  patch_byte(st, "model.layers.0.self_attn.q_proj.group_scales", 1, 0);  // s2 must be in [1, 16]
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {st, "model.layers.0.self_attn.q_proj", "group_scales[1] = 0"});
  // The header-only layout does not look at values (that is what keeps inspect fast).
  EXPECT_NO_THROW(io::read_qoq_checkpoint_layout(w.dir));
  Written w2;
  patch_byte(w2.file("model.safetensors"), "model.layers.1.mlp.gate_proj.zeros", 3, 16);
  expect_input_error([&] { io::read_qoq_checkpoint(w2.dir); }, {"model.layers.1.mlp.gate_proj", "zeros[3] = 16"});
  Written w3;
  patch_byte(w3.file("model.safetensors"), "model.layers.1.mlp.down_proj.weight", 5, 0x80);  // int8 -128
  expect_input_error([&] { io::read_qoq_checkpoint(w3.dir); }, {"model.layers.1.mlp.down_proj", "weight[5] = -128"});
}

TEST(QoqCheckpointErrors, ConfigContradictsTensors) {
  Written w;
  edit_json(w.file("config.json"), [](json& j) { j["intermediate_size"] = 176; });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); },
                     {w.file("qoq.json"), "mlp.", w.file("config.json"), "contradict"});
  Written w2;
  edit_json(w2.file("config.json"), [](json& j) { j["vocab_size"] = 80; });
  expect_input_error([&] { io::read_qoq_checkpoint(w2.dir); },
                     {w2.file("model.safetensors"), "F16[64, 64], expected F16[80, 64]"});
  Written w3;
  edit_json(w3.file("config.json"), [](json& j) { j["tie_word_embeddings"] = true; });
  expect_input_error([&] { io::read_qoq_checkpoint(w3.dir); }, {"unexpected tensor 'lm_head.weight'"});
}

TEST(QoqCheckpointErrors, TruncatedWeights) {
  Written w;
  const std::string st = w.file("model.safetensors");
  std::vector<uint8_t> b = read_bytes(st);
  b.resize(b.size() / 2);
  write_bytes(st, b);
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); }, {st});
  fs::remove(st);
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); }, {w.dir, "model.safetensors"});
}

TEST(QoqCheckpointErrors, MissingFilesAndTokenizer) {
  Written w;
  edit_json(w.file("qoq.json"), [](json& j) { j["tokenizer"] = {{"kind", "llama2c"}, {"file", "tok512.bin"}}; });
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); }, {w.file("qoq.json"), "tokenizer.file", "tok512.bin"});
  fs::remove(w.file("config.json"));
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); }, {w.dir, "config.json"});
  fs::remove(w.file("qoq.json"));
  EXPECT_FALSE(io::is_qoq_checkpoint(w.dir));
  expect_input_error([&] { io::read_qoq_checkpoint(w.dir); }, {w.dir, "qoq.json"});
}

// ---- writing ----

TEST(QoqCheckpointWrite, RefusesNonEmptyDirUnlessOverwrite) {
  Written w;
  io::QoqCheckpoint again = w.ckpt;
  again.info.kv_bits = 8;
  expect_input_error([&] { io::write_qoq_checkpoint(w.dir, again); }, {w.dir, "not empty"});
  EXPECT_EQ(io::read_qoq_checkpoint(w.dir).info.kv_bits, 4);
  io::write_qoq_checkpoint(w.dir + "/", again, /*overwrite=*/true);
  EXPECT_EQ(io::read_qoq_checkpoint(w.dir).info.kv_bits, 8);
  EXPECT_EQ(dir_entries(w.tmp.path()), (std::vector<std::string>{"ckpt"}));
  // An existing empty directory is fine without overwrite.
  fs::create_directory(w.tmp.file("empty"));
  io::write_qoq_checkpoint(w.tmp.file("empty"), again);
  EXPECT_TRUE(io::is_qoq_checkpoint(w.tmp.file("empty")));
  // A file in the way is not.
  write_text(w.tmp.file("afile"), "x");
  expect_input_error([&] { io::write_qoq_checkpoint(w.tmp.file("afile"), again, true); }, {"afile", "not a directory"});
}

TEST(QoqCheckpointWrite, FailingWriteLeavesNothing) {
  TempDir tmp;
  io::QoqCheckpoint ck = tiny_checkpoint();
  ck.tokenizer = {TokenizerSource::Kind::Llama2c, tmp.file("no_such_tok.bin"), ""};
  expect_input_error([&] { io::write_qoq_checkpoint(tmp.file("ckpt"), ck); }, {"no_such_tok.bin"});
  EXPECT_TRUE(dir_entries(tmp.path()).empty()) << "left behind: " << ::testing::PrintToString(dir_entries(tmp.path()));
  // A failing overwrite keeps the old checkpoint intact.
  io::QoqCheckpoint good = tiny_checkpoint();
  io::write_qoq_checkpoint(tmp.file("ckpt"), good);
  expect_input_error([&] { io::write_qoq_checkpoint(tmp.file("ckpt"), ck, true); }, {"no_such_tok.bin"});
  EXPECT_EQ(dir_entries(tmp.path()), (std::vector<std::string>{"ckpt"}));
  expect_same_checkpoint(good, io::read_qoq_checkpoint(tmp.file("ckpt")));
}

TEST(QoqCheckpointWrite, InconsistentCheckpointIsRejectedBeforeWriting) {
  TempDir tmp;
  io::QoqCheckpoint ck = tiny_checkpoint();
  ck.linears.erase("model.layers.0.self_attn.v_proj");
  expect_input_error([&] { io::write_qoq_checkpoint(tmp.file("a"), ck); }, {"model.layers.0.self_attn.v_proj"});
  ck = tiny_checkpoint();
  ck.float_tensors.erase("model.norm.weight");
  EXPECT_THROW(io::write_qoq_checkpoint(tmp.file("b"), ck), Error);
  ck = tiny_checkpoint();
  ck.linears["model.layers.0.mlp.up_proj"].codes[0] = 16;
  EXPECT_THROW(io::write_qoq_checkpoint(tmp.file("c"), ck), Error);
  EXPECT_TRUE(dir_entries(tmp.path()).empty());
}

// ---- tokenizers ----

const std::vector<std::string> kTexts = {"Once upon a time, there was a little girl.", "Hello world!  12 + 3",
                                         "The cat sat on the mat.\nA new line, and tabs\t."};

void expect_same_encoding(const Tokenizer& a, const Tokenizer& b) {
  ASSERT_EQ(a.vocab_size(), b.vocab_size());
  for (const auto& t : kTexts) EXPECT_EQ(a.encode(t, true), b.encode(t, true)) << t;
}
void expect_same_encoding(const TokenizerSource& a, const TokenizerSource& b) {
  expect_same_encoding(*load_tokenizer(a), *load_tokenizer(b));
}

TEST(QoqCheckpointTokenizer, Llama2cFileIsCopiedUnderItsName) {
  TempDir tmp;
  io::QoqCheckpoint ck = tiny_checkpoint();
  ck.tokenizer = {TokenizerSource::Kind::Llama2c, qoq::testing::data_file("stories260K/tok512.bin"), ""};
  io::write_qoq_checkpoint(tmp.file("ckpt"), ck);
  const io::QoqCheckpoint r = io::read_qoq_checkpoint(tmp.file("ckpt"));
  EXPECT_EQ(r.info.tokenizer_kind, "llama2c");
  EXPECT_EQ(r.info.tokenizer_file, "tok512.bin");
  EXPECT_EQ(r.tokenizer.kind, TokenizerSource::Kind::Llama2c);
  EXPECT_EQ(r.tokenizer.path, tmp.file("ckpt") + "/tok512.bin");
  EXPECT_EQ(read_bytes(r.tokenizer.path), read_bytes(ck.tokenizer.path));
  expect_same_encoding(ck.tokenizer, r.tokenizer);
}

// A llama-style GGUF vocabulary made from tok512.bin, with a chat template and one tensor.
std::string synthetic_gguf(const std::string& path) {
  const std::string raw = io::read_text_file(qoq::testing::data_file("stories260K/tok512.bin"));
  std::vector<std::string> pieces;
  GgufArray scores, types;
  for (size_t pos = 4; pos < raw.size();) {
    float score;
    int32_t len;
    std::memcpy(&score, raw.data() + pos, 4);
    std::memcpy(&len, raw.data() + pos + 4, 4);
    const std::string p = raw.substr(pos + 8, size_t(len));
    pos += 8 + size_t(len);
    const size_t id = pieces.size();
    std::string spm;
    for (char c : p) spm += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
    pieces.push_back(spm);
    scores.push_back(io::GgufWriter::f32(score));
    const bool byte = p.size() == 6 && p.rfind("<0x", 0) == 0;
    types.push_back(io::GgufWriter::i32(id == 0 ? 2 : id <= 2 ? 3 : byte ? 6 : 1));
  }
  const std::string tmpl =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  io::GgufWriter w;
  w.add("general.architecture", io::GgufWriter::str("llama"));
  w.add("general.name", io::GgufWriter::str("not copied"));
  w.add("tokenizer.ggml.model", io::GgufWriter::str("llama"));
  w.add("tokenizer.ggml.tokens", io::GgufWriter::str_array(pieces));
  w.add("tokenizer.ggml.scores", io::GgufWriter::array(kGgufF32, scores));
  w.add("tokenizer.ggml.token_type", io::GgufWriter::array(kGgufI32, types));
  w.add("tokenizer.ggml.bos_token_id", io::GgufWriter::u32(1));
  w.add("tokenizer.ggml.eos_token_id", io::GgufWriter::u32(2));
  w.add("tokenizer.chat_template", io::GgufWriter::str(tmpl));
  w.add_f32("token_embd.weight", {2, 4}, std::vector<float>(8, 1.f));
  w.write(path);
  return tmpl;
}

void check_gguf_copy(const std::string& src, const std::string& chat_template) {
  TempDir tmp;
  io::QoqCheckpoint ck = tiny_checkpoint();
  ck.tokenizer = {TokenizerSource::Kind::Gguf, src, chat_template};
  io::write_qoq_checkpoint(tmp.file("ckpt"), ck);
  // The template lives in the GGUF metadata; no separate file is needed.
  EXPECT_EQ(dir_entries(tmp.file("ckpt")),
            (std::vector<std::string>{"config.json", "model.safetensors", "qoq.json", "tokenizer.gguf"}));
  const io::QoqCheckpoint r = io::read_qoq_checkpoint(tmp.file("ckpt"));
  EXPECT_EQ(r.info.tokenizer_kind, "gguf");
  EXPECT_EQ(r.tokenizer.kind, TokenizerSource::Kind::Gguf);
  EXPECT_EQ(r.tokenizer.chat_template, chat_template);
  const GgufFile orig = GgufFile::open(src), copy = GgufFile::open(r.tokenizer.path);
  EXPECT_TRUE(copy.tensors().empty());
  EXPECT_EQ(copy.get_string("general.architecture"), orig.get_string("general.architecture"));
  EXPECT_FALSE(copy.has("general.name"));
  size_t n = 0;
  for (const auto& [key, v] : orig.metadata())
    if (key.rfind("tokenizer.", 0) == 0) {
      ++n;
      ASSERT_TRUE(copy.has(key)) << key;
      EXPECT_EQ(copy.metadata().at(key).type, v.type) << key;
    }
  EXPECT_EQ(copy.metadata().size(), n + 1);
  // Loaded without the template override (as load_tokenizer does from the metadata), the copy still carries it.
  TokenizerSource plain = r.tokenizer;
  plain.chat_template.clear();
  const auto from_orig = load_tokenizer(ck.tokenizer), from_copy = load_tokenizer(plain);
  expect_same_encoding(*from_orig, *from_copy);
  const std::vector<ChatMessage> chat = {{"user", "Hi there"}};
  EXPECT_EQ(from_copy->apply_chat_template(chat), from_orig->apply_chat_template(chat));
}

TEST(QoqCheckpointTokenizer, SyntheticGgufBecomesTensorlessTokenizerGguf) {
  TempDir tmp;
  const std::string tmpl = synthetic_gguf(tmp.file("src.gguf"));
  check_gguf_copy(tmp.file("src.gguf"), tmpl);
}

TEST(QoqCheckpointTokenizer, SmolLM2GgufTokenizer) {
  const std::string model = std::string(QOQ_MODEL_CACHE) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << "default model not present (scripts/setup.sh): " << model;
  const GgufFile g = GgufFile::open(model);
  check_gguf_copy(model, g.get_string("tokenizer.chat_template"));
}

TEST(QoqCheckpointTokenizer, HfJsonWithTokenizerConfig) {
  TempDir tmp;
  fs::create_directory(tmp.file("src"));
  fs::copy_file(std::string(QOQ_SOURCE_DIR) + "/tests/data/tokenizer/hf_smollm.tokenizer.json",
                tmp.file("src/tokenizer.json"));
  const std::string tmpl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
  write_text(tmp.file("src/tokenizer_config.json"), json{{"chat_template", tmpl}}.dump());
  io::QoqCheckpoint ck = tiny_checkpoint();
  ck.tokenizer = {TokenizerSource::Kind::HfJson, tmp.file("src/tokenizer.json"), tmpl};
  io::write_qoq_checkpoint(tmp.file("ckpt"), ck);
  EXPECT_EQ(dir_entries(tmp.file("ckpt")), (std::vector<std::string>{"config.json", "model.safetensors", "qoq.json",
                                                                      "tokenizer.json", "tokenizer_config.json"}));
  const io::QoqCheckpoint r = io::read_qoq_checkpoint(tmp.file("ckpt"));
  EXPECT_EQ(r.info.tokenizer_kind, "hf_json");
  EXPECT_EQ(r.tokenizer.path, tmp.file("ckpt") + "/tokenizer.json");
  EXPECT_EQ(r.tokenizer.chat_template, tmpl);
  expect_same_encoding(ck.tokenizer, r.tokenizer);
}

TEST(QoqCheckpointTokenizer, SentencePieceTemplateKeptInJinjaFile) {
  TempDir tmp;
  io::QoqCheckpoint ck = tiny_checkpoint();
  const std::string tmpl =
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}<<SYS>>\n{{ m.content }}\n<</SYS>>\n\n"
      "{% else %}[INST] {{ m.content }} [/INST]{% endif %}{% endfor %}";
  ck.tokenizer = {TokenizerSource::Kind::SentencePiece,
                  qoq::testing::data_file("llama2-tokenizer/tokenizer.model"), tmpl};
  io::write_qoq_checkpoint(tmp.file("ckpt"), ck);
  EXPECT_EQ(dir_entries(tmp.file("ckpt")), (std::vector<std::string>{"chat_template.jinja", "config.json",
                                                                      "model.safetensors", "qoq.json",
                                                                      "tokenizer.model"}));
  const io::QoqCheckpoint r = io::read_qoq_checkpoint(tmp.file("ckpt"));
  EXPECT_EQ(r.info.tokenizer_file, "tokenizer.model");
  EXPECT_EQ(r.tokenizer.chat_template, tmpl);
  expect_same_encoding(ck.tokenizer, r.tokenizer);
}

// ---- sha256 ----

TEST(Sha256, KnownVectorsAndFiles) {
  EXPECT_EQ(io::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(io::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  TempDir tmp;
  // Longer than one read buffer, so the streaming path is exercised.
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 7) big[i] = char(i);
  write_text(tmp.file("big"), big);
  EXPECT_EQ(io::sha256_file(tmp.file("big")), io::sha256_hex(big));
  expect_input_error([&] { io::sha256_file(tmp.file("nope")); }, {tmp.file("nope")});
}

TEST(Sha256, ModelDirectoryManifest) {
  TempDir tmp;
  write_text(tmp.file("config.json"), "{}");
  write_text(tmp.file("model-00002-of-00002.safetensors"), "B");
  write_text(tmp.file("model-00001-of-00002.safetensors"), "A");
  write_text(tmp.file("model.safetensors.index.json"), "I");
  write_text(tmp.file("tokenizer.json"), "T");
  const std::string manifest = io::sha256_hex("{}") + "  config.json\n" + io::sha256_hex("A") +
                               "  model-00001-of-00002.safetensors\n" + io::sha256_hex("B") +
                               "  model-00002-of-00002.safetensors\n" + io::sha256_hex("I") +
                               "  model.safetensors.index.json\n";
  const std::string h = io::sha256_model_dir(tmp.path());
  EXPECT_EQ(h, io::sha256_hex(manifest));
  EXPECT_EQ(io::sha256_source(tmp.path()), h);
  EXPECT_EQ(io::sha256_source(tmp.file("config.json")), io::sha256_hex("{}"));
  write_text(tmp.file("tokenizer.json"), "changed");  // tokenizer files do not count
  EXPECT_EQ(io::sha256_model_dir(tmp.path()), h);
  write_text(tmp.file("model-00002-of-00002.safetensors"), "C");
  EXPECT_NE(io::sha256_model_dir(tmp.path()), h);
  fs::remove(tmp.file("config.json"));
  expect_input_error([&] { io::sha256_model_dir(tmp.path()); }, {"config.json"});
}

// ---- qoq inspect ----

TEST(QoqInspect, SummarizesWithoutDequantizing) {
  const std::string qoq = std::string(QOQ_BINARY_DIR) + "/qoq";
  if (!fs::exists(qoq)) GTEST_SKIP() << "qoq binary not built: " << qoq;
  Written w;
  // A code out of range does not stop inspect: it reads headers only.
  patch_byte(w.file("model.safetensors"), "model.layers.0.self_attn.q_proj.group_scales", 0, 0);
  std::string out;
  {
    std::FILE* p = popen((qoq + " inspect " + w.dir + " 2>&1").c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ASSERT_EQ(pclose(p), 0) << out;
  }
  if (std::getenv("QOQ_TEST_VERBOSE")) std::printf("%s", out.c_str());
  for (const char* want : {"format: qoq checkpoint (qoq.json version 1)", "intermediate_size        172",
                           "weight_bits              4", "group_size               128", "smooth_attention",
                           "source sha256            " , "w4_per_channel         4", "w4_group               9",
                           "w8_per_channel         1", "model.layers.0.mlp.down_proj",
                           "in_features 172 padded to 256", "fp16 equivalent"})
    EXPECT_NE(out.find(want), std::string::npos) << "'" << want << "' not in:\n" << out;
}

}  // namespace
}  // namespace qoq
