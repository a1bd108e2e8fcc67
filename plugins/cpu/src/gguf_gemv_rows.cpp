// gguf_gemv_rows.cpp: which GGUF block types have a row-range decode kernel
// (gguf_gemv_rows.hpp) on which ISA, and the XQUANT_CPU_BLOCK_ROWS switch.
#include "gguf_gemv_rows.hpp"

#include <xquant/sdk/host.hpp>

#include <cstdlib>
#include <string>

namespace xquant::cpu {

BlockRowsKernel block_rows_kernel(Isa isa, uint32_t type, bool rows8) {
  if (rows8 && type == 2 && isa == Isa::avx2) return kAvx2Q4_0Rows8;  // GGML_TYPE_Q4_0
  if (rows8 && type == 2 && isa == Isa::avx512) return kAvx512Q4_0Rows8;
  if (isa == Isa::avx2) return type == 12 ? kAvx2Q4_KRows : nullptr;  // GGML_TYPE_Q4_K
  if (isa != Isa::avx512) return nullptr;
  switch (type) {
    case 2: return kAvx512Q4_0Rows;  // ggml type ids (ggml.h GGML_TYPE_Q4_0, _Q8_0), as block_kernel takes them
    case 8: return kAvx512Q8_0Rows;
    case 12: return kAvx512Q4_KRows;  // GGML_TYPE_Q4_K
  }
  return nullptr;
}

BlockRows8Kernel block_rows8_kernel(Isa isa, uint32_t type) {
  // Q4_K / Q6_K: eight rows at a time on AVX2 and AVX-512 alike (on an
  // AVX-512 VNNI EPYC the AVX2 eight-row kernels decoded Qwen2.5-1.5B Q4_K_M
  // at 13.2-15.5 tok/s against 12.0-12.8 for the AVX-512 one-row kernels);
  // AVX-512 takes the same Q4_K source built for it and Q6_K through
  // vpdpbusd (bench_gemv_rows: Q4_K 1.04-1.09x, Q6_K 1.3-1.5x the AVX2 ones
  // on that CPU; docs/engine.md).
  if (type == 12) return isa == Isa::avx2 ? kAvx2Q4_KRows8i : isa == Isa::avx512 ? kAvx512Q4_KRows8i : nullptr;
  if (type == 14) return isa == Isa::avx2 ? kAvx2Q6_KRows8i : isa == Isa::avx512 ? kAvx512Q6_KRows8i : nullptr;
  // Q8_0: AVX-512 only (qgemv_rows8_int8_avx512.cpp); AVX2 keeps its per-row
  // kernel (vpmaddubsw would saturate on unsigned 8-bit codes).
  if (type == 8) return isa == Isa::avx512 ? kAvx512Q8_0Rows8i : nullptr;  // GGML_TYPE_Q8_0
  // Q4_1, Q5_0, Q5_1 (ggml type ids 3, 6, 7): gguf_legacy_rows8.inc.
  const bool avx2 = isa == Isa::avx2, avx512 = isa == Isa::avx512;
  if (type == 3) return avx2 ? kAvx2Q4_1Rows8i : avx512 ? kAvx512Q4_1Rows8i : nullptr;
  if (type == 6) return avx2 ? kAvx2Q5_0Rows8i : avx512 ? kAvx512Q5_0Rows8i : nullptr;
  if (type == 7) return avx2 ? kAvx2Q5_1Rows8i : avx512 ? kAvx512Q5_1Rows8i : nullptr;
  if (type != 2) return nullptr;                                         // GGML_TYPE_Q4_0
  return isa == Isa::avx2 ? kAvx2Q4_0Rows8i : isa == Isa::avx512 ? kAvx512Q4_0Rows8i : nullptr;
}

bool selected_block_rows() {
  const char* env = std::getenv("XQUANT_CPU_BLOCK_ROWS");
  if (!env || !*env || std::string(env) == "on") return true;
  if (std::string(env) == "off") return false;
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, std::string("cpu provider: XQUANT_CPU_BLOCK_ROWS=") + env + " is not on or off");
}

}  // namespace xquant::cpu
