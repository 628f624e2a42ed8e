#include "io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/mapped_file.h"

namespace qoq::io {
namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit

uint64_t json_uint(const json& v, const std::string& path, const std::string& tensor, const char* field) {
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
    fail_input("{}: tensor '{}': field '{}' must hold non-negative integers, got {}", path, tensor, field, v.dump());
  return v.get<uint64_t>();
}

}  // namespace

const Tensor& SafetensorsFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail_input("{}: no tensor '{}'", path_, name);
  return it->second;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto m = MappedFile::open(path);
  const uint8_t* data = m->data();
  const size_t size = m->size();
  return parse(std::move(m), data, size, path);
}

SafetensorsFile SafetensorsFile::from_memory(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                                             const std::string& name) {
  return parse(std::move(owner), data, size, name);
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<void> owner, const uint8_t* data, size_t size,
                                       const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  if (size < 8) fail_input("{}: truncated safetensors file: {} bytes, the header length alone needs 8", path, size);
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  if (n > size - 8)
    fail_input("{}: header length {} runs past the end of the file ({} bytes after the 8-byte length)", path, n,
               size - 8);
  if (n > kMaxHeaderBytes) fail_input("{}: header length {} exceeds the limit of {} bytes", path, n, kMaxHeaderBytes);
  json h;
  try {
    h = json::parse(reinterpret_cast<const char*>(data) + 8, reinterpret_cast<const char*>(data) + 8 + n);
  } catch (const json::exception& e) {
    fail_input("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!h.is_object()) fail_input("{}: header must be a JSON object", path);

  const uint8_t* base = data + 8 + n;
  const uint64_t data_size = size - 8 - n;
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail_input("{}: __metadata__ must be an object of strings", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail_input("{}: __metadata__ value of '{}' must be a string", path, m.key());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail_input("{}: tensor '{}': entry must be an object", path, name);
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field)) fail_input("{}: tensor '{}': missing field '{}'", path, name, field);
    if (!v["dtype"].is_string()) fail_input("{}: tensor '{}': field 'dtype' must be a string", path, name);
    const DType dtype =
        dtype_from_name(v["dtype"].get<std::string>(), fmt::format("{}: tensor '{}': field 'dtype'", path, name));
    const json& js = v["shape"];
    if (!js.is_array() || js.size() > 8)
      fail_input("{}: tensor '{}': field 'shape' must be an array of at most 8 dimensions", path, name);
    Shape shape;
    int64_t numel = 1;
    for (const json& d : js) {
      const uint64_t dim = json_uint(d, path, name, "shape");
      if (dim > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, int64_t(dim), &numel))
        fail_input("{}: tensor '{}': field 'shape' {} overflows the element count", path, name, js.dump());
      shape.push_back(int64_t(dim));
    }
    const json& jo = v["data_offsets"];
    if (!jo.is_array() || jo.size() != 2)
      fail_input("{}: tensor '{}': field 'data_offsets' must be [begin, end]", path, name);
    const uint64_t begin = json_uint(jo[0], path, name, "data_offsets");
    const uint64_t end = json_uint(jo[1], path, name, "data_offsets");
    if (begin > end) fail_input("{}: tensor '{}': data_offsets begin {} > end {}", path, name, begin, end);
    if (end > data_size)
      fail_input("{}: tensor '{}': data_offsets end {} is out of range (data section has {} bytes)", path, name, end,
                 data_size);
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(uint64_t(numel), uint64_t(dtype_size(dtype)), &bytes) || bytes != end - begin)
      fail_input("{}: tensor '{}': data_offsets span {} bytes but shape {} of {} needs {}", path, name, end - begin,
                 shape_str(shape), dtype_name(dtype), uint64_t(numel) * dtype_size(dtype));
    const uint8_t* p = base + begin;
    Tensor t;
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(dtype) == 0) {
      t = Tensor::view(const_cast<uint8_t*>(p), dtype, shape, owner);
    } else {
      // Misaligned data (legal in the format) would make typed reads undefined: copy it out.
      t = Tensor::empty(dtype, shape);
      if (bytes) std::memcpy(t.raw(), p, bytes);
    }
    auto [pos, inserted] = f.tensors_.emplace(name, std::move(t));
    ranges.push_back({begin, end, &pos->first});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range &a = ranges[i - 1], &b = ranges[i];
    if (b.begin < a.end && a.begin != a.end && b.begin != b.end)
      fail_input("{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap (data_offsets)", path, *a.name, a.begin, a.end,
                 *b.name, b.begin, b.end);
  }
  return f;
}

void write_safetensors(const std::string& path, const TensorMap& tensors, const StringMap& metadata) {
  std::vector<const TensorMap::value_type*> order;
  for (const auto& kv : tensors) {
    QOQ_CHECK(kv.second.defined() && kv.second.device() == Device::CPU, "write_safetensors: tensor '{}' {}", kv.first,
              kv.second.defined() ? "is not on the CPU" : "is undefined");
    order.push_back(&kv);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return dtype_size(a->second.dtype()) > dtype_size(b->second.dtype()); });
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto* kv : order) {
    const Tensor& t = kv->second;
    h[kv->first] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // tensor data starts 8-byte aligned

  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  std::FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) fail_input("{}: cannot create: {}", tmp, std::strerror(errno));
  const uint64_t n = header.size();
  bool ok = std::fwrite(&n, 8, 1, fp) == 1 && std::fwrite(header.data(), 1, header.size(), fp) == header.size();
  for (const auto* kv : order) {
    const Tensor& t = kv->second;
    if (ok && t.nbytes()) ok = std::fwrite(t.raw(), 1, t.nbytes(), fp) == t.nbytes();
  }
  ok = (std::fflush(fp) == 0) && ok;
  const int err = errno;
  ok = (std::fclose(fp) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : err;
    std::remove(tmp.c_str());
    fail_input("{}: write failed: {}", path, std::strerror(e));
  }
}

std::vector<std::string> write_safetensors_sharded(const std::string& dir, const TensorMap& tensors,
                                                   const StringMap& metadata, uint64_t max_shard_bytes,
                                                   const std::string& base) {
  namespace fs = std::filesystem;
  std::vector<TensorMap> shards(1);
  uint64_t cur = 0, total = 0;
  for (const auto& [name, t] : tensors) {
    if (cur > 0 && cur + t.nbytes() > max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().emplace(name, t);
    cur += t.nbytes();
    total += t.nbytes();
  }
  if (shards.size() == 1) {
    const std::string file = base + ".safetensors";
    write_safetensors((fs::path(dir) / file).string(), tensors, metadata);
    return {file};
  }
  std::vector<std::string> files;
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = fmt::format("{}-{:05d}-of-{:05d}.safetensors", base, i + 1, shards.size());
    write_safetensors((fs::path(dir) / file).string(), shards[i], metadata);
    for (const auto& kv : shards[i]) weight_map[kv.first] = file;
    files.push_back(file);
  }
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string index_file = base + ".safetensors.index.json";
  const std::string index_path = (fs::path(dir) / index_file).string();
  const std::string tmp = fmt::format("{}.tmp.{}", index_path, getpid());
  {
    std::FILE* fp = std::fopen(tmp.c_str(), "wb");
    if (!fp) fail_input("{}: cannot create: {}", tmp, std::strerror(errno));
    const std::string text = index.dump(2) + "\n";
    bool ok = std::fwrite(text.data(), 1, text.size(), fp) == text.size();
    ok = (std::fclose(fp) == 0) && ok;
    if (!ok || std::rename(tmp.c_str(), index_path.c_str()) != 0) {
      std::remove(tmp.c_str());
      fail_input("{}: write failed", index_path);
    }
  }
  files.push_back(index_file);
  return files;
}

TensorMap read_safetensors_index(const std::string& index_path, StringMap* metadata) {
  namespace fs = std::filesystem;
  json index;
  try {
    index = json::parse(read_text_file(index_path));
  } catch (const json::exception& e) {
    fail_input("{}: invalid JSON: {}", index_path, e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail_input("{}: missing field 'weight_map' (an object of tensor name -> file)", index_path);
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, SafetensorsFile> shards;
  TensorMap out;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail_input("{}: weight_map['{}'] must be a file name", index_path, it.key());
    const std::string file = it.value().get<std::string>();
    // Shards live next to the index; a path would let a checkpoint read arbitrary files.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      fail_input("{}: weight_map['{}'] = '{}' is not a plain file name", index_path, it.key(), file);
    auto s = shards.find(file);
    if (s == shards.end()) s = shards.emplace(file, SafetensorsFile::open((dir / file).string())).first;
    if (!s->second.has(it.key()))
      fail_input("{}: tensor '{}' listed in weight_map is not in shard {}", index_path, it.key(), s->second.path());
    out[it.key()] = s->second.get(it.key());
  }
  if (metadata && !shards.empty()) *metadata = shards.begin()->second.metadata();
  return out;
}

}  // namespace qoq::io
