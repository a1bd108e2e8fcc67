// ggml_imatrix_compare.cpp: our importance-weighted block encoders
// (plugins/gguf_writer/weighted_encode.cpp) against ggml's own
// quantize_q4_0 ... quantize_q6_K with quant_weights (ggml_quantize_chunk,
// the call llama-quantize --imatrix makes), linked from the cached llama.cpp
// build by tests/interop/gguf_imatrix_interop.sh.
//
// Fresh random rows (seeded by argv[1]) with a skewed importance; per type it
// prints the share of blocks whose bytes are identical and both encoders'
// importance-weighted error after decoding with ggml's own dequantizer.
// Exit status 1 when any block differs: both follow the same float
// operations in the same order (with GCC 12 on x86-64 against the cached
// llama.cpp build, every block of every type was identical); a difference means
// our search drifted from ggml's, or a compiler there rounds an expression
// differently, and either way needs a look.
#include "weighted_encode.hpp"

#include "gguf_types.hpp"

#include <ggml.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace gg = xquant::gguf;

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 1;
  std::mt19937 rng(seed);
  std::normal_distribution<float> w(0.0f, 0.02f);
  std::lognormal_distribution<float> act(0.0f, 1.5f);
  const int64_t rows = 256, cols = 1024;
  std::vector<float> x(static_cast<size_t>(rows * cols)), imp(static_cast<size_t>(cols));
  for (auto& v : x) v = w(rng);
  for (auto& v : imp) {
    const float a = act(rng);
    v = a * a;
  }
  struct Case {
    uint32_t ours;
    ggml_type theirs;
  };
  const Case cases[] = {{gg::kQ4_0, GGML_TYPE_Q4_0}, {gg::kQ4_1, GGML_TYPE_Q4_1}, {gg::kQ5_0, GGML_TYPE_Q5_0},
                        {gg::kQ5_1, GGML_TYPE_Q5_1}, {gg::kQ4_K, GGML_TYPE_Q4_K}, {gg::kQ5_K, GGML_TYPE_Q5_K},
                        {gg::kQ6_K, GGML_TYPE_Q6_K}};
  ggml_quantize_init(GGML_TYPE_Q4_K);
  bool ok = true;
  for (const Case& c : cases) {
    const size_t row_bytes = ggml_row_size(c.theirs, cols), block = ggml_type_size(c.theirs);
    std::vector<uint8_t> ours(row_bytes * rows), theirs(row_bytes * rows);
    for (int64_t r = 0; r < rows; ++r)
      gg::encode_row_weighted(c.ours, x.data() + r * cols, cols, imp.data(), ours.data() + r * row_bytes);
    ggml_quantize_chunk(c.theirs, x.data(), theirs.data(), 0, rows, cols, imp.data());
    size_t same = 0, blocks = ours.size() / block;
    for (size_t b = 0; b < blocks; ++b) same += std::memcmp(ours.data() + b * block, theirs.data() + b * block, block) == 0;
    const ggml_type_traits* tt = ggml_get_type_traits(c.theirs);
    std::vector<float> yo(static_cast<size_t>(cols)), yt(static_cast<size_t>(cols));
    double eo = 0, et = 0;
    for (int64_t r = 0; r < rows; ++r) {
      tt->to_float(ours.data() + r * row_bytes, yo.data(), cols);
      tt->to_float(theirs.data() + r * row_bytes, yt.data(), cols);
      for (int64_t k = 0; k < cols; ++k) {
        const double xv = x[static_cast<size_t>(r * cols + k)];
        eo += imp[k] * (xv - yo[k]) * (xv - yo[k]);
        et += imp[k] * (xv - yt[k]) * (xv - yt[k]);
      }
    }
    const double share = double(same) / double(blocks);
    const bool pass = same == blocks;
    ok = ok && pass;
    std::printf("%-5s blocks identical to ggml: %zu/%zu (%.2f%%), weighted error ours %.6g, ggml %.6g: %s\n",
                ggml_type_name(c.theirs), same, blocks, 100 * share, eo, et, pass ? "ok" : "FAIL");
  }
  return ok ? 0 : 1;
}
