// op_timing.cpp: the event pairs of XQUANT_CUDA_OP_TIMES (op_timing.hpp).
#include "op_timing.hpp"

#include <xquant/sdk/op_name.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace xqcuda {

namespace {

int64_t rows_of(const xq_device_tensor& t) {
  if (t.ndim == 0) return 0;
  int64_t n = 1;
  for (uint32_t i = 0; i + 1 < t.ndim; ++i) n *= t.shape[i];
  return n;
}

// The op's type, and for Linears their N x K and whether M is 1 (decode)
// or more, so a decode step's GEMVs and a prefill's GEMMs stay apart.
std::string label_of(const xq_op& op) {
  std::string l = xquant::sdk::op_name(op.type);
  // Token rows: a [T, H, D] operand (ROPE, ATTENTION, ROPE_KV's q) counts T;
  // KV_WRITE's dst is the pool, so its rows are src[0]'s; ARGMAX's dst is [M].
  const xq_device_tensor& t = op.type == XQ_OP_KV_WRITE ? op.src[0] : op.dst;
  const int64_t m = t.ndim == 3 || t.ndim == 1 ? t.shape[0] : rows_of(t);
  if (op.type == XQ_OP_MATMUL || op.type == XQ_OP_QMATMUL) {
    const auto& y = op.dst;
    const auto& x = op.src[0];
    l += " " + std::to_string(y.ndim ? y.shape[y.ndim - 1] : 0) + "x" + std::to_string(x.ndim ? x.shape[x.ndim - 1] : 0);
  }
  l += m <= 1 ? " M=1" : m <= 8 ? " M<=8" : " M>8";
  return l;
}

}  // namespace

OpTimer::OpTimer() {
  const char* e = std::getenv("XQUANT_CUDA_OP_TIMES");
  on_ = e && std::strcmp(e, "1") == 0;
}

OpTimer::~OpTimer() {
  if (!on_) return;
  cudaDeviceSynchronize();
  collect();
  for (const auto& [label, t] : totals_)
    std::fprintf(stderr, "op-times: %s calls %llu total_us %.1f\n", label.c_str(), static_cast<unsigned long long>(t.calls),
                 t.us);
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t OpTimer::take() {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  cudaEventCreate(&e);
  return e;
}

void OpTimer::before(cudaStream_t s) {
  open_ = take();
  cudaEventRecord(open_, s);
}

void OpTimer::after(const xq_op& op, cudaStream_t s) {
  if (!open_) return;
  cudaEvent_t end = take();
  cudaEventRecord(end, s);
  pending_.push_back({open_, end, label_of(op)});
  open_ = nullptr;
}

void OpTimer::collect() {
  size_t done = 0;
  for (; done < pending_.size(); ++done) {
    const Pending& p = pending_[done];
    if (cudaEventQuery(p.end) != cudaSuccess) break;  // in stream order: the rest are not done either
    float ms = 0.f;
    cudaEventElapsedTime(&ms, p.start, p.end);
    Total& t = totals_[p.label];
    ++t.calls;
    t.us += ms * 1e3;
    free_.push_back(p.start);
    free_.push_back(p.end);
  }
  cudaGetLastError();  // a not-ready query leaves an error state behind
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
}

}  // namespace xqcuda
