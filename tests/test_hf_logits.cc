// SmolLM2-135M-Instruct logits against an independent implementation: Hugging Face transformers (fp32, CPU) run
// on the same GGUF by scripts/hf_reference.py, stored in tests/data/hf/smollm2_logits.json. Token ids come from
// HF's tokenizer, so this checks the importer and the forward pass alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qoq/model.h"
#include "qoq/model_weights.h"

namespace {

std::string model_path() {
  const std::string p = std::string(QOQ_MODEL_CACHE) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(p)) ADD_FAILURE() << "missing model " << p << " (run scripts/setup.sh)";
  return p;
}

TEST(HfLogits, SmolLM2MatchesTransformers) {
  const std::string fixture = std::string(QOQ_SOURCE_DIR) + "/tests/data/hf/smollm2_logits.json";
  std::ifstream in(fixture);
  ASSERT_TRUE(in) << "missing fixture " << fixture;
  const nlohmann::json ref = nlohmann::json::parse(in);

  qoq::LoadOptions opts;
  opts.progress = false;
  const qoq::ModelWeights weights = qoq::load_model(model_path(), opts);
  const qoq::Model model(weights);
  const int vocab = model.config().vocab_size;

  double worst = 0;
  int positions = 0;
  for (const auto& c : ref["cases"]) {
    const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
    qoq::KVCache cache = model.new_cache(int(ids.size()));
    const qoq::Tensor logits = model.forward(ids, cache, qoq::Model::Logits::All);
    ASSERT_EQ(logits.dim(0), int64_t(ids.size()));
    const float* l = logits.data<float>();
    // For a one-off full-vocabulary comparison (scripts/hf_reference.py --full-dump writes HF's side).
    if (const char* dump = std::getenv("QOQ_HF_DUMP")) {
      std::ofstream out(std::string(dump) + "/qoq_prompt" + std::to_string(&c - &ref["cases"][0]) + ".f32",
                        std::ios::binary);
      out.write(reinterpret_cast<const char*>(l), std::streamsize(logits.nbytes()));
    }
    for (size_t t = 0; t < ids.size(); ++t) {
      const auto& p = c["positions"][t];
      const float* row = l + t * vocab;
      const double range = p["range"].get<double>();
      const auto idx = p["idx"].get<std::vector<int>>();
      const auto want = p["logit"].get<std::vector<double>>();
      double err = 0;
      for (size_t j = 0; j < idx.size(); ++j) err = std::max(err, std::fabs(row[idx[j]] - want[j]));
      worst = std::max(worst, err / range);
      EXPECT_LT(err / range, 1e-3) << "prompt '" << c["prompt"].get<std::string>() << "' position " << t;
      // HF's top token is ours too (up to a near-tie within rounding).
      const float top = *std::max_element(row, row + vocab);
      EXPECT_GE(row[p["argmax"].get<int>()], top - 1e-4 * range)
          << "prompt '" << c["prompt"].get<std::string>() << "' position " << t;
      ++positions;
    }
  }
  std::printf("SmolLM2 vs transformers: %d positions, max |err| / logit range = %.3g\n", positions, worst);
}

}  // namespace
