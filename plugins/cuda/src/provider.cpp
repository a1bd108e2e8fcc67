// provider.cpp: validation, dispatch and weight preparation of the `cuda`
// kernel provider. Every op is checked by one function per op family that
// both supports_op (answer only) and run_op (throws XQ_ERR_UNSUPPORTED with
// the same message) use, so the two can never disagree.
#include "provider.hpp"
#include "paged_attention.hpp"
#include "moe_ops.hpp"

#include "bf16_gemv.hpp"
#include "w8a8_gemv.hpp"
#include "decode_attention.hpp"
#include "rope_kv.hpp"
#include "decoder_ops.hpp"
#include "w4a16_gemv.hpp"
#include "w4a16_gemv_stream.hpp"
#include "w4a16_gemv_tma.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

#define XQ_CK(expr)                                                                                   \
  do {                                                                                                \
    cudaError_t _e = (expr);                                                                          \
    if (_e != cudaSuccess)                                                                            \
      throw Error(XQ_ERR_DEVICE, format("cuda: %s failed: %s", #expr, cudaGetErrorString(_e)));      \
  } while (0)

void* Scratch::get(size_t need) {
  if (need == 0) need = 16;
  if (need <= bytes) return ptr;
  if (ptr && keep && keep->holds()) {
    keep->retired.push_back(ptr);  // a recorded graph still points at it (graphs.cpp)
  } else if (ptr) {
    cudaDeviceSynchronize();  // earlier kernels may still read the old buffer
    cudaFree(ptr);
  }
  ptr = nullptr;
  bytes = 0;
  size_t want = std::max(need, bytes + bytes / 2);
  if (cudaMalloc(&ptr, want) != cudaSuccess) {
    cudaGetLastError();
    ptr = nullptr;
    if (cudaMalloc(&ptr, need) != cudaSuccess) {
      cudaGetLastError();
      throw Error(XQ_ERR_OUT_OF_MEMORY, format("cuda: scratch allocation of %zu bytes failed", need));
    }
    want = need;
  }
  bytes = want;
  return ptr;
}

void Scratch::release() {
  if (ptr) cudaFree(ptr);
  ptr = nullptr;
  bytes = 0;
}

namespace {

constexpr size_t kLtWorkspace = 32u << 20;

bool to_dtype(xq_dtype t, DType* out) {
  switch (t) {
    case XQ_DTYPE_F32: *out = DType::F32; return true;
    case XQ_DTYPE_F16: *out = DType::F16; return true;
    case XQ_DTYPE_BF16: *out = DType::BF16; return true;
    case XQ_DTYPE_I8: *out = DType::I8; return true;
    case XQ_DTYPE_I32: *out = DType::I32; return true;
    case XQ_DTYPE_F8_E4M3: *out = DType::F8E4M3; return true;
    default: return false;
  }
}

bool present(const xq_device_tensor& t) { return t.data != nullptr; }

// The SDK's shape helpers (sdk/tensor.hpp); a 0-D tensor is no operand here.
bool contiguous(const xq_device_tensor& t) { return t.ndim != 0 && xquant::sdk::is_contiguous(t); }
int64_t last_dim(const xq_device_tensor& t) { return t.ndim ? xquant::sdk::cols_of(t) : 0; }
// An A/B switch: on unless the variable is "0".
bool env_on(const char* name) {
  const char* e = std::getenv(name);
  return !e || std::strcmp(e, "0") != 0;
}

// XQUANT_CUDA_W4_GEMV_TMA_SPLIT (read per op, an A/B switch for one process): how the TMA-ring
// GEMV splits the weight over blocks (w4a16_gemv_tma.hpp): auto (default), streamk, parts (n-block
// parts, summed in a cluster where they fit) or parts-global (summed through the workspace).
W4GemvTmaSplit w4_gemv_tma_split() {
  const char* e = std::getenv("XQUANT_CUDA_W4_GEMV_TMA_SPLIT");
  if (!e || !*e || std::strcmp(e, "auto") == 0) return W4GemvTmaSplit::kAuto;
  if (std::strcmp(e, "streamk") == 0) return W4GemvTmaSplit::kStreamK;
  if (std::strcmp(e, "parts") == 0) return W4GemvTmaSplit::kParts;
  if (std::strcmp(e, "parts-global") == 0) return W4GemvTmaSplit::kPartsGlobal;
  throw Error(XQ_ERR_INVALID_ARGUMENT,
              format("cuda: XQUANT_CUDA_W4_GEMV_TMA_SPLIT=%s: expected auto, streamk, parts or parts-global", e));
}

int64_t leading(const xq_device_tensor& t) { return t.ndim ? xquant::sdk::rows_of(t) : 0; }
int64_t numel(const xq_device_tensor& t) { return t.ndim ? xquant::sdk::numel(t) : 0; }

bool fail_why(std::string* why, const std::string& msg) {
  if (why) *why = msg;
  return false;
}

bool is_half(xq_dtype t) { return t == XQ_DTYPE_BF16 || t == XQ_DTYPE_F16; }
bool is_float(xq_dtype t) { return t == XQ_DTYPE_BF16 || t == XQ_DTYPE_F16 || t == XQ_DTYPE_F32; }

bool check_bias(const xq_op& op, int64_t N, std::string* why) {
  const xq_device_tensor& b = op.src[2];
  if (!present(b)) return true;
  if (!is_float(b.dtype)) return fail_why(why, format("cuda: bias dtype %s unsupported (F32/F16/BF16)", xquant::sdk::dtype_name(b.dtype)));
  if (numel(b) != N || !contiguous(b)) return fail_why(why, format("cuda: bias must be a contiguous [%lld] vector", (long long)N));
  return true;
}

}  // namespace

Provider::Provider(const xquant::sdk::Host& h) : PluginBase(h) {
  cudaError_t e = cudaGetDeviceCount(&device_count_);
  if (e != cudaSuccess || device_count_ == 0) {
    why_ = std::string("no CUDA device: ") + (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0");
    cudaGetLastError();
    device_count_ = 0;
    return;
  }
#ifdef XQUANT_CUDA_COMPILE_CHECK
  // A compile-check build (plugins/cuda/CMakeLists.txt): its kernels are
  // unoptimized PTX a GPU would JIT; refusing beats running them slowly.
  why_ = "this cuda provider was compiled as a check only (XQUANT_CUDA_COMPILE_CHECK=ON: unoptimized PTX, set by "
         "scripts/test.sh on a machine without a GPU); rebuild with scripts/setup.sh to run it";
  device_count_ = 0;
  return;
#endif
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || cudaSetDevice(0) != cudaSuccess) {
    why_ = "no CUDA device: device 0 could not be queried";
    cudaGetLastError();
    device_count_ = 0;
    return;
  }
  sm_count_ = prop.multiProcessorCount;
  cc_major_ = prop.major;
  cc_minor_ = prop.minor;
  if (cc_major_ < 8) {
    why_ = format("CUDA device %s has compute capability %d.%d; the cuda provider needs 8.0 or newer", prop.name,
                  cc_major_, cc_minor_);
    device_count_ = 0;
    return;
  }
  if (cudaStreamCreate(&stream_) != cudaSuccess) {
    why_ = "no CUDA device: cudaStreamCreate failed";
    cudaGetLastError();
    device_count_ = 0;
    return;
  }
  // FlashInfer's prefill workspace is left out: prefill steps are never recorded, so no graph
  // holds it, and its old buffers are freed as it grows.
  for (Scratch* s : {&s_x_, &s_w_, &s_acc_, &s_part_, &s_scale_, &s_bias_, &s_ws_, &s_paged_, &s_moe_sorted_,
                     &s_moe_blocks_, &s_moe_y_, &s_gemv_counters_, &s_flashinfer_})
    s->keep = &graphs_;
  lt_ok_ = lt_.load(&lt_why_);
  if (const char* env = std::getenv("XQUANT_CUDA_W4_FUSED_MAX_M")) w4_fused_max_m_ = std::max(1L, std::atol(env));
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_MAX_M"))
    w4_gemv_max_m_ = std::clamp<int64_t>(std::atol(env), 0, kW4GemvMaxM);
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM"))
    w4_gemv_blocks_per_sm_ = static_cast<int>(std::clamp(std::atol(env), 1L, 256L));
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM"))
    w4_gemv_stream_blocks_per_sm_ = static_cast<int>(std::clamp(std::atol(env), 0L, 64L));
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_VARIANT"))
    w4_gemv_variant_ = static_cast<int>(std::clamp(std::atol(env), 1L, 4L));
  if (w4_gemv_variant_ == 4 && !w4_gemv_tma_supported(cc_major_)) w4_gemv_variant_ = 2;  // v4 is sm_90 only
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_TMA_MAX_M"))
    w4_gemv_tma_max_m_ = std::clamp<int64_t>(std::atol(env), 0, kW4GemvTmaMaxM);
  if (!w4_gemv_tma_supported(cc_major_)) w4_gemv_tma_max_m_ = 0;
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_TMA_STAGES"))
    w4_gemv_tma_stages_ = static_cast<int>(std::clamp(std::atol(env), 0L, 16L));
  if (const char* env = std::getenv("XQUANT_CUDA_W4_GEMV_TMA_BLOCKS_PER_SM"))
    w4_gemv_tma_blocks_per_sm_ = static_cast<int>(std::clamp(std::atol(env), 0L, 64L));
  init_w4_hopper();
  init_w4a8();
  why_ = format("CUDA device %s (sm_%d%d, %d SMs)%s%s", prop.name, cc_major_, cc_minor_, sm_count_,
                lt_ok_ ? "" : "; ", lt_ok_ ? "" : lt_why_.c_str());
}

Provider::~Provider() {
  if (device_count_ == 0) return;
  cudaDeviceSynchronize();
#if XQUANT_CUDA_FLASHINFER
  flashinfer_.reset();
  flashinfer_prefill_.reset();
#endif
  for (Scratch* s : {&s_x_, &s_w_, &s_acc_, &s_part_, &s_scale_, &s_bias_, &s_ws_, &s_paged_, &s_moe_sorted_,
                     &s_moe_blocks_, &s_moe_y_, &s_gemv_counters_, &s_flashinfer_, &s_flashinfer_prefill_})
    s->release();
  for (auto& [key, table] : moe_tables_) cudaFree(table);
  for (void* p : graphs_.retired) cudaFree(p);
  cudaStreamDestroy(stream_);
}

uint32_t Provider::score(const char** why) {
  if (why) *why = why_.c_str();
  if (device_count_ == 0) return 0;
  return 100;
}

void Provider::require_device() const {
  if (device_count_ == 0) throw Error(XQ_ERR_DEVICE, "cuda provider unusable: " + why_);
}

void* Provider::alloc(uint64_t nbytes) {
  require_device();
  refuse_while_recording("alloc");
  void* p = nullptr;
  if (cudaMalloc(&p, nbytes ? nbytes : 1) != cudaSuccess) {
    cudaGetLastError();
    throw Error(XQ_ERR_OUT_OF_MEMORY, format("cuda: cudaMalloc of %llu bytes failed", (unsigned long long)nbytes));
  }
  sample_memory();
  return p;
}

void Provider::free(void* p) {
  if (p && device_count_) cudaFree(p);
}

// The device's whole use (cudaMemGetInfo: ours, cuBLASLt's, the CUDA
// context's), and its largest value sampled at every alloc since the
// previous memory_info call.
void Provider::memory_info(xq_memory_info& out) {
  require_device();
  sample_memory();
  out.device_free = mem_free_;
  out.device_total = mem_total_;
  out.in_use = mem_total_ - mem_free_;
  out.peak = mem_peak_;
  mem_peak_ = out.in_use;  // the next call reports the peak since this one
}

void Provider::sample_memory() {
  size_t f = 0, t = 0;
  if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  mem_free_ = f;
  mem_total_ = t;
  mem_peak_ = std::max<uint64_t>(mem_peak_, t - f);
}

void Provider::upload(void* dst, const void* src, uint64_t n) {
  require_device();
  refuse_while_recording("upload");
  XQ_CK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
}

void Provider::download(void* dst, const void* src, uint64_t n) {
  require_device();
  refuse_while_recording("download");
  XQ_CK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
  if (timer_.on()) timer_.collect();
}

void Provider::synchronize() {
  require_device();
  refuse_while_recording("synchronize");
  XQ_CK(cudaDeviceSynchronize());
  if (timer_.on()) timer_.collect();
}

// ---- validation -------------------------------------------------------------

bool Provider::check_qmatmul(const xq_op& op, std::string* why) {
  const xq_qweight* w = op.qweight;
  if (!w) return fail_why(why, "cuda: QMATMUL needs a qweight");
  const xq_device_tensor &x = op.src[0], &y = op.dst;
  if (!present(x) || !present(y)) return fail_why(why, "cuda: QMATMUL needs src[0] and dst");
  if (!contiguous(x) || !contiguous(y)) return fail_why(why, "cuda: QMATMUL needs contiguous tensors");
  if (last_dim(x) != w->K || last_dim(y) != w->N || leading(x) != leading(y))
    return fail_why(why, format("cuda: QMATMUL shape mismatch: x [%lld,%lld], weight [%lld,%lld], dst [%lld,%lld]",
                                (long long)leading(x), (long long)last_dim(x), (long long)w->N, (long long)w->K,
                                (long long)leading(y), (long long)last_dim(y)));
  if (leading(x) < 1) return fail_why(why, "cuda: QMATMUL with M = 0");
  if (!is_half(x.dtype)) return fail_why(why, format("cuda: QMATMUL activations must be BF16 or F16, got %s", xquant::sdk::dtype_name(x.dtype)));
  if (w->kind == xq_qweight::Kind::W4) {
    if (y.dtype != x.dtype)
      return fail_why(why, format("cuda: %s QMATMUL writes the activation dtype (%s), not %s", kLayoutW4,
                                  xquant::sdk::dtype_name(x.dtype), xquant::sdk::dtype_name(y.dtype)));
  } else {
    if (!is_float(y.dtype)) return fail_why(why, format("cuda: %s QMATMUL output must be F32/F16/BF16", kLayoutW8));
    if (!lt_ok_) return fail_why(why, "cuda: " + std::string(kLayoutW8) + " needs cuBLASLt: " + lt_why_);
  }
  return check_bias(op, w->N, why);
}

// BF16/F16 MATMUL operands on 16-byte boundaries: the few-row kernel reads
// 16-byte vectors, and cuBLASLt's plans (cached per shape, chosen with its
// default 256-byte alignment preference) fail at run time on an operand off
// it (CUBLAS_STATUS_NOT_SUPPORTED, status 15, for a BF16 x 2 bytes in on an
// H200). Refused here, before any work, naming the operand.
namespace {
bool half_operands_aligned(const xq_op& op, std::string* why) {
  const struct {
    const xq_device_tensor& t;
    const char* name;
  } operands[] = {{op.src[0], "src[0] (x)"}, {op.src[1], "src[1] (w)"}, {op.dst, "dst"}};
  for (const auto& o : operands) {
    const auto off = reinterpret_cast<uintptr_t>(o.t.data) % 16;
    if (off != 0)
      return fail_why(why, format("cuda: %s MATMUL needs 16-byte aligned operands; %s is %u bytes past a 16-byte "
                                  "boundary",
                                  xquant::sdk::dtype_name(op.src[0].dtype), o.name, static_cast<unsigned>(off)));
  }
  return true;
}
}  // namespace

bool Provider::check_matmul(const xq_op& op, std::string* why) {
  const xq_device_tensor &a = op.src[0], &b = op.src[1], &y = op.dst;
  if (!present(a) || !present(b) || !present(y)) return fail_why(why, "cuda: MATMUL needs src[0], src[1] and dst");
  if (!contiguous(a) || !contiguous(b) || !contiguous(y)) return fail_why(why, "cuda: MATMUL needs contiguous tensors");
  if (b.ndim != 2) return fail_why(why, "cuda: MATMUL weight must be 2-D [N,K]");
  const int64_t M = leading(a), K = last_dim(a), N = b.shape[0];
  if (b.shape[1] != K || last_dim(y) != N || leading(y) != M || M < 1)
    return fail_why(why, "cuda: MATMUL shape mismatch (x [M,K], w [N,K], dst [M,N])");
  if (a.dtype != b.dtype) return fail_why(why, "cuda: MATMUL operands must share a dtype");
  if (!lt_ok_) return fail_why(why, "cuda: MATMUL needs cuBLASLt: " + lt_why_);
  if (a.dtype == XQ_DTYPE_F32) {
    if (y.dtype != XQ_DTYPE_F32) return fail_why(why, "cuda: F32 MATMUL writes F32");
  } else if (is_half(a.dtype)) {
    if (y.dtype != a.dtype) return fail_why(why, "cuda: BF16/F16 MATMUL writes the operand dtype");
    if (K % 8 != 0 || N % 8 != 0) return fail_why(why, format("cuda: MATMUL needs K and N multiples of 8 (K=%lld N=%lld)", (long long)K, (long long)N));
    if (!half_operands_aligned(op, why)) return false;
  } else if (a.dtype == XQ_DTYPE_I8 || a.dtype == XQ_DTYPE_F8_E4M3) {
    if (!is_float(y.dtype)) return fail_why(why, "cuda: INT8/FP8 MATMUL output must be F32/F16/BF16");
    if (K % 16 != 0 || N % 16 != 0)
      return fail_why(why, format("cuda: INT8/FP8 MATMUL needs K and N multiples of 16 (K=%lld N=%lld)", (long long)K, (long long)N));
    if (op.i[0] == 1) {
      const xq_device_tensor& s = op.src[3];
      if (!present(s) || s.dtype != XQ_DTYPE_F32 || numel(s) != M + N)
        return fail_why(why, "cuda: MATMUL i[0]=1 needs src[3] F32 [M+N] (per-token then per-channel scales)");
    } else if (op.i[0] != 0) {
      return fail_why(why, "cuda: MATMUL i[0] must be 0 (per-tensor f[0], f[1]) or 1 (vector scales in src[3])");
    }
  } else {
    return fail_why(why, format("cuda: MATMUL dtype %s unsupported", xquant::sdk::dtype_name(a.dtype)));
  }
  return check_bias(op, N, why);
}

bool Provider::supports(const xq_op& op, std::string* why) {
  if (device_count_ == 0) return fail_why(why, "cuda provider unusable: " + why_);
  switch (op.type) {
    case XQ_OP_QMATMUL: return check_qmatmul(op, why);
    case XQ_OP_MATMUL: return check_matmul(op, why);
    case XQ_OP_DEQUANTIZE: {
      const xq_qweight* w = op.qweight;
      if (!w) return fail_why(why, "cuda: DEQUANTIZE needs a qweight");
      const xq_device_tensor& y = op.dst;
      if (!present(y) || !contiguous(y) || !is_float(y.dtype) || leading(y) != w->N || last_dim(y) != w->K)
        return fail_why(why, format("cuda: DEQUANTIZE needs a contiguous F32/F16/BF16 dst [%lld,%lld]", (long long)w->N, (long long)w->K));
      return true;
    }
    case XQ_OP_QUANTIZE_ACT: {
      const xq_device_tensor &x = op.src[0], &q = op.dst;
      if (!present(x) || !present(q) || !contiguous(x) || !contiguous(q)) return fail_why(why, "cuda: QUANTIZE_ACT needs contiguous src[0] and dst");
      if (!is_float(x.dtype)) return fail_why(why, "cuda: QUANTIZE_ACT input must be F32/F16/BF16");
      if (q.dtype != XQ_DTYPE_I8 && q.dtype != XQ_DTYPE_F8_E4M3) return fail_why(why, "cuda: QUANTIZE_ACT output must be I8 or F8_E4M3");
      if (leading(x) != leading(q) || last_dim(x) != last_dim(q) || leading(x) < 1) return fail_why(why, "cuda: QUANTIZE_ACT shape mismatch");
      if (op.i[0] == 0) {
        const xq_device_tensor& s = op.src[1];
        if (!present(s) || s.dtype != XQ_DTYPE_F32 || numel(s) != leading(x))
          return fail_why(why, "cuda: per-token QUANTIZE_ACT needs src[1] F32 [M] for the scales");
      } else if (op.i[0] == 1) {
        if (!(op.f[0] > 0.0)) return fail_why(why, "cuda: static QUANTIZE_ACT needs f[0] > 0");
      } else {
        return fail_why(why, "cuda: QUANTIZE_ACT i[0] must be 0 (per-token) or 1 (static)");
      }
      return true;
    }
    default:
      if (is_decoder_op(op.type)) return check_decoder_op(op, why);
      if (is_paged_op(op.type)) return check_paged_op(op, why);
      if (is_moe_op(op.type)) return check_moe_op(op, why);
      if (op.type == XQ_OP_ROPE_KV) return check_rope_kv_op(op, why);
      return fail_why(why, format("cuda: op %d is not provided", static_cast<int>(op.type)));
  }
}

// ---- per-step attention plan -------------------------------------------------

namespace {

// XQUANT_FLASHINFER_DECODE_MIN_ROWS: a positive count, else the default.
int64_t flashinfer_min_rows() {
  constexpr int64_t kDefault = 8;
  const char* env = std::getenv("XQUANT_FLASHINFER_DECODE_MIN_ROWS");
  if (!env) return kDefault;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  return end != env && *end == '\0' && v > 0 ? v : kDefault;
}

}  // namespace

void Provider::plan_paged(xq_paged_plan& plan) {
  require_device();
  std::lock_guard<std::recursive_mutex> lock(mu_);
  refuse_while_recording("plan_paged_step");  // its copy would be recorded, not run
#if XQUANT_CUDA_FLASHINFER
  auto workspace = [](void* p, size_t n) { return static_cast<Scratch*>(p)->get(n); };
  std::string why;
  // Decode: where it is faster in the engine (H100, session forty-three, docs/cuda.md "FlashInfer's
  // decode in the engine"): per-step TPOT at 8 rows 0.98x ours (BF16) and 0.965x (W4A16 g128), at 64
  // rows 1.00x, but at 1 and 2 rows BF16 1.05x and 1.06x (not profiled; its kernels release the next
  // one only at their end, so a likely cause is the BF16 o_proj GEMV no longer streaming weights under
  // attention's tail, and graph mode launches a padded grid). Below 8 rows (the step's rows, a
  // recorded bucket's padding included) ours runs; XQUANT_FLASHINFER_DECODE_MIN_ROWS moves the line
  // (read per step).
  const bool decode = cc_major_ == 9 && env_on("XQUANT_FLASHINFER_DECODE") && plan.rows >= flashinfer_min_rows();
  if (decode && !flashinfer_) flashinfer_ = std::make_unique<FlashInferDecode>();
  if (flashinfer_) {
    xq_paged_plan effective = plan;
    if (!decode) effective.rows = 0;  // drops the previous step's plan, so no op runs on it
    if (flashinfer_->plan(effective, stream_, workspace, &s_flashinfer_, &why)) plan.taken = 1;
    else if (decode) note_flashinfer_refusal("decode", why);
  }
  // Prefill and mixed steps: its FA2 kernel (flashinfer_prefill.hpp; measured in the engine in
  // docs/cuda.md "FlashInfer's prefill in the engine").
  const bool prefill = cc_major_ == 9 && env_on("XQUANT_FLASHINFER_PREFILL") && plan.seqs > 0;
  if (prefill && !flashinfer_prefill_) flashinfer_prefill_ = std::make_unique<FlashInferPrefill>();
  if (flashinfer_prefill_) {
    xq_paged_plan effective = plan;
    if (!prefill) effective.seqs = 0;
    why.clear();
    if (flashinfer_prefill_->plan(effective, stream_, workspace, &s_flashinfer_prefill_, &why)) plan.taken = 1;
    else if (prefill) note_flashinfer_refusal("prefill", why);
  }
#else
  (void)plan;
#endif
}

// Why a step FlashInfer could have served runs ours (a pool that is not
// BF16, a head_dim it is not built for, ...): logged at debug level when the
// reason changes, not every step.
void Provider::note_flashinfer_refusal(const char* kernel, const std::string& why) {
  const std::string line = std::string("cuda: FlashInfer's ") + kernel + " not planned for this step: " + why;
  if (why.empty() || line == flashinfer_refusal_) return;
  flashinfer_refusal_ = line;
  host.debug(line + " (our kernels serve it)");
}

FlashInferDecode* Provider::flashinfer() const {
#if XQUANT_CUDA_FLASHINFER
  return flashinfer_.get();
#else
  return nullptr;
#endif
}

FlashInferPrefill* Provider::flashinfer_prefill() const {
#if XQUANT_CUDA_FLASHINFER
  return graphs_.recording ? nullptr : flashinfer_prefill_.get();  // its plan is per step: never recorded
#else
  return nullptr;
#endif
}

const xq_paged_plan* Provider::flashinfer_plan() const {
#if XQUANT_CUDA_FLASHINFER
  return flashinfer_ ? flashinfer_->current() : nullptr;
#else
  return nullptr;
#endif
}

uint64_t Provider::flashinfer_runs() const {
#if XQUANT_CUDA_FLASHINFER
  return flashinfer_ ? flashinfer_->runs() : 0;
#else
  return 0;
#endif
}

// ---- run --------------------------------------------------------------------

void Provider::run(const xq_op& op) {
  std::string why;
  if (!supports(op, &why)) throw Error(device_count_ ? XQ_ERR_UNSUPPORTED : XQ_ERR_DEVICE, why);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const bool timed = timer_.on() && !graphs_.recording;
  if (timed) timer_.before(stream_);
  switch (op.type) {
    case XQ_OP_QMATMUL:
      if (op.qweight->kind == xq_qweight::Kind::W4) run_qmatmul_w4(op);
      else if (op.qweight->fp8) run_qmatmul_fp8(op);
      else run_qmatmul_w8(op);
      break;
    case XQ_OP_MATMUL: run_matmul(op); break;
    case XQ_OP_DEQUANTIZE: run_dequantize(op); break;
    case XQ_OP_QUANTIZE_ACT: run_quantize_act(op); break;
    case XQ_OP_ATTENTION:  // split-K over the keys where it fits (decode_attention.hpp); XQUANT_DECODE_ATTENTION=0: off
      if (!env_on("XQUANT_DECODE_ATTENTION") || !run_decode_attention_op(op, sm_count_, [](void* p, size_t n) { return static_cast<Scratch*>(p)->get(n); },
                                   &s_paged_, stream_))
        run_decoder_op(op, stream_);
      break;
    default:
      if (is_decoder_op(op.type)) run_decoder_op(op, stream_);
      if (is_paged_op(op.type)) {
        const uint64_t planned_runs = flashinfer_runs();
        run_paged_op(op, sm_count_, [](void* p, size_t n) { return static_cast<Scratch*>(p)->get(n); }, &s_paged_,
                     stream_, flashinfer(), flashinfer_prefill());
        if (graphs_.recording && flashinfer_runs() != planned_runs)  // the recording reads the plan
          graphs_.planned_shape = *flashinfer_plan();
      }
      if (is_moe_op(op.type)) run_moe_op(op, stream_);
      if (op.type == XQ_OP_ROPE_KV) run_rope_kv_op(op, stream_);
      break;
  }
  if (timed) timer_.after(op, stream_);
}

const void* Provider::bias_as(const xq_device_tensor& b, DType want, int64_t n) {
  if (!present(b)) return nullptr;
  DType have;
  to_dtype(b.dtype, &have);
  if (have == want) return b.data;
  void* dst = s_bias_.get(static_cast<size_t>(n) * 4);
  XQ_CK(convert(b.data, have, dst, want, n, stream_));
  return dst;
}

void Provider::lt_gemm(const LtGemmShape& s, const void* W, const void* x, void* D, float alpha, const void* bias,
                       const float* w_scale, const float* x_scale) {
  std::string err;
  void* ws = s_ws_.get(kLtWorkspace);
  const int rc = lt_.gemm(s, W, x, D, alpha, bias, w_scale, x_scale, ws, kLtWorkspace, stream_, &err);
  if (rc == 1) throw Error(XQ_ERR_UNSUPPORTED, "cuda: " + err);
  if (rc != 0) throw Error(XQ_ERR_DEVICE, "cuda: " + err);
}

void Provider::run_qmatmul_w4(const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  const xq_device_tensor &x = op.src[0], &y = op.dst;
  DType T{};
  to_dtype(x.dtype, &T);
  const bool is_f16 = T == DType::F16;
  const int64_t M = leading(x), K = w.K, N = w.N;
  const uint2* sz = is_f16 ? w.sz_f16 : w.sz_bf16;
  if (run_qmatmul_w4a8(op)) return;
  if (run_qmatmul_w4_hopper(op)) return;
  // Provider knob: 1 = fused kernel, 2 = dequant + cuBLASLt, 3 = Hopper wgmma, 4 = the GEMV (M <= 8;
  // variant XQUANT_CUDA_W4_GEMV_VARIANT), 5 = the streaming GEMV ("v3", M <= 8), 6 = W4A8-FP8 on
  // Hopper (provider_w4a8.cpp; where the weight has that copy), 7 = the TMA-ring GEMV ("v4", M <= 16,
  // sm_90; elsewhere as 0). By default v4 takes BF16 and F16 at M <= w4_gemv_tma_max_m_ on sm_90, unless
  // XQUANT_CUDA_W4_GEMV_MAX_M asks for the GEMV of XQUANT_CUDA_W4_GEMV_VARIANT there.
  const int64_t force = op.i[7];
  const bool small = M <= kW4GemvMaxM;
  const bool gemv = small && (force == 4 || force == 5 || (force == 0 && M <= w4_gemv_max_m_));
  // XQUANT_CUDA_W4_GEMV_TMA=0 (read per op: an A/B switch for one process, as XQUANT_BF16_GEMV)
  // keeps the fused kernel where v4 would be the default.
  const bool tma = !gemv && M <= kW4GemvTmaMaxM && w4_gemv_tma_supported(cc_major_) &&
                   (force == kForceW4GemvTma || (force == 0 && M <= w4_gemv_tma_max_m_ &&
                                                 env_on("XQUANT_CUDA_W4_GEMV_TMA")));
  const bool fused = gemv || tma || force == 1 || !lt_ok_ || (force != 2 && M <= w4_fused_max_m_);
  DType bias_t = DType::F32;
  if (present(op.src[2])) to_dtype(op.src[2].dtype, &bias_t);
  if (fused) {
    const int64_t K_pad = w.L.chunks * 64;
    const void* xs = x.data;
    int64_t ldx = K;
    if (w.perm || K != K_pad || (reinterpret_cast<uintptr_t>(x.data) % 16) != 0) {
      void* buf = s_x_.get(static_cast<size_t>(M * K_pad) * 2);
      XQ_CK(gather_columns(x.data, T, M, K, K, w.perm, buf, K_pad, stream_));
      xs = buf;
      ldx = K_pad;
    }
    if (tma) return run_w4_gemv(op, xs, ldx, bias_t, 4);
    if (gemv) return run_w4_gemv(op, xs, ldx, bias_t, force == 5 ? 3 : w4_gemv_variant_);
    const W4GemmPlan plan = w4_gemm_plan(w.L, M, sm_count_);
    float* part = plan.workspace_floats ? static_cast<float*>(s_part_.get(plan.workspace_floats * 4)) : nullptr;
    XQ_CK(w4_gemm(w.L, plan, w.qw, sz, is_f16, xs, ldx, M, y.data, T, op.src[2].data, bias_t, part, stream_));
    return;
  }
  void* wd = s_w_.get(static_cast<size_t>(N * K) * 2);
  XQ_CK(w4_dequant(w.L, w.qw, sz, is_f16, nullptr, wd, T, K, stream_));
  const void* xg = x.data;
  if (w.perm) {
    void* buf = s_x_.get(static_cast<size_t>(M * K) * 2);
    XQ_CK(gather_columns(x.data, T, M, K, K, w.perm, buf, K, stream_));
    xg = buf;
  }
  const void* bias = bias_as(op.src[2], T, N);
  LtGemmShape s{is_f16 ? GemmKind::F16 : GemmKind::BF16, M, N, K, T, bias != nullptr, false};
  lt_gemm(s, wd, xg, y.data, 1.f, bias, nullptr, nullptr);
}

void Provider::run_w4_gemv(const xq_op& op, const void* xs, int64_t ldx, DType bias_t, int variant) {
  const xq_qweight& w = *op.qweight;
  const bool is_f16 = op.src[0].dtype == XQ_DTYPE_F16;
  const int64_t M = leading(op.src[0]);
  const uint2* sz = is_f16 ? w.sz_f16 : w.sz_bf16;
  if (variant == 4) {
    const W4GemvTmaPlan plan = w4_gemv_tma_plan(w.L, M, is_f16, sm_count_, w4_gemv_tma_stages_,
                                                w4_gemv_tma_blocks_per_sm_, w4_gemv_tma_split());
    float* part = plan.workspace_floats ? static_cast<float*>(s_part_.get(plan.workspace_floats * 4)) : nullptr;
    int* counters = plan.counters ? gemv_counters(plan.counters) : nullptr;
    XQ_CK(w4_gemv_tma(w.L, plan, w.qw, sz, is_f16, xs, ldx, M, op.dst.data, op.src[2].data, bias_t, part, counters,
                      stream_));
    return;
  }
  if (variant == 3) {
    const W4GemvStreamPlan plan = w4_gemv_stream_plan(w.L, M, is_f16, sm_count_, w4_gemv_stream_blocks_per_sm_);
    float* part = plan.workspace_floats ? static_cast<float*>(s_part_.get(plan.workspace_floats * 4)) : nullptr;
    int* counters = plan.counters ? gemv_counters(plan.counters) : nullptr;
    XQ_CK(w4_gemv_stream(w.L, plan, w.qw, sz, is_f16, xs, ldx, M, op.dst.data, op.src[2].data, bias_t, part, counters,
                         stream_));
    return;
  }
  W4GemvPlan plan = w4_gemv_plan(w.L, M, sm_count_, w4_gemv_blocks_per_sm_);
  plan.batches = variant == 1 ? 1 : 2;
  float* part = plan.workspace_floats ? static_cast<float*>(s_part_.get(plan.workspace_floats * 4)) : nullptr;
  int* counters = plan.counters ? gemv_counters(plan.counters) : nullptr;
  XQ_CK(w4_gemv(w.L, plan, w.qw, sz, is_f16, xs, ldx, M, op.dst.data, op.src[2].data, bias_t, part, counters,
                stream_));
}

int* Provider::gemv_counters(int64_t n) {
  // Zeroed when (re)allocated: a new allocation may reuse the freed address,
  // so the size tells it apart too. Every launch leaves them zero.
  int* counters = static_cast<int*>(s_gemv_counters_.get(static_cast<size_t>(n) * sizeof(int)));
  if (counters != gemv_counters_zeroed_ || s_gemv_counters_.bytes != gemv_counters_zeroed_bytes_) {
    XQ_CK(cudaMemsetAsync(counters, 0, s_gemv_counters_.bytes, stream_));
    gemv_counters_zeroed_ = counters;
    gemv_counters_zeroed_bytes_ = s_gemv_counters_.bytes;
  }
  return counters;
}

void Provider::run_qmatmul_w8(const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  const xq_device_tensor &x = op.src[0], &y = op.dst;
  DType T, Y;
  to_dtype(x.dtype, &T);
  to_dtype(y.dtype, &Y);
  const int64_t M = leading(x), K = w.K, N = w.N;
  // Decode: the few-row kernel quantizes the rows itself (w8a8_gemv.hpp).
  if (run_w8a8_gemv_fused(DType::I8, op, w.act == XQ_ACT_DYNAMIC_TOKEN ? 0.f : w.input_scale)) return;
  void* xq = s_x_.get(static_cast<size_t>(M * K));
  float* sa = nullptr;
  float sa_const = w.input_scale;
  if (w.act == XQ_ACT_DYNAMIC_TOKEN) {
    sa = static_cast<float*>(s_scale_.get(static_cast<size_t>(M) * 4));
    XQ_CK(quantize_act(x.data, T, M, K, xq, DType::I8, sa, 0.f, stream_));
  } else {
    XQ_CK(quantize_act(x.data, T, M, K, xq, DType::I8, nullptr, w.input_scale, stream_));
  }
  if (run_w8a8_gemv(DType::I8, op, xq, sa, sa_const)) return;
  if (run_w8a8_cutlass(ScaledMM{DType::I8, Y, M, N, K, xq, w.w8, y.data, sa, sa_const, w.sw, 1.f}, op.src[2]))
    return;
  void* acc = s_acc_.get(static_cast<size_t>(M * N) * 4);
  lt_gemm(LtGemmShape{GemmKind::I8, M, N, K, DType::I32, false, false}, w.w8, xq, acc, 1.f, nullptr, nullptr, nullptr);
  DType bias_t = DType::F32;
  if (present(op.src[2])) to_dtype(op.src[2].dtype, &bias_t);
  XQ_CK(scale_epilogue(acc, DType::I32, M, N, sa, sa_const, w.sw, 1.f, op.src[2].data, bias_t, y.data, Y, stream_));
}

W8Gemv Provider::w8_gemv_problem(DType codes, const xq_op& op) const {
  const xq_qweight& w = *op.qweight;
  W8Gemv g;
  g.codes = codes;
  g.w = w.w8;
  g.sw = w.sw;
  if (present(op.src[2])) {
    g.bias = op.src[2].data;
    to_dtype(op.src[2].dtype, &g.bias_t);
  }
  g.M = leading(op.src[0]);
  g.N = w.N;
  g.K = w.K;
  g.y = op.dst.data;
  to_dtype(op.dst.dtype, &g.y_t);
  return g;
}

bool Provider::run_w8a8_gemv(DType codes, const xq_op& op, const void* xq, const float* sa, float sa_const) {
  W8Gemv g = w8_gemv_problem(codes, op);
  g.xq = xq;
  g.sa = sa;
  g.sa_const = sa_const;
  if (!w8a8_gemv_fits(g, cc_major_, cc_minor_)) return false;
  launch_w8_gemv(g);
  return true;
}

bool Provider::run_w8a8_gemv_fused(DType codes, const xq_op& op, float static_scale) {
  W8Gemv g = w8_gemv_problem(codes, op);
  DType x_t{};
  to_dtype(op.src[0].dtype, &x_t);
  if (!w8a8_gemv_fused_fits(g, x_t, op.src[0].data, cc_major_, cc_minor_)) return false;
  g.x16 = op.src[0].data;
  g.x16_t = x_t;
  g.static_scale = static_scale;
  launch_w8_gemv(g);
  return true;
}

void Provider::launch_w8_gemv(const W8Gemv& g) {
  const int split = w8a8_gemv_split(), unroll = w8a8_gemv_unroll();
  if (split == 0)
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("cuda: XQUANT_CUDA_W8_GEMV_SPLIT=%s: expected 1, 2, 4 or 8", std::getenv("XQUANT_CUDA_W8_GEMV_SPLIT")));
  if (unroll == 0)
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("cuda: XQUANT_CUDA_W8_GEMV_UNROLL=%s: expected 4 or 8", std::getenv("XQUANT_CUDA_W8_GEMV_UNROLL")));
  XQ_CK(w8a8_gemv(g, split, unroll, stream_));
}

void Provider::run_matmul(const xq_op& op) {
  const xq_device_tensor &a = op.src[0], &b = op.src[1], &y = op.dst;
  const int64_t M = leading(a), K = last_dim(a), N = b.shape[0];
  DType A{}, Y{};
  to_dtype(a.dtype, &A);
  to_dtype(y.dtype, &Y);
  DType bias_t = DType::F32;
  if (present(op.src[2])) to_dtype(op.src[2].dtype, &bias_t);
  // A few BF16 rows (decode): the weight-streaming kernel of bf16_gemv.hpp;
  // XQUANT_BF16_GEMV=0 keeps cuBLASLt (read per op: an A/B switch for
  // benchmarks and tests within one process), as its split does.
  if (env_on("XQUANT_BF16_GEMV") && A == DType::BF16 && b.dtype == XQ_DTYPE_BF16) {
    const int split = bf16_gemv_split();
    if (split == 0)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: XQUANT_BF16_GEMV_SPLIT=%s: expected 1, 2 or 4",
                                                  std::getenv("XQUANT_BF16_GEMV_SPLIT")));
    if (bf16_gemv_fits(M, K, a.data, b.data, split)) {
      const void* bias = bias_as(op.src[2], A, N);
      XQ_CK(bf16_gemv(a.data, b.data, bias, A, M, N, K, y.data, Y, stream_, split));
      return;
    }
  }
  if (A == DType::BF16 || A == DType::F16 || A == DType::F32) {
    const void* bias = bias_as(op.src[2], A, N);
    const GemmKind kind = A == DType::F32 ? GemmKind::F32 : A == DType::F16 ? GemmKind::F16 : GemmKind::BF16;
    lt_gemm(LtGemmShape{kind, M, N, K, A, bias != nullptr, false}, b.data, a.data, y.data, 1.f, bias, nullptr, nullptr);
    return;
  }
  const bool vec = op.i[0] == 1;
  const float* sx = vec ? static_cast<const float*>(op.src[3].data) : nullptr;
  const float* sw = vec ? sx + M : nullptr;
  const float fx = vec ? 1.f : static_cast<float>(op.f[0] > 0 ? op.f[0] : 1.0);
  const float fw = vec ? 1.f : static_cast<float>(op.f[1] > 0 ? op.f[1] : 1.0);
  if (run_w8a8_cutlass(ScaledMM{A, Y, M, N, K, a.data, b.data, y.data, sx, fx, sw, fw}, op.src[2])) return;
  if (A == DType::I8) {
    void* acc = s_acc_.get(static_cast<size_t>(M * N) * 4);
    lt_gemm(LtGemmShape{GemmKind::I8, M, N, K, DType::I32, false, false}, b.data, a.data, acc, 1.f, nullptr, nullptr,
            nullptr);
    XQ_CK(scale_epilogue(acc, DType::I32, M, N, sx, fx, sw, fw, op.src[2].data, bias_t, y.data, Y, stream_));
    return;
  }
  // FP8: per-tensor scales fold into alpha; vector scales use cuBLASLt's
  // outer-vector mode when this cuBLASLt has it on this GPU, else an F32
  // accumulator plus our epilogue.
  if (!vec || fp8_outer_ok_) {
    const void* bias = bias_as(op.src[2], Y, N);
    LtGemmShape s{GemmKind::FP8, M, N, K, Y, bias != nullptr, vec};
    std::string err;
    void* ws = s_ws_.get(kLtWorkspace);
    const int rc = lt_.gemm(s, b.data, a.data, y.data, fx * fw, bias, sw, sx, ws, kLtWorkspace, stream_, &err);
    if (rc == 0) return;
    if (rc != 1 || !vec) throw Error(rc == 1 ? XQ_ERR_UNSUPPORTED : XQ_ERR_DEVICE, "cuda: " + err);
    fp8_outer_ok_ = false;
    host.warn("cuBLASLt has no outer-vector FP8 scaling here (" + err + "); using a scaled epilogue pass");
  }
  // Fallback: unscaled FP8 GEMM, then our epilogue applies sa[m] * sw[n]
  // (+ bias). Unscaled E4M3 sums reach 448^2 K, past F16's 65504, so an F16
  // dst takes them in an F32 accumulator; BF16 and F32 have the range and are
  // scaled in place: one extra pass over y.
  if (Y == DType::F16) {
    void* acc = s_acc_.get(static_cast<size_t>(M * N) * 4);
    lt_gemm(LtGemmShape{GemmKind::FP8, M, N, K, DType::F32, false, false}, b.data, a.data, acc, 1.f, nullptr, nullptr,
            nullptr);
    XQ_CK(scale_epilogue(acc, DType::F32, M, N, sx, 1.f, sw, 1.f, op.src[2].data, bias_t, y.data, Y, stream_));
    return;
  }
  lt_gemm(LtGemmShape{GemmKind::FP8, M, N, K, Y, false, false}, b.data, a.data, y.data, 1.f, nullptr, nullptr, nullptr);
  XQ_CK(scale_epilogue(y.data, Y, M, N, sx, 1.f, sw, 1.f, op.src[2].data, bias_t, y.data, Y, stream_));
}

void Provider::run_dequantize(const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  DType Y{};
  to_dtype(op.dst.dtype, &Y);
  if (w.kind == xq_qweight::Kind::W4) {
    const bool f16 = Y == DType::F16 || (Y == DType::F32 && w.f32_dequant_uses_f16);
    XQ_CK(w4_dequant(w.L, w.qw, f16 ? w.sz_f16 : w.sz_bf16, f16, w.perm, op.dst.data, Y, w.K, stream_));
  } else {
    XQ_CK(dequant_rows(w.w8, w.fp8 ? DType::F8E4M3 : DType::I8, w.N, w.K, w.sw, 1.f, op.dst.data, Y, stream_));
  }
}

void Provider::run_quantize_act(const xq_op& op) {
  DType X, Q;
  to_dtype(op.src[0].dtype, &X);
  to_dtype(op.dst.dtype, &Q);
  const int64_t M = leading(op.src[0]), K = last_dim(op.src[0]);
  if (op.i[0] == 0) {
    XQ_CK(quantize_act(op.src[0].data, X, M, K, op.dst.data, Q, static_cast<float*>(op.src[1].data), 0.f, stream_));
  } else {
    XQ_CK(quantize_act(op.src[0].data, X, M, K, op.dst.data, Q, nullptr, static_cast<float>(op.f[0]), stream_));
  }
}

// ---- weights ------------------------------------------------------------------

namespace {

// Device buffer owned for the duration of prepare.
struct DevTmp {
  void* p = nullptr;
  ~DevTmp() {
    if (p) cudaFree(p);
  }
};

template <class T>
T* upload_tmp(DevTmp& t, const T* host, size_t count) {
  XQ_CK(cudaMalloc(&t.p, std::max<size_t>(count * sizeof(T), 16)));
  XQ_CK(cudaMemcpy(t.p, host, count * sizeof(T), cudaMemcpyHostToDevice));
  return static_cast<T*>(t.p);
}

}  // namespace

xq_qweight* Provider::prepare(const xq_quant_tensor& q) {
  refuse_while_recording("qweight_prepare");
  require_device();
  if (q.struct_size < offsetof(xq_quant_tensor, input_scale) + sizeof(float))
    throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: xq_quant_tensor too old (struct_size)");
  if (!q.codes || !q.scales || q.rows <= 0 || q.cols <= 0)
    throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: quant tensor without codes/scales or with an empty shape");
  const int64_t N = q.rows, K = q.cols;
  const int64_t G = q.strategy == XQ_STRATEGY_TENSOR ? 1 : q.n_groups;
  // Scales and zero points per row ([N][G]); TENSOR broadcasts its one value.
  std::vector<float> scales(static_cast<size_t>(N * G));
  std::vector<int8_t> zps;
  for (int64_t r = 0; r < N; ++r)
    for (int64_t g = 0; g < G; ++g)
      scales[r * G + g] = q.strategy == XQ_STRATEGY_TENSOR ? q.scales[0] : q.scales[r * G + g];
  if (!q.symmetric && q.zero_points) {
    zps.resize(scales.size());
    for (int64_t r = 0; r < N; ++r)
      for (int64_t g = 0; g < G; ++g)
        zps[r * G + g] = q.strategy == XQ_STRATEGY_TENSOR ? q.zero_points[0] : q.zero_points[r * G + g];
  }
  auto w = std::make_unique<xq_qweight>();
  w->N = N;
  w->K = K;
  w->act = q.act_scheme;
  w->input_scale = q.input_scale;

  // W4A8-FP8 (4-bit codes, activations E4M3 per token) is packed as a W4 weight plus the
  // W4A8 copy (provider_w4a8.cpp); its QMATMUL takes the W4A8 GEMM where that is faster.
  w->w4a8_scheme = is_w4a8_fp8_scheme(q);
  if (q.act_scheme == XQ_ACT_NONE || w->w4a8_scheme) {
    if (q.bits == XQ_BITS_F8_E4M3)
      throw Error(XQ_ERR_UNSUPPORTED, "cuda: FP8 weight-only has no kernel here (FP8 runs as W8A8 dynamic)");
    if (q.bits < 2 || q.bits > 4)
      throw Error(XQ_ERR_UNSUPPORTED, format("cuda: weight-only %u-bit weights unsupported (%s takes 2-4 bits)", q.bits, kLayoutW4));
    int gs_shift = 31;
    if (q.strategy == XQ_STRATEGY_GROUP && G > 1) {
      const int64_t gs = q.group_size;
      if (gs < 16 || (gs & (gs - 1)) != 0)
        throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %s needs a power-of-two group size >= 16, got %lld", kLayoutW4, (long long)gs));
      gs_shift = 0;
      while ((int64_t{1} << gs_shift) < gs) ++gs_shift;
      if (G != (K + gs - 1) / gs) throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: n_groups != ceil(cols / group_size)");
    } else if (q.strategy == XQ_STRATEGY_BLOCK) {
      throw Error(XQ_ERR_UNSUPPORTED, "cuda: block strategy unsupported");
    }
    for (int64_t i = 0; i < N * K; ++i)
      if (q.codes[i] < -8 || q.codes[i] > 7)
        throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: code %d outside the 4-bit range at %lld", q.codes[i], (long long)i));
    for (int8_t z : zps)
      if (z < -64 || z > 64) throw Error(XQ_ERR_UNSUPPORTED, format("cuda: zero point %d outside [-64, 64]", z));
    // Act-order: sort columns by group so each group is contiguous.
    std::vector<int32_t> perm;
    if (q.g_idx && gs_shift < 31) {
      bool trivial = true;
      for (int64_t c = 0; c < K; ++c) trivial = trivial && q.g_idx[c] == (c >> gs_shift);
      if (!trivial) {
        perm.resize(static_cast<size_t>(K));
        std::iota(perm.begin(), perm.end(), 0);
        std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return q.g_idx[a] < q.g_idx[b]; });
        for (int64_t c = 0; c < K; ++c)
          if (q.g_idx[perm[c]] != (c >> gs_shift))
            throw Error(XQ_ERR_UNSUPPORTED,
                        format("cuda: act-order g_idx must give every group exactly group_size columns (group %d at sorted column %lld)",
                               q.g_idx[perm[c]], (long long)c));
      }
    }
    bool scales_fit_f16 = true;
    for (float s : scales) scales_fit_f16 = scales_fit_f16 && std::fabs(s) < 65504.f && (s == 0.f || std::fabs(s) >= 6.2e-5f);
    w->kind = xq_qweight::Kind::W4;
    w->layout = kLayoutW4;
    w->f32_dequant_uses_f16 = q.scale_dtype == XQ_DTYPE_F16 || (q.scale_dtype == XQ_DTYPE_F32 && scales_fit_f16);
    W4Layout& L = w->L;
    L.N = N;
    L.K = K;
    L.n_tiles = (N + 15) / 16;
    L.n_blocks = (L.n_tiles + 7) / 8;
    L.chunks = (K + 63) / 64;
    L.n_groups = G;
    L.gs_shift = gs_shift;
    DevTmp t_codes, t_scales, t_zp;
    const int8_t* d_codes = upload_tmp(t_codes, q.codes, static_cast<size_t>(N * K));
    const float* d_scales = upload_tmp(t_scales, scales.data(), scales.size());
    const int8_t* d_zp = zps.empty() ? nullptr : upload_tmp(t_zp, zps.data(), zps.size());
    try {
      XQ_CK(cudaMalloc(&w->qw, static_cast<size_t>(L.n_blocks * 8 * L.chunks * 32) * sizeof(uint4)));
      XQ_CK(cudaMalloc(&w->sz_bf16, static_cast<size_t>(G * L.n_blocks * 64) * sizeof(uint2)));
      XQ_CK(cudaMalloc(&w->sz_f16, static_cast<size_t>(G * L.n_blocks * 64) * sizeof(uint2)));
      if (!perm.empty()) {
        XQ_CK(cudaMalloc(&w->perm, perm.size() * sizeof(int32_t)));
        XQ_CK(cudaMemcpy(w->perm, perm.data(), perm.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
      }
      XQ_CK(w4_pack(L, d_codes, w->perm, w->qw, stream_));
      XQ_CK(w4_pack_scales(L, d_scales, d_zp, w->sz_bf16, w->sz_f16, stream_));
      prepare_w4_hopper(w.get(), d_codes, d_scales, d_zp);
      prepare_w4a8(w.get(), d_codes, d_scales, d_zp == nullptr);
      XQ_CK(cudaDeviceSynchronize());
    } catch (...) {
      release(w.release());
      throw;
    }
    return w.release();
  }

  if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN && q.act_scheme != XQ_ACT_STATIC_TENSOR)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: activation scheme %d unsupported", static_cast<int>(q.act_scheme)));
  if (q.bits == XQ_BITS_F8_E4M3) return prepare_fp8(q, scales);
  if (q.act_bits != 8) throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %u-bit activations unsupported (W8A8 only)", q.act_bits));
  if (q.bits < 2 || q.bits > 8 || !zps.empty() || q.g_idx)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %s takes symmetric 2-8 bit weights without act-order", kLayoutW8));
  if (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %s takes per-channel or per-tensor weight scales", kLayoutW8));
  if (K % 16 != 0 || N % 16 != 0)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %s needs K and N multiples of 16 (cuBLASLt INT8), got [%lld,%lld]", kLayoutW8, (long long)N, (long long)K));
  if (q.act_scheme == XQ_ACT_STATIC_TENSOR && !(q.input_scale > 0.f))
    throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: static activation scheme needs input_scale > 0");
  w->kind = xq_qweight::Kind::W8;
  w->layout = kLayoutW8;
  try {
    XQ_CK(cudaMalloc(&w->w8, static_cast<size_t>(N * K)));
    XQ_CK(cudaMemcpy(w->w8, q.codes, static_cast<size_t>(N * K), cudaMemcpyHostToDevice));
    XQ_CK(cudaMalloc(&w->sw, static_cast<size_t>(N) * 4));
    XQ_CK(cudaMemcpy(w->sw, scales.data(), static_cast<size_t>(N) * 4, cudaMemcpyHostToDevice));
  } catch (...) {
    release(w.release());
    throw;
  }
  return w.release();
}

// FP8 W8A8 dynamic (canonical bits/act_bits XQ_BITS_F8_E4M3, xq_tensor.h):
// the E4M3 bytes uploaded as they are, [N][K] ("TN" for cuBLASLt, like the
// INT8 layout), one f32 scale per row. Weight-only FP8 is not taken here
// (the weight-only branch above refuses it), so the engine dequantizes it on
// load and runs a BF16 GEMM.
xq_qweight* Provider::prepare_fp8(const xq_quant_tensor& q, const std::vector<float>& row_scales) {
  const int64_t N = q.rows, K = q.cols;
  if (cc_major_ * 10 + cc_minor_ < 89)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: FP8 GEMMs need compute capability 8.9+, this GPU is %d.%d", cc_major_, cc_minor_));
  if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN || q.act_bits != XQ_BITS_F8_E4M3)
    throw Error(XQ_ERR_UNSUPPORTED, "cuda: FP8 weights run with dynamic per-token FP8 activations only");
  if (q.zero_points || q.g_idx || (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR))
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %s takes symmetric per-channel or per-tensor FP8 weights", kLayoutFp8));
  if (K % 16 != 0 || N % 16 != 0)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: %s needs K and N multiples of 16 (cuBLASLt FP8), got [%lld,%lld]", kLayoutFp8, (long long)N, (long long)K));
  for (int64_t i = 0; i < N * K; ++i)
    if ((static_cast<uint8_t>(q.codes[i]) & 0x7F) == 0x7F)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: NaN FP8 code at element %lld", (long long)i));
  auto w = std::make_unique<xq_qweight>();
  w->N = N;
  w->K = K;
  w->act = q.act_scheme;
  w->kind = xq_qweight::Kind::W8;
  w->fp8 = true;
  w->layout = kLayoutFp8;
  try {
    XQ_CK(cudaMalloc(&w->w8, static_cast<size_t>(N * K)));
    XQ_CK(cudaMemcpy(w->w8, q.codes, static_cast<size_t>(N * K), cudaMemcpyHostToDevice));
    XQ_CK(cudaMalloc(&w->sw, static_cast<size_t>(N) * 4));
    XQ_CK(cudaMemcpy(w->sw, row_scales.data(), static_cast<size_t>(N) * 4, cudaMemcpyHostToDevice));
  } catch (...) {
    release(w.release());
    throw;
  }
  return w.release();
}

// FP8 W8A8 dynamic: x quantized per token to E4M3 (s_x = max|x| / 448, the
// same kernel QUANTIZE_ACT runs), then the FP8 MATMUL with per-token and
// per-channel scale vectors (src[3] = [s_x (M) | s_w (N)]):
// y = (q_x s_x)(q_w s_w) with fp32 accumulation, vLLM's FP8 W8A8 semantics.
void Provider::run_qmatmul_fp8(const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  const xq_device_tensor& x = op.src[0];
  DType T;
  to_dtype(x.dtype, &T);
  const int64_t M = leading(x), K = w.K, N = w.N;
  if (run_w8a8_gemv_fused(DType::F8E4M3, op, 0.f)) return;  // decode: quantized inside the few-row kernel
  void* xq = s_x_.get(static_cast<size_t>(M * K));
  float* scales = static_cast<float*>(s_scale_.get(static_cast<size_t>(M + N) * 4));
  XQ_CK(quantize_act(x.data, T, M, K, xq, DType::F8E4M3, scales, 0.f, stream_));
  if (run_w8a8_gemv(DType::F8E4M3, op, xq, scales, 1.f)) return;
  DType Y{};
  to_dtype(op.dst.dtype, &Y);
  if (run_w8a8_cutlass(ScaledMM{DType::F8E4M3, Y, M, N, K, xq, w.w8, op.dst.data, scales, 1.f, w.sw, 1.f},
                       op.src[2]))
    return;
  XQ_CK(cudaMemcpyAsync(scales + M, w.sw, static_cast<size_t>(N) * 4, cudaMemcpyDeviceToDevice, stream_));
  xq_op mm = xquant::sdk::make_op(XQ_OP_MATMUL);
  mm.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_F8_E4M3, {M, K}, xq);
  mm.src[1] = xquant::sdk::device_tensor(XQ_DTYPE_F8_E4M3, {N, K}, w.w8);
  mm.src[2] = op.src[2];
  mm.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {M + N}, scales);
  mm.dst = op.dst;
  mm.i[0] = 1;
  run_matmul(mm);
}

void Provider::release(xq_qweight* w) {
  if (!w) return;
  if (device_count_) {
    cudaDeviceSynchronize();
    for (void* p : {static_cast<void*>(w->qw), static_cast<void*>(w->sz_bf16), static_cast<void*>(w->sz_f16),
                    static_cast<void*>(w->perm), static_cast<void*>(w->w8), static_cast<void*>(w->sw), w->hq, w->hs, w->hz,
                    w->a8q, w->a8lut, static_cast<void*>(w->a8ch)})
      if (p) cudaFree(p);
  }
  delete w;
}

}  // namespace xqcuda
