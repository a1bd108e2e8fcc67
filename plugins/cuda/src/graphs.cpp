// graphs.cpp: recorded launches for the `cuda` provider (xq_kernel_vtable's
// graph_begin/graph_end/graph_launch/graph_release). Between begin and end,
// the provider's stream is in CUDA stream capture, so every kernel and
// cuBLASLt call run_op enqueues is recorded instead of run; end instantiates
// the recording, and a launch replays all of it with one cudaGraphLaunch
// (the CUDA Programming Guide's "CUDA Graphs" section; PyTorch's
// torch.cuda.CUDAGraph, aten/src/ATen/cuda/CUDAGraph.cpp, captures the same
// way). The capture is in relaxed mode (cudaStreamCaptureModeRelaxed) so a
// workspace that has to grow while recording may still cudaMalloc; the old
// buffer is then parked (GraphHolds) rather than freed, as it is whenever a
// graph is alive, because recorded kernels keep their addresses.
#include "provider.hpp"

#include <cuda_runtime.h>

struct xq_graph {
  cudaGraphExec_t exec = nullptr;
  // Recorded with kernels planned per step (FlashInfer's decode, planned for
  // this shape; rows = 0: none): each launch needs the current step's plan
  // of that shape.
  xq_paged_plan planned_shape{};
};

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

void Provider::refuse_while_recording(const char* what) const {
  if (graphs_.recording)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: %s is not allowed while recording a graph", what));
}

void Provider::graph_begin() {
  require_device();
  std::lock_guard<std::recursive_mutex> lock(mu_);
  refuse_while_recording("graph_begin");
  const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(XQ_ERR_DEVICE, format("cuda: cudaStreamBeginCapture failed: %s", cudaGetErrorString(e)));
  }
  graphs_.recording = true;
  graphs_.planned_shape = {};
}

xq_graph* Provider::graph_end() {
  require_device();
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (!graphs_.recording) throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: graph_end without graph_begin");
  graphs_.recording = false;
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream_, &graph);
  if (e != cudaSuccess || !graph) {
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    throw Error(XQ_ERR_DEVICE, format("cuda: recording the graph failed (cudaStreamEndCapture: %s); an op "
                                      "synchronised or used another stream while recording",
                                      cudaGetErrorString(e)));
  }
  cudaGraphExec_t exec = nullptr;
  e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(XQ_ERR_DEVICE, format("cuda: cudaGraphInstantiate failed: %s", cudaGetErrorString(e)));
  }
  ++graphs_.live;
  return new xq_graph{exec, graphs_.planned_shape};
}

namespace {

bool same_plan_shape(const xq_paged_plan& a, const xq_paged_plan& b) {
  return a.rows == b.rows && a.table_ld == b.table_ld && a.block_size == b.block_size && a.heads == b.heads &&
         a.kv_heads == b.kv_heads && a.head_dim == b.head_dim && a.kv_dtype == b.kv_dtype;
}

}  // namespace

void Provider::graph_launch(xq_graph* g) {
  require_device();
  std::lock_guard<std::recursive_mutex> lock(mu_);
  refuse_while_recording("graph_launch");
  // A recording that reads a per-step plan would otherwise read a stale one
  // (xq_kernel.h, plan_paged_step: the caller plans each step it launches).
  const xq_paged_plan* plan = flashinfer_plan();
  if (g->planned_shape.rows > 0 && !(plan && same_plan_shape(*plan, g->planned_shape)))
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("cuda: this recording runs attention planned for %lld decode rows (table width %lld); "
                       "plan_paged_step must describe a step of that shape before each launch",
                       static_cast<long long>(g->planned_shape.rows), static_cast<long long>(g->planned_shape.table_ld)));
  const cudaError_t e = cudaGraphLaunch(g->exec, stream_);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(XQ_ERR_DEVICE, format("cuda: cudaGraphLaunch failed: %s", cudaGetErrorString(e)));
  }
}

// cudaGraphExecDestroy lets a launch in flight finish; parked workspaces
// are freed once no graph can reach them (after the device is idle).
void Provider::graph_release(xq_graph* g) {
  if (!g) return;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (device_count_) cudaGraphExecDestroy(g->exec);
  delete g;
  if (--graphs_.live == 0 && !graphs_.recording && !graphs_.retired.empty()) {
    cudaDeviceSynchronize();
    for (void* p : graphs_.retired) cudaFree(p);
    graphs_.retired.clear();
  }
}

}  // namespace xqcuda
