// Tokenizers against reference implementations (golden ids in tests/data/tokenizer, made by
// scripts/gen_tokenizer_fixtures.py), round trips over real text, streaming, chat templates and bad input.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qoq/error.h"
#include "qoq/tokenizer.h"
#include "tokenizer/sp_bpe.h"

using namespace qoq;
using json = nlohmann::json;

namespace {

std::string data_path(const std::string& rel) {
  const std::string p = std::string(QOQ_DATA_DIR) + "/" + rel;
  if (!std::filesystem::exists(p)) ADD_FAILURE() << "missing shared data file: " << p;
  return p;
}

std::string fixture_path(const std::string& name) {
  const std::string p = std::string(QOQ_SOURCE_DIR) + "/tests/data/tokenizer/" + name;
  if (!std::filesystem::exists(p)) ADD_FAILURE() << "missing fixture: " << p;
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

json read_json(const std::string& path) { return json::parse(read_file(path)); }

std::string temp_file(const std::string& name, const std::string& bytes) {
  const auto p = std::filesystem::temp_directory_path() / ("qoq_test_tok_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}

// Expects an InputError whose message contains every fragment.
template <typename F>
void expect_input_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    for (const auto& frag : fragments) EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what();
  }
}

// Streams ids through a StreamDecoder and checks the pieces are whole UTF-8 and add up to decode(ids).
void expect_stream_matches(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  StreamDecoder sd(tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    // No piece may end inside a multi-byte sequence whose start is valid.
    if (!piece.empty()) {
      const unsigned char last = piece.back();
      EXPECT_FALSE(last >= 0xc2 && last <= 0xf4) << "piece ends with a lead byte";
    }
    streamed += piece;
  }
  streamed += sd.flush();
  EXPECT_EQ(streamed, tok.decode(ids));
}

std::unique_ptr<Tokenizer> tok512() {
  return load_tokenizer({TokenizerSource::Kind::Llama2c, data_path("stories260K/tok512.bin"), ""});
}

}  // namespace

// ---- tok512 (llama2.c SentencePiece-style BPE) ----

TEST(Tok512, BasicsAndKnownIds) {
  auto tok = tok512();
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_EQ(tok->stop_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok->encode("", true), std::vector<int32_t>{1});
  const json fx = read_json(fixture_path("tok512.json"));
  ASSERT_GE(fx["cases"].size(), 30u);
  for (const auto& c : fx["cases"]) {
    const std::string text = c["text"];
    const std::vector<int32_t> want = c["ids"];
    EXPECT_EQ(tok->encode(text, false), want) << text;
    std::vector<int32_t> with_bos = want;
    with_bos.insert(with_bos.begin(), 1);
    EXPECT_EQ(tok->encode(text, true), with_bos) << text;
    EXPECT_EQ(tok->decode(want), text);
    EXPECT_EQ(tok->decode(with_bos), text);
  }
}

TEST(Tok512, RoundTripsWikiTextAndStreams) {
  // The whole of wiki.test.raw as one text: byte fallback covers every character, so decode(encode) is exact.
  auto tok = tok512();
  const std::string text = read_file(data_path("wikitext-2-raw/wiki.test.raw"));
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tok512: %zu bytes -> %zu tokens in %.2f s (%.0f tokens/s)\n", text.size(), ids.size(), s,
              ids.size() / s);
  EXPECT_EQ(tok->decode(ids), text);
  expect_stream_matches(*tok, std::vector<int32_t>(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 20000)));
}

TEST(Tok512, InvalidUtf8RoundTrips) {
  auto tok = tok512();
  const std::string text = "ok \xff\xfe broken \xe2\x82 end \xc3";
  EXPECT_EQ(tok->decode(tok->encode(text, true)), text);
  expect_stream_matches(*tok, tok->encode("caf\xc3\xa9 \xf0\x9f\x98\x80!", true));
}

TEST(Tok512, NoChatTemplate) {
  auto tok = tok512();
  expect_input_error([&] { tok->apply_chat_template({{"user", "hi"}}); }, {"chat template"});
  expect_input_error([&] { tok->decode({512}); }, {"512", "out of range"});
}

TEST(Tok512, CorruptFilesAreRejected) {
  const std::string good = read_file(data_path("stories260K/tok512.bin"));
  expect_input_error([&] { load_llama2c_tokenizer(temp_file("short.bin", good.substr(0, 2))); },
                     {"short.bin", "too short"});
  expect_input_error([&] { load_llama2c_tokenizer(temp_file("trunc.bin", good.substr(0, good.size() - 3))); },
                     {"trunc.bin", "token 511"});
  std::string bad_len = good;
  const int32_t huge = 1000;  // first token's length field, beyond max_token_length
  std::memcpy(bad_len.data() + 8, &huge, 4);
  expect_input_error([&] { load_llama2c_tokenizer(temp_file("badlen.bin", bad_len)); },
                     {"badlen.bin", "token 0", "length 1000"});
  std::string bad_max = good;
  const int32_t neg = -5;
  std::memcpy(bad_max.data(), &neg, 4);
  expect_input_error([&] { load_llama2c_tokenizer(temp_file("badmax.bin", bad_max)); }, {"max_token_length -5"});
  expect_input_error([&] { load_llama2c_tokenizer(data_path("stories260K/tok512.bin"), 32000); },
                     {"512 tokens", "32000"});
  expect_input_error([&] { load_llama2c_tokenizer("/nonexistent/tok.bin"); }, {"/nonexistent/tok.bin"});
}

// ---- golden ids against the reference libraries ----

namespace {

std::vector<std::string> wiki_lines() {
  const std::string all = read_file(data_path("wikitext-2-raw/wiki.test.raw"));
  std::vector<std::string> lines;
  size_t b = 0;
  for (size_t e; (e = all.find('\n', b)) != std::string::npos; b = e + 1) lines.push_back(all.substr(b, e - b));
  lines.push_back(all.substr(b));
  return lines;
}

// Each case is {"text": ..., "ids": [...]} or {"line": index into wiki.test.raw, "ids": [...]}.
void expect_golden(const Tokenizer& tok, const std::string& fixture, size_t min_cases) {
  const json fx = read_json(fixture_path(fixture));
  const auto lines = wiki_lines();
  ASSERT_GE(fx["cases"].size(), min_cases);
  int mismatches = 0;
  for (const auto& c : fx["cases"]) {
    const std::string text = c.contains("text") ? c["text"].get<std::string>() : lines.at(c["line"].get<size_t>());
    const std::vector<int32_t> want = c["ids"];
    const auto got = tok.encode(text, false);
    if (got != want && ++mismatches <= 5) ADD_FAILURE() << fixture << ": ids differ for: " << text;
    EXPECT_EQ(tok.decode(want), text) << fixture << ": decode differs for: " << text;
  }
  EXPECT_EQ(mismatches, 0) << fixture;
}

std::string smollm2_path() {
  const std::string p = std::string(QOQ_MODEL_CACHE) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(p)) ADD_FAILURE() << "missing model (run scripts/setup.sh): " << p;
  return p;
}

const Tokenizer& smollm2() {
  static const std::unique_ptr<Tokenizer> tok = load_tokenizer({TokenizerSource::Kind::Gguf, smollm2_path(), ""});
  return *tok;
}

}  // namespace

TEST(SmolLM2, GoldenIdsMatchHfTokenizers) { expect_golden(smollm2(), "smollm2.json", 300); }

TEST(SmolLM2, SpecialTokensAndIds) {
  const Tokenizer& tok = smollm2();
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_FALSE(tok.adds_bos());
  EXPECT_EQ(tok.encode("<|im_start|>", false), std::vector<int32_t>{1});
  EXPECT_EQ(tok.encode("<|im_end|>", true), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(tok.stop_ids(), (std::vector<int32_t>{2, 0}));  // <|im_end|> (eos), <|endoftext|>
  EXPECT_EQ(tok.token_text(0), "<|endoftext|>");
  // Digits are split one by one (Digits(individual_digits=true)): "2024" is four tokens.
  EXPECT_EQ(tok.encode("2024", false).size(), 4u);
}
