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
  // Q4_K / Q6_K have AVX2 eight-row kernels only; an AVX-512 CPU runs them
  // too (it has AVX2, FMA and F16C): on an AVX-512 VNNI EPYC they decoded
  // Qwen2.5-1.5B Q4_K_M at 13.2-15.5 tok/s against 12.0-12.8 for the
  // AVX-512 one-row kernels, one thread, interleaved (docs/engine.md).
  const bool avx2_or_wider = isa == Isa::avx2 || isa == Isa::avx512;
  if (type == 12) return avx2_or_wider ? kAvx2Q4_KRows8i : nullptr;  // GGML_TYPE_Q4_K
  if (type == 14) return avx2_or_wider ? kAvx2Q6_KRows8i : nullptr;  // GGML_TYPE_Q6_K
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
