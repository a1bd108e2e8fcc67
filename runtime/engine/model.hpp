// model.hpp: the inference engine for decoder-only Llama-family models.
//
// A Model holds the weights of a checkpoint (any format a loader reads) and
// runs the graph the Architecture describes through one kernel provider
// (default `cpu`): F32 activations, F32 Linears through MATMUL, quantized
// Linears through QMATMUL when the provider prepares the canonical tensor in
// its layout, dequantized to F32 on load otherwise (logged once per model).
//
// Memory: on a host-memory provider (`cpu`) weights, activations and the KV
// cache are host arrays, exactly the vectors below. On a device provider
// (`cuda`) every weight is uploaded once at load (quantized ones prepared in
// the provider's layout), activations live in grow-only provider buffers
// reused across steps, the KV cache is provider memory (KvCache(model, n)),
// and a step uploads only its token ids and positions and downloads only the
// logits rows asked for.
//
// Batching: forward() takes several sequences at once; their new tokens are
// concatenated into one activation matrix so every Linear is one GEMM over
// all of them, while attention runs per sequence against that sequence's
// own KV cache. The layer-level entry points (embed, layer_forward,
// logits_from_hidden) let calibration run the model one layer at a time.
#pragma once

#include "core/runtime.hpp"
#include "engine/kernels.hpp"
#include "engine/moe_routing.hpp"
#include "checkpoint/architecture.hpp"
#include "checkpoint/checkpoint.hpp"
#include "engine/compact_tables.hpp"

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
  // Dense Linear weights on a device provider: F32 (exact against `cpu`),
  // BF16 (half the bytes; MATMUL then takes BF16 activations, converted
  // around the call), or XQ_DTYPE_INVALID = as stored (BF16 for a BF16
  // checkpoint, else F32: engine/device_weights.hpp), what the CLI's
  // --device-weights auto asks for. XQUANT_DEVICE_WEIGHTS=auto|bf16|f32
  // overrides this option.
  xq_dtype device_weights = XQ_DTYPE_F32;
  // Calibration of models larger than host memory: open loads no layer,
  // embedding or lm_head; load_layer/release_layer (and load_embeddings/
  // release_embeddings) bring one layer's F32 weights in from the mapped
  // checkpoint and drop them again, so a layer-by-layer caller holds one
  // layer at a time. Needs dequantize_all and a host-memory provider;
  // forward() and logits are refused in this mode.
  bool layers_on_demand = false;
  // Build the tokenizer at open, before the weights (generate and eval set
  // it): reading a tokenizer.json leaves tens of MB of freed JSON nodes in
  // the heap, given back (release_free_heap) before the weights arrive
  // instead of being resident beside them. SmolLM2-135M W8A8 `xquant
  // generate`: peak RSS 203.5 MB with the tokenizer built after the weights,
  // 172.4 MB with it first (docs/engine.md "The tokenizer before the
  // weights"). Once built, the configuration's copy of the vocabulary is
  // dropped (Checkpoint::drop_vocabulary). A checkpoint without a vocabulary
  // then fails at open, before any weight is read, with tokenizer()'s error.
  bool tokenizer_first = false;
  // Decode-only paged steps replayed from per-batch-size recordings when the
  // provider records launches (engine/decode_graphs.hpp); the environment
  // variable XQUANT_DECODE_GRAPHS=0 turns this off for tools without the
  // option (the CLI), e.g. to measure the eager step beside it.
  bool decode_graphs = true;
  // The embedding table and lm_head on a host provider (compact_tables.cpp):
  // auto (Q8_0 blocks for a quantized checkpoint, as stored for a float one),
  // as stored (exact), or BF16 / Q8_0 copies of float tables; the
  // environment variable XQUANT_TABLES=auto|as-stored|bf16|q8_0 sets it for
  // tools without the option (the CLI).
  TableForm tables = TableForm::kAuto;
  // Mixture-of-Experts layers through the provider's MoE ops (MOE_ROUTE,
  // moe_qmatmul, MOE_COMBINE: engine/moe_device.cpp) on a host provider
  // too, as a device provider always runs them; a forward with layer taps
  // (calibration) keeps the host block of engine/moe_layer.cpp.
  bool moe_provider_ops = false;
  // Bytes of the kernel provider's memory the weights may take; 0: no limit
  // beyond a device provider's free memory. Once layer 0 is loaded,
  // a model whose layers would need more (layer 0's bytes times the layers
  // of its kind) is refused with XQ_ERR_OUT_OF_MEMORY, before the other
  // layers are read or uploaded (engine/weight_fit.cpp).
  uint64_t weight_memory_limit = 0;
};

// One Linear's weights as the engine runs them.
struct LinearWeights {
  const LinearDesc* desc = nullptr;
  std::vector<float> w;     // [out, in] F32; empty when `q` runs it
  // While set, the F32 host forward runs this [out, in] weight in place of
  // w (not owned): a calibration trial's candidate (pipeline/group_forward.cpp).
  const float* w_candidate = nullptr;
  std::vector<float> bias;  // [out] or empty
  // Device providers: w and bias uploaded (w is then dropped on the host).
  DeviceBuffer dw, dbias;
  xq_qweight* q = nullptr;  // provider-prepared quantized weight
  // Activation dtype q's QMATMUL (or dw's MATMUL) takes on this provider:
  // F32, or BF16 (the engine converts its F32 activations around the call).
  // dw holds BF16 weights when act is BF16 and q is null.
  xq_dtype act = XQ_DTYPE_F32;
  std::vector<uint16_t> w16;  // host providers: [out, in] BF16 or F16 (w16_dtype) run by MATMUL (compact_tables.cpp)
  xq_dtype w16_dtype = XQ_DTYPE_BF16;
  std::string layout;       // q's layout name, or "f32"
  uint64_t bytes = 0;       // bytes a forward pass reads for this weight
};

struct LayerWeights {
  std::vector<float> input_norm, post_norm, q_norm, k_norm;
  std::vector<LinearWeights> linears;  // LayerDesc::linears order
  // Device providers: q|k|v and gate|up stacked along rows into one weight
  // each (one GEMM per group), when their weights share a description (see
  // engine/fuse.hpp); host providers likewise for foreign (GGUF) blocks
  // (engine/foreign_blocks.cpp), each group on its own. Then the members in `linears` keep only their desc
  // (layout "stacked into ..."), and `fused_desc` owns the groups' descs.
  LinearWeights qkv, gate_up;
  std::vector<std::unique_ptr<LinearDesc>> fused_desc;
  // Device providers: copies of the norm weights.
  DeviceBuffer d_input_norm, d_post_norm, d_q_norm, d_k_norm;
  // Device providers, MoE layers: each routed expert's gate and up stacked
  // along rows into one [2 x expert_intermediate, hidden] weight, so a step
  // runs one moe_qmatmul (one sort, one activation quantization, one grouped
  // GEMM) for both (engine/moe_stacking.cpp); empty when they are not
  // stacked. Then the experts' gate and up entries in `linears` keep only
  // their desc (layout "stacked into expert gate|up").
  std::vector<LinearWeights> expert_gate_up;
  // Device providers, MoE layers: the routed experts run through the
  // provider's moe_qmatmul (else one GEMM per expert; engine/moe_device.cpp).
  bool experts_fused = false;
};

class Model;

// Keys and values of one sequence for every layer: [capacity, kv_heads,
// head_dim] each, in one allocation (layer l's K then V). Host memory, or
// the memory of a model's provider. Paged KV replaces the contiguous
// per-sequence rows with block tables later; k()/v() are the only readers.
class KvCache {
 public:
  KvCache(const Architecture& arch, int64_t capacity);  // host memory
  KvCache(const Model& model, int64_t capacity);        // the model's provider memory
  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  void clear() { size_ = 0; }
  float* k(int layer) { return base_ + (2 * static_cast<int64_t>(layer)) * per_layer_; }
  float* v(int layer) { return base_ + (2 * static_cast<int64_t>(layer) + 1) * per_layer_; }
  void advance(int64_t n) { size_ += n; }
  // The provider whose memory holds it; nullptr for host memory.
  const Kernels* kernels() const { return device_ ? owner_ : nullptr; }

 private:
  void init(const Architecture& arch, int64_t capacity);
  int64_t capacity_ = 0, size_ = 0, per_layer_ = 0;
  std::vector<float> host_;
  DeviceBuffer device_;
  const Kernels* owner_ = nullptr;
  float* base_ = nullptr;
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

class PagedKvCache;
struct PagedSequence;
class DecodeGraphs;

// One sequence of a paged step (engine/paged_forward.cpp): `n` new tokens
// appended to `seq`, whose blocks live in the step's PagedKvCache. Only the
// last new token's logits are computed.
struct PagedInput {
  PagedSequence* seq = nullptr;
  const int32_t* tokens = nullptr;
  int64_t n = 0;
};

// Called with the input of each Linear group of a layer (LayerDesc::groups
// index, rows x cols row-major) just before that group's Linears run.
using GroupInputTap = std::function<void(int group, const float* x, int64_t rows, int64_t cols)>;

// Which part of a decoder layer layer_forward runs: the attention half
// (input norm .. o_proj and its residual add), the MLP half (post-attention
// norm .. down_proj and its residual add), or both; the two halves in turn
// give the whole layer bit for bit (host providers; AWQ's trials of the MLP
// groups rerun only their half, pipeline/group_forward.cpp).
//
// The To* parts run the layer from its start only as far as a tap needs:
// through the tap of the attention's input (the input norm), of the MLP's
// input (the attention half, then the post-attention norm), or of every
// down projection's input (dense down_proj; each MoE expert's and the
// shared expert's; no down projection runs). Their taps see the bytes the
// whole layer's taps see; x is left as it stands at that point (unchanged,
// or after the attention half). Calibration's statistics pass for one stage
// needs nothing further (calibrate/calibrator.cpp): on a MoE layer the
// experts' down projections and combine, or all its experts, are skipped.
enum class LayerPart { Whole, Attention, Mlp, ToAttentionInput, ToMlpInput, ToDownInputs };
// Rewrites the input of a layer's Linear group in place just before that
// group's Linears run (after any tap): the decision engine's fake-quantized
// W8A8 activations (decide/activation_sim.hpp). Host providers only.
using GroupInputTransform = std::function<void(int layer, int group, float* x, int64_t rows, int64_t cols)>;

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
  // Bytes of weights one token's decode step reads (what bounds decode
  // speed): a MoE layer counts top_k of its experts (the floor; a batch
  // whose tokens pick different experts reads more), every other weight once.
  uint64_t weight_bytes_per_token() const;
  // Bytes of every weight held (all experts).
  uint64_t weight_bytes() const;
  // Number of Linears run quantized by the provider / dequantized on load.
  int quantized_linears() const { return n_quantized_; }
  int dequantized_linears() const { return n_dequantized_; }
  // What loading the quantized weights cost: bytes of provider-layout
  // weights packed from canonical tensors at load (repacked), and bytes taken
  // as stored in the provider's layout (an .xq file's segments, no packing).
  // source_bytes_released: checkpoint pages given back once copied out
  // (engine/release_source.cpp).
  struct LoadStats {
    uint64_t repacked_bytes = 0, stored_bytes = 0;
    int repacked_linears = 0, stored_linears = 0;
    // Stored Linears that also took a second stored copy (qweight_attach:
    // the cuda provider's Hopper GEMM copy), and its bytes.
    int stored_copies = 0;
    uint64_t stored_copy_bytes = 0;
    uint64_t source_bytes_released = 0;
    // Device providers: bytes of dense tables (embedding, lm_head) uploaded
    // from the file as stored (engine/device_tables.cpp).
    uint64_t tables_stored_bytes = 0;
  };
  const LoadStats& load_stats() const { return load_stats_; }

  // Runs the new tokens of every sequence; returns logits rows (vocab floats
  // each) in batch order: n rows for all_logits items, 1 row otherwise.
  std::vector<float> forward(const std::vector<SequenceInput>& batch);
  // The same step, returning for each of those logits rows the id of its
  // largest logit (lowest id on ties: greedy sampling). On a device provider
  // that runs XQ_OP_ARGMAX the argmax runs there and only the ids come back.
  std::vector<int32_t> forward_greedy(const std::vector<SequenceInput>& batch);

  // Paged KV cache steps (engine/paged_forward.cpp): every sequence's new
  // tokens in one batch (decode rows and prefill chunks alike), attention
  // through its block table. Blocks are reserved here as needed (throws when
  // the pool runs out). Returns one logits row (or greedy id) per sequence.
  std::vector<float> forward_paged(PagedKvCache& cache, const std::vector<PagedInput>& batch);
  std::vector<int32_t> forward_paged_greedy(PagedKvCache& cache, const std::vector<PagedInput>& batch);
  // The decode recordings (nullptr when the provider records none or they
  // are off): their counts show whether steps were replayed.
  const DecodeGraphs* decode_graphs() const { return graphs_.get(); }
  // Called by ~PagedKvCache: releases the recordings of that cache. Const
  // because caches hold a const Model; recordings are a cache of launches,
  // not part of the model's state.
  void forget_decode_recordings(uint64_t cache_id) const;

  // ---- layer-level pieces (calibration) ----
  void embed(const int32_t* ids, int64_t n, float* out) const;  // out [n, hidden]
  // x [rows, hidden] in place through layer L; spans cover all rows.
  void layer_forward(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans,
                     const GroupInputTap& tap = nullptr, LayerPart part = LayerPart::Whole) const;
  // Installs (or, empty, removes) the input transform every forward applies.
  void set_input_transform(GroupInputTransform t) { input_transform_ = std::move(t); }
  // The input the MLP (or MoE block) of `layer` reads for the residual
  // stream x [rows, hidden] after the attention half: the post-attention
  // norm's output, then the input transform, as layer_forward computes it.
  // Host providers.
  void mlp_input(int layer, const float* x, int64_t rows, float* h) const;
  // Final norm + lm_head of `rows` hidden rows into logits [rows, vocab].
  void logits_from_hidden(const float* x, int64_t rows, float* logits) const;
  // Pointers are host memory on host providers and provider memory on
  // device providers (taps need host memory: host providers only).
  // Runs one Linear (y [rows, out] = x W^T + b).
  void linear(const LinearWeights& lw, const float* x, int64_t rows, float* y, const char* what) const;

  // ---- Mixture-of-Experts layers (engine/moe_layer.cpp; host providers;
  // device providers: engine/moe_device.cpp) ----
  // The MoE block of `layer` on its input h [rows, hidden] (the
  // post-attention norm's output): out [rows, hidden]. Taps (calibration)
  // see each expert's gathered input rows and its down_proj input.
  // With down_inputs_only, the block stops at its down projections' inputs
  // (their taps): no down_proj, no combine, `out` untouched (may be null).
  void moe_forward(int layer, const float* h, int64_t rows, float* out, const GroupInputTap& tap = nullptr,
                   bool down_inputs_only = false) const;
  // The routing decisions of `layer` for h [rows, hidden].
  MoeRouting moe_routing(int layer, const float* h, int64_t rows) const;
  // Expert `expert`'s down_proj input for rows x [rows, hidden] of the
  // block's input: silu(x G^T) * (x U^T), out [rows, expert_intermediate].
  void expert_down_input(int layer, int64_t expert, const float* x, int64_t rows, float* out) const;
  // Calibration: experts whose down_proj input tap covers every token (that
  // expert run on all rows for its statistics only; the layer's output
  // stays routed). Empty = none; applies to every MoE layer run.
  void set_all_token_down_taps(std::vector<bool> experts) { all_token_down_ = std::move(experts); }

  // ---- weights on demand (ModelOptions::layers_on_demand; engine/model_on_demand.cpp) ----
  bool layers_on_demand() const { return options_.layers_on_demand; }
  bool layer_loaded(int layer) const { return !layers_[static_cast<size_t>(layer)].linears.empty(); }
  void load_layer(int layer);     // no-op when loaded
  void release_layer(int layer);  // frees its host weights
  void load_embeddings();         // for embed(); no-op when loaded
  void release_embeddings();
  // F32 weight bytes the model holds in host memory now, and the most it
  // held at once since open (what bounds calibration's host memory).
  uint64_t float_weight_bytes() const { return float_bytes_; }
  uint64_t peak_float_weight_bytes() const { return peak_float_bytes_; }

  LayerWeights& layer(int i) { return layers_[static_cast<size_t>(i)]; }
  const LayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }
  const LinearWeights& lm_head() const { return lm_head_; }

 private:
  Model(Runtime& runtime, std::unique_ptr<Checkpoint> cp, const ModelOptions& options);
  // forward's body: logits into *logits, or (ids != null) their argmax per row.
  void step(const std::vector<SequenceInput>& batch, std::vector<float>* logits, std::vector<int32_t>* ids);
  uint64_t counted_weight_bytes(bool top_k_experts_only) const;
  uint64_t layer_weight_bytes(size_t layer, bool top_k_experts_only) const;  // as counted_weight_bytes
  void load_weights();
  void load_layer_weights(int layer);  // layer `layer` from the checkpoint into layers_
  void begin_on_demand();             // load_weights' end in layers_on_demand mode
  void count_float_weights();         // float_bytes_ from what is held now
  void require_layer(int layer) const;
  void require_all_weights(const char* what) const;
  LinearWeights load_linear(const LinearDesc& d);
  // A quantized Linear whose checkpoint stores it in the provider's own
  // layout, taken as is (stored_weights.cpp); false when it stores none.
  bool adopt_stored(const TensorEntry& te, const LinearDesc& d, LinearWeights& lw);
  // What taking stored Linears adds to load_stats_ (counted once they are kept).
  struct StoredCounts {
    int linears = 0;
    uint64_t bytes = 0;
    int copies = 0;
    uint64_t copy_bytes = 0;
  };
  void count_stored(const StoredCounts& c);
  // The provider's second stored copy of adopted `w`, made of the tensors
  // `entries` (described by `descs`), where it takes one and the checkpoint
  // stores it for every part (stored_weights.cpp).
  void attach_stored_copy(const std::vector<const TensorEntry*>& entries, const std::vector<xq_quant_tensor>& descs,
                          xq_qweight* w, const std::string& module, StoredCounts& counts);
  // The Linears `members` of layer `d`, stored in the provider's layout,
  // adopted as one weight (empty when the provider cannot stack them, the
  // provider's reason in *refused when `refused` is not null); its counts in
  // `counts`, not yet in load_stats_.
  LinearWeights adopt_stored_stacked(const LayerDesc& d, const std::vector<int>& members, LayerWeights& w,
                                     const char* name, StoredCounts& counts, std::string* refused);
  // The Linears `members` of layer desc `d` stacked into one (empty, desc
  // null, when they cannot be: mixed or incompatible quantization).
  LinearWeights load_stacked(const LayerDesc& d, const std::vector<int>& members, LayerWeights& w,
                             const char* name);
  // The description of the Linears `members` of `d` run as one (rows in
  // order; null when their inputs or biases differ), `parts` theirs.
  static std::unique_ptr<LinearDesc> stacked_desc(const LayerDesc& d, const std::vector<int>& members,
                                                  const char* name, std::vector<const LinearDesc*>& parts);
  // A stacked Linear's last steps: the parts' biases in order, its
  // description kept with the layer (lw.desc points at it).
  void keep_stacked(std::unique_ptr<LinearDesc> desc, const std::vector<const LinearDesc*>& parts, LinearWeights& lw,
                    LayerWeights& w);
  // A stacked weight given up after load_stacked kept it: the provider's
  // copy released and the load counts of its `members` Linears taken back.
  void discard_stacked(LinearWeights& s, int members);
  // Device providers, MoE layer `d`: every routed expert's gate|up stacked
  // into w.expert_gate_up, or none of them (engine/moe_stacking.cpp).
  void stack_expert_gate_up(int layer, const LayerDesc& d, LayerWeights& w, std::vector<bool>& loaded);
  bool choose_qmatmul_act(LinearWeights& lw) const;
  // Foreign (GGUF) blocks run in place by the provider (engine/foreign_blocks.cpp).
  bool load_foreign_linear(LinearWeights& lw, const std::vector<const LinearDesc*>& parts);
  bool load_foreign_embedding(const TensorEntry& et);
  void tie_lm_head_to_foreign_embedding();
  void stack_host_layer(const LayerDesc& d, LayerWeights& w, std::vector<bool>& loaded);
  // One GEMM of a stacked weight, its output columns split into outs (pointer, width per row).
  void linear_stacked(const LinearWeights& lw, const float* x, int64_t rows,
                      std::initializer_list<std::pair<float*, int64_t>> outs, const char* what) const;
  uint64_t quantized_bytes(const xq_quant_tensor& q) const;
  // Pages out a tensor's mapped bytes once the engine holds its own copy;
  // the module form does every tensor named "<module>." (release_source.cpp).
  void release_source(const TensorEntry& t);
  void release_module_source(const std::string& module);
  bool bf16_matmul_runs(const LinearWeights& lw) const;
  void upload_linear(LinearWeights& lw);  // its float weight and bias to the device; host copy dropped
  void upload_layer(LayerWeights& l);     // a loaded layer's float weights and norms
  void upload_weights();                  // the embeddings, final norm, RoPE factors and lm_head
  // The provider memory the layers may take (weight_fit.cpp): the device's
  // free memory once the embeddings are up, ModelOptions::weight_memory_limit
  // where set (the smaller of the two); UINT64_MAX: no limit known.
  uint64_t weight_memory_available() const;
  // Called once layer 0 is loaded: refuses the model (XQ_ERR_OUT_OF_MEMORY,
  // what was loaded released by the caller's unwinding) when its layers
  // alone, at layer 0's bytes, need more than `available`.
  void refuse_layers_beyond(uint64_t available) const;
  std::vector<float> read_vector(const std::string& name, int64_t expect) const;

  // Grow-only provider buffers of a device provider, one per use.
  enum Slot { kLayerTmp, kX, kIds, kPos, kSelected, kNormed, kLogits, kLinearIn, kLinearOut, kPending, kIds_out,
              kPagedMeta, kPagedK, kMoe, kMoeExperts, kMoeShared, kSlots };
  void* scratch(Slot s, uint64_t bytes) const;
  // n floats of temporary memory: `host` resized on host providers, slot `s` otherwise.
  float* temp(Slot s, int64_t n, std::vector<float>& host) const;
  bool on_device() const { return !kernels_->host_memory(); }
  // Where the provider reads a weight: its device copy, or the host vector.
  static const float* at(const std::vector<float>& host, const DeviceBuffer& dev) {
    return dev ? dev.f32() : host.data();
  }
  const float* embedding() const { return at(embed_, d_embed_); }
  // The embedding table as the provider reads it: BF16 when kept so
  // (bf16_embedding.cpp), else F32.
  xq_device_tensor embedding_table() const;
  // Keeps a BF16-stored embedding table as BF16 (embed_bf16_) on a host
  // provider whose MATMUL takes BF16 weights; false when it does not apply.
  bool keep_bf16_embedding(const TensorEntry& et);
  // The embedding table / an untied lm_head in the form options_.tables
  // asks (compact_tables.cpp); false when that form does not apply.
  bool compact_embedding(const TensorEntry& et);
  bool compact_lm_head(const LinearDesc& d);
  // Device providers: a BF16/F16 embedding table / untied lm_head uploaded
  // from the file as stored (device_tables.cpp); false when that does not
  // apply (the host route reads it then).
  bool device_embedding(const TensorEntry& et);
  bool device_lm_head(const LinearDesc& d);
  DeviceBuffer upload_stored16(const TensorEntry& t, const char* what);
  bool widens_on_device(xq_dtype t, int64_t n) const;
  DeviceBuffer widen_on_device(const DeviceBuffer& b16, xq_dtype t, int64_t n, const char* what) const;
  void for_table_parts(const TensorEntry& t, const std::function<void(int64_t, int64_t, const float*)>& each);
  xq_qweight* q8_0_table(const TensorEntry& t, std::vector<uint8_t>& store);
  std::vector<uint16_t> bf16_table(const TensorEntry& t);
  bool bf16_weights_run(int64_t rows, int64_t cols, xq_dtype t) const;
  // dst[0..n) = src[0..n) floats within provider memory.
  void copy_floats(float* dst, const float* src, int64_t n, const char* what) const;
  void embed_ids(const int32_t* ids, int64_t n, float* out) const;  // ids in provider memory
  void run_layer(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans, const int32_t* pos,
                 const GroupInputTap& tap, LayerPart part = LayerPart::Whole) const;
  // h [rows, hidden] = the post-attention RMSNorm of x (provider memory).
  void post_attention_norm(int layer, const float* x, int64_t rows, float* h) const;
  // run_layer's MLP half; h, g, u its temporaries ([rows, hidden], 2 x [rows, intermediate]).
  void run_mlp(int layer, float* x, int64_t rows, float* h, float* g, float* u, const GroupInputTap& tap,
               LayerPart part) const;
  // A layer whose q|k|v and gate|up run stacked (device providers): 13 ops
  // at batch 1. `pending` (provider memory, `pending_dtype`), when not null,
  // is the previous layer's last residual addend, added to x here (fused
  // into the input norm); returns this layer's, left for the caller.
  const void* run_layer_stacked(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans,
                                const int32_t* pos, const void* pending, xq_dtype pending_dtype,
                                xq_dtype* out_dtype) const;
  // Mixture-of-Experts layers on a device provider (engine/moe_device.cpp):
  // x [rows, hidden] += the MoE block of h (the post-attention norm's
  // output), routed and combined on the device.
  void moe_forward_device(int layer, const float* h, int64_t rows, float* x) const;
  // At load: whether the provider's moe_qmatmul takes this layer's experts.
  bool moe_experts_fuse(int layer) const;
  void moe_experts_fused(int layer, const float* h, int64_t rows, const int32_t* ids, const float* weights,
                         float* x) const;
  void moe_experts_looped(int layer, const float* h, int64_t rows, const int32_t* ids, const float* weights,
                          float* x) const;
  void moe_shared_expert_device(int layer, const float* h, int64_t rows, float* x) const;
  // x [rows, hidden] F32 += addend (provider memory, dtype t).
  void add_residual(float* x, const void* addend, xq_dtype t, int64_t rows) const;
  bool stacked(int layer) const { return layers_[static_cast<size_t>(layer)].qkv.desc != nullptr; }
  // During a paged step: the cache and the step's per-row slots and
  // [rows, table_ld] position + block-table rows (provider memory).
  struct PagedStep {
    const PagedKvCache* cache = nullptr;
    const int32_t* slots = nullptr;
    const int32_t* table = nullptr;
    int64_t table_ld = 0;
    // The most rows one sequence has in this step: PAGED_ATTENTION's i[0]
    // hint, so a provider skips its prefill path in decode steps.
    int64_t max_seq_rows = 0;
    // 0: `table` is per row, [rows, table_ld]. > 0: one block table per
    // sequence (PAGED_ATTENTION's i[1]): `table` is I32 [2 rows + n_seq *
    // table_ld], the rows' positions, their sequence indices, the tables.
    int64_t n_seq = 0;
  };
  // Whether the provider takes PAGED_ATTENTION's per-sequence tables for a
  // step of `rows` rows over `n_seq` sequences of at most `mb` blocks.
  bool takes_sequence_tables(const PagedKvCache& cache, int64_t rows, int64_t n_seq, int64_t mb) const;
  // The step's rows to a provider that plans attention per step: decode
  // rows' positions, or the sequences of a step with one table per sequence
  // (both null: no plan). paged_forward.cpp.
  void plan_attention(const PagedKvCache& cache, int64_t table_ld, int64_t rows, const int32_t* positions,
                      const std::vector<PagedInput>* sequences);
  void step_paged(PagedKvCache& cache, const std::vector<PagedInput>& batch, std::vector<float>* logits,
                  std::vector<int32_t>* ids);
  // A paged step's ops after its metadata is on the device: embedding,
  // layers, the last rows through lm_head, ARGMAX when `greedy` and the
  // provider has it. Returns whether the ids were computed (else logits).
  bool run_paged_ops(const PagedStep& step, const int32_t* d_ids, const int32_t* d_pos, const int32_t* d_last,
                     int64_t rows, int64_t out_rows, bool greedy, float* x, float* d_logits, void* d_ids_out);
  // The paged replacement of a layer's per-sequence KV append + ATTENTION:
  // k (F32 [rows, KVH*HD], normed and rotated; null: ROPE_KV wrote K/V) and v (any float dtype, rows
  // possibly strided) into their slots, then PAGED_ATTENTION into att.
  void attend_paged(int layer, const float* q, const float* k, const xq_device_tensor& v, int64_t rows,
                    xq_dtype att_t, void* att) const;
  static std::vector<int32_t> positions(const std::vector<SequenceSpan>& spans, int64_t rows);

  Runtime& runtime_;
  ModelOptions options_;
  std::unique_ptr<Checkpoint> checkpoint_;
  Architecture arch_;
  std::unique_ptr<Kernels> kernels_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<float> embed_, final_norm_;
  std::vector<uint16_t> embed_bf16_;  // the embedding table kept as stored in BF16 or F16 (embed_ then empty)
  xq_dtype embed16_dtype_ = XQ_DTYPE_BF16;  // embed_bf16_'s dtype
  xq_qweight* embed_q_ = nullptr;  // the embedding table as foreign blocks (embed_ then empty)
  uint64_t embed_bytes_ = 0;
  // Q8_0 blocks the engine made (compact_tables.cpp) that embed_q_ and an
  // untied lm_head_.q borrow.
  std::vector<uint8_t> embed_blocks_, lm_head_blocks_;
  mutable std::vector<float> stacked_scratch_;
  LinearWeights lm_head_;  // w empty and q null when tied: embed_ is used
  std::unique_ptr<LinearDesc> lm_owned_;  // lm_head's description when the file has one
  std::vector<float> rope_factors_;
  DeviceBuffer d_embed_, d_final_norm_, d_rope_factors_;
  DeviceBuffer d_embed16_;  // device providers: the embedding table kept as stored (embed16_dtype_)
  std::vector<LayerWeights> layers_;
  mutable DeviceBuffer scratch_[kSlots];
  std::vector<bool> all_token_down_;
  const PagedStep* paged_ = nullptr;  // set for the duration of step_paged
  mutable uint64_t scratch_moves_ = 0;  // bumped whenever a scratch_ buffer moves (recordings hold addresses)
  std::unique_ptr<DecodeGraphs> graphs_;
  GroupInputTransform input_transform_;
  int n_quantized_ = 0, n_dequantized_ = 0;
  LoadStats load_stats_;
  uint64_t float_bytes_ = 0, peak_float_bytes_ = 0;
};

}  // namespace xquant
