// test_moe_auto.cpp: `xquant quantize --algorithm auto` on tiny random
// Mixture-of-Experts checkpoints (qwen3_moe; qwen2_moe with a shared expert
// and its sigmoid gate), as a user runs it. The decision takes one group per
// layer for every expert Linear (gate/up/down of each expert and of the
// shared expert: decide/moe_groups.hpp says why), never the router or the
// shared expert's gate. With a KLD target out of reach within --max-bytes the
// fallback climbs part of the ladder; then
//   - the report has exactly one experts group per layer, holding every
//     expert Linear and no router;
//   - the written compressed-tensors checkpoint puts all experts of a layer
//     in one config group (or all in the ignore list, BF16), the routers
//     dense F32 and ignored;
//   - reloaded by our engine, it scores what the decision evaluated in
//     memory (rtn only: data-free, so the runner writes exactly the weights
//     the decision evaluated).
#include "scoped_env.hpp"
#include "moe_checkpoint.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <sys/wait.h>

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_moe_auto {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;

int run_cli(const std::string& args, std::string& out) {
  FILE* p = ::popen((std::string(XQUANT_CLI) + " --quiet quantize " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int s = p ? ::pclose(p) : -1;
  return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

std::map<std::string, std::string> stored_dtypes(const std::filesystem::path& file) {
  std::map<std::string, std::string> out;
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  const nlohmann::json tensors = nlohmann::json::parse(header);  // outlives the loop
  for (const auto& [name, t] : tensors.items())
    if (name != "__metadata__") out[name] = t["dtype"];
  return out;
}

// Every expert Linear of layer l (module names), the shared expert's included.
std::set<std::string> expert_modules(const xquant::test::Cfg& c, int64_t l) {
  std::set<std::string> out;
  for (int64_t e = 0; e < c.experts; ++e)
    for (int which = 0; which < 3; ++which) {
      std::string w = xquant::test::expert_name(c, l, e, which);
      out.insert(w.substr(0, w.size() - 7));  // less ".weight"
    }
  if (c.shared)
    for (const char* m : {"gate_proj", "up_proj", "down_proj"})
      out.insert(xquant::test::block(c, l) + "shared_expert." + m);
  return out;
}

struct AutoRun {
  nlohmann::json report, quant_config;
  std::map<std::string, std::string> dtypes;
};

AutoRun run_auto(const xquant::test::Cfg& c, const std::string& candidates, uint64_t max_bytes,
             const xquant::test::TempDir& dir) {
  const auto model = xquant::test::write_checkpoint(c, xquant::test::make_weights(c, 7), c.type + "_auto");
  std::string log;
  const int status = run_cli(
      "--model " + model.string() + " --out " + (dir / "out").string() + " --algorithm auto --candidates " +
          candidates + " --group-size 8 --calibration " + kShared +
          "/data/tinystories/tinystories_val.subset.txt --tokenizer " + kShared +
          "/models/stories260K/stories260K.gguf --samples 4 --seq-len 32 --accuracy-text " + kShared +
          "/data/wikitext-2-raw/wiki.test.raw --max-tokens 256 --max-increase 0.000001 --fallback int8,bf16 "
          "--max-bytes " + std::to_string(max_bytes) + " --report " + (dir / "report.html").string(),
      log);
  std::filesystem::remove_all(model);
  AutoRun r;
  EXPECT_EQ(status, 0) << log;
  if (status != 0) return r;
  r.report = nlohmann::json::parse(std::ifstream(dir / "report.json"));
  r.quant_config = nlohmann::json::parse(std::ifstream(dir / "out" / "config.json"))["quantization_config"];
  r.dtypes = stored_dtypes(dir / "out" / "model.safetensors");
  return r;
}

void expect_one_group_per_layer(const xquant::test::Cfg& c, const AutoRun& r) {
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string name = "model.layers." + std::to_string(l) + ".mlp_experts";
    const nlohmann::json* group = nullptr;
    for (const auto& g : r.report["groups"])
      if (g["name"] == name) group = &g;
    ASSERT_TRUE(group) << name << " missing from " << r.report["groups"];
    std::set<std::string> members;
    for (const auto& m : (*group)["modules"]) members.insert(m.get<std::string>());
    EXPECT_EQ(members, expert_modules(c, l)) << name;
  }
  for (const auto& g : r.report["groups"])
    for (const auto& m : g["modules"]) {
      const std::string s = m.get<std::string>();
      EXPECT_FALSE(s.ends_with(".mlp.gate") || s.ends_with("shared_expert_gate")) << s << " is a router";
    }
}

// All experts of a layer (the shared one too) written with one scheme, each
// in exactly one config group, or all dense (ignored, BF16).
// The routers: dense F32 (the source dtype) and ignored.
void expect_experts_written_alike(const xquant::test::Cfg& c, const AutoRun& r) {
  std::set<std::string> ignored;
  for (const auto& m : r.quant_config["ignore"]) ignored.insert(m.get<std::string>());
  for (int64_t l = 0; l < c.layers; ++l) {
    std::set<std::string> where;
    for (const auto& m : expert_modules(c, l)) {
      std::string in = ignored.count(m) ? "ignore" : "";
      // One config group is written with targets ["Linear"] (every Linear
      // not ignored), several name their modules (experts by anchored
      // "re:" patterns, as Python's re.match reads them).
      for (const auto& [gname, g] : r.quant_config["config_groups"].items())
        for (const auto& t : g["targets"]) {
          const std::string s = t.get<std::string>();
          const bool hit = s.rfind("re:", 0) == 0
                               ? std::regex_search(m, std::regex(s.substr(3)), std::regex_constants::match_continuous)
                               : (s == m || s == "Linear");
          if (!ignored.count(m) && hit) in += gname;
        }
      EXPECT_TRUE(in == "ignore" || (in.size() && in.find("ignore") == std::string::npos)) << m << ": " << in;
      if (in == "ignore") {
        EXPECT_EQ(r.dtypes.at(m + ".weight"), "BF16") << m;
      }
      // Written alike: one scheme (the writer keeps routed experts in a
      // config group of their own, so the shared expert's group is another
      // one with the same scheme).
      const nlohmann::json& groups = r.quant_config["config_groups"];
      where.insert(groups.contains(in) ? groups[in]["weights"].dump() : in);
    }
    EXPECT_EQ(where.size(), 1u) << "layer " << l << " experts split over " << nlohmann::json(where);
    const std::string router = xquant::test::block(c, l) + "gate";
    EXPECT_TRUE(ignored.count(router)) << router;
    EXPECT_EQ(r.dtypes.at(router + ".weight"), "F32") << router;
    if (c.shared) {
      const std::string sg = xquant::test::block(c, l) + "shared_expert_gate";
      EXPECT_TRUE(ignored.count(sg)) << sg;
      EXPECT_EQ(r.dtypes.at(sg + ".weight"), "F32") << sg;
    }
  }
}

// The written checkpoint, reloaded by the engine, scores what the decision
// evaluated in memory (bounds as test_bf16_rung.cpp's).
void expect_written_as_evaluated(const AutoRun& r) {
  const nlohmann::json* simulated = nullptr;
  const nlohmann::json* written = nullptr;
  for (const auto& v : r.report["variants"])
    if (v["name"] == "auto+fallback") (v["source"] == "written" ? written : simulated) = &v;
  ASSERT_TRUE(simulated && written) << r.report["variants"];
  const double ppl_s = (*simulated)["accuracy"]["ppl"], ppl_w = (*written)["accuracy"]["ppl"];
  const double kld_s = (*simulated)["accuracy"]["kld"], kld_w = (*written)["accuracy"]["kld"];
  EXPECT_LT(std::fabs(ppl_w / ppl_s - 1.0), 1e-4) << ppl_s << " vs " << ppl_w;
  EXPECT_LT(std::fabs(kld_w - kld_s), 1e-5) << kld_s << " vs " << kld_w;
}

std::set<std::string> rungs_of(const AutoRun& r) {
  std::set<std::string> out;
  for (const auto& g : r.report["groups"]) out.insert(g["rung"].get<std::string>());
  return out;
}

}  // namespace

TEST(MoeAuto, Qwen3MoeExpertsDecidedPerLayerRoutersDense) {
  // The written checkpoint must score what the search evaluated with float
  // activations (the CLI child inherits this).
  const xquant::test::FloatPrefill float_prefill;
  xquant::test::Cfg c{"qwen3_moe"};
  c.layers = 2;
  c.vocab = 512;  // stories260K's tokenizer reads the texts
  c.norm_topk = true;
  xquant::test::TempDir dir;
  const AutoRun r = run_auto(c, "rtn", 60000, dir);
  if (r.report.is_null()) return;
  expect_one_group_per_layer(c, r);
  expect_experts_written_alike(c, r);
  expect_written_as_evaluated(r);
  EXPECT_GT(rungs_of(r).size(), 1u) << "the budget should leave a mix of rungs: " << r.report["groups"];
}

TEST(MoeAuto, Qwen2MoeSharedExpertJoinsTheExpertsGroupItsGateStaysDense) {
  xquant::test::Cfg c{"qwen2_moe"};
  c.layers = 2;
  c.vocab = 512;
  c.shared = 16;
  xquant::test::TempDir dir;
  const AutoRun r = run_auto(c, "rtn,gptq", 70000, dir);
  if (r.report.is_null()) return;
  expect_one_group_per_layer(c, r);
  expect_experts_written_alike(c, r);
  // Both candidates measured on the merged group (summed over its parts).
  for (const auto& g : r.report["groups"]) {
    if (g["name"].get<std::string>().ends_with("mlp_experts")) {
      EXPECT_EQ(g["candidates"].size(), 2u) << g;
    }
  }
}

}  // namespace test_moe_auto
