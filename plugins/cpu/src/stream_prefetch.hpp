// stream_prefetch.hpp: software prefetch a fixed distance ahead of a decode
// GEMV's weight stream.
//
// Why: on this project's 2-core AMD EPYC VM (AVX2; bench_gemv_rows at one
// thread, 2026-12-02) the decode kernels read their weights below the plain
// read loop's bandwidth although their instructions leave room: the
// eight-row INT4 kernel on the interleaved copy 64% of the read loop, GGUF
// Q4_0 78%, the per-row Q8_0 kernel (a quantized checkpoint's embedding /
// lm_head table) 62-66%. A prefetch 2 KB ahead of the block being read took
// them to 74-79%, 95-96% and 76-81% (1 KB and 4 KB within a few percent;
// 512 B about half the gain); SmolLM2 decode at one thread 1.12-1.29x
// (docs/engine.md, "Stream prefetch and the INT8 sign trick"). The K-quant
// eight-row kernels had found the same (gguf_q4_k_rows8.inc). Not every
// kernel gains: GGUF Q5_0 rows, bound by their bit unpacking, ran 6% slower
// with it, so they go without. Not measured on AVX-512 machines.
// The distance is in bytes of the stream: every kernel here walks its
// weight bytes in address order, so "ahead" is the next rows' bytes at the
// end of a row.
#pragma once

#include <cstdint>

namespace xquant::cpu {

inline constexpr int64_t kStreamPrefetchBytes = 2048;

// The cache line kStreamPrefetchBytes after p (a hint: never faults).
inline void prefetch_stream(const void* p) {
  __builtin_prefetch(static_cast<const char*>(p) + kStreamPrefetchBytes, 0, 3);
}

}  // namespace xquant::cpu
