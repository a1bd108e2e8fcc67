// gguf_dequant.cpp: which vector GGUF block decoder (gguf_dequant.hpp) an
// ISA and a ggml type take.
#include "gguf_dequant.hpp"

namespace xquant::cpu {

const GgufDequantKernels* gguf_dequant_kernels_of(Isa isa) {
  switch (isa) {
    case Isa::avx2: return &kAvx2GgufDequant;
    case Isa::avx512: return &kAvx512GgufDequant;
    case Isa::scalar: break;
  }
  return nullptr;
}

GgufDequantBlocks gguf_dequant_blocks(const GgufDequantKernels& t, uint32_t type) {
  switch (type) {  // ggml type ids (gguf_types.hpp)
    case 2: return t.q4_0;
    case 3: return t.q4_1;
    case 6: return t.q5_0;
    case 7: return t.q5_1;
    case 8: return t.q8_0;
    case 12: return t.q4_k;
    case 13: return t.q5_k;
    case 14: return t.q6_k;
    default: return nullptr;
  }
}

}  // namespace xquant::cpu
