// prefill_attention.hpp: PAGED_ATTENTION's tensor-core path for prefill
// chunks (prefill_attention.cu). The op's rows are cut into tiles of
// kPrefillTileRows consecutive rows; a tile whose rows are one sequence at
// consecutive positions (at least kPrefillMinRows of them) is a "prefill
// tile" and runs through a FlashAttention-2 kernel on the BF16 pools; every
// other row stays with the decode kernel (paged_attention.cu), which skips
// the rows of prefill tiles.
#pragma once

#include <cstddef>
#include <cstdint>

#include "paged_attention.hpp"

namespace xqcuda {

constexpr int64_t kPrefillTileRows = 64;
constexpr int64_t kPrefillMinRows = 16;

// Whether the tensor-core path can run this launch at all: BF16 pools, head
// dim 64 or 128, a GQA group of at most 16, enough rows for one tile, and
// not switched off (XQUANT_PREFILL_ATTENTION=0 forces the decode kernel).
// `max_chunk_rows` is the op's hint (xq_op.i[0]: the most rows any one
// sequence has in the op; 0 = unknown).
bool prefill_attention_applies(const PagedAttentionArgs& a, int64_t max_chunk_rows);

// Bytes of device workspace the path needs (one flag per tile).
size_t prefill_attention_workspace(int64_t T);

// How the kernel's CTAs split the query heads: Group (the default) gives a
// CTA every query head of one KV head, so each K/V tile is read once per
// GQA group; PerHead gives a CTA one query head (the kernel before the
// grouping, kept to measure against). Default reads XQUANT_PREFILL_GQA_FUSE
// (0 = PerHead; anything else or unset = Group).
enum class PrefillCta { Default, Group, PerHead };

// Marks the prefill tiles (flags: int32 [ceil(T / kPrefillTileRows)]) and
// runs the tensor-core kernel over them. The decode kernel must then be told
// to skip those tiles (paged_attention's `skip_tiles`).
cudaError_t prefill_attention(const PagedAttentionArgs& a, int32_t* tile_flags, cudaStream_t stream,
                              PrefillCta cta = PrefillCta::Default);

}  // namespace xqcuda
