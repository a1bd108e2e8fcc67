// manifest_check.hpp: everything an .xq file says, checked before any of it
// is trusted. check_file runs the FlatBuffers Verifier over the manifest
// (every table, vector and string inside the buffer) and then our own checks
// (header fields, every segment inside the data area and aligned, shape x
// dtype = byte size, names unique, layout names known, quantization fields in
// range, the cpu layout's own header and sizes). Every error is an
// sdk::Error(XQ_ERR_MALFORMED) naming the file and the field.
#pragma once

#include "container.hpp"

#include <xquant/xq_generated.h>

#include <string>
#include <vector>

namespace xquant::xqc {

struct SegmentRef {
  std::string layout;
  uint64_t offset = 0, size = 0;
};

struct TensorRecord {
  std::string name;
  xq_dtype dtype = XQ_DTYPE_INVALID;
  std::vector<int64_t> shape;
  bool quantized = false;
  xq_quant_tensor desc{};  // quantized: the description, buffers NULL
  bool has_g_idx = false;
  SegmentRef canonical;
  std::vector<SegmentRef> segments;  // every segment, canonical included
  const SegmentRef* find(const std::string& layout) const {
    for (const auto& s : segments)
      if (s.layout == layout) return &s;
    return nullptr;
  }
};

struct FileRecord {
  std::string name;
  uint64_t offset = 0, size = 0;
};

struct Contents {
  const xqfile::Manifest* manifest = nullptr;  // verified; points into the checked bytes
  uint32_t alignment = 0;
  uint64_t data_end = 0;  // where the manifest starts
  std::vector<TensorRecord> tensors;
  std::vector<FileRecord> files;
};

// `data`/`size`: the whole file (mapped); `path` names it in errors.
Contents check_file(const uint8_t* data, uint64_t size, const std::string& path);

}  // namespace xquant::xqc
