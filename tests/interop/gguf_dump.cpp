// gguf_dump.cpp: every tensor of a GGUF file dequantized to F32 by xquant's
// own block decoders (plugins/gguf/gguf_types.cpp, the ones the loader
// uses), in GGUF names and GGUF row order, written as one safetensors file.
// gguf_interop.py compares it with what the `gguf` package decodes.
//
//   xquant_gguf_dump IN.gguf OUT.safetensors
#include "gguf_file.hpp"
#include "gguf_types.hpp"

#include <xquant/sdk/safetensors.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s IN.gguf OUT.safetensors\n", argv[0]);
    return 2;
  }
  try {
    xquant::gguf::File f(argv[1]);
    xquant::sdk::safetensors::Writer out(argv[2]);
    for (const auto& t : f.tensors()) {
      std::vector<float> v(static_cast<size_t>(t.numel()));
      const uint64_t row_bytes = t.row_bytes();
      for (int64_t r = 0; r < t.rows(); ++r)
        if (!xquant::gguf::dequantize_row(t.type, f.tensor_data(t) + r * row_bytes, v.data() + r * t.ne[0], t.ne[0]))
          throw xquant::sdk::Error(XQ_ERR_UNSUPPORTED, t.name + ": type " + std::to_string(t.type) + " not decodable");
      std::vector<int64_t> shape;
      for (int d = static_cast<int>(t.n_dims) - 1; d >= 0; --d) shape.push_back(t.ne[d]);
      out.add(t.name, "F32", shape, v.data(), v.size() * sizeof(float));
    }
    out.finish();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xquant_gguf_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
