// bpe.cpp: the byte-level BPE tokenizer (GGUF tokenizer.model "gpt2", and HF
// tokenizer.json BPE models), reproducing llama.cpp's llm_tokenizer_bpe:
// the text is split by the pre-tokenizer's regexes (RegexSplitter), every
// piece is mapped byte -> unicode (GPT-2 table), then adjacent symbols are
// merged by lowest merge rank (ties: leftmost first). With ignore_merges
// (llama3 and others), a piece that is a token as a whole is taken as is.
#include "core/error.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <memory>
#include <queue>

namespace xquant::tok {

namespace {

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(Vocab v, const std::vector<std::string>& merges, const PreTokenizer& pre)
      : v_(std::move(v)), pre_(pre), splitter_(pre.regexes) {
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string& m = merges[i];
      size_t pos = m.find(' ', 1);  // the first space after the first symbol
      if (pos == std::string::npos) fail(XQ_ERR_MALFORMED, "tokenizer: merge {} ('{}') has no space", i, m);
      ranks_.emplace(m.substr(0, pos) + '\0' + m.substr(pos + 1), static_cast<int>(i));
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    for (const Fragment& f : partition_special(v_, text, parse_special)) {
      if (f.token >= 0) out.push_back(f.token);
      else tokenize(f.text, out);
    }
    return out;
  }

  std::string token_to_piece(int32_t id, bool render_special) const override {
    check(id);
    const std::string& t = v_.tokens[id];
    switch (v_.type(id)) {
      case kNormal: {
        std::string s;
        if (pre_.escape_whitespace) return unescape_whitespace(t);
        if (!unicode_to_bytes(t, &s)) return t;  // not byte-level text: show it as stored
        return s;
      }
      case kByte: return byte_token_value(t);
      case kUserDefined: return t;
      case kControl: case kUnknown: return render_special ? t : std::string();
      default: return std::string();
    }
  }

  std::string decode(const std::vector<int32_t>& ids, bool render_special) const override {
    std::string out;
    for (int32_t id : ids) out += token_to_piece(id, render_special);
    return out;
  }

  const std::string& token_text(int32_t id) const override {
    check(id);
    return v_.tokens[id];
  }
  Kind kind() const override { return Kind::Bpe; }
  int32_t vocab_size() const override { return static_cast<int32_t>(v_.tokens.size()); }
  int32_t bos_id() const override { return v_.bos; }
  int32_t eos_id() const override { return v_.eos; }
  bool is_eog(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= v_.tokens.size()) return false;
    if (id == v_.eos || id == v_.eot || id == v_.eom) return true;
    if (v_.type(id) != kControl) return false;
    const std::string& t = v_.tokens[id];
    return t == "<|eot_id|>" || t == "<|im_end|>" || t == "<|end|>" || t == "<|endoftext|>" || t == "<|eom_id|>" ||
           t == "<end_of_turn>" || t == "<EOT>";
  }
  bool add_bos_by_default() const override { return v_.add_bos; }

 private:
  void check(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= v_.tokens.size())
      fail(XQ_ERR_INVALID_ARGUMENT, "tokenizer: token id {} out of range (vocabulary of {})", id, v_.tokens.size());
  }

  int rank(const std::string& l, const std::string& r) const {
    auto it = ranks_.find(l + '\0' + r);
    return it == ranks_.end() ? -1 : it->second;
  }

  struct Symbol {
    int prev, next;
    size_t off, n;
  };
  struct Bigram {
    int left, right;
    int rank;
    std::string text;
  };
  struct ByRank {
    bool operator()(const Bigram& l, const Bigram& r) const {
      return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
    }
  };

  // The text as llama.cpp's BPE session sees it: UTF-8 as unicode.cpp reads
  // it, spaces escaped for SentencePiece-style vocabularies
  // (llama_escape_whitespace in llama_vocab::impl::tokenize).
  std::string session_text(std::string_view raw_text) const {
    std::string text = utf8_as_llama_reads(raw_text);
    if (!pre_.escape_whitespace) return text;
    std::string escaped;
    for (char c : text) escaped += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
    return escaped;
  }

  void tokenize(std::string_view raw_text, std::vector<int32_t>& out) const {
    const std::string text = session_text(raw_text);
    for (std::string_view raw : splitter_.split(text)) {
      std::string word;
      if (pre_.byte_level)
        for (unsigned char c : raw) word += byte_to_unicode(c);
      else
        word = raw;
      std::vector<Symbol> sym;
      const bool newlines_only = word.find_first_not_of('\n') == std::string::npos;
      if ((pre_.ignore_merges || (pre_.whole_newline_words && newlines_only)) && v_.find(word) >= 0) {
        out.push_back(v_.find(word));
        continue;
      }
      for (size_t off = 0; off < word.size();) {
        size_t n = std::min(utf8_len(static_cast<unsigned char>(word[off])), word.size() - off);
        int idx = static_cast<int>(sym.size());
        sym.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n});
        off += n;
      }
      std::priority_queue<Bigram, std::vector<Bigram>, ByRank> q;
      auto add = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        std::string lt = word.substr(sym[l].off, sym[l].n), rt = word.substr(sym[r].off, sym[r].n);
        int rk = rank(lt, rt);
        if (rk < 0) return;
        q.push({l, r, rk, lt + rt});
      };
      for (int i = 1; i < static_cast<int>(sym.size()); ++i) add(i - 1, i);
      while (!q.empty()) {
        Bigram b = q.top();
        q.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.n == 0 || r.n == 0) continue;
        if (word.compare(l.off, l.n + r.n, b.text) != 0 || l.off + l.n != r.off) continue;  // stale
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        add(l.prev, b.left);
        add(b.left, l.next);
      }
      for (const Symbol& s : sym) {
        if (s.n == 0) continue;
        std::string_view piece = std::string_view(word).substr(s.off, s.n);
        int32_t id = v_.find(piece);
        if (id >= 0) {
          out.push_back(id);
          continue;
        }
        // No token for the merged text: its bytes that are tokens (as
        // llama.cpp): the byte's own text, or <0xXX> for raw UTF-8 pieces.
        for (char c : piece) {
          int32_t bid = v_.find(pre_.byte_level ? std::string(1, c) : byte_token_text(static_cast<uint8_t>(c)));
          if (bid >= 0) out.push_back(bid);
        }
      }
    }
  }

  Vocab v_;
  PreTokenizer pre_;
  std::unordered_map<std::string, int> ranks_;
  RegexSplitter splitter_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe(Vocab vocab, std::vector<std::string> merges, const PreTokenizer& pre) {
  return std::make_unique<BpeTokenizer>(std::move(vocab), merges, pre);
}

}  // namespace xquant::tok
