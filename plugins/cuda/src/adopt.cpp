// adopt.cpp: weights a container stores already packed in one of this
// provider's layouts (sdk/cuda_layout.hpp: the `xq` writer stores them with
// the host packing that equals prepare's device packing byte for byte).
// packed_layout names the layout prepare would use for a description;
// adopt checks the stored bytes against it and uploads every part as it is
// (one cudaMemcpy each): nothing is unpacked or reshuffled. extra_layout and
// attach do the same for the second copy a W4A16 weight has on Hopper, the
// one the wgmma GEMM reads (sdk/cuda_wgmma_layout.hpp), which prepare packs
// on the device (provider_w4_hopper.cpp).
#include "provider.hpp"

#include <xquant/sdk/cuda_layout.hpp>
#include <xquant/sdk/cuda_wgmma_layout.hpp>

#include <cuda_runtime.h>

#include <cstring>
#include <memory>

namespace xqcuda {

namespace cl = xquant::sdk::cuda_layout;
namespace cw = xquant::sdk::cuda_wgmma_layout;
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

const char* Provider::extra_layout(const xq_qweight* w, const xq_quant_tensor&) const {
  // Only adopted weights: prepare packs the copy itself. w4_hopper_ok_ is false without the CUTLASS build.
  if (!w || !w->adopted || w->kind != xq_qweight::Kind::W4 || w->hq || !w4_hopper_ok_) return nullptr;
  const int64_t group_size = w->L.gs_shift >= 31 ? w->K : (int64_t{1} << w->L.gs_shift);
  return cw::unsupported_reason(w->N, w->K, group_size).empty() ? cw::kName : nullptr;
}

void Provider::attach(xq_qweight* w, const xq_quant_tensor& desc, const char* layout, const void* data,
                      uint64_t nbytes) {
  require_device();
  const char* want = extra_layout(w, desc);
  if (!want || std::strcmp(layout, want) != 0)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("cuda: this weight takes no stored '%s' copy (%s)", layout, want ? want : "none here"));
  const cw::View v = cw::view(desc, data, nbytes);
  if (v.g.N != w->N || v.g.K != w->K)
    cl::malformed(cw::kName, "header", format("shape [%lld,%lld], the adopted weight [%lld,%lld]", (long long)v.g.N,
                                              (long long)v.g.K, (long long)w->N, (long long)w->K));
  // Both copies index columns the same way: sorted by group (the mma copy's permutation) or as stored.
  if (v.g.sorted != (w->perm != nullptr))
    cl::malformed(cw::kName, "header.flags",
                  v.g.sorted ? "columns in act-order order, but the adopted weight has no permutation"
                             : "columns as stored, but the adopted weight has an act-order permutation");
  W4HopperLayout H;
  H.N = v.g.N;
  H.K = v.g.K;
  H.group_size = v.g.group_size;
  H.n_groups = v.g.n_groups;
  const uint64_t scale_bytes = 2 * static_cast<uint64_t>(H.N * H.n_groups);
  try {
    upload_part(w->hq, v.codes, static_cast<uint64_t>(H.N * H.K / 2), "wgmma codes");
    upload_part(w->hs, v.scales, scale_bytes, "wgmma scales");
    upload_part(w->hz, v.offsets, scale_bytes, "wgmma offsets");
  } catch (...) {  // the weight stays as adopted, without the copy
    for (void** p : {&w->hq, &w->hs, &w->hz}) {
      if (*p) cudaFree(*p);
      *p = nullptr;
    }
    throw;
  }
  w->HL = H;
}

}  // namespace xqcuda
