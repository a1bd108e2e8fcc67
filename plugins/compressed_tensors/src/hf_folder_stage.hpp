// hf_folder_stage.hpp: the Hugging Face checkpoint folder a writer fills
// beside its safetensors shards (config.json, the source's tokenizer and
// generation files), written durably under temporary names and made visible
// only when everything is on disk: config.json last, since its presence marks
// a complete checkpoint; the model files of an earlier checkpoint in the
// folder removed, so they cannot shadow the new ones. One implementation for
// the compressed-tensors writer and the awq/gptq writer
// (plugins/awq_gptq_format/checkpoint_writer.cpp).
#pragma once

#include "writer.hpp"

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace xquant::ct {

class HfFolderStage {
 public:
  // Uses `out_dir`, creating it when absent (then abort() removes it again
  // if it is left empty). Throws when it exists and is not a folder.
  explicit HfFolderStage(std::filesystem::path out_dir);

  const std::filesystem::path& dir() const { return out_dir_; }

  // `content` under a temporary name in the folder, fsynced, to be published
  // as `final_name`.
  void stage_text(const std::string& final_name, const std::string& content);

  // The companion files of the source checkpoint folder of `source`
  // (kCompanionFiles); when they hold no tokenizer.json, the source's
  // tokenizer.json text, else the tokenizer files synthesised from a GGUF
  // source's vocabulary (model.synthesized_tokenizer_files).
  void stage_companions(const std::filesystem::path& source, const SourceModel& model);

  // Makes everything visible: `commit_shards` renames the shards (named
  // `shard_names`) into place, then the staged files follow (config.json
  // last); model files of an earlier checkpoint that the new one does not
  // replace are removed, and the folder is fsynced.
  void publish(const std::vector<std::string>& shard_names, const std::function<void()>& commit_shards);

  // Removes every temporary file, and the folder when this stage created it
  // and it is empty. Never throws.
  void abort() noexcept;

 private:
  std::filesystem::path temp_path(const std::string& final_name) const;

  std::filesystem::path out_dir_;
  bool created_dir_ = false;
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> staged_;  // temp -> final
};

}  // namespace xquant::ct
