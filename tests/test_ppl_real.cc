// Short WikiText-2 perplexity slices of the real models, by the library protocol `qoq ppl` runs, against values
// this implementation produced (FP32) and `qoq ppl --max-windows` reproduces on the full file (the first windows
// of a row-aligned prefix tokenize the same). A change in the importer, tokenizer or forward moves them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "qoq/model.h"
#include "qoq/tokenizer.h"
#include "runtime/perplexity.h"
#include "wiki_test_util.h"

using namespace qoq;
using qoq::test::wiki_prefix;

namespace {

PplResult run(const std::string& model_path, const std::string& raw, int ctx, int windows) {
  EXPECT_TRUE(std::filesystem::exists(model_path)) << "missing " << model_path;
  LoadOptions lo;
  lo.progress = false;
  const ModelWeights w = load_model(model_path, lo);
  const auto tok = load_tokenizer(w.tokenizer);
  const Model model(w);
  PplOptions o;
  o.ctx = ctx;
  o.max_windows = windows;
  o.progress = false;
  return perplexity(model, perplexity_tokens(*tok, raw), o);
}

}  // namespace

TEST(PplReal, Stories260KFirstWindowsAtCtx512) {
  const PplResult r = run(std::string(QOQ_DATA_DIR) + "/stories260K/stories260K.bin", wiki_prefix(400), 512, 4);
  EXPECT_EQ(r.windows, 4);
  EXPECT_EQ(r.tokens_scored, 4 * 511);
  EXPECT_NEAR(r.ppl, 119.5187591, 1e-4 * 119.5187591) << std::setprecision(10) << r.ppl;
}

TEST(PplReal, SmolLM2FirstWindowsAtCtx128) {
  const PplResult r =
      run(std::string(QOQ_MODEL_CACHE) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf", wiki_prefix(60), 128, 3);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens_scored, 3 * 127);
  EXPECT_NEAR(r.ppl, 47.24900498, 1e-4 * 47.24900498) << std::setprecision(10) << r.ppl;
}
