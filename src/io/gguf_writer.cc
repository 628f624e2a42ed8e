#include "io/gguf_writer.h"

#include <cstdio>
#include <cstring>

namespace qoq::io {
namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  // resize + memcpy rather than insert: GCC 12 reports a false -Wstringop-overflow on the inlined insert.
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}
void put_str(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void put_value(std::vector<uint8_t>& out, const GgufValue& v) {
  auto as_u = [&] {
    return std::holds_alternative<uint64_t>(v.v) ? std::get<uint64_t>(v.v) : uint64_t(std::get<int64_t>(v.v));
  };
  switch (v.type) {
    case kGgufU8:
    case kGgufI8:
      put<uint8_t>(out, uint8_t(as_u()));
      break;
    case kGgufU16:
    case kGgufI16:
      put<uint16_t>(out, uint16_t(as_u()));
      break;
    case kGgufU32:
    case kGgufI32:
      put<uint32_t>(out, uint32_t(as_u()));
      break;
    case kGgufU64:
    case kGgufI64:
      put<uint64_t>(out, as_u());
      break;
    case kGgufF32:
      put<float>(out, float(std::get<double>(v.v)));
      break;
    case kGgufF64:
      put<double>(out, std::get<double>(v.v));
      break;
    case kGgufBool:
      put<uint8_t>(out, std::get<bool>(v.v) ? 1 : 0);
      break;
    case kGgufString:
      put_str(out, std::get<std::string>(v.v));
      break;
    case kGgufArray: {
      const auto& a = std::get<GgufArray>(v.v);
      put<uint32_t>(out, v.elem_type);
      put<uint64_t>(out, a.size());
      for (const GgufValue& e : a) put_value(out, e);
      break;
    }
    default:
      fail("GgufWriter: unknown value type {}", v.type);
  }
}

}  // namespace

GgufValue GgufWriter::str_array(const std::vector<std::string>& v) {
  GgufArray a;
  for (const auto& s : v) a.push_back(str(s));
  return array(kGgufString, std::move(a));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> dims, uint32_t type,
                            std::vector<uint8_t> data) {
  tensors_.push_back({name, std::move(dims), type, std::move(data)});
}

void GgufWriter::add_f32(const std::string& name, const std::vector<int64_t>& hf_shape,
                         const std::vector<float>& values) {
  std::vector<uint8_t> data(values.size() * 4);
  if (!values.empty()) std::memcpy(data.data(), values.data(), data.size());
  add_tensor(name, std::vector<int64_t>(hf_shape.rbegin(), hf_shape.rend()), kGgmlF32, std::move(data));
}

std::vector<uint8_t> GgufWriter::bytes() const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, 0x46554747);
  put<uint32_t>(out, version_);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& [k, v] : kv_) {
    put_str(out, k);
    put<uint32_t>(out, v.type);
    put_value(out, v);
  }
  auto align = [&](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t off = 0;
  for (const T& t : tensors_) {
    put_str(out, t.name);
    put<uint32_t>(out, uint32_t(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(out, uint64_t(d));
    put<uint32_t>(out, t.type);
    put<uint64_t>(out, off);
    off = align(off + t.data.size());
  }
  out.resize(align(out.size()), 0);
  for (const T& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize(align(out.size()), 0);
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const auto b = bytes();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail_input("{}: cannot create", path);
  const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  if (std::fclose(f) != 0 || !ok) fail_input("{}: write failed", path);
}

}  // namespace qoq::io
