// test_release_source.cpp: once the engine holds its own copy of a tensor
// (an F32 vector, a packed weight), the checkpoint's mapped pages of it are
// given back (engine/release_source.cpp): exactly the whole pages inside
// every copied tensor, and the model still computes the same logits.
#include "core/runtime.hpp"
#include "engine/model.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kHf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K-hf";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Bytes of the whole pages inside [data, data + n).
uint64_t whole_pages(const void* data, uint64_t n) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t a = reinterpret_cast<uint64_t>(data), begin = (a + page - 1) / page * page, end = (a + n) / page * page;
  return end > begin ? end - begin : 0;
}

}  // namespace

TEST(ReleaseSource, CopiedTensorsGiveBackTheirWholePages) {
  Runtime rt{RuntimeOptions{}};
  auto model = Model::open(rt, kHf);
  // The file is mapped whole at a page boundary, so a second mapping puts
  // every tensor at the same offset within its page.
  auto cp = Checkpoint::open(rt, kHf);
  uint64_t expect = 0;
  for (const TensorEntry& t : cp->tensors()) {
    const bool copied = t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight" || ends_with(t.name, "_proj.weight");
    if (!copied) continue;
    const xq_tensor_view v = cp->raw(t);
    expect += whole_pages(v.data, v.nbytes);
  }
  ASSERT_GT(expect, 100000u) << "stories260K-hf's embeddings alone span whole pages";
  EXPECT_EQ(model->load_stats().source_bytes_released, expect);

  // Re-reading a released tensor faults its bytes back in unchanged (the
  // engine's other tests check its logits against references with every
  // Linear's pages released).
  const TensorEntry& e = model->checkpoint().require("model.embed_tokens.weight");
  std::vector<float> again = model->checkpoint().read_f32(e), direct = cp->read_f32(cp->require("model.embed_tokens.weight"));
  EXPECT_EQ(again, direct);
}
