// The GEMM dispatch table (host code of the CUDA backend; needs no GPU): every model shape gets a supported
// configuration, decode sizes use the 16-token tile, split-K appears only when the grid underfills the H200.
#include <gtest/gtest.h>

#if defined(QOQ_WITH_CUDA)
#include <utility>
#include <vector>

#include "qoq/cuda_gemm.h"

using qoq::cuda::WeightFormat;

TEST(QGemmDispatch, EveryModelShapeGetsASupportedConfig) {
  const std::vector<std::pair<int, int>> shapes = {
      {6144, 4096},  {4096, 4096}, {28672, 4096}, {4096, 14336},                                // Llama-3-8B
      {10240, 8192}, {8192, 8192}, {57344, 8192}, {8192, 28672}, {59136, 8192}, {8192, 29568},  // 70B, Qwen2-72B
      {576, 576},    {192, 576},   {1536, 576},   {576, 1536}};                                 // SmolLM2-135M
  for (auto f : {WeightFormat::kW4PerChannel, WeightFormat::kW4G128, WeightFormat::kW8})
    for (auto [N, K] : shapes) {
      if (f == WeightFormat::kW4G128 && K % 128 != 0) continue;
      for (int M : {1, 3, 16, 17, 64, 127, 128, 129, 256, 1000, 4096, 16384}) {
        const auto c = qoq::cuda::choose_config(f, M, N, K);
        ASSERT_TRUE(qoq::cuda::config_supported(f, c, N, K)) << N << "x" << K << " M=" << M;
        EXPECT_EQ(c.tokens, M <= 16 ? 16 : 128);
        const int ctas = N / (64 * c.row_tiles * c.consumers) * ((M + c.tokens - 1) / c.tokens);
        if (c.split_k > 1) EXPECT_LT(ctas, 132) << "split-K on a grid that already fills the GPU";
        qoq::cuda::QuantLinear w;
        w.format = f, w.N = N, w.K = K;
        EXPECT_EQ(qoq::cuda::gemm_workspace_bytes(w, M) > 0, c.split_k > 1);
      }
    }
}

TEST(QGemmDispatch, RejectsShapesNoKernelTiles) {
  const qoq::cuda::GemmConfig c{128, 2, 2, 1};  // 256 rows per CTA
  EXPECT_FALSE(qoq::cuda::config_supported(WeightFormat::kW8, c, 4096 + 128, 4096));
  EXPECT_FALSE(qoq::cuda::config_supported(WeightFormat::kW4G128, {16, 1, 1, 1}, 576, 576));
  EXPECT_TRUE(qoq::cuda::config_supported(WeightFormat::kW4PerChannel, {16, 1, 1, 1}, 576, 576));
  EXPECT_FALSE(qoq::cuda::config_supported(WeightFormat::kW8, {64, 1, 1, 1}, 4096, 4096));  // no 64-token kernel
}
#endif
