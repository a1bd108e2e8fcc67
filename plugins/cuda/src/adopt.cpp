// adopt.cpp: weights a container stores already packed in one of this
// provider's layouts (sdk/cuda_layout.hpp: the `xq` writer stores them with
// the host packing that equals prepare's device packing byte for byte).
// packed_layout names the layout prepare would use for a description;
// adopt checks the stored bytes against it and uploads every part as it is
// (one cudaMemcpy each): nothing is unpacked or reshuffled.
#include "provider.hpp"

#include <xquant/sdk/cuda_layout.hpp>

#include <cuda_runtime.h>

#include <cstring>
#include <memory>

namespace xqcuda {

namespace cl = xquant::sdk::cuda_layout;
using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

// The name qweight_layout reports for an adopted weight.
const char* adopted_name(cl::Kind k) {
  switch (k) {
    case cl::Kind::W4: return "cuda-w4a16-mma (stored, not repacked)";
    case cl::Kind::Int8: return "cuda-w8a8-int8-nk (stored, not repacked)";
    case cl::Kind::Fp8: return "cuda-w8a8-fp8-nk (stored, not repacked)";
  }
  return "";
}

template <class T>
void upload_part(T*& dst, const void* src, uint64_t bytes, const char* part) {
  if (cudaMalloc(reinterpret_cast<void**>(&dst), bytes ? bytes : 16) != cudaSuccess) {
    cudaGetLastError();
    dst = nullptr;
    throw Error(XQ_ERR_OUT_OF_MEMORY, format("cuda: cudaMalloc of %llu bytes for the stored %s failed",
                                             static_cast<unsigned long long>(bytes), part));
  }
  const cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) throw Error(XQ_ERR_DEVICE, format("cuda: uploading the stored %s: %s", part, cudaGetErrorString(e)));
}

}  // namespace

const char* Provider::packed_layout(const xq_quant_tensor& desc) const {
  if (device_count_ == 0) return nullptr;
  // The description's buffers are NULL: act-order only changes the bytes
  // (the stored header says whether a permutation is there), not the name.
  const cl::Geometry g = cl::geometry(desc, false);
  if (g.kind == cl::Kind::Fp8 && cc_major_ * 10 + cc_minor_ < 89) return nullptr;
  return cl::name_of(g.kind);
}

xq_qweight* Provider::adopt(const xq_quant_tensor& desc, const char* layout, const void* data, uint64_t nbytes) {
  require_device();
  const char* want = packed_layout(desc);
  if (!want || std::strcmp(layout, want) != 0)
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: layout '%s' is not the one this weight runs in (%s)", layout,
                                           want ? want : "none"));
  const cl::View v = cl::view(desc, data, nbytes);
  const cl::Geometry& g = v.g;
  auto w = std::make_unique<xq_qweight>();
  w->N = g.N;
  w->K = g.K;
  w->act = desc.act_scheme;
  w->input_scale = desc.input_scale;
  w->adopted = true;
  w->adopted_layout = adopted_name(g.kind);
  try {
    if (g.kind == cl::Kind::W4) {
      w->kind = xq_qweight::Kind::W4;
      w->layout = kLayoutW4;
      w->f32_dequant_uses_f16 = (v.flags & cl::kFlagF32DequantF16) != 0;
      W4Layout& L = w->L;
      L.N = g.N;
      L.K = g.K;
      L.n_tiles = g.n_tiles;
      L.n_blocks = g.n_blocks;
      L.chunks = g.chunks;
      L.n_groups = g.n_groups;
      L.gs_shift = g.gs_shift;
      upload_part(w->qw, v.qw, 16 * g.qw_words(), "W4 codes");
      upload_part(w->sz_bf16, v.sz_bf16, 8 * g.sz_words(), "bf16 scale words");
      upload_part(w->sz_f16, v.sz_f16, 8 * g.sz_words(), "f16 scale words");
      if (v.perm) upload_part(w->perm, v.perm, 4 * static_cast<uint64_t>(g.K), "act-order permutation");
    } else {
      w->kind = xq_qweight::Kind::W8;
      w->fp8 = g.kind == cl::Kind::Fp8;
      w->layout = w->fp8 ? kLayoutFp8 : kLayoutW8;
      upload_part(w->w8, v.codes, static_cast<uint64_t>(g.N * g.K), "codes");
      upload_part(w->sw, v.row_scales, 4 * static_cast<uint64_t>(g.N), "row scales");
    }
  } catch (...) {
    release(w.release());
    throw;
  }
  return w.release();
}

}  // namespace xqcuda
