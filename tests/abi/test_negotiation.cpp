// test_negotiation.cpp: what the registry does with plugins of other ABI
// versions and with broken ones: load what can speak a common version at
// the negotiated version, skip the rest with a message naming file and why.
#include "core/runtime.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace xquant;

extern "C" size_t xq_test_descriptor_size(void);

namespace {

struct Loaded {
  std::unique_ptr<Runtime> rt;
  const LoadedPlugin* find(const std::string& name) const {
    return rt->plugins().find(XQ_PLUGIN_ALGORITHM, name);
  }
  std::string skip_reason(const std::string& name) const {
    for (const auto& s : rt->plugins().skipped())
      if (s.path.filename().string() == "libxquant-" + name + ".so") return s.reason;
    return "";
  }
};

Loaded load_test_plugins() {
  RuntimeOptions o;
  o.load_default_plugins = false;
  o.log_level = XQ_LOG_ERROR;
  o.plugin_dirs = {ABI_TEST_PLUGIN_DIR};
  return Loaded{std::make_unique<Runtime>(o)};
}

}  // namespace

TEST(AbiNegotiation, CurrentPluginLoadsAtHostVersion) {
  auto l = load_test_plugins();
  const auto* p = l.find("current");
  ASSERT_NE(p, nullptr) << l.skip_reason("current");
  EXPECT_EQ(p->abi_version, XQ_ABI_VERSION);
  EXPECT_EQ(p->capabilities(), std::vector<std::string>{"test:cap"});
  EXPECT_EQ(std::string(p->descriptor->params[0].name), "alpha");
}

TEST(AbiNegotiation, NewerMinorPluginNegotiatesDownToHost) {
  auto l = load_test_plugins();
  const auto* p = l.find("newer_minor");
  ASSERT_NE(p, nullptr) << l.skip_reason("newer_minor");
  EXPECT_EQ(p->abi_version, XQ_ABI_VERSION);  // min(host max, plugin max)
}

TEST(AbiNegotiation, PluginNeedingNewerHostIsSkipped) {
  auto l = load_test_plugins();
  EXPECT_EQ(l.find("needs_newer_host"), nullptr);
  EXPECT_NE(l.skip_reason("needs_newer_host").find("ABI mismatch: plugin speaks [1.3, 1.5], host speaks [1.0, 1.0]"),
            std::string::npos)
      << l.skip_reason("needs_newer_host");
}

TEST(AbiNegotiation, OtherMajorIsSkipped) {
  auto l = load_test_plugins();
  EXPECT_EQ(l.find("other_major"), nullptr);
  EXPECT_NE(l.skip_reason("other_major").find("ABI mismatch"), std::string::npos) << l.skip_reason("other_major");
}

TEST(AbiNegotiation, PluginDecliningHostRangeIsSkipped) {
  auto l = load_test_plugins();
  EXPECT_EQ(l.find("declines"), nullptr);
  EXPECT_NE(l.skip_reason("declines").find("declined the host ABI range"), std::string::npos);
}

TEST(AbiNegotiation, MissingEntrySymbolIsSkippedBeforeDlopen) {
  auto l = load_test_plugins();
  EXPECT_NE(l.skip_reason("no_entry").find("no exported entry symbol 'xquant_plugin_entry'"), std::string::npos)
      << l.skip_reason("no_entry");
}

TEST(AbiNegotiation, FailingInitIsSkippedWithPluginMessage) {
  auto l = load_test_plugins();
  EXPECT_EQ(l.find("failing_init"), nullptr);
  auto why = l.skip_reason("failing_init");
  EXPECT_NE(why.find("init failed (device error)"), std::string::npos) << why;
  EXPECT_NE(why.find("the widget driver is missing"), std::string::npos) << why;
}

// The host names a plugin's message after the plugin, once: a message that
// begins with the name already keeps it as it is.
TEST(AbiNegotiation, PluginMessageIsNamedOnce) {
  auto l = load_test_plugins();
  EXPECT_NE(l.skip_reason("failing_init").find("init failed (device error): failing_init: the widget driver is missing"),
            std::string::npos)
      << l.skip_reason("failing_init");
  const auto why = l.skip_reason("failing_named");
  EXPECT_NE(why.find("init failed (device error): failing_named: the widget driver is missing"), std::string::npos) << why;
  EXPECT_EQ(why.find("failing_named: failing_named:"), std::string::npos) << why;
}

TEST(AbiNegotiation, UndersizedVtableIsSkipped) {
  auto l = load_test_plugins();
  EXPECT_EQ(l.find("small_vtable"), nullptr);
  EXPECT_NE(l.skip_reason("small_vtable").find("vtable is 8 bytes"), std::string::npos) << l.skip_reason("small_vtable");
}

TEST(AbiNegotiation, NonLibraryFileIsSkipped) {
  auto l = load_test_plugins();
  EXPECT_NE(l.skip_reason("not_elf").find("not a readable shared library"), std::string::npos) << l.skip_reason("not_elf");
}

TEST(AbiNegotiation, DuplicateNameIsSkipped) {
  auto l = load_test_plugins();
  l.rt->plugins().load_file(std::string(ABI_TEST_PLUGIN_DIR) + "/libxquant-current.so");
  // The same file again is the same folder entry; load_file reports it as a duplicate.
  bool found = false;
  for (const auto& s : l.rt->plugins().skipped())
    found = found || s.reason.find("already loaded") != std::string::npos;
  EXPECT_TRUE(found);
}

TEST(AbiNegotiation, DiscoveryContinuesPastBrokenPlugins) {
  auto l = load_test_plugins();
  EXPECT_EQ(l.rt->plugins().plugins().size(), 2u);  // current, newer_minor
  EXPECT_EQ(l.rt->plugins().skipped().size(), 8u);
}

TEST(AbiLayout, CAndCxxAgreeOnDescriptorSize) { EXPECT_EQ(xq_test_descriptor_size(), sizeof(xq_plugin_descriptor)); }
