#include "quant/pack.h"

#include <cmath>
#include <cstring>

#include "qoq/error.h"
#include "qoq/half.h"

namespace qoq::quant {
namespace {

Tensor u8_tensor(const std::vector<uint8_t>& v, Shape shape) {
  Tensor t = Tensor::empty(DType::U8, std::move(shape));
  QOQ_CHECK(size_t(t.numel()) == v.size(), "u8_tensor: {} values for {}", v.size(), t.str());
  std::memcpy(t.raw(), v.data(), v.size());
  return t;
}

Tensor f16_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::empty(DType::F16, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) {
    t.data<uint16_t>()[i] = float_to_half(v[i]);
    QOQ_CHECK(half_to_float(t.data<uint16_t>()[i]) == v[i], "scale {} is not an fp16 value", v[i]);
  }
  return t;
}

void expect(const Tensor& t, DType dtype, const Shape& shape, const std::string& name, const char* field) {
  QOQ_CHECK_INPUT(t.defined(), "{}.{}: missing", name, field);
  QOQ_CHECK_INPUT(t.dtype() == dtype && t.shape() == shape, "{}.{}: expected {}{}, found {}", name, field,
                  dtype_name(dtype), shape_str(shape), t.str());
}

std::vector<float> read_scales(const Tensor& t, const std::string& name) {
  std::vector<float> s(size_t(t.numel()));
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = half_to_float(t.data<uint16_t>()[i]);
    // A zero, negative or non-finite scale would make every code of the row meaningless.
    QOQ_CHECK_INPUT(std::isfinite(s[i]) && s[i] > 0, "{}.scales[{}] = {} is not a positive finite scale", name, i,
                    s[i]);
  }
  return s;
}

std::vector<uint8_t> read_u8(const Tensor& t, int lo, int hi, const std::string& name, const char* field) {
  const uint8_t* p = t.data<uint8_t>();
  std::vector<uint8_t> v(p, p + t.numel());
  for (size_t i = 0; i < v.size(); ++i)
    QOQ_CHECK_INPUT(v[i] >= lo && v[i] <= hi, "{}.{}[{}] = {} outside [{}, {}]", name, field, i, int(v[i]), lo, hi);
  return v;
}

}  // namespace

PackedLinear pack_linear(const QuantWeight& q) {
  const WeightGrid& g = q.grid;
  PackedLinear p;
  p.scales = f16_tensor(g.scales);
  if (g.format == WeightFormat::W8PerChannel) {
    p.weight = Tensor::empty(DType::I8, {g.N, g.K});
    std::memcpy(p.weight.raw(), q.codes.data(), q.codes.size());
    return p;
  }
  QOQ_CHECK(g.K_pad % 2 == 0, "packed K {} must be even", g.K_pad);
  std::vector<uint8_t> packed(size_t(g.N * g.K_pad / 2));
  for (size_t i = 0; i < packed.size(); ++i)
    packed[i] = uint8_t((q.codes[2 * i] & 15) | (q.codes[2 * i + 1] & 15) << 4);
  p.qweight = u8_tensor(packed, {g.N, g.K_pad / 2});
  if (g.format == WeightFormat::W4PerChannel) {
    p.zeros = u8_tensor(g.zeros, {g.N});
  } else {
    p.group_scales = u8_tensor(g.gscales, {g.N, g.groups_per_row()});
    p.group_zeros = u8_tensor(g.gzeros, {g.N, g.groups_per_row()});
  }
  return p;
}

QuantWeight unpack_linear(const PackedLinear& p, const LinearSpec& spec, const std::string& name) {
  QOQ_CHECK_INPUT(spec.N > 0 && spec.K > 0, "{}: invalid shape [{}, {}]", name, spec.N, spec.K);
  QuantWeight q;
  WeightGrid& g = q.grid;
  g.format = spec.format;
  g.N = spec.N;
  g.K = spec.K;
  expect(p.scales, DType::F16, {spec.N}, name, "scales");
  g.scales = read_scales(p.scales, name);
  if (spec.format == WeightFormat::W8PerChannel) {
    g.K_pad = spec.K;
    expect(p.weight, DType::I8, {spec.N, spec.K}, name, "weight");
    const int8_t* w = p.weight.data<int8_t>();
    q.codes.assign(w, w + p.weight.numel());
    for (size_t i = 0; i < q.codes.size(); ++i)
      QOQ_CHECK_INPUT(q.codes[i] != -128, "{}.weight[{}] = -128 outside [-127, 127]", name, i);
    return q;
  }
  if (spec.format == WeightFormat::W4Group) {
    QOQ_CHECK_INPUT(spec.group >= 2 && spec.group % 2 == 0, "{}: invalid group size {}", name, spec.group);
    g.group = spec.group;
    g.K_pad = (spec.K + spec.group - 1) / spec.group * spec.group;
    expect(p.group_scales, DType::U8, {spec.N, g.groups_per_row()}, name, "group_scales");
    expect(p.group_zeros, DType::U8, {spec.N, g.groups_per_row()}, name, "group_zeros");
    g.gscales = read_u8(p.group_scales, 1, 16, name, "group_scales");
    g.gzeros = read_u8(p.group_zeros, 0, 15, name, "group_zeros");
  } else {
    g.K_pad = spec.K + (spec.K & 1);
    expect(p.zeros, DType::U8, {spec.N}, name, "zeros");
    g.zeros = read_u8(p.zeros, 0, 15, name, "zeros");
  }
  expect(p.qweight, DType::U8, {spec.N, g.K_pad / 2}, name, "qweight");
  const uint8_t* b = p.qweight.data<uint8_t>();
  q.codes.resize(size_t(g.N * g.K_pad));
  for (size_t i = 0; i < q.codes.size(); ++i) q.codes[i] = int8_t(b[i / 2] >> (4 * (i & 1)) & 15);
  return q;
}

void store_linear(const PackedLinear& p, const std::string& prefix, std::map<std::string, Tensor>& out) {
  const std::pair<const char*, const Tensor*> parts[] = {
      {"qweight", &p.qweight},           {"scales", &p.scales},           {"zeros", &p.zeros},
      {"group_scales", &p.group_scales}, {"group_zeros", &p.group_zeros}, {"weight", &p.weight}};
  for (const auto& [field, t] : parts)
    if (t->defined()) out[prefix + "." + field] = *t;
}

PackedLinear load_linear(const std::map<std::string, Tensor>& tensors, const std::string& prefix, WeightFormat format) {
  auto get = [&](const char* field) {
    const auto it = tensors.find(prefix + "." + field);
    QOQ_CHECK_INPUT(it != tensors.end(), "missing tensor {}.{} ({} checkpoint)", prefix, field,
                    weight_format_name(format));
    return it->second;
  };
  PackedLinear p;
  p.scales = get("scales");
  switch (format) {
    case WeightFormat::W8PerChannel:
      p.weight = get("weight");
      break;
    case WeightFormat::W4PerChannel:
      p.qweight = get("qweight");
      p.zeros = get("zeros");
      break;
    case WeightFormat::W4Group:
      p.qweight = get("qweight");
      p.group_scales = get("group_scales");
      p.group_zeros = get("group_zeros");
      break;
  }
  return p;
}

}  // namespace qoq::quant
