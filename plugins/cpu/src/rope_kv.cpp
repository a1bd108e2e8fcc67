// rope_kv.cpp: XQ_OP_ROPE_KV on the `cpu` provider (the contract is in
// abi/include/xquant/xq_kernel.h): q of each q|k|v row rotated into dst, k
// rotated and v copied into the K/V cache rows at the row's position (or at
// the paged slot src[1]'s second row gives). The rotation is run_rope's
// (dense_ops.cpp) term for term, and the optional q/k norms run_rms_norm's,
// so this op equals [RMS_NORM on q and k,] ROPE on q plus the K/V appends
// (or KV_WRITEs) and ROPE on k. F32 rows and caches only here (cuda also
// takes BF16/F16 rows and BF16 pools); it is the reference cuda's kernel is
// tested against (tests/cpu_provider/test_cpu_rope_kv.cpp,
// tests/cuda/test_rope_kv.cpp).
#include "cpu.hpp"

#include <cmath>
#include <cstring>
#include <vector>

namespace xquant::cpu {

using sdk::format;

namespace {

[[noreturn]] void reject(const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: ROPE_KV: %s", why.c_str()));
}

// Row pitch of a 2-D view that is contiguous or a column slice (strides
// {ld >= cols, 1}); 0 otherwise.
int64_t row_pitch(const xq_device_tensor& t) {
  if (t.ndim != 2 || t.shape[1] <= 0) return 0;
  if (t.strides[0] == 0 && t.strides[1] == 0) return t.shape[1];
  return t.strides[1] == 1 && t.strides[0] >= t.shape[1] ? t.strides[0] : 0;
}

// The planes [S, KVH, D] of src[2] must be contiguous; strides[0] is free.
bool planes_contiguous(const xq_device_tensor& t) {
  if (t.strides[1] == 0 && t.strides[2] == 0 && t.strides[3] == 0) return true;
  return t.strides[3] == 1 && t.strides[2] == t.shape[3] && t.strides[1] == t.shape[2] * t.shape[3];
}

int64_t plane_pitch(const xq_device_tensor& kv) {
  return kv.strides[0] != 0 ? kv.strides[0] : kv.shape[1] * kv.shape[2] * kv.shape[3];
}

// A [2, n] view's distance between its rows (strides[0], or n when unset);
// its second axis must be contiguous.
int64_t row_distance(const xq_device_tensor& t) { return t.strides[0] != 0 ? t.strides[0] : t.shape[1]; }
bool pair_of_rows(const xq_device_tensor& t, int64_t n) {
  return t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == n && (t.strides[1] == 0 || t.strides[1] == 1);
}

}  // namespace

void check_rope_kv(const xq_op& op) {
  const auto& q = op.dst;
  const auto* s = op.src;
  if (!present(s[0]) || s[0].dtype != XQ_DTYPE_F32 || row_pitch(s[0]) == 0)
    reject("src[0] (q|k|v rows) must be F32 [T, (H + 2 KVH) D], contiguous or with strides {ld >= cols, 1}");
  if (!present(q) || q.dtype != XQ_DTYPE_F32 || q.ndim != 3 || !is_contiguous(q)) reject("dst (q) must be contiguous F32 [T, H, D]");
  if (!present(s[1]) || s[1].dtype != XQ_DTYPE_I32 || (s[1].ndim != 1 && s[1].ndim != 2))
    reject("src[1] must be I32 [T] (positions) or [2, T] (positions, cache rows)");
  if (!present(s[2]) || s[2].dtype != XQ_DTYPE_F32 || s[2].ndim != 4 || s[2].shape[0] != 2 || !planes_contiguous(s[2]))
    reject("src[2] must be F32 [2, S, KVH, D] (the K and V caches), each plane contiguous");
  const int64_t T = q.shape[0], H = q.shape[1], D = q.shape[2], KVH = s[2].shape[2];
  if (T <= 0 || H <= 0 || D <= 0 || KVH <= 0) reject("empty shape");
  if (s[2].shape[3] != D) reject("the caches' head dim differs from q's");
  if (s[0].shape[0] != T || s[0].shape[1] != (H + 2 * KVH) * D) reject("src[0] must be [T, (H + 2 KVH) D]");
  if (s[1].ndim == 1 ? s[1].shape[0] != T : !pair_of_rows(s[1], T))
    reject("src[1] must be [T] or [2, T] with contiguous rows");
  if (op.i[0] != 0 && op.i[0] != 1) reject("pairing i[0] must be 0 (neox) or 1 (norm)");
  if (op.i[1] <= 0 || op.i[1] > D || op.i[1] % 2 != 0) reject("rotary dims i[1] must be even and in (0, D]");
  if (!(op.f[0] > 0.0)) reject("theta base f[0] must be > 0");
  if (present(s[3]) && s[3].ndim == 2) {
    if (s[3].dtype != XQ_DTYPE_F32 || !pair_of_rows(s[3], D)) reject("src[3] (q/k norm weights) must be F32 [2, D]");
    if (!(op.f[2] >= 0.0)) reject("norm eps f[2] must be >= 0");
  } else if (present(s[3]) && (s[3].dtype != XQ_DTYPE_F32 || s[3].ndim != 1 || s[3].shape[0] != op.i[1] / 2)) {
    reject("src[3] must be F32 [rot/2] (freq factors) or [2, D] (q/k norm weights)");
  }
}

void run_rope_kv(const Host& host, const xq_op& op) {
  const auto* s = op.src;
  const int64_t T = op.dst.shape[0], H = op.dst.shape[1], D = op.dst.shape[2], KVH = s[2].shape[2];
  const int64_t S = s[2].shape[1], ld = row_pitch(s[0]), rot = op.i[1], half = rot / 2;
  const bool neox = op.i[0] == 0;
  const float base = static_cast<float>(op.f[0]);
  const float pos_scale = op.f[1] == 0.0 ? 1.0f : static_cast<float>(op.f[1]);
  const bool norms = present(s[3]) && s[3].ndim == 2;
  const float* factors = present(s[3]) && !norms ? static_cast<const float*>(s[3].data) : nullptr;
  const float* q_norm = norms ? static_cast<const float*>(s[3].data) : nullptr;
  const float* k_norm = norms ? q_norm + row_distance(s[3]) : nullptr;
  const float eps = static_cast<float>(op.f[2]);
  const int32_t* cache_rows = s[1].ndim == 2 ? static_cast<const int32_t*>(s[1].data) + row_distance(s[1]) : nullptr;
  const float* qkv = static_cast<const float*>(s[0].data);
  const int32_t* pos = static_cast<const int32_t*>(s[1].data);
  float* q = static_cast<float*>(op.dst.data);
  float* kc = static_cast<float*>(s[2].data);
  float* vc = kc + plane_pitch(s[2]);
  // inv_freq as run_rope computes it (HF's float32 1 / base^(2i/rot)).
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(rot));
    if (factors) inv[i] /= factors[i];
  }
  host.parallel_for(static_cast<uint64_t>(T), 1, [&](uint64_t b, uint64_t e) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (uint64_t t = b; t < e; ++t) {
      const float p = static_cast<float>(pos[t]) * pos_scale;
      for (int64_t i = 0; i < half; ++i) {
        const float ang = p * inv[i];
        cs[i] = std::cos(ang);
        sn[i] = std::sin(ang);
      }
      const int64_t cr = cache_rows ? cache_rows[t] : pos[t];
      const bool cache_row = cr >= 0 && cr < S;
      std::vector<float> normed(static_cast<size_t>(D));
      // [RMS_NORM as run_rms_norm computes it, then] ROPE, out of place.
      auto rotate = [&](const float* in, float* out, const float* w) {
        if (w) {
          double ss = 0.0;
          for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(in[i]) * in[i];
          const float inv_rms = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(D)) + eps);
          for (int64_t i = 0; i < D; ++i) normed[i] = in[i] * inv_rms * w[i];
          in = normed.data();
        }
        std::memcpy(out, in, static_cast<size_t>(D) * sizeof(float));  // dims past the rotary ones stay
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = neox ? i : 2 * i, c = neox ? i + half : 2 * i + 1;
          const float x0 = in[a], x1 = in[c];
          out[a] = x0 * cs[i] - x1 * sn[i];
          out[c] = x0 * sn[i] + x1 * cs[i];
        }
      };
      const float* row = qkv + static_cast<int64_t>(t) * ld;
      for (int64_t h = 0; h < H; ++h) rotate(row + h * D, q + (static_cast<int64_t>(t) * H + h) * D, q_norm);
      if (!cache_row) continue;
      for (int64_t h = 0; h < KVH; ++h) {
        rotate(row + (H + h) * D, kc + (cr * KVH + h) * D, k_norm);
        std::memcpy(vc + (cr * KVH + h) * D, row + (H + KVH + h) * D, static_cast<size_t>(D) * sizeof(float));
      }
    }
  });
}

}  // namespace xquant::cpu
