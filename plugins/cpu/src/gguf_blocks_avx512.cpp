// gguf_blocks_avx512.cpp: the AVX-512 VNNI block kernels (gguf_blocks_x86.inc
// with vpdpbusd on 256-bit vectors, which needs AVX-512 VL). Per-function
// target attributes, as qkernels_avx512.cpp; dispatch hands this table out
// only when the CPU has avx512f, bw, vl and vnni.
#include "gguf_blocks.hpp"

#include <xquant/sdk/half.hpp>

#include "stream_prefetch.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_BT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define XQ_BLOCKS_VNNI 1

namespace xquant::cpu {
namespace {
#include "gguf_blocks_x86.inc"
}  // namespace

const BlockKernels kAvx512BlockKernels = {"avx512", dot_q4_0, dot_q8_0, dot_q4_k, dot_q6_k,
                                             dot_q4_1, dot_q5_0, dot_q5_1, dot_q5_k};

}  // namespace xquant::cpu
