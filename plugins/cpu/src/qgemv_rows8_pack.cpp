// qgemv_rows8_pack.cpp: the interleaved copies the eight-row decode GEMVs
// read (qgemv_rows8.hpp: INT4 and INT8 cpu.int-blocks rows, GGUF Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q4_K and Q6_K parts), made once when a weight is
// prepared: eight rows' blocks side by side as the kernels' int32 lanes take
// them (on huge pages, page_advice.hpp), so decode reads
// one aligned stream instead of eight rows at once; and the rows back from
// the copies that replace their stored bytes.
#include "qgemv_rows8.hpp"

#include "gguf_gemv_rows.hpp"
#include "page_advice.hpp"

#include <cstddef>
#include <cstring>

namespace xquant::cpu {

namespace {

// The code words of every whole group of eight rows side by side: word k
// (4 bytes) of block b of row 8 r8 + j at (r8 * nblk + b) * 32 * words +
// 32 k + 4 j, each byte XOR `flip` (0x80 moves int8 codes to unsigned);
// codes_of(r, b) points at the codes of block b of row r.
template <class CodesOf>
std::vector<uint8_t> interleave_words(CodesOf codes_of, int64_t rows, int64_t nblk, int64_t words, uint8_t flip) {
  const int64_t groups = rows / 8, block8 = 32 * words;
  const auto bytes = static_cast<size_t>(groups * nblk * block8);
  std::vector<uint8_t> out;
  reserve_on_huge_pages(out, bytes);  // before the zero fill touches it
  out.resize(bytes);
  for (int64_t r8 = 0; r8 < groups; ++r8)
    for (int64_t j = 0; j < 8; ++j)
      for (int64_t b = 0; b < nblk; ++b) {
        const uint8_t* in = codes_of(r8 * 8 + j, b);
        uint8_t* o = out.data() + (r8 * nblk + b) * block8 + 4 * j;
        for (int64_t k = 0; k < words; ++k)
          for (int64_t i = 0; i < 4; ++i) o[32 * k + i] = in[4 * k + i] ^ flip;
      }
  return out;
}

// The per-row group scales of every whole group of eight rows, eight a group:
// scale g of row 8 r8 + j at (r8 * G + g) * 8 + j.
std::vector<float> interleave_scales(const float* scales, int64_t rows, int64_t G) {
  std::vector<float> out(static_cast<size_t>(rows / 8 * G * 8));
  for (int64_t r8 = 0; r8 < rows / 8; ++r8)
    for (int64_t j = 0; j < 8; ++j)
      for (int64_t g = 0; g < G; ++g) out[static_cast<size_t>((r8 * G + g) * 8 + j)] = scales[(r8 * 8 + j) * G + g];
  return out;
}

// A legacy GGUF part's copy (block_q4_0 / block_q8_0: f16 d, then the codes):
// the code words as above, and each block's d kept f16, eight a block.
Q4_0Rows8Copy interleave_ggml_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb,
                                    int64_t block_bytes, int64_t words, uint8_t flip) {
  auto block = [&](int64_t r, int64_t b) { return blocks + static_cast<uint64_t>(r) * row_bytes + b * block_bytes; };
  Q4_0Rows8Copy c;
  c.codes = interleave_words([&](int64_t r, int64_t b) { return block(r, b) + 2; }, rows, nb, words, flip);
  c.scales.resize(static_cast<size_t>(rows / 8 * nb * 8));
  for (int64_t r8 = 0; r8 < rows / 8; ++r8)
    for (int64_t j = 0; j < 8; ++j)
      for (int64_t b = 0; b < nb; ++b) std::memcpy(&c.scales[static_cast<size_t>((r8 * nb + b) * 8 + j)], block(r8 * 8 + j, b), 2);
  return c;
}

// Four codes moved between signed and unsigned (XOR 0x80 each), as one word.
void flip4(uint8_t* out, const uint8_t* in) {
  uint32_t v;
  std::memcpy(&v, in, 4);
  v ^= 0x80808080u;
  std::memcpy(out, &v, 4);
}

}  // namespace

Rows8Copy interleave_rows8(const uint8_t* codes, int64_t row_bytes, const float* scales, int64_t rows, int64_t G,
                           int64_t nblk) {
  // cpu.int-blocks INT4: 16 bytes a block, unsigned nibbles.
  auto codes_of = [&](int64_t r, int64_t b) { return codes + r * row_bytes + b * 16; };
  return {interleave_words(codes_of, rows, nblk, 4, 0), interleave_scales(scales, rows, G)};
}

Rows8Copy interleave_int8_rows8(const uint8_t* codes, int64_t row_bytes, const float* scales, int64_t rows, int64_t G,
                                int64_t nblk) {
  auto codes_of = [&](int64_t r, int64_t b) { return codes + r * row_bytes + b * 32; };
  return {interleave_words(codes_of, rows, nblk, 8, 0x80), interleave_scales(scales, rows, G)};
}

Q4_0Rows8Copy interleave_q4_0_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb) {
  return interleave_ggml_rows8(blocks, row_bytes, rows, nb, 18, 4, 0);  // block_q4_0: f16 d, 16 bytes of nibbles
}

Q4_0Rows8Copy interleave_q8_0_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb) {
  return interleave_ggml_rows8(blocks, row_bytes, rows, nb, 34, 8, 0x80);  // block_q8_0: f16 d, 32 int8 codes
}

void int8_row_from_rows8(const uint8_t* codes8, int64_t nblk, int64_t r8, int64_t j, uint8_t* out) {
  const uint8_t* c = codes8 + r8 * nblk * 256 + 4 * j;
  for (int64_t b = 0; b < nblk; ++b)
    for (int64_t k = 0; k < 8; ++k) flip4(out + b * 32 + 4 * k, c + b * 256 + 32 * k);
}

namespace {

// Row j of group r8 of an interleave_ggml_rows8 copy back as its stored
// blocks (block_bytes each: f16 d, then `words` code words, each XOR `flip`).
void ggml_row_from_rows8(const uint8_t* codes8, const uint16_t* scales8, int64_t r8, int64_t j, int64_t nb,
                         int64_t block_bytes, int64_t words, uint32_t flip, uint8_t* out) {
  for (int64_t b = 0; b < nb; ++b, out += block_bytes) {
    std::memcpy(out, &scales8[(r8 * nb + b) * 8 + j], 2);
    const uint8_t* c = codes8 + (r8 * nb + b) * 32 * words + 4 * j;
    for (int64_t k = 0; k < words; ++k) {
      uint32_t v;
      std::memcpy(&v, c + 32 * k, 4);
      v ^= flip;
      std::memcpy(out + 2 + 4 * k, &v, 4);
    }
  }
}

}  // namespace

void q8_0_row_from_rows8(const uint8_t* codes8, const uint16_t* scales8, int64_t r8, int64_t j, int64_t nb,
                         uint8_t* out) {
  ggml_row_from_rows8(codes8, scales8, r8, j, nb, 34, 8, 0x80808080u, out);
}

void q4_0_row_from_rows8(const uint8_t* codes8, const uint16_t* scales8, int64_t r8, int64_t j, int64_t nb,
                         uint8_t* out) {
  ggml_row_from_rows8(codes8, scales8, r8, j, nb, 18, 4, 0, out);
}

namespace {

// The interleaved copy of a K-quant part's whole groups of eight rows: block
// b of rows 8 r8 .. 8 r8 + 7 at (r8 * nb + b) * out_bytes, each row's block
// (block_bytes stored) placed by pack(out, stored block, j).
template <class Pack>
std::vector<uint8_t> interleave_blocks8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb,
                                        int64_t block_bytes, int64_t out_bytes, Pack pack) {
  const int64_t groups = rows / 8;
  const auto bytes = static_cast<size_t>(groups * nb * out_bytes);
  std::vector<uint8_t> c;
  reserve_on_huge_pages(c, bytes);  // before the zero fill touches it
  c.resize(bytes);
  for (int64_t r8 = 0; r8 < groups; ++r8)
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t j = 0; j < 8; ++j)
        pack(c.data() + (r8 * nb + b) * out_bytes, blocks + static_cast<uint64_t>(r8 * 8 + j) * row_bytes + b * block_bytes,
             j);
  return c;
}

// Q6_K copy (qgemv_rows8.hpp): where word slot k of half h, part `part` (0:
// ql of runs 0 / 2, 1: ql of runs 1 / 3, 2: qh) of the eight rows starts in
// a copy block, and where that row's 4 bytes sit in its stored block_q6_K
// (ql[128] then qh[64]; half h's ql at 64 h, qh at 128 + 32 h).
int64_t q6_word_offset(int64_t h, int64_t k, int64_t part) { return 144 + 96 * (8 * h + k) + 32 * part; }
int64_t q6_stored_word(int64_t h, int64_t k, int64_t part) {
  return part == 2 ? 128 + 32 * h + 4 * k : 64 * h + 32 * part + 4 * k;
}

}  // namespace

std::vector<uint8_t> interleave_q4_k_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb) {
  // ggml-common.h block_q4_K: f16 d, f16 dmin, 12 scale bytes, 128 of nibbles.
  return interleave_blocks8(blocks, row_bytes, rows, nb, 144, kQ4_KRows8Bytes,
                            [](uint8_t* out, const uint8_t* blk, int64_t j) {
                              std::memcpy(out + 2 * j, blk, 2);
                              std::memcpy(out + 16 + 2 * j, blk + 2, 2);
                              uint8_t sm[16];
                              q4_k_scales_mins(blk + 4, sm);
                              for (int64_t s = 0; s < 8; ++s) {
                                out[32 + 8 * s + j] = sm[s];
                                out[96 + 16 * (j % 4) + 8 * (j / 4) + s] = sm[8 + s];
                              }
                              for (int64_t w = 0; w < 32; ++w)  // word w = 8 c + k of the qs bytes
                                std::memcpy(out + 160 + 32 * w + 4 * j, blk + 16 + 4 * w, 4);
                            });
}

std::vector<uint8_t> interleave_q6_k_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb) {
  // ggml-common.h block_q6_K: ql[128], qh[64], int8 scales[16], f16 d.
  return interleave_blocks8(blocks, row_bytes, rows, nb, 210, kQ6_KRows8Bytes,
                            [](uint8_t* out, const uint8_t* blk, int64_t j) {
                              std::memcpy(out + 2 * j, blk + 208, 2);
                              for (int64_t s = 0; s < 16; ++s) out[16 + 8 * s + j] = blk[192 + s];
                              for (int64_t h = 0; h < 2; ++h)
                                for (int64_t k = 0; k < 8; ++k)
                                  for (int64_t part = 0; part < 3; ++part)
                                    std::memcpy(out + q6_word_offset(h, k, part) + 4 * j, blk + q6_stored_word(h, k, part), 4);
                            });
}

std::vector<uint8_t> interleave_legacy_rows8(uint32_t type, const uint8_t* blocks, uint64_t row_bytes, int64_t rows,
                                             int64_t nb) {
  const LegacyRows8Layout L = legacy_rows8_layout(type);
  return interleave_blocks8(blocks, row_bytes, rows, nb, L.stored_bytes, L.block8_bytes,
                            [&](uint8_t* out, const uint8_t* blk, int64_t j) {
                              std::memcpy(out + 2 * j, blk, 2);
                              if (L.has_min) std::memcpy(out + L.m + 2 * j, blk + 2, 2);
                              if (L.has_masks) {
                                uint32_t qh;
                                std::memcpy(&qh, blk + L.stored_qh, 4);
                                for (int64_t v = 0; v < 8; ++v) {  // v = 2 k + h: columns 16 h + 4 k .. + 3
                                  const uint32_t bits = (qh >> (16 * (v % 2) + 4 * (v / 2))) & 0xFu;
                                  uint32_t mask;
                                  std::memcpy(&mask, out + L.masks + 4 * v, 4);
                                  mask |= bits << (4 * j);
                                  std::memcpy(out + L.masks + 4 * v, &mask, 4);
                                }
                              }
                              for (int64_t k = 0; k < 4; ++k)
                                std::memcpy(out + L.nibbles + 32 * k + 4 * j, blk + L.stored_qs + 4 * k, 4);
                            });
}

void q4_k_row_from_rows8(const uint8_t* copy, int64_t r8, int64_t j, int64_t nb, uint8_t* out) {
  for (int64_t b = 0; b < nb; ++b, out += 144) {
    const uint8_t* in = copy + (r8 * nb + b) * kQ4_KRows8Bytes;
    std::memcpy(out, in + 2 * j, 2);
    std::memcpy(out + 2, in + 16 + 2 * j, 2);
    uint8_t sc[8], mn[8];
    for (int64_t s = 0; s < 8; ++s) {
      sc[s] = in[32 + 8 * s + j];
      mn[s] = in[96 + 16 * (j % 4) + 8 * (j / 4) + s];
    }
    // The inverse of get_scale_min_k4 (ggml-quants.c): sub-blocks 0..3 in the
    // low six bits of bytes 0..7, the high two bits of 4..7 above them, the
    // low four bits of 4..7 in bytes 8..11.
    uint8_t* q = out + 4;
    for (int k = 0; k < 4; ++k) {
      q[k] = static_cast<uint8_t>(sc[k] | ((sc[k + 4] >> 4) << 6));
      q[k + 4] = static_cast<uint8_t>(mn[k] | ((mn[k + 4] >> 4) << 6));
      q[k + 8] = static_cast<uint8_t>((sc[k + 4] & 0xF) | ((mn[k + 4] & 0xF) << 4));
    }
    for (int64_t w = 0; w < 32; ++w) std::memcpy(out + 16 + 4 * w, in + 160 + 32 * w + 4 * j, 4);
  }
}

void q6_k_row_from_rows8(const uint8_t* copy, int64_t r8, int64_t j, int64_t nb, uint8_t* out) {
  for (int64_t b = 0; b < nb; ++b, out += 210) {
    const uint8_t* in = copy + (r8 * nb + b) * kQ6_KRows8Bytes;
    std::memcpy(out + 208, in + 2 * j, 2);
    for (int64_t s = 0; s < 16; ++s) out[192 + s] = in[16 + 8 * s + j];
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t k = 0; k < 8; ++k)
        for (int64_t part = 0; part < 3; ++part)
          std::memcpy(out + q6_stored_word(h, k, part), in + q6_word_offset(h, k, part) + 4 * j, 4);
  }
}

void legacy_row_from_rows8(uint32_t type, const uint8_t* copy, int64_t r8, int64_t j, int64_t nb, uint8_t* out) {
  const LegacyRows8Layout L = legacy_rows8_layout(type);
  for (int64_t b = 0; b < nb; ++b, out += L.stored_bytes) {
    const uint8_t* in = copy + (r8 * nb + b) * L.block8_bytes;
    std::memcpy(out, in + 2 * j, 2);
    if (L.has_min) std::memcpy(out + 2, in + L.m + 2 * j, 2);
    if (L.has_masks) {  // prefill rebuilds every row this way: masks 2 k and 2 k + 1 as one word
      uint64_t pairs[4];
      std::memcpy(pairs, in + L.masks, 32);
      uint32_t qh = 0;
      for (int k = 0; k < 4; ++k) {
        const uint64_t x = pairs[k] >> (4 * j);  // row j's nibble of mask 2 k in bits 0..3, of 2 k + 1 in 32..35
        qh |= static_cast<uint32_t>(x & 0xFu) << (4 * k) | static_cast<uint32_t>((x >> 32) & 0xFu) << (16 + 4 * k);
      }
      std::memcpy(out + L.stored_qh, &qh, 4);
    }
    for (int64_t k = 0; k < 4; ++k) std::memcpy(out + L.stored_qs + 4 * k, in + L.nibbles + 32 * k + 4 * j, 4);
  }
}

}  // namespace xquant::cpu
