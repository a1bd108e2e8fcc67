// regex_split.cpp: RegexSplitter, the pre-tokenizer's regex split on PCRE2
// (UTF + Unicode properties), matching llama.cpp's unicode_regex_split
// (src/unicode.cpp):
//   - each regex splits every piece the previous regex produced, and both
//     matches and the unmatched gaps between them become pieces
//     (unicode_regex_split_stl);
//   - an empty match cuts the piece where it matches, as std::regex_iterator
//     reports it there (superbpe's lookahead-only regex relies on it);
//   - \s and \S mean llama.cpp's whitespace, the Unicode White_Space set
//     (unicode_set_whitespace), not PCRE2's, which also has U+180E;
//   - $ matches only at the end of a piece (ECMAScript), not before a final
//     newline as PCRE2's default does.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <memory>

namespace xquant::tok {

namespace {

// Unicode White_Space, as a PCRE2 class body.
constexpr const char* kWhitespace =
    "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// Rewrites \s and \S to kWhitespace (inside a class: its body; outside: a
// class of it or of its complement). \Q...\E literals are copied as they are.
std::string with_llama_whitespace(const std::string& re) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      const char e = re[i + 1];
      if (e == 'Q') {  // literal up to \E (or the end)
        size_t end = re.find("\\E", i + 2);
        end = end == std::string::npos ? re.size() : end + 2;
        out.append(re, i, end - i);
        i = end - 1;
        continue;
      }
      if (e == 's') out += in_class ? std::string(kWhitespace) : "[" + std::string(kWhitespace) + "]";
      else if (e == 'S' && !in_class) out += "[^" + std::string(kWhitespace) + "]";
      else out.append(re, i, 2);
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end.
      if (i + 1 < re.size() && re[i + 1] == '^') out += re[++i];
      if (i + 1 < re.size() && re[i + 1] == ']') out += re[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct MatchDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct ContextDeleter {
  void operator()(pcre2_match_context* c) const { pcre2_match_context_free(c); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};

// The JIT's stack: PCRE2's default 32 KiB overflows on long letter runs with
// the lookahead-heavy regexes (gpt-4o, tekken, kimi-k2); memory is reserved,
// not touched, up to the maximum.
constexpr size_t kJitStackStart = 32 * 1024, kJitStackMax = 64 * 1024 * 1024;

}  // namespace

// Its deleter is a member, not in the anonymous namespace above: a class of
// the header's namespace may not hold a type of this file's anonymous one
// (GCC's -Wsubobject-linkage, seen when a unity build includes this file).
struct RegexSplitter::Compiled {
  struct CodeDeleter {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
  };
  std::unique_ptr<pcre2_code, CodeDeleter> code;
};

RegexSplitter::RegexSplitter(const std::vector<std::string>& regexes) {
  for (const std::string& re : regexes) {
    const std::string pattern = with_llama_whitespace(re);
    int err = 0;
    PCRE2_SIZE at = 0;
    pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &err, &at,
                                  nullptr);
    if (!c) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      fail(XQ_ERR_INVALID_ARGUMENT, "tokenizer: pre-tokenizer regex '{}' does not compile at {}: {}", re, at,
           reinterpret_cast<const char*>(buf));
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // best effort; the interpreter is the fallback
    regexes_.push_back({std::unique_ptr<pcre2_code, Compiled::CodeDeleter>(c)});
  }
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  // Per call, so that one splitter may serve several threads.
  std::unique_ptr<pcre2_jit_stack, JitStackDeleter> jit_stack(
      pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr));
  std::unique_ptr<pcre2_match_context, ContextDeleter> context(pcre2_match_context_create(nullptr));
  if (!jit_stack || !context) fail(XQ_ERR_OUT_OF_MEMORY, "tokenizer: cannot allocate the regex match stack");
  pcre2_jit_stack_assign(context.get(), nullptr, jit_stack.get());
  for (const Compiled& re : regexes_) {
    std::unique_ptr<pcre2_match_data, MatchDeleter> md(pcre2_match_data_create_from_pattern(re.code.get(), nullptr));
    std::vector<std::string_view> next;
    for (std::string_view p : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(p.data());
      size_t start = 0, prev = 0;
      uint32_t options = 0;
      while (start <= p.size()) {
        int rc = pcre2_match(re.code.get(), subject, p.size(), start, options, md.get(), context.get());
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // deeper than the JIT stack: the interpreter keeps its frames on the heap
          rc = pcre2_match(re.code.get(), subject, p.size(), start, options | PCRE2_NO_JIT, md.get(), context.get());
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {  // e.g. the match limit: never a silent gap
          PCRE2_UCHAR buf[256];
          pcre2_get_error_message(rc, buf, sizeof(buf));
          fail(XQ_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer regex {} of {} failed at byte {} of a {}-byte piece: {}",
               &re - regexes_.data() + 1, regexes_.size(), start, p.size(), reinterpret_cast<const char*>(buf));
        }
        if (rc < 0) {
          if (options == 0 || start >= p.size()) break;  // no more matches (invalid UTF-8 is not matched: a gap)
          // No non-empty match right after an empty one: move one character on.
          options = 0;
          start += utf8_len(static_cast<unsigned char>(p[start]));
          continue;
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t ms = ov[0], me = ov[1];
        if (ms > prev) next.push_back(p.substr(prev, ms - prev));
        if (me > ms) next.push_back(p.substr(ms, me - ms));
        prev = start = me;
        // After an empty match, look for a non-empty one at the same place
        // first (as std::regex_iterator does with match_not_null).
        options = me == ms ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
      }
      if (prev < p.size()) next.push_back(p.substr(prev));
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace xquant::tok
