// Real models end to end: stories260K greedy from BOS reproduces its known text (../shared/data/README.md).
#include <gtest/gtest.h>

#include <filesystem>

#include "qoq/engine.h"
#include "qoq/model.h"
#include "qoq/tokenizer.h"

using namespace qoq;

TEST(LlamaReal, Stories260KGreedyFromBosReproducesTheKnownText) {
  const std::string path = std::string(QOQ_DATA_DIR) + "/stories260K/stories260K.bin";
  ASSERT_TRUE(std::filesystem::exists(path)) << "missing " << path;
  LoadOptions lo;
  lo.progress = false;
  const ModelWeights w = load_model(path, lo);
  const auto tok = load_tokenizer(w.tokenizer);
  const Model model(w);
  ASSERT_EQ(tok->bos_id(), 1);
  KVCache cache = model.new_cache();
  GenerateOptions opts;  // greedy
  opts.max_tokens = 70;
  opts.stop_ids = tok->stop_ids();
  std::vector<int32_t> ids;
  const std::vector<int32_t> prompt = {tok->bos_id()};
  const GenerateStats st = generate(model, cache, prompt, opts, [&](int32_t id) { ids.push_back(id); });
  EXPECT_EQ(st.prompt_tokens, 1);
  const std::string text = tok->decode(ids);
  const std::string known =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
      "saw a big, red ball. She wanted to play with it, but it was too high.";
  EXPECT_EQ(text.substr(0, known.size()), known) << text;
  // Streaming the same ids gives the same text.
  StreamDecoder stream(*tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  EXPECT_EQ(streamed, text);
}
