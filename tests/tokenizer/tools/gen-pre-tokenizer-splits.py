#!/usr/bin/env python3
"""gen-pre-tokenizer-splits.py: writes tests/tokenizer/pre_tokenizer_splits.json,
what llama.cpp itself makes of test strings with each of its BPE pre-tokenizers.

It reads llama.cpp's sources vendored in the PyPI sdist llama-cpp-python==0.3.36
(the file tests/tokenizer/fetch-llama-vocabs.sh downloads): the tokenizer.pre
names and their per-name defaults from llama_vocab::impl::load() and the regex
lists from the llm_tokenizer_bpe constructor (src/llama-vocab.cpp), then builds
llama.cpp's own src/unicode.cpp with a small driver and records what
unicode_regex_split(text, regexes, byte_encode=false) returns for each list.
Empty pieces are dropped (they give no token).

  tests/tokenizer/tools/gen-pre-tokenizer-splits.py [SDIST]
"""
import json, os, re, subprocess, sys, tarfile, tempfile

VERSION = "0.3.36"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OUT = os.path.join(REPO, "tests", "tokenizer", "pre_tokenizer_splits.json")

# One string per behaviour the regex families differ on.
TEXTS = [
    "1 12 123 1234 12345 1234567 and ab12345",           # digit grouping (1, 1-3, from the right)
    "I'm he's THEY'RE we've I'LL you'd don't x'y",        # contractions, case
    "HelloWorld helloWorld HELLOworld \u00c0bcD\u00e9f",  # case runs
    "\u4e2d\u6587\u6d4b\u8bd5 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",  # CJK, kana, Hangul
    "tabs\tand\t\tmore   spaces    end   ",              # whitespace runs
    "line1\nline2\r\n\r\nline3\n\n  \n x",                # newlines
    "hello ~~ world!!! (a) $100 +1 <=> `code` |p| a.b,c",  # punctuation and symbols
    "e\u0301cole \u0915\u094d\u0937 na\u00efve",          # combining marks
    "word\u3000\u3000word a\u00a0b c\u2003\u2003d \u180e",  # non-ASCII whitespace
    "<sentinel:12>IMGIMGABZ  two\t\n",                    # chameleon's literal splits
    "\U0001f999 emoji \U0001f44d\U0001f3fd \u0661\u0662\u0663 \u2167",  # emoji, other digits, number letters
]

DRIVER = r'''
#include "unicode.h"
#include <fstream>
#include <iostream>
#include <sstream>
static std::vector<std::string> read0(const char* p) {
  std::ifstream f(p, std::ios::binary); std::stringstream s; s << f.rdbuf(); std::string d = s.str();
  std::vector<std::string> v; size_t a = 0;
  for (size_t i = 0; i < d.size(); ++i) if (d[i] == '\0') { v.push_back(d.substr(a, i - a)); a = i + 1; }
  return v;
}
int main(int, char** argv) {
  auto re = read0(argv[1]);
  for (auto& t : read0(argv[2])) {
    auto w = unicode_regex_split(t, re, false);
    for (size_t i = 0; i < w.size(); ++i) std::cout << w[i] << '\x01';
    std::cout << '\0';
  }
}
'''


def c_unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            out.append({"\\": "\\", '"': '"', "r": "\r", "n": "\n", "t": "\t"}[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def regex_lists(src):
    """LLAMA_VOCAB_PRE_TYPE_* -> regex list, from the llm_tokenizer_bpe constructor."""
    body = src[src.index("struct llm_tokenizer_bpe : llm_tokenizer"):]
    body = body[:body.index("std::vector<std::string> regex_exprs;")]
    types, pending, regs, inside = {}, [], [], False
    for line in body.split("\n"):
        s = line.strip()
        m = re.match(r"case (LLAMA_VOCAB_PRE_TYPE_\w+):", s)
        if m:
            pending.append(m.group(1))
        elif s.startswith("default:"):
            pending.append("LLAMA_VOCAB_PRE_TYPE_DEFAULT")
        elif s.startswith("regex_exprs = {"):
            inside, regs = True, []
        elif inside and s.startswith("};"):
            inside = False
            for t in pending:
                types[t] = regs
        elif inside and not s.startswith("//"):
            m = re.match(r'"((?:[^"\\]|\\.)*)"', s)
            if m:
                regs.append(c_unescape(m.group(1)))
        elif s.startswith("break;"):
            pending = []
    return types


def names(src):
    """tokenizer.pre name -> {type, ignore_merges, add_bos, no_bos}, from llama_vocab::impl::load()."""
    load = src[src.index("// for now, only BPE models have pre-tokenizers"):]
    load = load[:load.index("unknown pre-tokenizer type")]
    out = {}
    for m in re.finditer(r'if \(((?:\s*tokenizer_pre == "[^"]+"\s*\|*\s*)+)\)\s*\{\s*pre_type = (LLAMA_VOCAB_PRE_TYPE_\w+);([^}]*)', load):
        extra = m.group(3)
        for n in re.findall(r'"([^"]+)"', m.group(1)):
            out[n] = {"type": m.group(2), "ignore_merges": "ignore_merges = true" in extra,
                      "add_bos": "add_bos = true" in extra, "no_bos": "special_bos_id = LLAMA_TOKEN_NULL" in extra}
    return out


def compact_json(doc):
    """JSON with one name, text or split per line (diffs stay readable)."""
    one = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
    lines = ["{", f' "source": {one(doc["source"])},', ' "texts": [']
    lines += [f"  {one(t)}," for t in doc["texts"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += [" ],", ' "names": {']
    lines += [f"  {one(n)}: {one(v)}," for n, v in sorted(doc["names"].items())]
    lines[-1] = lines[-1].rstrip(",")
    lines += [" },", ' "splits": {']
    for t, cases in sorted(doc["splits"].items()):
        lines.append(f"  {one(t)}: [")
        lines += [f"   {one(c)}," for c in cases]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("  ],")
    lines[-1] = lines[-1].rstrip(",")
    lines += [" }", "}"]
    return "\n".join(lines)


def main():
    sdist = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(f"~/.cache/xquant/llama_cpp_python-{VERSION}.tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix + "src/") and
                       os.path.basename(m.name) in ("llama-vocab.cpp", "unicode.cpp", "unicode.h", "unicode-data.cpp", "unicode-data.h")]
            tar.extractall(tmp, members)
        src_dir = os.path.join(tmp, prefix, "src")
        src = open(os.path.join(src_dir, "llama-vocab.cpp"), encoding="utf-8").read()
        types, aliases = regex_lists(src), names(src)
        with open(os.path.join(tmp, "driver.cpp"), "w") as f:
            f.write(DRIVER)
        exe = os.path.join(tmp, "split")
        subprocess.run(["g++", "-O1", "-std=c++17", "-I", src_dir, os.path.join(tmp, "driver.cpp"),
                        os.path.join(src_dir, "unicode.cpp"), os.path.join(src_dir, "unicode-data.cpp"), "-o", exe], check=True)
        texts_bin = os.path.join(tmp, "texts.bin")
        with open(texts_bin, "wb") as f:
            f.write(b"".join(t.encode() + b"\0" for t in TEXTS))
        splits = {}
        for t, regs in sorted(types.items()):
            re_bin = os.path.join(tmp, "re.bin")
            with open(re_bin, "wb") as f:
                f.write(b"".join(r.encode() + b"\0" for r in regs))
            out = subprocess.run([exe, re_bin, texts_bin], capture_output=True, check=True).stdout
            splits[t] = [[p.decode() for p in case.split(b"\x01") if p] for case in out.split(b"\0")[:-1]]
    doc = {"source": f"llama.cpp vendored in llama-cpp-python=={VERSION}: src/llama-vocab.cpp, src/unicode.cpp "
                     "(unicode_regex_split, byte_encode=false); empty pieces dropped",
           "texts": TEXTS, "names": aliases, "splits": splits}
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(compact_json(doc) + "\n")
    print(f"{OUT}: {len(aliases)} names, {len(splits)} regex lists, {len(TEXTS)} texts")


if __name__ == "__main__":
    main()
