// test_architectures.cpp: the engine on every supported model type, against
// an independent double-precision transcription of the Hugging Face forward
// pass written here. Tiny random checkpoints (config.json + safetensors,
// written to a temp folder, loaded through the real safetensors loader)
// exercise what stories260K cannot: Qwen2's q/k/v biases, Qwen3's per-head
// q/k RMSNorm with head_dim != hidden/heads, an untied lm_head, llama3 and
// linear RoPE scaling (HF's inv_freq formulas, not the engine's divisors).
#include "core/runtime.hpp"
#include "engine/model.hpp"

#include "../support/hf_test_checkpoint.hpp"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

using xqtest_hf::Cfg;
using xqtest_hf::Tensors;
using xqtest_hf::make_weights;
using xqtest_hf::write_checkpoint;

// ---- the reference: HF modeling_llama / qwen2 / qwen3, in double ----------

using Mat = std::vector<std::vector<double>>;

Mat linear(const Mat& x, const std::vector<float>& w, int64_t out, int64_t in, const std::vector<float>* b) {
  Mat y(x.size(), std::vector<double>(static_cast<size_t>(out)));
  for (size_t t = 0; t < x.size(); ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[t][i] * w[o * in + i];
      y[t][o] = s;
    }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const float* w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

std::vector<double> inv_freq(const Cfg& c) {
  std::vector<double> f(static_cast<size_t>(c.hd / 2));
  for (int64_t i = 0; i < c.hd / 2; ++i) {
    f[i] = 1.0 / std::pow(c.theta, 2.0 * i / c.hd);
    if (c.rope == "llama3") {  // transformers _compute_llama3_parameters
      double factor = 8, lo = 1, hi = 4, orig = 16;
      double wl = 2 * M_PI / f[i];
      if (wl > orig / lo) f[i] /= factor;
      else if (wl >= orig / hi) {
        double s = (orig / wl - lo) / (hi - lo);
        f[i] = (1 - s) * f[i] / factor + s * f[i];
      }
    }
    if (c.rope == "linear") f[i] /= 4.0;  // positions / factor
  }
  return f;
}

void rope(std::vector<double>& v, int64_t heads, int64_t hd, int64_t pos, const std::vector<double>& f) {
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {  // rotate_half: pairs (i, i + hd/2)
      double a = pos * f[i], x0 = v[h * hd + i], x1 = v[h * hd + i + hd / 2];
      v[h * hd + i] = x0 * std::cos(a) - x1 * std::sin(a);
      v[h * hd + i + hd / 2] = x1 * std::cos(a) + x0 * std::sin(a);
    }
}

Mat reference_logits(const Cfg& c, const Tensors& t, const std::vector<int32_t>& ids) {
  auto W = [&](const std::string& n) -> const std::vector<float>& { return t.at(n).second; };
  const int64_t T = static_cast<int64_t>(ids.size()), H = c.hidden, QD = c.heads * c.hd, KD = c.kv * c.hd;
  Mat x(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(H)));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < H; ++j) x[i][j] = W("model.embed_tokens.weight")[ids[i] * H + j];
  auto f = inv_freq(c);
  for (int64_t l = 0; l < c.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    Mat h(x.size());
    for (int64_t i = 0; i < T; ++i) h[i] = rmsnorm(x[i], W(p + "input_layernorm.weight").data(), c.eps);
    auto bq = c.bias ? &W(p + "self_attn.q_proj.bias") : nullptr;
    auto bk = c.bias ? &W(p + "self_attn.k_proj.bias") : nullptr;
    auto bv = c.bias ? &W(p + "self_attn.v_proj.bias") : nullptr;
    Mat q = linear(h, W(p + "self_attn.q_proj.weight"), QD, H, bq);
    Mat k = linear(h, W(p + "self_attn.k_proj.weight"), KD, H, bk);
    Mat v = linear(h, W(p + "self_attn.v_proj.weight"), KD, H, bv);
    for (int64_t i = 0; i < T; ++i) {
      if (c.qk_norm) {
        for (int64_t hh = 0; hh < c.heads; ++hh) {
          std::vector<double> s(q[i].begin() + hh * c.hd, q[i].begin() + (hh + 1) * c.hd);
          s = rmsnorm(s, W(p + "self_attn.q_norm.weight").data(), c.eps);
          std::copy(s.begin(), s.end(), q[i].begin() + hh * c.hd);
        }
        for (int64_t hh = 0; hh < c.kv; ++hh) {
          std::vector<double> s(k[i].begin() + hh * c.hd, k[i].begin() + (hh + 1) * c.hd);
          s = rmsnorm(s, W(p + "self_attn.k_norm.weight").data(), c.eps);
          std::copy(s.begin(), s.end(), k[i].begin() + hh * c.hd);
        }
      }
      rope(q[i], c.heads, c.hd, i, f);
      rope(k[i], c.kv, c.hd, i, f);
    }
    Mat att(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(QD), 0.0));
    for (int64_t i = 0; i < T; ++i)
      for (int64_t hh = 0; hh < c.heads; ++hh) {
        int64_t kh = hh / (c.heads / c.kv);
        std::vector<double> s(static_cast<size_t>(i + 1));
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (int64_t e = 0; e < c.hd; ++e) d += q[i][hh * c.hd + e] * k[j][kh * c.hd + e];
          s[j] = d / std::sqrt(double(c.hd));
          mx = std::max(mx, s[j]);
        }
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t e = 0; e < c.hd; ++e) att[i][hh * c.hd + e] += s[j] / z * v[j][kh * c.hd + e];
      }
    Mat o = linear(att, W(p + "self_attn.o_proj.weight"), H, QD, nullptr);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < H; ++j) x[i][j] += o[i][j];
    for (int64_t i = 0; i < T; ++i) h[i] = rmsnorm(x[i], W(p + "post_attention_layernorm.weight").data(), c.eps);
    Mat g = linear(h, W(p + "mlp.gate_proj.weight"), c.inter, H, nullptr);
    Mat u = linear(h, W(p + "mlp.up_proj.weight"), c.inter, H, nullptr);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < c.inter; ++j) g[i][j] = g[i][j] / (1 + std::exp(-g[i][j])) * u[i][j];
    Mat d = linear(g, W(p + "mlp.down_proj.weight"), H, c.inter, nullptr);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < H; ++j) x[i][j] += d[i][j];
  }
  Mat h(x.size());
  for (int64_t i = 0; i < T; ++i) h[i] = rmsnorm(x[i], W("model.norm.weight").data(), c.eps);
  return linear(h, W(c.tied ? "model.embed_tokens.weight" : "lm_head.weight"), c.vocab, H, nullptr);
}

void check(const Cfg& c) {
  static Runtime rt{RuntimeOptions{}};
  Tensors t = make_weights(c, 1234);
  fs::path dir = write_checkpoint(c, t);
  auto m = Model::open(rt, dir);
  std::vector<int32_t> ids = {3, 17, 0, 39, 8, 8, 21, 5, 30, 12, 1, 2, 33, 7, 19, 25, 4, 11, 36, 6};
  KvCache cache(m->arch(), 32);
  // Prefill 18 rows (attention SGEMM path), then 2 decode steps.
  auto got = m->forward({{&cache, ids.data(), 18, true}});
  for (int i = 18; i < 20; ++i) {
    auto step = m->forward({{&cache, &ids[i], 1, true}});
    got.insert(got.end(), step.begin(), step.end());
  }
  Mat want = reference_logits(c, t, ids);
  double worst = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t v = 0; v < c.vocab; ++v)
      worst = std::max(worst, std::fabs(got[i * c.vocab + v] - want[i][v]) / (1 + std::fabs(want[i][v])));
  EXPECT_LE(worst, 2e-5) << c.type << " rope=" << c.rope;
  fs::remove_all(dir);
}

}  // namespace

TEST(Architectures, LlamaUntiedWithLlama3Rope) {
  Cfg c;
  c.type = "llama";
  c.rope = "llama3";
  c.hd = 16;  // head_dim != hidden/heads
  check(c);
}

TEST(Architectures, MistralTiedWithLinearRope) {
  Cfg c;
  c.type = "mistral";
  c.tied = true;
  c.rope = "linear";
  check(c);
}

TEST(Architectures, Qwen2WithQkvBias) {
  Cfg c;
  c.type = "qwen2";
  c.bias = true;
  c.tied = true;
  check(c);
}

TEST(Architectures, Qwen3WithQkNorms) {
  Cfg c;
  c.type = "qwen3";
  c.qk_norm = true;
  c.hd = 16;
  c.kv = 1;
  check(c);
}
