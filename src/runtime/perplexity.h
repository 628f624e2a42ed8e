// Perplexity by the protocol of DESIGN.md §3: WikiText-2 rows (each line with its trailing "\n"; blank lines,
// " \n" in wiki.test.raw, are empty rows as in the HF dataset) joined with "\n\n", tokenized once (BOS first if the
// tokenizer adds one), cut into non-overlapping windows of ctx tokens (the tail dropped); PPL = exp(mean NLL of every
// next-token prediction in every window).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qoq/model.h"
#include "qoq/tokenizer.h"

namespace qoq {

// The evaluation text of a raw WikiText file's contents: its rows joined with "\n\n". A line of only
// spaces/tabs is an empty row; every other line is a row with its trailing "\n".
std::string wikitext_join(const std::string& raw);

// wikitext_join + one encode, with BOS when the tokenizer adds one.
std::vector<int32_t> perplexity_tokens(const Tokenizer& tok, const std::string& raw);

struct PplOptions {
  int ctx = 2048;
  int max_windows = 0;  // 0: all
  bool progress = true;
};

struct PplResult {
  double ppl = 0;
  double nll_sum = 0;
  int64_t tokens_scored = 0;  // windows * (ctx - 1)
  int windows = 0;
  int64_t tokens_total = 0;  // tokens of the whole text
  double seconds = 0;
};

// InputError when ctx < 2 or the text has fewer than ctx tokens.
PplResult perplexity(const Model& model, std::span<const int32_t> tokens, const PplOptions& opts);

}  // namespace qoq
