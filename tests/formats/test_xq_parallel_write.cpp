// test_xq_parallel_write.cpp: the xq writer packs quantized tensors in
// batches on the thread pool (plugins/xq/pack_batch.hpp) and writes every
// segment in arrival order, so its bytes are those of the one-at-a-time
// writer.
//
// stories260K, RTN int4 g32 symmetric and asymmetric
// (quantized once to compressed-tensors), converted to xq with the cpu and
// cuda layouts by one thread packing each tensor as it arrives
// (--threads 1, pack_batch=1) and by 4 and 3 threads in batches of the
// default and of 5: the files are identical byte for byte, and the log shows
// the batches' progress.
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_xq_parallel_write {

namespace {

const fs::path kModel = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

xquant::test::ProcessResult convert(const fs::path& in, const fs::path& out, const std::string& threads,
                                    const std::string& pack_batch) {
  std::vector<std::string> args = {"--threads", threads, "convert", "--model", in.string(), "--out", out.string(),
                                   "--format", "xq"};
  if (!pack_batch.empty()) args.insert(args.end(), {"--param", "pack_batch=" + pack_batch});
  return xquant::test::run_xquant(args);
}

void expect_same_bytes_for_every_batching(const std::vector<std::string>& quantize_options) {
  xquant::test::TempDir dir("xq-parallel-write");
  std::vector<std::string> q = {"quantize", "--model", kModel.string(), "--out", (dir / "ct").string(), "--format",
                                "compressed-tensors"};
  q.insert(q.end(), quantize_options.begin(), quantize_options.end());
  auto r = xquant::test::run_xquant(q);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = convert(dir / "ct", dir / "one.xq", "1", "1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // One quantized tensor per batch, and one more batch for dense tensors after the last.
  const size_t one_by_one = count(r.err, "quantized tensors packed and written");
  EXPECT_GE(one_by_one, 35u) << r.err;
  EXPECT_LE(one_by_one, 36u) << r.err;
  const std::string reference = xquant::test::read_file(dir / "one.xq");
  ASSERT_GT(reference.size(), 0u);

  for (const auto& [threads, batch] : {std::pair<std::string, std::string>{"4", ""}, {"3", "5"}}) {
    const fs::path out = dir / ("t" + threads + "-b" + batch + ".xq");
    r = convert(dir / "ct", out, threads, batch);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(xquant::test::read_file(out), reference) << "threads " << threads << ", pack_batch " << batch;
    // Batches of 8 (twice 4 threads) or 5: 5 or 7 batches of the 35 Linears,
    // and one more when dense tensors came after the last full batch.
    const size_t batches = count(r.err, "quantized tensors packed and written");
    EXPECT_GE(batches, batch.empty() ? 5u : 7u) << r.err;
    EXPECT_LE(batches, batch.empty() ? 6u : 8u) << r.err;
    EXPECT_NE(r.err.find("35 quantized tensors packed and written"), std::string::npos) << r.err;
  }
}

TEST(XqParallelWrite, RtnInt4IsWrittenByteForByteAsByOneThread) {
  expect_same_bytes_for_every_batching({"--algorithm", "rtn", "--bits", "4", "--group-size", "32"});
}

TEST(XqParallelWrite, AsymmetricCodesAreWrittenByteForByteAsByOneThread) {
  expect_same_bytes_for_every_batching({"--algorithm", "rtn", "--bits", "4", "--group-size", "32", "--asym"});
}

TEST(XqParallelWrite, ANegativeBatchIsRefused) {
  xquant::test::TempDir dir("xq-parallel-write");
  auto r = xquant::test::run_xquant({"convert", "--model", kModel.string(), "--out", (dir / "o.xq").string(),
                                     "--format", "xq", "--param", "pack_batch=-2"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("pack_batch -2 is negative"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "o.xq"));
}

}  // namespace

}  // namespace test_xq_parallel_write
