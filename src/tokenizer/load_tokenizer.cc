// load_tokenizer(): the one entry point the model loaders and the CLI use.
#include "qoq/error.h"
#include "qoq/tokenizer.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/hf_json_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/sp_bpe.h"

namespace qoq {

std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerSource& src) {
  switch (src.kind) {
    case TokenizerSource::Kind::Llama2c:
      return load_llama2c_tokenizer(src.path);
    case TokenizerSource::Kind::SentencePiece:
      return load_sentencepiece_tokenizer(src.path, src.chat_template);
    case TokenizerSource::Kind::Gguf:
      return load_gguf_tokenizer(src.path, src.chat_template);
    case TokenizerSource::Kind::HfJson:
      return load_hf_json_tokenizer(src.path, src.chat_template);
    case TokenizerSource::Kind::None:
      break;
  }
  fail_input("the model names no tokenizer (TokenizerSource kind None)");
}

}  // namespace qoq
