// qgemv_rows8.cpp: which INT4 decode GEMV the provider runs (the eight-row
// kernels of qgemv_rows8.hpp or the one-row ones of qgemv_rows.hpp) and the
// XQUANT_CPU_GEMV_ROWS8 switch.
#include "qgemv_rows8.hpp"

#include <xquant/sdk/host.hpp>

#include <cstdlib>
#include <string>

namespace xquant::cpu {

const GemvRowsKernels& gemv_rows_table(Isa isa, Rows8Mode mode) {
  // Built on first use, after the one-row tables' static initialisation.
  static const GemvRowsKernels avx2{"avx2-rows8", kAvx2GemvRows.offset4, kAvx2GemvRows.offset8, &gemv4_rows8_avx2,
                                    kAvx2GemvRows.gemv8};
  static const GemvRowsKernels avx512{"avx512-rows8", kAvx512GemvRows.offset4, kAvx512GemvRows.offset8,
                                      &gemv4_rows8_avx512, kAvx512GemvRows.gemv8};
  static const GemvRowsKernels avx2i{"avx2-rows8i", kAvx2GemvRows.offset4, kAvx2GemvRows.offset8,
                                     &gemv4_rows8_interleaved_avx2, kAvx2GemvRows.gemv8};
  static const GemvRowsKernels avx512i{"avx512-rows8i", kAvx512GemvRows.offset4, kAvx512GemvRows.offset8,
                                       &gemv4_rows8_interleaved_avx512, &gemv8_rows8_interleaved_avx512};
  if (mode == Rows8Mode::transpose && isa == Isa::avx2) return avx2;
  if (mode == Rows8Mode::transpose && isa == Isa::avx512) return avx512;
  if (mode == Rows8Mode::interleaved && isa == Isa::avx2) return avx2i;
  if (mode == Rows8Mode::interleaved && isa == Isa::avx512) return avx512i;
  return gemv_rows_of(isa);
}

Rows8Mode selected_gemv_rows8() {
  const char* env = std::getenv("XQUANT_CPU_GEMV_ROWS8");
  const std::string v = env ? env : "";
  if (v.empty()) return Rows8Mode::interleaved;
  if (v == "off") return Rows8Mode::off;
  if (v == "transpose") return Rows8Mode::transpose;
  if (v == "interleaved") return Rows8Mode::interleaved;
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                   "cpu provider: XQUANT_CPU_GEMV_ROWS8=" + v + " is not off, transpose or interleaved");
}

}  // namespace xquant::cpu
