// The sampler: greedy is argmax, sampling follows the filtered distribution, seeds reproduce, and invalid
// parameters are InputErrors naming the parameter.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "runtime/sampler.h"

using namespace qoq;

namespace {

std::string error_of(const SamplingParams& p) {
  try {
    Sampler s(p);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::map<int32_t, int> histogram(const SamplingParams& p, const std::vector<float>& logits, int n) {
  Sampler s(p);
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) h[s.sample(logits)]++;
  return h;
}

}  // namespace

TEST(Sampler, GreedyIsArgmaxFirstOnTies) {
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -2.0f, 3.0f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-1e30f, -1e29f}), 1);
  EXPECT_THROW(s.sample(std::vector<float>{0.0f, std::nanf("")}), Error);
}

TEST(Sampler, SameSeedSameTokensOtherSeedDiffers) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[size_t(i)] = float(std::sin(i * 1.7));
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(logits));
    return out;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST(Sampler, TemperatureFollowsSoftmax) {
  // logits log(1), log(2), log(5): probabilities 1/8, 2/8, 5/8 at temperature 1.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(5.0f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1;
  const int n = 40000;
  auto h = histogram(p, logits, n);
  EXPECT_NEAR(h[0] / double(n), 1.0 / 8, 0.01);
  EXPECT_NEAR(h[1] / double(n), 2.0 / 8, 0.01);
  EXPECT_NEAR(h[2] / double(n), 5.0 / 8, 0.01);
  // Temperature 0.5 squares the ratios: 1/30, 4/30, 25/30.
  p.temperature = 0.5f;
  h = histogram(p, logits, n);
  EXPECT_NEAR(h[0] / double(n), 1.0 / 30, 0.01);
  EXPECT_NEAR(h[2] / double(n), 25.0 / 30, 0.01);
}

TEST(Sampler, TopKAndTopPFilter) {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.4f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;  // keeps ids 1 and 2, renormalized to 4/7 and 3/7
  const int n = 20000;
  auto h = histogram(p, logits, n);
  EXPECT_EQ(h.count(0) + h.count(3), 0u);
  EXPECT_NEAR(h[1] / double(n), 4.0 / 7, 0.015);
  p.top_k = 0;
  p.top_p = 0.75f;  // 0.4 + 0.3 = 0.7 < 0.75, so 0.2 joins: ids 1, 2, 3
  h = histogram(p, logits, n);
  EXPECT_EQ(h.count(0), 0u);
  EXPECT_NEAR(h[3] / double(n), 0.2 / 0.9, 0.015);
  p.top_p = 0.3f;  // the top token alone reaches it
  h = histogram(p, logits, 200);
  EXPECT_EQ(h[1], 200);
  p.top_k = 1;
  p.top_p = 1.0f;
  h = histogram(p, logits, 200);
  EXPECT_EQ(h[1], 200);
}

TEST(Sampler, InvalidParametersAreNamed) {
  SamplingParams p;
  p.temperature = -1.0f;
  EXPECT_NE(error_of(p).find("temperature -1"), std::string::npos) << error_of(p);
  p.temperature = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_of(p).find("temperature"), std::string::npos);
  p = {};
  p.top_p = 2.0f;
  EXPECT_NE(error_of(p).find("top_p 2"), std::string::npos) << error_of(p);
  p.top_p = 0.0f;
  EXPECT_NE(error_of(p).find("top_p"), std::string::npos);
  p.top_p = std::nanf("");
  EXPECT_NE(error_of(p).find("top_p"), std::string::npos);
  p = {};
  p.top_k = -3;
  EXPECT_NE(error_of(p).find("top_k -3"), std::string::npos) << error_of(p);
  p = {};
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  EXPECT_EQ(error_of(p), "");
}
