// qweight_codes.cpp: row-major codes of a prepared weight from its
// interleaved decode copy (qweight_codes.hpp).
#include "qweight_codes.hpp"

#include "qgemv_rows8.hpp"

#include <cstring>

namespace xquant::cpu {

namespace {

// Row j of the eight-row group r8, undoing interleave_rows8: byte 4k + i of
// block b sits at (r8 * nblk + b) * 128 + 32 k + 4 j + i, so each 4-byte word
// of the row is one word of the copy (INT8: interleave_int8_rows8's).
void rebuild_row(const xq_qweight& w, int64_t r8, int64_t j, uint8_t* out) {
  const int64_t nblk = w.block_begin[w.n_groups];
  if (!w.int4) return int8_row_from_rows8(w.codes8.data(), nblk, r8, j, out);
  const uint8_t* c = w.codes8.data() + r8 * nblk * 128 + 4 * j;
  for (int64_t b = 0; b < nblk; ++b)
    for (int64_t k = 0; k < 4; ++k) std::memcpy(out + b * 16 + 4 * k, c + b * 128 + 32 * k, 4);
}

}  // namespace

const uint8_t* codes_of_rows(const xq_qweight& w, int64_t n0, int64_t nr, std::vector<uint8_t>& buf) {
  if (w.codes) return w.codes + n0 * w.row_bytes;
  const size_t need = static_cast<size_t>(nr * w.row_bytes);
  if (buf.size() < need) buf.resize(need);
  const int64_t whole = w.rows / 8 * 8;  // rows in the interleaved copy
  for (int64_t r = n0; r < n0 + nr; ++r) {
    uint8_t* out = buf.data() + (r - n0) * w.row_bytes;
    if (r < whole) rebuild_row(w, r / 8, r % 8, out);
    else std::memcpy(out, w.codes_tail.data() + (r - whole) * w.row_bytes, static_cast<size_t>(w.row_bytes));
  }
  return buf.data();
}

void release_row_major_codes(xq_qweight& w) {
  if (w.adopted || w.codes8.empty() || w.codes != w.owned.codes.data()) return;
  const int64_t whole = w.rows / 8 * 8;
  w.codes_tail.assign(w.codes + whole * w.row_bytes, w.codes + w.rows * w.row_bytes);
  std::vector<uint8_t>().swap(w.owned.codes);
  w.codes = nullptr;
}

}  // namespace xquant::cpu
