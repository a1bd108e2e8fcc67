// spm.cpp: the SentencePiece-style tokenizer (GGUF tokenizer.model "llama"),
// reproducing llama.cpp's llm_tokenizer_spm: spaces become U+2581, a U+2581
// is prepended to text that follows the start or a special token
// (add_space_prefix), UTF-8 characters are merged greedily by the score of
// the merged token (ties: leftmost first), and characters that never form a
// token fall back to <0xXX> byte tokens.
#include "core/error.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <queue>

namespace xquant::tok {

namespace {

const std::string kSpace = "\xe2\x96\x81";  // U+2581

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(Vocab v) : v_(std::move(v)) {}

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    bool prev_special = true;  // the start counts as "after a special token"
    for (const Fragment& f : partition_special(v_, text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      std::string s;
      if (v_.add_space_prefix && prev_special) s = " ";
      s.append(f.text);
      std::string esc;
      esc.reserve(s.size() + 8);
      for (char c : s) {
        if (c == ' ') esc += kSpace;
        else esc += c;
      }
      tokenize(esc, out);
      prev_special = false;
    }
    return out;
  }

  std::string token_to_piece(int32_t id, bool render_special) const override {
    check(id);
    const std::string& t = v_.tokens[id];
    switch (v_.type(id)) {
      case kNormal: case kUserDefined: {
        std::string s;
        for (size_t i = 0; i < t.size();) {
          if (t.compare(i, 3, kSpace) == 0) {
            s += ' ';
            i += 3;
          } else {
            s += t[i++];
          }
        }
        return s;
      }
      case kUnknown: return "\xe2\x96\x85";  // llama.cpp renders <unk> as U+2585
      case kControl: return render_special ? t : std::string();
      case kByte: {
        // "<0xAB>"
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0) return std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
        return t;
      }
      default: return std::string();
    }
  }

  std::string decode(const std::vector<int32_t>& ids, bool render_special) const override {
    std::string out;
    bool strip = v_.add_space_prefix;  // the space encode() prepended
    for (int32_t id : ids) {
      std::string p = token_to_piece(id, render_special);
      if (strip && !p.empty() && p[0] == ' ') p.erase(0, 1);
      strip = false;
      out += p;
    }
    return out;
  }

  const std::string& token_text(int32_t id) const override {
    check(id);
    return v_.tokens[id];
  }
  Kind kind() const override { return Kind::Spm; }
  int32_t vocab_size() const override { return static_cast<int32_t>(v_.tokens.size()); }
  int32_t bos_id() const override { return v_.bos; }
  int32_t eos_id() const override { return v_.eos; }
  bool is_eog(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= v_.tokens.size()) return false;
    return id == v_.eos || id == v_.eot || id == v_.eom;
  }
  bool add_bos_by_default() const override { return v_.add_bos; }

 private:
  void check(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= v_.tokens.size())
      fail(XQ_ERR_INVALID_ARGUMENT, "tokenizer: token id {} out of range (vocabulary of {})", id, v_.tokens.size());
  }

  struct Symbol {
    int prev, next;
    size_t off, n;
  };
  struct Bigram {
    int left, right;
    float score;
    size_t size;
  };
  struct ByScore {
    bool operator()(const Bigram& l, const Bigram& r) const {
      return l.score < r.score || (l.score == r.score && l.left > r.left);
    }
  };

  void tokenize(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<Symbol> sym;
    for (size_t off = 0; off < text.size();) {
      size_t n = std::min(utf8_len(static_cast<unsigned char>(text[off])), text.size() - off);
      int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
      off += n;
    }
    std::priority_queue<Bigram, std::vector<Bigram>, ByScore> q;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      int32_t id = v_.find(std::string_view(text).substr(sym[l].off, sym[l].n + sym[r].n));
      if (id < 0) return;
      q.push({l, r, v_.scores[id], sym[l].n + sym[r].n});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);
    while (!q.empty()) {
      Bigram b = q.top();
      q.pop();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    if (sym.empty()) return;
    for (int i = 0; i != -1; i = sym[i].next) {
      std::string_view piece = std::string_view(text).substr(sym[i].off, sym[i].n);
      int32_t id = v_.find(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // Byte fallback: every byte as <0xXX> (or the byte itself as a token).
      for (unsigned char c : piece) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        char buf[7] = {'<', '0', 'x', kHex[c >> 4], kHex[c & 15], '>', 0};
        int32_t bid = v_.find(buf);
        if (bid < 0) bid = v_.find(std::string(1, static_cast<char>(c)));
        if (bid < 0) bid = v_.unk;
        if (bid >= 0) out.push_back(bid);
      }
    }
  }

  Vocab v_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm(Vocab vocab) {
  if (vocab.scores.size() != vocab.tokens.size())
    fail(XQ_ERR_MALFORMED, "tokenizer: a SentencePiece vocabulary needs one score per token");
  return std::make_unique<SpmTokenizer>(std::move(vocab));
}

}  // namespace xquant::tok
