// gguf_blocks_avx2.cpp: the AVX2 + FMA block kernels (gguf_blocks_x86.inc
// with vpmaddubsw + vpmaddwd). Per-function target attributes, as
// qkernels_avx2.cpp; dispatch hands this table out only when the CPU reports
// avx2 and fma.
#include "gguf_blocks.hpp"

#include <xquant/sdk/half.hpp>

#include "stream_prefetch.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_BT __attribute__((target("avx2,fma,f16c")))
#define XQ_BLOCKS_VNNI 0

namespace xquant::cpu {
namespace {
#include "gguf_blocks_x86.inc"
}  // namespace

const BlockKernels kAvx2BlockKernels = {"avx2", dot_q4_0, dot_q8_0, dot_q4_k, dot_q6_k,
                                             dot_q4_1, dot_q5_0, dot_q5_1, dot_q5_k};

}  // namespace xquant::cpu
