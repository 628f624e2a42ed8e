// Unit test of the fp16 wgmma building blocks of the prefill kernel (src/kernels/cuda/attention/prefill_wgmma.cuh)
// against the CPU, with the exact shared-memory images, descriptors and register layouts the kernel uses:
//   S = Q K^T: Q (64 x 128) and K (128 keys x 128) as sw128 K-major images, 8 wgmma m64n128k16 (both from shared).
//   O = P V:   P (64 x 128 keys) taken from the accumulator layout and packed as the register A operand (pack_a),
//              V (128 keys x 128 channels) as the MN-major (transposed) B image, 8 wgmma m64n128k16.
// The P V product is also run with the descriptor's two strides swapped, to report which reading the hardware takes
// (only the kernel's must pass).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention/prefill_wgmma.cuh"
#include "qoq/half.h"

namespace wg = qoq::cuda::attn::wg;

namespace {

#define CKW(x)                                                                                        \
  do {                                                                                                \
    const cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#x) + ": " + cudaGetErrorString(e_)); \
  } while (0)

__device__ uint8_t* aligned_smem() {
  extern __shared__ uint8_t raw[];
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
}

__device__ void load_image(uint8_t* dst, const uint16_t* src, int rows) {
  for (int i = threadIdx.x; i < rows * 16; i += blockDim.x)
    *reinterpret_cast<uint4*>(dst + wg::sw128_offset(rows, i / 16, i % 16)) = reinterpret_cast<const uint4*>(src)[i];
}

__device__ void store_acc(const float (&d)[64], float* out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = 0; i < 16; ++i)
    for (int e = 0; e < 4; ++e)
      out[(16 * warp + lane / 4 + 8 * (e / 2)) * 128 + 8 * i + 2 * (lane % 4) + (e % 2)] = d[4 * i + e];
}

__global__ void qk_kernel(const uint16_t* q, const uint16_t* k, float* out) {
  uint8_t* sq = aligned_smem();
  uint8_t* sk = sq + 16384;
  load_image(sq, q, 64);
  load_image(sk, k, 128);
  qoq::cuda::fence_proxy_async();
  __syncthreads();
  float d[64];
  const uint32_t qa = qoq::cuda::smem_u32(sq), ka = qoq::cuda::smem_u32(sk);
  wg::wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < 8; ++ks)
    wg::wgmma_ss_m64n128k16(d, wg::desc_sw128(qa + (ks / 4) * 8192 + (ks % 4) * 32, 16, 1024),
                            wg::desc_sw128(ka + (ks / 4) * 16384 + (ks % 4) * 32, 16, 1024), ks);
  wg::wgmma_commit();
  wg::wgmma_wait<0>();
  wg::reg_fence(d);
  store_acc(d, out);
}

__global__ void pv_kernel(const float* p, const uint16_t* v, float* out, int lbo, int sbo) {
  uint8_t* sv = aligned_smem();
  load_image(sv, v, 128);
  qoq::cuda::fence_proxy_async();
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float s[64], o[64];
  for (int i = 0; i < 16; ++i)
    for (int e = 0; e < 4; ++e) {
      s[4 * i + e] = p[(16 * warp + lane / 4 + 8 * (e / 2)) * 128 + 8 * i + 2 * (lane % 4) + (e % 2)];
      o[4 * i + e] = 0.f;
    }
  uint32_t pa[8][4];
  wg::pack_a<0>(s, pa[0]);
  wg::pack_a<1>(s, pa[1]);
  wg::pack_a<2>(s, pa[2]);
  wg::pack_a<3>(s, pa[3]);
  wg::pack_a<4>(s, pa[4]);
  wg::pack_a<5>(s, pa[5]);
  wg::pack_a<6>(s, pa[6]);
  wg::pack_a<7>(s, pa[7]);
  const uint32_t va = qoq::cuda::smem_u32(sv);
  wg::reg_fence(o);
  wg::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) wg::wgmma_rs_m64n128k16_tb(o, pa[kk], wg::desc_sw128(va + kk * 2048, lbo, sbo));
  wg::wgmma_commit();
  wg::wgmma_wait<0>();
  wg::reg_fence(o);
  store_acc(o, out);
}

std::vector<uint16_t> random_half(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = qoq::float_to_half(u(rng));
  return v;
}

// Worst |got - want| / (1e-3 (1 + |want|)) over the 64 x 128 output.
double worst_ratio(const std::vector<float>& got, const std::vector<double>& want) {
  double w = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]) / (1e-3 * (1 + std::fabs(want[i])));
    w = std::max(w, std::isfinite(got[i]) ? e : 1e30);
  }
  return w;
}

TEST(PrefillWgmma, QkSwizzledKMajor) {
  std::mt19937 rng(1);
  const auto q = random_half(64 * 128, rng), k = random_half(128 * 128, rng);
  uint16_t *dq, *dk;
  float* dout;
  CKW(cudaMalloc(&dq, q.size() * 2));
  CKW(cudaMalloc(&dk, k.size() * 2));
  CKW(cudaMalloc(&dout, 64 * 128 * 4));
  CKW(cudaMemcpy(dq, q.data(), q.size() * 2, cudaMemcpyHostToDevice));
  CKW(cudaMemcpy(dk, k.data(), k.size() * 2, cudaMemcpyHostToDevice));
  CKW(cudaMemset(dout, 0xFF, 64 * 128 * 4));
  const int smem = 16384 + 32768 + 1024;
  CKW(cudaFuncSetAttribute(qk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  qk_kernel<<<1, 128, smem>>>(dq, dk, dout);
  CKW(cudaGetLastError());
  CKW(cudaDeviceSynchronize());
  std::vector<float> got(64 * 128);
  CKW(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
  std::vector<double> want(64 * 128);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 128; ++j) {
      double s = 0;
      for (int d = 0; d < 128; ++d) s += double(qoq::half_to_float(q[i * 128 + d])) * qoq::half_to_float(k[j * 128 + d]);
      want[i * 128 + j] = s;
    }
  const double w = worst_ratio(got, want);
  std::printf("  Q K^T (SS, K-major sw128): worst err / tol %.4f (got[0] %.5f want %.5f)\n", w, got[0], want[0]);
  EXPECT_LE(w, 1.0);
  cudaFree(dq), cudaFree(dk), cudaFree(dout);
}

TEST(PrefillWgmma, PvRegisterAMnMajorB) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> p(64 * 128);
  for (auto& x : p) x = u(rng);
  const auto v = random_half(128 * 128, rng);
  float *dp, *dout;
  uint16_t* dv;
  CKW(cudaMalloc(&dp, p.size() * 4));
  CKW(cudaMalloc(&dv, v.size() * 2));
  CKW(cudaMalloc(&dout, 64 * 128 * 4));
  CKW(cudaMemcpy(dp, p.data(), p.size() * 4, cudaMemcpyHostToDevice));
  CKW(cudaMemcpy(dv, v.data(), v.size() * 2, cudaMemcpyHostToDevice));
  std::vector<double> want(64 * 128);
  for (int i = 0; i < 64; ++i)
    for (int d = 0; d < 128; ++d) {
      double s = 0;
      for (int t = 0; t < 128; ++t)
        s += double(qoq::half_to_float(qoq::float_to_half(p[i * 128 + t]))) * qoq::half_to_float(v[t * 128 + d]);
      want[i * 128 + d] = s;
    }
  const int smem = 32768 + 1024;
  CKW(cudaFuncSetAttribute(pv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int variants[2][2] = {{16384, 1024}, {1024, 16384}};  // {LBO, SBO}: the kernel's first
  for (int vi = 0; vi < 2; ++vi) {
    CKW(cudaMemset(dout, 0xFF, 64 * 128 * 4));
    pv_kernel<<<1, 128, smem>>>(dp, dv, dout, variants[vi][0], variants[vi][1]);
    CKW(cudaGetLastError());
    CKW(cudaDeviceSynchronize());
    std::vector<float> got(64 * 128);
    CKW(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
    const double w = worst_ratio(got, want);
    std::printf("  P V (RS, MN-major sw128 B, LBO %d SBO %d)%s: worst err / tol %.4f (got[1] %.5f want %.5f)\n",
                variants[vi][0], variants[vi][1], vi == 0 ? " [kernel]" : "", w, got[1], want[1]);
    if (vi == 0) EXPECT_LE(w, 1.0);
  }
  cudaFree(dp), cudaFree(dv), cudaFree(dout);
}

}  // namespace
