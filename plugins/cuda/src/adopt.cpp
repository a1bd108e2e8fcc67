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

// Device memory for a part of a weight; thrown errors name it.
template <class T>
void alloc_part(T*& dst, uint64_t bytes, const char* part) {
  if (cudaMalloc(reinterpret_cast<void**>(&dst), bytes ? bytes : 16) != cudaSuccess) {
    cudaGetLastError();
    dst = nullptr;
    throw Error(XQ_ERR_OUT_OF_MEMORY, format("cuda: cudaMalloc of %llu bytes for the stored %s failed",
                                             static_cast<unsigned long long>(bytes), part));
  }
}

// rows x width bytes from src (pitch spitch) to dst (pitch dpitch): one stored part placed (one row:
// a plain copy, which has no pitch limit).
void place(void* dst, uint64_t dpitch, const void* src, uint64_t spitch, uint64_t width, uint64_t rows,
           const char* part) {
  const cudaError_t e = rows == 1 ? cudaMemcpy(dst, src, width, cudaMemcpyHostToDevice)
                                  : cudaMemcpy2D(dst, dpitch, src, spitch, width, rows, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) throw Error(XQ_ERR_DEVICE, format("cuda: placing the stored %s: %s", part, cudaGetErrorString(e)));
}

template <class T>
void upload_part(T*& dst, const void* src, uint64_t bytes, const char* part) {
  alloc_part(dst, bytes, part);
  place(dst, bytes, src, bytes, bytes, 1, part);
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
  return adopt_parts(layout, {{&desc, data, nbytes}});
}

xq_qweight* Provider::adopt_stacked(const char* layout, const xquant::sdk::StoredParts& parts) {
  return adopt_parts(layout, parts);
}

namespace {

void check_same_activations(const xquant::sdk::StoredParts& parts) {
  const xq_quant_tensor& a = *parts[0].desc;
  for (size_t i = 1; i < parts.size(); ++i) {
    const xq_quant_tensor& d = *parts[i].desc;
    if (d.act_scheme != a.act_scheme || d.act_bits != a.act_bits || d.input_scale != a.input_scale)
      throw Error(XQ_ERR_UNSUPPORTED, format("cuda: stacking part %zu: other activation quantization than part 0", i));
  }
}

}  // namespace

// One weight from the stored bytes of one tensor, or of several whose rows it stacks: each part's
// arrays placed where the weight has them (sdk/cuda_layout.hpp stack_plan; one part: as they are).
xq_qweight* Provider::adopt_parts(const char* layout, const xquant::sdk::StoredParts& parts) {
  require_device();
  std::vector<cl::View> views;
  for (size_t i = 0; i < parts.size(); ++i) {
    const char* want = packed_layout(*parts[i].desc);
    if (!want || std::strcmp(layout, want) != 0)
      throw Error(XQ_ERR_UNSUPPORTED, format("cuda: layout '%s' is not the one %s runs in (%s)", layout,
                                             parts.size() == 1 ? "this weight" : format("part %zu", i).c_str(),
                                             want ? want : "none"));
    views.push_back(cl::view(*parts[i].desc, parts[i].data, parts[i].nbytes));
  }
  cl::StackPlan plan;
  if (views.size() == 1) {  // alone: an act-order permutation is fine
    plan.g = views[0].g;
    plan.flags = views[0].flags;
    plan.row0 = {0};
  } else {
    check_same_activations(parts);
    plan = cl::stack_plan(views);  // what placement cannot stack: XQ_ERR_UNSUPPORTED
  }
  const cl::Geometry& g = plan.g;
  const xq_quant_tensor& d0 = *parts[0].desc;
  auto w = std::make_unique<xq_qweight>();
  w->N = g.N;
  w->K = g.K;
  w->act = d0.act_scheme;
  w->input_scale = d0.input_scale;
  w->adopted = true;
  w->adopted_layout = adopted_name(g.kind);
  try {
    if (g.kind == cl::Kind::W4) {
      w->kind = xq_qweight::Kind::W4;
      w->layout = kLayoutW4;
      w->f32_dequant_uses_f16 = (plan.flags & cl::kFlagF32DequantF16) != 0;
      W4Layout& L = w->L;
      L.N = g.N;
      L.K = g.K;
      L.n_tiles = g.n_tiles;
      L.n_blocks = g.n_blocks;
      L.chunks = g.chunks;
      L.n_groups = g.n_groups;
      L.gs_shift = g.gs_shift;
      alloc_part(w->qw, 16 * g.qw_words(), "W4 codes");
      alloc_part(w->sz_bf16, 8 * g.sz_words(), "bf16 scale words");
      alloc_part(w->sz_f16, 8 * g.sz_words(), "f16 scale words");
      for (size_t i = 0; i < views.size(); ++i) {  // n-block-major arrays: each part where its rows begin
        const cl::View& v = views[i];
        const int64_t r0 = plan.row0[i];
        const uint64_t qw = 16 * v.g.qw_words(), sz = 8 * v.g.sz_words();
        place(reinterpret_cast<uint8_t*>(w->qw) + cl::stacked_qw_offset(g, r0), qw, v.qw, qw, qw, 1, "W4 codes");
        place(reinterpret_cast<uint8_t*>(w->sz_bf16) + cl::stacked_sz_offset(g, r0), sz, v.sz_bf16, sz, sz, 1,
              "bf16 scale words");
        place(reinterpret_cast<uint8_t*>(w->sz_f16) + cl::stacked_sz_offset(g, r0), sz, v.sz_f16, sz, sz, 1,
              "f16 scale words");
      }
      if (views[0].perm) upload_part(w->perm, views[0].perm, 4 * static_cast<uint64_t>(g.K), "act-order permutation");
    } else {
      w->kind = xq_qweight::Kind::W8;
      w->fp8 = g.kind == cl::Kind::Fp8;
      w->layout = w->fp8 ? kLayoutFp8 : kLayoutW8;
      alloc_part(w->w8, static_cast<uint64_t>(g.N * g.K), "codes");
      alloc_part(w->sw, 4 * static_cast<uint64_t>(g.N), "row scales");
      for (size_t i = 0; i < views.size(); ++i) {  // row-major: each part at its first row
        const cl::View& v = views[i];
        const uint64_t r0 = static_cast<uint64_t>(plan.row0[i]), codes = static_cast<uint64_t>(v.g.N * v.g.K);
        place(reinterpret_cast<uint8_t*>(w->w8) + r0 * static_cast<uint64_t>(g.K), codes, v.codes, codes, codes, 1,
              "codes");
        place(w->sw + r0, 4 * static_cast<uint64_t>(v.g.N), v.row_scales, 4 * static_cast<uint64_t>(v.g.N),
              4 * static_cast<uint64_t>(v.g.N), 1, "row scales");
      }
    }
  } catch (...) {
    release(w.release());
    throw;
  }
  return w.release();
}

const char* Provider::extra_layout(const xq_qweight* w) const {
  // Only adopted weights: prepare packs the copy itself. w4_hopper_ok_ is false without the CUTLASS build.
  if (!w || !w->adopted || w->kind != xq_qweight::Kind::W4 || w->hq || !w4_hopper_ok_) return nullptr;
  const int64_t group_size = w->L.gs_shift >= 31 ? w->K : (int64_t{1} << w->L.gs_shift);
  return cw::unsupported_reason(w->N, w->K, group_size).empty() ? cw::kName : nullptr;
}

void Provider::attach(xq_qweight* w, const char* layout, const xquant::sdk::StoredParts& parts) {
  require_device();
  const char* want = extra_layout(w);
  if (!want || std::strcmp(layout, want) != 0)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("cuda: this weight takes no stored '%s' copy (%s)", layout, want ? want : "none here"));
  std::vector<cw::View> views;
  for (const xquant::sdk::StoredPart& p : parts) views.push_back(cw::view(*p.desc, p.data, p.nbytes));
  // One part may have act-order columns (its order must be the adopted weight's); stacked parts may not.
  cw::StackPlan plan;
  if (views.size() == 1) {
    plan.g = views[0].g;
    plan.row0 = {0};
  } else {
    plan = cw::stack_plan(views);
  }
  if (plan.g.N != w->N || plan.g.K != w->K)
    cl::malformed(cw::kName, "header", format("shape [%lld,%lld], the adopted weight [%lld,%lld]", (long long)plan.g.N,
                                              (long long)plan.g.K, (long long)w->N, (long long)w->K));
  // Both copies index columns the same way: sorted by group (the mma copy's permutation) or as stored.
  if (plan.g.sorted != (w->perm != nullptr))
    cl::malformed(cw::kName, "header.flags",
                  plan.g.sorted ? "columns in act-order order, but the adopted weight has no permutation"
                                : "columns as stored, but the adopted weight has an act-order permutation");
  const cw::Geometry& g = plan.g;
  try {
    alloc_part(w->hq, static_cast<uint64_t>(g.N * g.K / 2), "wgmma codes");
    alloc_part(w->hs, 2 * static_cast<uint64_t>(g.N * g.n_groups), "wgmma scales");
    alloc_part(w->hz, 2 * static_cast<uint64_t>(g.N * g.n_groups), "wgmma offsets");
    // Each part a 2-D placement (sdk/cuda_wgmma_layout.hpp, stack): a run of 8 N_p bytes of codes per
    // 16-column block at 8 row0 of the stacked run (pitch 8 N), scales and offsets rows of 2 N_p bytes
    // at 2 row0 (pitch 2 N).
    for (size_t i = 0; i < views.size(); ++i) {
      const cw::View& v = views[i];
      const uint64_t r0 = static_cast<uint64_t>(plan.row0[i]), n = static_cast<uint64_t>(v.g.N);
      const uint64_t N = static_cast<uint64_t>(g.N), groups = static_cast<uint64_t>(g.n_groups);
      place(static_cast<uint8_t*>(w->hq) + 8 * r0, 8 * N, v.codes, 8 * n, 8 * n, static_cast<uint64_t>(g.K / 16),
            "wgmma codes");
      place(static_cast<uint8_t*>(w->hs) + 2 * r0, 2 * N, v.scales, 2 * n, 2 * n, groups, "wgmma scales");
      place(static_cast<uint8_t*>(w->hz) + 2 * r0, 2 * N, v.offsets, 2 * n, 2 * n, groups, "wgmma offsets");
    }
  } catch (...) {  // the weight stays as adopted, without the copy
    for (void** p : {&w->hq, &w->hs, &w->hz}) {
      if (*p) cudaFree(*p);
      *p = nullptr;
    }
    throw;
  }
  W4HopperLayout H;
  H.N = g.N;
  H.K = g.K;
  H.group_size = g.group_size;
  H.n_groups = g.n_groups;
  w->HL = H;
}

}  // namespace xqcuda
