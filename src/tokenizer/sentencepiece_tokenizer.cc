#include "tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include "qoq/error.h"
#include "tokenizer/tokenizer_base.h"

namespace qoq {

namespace {

constexpr std::string_view kSpaceMark = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

class SentencePieceTokenizer : public TokenizerBase {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    const auto status = sp_.Load(path);
    if (!status.ok()) fail_input("cannot load SentencePiece model '{}': {}", path, status.ToString());
    for (int id : {sp_.bos_id(), sp_.eos_id()}) {
      if (id >= 0) specials_.emplace_back(sp_.IdToPiece(id), id);
    }
    // Chunked encoding needs: no piece holding a newline, and "\n" encoding to [space, <0x0A>].
    bool newline_in_piece = false;
    for (int id = 0; id < sp_.GetPieceSize(); ++id) {
      if (!sp_.IsByte(id) && sp_.IdToPiece(id).find('\n') != std::string::npos) newline_in_piece = true;
    }
    std::vector<int> probe;
    if (!newline_in_piece && sp_.Encode("\n", &probe).ok() && probe.size() == 2 && sp_.IsByte(probe[1])) {
      space_id_ = probe[0];
      newline_id_ = probe[1];
      chunkable_ = sp_.IdToPiece(space_id_) == kSpaceMark;
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_id() >= 0) out.push_back(bos_id());
    size_t pos = 0;
    while (pos < text.size()) {
      // Next occurrence of any control piece text; the segment before it goes to SentencePiece.
      size_t hit = std::string_view::npos;
      int hit_id = -1;
      size_t hit_len = 0;
      for (const auto& [piece, id] : specials_) {
        const size_t p = text.find(piece, pos);
        if (p < hit) hit = p, hit_id = id, hit_len = piece.size();
      }
      const size_t end = hit == std::string_view::npos ? text.size() : hit;
      if (end > pos) encode_segment(text.substr(pos, end - pos), out);
      if (hit == std::string_view::npos) break;
      if (!(hit == 0 && hit_id == bos_id() && add_bos && out.size() == 1)) out.push_back(hit_id);  // no double BOS
      pos = hit + hit_len;
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int id = ids[i];
      if (id < 0 || id >= vocab_size()) fail_input("token id {} out of range [0, {})", id, vocab_size());
      if (sp_.IsControl(id)) continue;
      std::string piece;
      if (sp_.IsByte(id)) {
        unsigned b = 0;
        std::sscanf(sp_.IdToPiece(id).c_str(), "<0x%02X>", &b);
        piece.assign(1, char(b));
      } else if (sp_.IsUnknown(id)) {
        piece = " \xe2\x81\x87 ";  // SentencePiece's surface for <unk>: " ⁇ "
      } else {
        const std::string raw = sp_.IdToPiece(id);
        for (size_t p = 0; p < raw.size();) {
          if (raw.compare(p, kSpaceMark.size(), kSpaceMark) == 0) {
            piece += ' ';
            p += kSpaceMark.size();
          } else {
            piece += raw[p++];
          }
        }
      }
      const bool at_start = i == 0 || ids[i - 1] == bos_id();
      if (at_start && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);  // the dummy prefix
      out += piece;
    }
    return out;
  }

  int vocab_size() const override { return sp_.GetPieceSize(); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  bool adds_bos() const override { return sp_.bos_id() >= 0; }
  std::string token_text(int id) const override {
    if (id < 0 || id >= vocab_size()) fail_input("token id {} out of range [0, {})", id, vocab_size());
    return sp_.IdToPiece(id);
  }

 protected:
  int find_token(const std::string& text) const override {
    const int id = sp_.PieceToId(text);
    return id >= 0 && sp_.IdToPiece(id) == text ? id : -1;
  }

 private:
  std::vector<int> sp_encode(std::string_view text) const {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) fail_input("SentencePiece ({}) cannot encode the text: {}", path_, status.ToString());
    return ids;
  }

  // libsentencepiece slows down badly on long inputs (86 s for 10 MB in one call). When no piece contains a
  // newline, no merge crosses one, so the text is encoded in chunks cut after newlines. A chunk that does not
  // start the text must not get the dummy prefix: it is encoded as "\n" + chunk, whose first two ids are
  // exactly [" ", <0x0A>] (checked), and those two are dropped.
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const {
    constexpr size_t kChunk = 4096;
    size_t begin = 0;
    while (begin < text.size()) {
      size_t end = text.size();
      if (chunkable_ && text.size() - begin > 2 * kChunk) {
        const size_t nl = text.find('\n', begin + kChunk);
        if (nl != std::string_view::npos) end = nl + 1;
      }
      std::vector<int> ids;
      if (begin == 0) {
        ids = sp_encode(text.substr(0, end));
      } else {
        std::string with_newline = "\n";
        with_newline += text.substr(begin, end - begin);
        ids = sp_encode(with_newline);
        QOQ_CHECK(ids.size() >= 2 && ids[0] == space_id_ && ids[1] == newline_id_,
                  "SentencePiece chunking: unexpected leading ids for a chunk of {}", path_);
        ids.erase(ids.begin(), ids.begin() + 2);
      }
      out.insert(out.end(), ids.begin(), ids.end());
      begin = end;
    }
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<std::pair<std::string, int>> specials_;
  bool chunkable_ = false;
  int space_id_ = -1, newline_id_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path, const std::string& chat_template) {
  auto tok = std::make_unique<SentencePieceTokenizer>(path);
  const std::string bos = tok->bos_id() >= 0 ? tok->token_text(tok->bos_id()) : "";
  const std::string eos = tok->eos_id() >= 0 ? tok->token_text(tok->eos_id()) : "";
  ChatTemplate t = detect_chat_template(
      chat_template, [](const std::string&) { return false; }, bos, eos);
  // A bare tokenizer.model carries no template; the Llama-2 family is the one that ships this format.
  if (chat_template.empty()) t.format = ChatFormat::Llama2;
  tok->set_chat_template(std::move(t));
  return tok;
}

}  // namespace qoq
