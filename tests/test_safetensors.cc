// safetensors: write -> read round trips (every dtype, metadata, shards with an index), the byte layout, and
// each header inconsistency giving an InputError that names the file and the field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io_test_util.h"
#include "qoq/half.h"

namespace qoq {
namespace {

using io::SafetensorsFile;
using io::TensorMap;
using testing::expect_input_error;
using testing::TempDir;

Tensor filled(DType t, Shape shape, int seed) {
  Tensor x = Tensor::empty(t, shape);
  auto* b = static_cast<uint8_t*>(x.raw());
  for (size_t i = 0; i < x.nbytes(); ++i) b[i] = uint8_t((i * 131 + size_t(seed) * 17 + 7) & 0xff);
  return x;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

TensorMap all_dtypes() {
  TensorMap m;
  m["a.f32"] = filled(DType::F32, {3, 5}, 1);
  m["b.f16"] = filled(DType::F16, {7}, 2);
  m["c.bf16"] = filled(DType::BF16, {2, 3, 2}, 3);
  m["d.i8"] = filled(DType::I8, {9}, 4);
  m["e.u8"] = filled(DType::U8, {1, 1}, 5);
  m["f.i32"] = filled(DType::I32, {4, 1}, 6);
  m["g.scalar"] = filled(DType::F32, {}, 7);
  m["h.empty"] = filled(DType::F16, {0, 4}, 8);
  return m;
}

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir dir;
  const auto in = all_dtypes();
  const std::string p = dir.file("m.safetensors");
  io::write_safetensors(p, in, {{"format", "pt"}, {"note", "héllo"}});
  const SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.metadata(), (io::StringMap{{"format", "pt"}, {"note", "héllo"}}));
  ASSERT_EQ(f.tensors().size(), in.size());
  for (const auto& [name, t] : in) EXPECT_TRUE(same_bytes(f.get(name), t)) << name;
  // Views outlive the file object (they keep the mapping alive).
  Tensor keep = SafetensorsFile::open(p).get("a.f32");
  EXPECT_TRUE(same_bytes(keep, in.at("a.f32")));
  expect_input_error([&] { f.get("zz"); }, {p, "zz"});

  // Layout: header padded with spaces to 8 bytes; every tensor aligned to its element size; deterministic.
  const auto bytes = testing::read_bytes(p);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + long(n));
  const auto j = nlohmann::json::parse(header);
  for (const auto& [name, t] : in)
    EXPECT_EQ(j[name]["data_offsets"][0].get<uint64_t>() % dtype_size(t.dtype()), 0u) << name;
  io::write_safetensors(dir.file("again.safetensors"), in, {{"format", "pt"}, {"note", "héllo"}});
  EXPECT_EQ(testing::read_bytes(dir.file("again.safetensors")), bytes);
}

TEST(Safetensors, ShardedRoundTrip) {
  TempDir dir;
  TensorMap in;
  for (int i = 0; i < 10; ++i) in[fmt::format("layer.{}.w", i)] = filled(DType::F32, {16, 8}, i);  // 512 B each
  const auto files = io::write_safetensors_sharded(dir.path(), in, {{"format", "pt"}}, 1200);
  ASSERT_EQ(files.size(), 6u);  // 5 shards of <= 2 tensors + the index
  EXPECT_EQ(files[0], "model-00001-of-00005.safetensors");
  EXPECT_EQ(files.back(), "model.safetensors.index.json");
  io::StringMap meta;
  const TensorMap out = io::read_safetensors_index(dir.file("model.safetensors.index.json"), &meta);
  EXPECT_EQ(meta.at("format"), "pt");
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [name, t] : in) EXPECT_TRUE(same_bytes(out.at(name), t)) << name;
  const auto idx = nlohmann::json::parse(testing::read_bytes(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), 10u * 512u);

  // Under the limit: one plain file, no index.
  TempDir one;
  EXPECT_EQ(io::write_safetensors_sharded(one.path(), in, {}, 1 << 20), std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(std::filesystem::exists(one.file("model.safetensors.index.json")));

  // An index that points at a tensor its shard lacks, or outside the directory.
  auto j = idx;
  j["weight_map"]["ghost"] = "model-00001-of-00005.safetensors";
  testing::write_text(dir.file("bad.index.json"), j.dump());
  expect_input_error([&] { io::read_safetensors_index(dir.file("bad.index.json")); },
                     {"bad.index.json", "'ghost'", "model-00001-of-00005.safetensors"});
  j = idx;
  j["weight_map"]["layer.0.w"] = "../etc/passwd";
  testing::write_text(dir.file("bad.index.json"), j.dump());
  expect_input_error([&] { io::read_safetensors_index(dir.file("bad.index.json")); },
                     {"bad.index.json", "layer.0.w", "plain file name"});
  testing::write_text(dir.file("bad.index.json"), R"({"metadata": {}})");
  expect_input_error([&] { io::read_safetensors_index(dir.file("bad.index.json")); }, {"bad.index.json", "weight_map"});
}

TEST(Safetensors, FailedWriteLeavesDestinationUntouched) {
  TempDir dir;
  const std::string p = dir.file("m.safetensors");
  testing::write_text(p, "old contents");
  // Occupy the temp name with a directory so the write cannot even start.
  std::filesystem::create_directory(fmt::format("{}.tmp.{}", p, getpid()));
  expect_input_error([&] { io::write_safetensors(p, all_dtypes()); }, {p});
  EXPECT_EQ(testing::read_bytes(p), (std::vector<uint8_t>{'o', 'l', 'd', ' ', 'c', 'o', 'n', 't', 'e', 'n', 't', 's'}));
  expect_input_error([&] { io::write_safetensors("/nonexistent/dir/m.safetensors", all_dtypes()); },
                     {"/nonexistent/dir/m.safetensors"});
}

// A file with `header` (padded) followed by `data_bytes` bytes.
std::string make_file(const TempDir& dir, const std::string& header, size_t data_bytes, uint64_t len_override = 0) {
  std::vector<uint8_t> b(8);
  const uint64_t n = len_override ? len_override : header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0x11);
  const std::string p = dir.file("bad.safetensors");
  testing::write_bytes(p, b);
  return p;
}

TEST(Safetensors, ValidationErrorsNameFileAndField) {
  TempDir dir;
  auto check = [&](const std::string& header, size_t data, const std::vector<std::string>& parts,
                   uint64_t len_override = 0) {
    const std::string p = make_file(dir, header, data, len_override);
    std::vector<std::string> all = parts;
    all.push_back(p);
    expect_input_error([&] { SafetensorsFile::open(p); }, all);
  };
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  EXPECT_NO_THROW(SafetensorsFile::open(make_file(dir, ok, 16)));

  testing::write_bytes(dir.file("short.safetensors"), {1, 2, 3});
  expect_input_error([&] { SafetensorsFile::open(dir.file("short.safetensors")); }, {"short.safetensors", "truncated"});
  check(ok, 16, {"header length", "past the end"}, 1000);
  check(ok, 16, {"header length"}, ~uint64_t(0));
  check(R"({"w":{"dtype":"F32",)", 0, {"not valid JSON"});
  check(R"([1,2])", 0, {"JSON object"});
  check(R"({"w":{"dtype":"F32","shape":[2,2]}})", 16, {"'w'", "data_offsets"});
  check(R"({"w":{"shape":[2,2],"data_offsets":[0,16]}})", 16, {"'w'", "dtype"});
  check(R"({"w":{"dtype":"F32","data_offsets":[0,16]}})", 16, {"'w'", "shape"});
  check(R"({"w":5})", 0, {"'w'", "object"});
  check(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16, {"'w'", "dtype", "F64"});
  check(R"({"w":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16, {"'w'", "dtype", "I64"});
  check(R"({"w":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", 2, {"'w'", "dtype", "BOOL"});
  check(R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,2]}})", 2, {"'w'", "dtype"});
  check(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 8, {"'w'", "data_offsets", "out of range"});
  check(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}})", 16,
        {"'w'", "data_offsets", "begin 16 > end 0"});
  check(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16, {"'w'", "data_offsets", "needs 16"});
  check(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0]}})", 16, {"'w'", "data_offsets"});
  check(R"({"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}})", 16, {"'w'", "shape"});
  check(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", 16, {"'w'", "shape"});
  check(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16, {"'w'", "shape"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", 16, {"'w'", "data_offsets"});
  check(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
        16, {"'a'", "'b'", "overlap"});
  check(R"({"__metadata__":{"k":1}})", 0, {"__metadata__", "'k'"});
  check(R"({"__metadata__":[1]})", 0, {"__metadata__"});
}

// Offsets that are legal but not aligned to the element size come back as correct (copied) tensors.
TEST(Safetensors, MisalignedDataIsCopied) {
  TempDir dir;
  const std::string header = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("w":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  std::vector<uint8_t> b(8);
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  const float v[2] = {1.5f, -2.25f};
  b.push_back(9);
  b.insert(b.end(), reinterpret_cast<const uint8_t*>(v), reinterpret_cast<const uint8_t*>(v) + 8);
  testing::write_bytes(dir.file("m.safetensors"), b);
  const SafetensorsFile f = SafetensorsFile::open(dir.file("m.safetensors"));
  EXPECT_EQ(f.get("w").data<float>()[0], 1.5f);
  EXPECT_EQ(f.get("w").data<float>()[1], -2.25f);
  EXPECT_EQ(f.get("a").data<uint8_t>()[0], 9);
}

}  // namespace
}  // namespace qoq
