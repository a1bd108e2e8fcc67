// writer.hpp: the streaming compressed-tensors checkpoint writer.
//
// Tensors go straight to temporary safetensors shards in the output folder
// as they arrive; finish() writes config.json (the source's, or one
// synthesised from the canonical keys, plus quantization_config), the shard
// index when sharded and the companion tokenizer files, all under temporary
// names, fsyncs them and only then renames them into place and removes the
// previous checkpoint's model files. abort() leaves nothing behind.
#pragma once

#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace xquant::ct {

// The canonical keys the writer needs, copied at open (the host's kv is
// only borrowed for the call).
struct SourceModel {
  std::string config_json;  // raw config.json text, empty when none
  std::map<std::string, xq_value_type> types;
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> floats;
  std::map<std::string, std::string> strings;
  std::string tokenizer_json;  // tokenizer.huggingface_json
  // Synthesised from a GGUF source's vocabulary when it has no tokenizer.json.
  std::map<std::string, std::string> synthesized_tokenizer_files;
};

// Copies the canonical keys a HF-layout writer needs from the host's
// borrowed kv (compressed-tensors, awq, gptq share it); refuses a source
// config_json that is not a JSON object, or a source without one whose
// architecture cannot be synthesised, before any work.
SourceModel read_source_model(const sdk::Host& host, const xq_kv* model_config);

// Files a HF checkpoint folder carries beside the weights and config.json,
// copied from the source folder as they are.
inline constexpr const char* kCompanionFiles[] = {
    "tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "tokenizer.model",     "vocab.json",            "merges.txt",              "vocab.txt",
    "added_tokens.json",   "chat_template.jinja",   "chat_template.json",      "preprocessor_config.json"};

// Builds a HF config.json for a checkpoint that had none (GGUF input).
nlohmann::json synthesize_hf_config(const SourceModel& m, const std::string& torch_dtype);

// The HF tokenizer files for a GGUF source's vocabulary (hf_synth.cpp),
// by file name: tokenizer.json, tokenizer_config.json,
// special_tokens_map.json. Throws sdk::Error when the vocabulary cannot be
// expressed.
std::map<std::string, std::string> synthesize_hf_tokenizer(const std::string& gguf_path);

// What a HF-layout writer (this one, awq/gptq) writes for a source without a
// tokenizer.json: when `source` is a GGUF file, the synthesised files; when
// its vocabulary cannot be expressed, none, with a warning through `host`
// naming why (the quantization is not lost for it).
std::map<std::string, std::string> tokenizer_files_for_gguf_source(const sdk::Host& host,
                                                                   const std::filesystem::path& source);

class HfFolderStage;  // hf_folder_stage.hpp

class Writer : public sdk::WriterBase {
 public:
  Writer(const sdk::Host& host, const xq_writer_options& options);
  ~Writer() override;

  void add_dense(const char* name, const xq_tensor_view& t);
  void add_quantized(const char* module, const xq_quant_tensor& q);
  void finish();
  void abort() noexcept;

 private:
  struct Pending {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<unsigned char> bytes;
  };
  void make_room(const std::vector<std::string>& names, uint64_t total_bytes);
  void write_tensors(const std::vector<Pending>& tensors);
  nlohmann::json quantization_config() const;

  std::filesystem::path out_dir_;
  std::filesystem::path source_;
  std::unique_ptr<HfFolderStage> stage_;  // config.json and companion files
  SourceModel model_;
  int64_t max_shard_bytes_ = 0;
  bool allow_ragged_ = false;
  std::vector<std::unique_ptr<sdk::safetensors::Writer>> shards_;
  std::set<std::string> ignored_;
  std::vector<std::string> ignored_order_;

  struct Group {
    nlohmann::json weights, activations;
    std::string format;
    bool experts = false;  // routed MoE experts only (group_targets.hpp)
    std::vector<std::string> modules;
  };
  std::vector<Group> groups_;  // in order of first appearance
  std::set<std::string> quantized_;
  std::set<std::string> dense_linears_;  // 2-D ".weight" tensors added dense
  std::string embed_dtype_;
  std::string first_scale_dtype_;
  bool done_ = false;
};

}  // namespace xquant::ct
