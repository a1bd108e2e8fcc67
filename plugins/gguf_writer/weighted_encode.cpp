// weighted_encode.cpp: see weighted_encode.hpp. Each step keeps ggml's
// order of float operations (ggml/src/ggml-quants.c), so that the bytes
// agree with llama-quantize's wherever both compilers round alike.
#include "weighted_encode.hpp"

#include "block_encode.hpp"
#include "block_pack.hpp"
#include "gguf_types.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace xquant::gguf {

namespace {

using sdk::f16_to_f32;
using sdk::f32_to_f16;

constexpr float kGroupMaxEps = 1e-15f;  // ggml-quants.c GROUP_MAX_EPS

// ggml's nearest_int (named here for what it does, beside block_encode.cpp's
// half-away rounding): round to nearest, ties to even, by adding 1.5 * 2^23
// (exact for |v| <= 4194303, which every caller's values are).
int nearest_int_even(float v) {
  const float biased = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &biased, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// ggml's make_qx_quants with quant weights: the symmetric scale of x on the
// grid l in [-nmax, nmax - 1] (L = l + nmax) maximising
// (sum w x l)^2 / sum w l^2 over 19 trial scales around -nmax / max.
float fit_symmetric(int n, int nmax, const float* x, const float* w, uint8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  auto codes = [&](float iscale, float* sumlx, float* suml2, bool keep) {
    *sumlx = 0;
    *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, nearest_int_even(iscale * x[i])));
      if (keep) L[i] = static_cast<uint8_t>(l + nmax);
      *sumlx += w[i] * x[i] * l;
      *suml2 += w[i] * l * l;
    }
  };
  float sumlx, suml2;
  codes(-nmax / max, &sumlx, &suml2, true);
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float iscale = -(nmax + 0.1f * is) / max;
    codes(iscale, &sumlx, &suml2, false);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      codes(iscale, &sumlx, &suml2, true);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// ggml's make_qkx3_quants with weights (squared error): x ~ scale * L - the_min
// with L in 0..nmax, the weighted least-squares fit over nstep + 1 trial
// scales from the min/max start.
float fit_scale_min_qkx3(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, float rmin,
                    float rdelta, int nstep) {
  float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int_even(iscale * (x[i] - min)))));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best += w[i] * diff;
  }
  uint8_t trial[kQK];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int_even(iscale * (x[i] - min))));
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
      float diff = this_scale * trial[i] + this_min - x[i];
      diff = diff * diff;
      err += w[i] * diff;
    }
    if (err < best) {
      std::copy(trial, trial + n, L);
      best = err;
      scale = this_scale;
      min = this_min;
    }
  }
  *the_min = -min;
  return scale;
}

// ggml's make_qp_quants: the 6-bit codes of a K-quant super-block's 8
// sub-block scales (or mins), x ~ scale * L with L in 0..nmax, weighted by
// each sub-block's summed weight: 9 trial scales, then up to 5 passes moving
// single codes while the weighted fit improves.
float fit_positive(int n, int nmax, const float* x, uint8_t* L, const float* w) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int_even(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best_mse += w[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int_even(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += w[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  // L is bytes as in ggml: the passes below read the stored (wrapped) value.
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int_even(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sumlx += w[i] * x[i] * l;
    suml2 += w[i] * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float slx = sumlx - w[i] * x[i] * L[i];
      float sl2 = suml2 - w[i] * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int_even(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w[i] * x[i] * new_l;
          sl2 += w[i] * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// The block weights of the legacy types: importance times
// sqrt(sigma2 + x^2), sigma2 the row's mean square.
void legacy_weights(const float* xb, const float* qw, float sigma2, float* w) {
  for (int j = 0; j < kQK; ++j) w[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

void legacy_row(uint32_t type, const float* x, int64_t n, const float* qw, uint8_t* out) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / n;
  const uint32_t block_bytes = type_info(type)->type_size;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    uint8_t* b = out + ib * block_bytes;
    float w[kQK];
    uint8_t L[kQK];
    int q[kQK];
    legacy_weights(xb, qw + kQK * ib, sigma2, w);
    if (type == kQ4_0 || type == kQ5_0) {
      const float d = fit_symmetric(kQK, type == kQ4_0 ? 8 : 16, xb, w, L);
      for (int j = 0; j < kQK; ++j) q[j] = L[j];
      put_f16(b, d);
      if (type == kQ4_0) pack_q4(q, b + 2);
      else pack_q5(q, b + 2, b + 6);
    } else {
      float min = 0;
      const float d = fit_scale_min_qkx3(kQK, type == kQ4_1 ? 15 : 31, xb, w, L, &min, -0.9f, 0.05f, 36);
      for (int j = 0; j < kQK; ++j) q[j] = L[j];
      put_f16(b, d);
      put_f16(b + 2, -min);
      if (type == kQ4_1) pack_q4(q, b + 4);
      else pack_q5(q, b + 4, b + 8);
    }
  }
}

// ggml's get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 bytes.
void scale_min_of(int j, const uint8_t* s12, int* sc, int* m) {
  if (j < 4) {
    *sc = s12[j] & 63;
    *m = s12[j + 4] & 63;
  } else {
    *sc = (s12[j + 4] & 0xF) | ((s12[j - 4] >> 6) << 4);
    *m = (s12[j + 4] >> 4) | ((s12[j] >> 6) << 4);
  }
}

// Q4_K / Q5_K super-block (quantize_row_q4_K_impl / _q5_K_impl): weighted
// sub-block fits, their scales and mins to 6 bits by fit_positive, then the
// codes again against the scales as stored.
void k_scale_min_block(const float* x, const float* qw, int nmax, uint8_t* b, uint8_t L[kQKK]) {
  float sum_x2 = 0;
  for (int l = 0; l < kQKK; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / kQKK;
  float scales[8], mins[8], sw[8], w[kQK];
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < kQK; ++l) w[l] = qw[kQK * j + l] * std::sqrt(sigma2 + x[kQK * j + l] * x[kQK * j + l]);
    float sumw = 0;
    for (int l = 0; l < kQK; ++l) sumw += w[l];
    sw[j] = sumw;
    scales[j] = fit_scale_min_qkx3(kQK, nmax, x + kQK * j, w, L + kQK * j, &mins[j], -0.9f, 0.05f, 36);
  }
  uint8_t Ls[8], Lm[8];
  const float d_block = fit_positive(8, 63, scales, Ls, sw);
  const float m_block = fit_positive(8, 63, mins, Lm, sw);
  int ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = nmax == 31 ? std::min<int>(63, Ls[j]) : Ls[j];
    lm[j] = nmax == 31 ? std::min<int>(63, Lm[j]) : Lm[j];
  }
  pack_scale_min(ls, lm, b + 4);
  put_f16(b, d_block);
  put_f16(b + 2, m_block);
  const float d_all = f16_round(d_block), m_all = f16_round(m_block);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_min_of(j, b + 4, &sc, &m);
    const float d = d_all * sc;
    if (!d) continue;
    const float dm = m_all * m;
    for (int ii = 0; ii < kQK; ++ii)
      L[kQK * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int_even((x[kQK * j + ii] + dm) / d))));
  }
}

// Q6_K super-block (quantize_row_q6_K_impl): the importance itself weights
// each 16-value sub-block's symmetric fit.
void q6_k_block(const float* x, const float* qw, uint8_t* b) {
  uint8_t L[kQKK];
  float scales[16], max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = fit_symmetric(16, 32, x + 16 * ib, qw + 16 * ib, L + 16 * ib);
    if (std::fabs(scales[ib]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[ib]);
      max_scale = scales[ib];
    }
  }
  std::memset(b, 0, 210);
  if (max_abs_scale < kGroupMaxEps) return;
  const float iscale = -128.f / max_scale;
  put_f16(b + 208, 1 / iscale);
  auto* sc = reinterpret_cast<int8_t*>(b + 192);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int_even(iscale * scales[ib])));
  const float d_all = f16_round(1 / iscale);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * sc[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<uint8_t>(std::max(-32, std::min(31, nearest_int_even(x[16 * j + ii] / d))) + 32);
  }
  pack_q6_k_codes(L, b, b + 128);
}

}  // namespace

bool uses_importance(uint32_t type) {
  switch (type) {
    case kQ4_0: case kQ4_1: case kQ5_0: case kQ5_1: case kQ4_K: case kQ5_K: case kQ6_K: return true;
    default: return false;
  }
}

void encode_row_weighted(uint32_t type, const float* x, int64_t n, const float* importance, uint8_t* out) {
  if (!uses_importance(type)) return encode_floats(type, x, n, out);
  if (type == kQ4_K || type == kQ5_K || type == kQ6_K) {
    const uint32_t block_bytes = type_info(type)->type_size;
    for (int64_t i = 0; i < n / kQKK; ++i) {
      const float* xb = x + kQKK * i;
      const float* qw = importance + kQKK * i;
      uint8_t* b = out + i * block_bytes;
      uint8_t L[kQKK];
      if (type == kQ6_K) {
        q6_k_block(xb, qw, b);
      } else if (type == kQ4_K) {
        k_scale_min_block(xb, qw, 15, b, L);
        pack_q4_k_codes(L, b + 16);
      } else {
        k_scale_min_block(xb, qw, 31, b, L);
        pack_q5_k_codes(L, b + 16, b + 48);
      }
    }
    return;
  }
  legacy_row(type, x, n, importance, out);
}

}  // namespace xquant::gguf
