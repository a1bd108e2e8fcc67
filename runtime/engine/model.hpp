// model.hpp: the inference engine for decoder-only Llama-family models.
//
// A Model holds the weights of a checkpoint (any format a loader reads) and
// runs the graph the Architecture describes through one kernel provider
// (default `cpu`): F32 activations, F32 Linears through MATMUL, quantized
// Linears through QMATMUL when the provider prepares the canonical tensor in
// its layout, dequantized to F32 on load otherwise (logged once per model).
//
// Batching: forward() takes several sequences at once; their new tokens are
// concatenated into one activation matrix so every Linear is one GEMM over
// all of them, while attention runs per sequence against that sequence's
// own KV cache. The layer-level entry points (embed, layer_forward,
// logits_from_hidden) let calibration run the model one layer at a time.
#pragma once

#include "core/runtime.hpp"
#include "engine/kernels.hpp"
#include "model/architecture.hpp"
#include "model/checkpoint.hpp"

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xquant {

class Tokenizer;

struct ModelOptions {
  std::string provider = "cpu";  // kernel provider plugin name
  // Load every Linear as F32 (dequantizing quantized ones): calibration and
  // algorithms need float weights they can read and overwrite.
  bool dequantize_all = false;
  // Where the tokenizer comes from when the checkpoint has no vocabulary
  // (e.g. stories260K-hf): another checkpoint's path; "" = the model's own.
  std::filesystem::path tokenizer_from;
};

// One Linear's weights as the engine runs them.
struct LinearWeights {
  const LinearDesc* desc = nullptr;
  std::vector<float> w;     // [out, in] F32; empty when `q` runs it
  std::vector<float> bias;  // [out] or empty
  xq_qweight* q = nullptr;  // provider-prepared quantized weight
  std::string layout;       // q's layout name, or "f32"
  uint64_t bytes = 0;       // bytes a forward pass reads for this weight
};

struct LayerWeights {
  std::vector<float> input_norm, post_norm, q_norm, k_norm;
  std::vector<LinearWeights> linears;  // LayerDesc::linears order
};

// Keys and values of one sequence for every layer: [capacity, kv_heads, head_dim] each.
class KvCache {
 public:
  KvCache(const Architecture& arch, int64_t capacity);
  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  void clear() { size_ = 0; }
  float* k(int layer) { return k_[static_cast<size_t>(layer)].data(); }
  float* v(int layer) { return v_[static_cast<size_t>(layer)].data(); }
  void advance(int64_t n) { size_ += n; }

 private:
  int64_t capacity_, size_ = 0;
  std::vector<std::vector<float>> k_, v_;
};

// One sequence of a batch: `n` new tokens appended to `cache`.
struct SequenceInput {
  KvCache* cache = nullptr;
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  bool all_logits = false;  // logits for every new token, else only the last
};

// Where one sequence's rows sit in a layer's activation matrix, and its
// K/V storage for that layer (capacity >= pos0 + n rows).
struct SequenceSpan {
  int64_t row = 0, n = 0, pos0 = 0;
  float* k = nullptr;
  float* v = nullptr;
};

// Called with the input of each Linear group of a layer (LayerDesc::groups
// index, rows x cols row-major) just before that group's Linears run.
using GroupInputTap = std::function<void(int group, const float* x, int64_t rows, int64_t cols)>;

class Model {
 public:
  static std::unique_ptr<Model> open(Runtime& runtime, const std::filesystem::path& path,
                                     const ModelOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Architecture& arch() const { return arch_; }
  const Kv& config() const { return checkpoint_->config(); }
  Checkpoint& checkpoint() { return *checkpoint_; }
  const Kernels& kernels() const { return *kernels_; }
  Runtime& runtime() { return runtime_; }
  // The tokenizer (built on first use; throws when there is no vocabulary).
  const Tokenizer& tokenizer();
  // Bytes of weights one decode step reads (what bounds decode speed).
  uint64_t weight_bytes_per_token() const;
  // Number of Linears run quantized by the provider / dequantized on load.
  int quantized_linears() const { return n_quantized_; }
  int dequantized_linears() const { return n_dequantized_; }

  // Runs the new tokens of every sequence; returns logits rows (vocab floats
  // each) in batch order: n rows for all_logits items, 1 row otherwise.
  std::vector<float> forward(const std::vector<SequenceInput>& batch);

  // ---- layer-level pieces (calibration) ----
  void embed(const int32_t* ids, int64_t n, float* out) const;  // out [n, hidden]
  // x [rows, hidden] in place through layer L; spans cover all rows.
  void layer_forward(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans,
                     const GroupInputTap& tap = nullptr) const;
  // Final norm + lm_head of `rows` hidden rows into logits [rows, vocab].
  void logits_from_hidden(const float* x, int64_t rows, float* logits) const;
  // Runs one Linear (y [rows, out] = x W^T + b).
  void linear(const LinearWeights& lw, const float* x, int64_t rows, float* y, const char* what) const;

  LayerWeights& layer(int i) { return layers_[static_cast<size_t>(i)]; }
  const LayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }

 private:
  Model(Runtime& runtime, std::unique_ptr<Checkpoint> cp, const ModelOptions& options);
  void load_weights();
  LinearWeights load_linear(const LinearDesc& d);
  std::vector<float> read_vector(const std::string& name, int64_t expect) const;

  Runtime& runtime_;
  ModelOptions options_;
  std::unique_ptr<Checkpoint> checkpoint_;
  Architecture arch_;
  std::unique_ptr<Kernels> kernels_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<float> embed_, final_norm_;
  LinearWeights lm_head_;  // w empty and q null when tied: embed_ is used
  std::unique_ptr<LinearDesc> lm_owned_;  // lm_head's description when the file has one
  std::vector<float> rope_factors_;
  std::vector<LayerWeights> layers_;
  int n_quantized_ = 0, n_dequantized_ = 0;
};

}  // namespace xquant
