// GGUF reader: the real SmolLM2 file, every metadata type, v2 and v3, alignment, each dequantization against
// hand-computed blocks, and corrupted/truncated files that must give InputErrors naming the file and field.
#include <gtest/gtest.h>

#include <map>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/model_import.h"
#include "io_test_util.h"
#include "qoq/half.h"

namespace qoq {
namespace {

using io::GgufWriter;
using testing::expect_input_error;
using testing::TempDir;

GgufFile parse(const std::vector<uint8_t>& b, const std::string& name = "mem.gguf") {
  auto owner = std::make_shared<std::vector<uint8_t>>(b);
  return GgufFile::from_memory(owner->data(), owner->size(), owner, name);
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(Gguf, SmolLM2Header) {
  const GgufFile g = GgufFile::open(testing::smollm2_gguf());
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.tensors().size(), 272u);
  std::map<std::string, int> types;
  for (const auto& t : g.tensors()) types[ggml_type_name(t.type)]++;
  EXPECT_EQ(types, (std::map<std::string, int>{{"F32", 61}, {"Q4_1", 210}, {"Q8_0", 1}}));
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_int("llama.block_count"), 30);
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(g.get_int_array("tokenizer.ggml.token_type")[0], 3);
  EXPECT_FALSE(g.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_NEAR(g.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  expect_input_error([&] { g.get_int("general.architecture"); }, {g.path(), "general.architecture", "integer"});
  expect_input_error([&] { g.get_string("no.such.key"); }, {g.path(), "no.such.key", "missing"});
  expect_input_error([&] { g.load_tensor_f32("output.weight"); }, {g.path(), "output.weight", "not found"});

  const ModelConfig c = io::gguf_model_config(g);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});

  // token_embd is Q8_0: block 0 of row 5 by hand.
  const GgufTensorInfo* emb = g.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  const uint8_t* blk = g.tensor_bytes(*emb).data() + 5 * (576 / 32) * 34;
  uint16_t dh;
  std::memcpy(&dh, blk, 2);
  const Tensor e = g.load_tensor_f32("token_embd.weight");
  EXPECT_EQ(e.shape(), (Shape{49152, 576}));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(e.at_f32(5 * 576 + j), half_to_float(dh) * float(int8_t(blk[2 + j])));
}

TEST(Gguf, SmolLM2LoadModel) {
  const std::string path = testing::smollm2_gguf();
  const ModelWeights w = load_model(path, {.dtype = DType::F32, .progress = false});
  EXPECT_EQ(w.source_format, "gguf");
  EXPECT_EQ(w.tokenizer.kind, TokenizerSource::Kind::Gguf);
  EXPECT_NE(w.tokenizer.chat_template.find("<|im_start|>"), std::string::npos);
  EXPECT_FALSE(w.has("lm_head.weight"));
  EXPECT_EQ(w.tensors.size(), 2u + 30u * 9u);
  EXPECT_EQ(w.get("model.layers.29.self_attn.k_proj.weight").shape(), (Shape{192, 576}));
  EXPECT_EQ(w.get("model.layers.0.mlp.down_proj.weight").shape(), (Shape{576, 1536}));
  // q/k rows were un-permuted: HF row h*64 + i is GGUF row h*64 + 2i, HF row h*64 + 32 + i is row h*64 + 2i + 1.
  const GgufFile g = GgufFile::open(path);
  const Tensor raw_k = g.load_tensor_f32("blk.7.attn_k.weight");
  const Tensor& k = w.get("model.layers.7.self_attn.k_proj.weight");
  for (int h = 0; h < 3; ++h)
    for (int i = 0; i < 32; i += 5)
      for (int c = 0; c < 576; c += 61) {
        ASSERT_EQ(k.at_f32((h * 64 + i) * 576 + c), raw_k.at_f32((h * 64 + 2 * i) * 576 + c));
        ASSERT_EQ(k.at_f32((h * 64 + 32 + i) * 576 + c), raw_k.at_f32((h * 64 + 2 * i + 1) * 576 + c));
      }
  const Tensor raw_v = g.load_tensor_f32("blk.7.attn_v.weight");  // v is not permuted
  const Tensor& v = w.get("model.layers.7.self_attn.v_proj.weight");
  for (int64_t i = 0; i < v.numel(); i += 101) ASSERT_EQ(v.at_f32(i), raw_v.at_f32(i));
}

// Every metadata value type, nested arrays, v2 and v3.
TEST(Gguf, AllMetadataTypes) {
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w(version);
    w.add("u8", {uint64_t(200), kGgufU8});
    w.add("i8", {int64_t(-100), kGgufI8});
    w.add("u16", {uint64_t(60000), kGgufU16});
    w.add("i16", {int64_t(-30000), kGgufI16});
    w.add("u32", GgufWriter::u32(4000000000u));
    w.add("i32", GgufWriter::i32(-2000000000));
    w.add("u64", {uint64_t(1) << 60, kGgufU64});
    w.add("i64", {int64_t(-1) << 60, kGgufI64});
    w.add("f32", GgufWriter::f32(1.5f));
    w.add("f64", {0.1, kGgufF64});
    w.add("t", GgufWriter::boolean(true));
    w.add("s", GgufWriter::str("héllo"));
    w.add("ints", GgufWriter::array(kGgufI32, {GgufWriter::i32(1), GgufWriter::i32(-2)}));
    w.add("floats", GgufWriter::array(kGgufF32, {GgufWriter::f32(0.5f)}));
    w.add("strs", GgufWriter::str_array({"a", "", "ccc"}));
    w.add("nested", GgufWriter::array(kGgufArray, {GgufWriter::array(kGgufU32, {GgufWriter::u32(7)}),
                                                   GgufWriter::array(kGgufU32, {})}));
    w.add("big", {uint64_t(1) << 63, kGgufU64});
    const GgufFile g = parse(w.bytes());
    EXPECT_EQ(g.version(), version);
    EXPECT_EQ(g.get_int("u8"), 200);
    EXPECT_EQ(g.get_int("i8"), -100);
    EXPECT_EQ(g.get_int("u16"), 60000);
    EXPECT_EQ(g.get_int("i16"), -30000);
    EXPECT_EQ(g.get_int("u32"), 4000000000);
    EXPECT_EQ(g.get_int("i32"), -2000000000);
    EXPECT_EQ(g.get_int("u64"), int64_t(1) << 60);
    EXPECT_EQ(g.get_int("i64"), -(int64_t(1) << 60));
    EXPECT_EQ(g.get_float("f32"), 1.5);
    EXPECT_EQ(g.get_float("f64"), 0.1);
    EXPECT_EQ(g.get_float("i32"), -2e9);
    EXPECT_TRUE(g.get_bool("t"));
    EXPECT_EQ(g.get_string("s"), "héllo");
    EXPECT_EQ(g.get_int_array("ints"), (std::vector<int64_t>{1, -2}));
    EXPECT_EQ(g.get_float_array("floats"), std::vector<double>{0.5});
    EXPECT_EQ(g.get_string_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
    const auto& nested = std::get<GgufArray>(g.metadata().at("nested").v);
    ASSERT_EQ(nested.size(), 2u);
    EXPECT_EQ(std::get<uint64_t>(std::get<GgufArray>(nested[0].v)[0].v), 7u);
    EXPECT_TRUE(std::get<GgufArray>(nested[1].v).empty());
    expect_input_error([&] { g.get_int("big"); }, {"mem.gguf", "big", "int64"});
    expect_input_error([&] { g.get_bool("u8"); }, {"mem.gguf", "u8", "BOOL"});
    expect_input_error([&] { g.get_string_array("ints"); }, {"mem.gguf", "ints", "STRING"});
    expect_input_error([&] { g.get_int_array("s"); }, {"mem.gguf", "'s'", "array"});
  }
}

// Hand-computed blocks of each supported type, two rows each.
TEST(Gguf, Dequantization) {
  GgufWriter w;
  std::map<std::string, std::vector<float>> expect;
  {  // Q4_0: d = 0.5, qs[j] = j | (15-j) << 4 -> x[j] = 0.5 (j - 8), x[j+16] = 0.5 (7 - j)
    std::vector<uint8_t> b;
    std::vector<float> e(64);
    for (int row = 0; row < 2; ++row) {
      b.push_back(0x00), b.push_back(row ? 0xB8 : 0x38);  // fp16 0.5 / -0.5
      const float d = row ? -0.5f : 0.5f;
      for (int j = 0; j < 16; ++j) {
        b.push_back(uint8_t(j | (15 - j) << 4));
        e[size_t(row * 32 + j)] = d * float(j - 8);
        e[size_t(row * 32 + j + 16)] = d * float(7 - j);
      }
    }
    w.add_tensor("q4_0", {32, 2}, kGgmlQ4_0, b);
    expect["q4_0"] = e;
  }
  {  // Q4_1: d = 0.25, m = -1 -> x[j] = 0.25 j - 1, x[j+16] = 0.25 (15 - j) - 1
    std::vector<uint8_t> b;
    std::vector<float> e(64);
    for (int row = 0; row < 2; ++row) {
      b.push_back(0x00), b.push_back(0x34);               // 0.25
      b.push_back(0x00), b.push_back(row ? 0x3C : 0xBC);  // m = -1 / +1
      const float m = row ? 1.0f : -1.0f;
      for (int j = 0; j < 16; ++j) {
        b.push_back(uint8_t(j | (15 - j) << 4));
        e[size_t(row * 32 + j)] = 0.25f * float(j) + m;
        e[size_t(row * 32 + j + 16)] = 0.25f * float(15 - j) + m;
      }
    }
    w.add_tensor("q4_1", {32, 2}, kGgmlQ4_1, b);
    expect["q4_1"] = e;
  }
  {  // Q8_0: d = 2, qs[j] = j - 16 (and -128 in slot 0 of row 1)
    std::vector<uint8_t> b;
    std::vector<float> e(64);
    for (int row = 0; row < 2; ++row) {
      b.push_back(0x00), b.push_back(0x40);
      for (int j = 0; j < 32; ++j) {
        const int8_t q = int8_t(row == 1 && j == 0 ? -128 : j - 16);
        b.push_back(uint8_t(q));
        e[size_t(row * 32 + j)] = 2.0f * float(q);
      }
    }
    w.add_tensor("q8_0", {32, 2}, kGgmlQ8_0, b);
    expect["q8_0"] = e;
  }
  {  // F16 / BF16 bit patterns
    const uint16_t h[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
    std::vector<uint8_t> b(8);
    std::memcpy(b.data(), h, 8);
    w.add_tensor("f16", {2, 2}, kGgmlF16, b);
    expect["f16"] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f};
    const uint16_t bf[2] = {0x3F80, 0xC040};
    std::vector<uint8_t> bb(4);
    std::memcpy(bb.data(), bf, 4);
    w.add_tensor("bf16", {1, 2}, kGgmlBF16, bb);
    expect["bf16"] = {1.0f, -3.0f};
    w.add_tensor("f32", {3}, kGgmlF32, f32_bytes({1.25f, -0.0f, 3e38f}));
    expect["f32"] = {1.25f, -0.0f, 3e38f};
  }
  const GgufFile g = parse(w.bytes());
  for (const auto& [name, e] : expect) {
    const Tensor t = g.load_tensor_f32(name);
    ASSERT_EQ(t.numel(), int64_t(e.size())) << name;
    for (size_t i = 0; i < e.size(); ++i) EXPECT_EQ(t.at_f32(int64_t(i)), e[i]) << name << "[" << i << "]";
  }
  EXPECT_EQ(g.load_tensor_f32("q4_0").shape(), (Shape{2, 32}));
  EXPECT_EQ(g.load_tensor_f32("f32").shape(), (Shape{3}));
}

TEST(Gguf, UnsupportedTypeParsesButCannotLoad) {
  GgufWriter w;
  w.add_tensor("k", {256, 1}, kGgmlQ6_K, std::vector<uint8_t>(210));
  const GgufFile g = parse(w.bytes());
  EXPECT_EQ(g.find_tensor("k")->nbytes, 210u);
  expect_input_error([&] { g.load_tensor_f32("k"); }, {"mem.gguf", "'k'", "Q6_K"});
}

TEST(Gguf, Alignment) {
  GgufWriter w(3, 64);
  w.add("general.alignment", GgufWriter::u32(64));
  w.add_f32("a", {3}, {1, 2, 3});
  w.add_f32("b", {2}, {4, 5});
  const GgufFile g = parse(w.bytes());
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.find_tensor("b")->offset, 64u);
  EXPECT_EQ(g.load_tensor_f32("b").at_f32(1), 5.0f);

  GgufWriter bad(3, 32);
  bad.add("general.alignment", GgufWriter::u32(64));  // but offsets laid out for 32
  bad.add_f32("a", {3}, {1, 2, 3});
  bad.add_f32("b", {2}, {4, 5});
  expect_input_error([&] { parse(bad.bytes()); }, {"mem.gguf", "'b'", "offset 32", "alignment 64"});

  for (uint32_t a : {0u, 3u, 1u << 30}) {
    GgufWriter x;
    x.add("general.alignment", GgufWriter::u32(a));
    expect_input_error([&] { parse(x.bytes()); }, {"mem.gguf", "general.alignment", std::to_string(a)});
  }
  GgufWriter s;
  s.add("general.alignment", GgufWriter::str("32"));
  expect_input_error([&] { parse(s.bytes()); }, {"general.alignment", "STRING"});
}

// A small valid file; every proper prefix that cuts into the header or tensor data must be rejected cleanly.
TEST(Gguf, EveryTruncationIsAnInputError) {
  GgufWriter w;
  w.add("general.architecture", GgufWriter::str("llama"));
  w.add("arr", GgufWriter::str_array({"x", "yz"}));
  w.add_f32("t", {32}, std::vector<float>(32, 1.0f));  // 128 bytes: no trailing padding
  const auto full = w.bytes();
  EXPECT_NO_THROW(parse(full));
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + long(n));
    expect_input_error([&] { parse(cut, "cut.gguf"); }, {"cut.gguf"});
  }
  expect_input_error([&] { parse(std::vector<uint8_t>(full.begin(), full.end() - 1)); },
                     {"mem.gguf", "'t'", "past the end"});
  expect_input_error([&] { parse(std::vector<uint8_t>(full.begin(), full.begin() + 30)); },
                     {"mem.gguf", "metadata count 2"});
}

// Corruptions at known offsets of a minimal file: header fields, lengths and counts, tensor infos.
TEST(Gguf, CorruptHeaders) {
  auto base = [] {
    GgufWriter w;
    w.add("k", GgufWriter::u32(1));
    w.add_f32("t", {2, 32}, std::vector<float>(64, 0.5f));
    return w.bytes();
  };
  // Layout: magic 0, version 4, n_tensors 8, n_kv 16, key len 24, "k" 32, type 33, value 37,
  // tensor name len 41, "t" 49, n_dims 50, dims 54/62, type 70, offset 74.
  auto set32 = [](std::vector<uint8_t> b, size_t at, uint32_t v) {
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  auto set64 = [](std::vector<uint8_t> b, size_t at, uint64_t v) {
    std::memcpy(b.data() + at, &v, 8);
    return b;
  };
  EXPECT_NO_THROW(parse(base()));
  expect_input_error([&] { parse(set32(base(), 0, 0x46554746)); }, {"mem.gguf", "magic"});
  expect_input_error([&] { parse(set32(base(), 4, 1)); }, {"mem.gguf", "version 1"});
  expect_input_error([&] { parse(set32(base(), 4, 0x03000000)); }, {"mem.gguf", "version 50331648"});
  expect_input_error([&] { parse(set64(base(), 8, uint64_t(1) << 40)); }, {"mem.gguf", "tensor count"});
  expect_input_error([&] { parse(set64(base(), 16, ~uint64_t(0))); }, {"mem.gguf", "metadata count"});
  expect_input_error([&] { parse(set64(base(), 24, uint64_t(1) << 62)); }, {"mem.gguf", "metadata key #0"});
  expect_input_error([&] { parse(set32(base(), 33, 13)); }, {"mem.gguf", "'k'", "unknown value type 13"});
  expect_input_error([&] { parse(set32(base(), 50, 5)); }, {"mem.gguf", "'t'", "n_dims = 5"});
  expect_input_error([&] { parse(set32(base(), 50, 0)); }, {"mem.gguf", "'t'", "n_dims = 0"});
  expect_input_error([&] { parse(set64(base(), 62, 0)); }, {"mem.gguf", "'t'", "dimension 1"});
  expect_input_error([&] { parse(set64(base(), 62, uint64_t(1) << 62)); }, {"mem.gguf", "'t'", "overflow"});
  expect_input_error([&] { parse(set64(base(), 62, 3)); }, {"mem.gguf", "'t'", "past the end"});
  expect_input_error([&] { parse(set32(base(), 70, 99)); }, {"mem.gguf", "'t'", "unknown ggml type 99"});
  expect_input_error([&] { parse(set64(set32(base(), 70, kGgmlQ4_0), 54, 31)); },
                     {"mem.gguf", "'t'", "row length 31", "Q4_0 block size 32"});
  expect_input_error([&] { parse(set64(base(), 74, 64)); }, {"mem.gguf", "'t'", "past the end"});
  expect_input_error([&] { parse(set64(base(), 74, 4)); }, {"mem.gguf", "'t'", "alignment 32"});
  expect_input_error([&] { parse(set64(base(), 74, ~uint64_t(0) - 31)); }, {"mem.gguf", "'t'", "past the end"});

  GgufWriter dup;
  dup.add("k", GgufWriter::u32(1));
  dup.add("k", GgufWriter::u32(2));
  expect_input_error([&] { parse(dup.bytes()); }, {"mem.gguf", "'k'", "twice"});
  GgufWriter dupt;
  dupt.add_f32("t", {1}, {1});
  dupt.add_f32("t", {1}, {1});
  expect_input_error([&] { parse(dupt.bytes()); }, {"mem.gguf", "'t'", "twice"});
  GgufWriter boolbad;
  boolbad.add("b", {uint64_t(2), kGgufU8});
  auto bb = boolbad.bytes();
  bb[24 + 8 + 1] = kGgufBool;  // retag the u8 value 2 as a bool
  expect_input_error([&] { parse(bb); }, {"mem.gguf", "'b'", "bool"});
  GgufWriter huge;
  huge.add("a", GgufWriter::array(kGgufU64, {}));
  auto hb = huge.bytes();
  const uint64_t count = uint64_t(1) << 61;
  std::memcpy(hb.data() + 24 + 8 + 1 + 4 + 4, &count, 8);
  expect_input_error([&] { parse(hb); }, {"mem.gguf", "'a'", "does not fit"});
  GgufValue deep = GgufWriter::array(kGgufU8, {});
  for (int i = 0; i < 10; ++i) deep = GgufWriter::array(kGgufArray, {deep});
  GgufWriter dw;
  dw.add("deep", deep);
  expect_input_error([&] { parse(dw.bytes()); }, {"mem.gguf", "'deep'", "nested"});
}

TEST(Gguf, OpenNamesMissingFile) {
  expect_input_error([] { GgufFile::open("/nonexistent/x.gguf"); }, {"/nonexistent/x.gguf", "cannot open"});
}

}  // namespace
}  // namespace qoq
