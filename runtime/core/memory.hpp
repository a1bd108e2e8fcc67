// memory.hpp: the host allocator (64-byte aligned) and the runtime's use of
// the SDK's owner of canonical quantized tensors (sdk/tensor.hpp).
#pragma once

#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_tensor.h>

#include <cstddef>
#include <cstdint>

namespace xquant {

void* host_alloc(size_t nbytes);  // nullptr only on exhaustion
void host_free(void* p);

using sdk::QuantTensor;

// Takes over `t`, whose buffers came from host_alloc (a plugin's output:
// the host API's alloc is host_alloc).
QuantTensor adopt_quant_tensor(const xq_quant_tensor& t);

}  // namespace xquant
