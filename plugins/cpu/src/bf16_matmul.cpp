// bf16_matmul.cpp: MATMUL with BF16 or F16 weights and F32 activations, so a
// model can keep a 16-bit-stored table (the engine's embedding / lm_head) at
// two bytes per weight instead of an F32 copy at four.
//
// BF16 -> F32 and F16 -> F32 are exact (the bits shifted up), so each kernel widens the
// weights it is about to use into a thread-local F32 buffer and runs the F32
// path's own arithmetic on it: the GEMV's dot_f32 per row (decode) and, for
// more rows, the same 128-column SGEMM blocks as sgemm_nt_blocked. The result
// is therefore bit-identical to MATMUL on the F32 copy of the weights, at
// half the weight bytes streamed. BF16 decode rows go through bf16_gemv.cpp
// instead, which widens in registers with dot_f32's order (still bit-identical).
#include "bf16_gemv.hpp"
#include "cpu.hpp"

#include <xquant/sdk/half.hpp>

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace xquant::cpu {

namespace {

// F16 -> F32 eight at a time with F16C (vcvtph2ps, exact like the scalar
// conversion); the portable conversion per element would cost more than the
// GEMV's arithmetic.
__attribute__((target("avx,f16c"))) void f16_to_f32_f16c(const uint16_t* w, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))));
  for (; i < n; ++i) out[i] = sdk::f16_to_f32(w[i]);
}

float* widened(std::vector<float>& buf, const uint16_t* w, int64_t n, xq_dtype t) {
  static const bool f16c = __builtin_cpu_supports("f16c");
  if (buf.size() < static_cast<size_t>(n)) buf.resize(static_cast<size_t>(n));
  if (t == XQ_DTYPE_BF16) {
    for (int64_t i = 0; i < n; ++i) buf[static_cast<size_t>(i)] = sdk::bf16_to_f32(w[i]);
  } else if (f16c) {
    f16_to_f32_f16c(w, buf.data(), n);
  } else {
    for (int64_t i = 0; i < n; ++i) buf[static_cast<size_t>(i)] = sdk::f16_to_f32(w[i]);
  }
  return buf.data();
}

std::vector<float>& thread_buffer() {
  thread_local std::vector<float> buf;
  return buf;
}

// Decode on BF16 weights: rows split over the pool like the F32 GEMV, the
// activation rounded to BF16 once per call when the path reads it.
void run_bf16_gemv(const Host& host, const float* a, const uint16_t* b, int64_t k, int64_t n, float* c) {
  const Bf16GemvPath path = selected_bf16_gemv_path();  // per call: tests force each path
  thread_local std::vector<uint16_t> ab;
  const uint16_t* xb = nullptr;
  if (path == Bf16GemvPath::avx512bf16) {
    if (ab.size() < static_cast<size_t>(k)) ab.resize(static_cast<size_t>(k));
    bf16_round_activation(a, k, ab.data());
    xb = ab.data();
  }
  // The F32 GEMV's grain (run_matmul): at least ~256 KiB of F32 weights per task.
  const uint64_t grain = std::max<uint64_t>(32, static_cast<uint64_t>((int64_t{1} << 16) / k));
  host.parallel_for(static_cast<uint64_t>(n), grain, [&](uint64_t r0, uint64_t r1) {
    bf16_gemv_rows(path, b, a, xb, k, static_cast<int64_t>(r0), static_cast<int64_t>(r1), c + r0);
  });
}

}  // namespace

void run_matmul_bf16_weights(const Host& host, const xq_op& op) {
  const int64_t m = rows_of(op.src[0]), k = cols_of(op.src[0]), n = op.src[1].shape[0];
  const float* a = static_cast<const float*>(op.src[0].data);
  const uint16_t* b = static_cast<const uint16_t*>(op.src[1].data);
  const xq_dtype wt = op.src[1].dtype;
  float* c = static_cast<float*>(op.dst.data);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(c, c + m * n, 0.0f);
  } else if (m == 1 && wt == XQ_DTYPE_BF16) {
    run_bf16_gemv(host, a, b, k, n, c);
  } else if (m == 1) {
    // The F32 GEMV's grain (run_matmul): at least ~256 KiB of F32 weights per task.
    const uint64_t grain = std::max<uint64_t>(32, static_cast<uint64_t>((int64_t{1} << 16) / k));
    host.parallel_for(static_cast<uint64_t>(n), grain, [&](uint64_t r0, uint64_t r1) {
      std::vector<float>& buf = thread_buffer();
      for (uint64_t r = r0; r < r1; ++r) c[r] = dot_f32(widened(buf, b + r * k, k, wt), a, k);
    });
  } else {
    constexpr int64_t kSgemmBlockCols = 128;  // sgemm_nt_blocked's blocks
    const uint64_t blocks = static_cast<uint64_t>((n + kSgemmBlockCols - 1) / kSgemmBlockCols);
    host.parallel_for(blocks, 1, [&](uint64_t b0, uint64_t b1) {
      std::vector<float>& buf = thread_buffer();
      for (uint64_t blk = b0; blk < b1; ++blk) {
        const int64_t j0 = static_cast<int64_t>(blk) * kSgemmBlockCols, nj = std::min(kSgemmBlockCols, n - j0);
        const float* wb = widened(buf, b + j0 * k, nj * k, wt);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(nj),
                    static_cast<int>(k), 1.0f, a, static_cast<int>(k), wb, static_cast<int>(k), 0.0f, c + j0,
                    static_cast<int>(n));
      }
    });
  }
  if (present(op.src[2])) {
    const float* bias = static_cast<const float*>(op.src[2].data);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += bias[j];
  }
}

}  // namespace xquant::cpu
