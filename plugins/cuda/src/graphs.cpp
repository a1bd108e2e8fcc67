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
  return new xq_graph{exec};
}

void Provider::graph_launch(xq_graph* g) {
  require_device();
  refuse_while_recording("graph_launch");
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
