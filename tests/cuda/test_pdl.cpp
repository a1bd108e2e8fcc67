// test_pdl.cpp: Programmatic Dependent Launch (plugins/cuda/src/pdl.cuh's
// launch_pdl) on the decode chain. A chain shaped like a decode layer's
// start, each kernel reading what the one before wrote:
//   ADD_RMS_NORM (row_norm_vec: x += r, h = norm(x) in BF16)
//   -> GEMV 1 (bf16_gemv: g = h W1^T, BF16)
//   -> ADD_RMS_NORM (x += g, h = norm(x))
//   -> GEMV 2 (y = h W2^T, F32)
// twice over, run with plain launches (pdl_override(0)), with PDL launches,
// and with PDL launches captured into a CUDA graph and replayed on fresh
// random inputs. The same kernels in the same order give bit-identical
// outputs, so every PDL result must equal the plain one exactly; a kernel
// reading its input before griddepcontrol.wait would read the poison (NaN)
// or the previous round's values. On a device with PDL the graph must hold
// programmatic edges (the launches were captured as PDL, not as plain ones).
#include "test_host.hpp"

#include <cuda_runtime.h>

#include <cstring>

#include "bf16_gemv.hpp"
#include "row_norms.hpp"

using namespace xqtest;

namespace xqcuda {
bool pdl_enabled();
void pdl_override(int on);
}  // namespace xqcuda

namespace {

#define CK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr << ": " << cudaGetErrorString(cudaGetLastError())

struct Chain {
  int64_t M, D, N2;
  DevBuf x0, x, r, gamma, h, g, w1, w2, y;
  Chain(int64_t m, int64_t d, int64_t n2)
      : M(m), D(d), N2(n2), x0(m * d * 4), x(m * d * 4), r(m * d * 2), gamma(d * 4), h(m * d * 2), g(m * d * 2),
        w1(d * d * 2), w2(n2 * d * 2), y(m * n2 * 4) {}

  void fresh_inputs() {
    std::vector<float> xf(static_cast<size_t>(M * D)), rf(xf.size()), gf(static_cast<size_t>(D));
    for (auto& v : xf) v = uniform(-1.f, 1.f);
    for (auto& v : rf) v = uniform(-1.f, 1.f);
    for (auto& v : gf) v = uniform(0.5f, 1.5f);
    x0.put(xf);
    r.put(to_half_bits(rf, XQ_DTYPE_BF16, nullptr));
    gamma.put(gf);
  }
  void fresh_weights() {
    for (auto* w : {&w1, &w2}) {
      std::vector<float> wf(w->n / 2);
      for (auto& v : wf) v = uniform(-0.05f, 0.05f);
      w->put(to_half_bits(wf, XQ_DTYPE_BF16, nullptr));
    }
  }
  // Poison, reset x, then the chain twice, all on stream s (capturable).
  cudaError_t enqueue(cudaStream_t s) {
    using xqcuda::DType;
    for (DevBuf* b : {&h, &g, &y})
      if (cudaError_t e = cudaMemsetAsync(b->p, 0xFF, b->n, s); e != cudaSuccess) return e;
    if (cudaError_t e = cudaMemcpyAsync(x.p, x0.p, x.n, cudaMemcpyDeviceToDevice, s); e != cudaSuccess) return e;
    float* xp = static_cast<float*>(x.p);
    const float* gm = static_cast<const float*>(gamma.p);
    for (int round = 0; round < 2; ++round) {
      cudaError_t e = xqcuda::row_norm_vec(xp, round ? g.p : r.p, DType::BF16, gm, M, D, 1e-5f, h.p, DType::BF16, s);
      if (e == cudaSuccess) e = xqcuda::bf16_gemv(h.p, w1.p, nullptr, DType::BF16, M, D, D, g.p, DType::BF16, s);
      if (e == cudaSuccess) e = xqcuda::row_norm_vec(xp, g.p, DType::BF16, gm, M, D, 1e-5f, h.p, DType::BF16, s);
      if (e == cudaSuccess) e = xqcuda::bf16_gemv(h.p, w2.p, nullptr, DType::BF16, M, N2, D, y.p, DType::F32, s);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  std::vector<uint32_t> output(cudaStream_t s) {
    std::vector<uint32_t> out(static_cast<size_t>(M * N2));
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), y.p, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

// Edges of the graph whose type is programmatic; *all gets the edge count.
// (One query with room for every edge: a count-only query can fail as
// "lossy" once edges carry data.)
size_t programmatic_edges(cudaGraph_t graph, size_t* all) {
  size_t n = 256;
  std::vector<cudaGraphNode_t> from(n), to(n);
  std::vector<cudaGraphEdgeData> data(n);
#if CUDART_VERSION >= 13000
  const cudaError_t e = cudaGraphGetEdges(graph, from.data(), to.data(), data.data(), &n);
#else
  const cudaError_t e = cudaGraphGetEdges_v2(graph, from.data(), to.data(), data.data(), &n);
#endif
  *all = 0;
  if (e != cudaSuccess) {
    std::printf("cudaGraphGetEdges: %s\n", cudaGetErrorString(e));
    cudaGetLastError();
    return 0;
  }
  *all = n;
  size_t programmatic = 0;
  for (size_t i = 0; i < n; ++i) programmatic += data[i].type == cudaGraphDependencyTypeProgrammatic ? 1 : 0;
  return programmatic;
}

struct PdlReset {
  ~PdlReset() { xqcuda::pdl_override(-1); }
};

}  // namespace

TEST(CudaPdl, GemvChainEqualsPlainLaunchesEagerAndInAGraph) {
  XQ_REQUIRE_GPU();
  PdlReset reset;
  xqcuda::pdl_override(1);
  const bool has_pdl = xqcuda::pdl_enabled();  // false below sm_90: the PDL runs are plain ones there
  std::printf("PDL launches on this device: %s\n", has_pdl ? "yes" : "no (compute capability < 9.0)");
  cudaStream_t s = nullptr;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (const int64_t M : {1, 4}) {
    Chain c(M, 4096, 6144);
    ASSERT_TRUE(c.x0.p && c.w1.p && c.w2.p && c.y.p) << "device allocation failed";
    c.fresh_weights();
    const std::string what = "M=" + std::to_string(M);
    auto plain = [&] {
      xqcuda::pdl_override(0);
      EXPECT_EQ(c.enqueue(s), cudaSuccess) << what;
      return c.output(s);
    };
    // Eager: plain, then PDL.
    c.fresh_inputs();
    const auto ref = plain();
    std::vector<float> as_float(ref.size());
    std::memcpy(as_float.data(), ref.data(), ref.size() * 4);
    ASSERT_EQ(count_nan(as_float), 0u) << what << ": the plain chain left outputs unwritten";
    xqcuda::pdl_override(1);
    ASSERT_EQ(c.enqueue(s), cudaSuccess) << what;
    EXPECT_TRUE(c.output(s) == ref) << what << ": eager PDL launches differ from plain ones";

    // Captured with PDL launches, replayed on fresh inputs, each against plain launches on the same inputs.
    xqcuda::pdl_override(1);
    cudaGraph_t graph = nullptr;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    const cudaError_t queued = c.enqueue(s);
    CK(cudaStreamEndCapture(s, &graph));
    ASSERT_EQ(queued, cudaSuccess) << what;
    size_t all = 0;
    const size_t edges = programmatic_edges(graph, &all);
    std::printf("%s: %zu programmatic edges of %zu in the captured chain\n", what.c_str(), edges, all);
    if (has_pdl) EXPECT_GE(edges, 7u) << what << ": PDL launches were not captured as programmatic edges";
    else EXPECT_EQ(edges, 0u) << what;
    cudaGraphExec_t exec = nullptr;
    CK(cudaGraphInstantiate(&exec, graph, 0));
    for (int rep = 0; rep < 4; ++rep) {
      c.fresh_inputs();
      const auto want = plain();
      CK(cudaGraphLaunch(exec, s));
      EXPECT_TRUE(c.output(s) == want) << what << ": graph replay " << rep << " differs from plain launches";
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  cudaStreamDestroy(s);
}
