// safetensors_header.cpp: the fuzz target for the SDK's safetensors header
// reader (sdk/include/xquant/sdk/safetensors.hpp), as read_header() runs it
// on a file: the u64 length, its limits, then parse_header(). An accepted
// header is checked against the rules it claims to enforce, independently:
// tensors contiguous from 0 in file order, each holding exactly
// prod(shape) * bits / 8 bytes, the last ending at the end of the file.
#include "fuzz_targets.hpp"

#include <xquant/sdk/safetensors.hpp>

#include <stdexcept>
#include <string_view>

namespace xquant::fuzz {

namespace {

namespace st = sdk::safetensors;

// The element count times bits, or false when it does not fit in 128 bits.
bool bits_of(const st::TensorEntry& t, unsigned __int128* out) {
  unsigned __int128 n = t.bits;
  for (int64_t d : t.shape) {
    if (d != 0 && n > ~static_cast<unsigned __int128>(0) / static_cast<uint64_t>(d)) return false;
    n *= static_cast<uint64_t>(d);
  }
  *out = n;
  return true;
}

// Not an xquant::Error: an accepted header that breaks a rule is a defect.
void check_accepted(const st::Header& h, uint64_t file_size) {
  uint64_t expected = 0;
  for (const auto& t : h.tensors) {
    unsigned __int128 nbits = 0;
    if (t.begin != expected || !bits_of(t, &nbits) || nbits % 8 != 0 || nbits / 8 != t.end - t.begin)
      throw std::logic_error("accepted tensor '" + t.name + "' whose data_offsets do not hold its shape");
    expected = t.end;
  }
  if (h.data_offset + expected != file_size) throw std::logic_error("accepted a header that does not end the file");
}

}  // namespace

void safetensors_header(const uint8_t* data, size_t size) {
  const std::string file = "<fuzz>.safetensors";
  if (size < 8) return;
  const uint64_t n = st::read_u64_le(data);
  st::check_header_length(file, n, size);
  const std::string_view json(reinterpret_cast<const char*>(data) + 8, static_cast<size_t>(n));
  check_accepted(st::parse_header(file, json, size), size);
}

}  // namespace xquant::fuzz
