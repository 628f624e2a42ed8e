#include "tokenizer/tokenizer_base.h"

#include <algorithm>

namespace qoq {

void TokenizerBase::set_chat_template(ChatTemplate t) {
  chat_ = std::move(t);
  stop_ids_.clear();
  if (eos_id() >= 0) stop_ids_.push_back(eos_id());
  for (const char* end_of_turn : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"}) {
    const int id = find_token(end_of_turn);
    if (id >= 0 && std::find(stop_ids_.begin(), stop_ids_.end(), id) == stop_ids_.end()) stop_ids_.push_back(id);
  }
}

}  // namespace qoq
