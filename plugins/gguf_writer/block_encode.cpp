// block_encode.cpp: see block_encode.hpp. Block layouts are ggml's
// (ggml/src/ggml-common.h: block_q4_0 ... block_q6_K); the float quantizers
// follow the reference ones in ggml/src/ggml-quants.c, written anew here.
#include "block_encode.hpp"

#include "block_pack.hpp"

#include "gguf_types.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace xquant::gguf {

namespace {

using sdk::f16_to_f32;
using sdk::f32_to_f16;

// Round half away from zero, as ggml's nearest_int does for the values it sees.
int nearest_int(float v) { return static_cast<int>(std::lround(v)); }

// Signed value of largest magnitude (ggml's symmetric types scale by it, so
// the extreme lands on -2^(b-1), using the grid's longer negative side).
float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

// ---- legacy types from floats ------------------------------------------------

void q8_0_block(const float* x, uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
  put_f16(b, d);
  for (int j = 0; j < kQK; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
}

// Symmetric 4/5-bit: d = max / -2^(b-1), q = clamp(round(x/d) + 2^(b-1)).
void sym_block(const float* x, int bits, int q[kQK], float* d_out) {
  const int half = 1 << (bits - 1), top = (1 << bits) - 1;
  const float d = signed_absmax(x, kQK) / -static_cast<float>(half), id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j) q[j] = std::clamp(static_cast<int>(x[j] * id + half + 0.5f), 0, top);
  *d_out = d;
}

// Asymmetric 4/5-bit: d = (max - min) / (2^b - 1), m = min.
void asym_block(const float* x, int bits, int q[kQK], float* d_out, float* m_out) {
  const int top = (1 << bits) - 1;
  float mn = FLT_MAX, mx = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  const float d = (mx - mn) / top, id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j) q[j] = std::clamp(static_cast<int>((x[j] - mn) * id + 0.5f), 0, top);
  *d_out = d;
  *m_out = mn;
}

void legacy_block(uint32_t type, const float* x, uint8_t* b) {
  int q[kQK];
  float d = 0, m = 0;
  switch (type) {
    case kQ8_0: q8_0_block(x, b); return;
    case kQ4_0: sym_block(x, 4, q, &d); put_f16(b, d); pack_q4(q, b + 2); return;
    case kQ4_1: asym_block(x, 4, q, &d, &m); put_f16(b, d); put_f16(b + 2, m); pack_q4(q, b + 4); return;
    case kQ5_0: sym_block(x, 5, q, &d); put_f16(b, d); pack_q5(q, b + 2, b + 6); return;
    case kQ5_1: asym_block(x, 5, q, &d, &m); put_f16(b, d); put_f16(b + 2, m); pack_q5(q, b + 4, b + 8); return;
  }
}

// ---- K-quants ------------------------------------------------------------------

// Fits x ≈ scale*L - the_min (L in 0..nmax, the_min >= 0) minimising the
// weighted squared error: the min/max start, then nstep+1 trial scales
// around it, each refined by weighted least squares (the search of ggml's
// make_qkx2_quants).
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, float rmin,
                    float rdelta, int nstep) {
  float mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    std::fill(L, L + n, 0);
    *the_min = -mn;
    return 0.f;
  }
  float iscale = nmax / (mx - mn), scale = 1 / iscale, best = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax));
    const float diff = scale * L[i] + mn - x[i];
    best += w[i] * diff * diff;
  }
  uint8_t trial[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (mx - mn);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * trial[i] + this_min - x[i];
      err += w[i] * diff * diff;
    }
    if (err < best) {
      std::copy(trial, trial + n, L);
      best = err;
      scale = this_scale;
      mn = this_min;
    }
  }
  *the_min = -mn;
  return scale;
}

// Q4_K / Q5_K super-block: 8 sub-blocks of 32 with their own 6-bit scale and
// min, under an f16 d and dmin. Returns the codes L (0..nmax) in `L`.
void k_scale_min_block(const float* x, int nmax, float rmin, int nstep, uint8_t* b, uint8_t L[kQKK]) {
  float scales[8], mins[8], w[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  int ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = std::min(63, nearest_int(inv_scale * scales[j]));
    lm[j] = std::min(63, nearest_int(inv_min * mins[j]));
  }
  put_f16(b, max_scale / 63.f);
  put_f16(b + 2, max_min / 63.f);
  pack_scale_min(ls, lm, b + 4);
  // Re-fit the codes to the scales as stored.
  const float d_all = f16_to_f32(f32_to_f16(max_scale / 63.f)), m_all = f16_to_f32(f32_to_f16(max_min / 63.f));
  for (int j = 0; j < 8; ++j) {
    const float d = d_all * ls[j];
    if (!d) continue;
    const float dm = m_all * lm[j];
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
  }
}

void q4_k_block(const float* x, uint8_t* b) {
  uint8_t L[kQKK];
  k_scale_min_block(x, 15, -1.f, 20, b, L);
  pack_q4_k_codes(L, b + 16);
}

void q5_k_block(const float* x, uint8_t* b) {
  uint8_t L[kQKK];
  k_scale_min_block(x, 31, -0.5f, 15, b, L);
  pack_q5_k_codes(L, b + 16, b + 48);
}

// Symmetric fit of 16 values to L in [-nmax, nmax-1] weighted by x^2: the
// max-magnitude start and 18 nearby scales, each refined by least squares
// (the search of ggml's make_qx_quants). Returns the scale; L gets l + nmax.
float fit_scale_sym(int n, int nmax, const float* x, uint8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  auto trial = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = 0;
    *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * l;
      *suml2 += w * l * l;
    }
  };
  float best_iscale = -nmax / max, sumlx, suml2;
  trial(best_iscale, &sumlx, &suml2);
  float scale = suml2 > 0 ? sumlx / suml2 : 0.f, best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float iscale = -(nmax + 0.1f * is) / max;
    trial(iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      scale = sumlx / suml2;
      best = scale * sumlx;
      best_iscale = iscale;
    }
  }
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<uint8_t>(nmax + std::clamp(nearest_int(best_iscale * x[i]), -nmax, nmax - 1));
  return scale;
}

// Q6_K: 16 sub-blocks of 16 with int8 scales under an f16 d; codes 0..63
// stored as 4 low bits (ql) and 2 high bits (qh).
void q6_k_block(const float* x, uint8_t* b) {
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  uint8_t L[kQKK];
  float scales[16], max_scale = 0, max_abs = 0;
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = fit_scale_sym(16, 32, x + 16 * ib, L + 16 * ib);
    if (std::fabs(scales[ib]) > max_abs) {
      max_abs = std::fabs(scales[ib]);
      max_scale = scales[ib];
    }
  }
  std::memset(b, 0, 210);
  if (max_abs < 1e-15f) return;
  const float iscale = -128.f / max_scale;
  put_f16(b + 208, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  const float d_all = f16_to_f32(f32_to_f16(1 / iscale));
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * sc[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<uint8_t>(std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
  }
  pack_q6_k_codes(L, ql, qh);
}

// For d*q + m = s*(c - z) with q = c + k, any k that keeps every q of the
// block in 0..top works, with m = -s*(z + k). Prefer a k whose m is an f16
// exactly (then the block is lossless); else the grid's middle, `fallback`.
int exact_min_shift(const int8_t* c, float s, int z, int top, int fallback) {
  int cmin = c[0], cmax = c[0];
  for (int j = 1; j < kQK; ++j) {
    cmin = std::min<int>(cmin, c[j]);
    cmax = std::max<int>(cmax, c[j]);
  }
  auto exact = [&](int k) {
    const float m = -s * static_cast<float>(z + k);  // exact in f32: an f16 times a 6-bit integer
    return f16_to_f32(f32_to_f16(m)) == m;
  };
  if (fallback + cmin >= 0 && fallback + cmax <= top && exact(fallback)) return fallback;
  for (int k = -cmin; k + cmax <= top; ++k)
    if (exact(k)) return k;
  return fallback;
}

}  // namespace

bool can_encode(uint32_t type) {
  switch (type) {
    case kQ4_0: case kQ4_1: case kQ5_0: case kQ5_1: case kQ8_0: case kQ4_K: case kQ5_K: case kQ6_K: return true;
    default: return false;
  }
}

void encode_floats(uint32_t type, const float* x, int64_t n, uint8_t* out) {
  const TypeInfo* ti = type_info(type);
  const int64_t bs = ti->block_size, nb = n / bs;
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * bs;
    uint8_t* b = out + i * ti->type_size;
    switch (type) {
      case kQ4_K: q4_k_block(xb, b); break;
      case kQ5_K: q5_k_block(xb, b); break;
      case kQ6_K: q6_k_block(xb, b); break;
      default: legacy_block(type, xb, b); break;
    }
  }
}

void encode_codes(uint32_t type, const int8_t* codes, const float* scales, const int8_t* zeros, int64_t n,
                  uint8_t* out) {
  const TypeInfo* ti = type_info(type);
  const int off = type == kQ8_0 ? 0 : (type == kQ5_0 || type == kQ5_1) ? 16 : 8;
  for (int64_t g = 0; g < n / kQK; ++g) {
    uint8_t* b = out + g * ti->type_size;
    const int8_t* c = codes + g * kQK;
    const float s = scales[g];
    int shift = off;
    if (type == kQ4_1 || type == kQ5_1) {
      shift = exact_min_shift(c, s, zeros[g], type == kQ4_1 ? 15 : 31, off);
      put_f16(b + 2, -s * static_cast<float>(zeros[g] + shift));
    }
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = c[j] + shift;
    put_f16(b, s);
    switch (type) {
      case kQ8_0: for (int j = 0; j < kQK; ++j) b[2 + j] = static_cast<uint8_t>(c[j]); break;
      case kQ4_0: pack_q4(q, b + 2); break;
      case kQ4_1: pack_q4(q, b + 4); break;
      case kQ5_0: pack_q5(q, b + 2, b + 6); break;
      case kQ5_1: pack_q5(q, b + 4, b + 8); break;
    }
  }
}

}  // namespace xquant::gguf
