// imatrix_file.hpp: llama.cpp's importance-matrix files, read and written.
//
// Two formats, as llama.cpp's common/imatrix-loader.cpp reads them:
//  - GGUF (llama-imatrix's default since 2025): general.type = "imatrix",
//    imatrix.datasets / chunk_count / chunk_size, and per weight tensor
//    "<name>.in_sum2" (F32 [n_cols, n_mat]: sum of x_c^2 over the tokens)
//    and "<name>.counts" (F32 [1, n_mat]: the tokens), n_mat > 1 for MoE
//    expert stacks;
//  - legacy .dat: int32 entry count, then per entry int32 name length, the
//    name, int32 ncall, int32 nval, nval floats (already means times
//    ncall), optionally int32 chunk count, int32 length and a dataset name.
// Names are GGUF tensor names ("blk.0.attn_q.weight"). The importance the
// quantizers take is the mean of x_c^2 (llama-quantize's load_imatrix in
// tools/quantize/quantize.cpp: sums / counts, or sums / ncall for legacy).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xquant::gguf {

struct ImatrixEntry {
  std::vector<float> sums;    // n_mat * n_cols, matrix-major
  std::vector<float> counts;  // n_mat (legacy: one value, ncall)
};

struct ImportanceMatrix {
  std::map<std::string, ImatrixEntry> entries;
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0, chunk_size = 0;
  bool legacy = false;

  // llama-quantize's importance for `name`: sums / count per matrix (1 where
  // a matrix saw no token); empty when the file has no entry for it.
  std::vector<float> mean_squares(const std::string& name) const;
};

// Reads either format (GGUF by its magic). Throws sdk::Error naming the
// file, the entry and the field for malformed or truncated files.
ImportanceMatrix read_imatrix(const std::string& path);

// Writes the GGUF format atomically (temporary name, then rename).
void write_imatrix(const std::string& path, const ImportanceMatrix& m);

}  // namespace xquant::gguf
