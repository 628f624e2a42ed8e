// The qoq binary end to end: bad input gives a nonzero exit and a message naming the problem; the happy paths
// print what they promise. Runs QOQ_BINARY_DIR/qoq (tests/CMakeLists.txt makes test_cli depend on it).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace {

const std::string kData = QOQ_DATA_DIR;
const std::string kStories = kData + "/stories260K/stories260K.bin";

struct CmdResult {
  int status = -1;
  std::string out;  // stdout and stderr together
};

CmdResult run(const std::string& args) {
  const std::string bin = std::string(QOQ_BINARY_DIR) + "/qoq";
  if (!std::filesystem::exists(bin)) ADD_FAILURE() << "missing binary " << bin << " (build the qoq target)";
  CmdResult r;
  FILE* p = popen((bin + " " + args + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

void expect_error(const std::string& args, const std::vector<std::string>& needles) {
  const CmdResult r = run(args);
  EXPECT_NE(r.status, 0) << args << "\n" << r.out;
  EXPECT_NE(r.status, -1) << "crashed: " << args << "\n" << r.out;
  for (const auto& s : needles) EXPECT_NE(r.out.find(s), std::string::npos) << "'" << s << "' not in:\n" << r.out;
}

void require_stories() { ASSERT_TRUE(std::filesystem::exists(kStories)) << "missing " << kStories; }

}  // namespace

TEST(Cli, MissingModelFileIsNamed) {
  expect_error("generate /nonexistent/dir/model.gguf --prompt hi", {"/nonexistent/dir/model.gguf"});
  expect_error("ppl /nonexistent/m.bin --data " + kData + "/wikitext-2-raw/wiki.test.raw", {"/nonexistent/m.bin"});
  expect_error("inspect /nonexistent/x.gguf", {"/nonexistent/x.gguf"});
}

TEST(Cli, PromptLongerThanContextNamesBothNumbers) {
  require_stories();
  // "Once upon a time" is several tokens; a context of 3 cannot hold it.
  const CmdResult r = run("generate " + kStories + " --ctx 3 --prompt 'Once upon a time there was a girl'");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("the prompt has"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("context of 3"), std::string::npos) << r.out;
}

TEST(Cli, InvalidSamplingValuesAreNamed) {
  require_stories();
  expect_error("generate " + kStories + " --temperature -1", {"temperature -1"});
  expect_error("generate " + kStories + " --top-p 2", {"top_p 2"});
  expect_error("generate " + kStories + " --top-p 0", {"top_p 0"});
  expect_error("generate " + kStories + " --top-k -5", {"top_k -5"});
  expect_error("generate " + kStories + " --temperature nan", {"temperature"});
  expect_error("generate " + kStories + " --ctx 100000", {"--ctx 100000", "512"});
}

TEST(Cli, PplBadInputs) {
  require_stories();
  expect_error("ppl " + kStories + " --data /nonexistent/wiki.raw", {"/nonexistent/wiki.raw"});
  expect_error("ppl " + kStories + " --data " + kData + "/wikitext-2-raw/wiki.test.raw --ctx 1", {"--ctx 1"});
}

TEST(Cli, GeneratesTheKnownStoryFromBos) {
  require_stories();
  const CmdResult r = run("generate " + kStories + " --max-tokens 70");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Once upon a time, there was a little girl named Lily. She loved to play outside in the "
                       "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high."),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("decode"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
}

TEST(Cli, InspectPrintsConfigAndTensors) {
  require_stories();
  const CmdResult r = run("inspect " + kStories);
  EXPECT_EQ(r.status, 0) << r.out;
  for (const char* s :
       {"format: llama2c", "hidden_size              64", "num_kv_heads             4", "intermediate_size        172",
        "vocab_size               512", "model.layers.4.mlp.down_proj.weight", "total: "})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " not in:\n" << r.out;
}
