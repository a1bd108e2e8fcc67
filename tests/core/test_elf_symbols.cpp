// The registry's look at a library's exports before dlopen: it must read the
// dynamic symbol table, which survives `strip` (a stripped install used to
// load no plugin at all), and refuse files that are not ELF cleanly.
#include "plugins/elf_symbols.hpp"

#include "test_files.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;

namespace {

fs::path rtn_plugin() { return fs::path(XQUANT_PLUGIN_DIR) / "libxquant-rtn.so"; }

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST(ElfSymbols, FindsTheEntryInAStrippedPlugin) {
  xquant::test::TempDir dir;
  const fs::path copy = dir.path() / "libxquant-rtn.so";
  fs::copy_file(rtn_plugin(), copy);
  ASSERT_EQ(std::system(("strip --strip-all '" + copy.string() + "'").c_str()), 0);
  auto symbols = xquant::exported_dynamic_symbols(copy);
  EXPECT_TRUE(has(symbols, "xquant_plugin_entry"));
}

TEST(ElfSymbols, RefusesFilesThatAreNotElf) {
  xquant::test::TempDir dir;
  const fs::path text = dir.path() / "libnot.so";
  std::ofstream(text) << "not a library";
  EXPECT_THROW(xquant::exported_dynamic_symbols(text), std::runtime_error);
  // A real library cut short: the section table points past the end.
  const fs::path cut = dir.path() / "libcut.so";
  fs::copy_file(rtn_plugin(), cut);
  fs::resize_file(cut, 4096);
  EXPECT_THROW(xquant::exported_dynamic_symbols(cut), std::runtime_error);
}
