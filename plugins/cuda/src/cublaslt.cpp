// cublaslt.cpp: see cublaslt.hpp. Plans (descriptors, layouts and the top
// heuristic algorithm) are cached per shape so a steady-state call costs one
// attribute update and one cublasLtMatmul.
#include "cublaslt.hpp"

#include <cublasLt.h>
#include <dlfcn.h>

namespace xqcuda {

struct CublasLt::Api {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
};

struct CublasLt::Plan {
  const Api* api = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (!api) return;
    if (desc) api->desc_destroy(desc);
    if (a) api->layout_destroy(a);
    if (b) api->layout_destroy(b);
    if (d) api->layout_destroy(d);
  }
};

CublasLt::CublasLt() : api_(std::make_unique<Api>()) {}

CublasLt::~CublasLt() {
  plans_.clear();
  if (handle_ && api_->destroy) api_->destroy(static_cast<cublasLtHandle_t>(handle_));
  // The library stays loaded: unloading CUDA libraries at exit is fragile.
}

bool CublasLt::load(std::string* why) {
  if (handle_) return true;
  if (!lib_) {
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) {
      lib_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib_) break;
    }
    if (!lib_) {
      if (why) *why = "cuBLASLt not found (libcublasLt.so.13/.12): dense and W8A8 GEMMs are unavailable";
      return false;
    }
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib_, name));
    return fn != nullptr;
  };
  Api& a = *api_;
  if (!sym(a.create, "cublasLtCreate") || !sym(a.destroy, "cublasLtDestroy") ||
      !sym(a.desc_create, "cublasLtMatmulDescCreate") || !sym(a.desc_destroy, "cublasLtMatmulDescDestroy") ||
      !sym(a.desc_set, "cublasLtMatmulDescSetAttribute") || !sym(a.layout_create, "cublasLtMatrixLayoutCreate") ||
      !sym(a.layout_destroy, "cublasLtMatrixLayoutDestroy") ||
      !sym(a.pref_create, "cublasLtMatmulPreferenceCreate") ||
      !sym(a.pref_destroy, "cublasLtMatmulPreferenceDestroy") ||
      !sym(a.pref_set, "cublasLtMatmulPreferenceSetAttribute") ||
      !sym(a.heuristic, "cublasLtMatmulAlgoGetHeuristic") || !sym(a.matmul, "cublasLtMatmul")) {
    if (why) *why = "cuBLASLt is missing a symbol";
    return false;
  }
  cublasLtHandle_t h = nullptr;
  if (a.create(&h) != CUBLAS_STATUS_SUCCESS) {
    if (why) *why = "cublasLtCreate failed";
    return false;
  }
  handle_ = h;
  return true;
}

static cudaDataType_t to_cuda(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::I8: return CUDA_R_8I;
    case DType::I32: return CUDA_R_32I;
    case DType::F8E4M3: return CUDA_R_8F_E4M3;
  }
  return CUDA_R_32F;
}

std::shared_ptr<CublasLt::Plan> CublasLt::plan_for(const LtGemmShape& s, size_t workspace_bytes, std::string* err,
                                                   int* code) {
  auto it = plans_.find(s);
  if (it != plans_.end()) return it->second;
  const Api& a = *api_;
  auto p = std::make_shared<Plan>();
  p->api = api_.get();
  cudaDataType_t ab, scale_t;
  cublasComputeType_t compute;
  switch (s.kind) {
    case GemmKind::BF16: ab = CUDA_R_16BF; compute = CUBLAS_COMPUTE_32F; scale_t = CUDA_R_32F; break;
    case GemmKind::F16: ab = CUDA_R_16F; compute = CUBLAS_COMPUTE_32F; scale_t = CUDA_R_32F; break;
    // Plain FP32 (no TF32): the engine's F32 path must match the CPU provider.
    case GemmKind::F32: ab = CUDA_R_32F; compute = CUBLAS_COMPUTE_32F; scale_t = CUDA_R_32F; break;
    case GemmKind::I8: ab = CUDA_R_8I; compute = CUBLAS_COMPUTE_32I; scale_t = CUDA_R_32I; break;
    default: ab = CUDA_R_8F_E4M3; compute = CUBLAS_COMPUTE_32F; scale_t = CUDA_R_32F; break;
  }
  const cudaDataType_t dt = to_cuda(s.d_type);
  auto fail = [&](const char* what) -> std::shared_ptr<Plan> {
    *code = 2;
    if (err) *err = std::string("cuBLASLt: ") + what + " failed";
    return nullptr;
  };
  if (a.desc_create(&p->desc, compute, scale_t) != CUBLAS_STATUS_SUCCESS) return fail("MatmulDescCreate");
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  if (s.bias) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
    int32_t bt = static_cast<int32_t>(dt);
    a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt));
  }
  if (s.outer_vec) {
    int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    if (a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)) != CUBLAS_STATUS_SUCCESS ||
        a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)) != CUBLAS_STATUS_SUCCESS) {
      *code = 1;
      if (err) *err = "cuBLASLt: outer-vector scale mode not available";
      return nullptr;
    }
  }
  // Column-major view: A = W as K x N (ld K, transposed), B = x as K x M, D as N x M.
  if (a.layout_create(&p->a, ab, s.K, s.N, s.K) != CUBLAS_STATUS_SUCCESS) return fail("MatrixLayoutCreate(A)");
  if (a.layout_create(&p->b, ab, s.K, s.M, s.K) != CUBLAS_STATUS_SUCCESS) return fail("MatrixLayoutCreate(B)");
  if (a.layout_create(&p->d, dt, s.N, s.M, s.N) != CUBLAS_STATUS_SUCCESS) return fail("MatrixLayoutCreate(D)");
  cublasLtMatmulPreference_t pref = nullptr;
  if (a.pref_create(&pref) != CUBLAS_STATUS_SUCCESS) return fail("MatmulPreferenceCreate");
  uint64_t ws = workspace_bytes;
  a.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t res{};
  int n = 0;
  cublasStatus_t st = a.heuristic(static_cast<cublasLtHandle_t>(handle_), p->desc, p->a, p->b, p->d, p->d, pref, 1,
                                  &res, &n);
  a.pref_destroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || n < 1) {
    *code = 1;
    if (err)
      *err = "cuBLASLt has no algorithm for this GEMM (M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) +
             " K=" + std::to_string(s.K) + ", status " + std::to_string(static_cast<int>(st)) + ")";
    return nullptr;
  }
  p->algo = res.algo;
  plans_[s] = p;
  return p;
}

int CublasLt::gemm(const LtGemmShape& s, const void* W, const void* x, void* D, float alpha, const void* bias,
                   const float* w_scale, const float* x_scale, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream, std::string* err) {
  if (!handle_) {
    if (err) *err = "cuBLASLt is not loaded";
    return 1;
  }
  int code = 0;
  auto p = plan_for(s, workspace_bytes, err, &code);
  if (!p) return code;
  const Api& a = *api_;
  if (s.bias) a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
  if (s.outer_vec) {
    a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof(w_scale));
    a.desc_set(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof(x_scale));
  }
  const int32_t ialpha = 1, ibeta = 0;
  const float fbeta = 0.f;
  const void* pa = s.kind == GemmKind::I8 ? static_cast<const void*>(&ialpha) : static_cast<const void*>(&alpha);
  const void* pb = s.kind == GemmKind::I8 ? static_cast<const void*>(&ibeta) : static_cast<const void*>(&fbeta);
  cublasStatus_t st = a.matmul(static_cast<cublasLtHandle_t>(handle_), p->desc, pa, W, p->a, x, p->b, pb, D, p->d, D,
                               p->d, &p->algo, workspace, workspace_bytes, stream);
  if (st != CUBLAS_STATUS_SUCCESS) {
    if (err) *err = "cublasLtMatmul failed with status " + std::to_string(static_cast<int>(st));
    return 2;
  }
  return 0;
}

}  // namespace xqcuda
